"""kopf wiring only: which events lead to a reconcile, and the operator's settings."""

from __future__ import annotations

import logging
import threading

import kopf

import os

from . import api, reconcile as rec, scaling
from .apply import Kube, load_config
from .resources import INSTANCE_LABEL, MANAGED_BY

MANAGED = {"app.kubernetes.io/managed-by": MANAGED_BY}
# Children whose events wake their owner's reconcile: (group, version, plural).
CHILD_RESOURCES = (
    ("apps", "v1", "deployments"),
    ("", "v1", "services"),
    ("", "v1", "pods"),
    ("policy", "v1", "poddisruptionbudgets"),
    ("batch", "v1", "jobs"),
    ("", "v1", "persistentvolumeclaims"),
)

# Reads only when nothing changed; children's events do the real work.
RESYNC_S = 300

_kube: Kube | None = None


def kube() -> Kube:
    global _kube
    if _kube is None:
        _kube = Kube(load_config())
    return _kube


@kopf.on.startup()
def configure(settings: kopf.OperatorSettings, **_) -> None:
    # Everything kopf stores on our objects lives under our own prefix.
    settings.persistence.finalizer = f"{api.GROUP}/finalizer"
    settings.persistence.progress_storage = kopf.AnnotationsProgressStorage(prefix=api.GROUP, v1=False)
    settings.persistence.diffbase_storage = kopf.AnnotationsDiffBaseStorage(
        prefix=api.GROUP, key="last-handled-configuration", v1=False)
    settings.posting.reporting_component = "llm-operator"
    # kopf would post an Event for every handler run; only problems are worth one.
    settings.posting.level = logging.WARNING
    # A half-open watch connection must not hang the operator.
    settings.watching.server_timeout = 300
    settings.watching.client_timeout = 330
    settings.watching.connect_timeout = 30
    # Watch only our own children, filtered by the apiserver, not every pod in the cluster.
    for group, version, plural in CHILD_RESOURCES:
        settings.watching.label_selectors[group, version, plural] = f"app.kubernetes.io/managed-by={MANAGED_BY}"
    settings.execution.max_workers = 16
    # One line per handled event is noise; failures still log as warnings and errors.
    logging.getLogger("kopf.objects").setLevel(logging.WARNING)


@kopf.on.resume(api.GROUP, api.VERSION, api.PLURAL)
@kopf.on.create(api.GROUP, api.VERSION, api.PLURAL)
@kopf.on.update(api.GROUP, api.VERSION, api.PLURAL)
def llmdeployment_changed(name: str, namespace: str, **_) -> None:
    outcome = rec.reconcile(kube(), namespace, name)
    if outcome is not None and outcome.blocked is not None:
        # Not retried: it cannot work until the spec changes (the condition says why).
        raise kopf.PermanentError(outcome.blocked.message)


AUTOSCALE_INTERVAL_S = float(os.environ.get("LLM_OPERATOR_AUTOSCALE_INTERVAL_S", "15"))

# The LLMDeployments this operator sees, with their autoscaling mode. kopf's timers would
# do the periodic work below, but each timer puts a finalizer on every object: one more
# write per object, and no deletion (nor namespace deletion) while the operator is down.
_known: dict[tuple[str, str], str] = {}
_known_guard = threading.Lock()
_stop = threading.Event()
log = logging.getLogger(__name__)


@kopf.on.event(api.GROUP, api.VERSION, api.PLURAL)
def track(event: dict, name: str, namespace: str, spec, **_) -> None:
    with _known_guard:
        if event.get("type") == "DELETED":
            _known.pop((namespace, name), None)
        else:
            _known[(namespace, name)] = (spec.get("autoscaling") or {}).get("mode", "none")


def every(interval_s: float, work, wanted=lambda mode: True) -> None:
    """Run `work(namespace, name)` for each known LLMDeployment every `interval_s`, in a thread."""
    def loop() -> None:
        while not _stop.wait(interval_s):
            with _known_guard:
                keys = [key for key, mode in _known.items() if wanted(mode)]
            for namespace, name in keys:
                try:
                    work(namespace, name)
                except Exception:  # noqa: BLE001 - one object's failure must not stop the loop; it is logged
                    log.exception("periodic %s of %s/%s failed", getattr(work, "__name__", "work"), namespace, name)

    threading.Thread(target=loop, name=f"every-{interval_s:g}s", daemon=True).start()


def resync(namespace: str, name: str) -> None:
    """A safety net behind the events: a reconcile whose child event failed is redone."""
    rec.reconcile(kube(), namespace, name)


def autoscale(namespace: str, name: str) -> None:
    body = kube().get(api.API_VERSION, api.KIND, namespace, name)
    if body is not None:
        scaling.autoscale(kube(), body)


@kopf.on.startup()
def start_loops(**_) -> None:
    _stop.clear()
    every(RESYNC_S, resync)
    every(AUTOSCALE_INTERVAL_S, autoscale, wanted=lambda mode: mode == "operator")


@kopf.on.cleanup()
def stop_loops(**_) -> None:
    _stop.set()


def _child_event(body: kopf.Body, namespace: str | None, **_) -> None:
    owner = (body.get("metadata", {}).get("labels") or {}).get(INSTANCE_LABEL)
    if owner and namespace:
        rec.reconcile(kube(), namespace, owner)


for _group, _version, _plural in CHILD_RESOURCES:
    kopf.on.event(_group, _version, _plural, labels=MANAGED)(_child_event)

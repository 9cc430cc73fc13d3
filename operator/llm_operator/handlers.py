"""kopf wiring only: which events lead to a reconcile, and the operator's settings."""

from __future__ import annotations

import logging

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


@kopf.timer(api.GROUP, api.VERSION, api.PLURAL, interval=RESYNC_S, initial_delay=RESYNC_S)
def resync(name: str, namespace: str, **_) -> None:
    """A safety net behind the events: a reconcile whose child event failed is redone."""
    rec.reconcile(kube(), namespace, name)


AUTOSCALE_INTERVAL_S = float(os.environ.get("LLM_OPERATOR_AUTOSCALE_INTERVAL_S", "15"))


def _autoscaled_by_operator(spec, **_) -> bool:
    return (spec.get("autoscaling") or {}).get("mode") == "operator"


@kopf.timer(api.GROUP, api.VERSION, api.PLURAL, interval=AUTOSCALE_INTERVAL_S, when=_autoscaled_by_operator)
def autoscale(name: str, namespace: str, **_) -> None:
    body = kube().get(api.API_VERSION, api.KIND, namespace, name)
    if body is not None:
        scaling.autoscale(kube(), body)


def _child_event(body: kopf.Body, namespace: str | None, **_) -> None:
    owner = (body.get("metadata", {}).get("labels") or {}).get(INSTANCE_LABEL)
    if owner and namespace:
        rec.reconcile(kube(), namespace, owner)


for _group, _version, _plural in CHILD_RESOURCES:
    kopf.on.event(_group, _version, _plural, labels=MANAGED)(_child_event)

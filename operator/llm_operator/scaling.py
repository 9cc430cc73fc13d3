"""I/O of the operator-native autoscaler: scrape each ready pod's /metrics, decide with the
pure autoscaler, write replicas through the LLMDeployment's scale subresource, and record
the decision with its inputs in status.autoscaler and as an Event.

The state lives in status.autoscaler, so a restarted operator goes on from the same
window and timers instead of flapping. It is written only when a decision or a timer
changes, not on every scrape.
"""

from __future__ import annotations

import datetime as dt
import logging
import time
import urllib.error
import urllib.request
from concurrent.futures import ThreadPoolExecutor

from . import api, autoscaler, decide, metrics, resources
from .apply import KubeError
from .engines import DEFAULT_ENGINE, Engine, engine_for, engine_named

log = logging.getLogger(__name__)

SCRAPE_TIMEOUT_S = 2.0
_pool = ThreadPoolExecutor(max_workers=16, thread_name_prefix="scrape")


def pod_ready(pod: dict) -> bool:
    if (pod.get("metadata") or {}).get("deletionTimestamp"):
        return False
    return any(c.get("type") == "Ready" and c.get("status") == "True"
               for c in (pod.get("status") or {}).get("conditions") or [])


def scrape(pod: dict, metric: str, url_template: str, engine: Engine | None = None) -> autoscaler.PodSample:
    engine = engine or engine_named(DEFAULT_ENGINE)
    meta = pod["metadata"]
    url = url_template.format(pod_ip=(pod.get("status") or {}).get("podIP", ""), port=engine.port,
                             namespace=meta["namespace"], pod=meta["name"])
    try:
        with urllib.request.urlopen(url, timeout=SCRAPE_TIMEOUT_S) as resp:
            text = resp.read().decode(errors="replace")
    except (urllib.error.URLError, OSError, ValueError) as err:
        log.debug("scraping %s failed: %s", url, err)
        return autoscaler.PodSample(meta["name"], None)   # unknown, not idle
    load = autoscaler.load_of(autoscaler.parse_prometheus_text(text), metric, engine.load_metrics)
    return autoscaler.PodSample(meta["name"], load)


def _timers(state: dict | None) -> tuple:
    s = state or {}
    last = s.get("lastDecision") or {}
    return s.get("lowSince"), s.get("lastScaleTime"), last.get("action"), last.get("desiredReplicas")


def autoscale(ctx, observed, now: float | None = None) -> autoscaler.Decision | None:
    """One tick for one LLMDeployment in mode operator (`ctx`: the OperatorContext; the
    LLMDeployment and its pods come from the read model)."""
    body = observed.llmd
    meta = body["metadata"]
    spec = api.parse_spec(body.get("spec") or {})
    if spec.autoscaling.mode != "operator":
        return None
    owner = resources.Owner(meta["name"], meta["namespace"], meta.get("uid", ""))
    now = time.time() if now is None else now
    selector = resources.selector_labels(owner)
    # The pods that serve HTTP: one a replica (of a multi-node group, its leader, whose
    # metrics are the whole group's), so the load per pod is the load per replica.
    pods = [p for p in observed.pods if pod_ready(p)
            and all((p["metadata"].get("labels") or {}).get(k) == v for k, v in selector.items())
            and (p["metadata"].get("labels") or {}).get(resources.ROLE_LABEL) != resources.WORKER]
    url = ctx.settings.pod_metrics_url
    engine = engine_for(spec)
    samples = list(_pool.map(lambda p: scrape(p, spec.autoscaling.metric, url, engine), pods))
    stored = (body.get("status") or {}).get("autoscaler")
    key = (owner.namespace, owner.name)
    # The full state between ticks; status.autoscaler holds it as of the last change of a timer.
    state = ctx.scaler_states.get(key)
    if state is None:
        try:
            state = autoscaler.ScalerState.from_dict(stored)
        except (ValueError, TypeError, KeyError) as err:
            log.warning("%s/%s: status.autoscaler unreadable (%s): starting afresh", owner.namespace, owner.name, err)
            state = autoscaler.ScalerState()
    decision, new_state = autoscaler.decide(state, samples, spec.replicas, spec.autoscaling, now)
    ctx.scaler_states[key] = new_state
    new = new_state.to_dict()
    kube = ctx.kube
    if decision.desired_replicas != spec.replicas:
        kube.request("PATCH", kube.path(api.API_VERSION, api.KIND, owner.namespace, owner.name, "scale"),
                     body={"spec": {"replicas": decision.desired_replicas}},
                     query={"fieldManager": "llm-operator-autoscaler"},
                     content_type="application/merge-patch+json")
        metrics.WRITES.labels(api.KIND, "scale").inc()
        reason = "ScaledUp" if decision.desired_replicas > spec.replicas else "ScaledDown"
        ctx.post_events(observed, (decide.Event("Normal", reason, decision.reason),), dt.datetime.now(dt.timezone.utc))
        log.info("%s/%s: %s", owner.namespace, owner.name, decision.reason)
    if _timers(new) != _timers(stored):
        try:
            kube.patch_status(owner.namespace, owner.name, {"autoscaler": new})
            metrics.WRITES.labels(api.KIND, "patch-status").inc()
        except KubeError as err:
            if err.status != 404:
                raise
    return decision

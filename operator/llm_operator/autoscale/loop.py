"""The operator-native autoscaler's loop: read the gateway's counts (or scrape each ready
pod's /metrics) and decide with the pure policy (policy.py). It writes nothing: the
controller (controller/autoscaling.py) writes replicas through the scale subresource and
hands the state to the reconcile, which writes status.autoscaler like all of status.

The state lives in status.autoscaler, so a restarted operator goes on from the same
window and timers instead of flapping. It is reported only when a decision or a timer
changes, not on every scrape.
"""

from __future__ import annotations

import logging
import time
import urllib.error
import urllib.request
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from typing import Any, Protocol

from llm_operator import api
from llm_operator.autoscale import policy as autoscaler
from llm_operator.decide.manifests import ROLE_LABEL, WORKER, Owner, selector_labels
from llm_operator.decide.observed import Observed, spec_of
from llm_operator.engines import DEFAULT_ENGINE, Engine, engine_for, engine_named
from llm_operator.kube.client import Kube
from llm_operator.kube.errors import KubeError

log = logging.getLogger(__name__)

SCRAPE_TIMEOUT_S = 2.0
_pool = ThreadPoolExecutor(max_workers=16, thread_name_prefix="scrape")


class ScrapeSettings(Protocol):
    """What the loop reads of the operator's settings (controller/context.py Settings)."""

    @property
    def pod_metrics_url(self) -> str: ...
    @property
    def gateway_metrics_urls(self) -> tuple[str, ...]: ...
    @property
    def gateway_pods(self) -> str | None: ...
    @property
    def gateway_port(self) -> int: ...


class GatewayContext(Protocol):
    """What the loop reads of the operator's context (controller/context.py OperatorContext)."""

    @property
    def settings(self) -> ScrapeSettings: ...
    @property
    def kube(self) -> Kube: ...


def pod_ready(pod: dict[str, Any]) -> bool:
    if (pod.get("metadata") or {}).get("deletionTimestamp"):
        return False
    return any(
        c.get("type") == "Ready" and c.get("status") == "True"
        for c in (pod.get("status") or {}).get("conditions") or []
    )


def scrape(pod: dict[str, Any], metric: str, url_template: str, engine: Engine | None = None) -> autoscaler.PodSample:
    engine = engine or engine_named(DEFAULT_ENGINE)
    meta = pod["metadata"]
    url = url_template.format(
        pod_ip=(pod.get("status") or {}).get("podIP", ""),
        port=engine.port,
        namespace=meta["namespace"],
        pod=meta["name"],
    )
    try:
        with urllib.request.urlopen(url, timeout=SCRAPE_TIMEOUT_S) as resp:
            text = resp.read().decode(errors="replace")
    except (urllib.error.URLError, OSError, ValueError) as err:
        log.debug("scraping %s failed: %s", url, err)
        return autoscaler.PodSample(meta["name"], None)  # unknown, not idle
    load = autoscaler.load_of(autoscaler.parse_prometheus_text(text), metric, engine.load_metrics)
    return autoscaler.PodSample(meta["name"], load)


def read_gateway(url: str) -> dict[str, autoscaler.GatewayCounts] | None:
    """One gateway replica's counts per model; None when it does not answer."""
    try:
        with urllib.request.urlopen(url, timeout=SCRAPE_TIMEOUT_S) as resp:
            return autoscaler.gateway_counts(resp.read().decode(errors="replace"))
    except (urllib.error.URLError, OSError, ValueError) as err:
        log.warning("reading the gateway's counts at %s failed: %s", url, err)
        return None


def gateway_urls(ctx: GatewayContext) -> list[str]:
    """The /metrics of every gateway replica: the fixed URLs, and the ready pods the
    selector finds (one LIST per tick, for every model)."""
    settings = ctx.settings
    urls = list(settings.gateway_metrics_urls)
    if settings.gateway_pods:
        namespace, _, selector = settings.gateway_pods.partition("/")
        try:
            pods = (
                ctx.kube.request("GET", f"/api/v1/namespaces/{namespace}/pods", query={"labelSelector": selector}) or {}
            ).get("items") or []
        except KubeError as err:
            log.warning("listing the gateway's pods (%s) failed: %s", settings.gateway_pods, err)
            pods = []
        urls += [
            f"http://{p['status']['podIP']}:{settings.gateway_port}/metrics"
            for p in pods
            if pod_ready(p) and (p.get("status") or {}).get("podIP")
        ]
    return urls


def read_gateways(ctx: GatewayContext) -> list[dict[str, autoscaler.GatewayCounts] | None] | None:
    """Each gateway replica's counts for this tick (None for one that did not answer);
    None when the operator has no gateway to read."""
    settings = ctx.settings
    if not settings.gateway_metrics_urls and not settings.gateway_pods:
        return None
    return list(_pool.map(read_gateway, gateway_urls(ctx)))


def _timers(state: dict[str, Any] | None) -> tuple[Any, ...]:
    s = state or {}
    last = s.get("lastDecision") or {}
    return (
        s.get("lowSince"),
        s.get("lastScaleTime"),
        last.get("action"),
        last.get("desiredReplicas"),
        s.get("idleSince"),
    )


@dataclass(frozen=True)
class Tick:
    """One tick's outcome for one LLMDeployment; the controller writes it through act."""

    decision: autoscaler.Decision
    state: autoscaler.ScalerState  # kept in memory until the next tick
    scale_to: int | None  # replicas to write through the scale subresource (None: unchanged)
    report: dict[str, Any] | None  # status.autoscaler to write (None: no timer changed since status says)


def tick(
    observed: Observed,
    settings: ScrapeSettings,
    state: autoscaler.ScalerState | None,
    now: float | None = None,
    gateways: list[dict[str, autoscaler.GatewayCounts] | None] | None = None,
) -> Tick | None:
    """One tick for one LLMDeployment in mode operator: its load (the gateway's counts or its
    pods' /metrics), the policy's decision, and what of it to write. `observed`: the read
    model's snapshot; `settings`: where pods' metrics are read (pod_metrics_url); `state`:
    the previous tick's (None: from status.autoscaler, as after a restart); `gateways`:
    read_gateways' answer for this tick. Reads metrics, writes nothing.

    With the gateway's counts, metric concurrency is the model's requests in flight through
    the gateway (held ones included) summed over its replicas, and no pod is scraped;
    metric queue (the engines' own queues, which the gateway cannot see) still scrapes the
    pods. When no gateway replica answers, the pods are scraped, as without a gateway."""
    body = observed.llmd
    meta = body["metadata"]
    spec = spec_of(observed)
    if isinstance(spec, api.InvalidSpec) or spec.autoscaling.mode != "operator":
        return None
    owner = Owner(meta["name"], meta["namespace"], meta.get("uid", ""))
    now = time.time() if now is None else now
    selector = selector_labels(owner)
    # The pods that serve HTTP: one a replica (of a multi-node group, its leader, whose
    # metrics are the whole group's), so the load per pod is the load per replica.
    pods = [
        p
        for p in observed.pods
        if pod_ready(p)
        and all((p["metadata"].get("labels") or {}).get(k) == v for k, v in selector.items())
        and (p["metadata"].get("labels") or {}).get(ROLE_LABEL) != WORKER
    ]
    url = settings.pod_metrics_url
    engine = engine_for(spec)
    gateway_samples, counts = (
        autoscaler.sum_gateway_counts(gateways, f"{owner.namespace}/{owner.name}") if gateways else ([], None)
    )
    if counts is not None and spec.autoscaling.metric == api.ScalingMetric.concurrency.value:
        samples, source = gateway_samples, "gateway"
    else:
        samples, source = list(_pool.map(lambda p: scrape(p, spec.autoscaling.metric, url, engine), pods)), "pods"
    stored = (body.get("status") or {}).get("autoscaler")
    if state is None:
        try:
            state = autoscaler.ScalerState.from_dict(stored)
        except (ValueError, TypeError, KeyError) as err:
            log.warning("%s/%s: status.autoscaler unreadable (%s): starting afresh", owner.namespace, owner.name, err)
            state = autoscaler.ScalerState()
    decision, new_state = autoscaler.decide(
        state, samples, spec.replicas, spec.autoscaling, now, source=source, gateway=counts
    )
    new = new_state.to_dict()
    # status.autoscaler holds the state as of the last change of a timer, not every scrape.
    return Tick(
        decision=decision,
        state=new_state,
        scale_to=decision.desired_replicas if decision.desired_replicas != spec.replicas else None,
        report=new if _timers(new) != _timers(stored) else None,
    )

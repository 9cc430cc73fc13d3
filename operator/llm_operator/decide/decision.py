"""Pure: what was observed of one LLMDeployment + what was looked up -> what to do.

`decide(observed, lookups, now)` returns the desired children, which of them differ from
the live ones, what to prune, the status to write and the Events to post. It reads
nothing and writes nothing, so every branch is a unit test with literal inputs, and
`llm-operator render` runs the very same function offline.

It calls one step of each concern in turn: the weight cache (cache.py), the plan, the
adapters (adapters.py), where the pods can run (placement.py), the children and what to
write of them (writes.py), and the status with its Event (status.py).
"""

from __future__ import annotations

import datetime as dt
from collections.abc import Mapping
from dataclasses import dataclass, field, replace
from typing import Any

from llm_common import termination
from llm_common.modelfacts import ModelFacts
from llm_operator import api
from llm_operator.api.conditions import Verdict
from llm_operator.decide import adapters as lora
from llm_operator.decide import cache as weights
from llm_operator.decide import manifests, placement, status
from llm_operator.decide.observed import Observed, live_child, spec_of, trim_child
from llm_operator.decide.status import Event
from llm_operator.decide.writes import CLAIM_MOUNTERS, Writes, writes_for
from llm_operator.engines import engine_for
from llm_operator.facts.answers import FactsAnswer
from llm_operator.planning.memory import default_max_total_tokens
from llm_operator.planning.plan import PlanOutcome, Previous, gpu_types_of, plan_for


@dataclass(frozen=True)
class Lookups:
    """What was read outside the cluster for this decision."""

    facts: FactsAnswer
    adapter_configs: Mapping[str, dict[str, Any] | None] = field(
        default_factory=dict
    )  # name -> config (None: unreadable)
    adapters_pending: tuple[str, ...] = ()  # being read from the Hub
    autoscaler: dict[str, Any] | None = (
        None  # status.autoscaler as the autoscaler loop last reported it (None: not yet)
    )


@dataclass(frozen=True)
class Decision:
    phase: str
    desired: tuple[dict[str, Any], ...] = ()  # every child wanted
    apply: tuple[dict[str, Any], ...] = ()  # the wanted children that differ from the live ones
    prune: tuple[dict[str, Any], ...] = ()  # owned children no longer wanted (apiVersion, kind, metadata.name)
    status: dict[str, Any] | None = None  # the whole status wanted
    status_patch: dict[str, Any] | None = None  # the merge patch from the current status to it (None: no change)
    events: tuple[Event, ...] = ()
    requeue_after: float | None = None  # time alone changes something (a claim left Pending)
    needs_claim: tuple[str, ...] = ()  # kinds in `apply` that mount the cache claim: not made when it could not be
    blocked: Verdict | None = None  # cannot progress until the spec changes
    notes: tuple[str, ...] = ()  # what was assumed (for render's comments)


@dataclass(frozen=True)
class FactsQuery:
    """Which facts a decision needs, and what the cluster already holds of them."""

    model_id: str
    revision: str
    job_report: dict[str, Any] | None
    status_facts: dict[str, Any] | None


def owner_of(observed: Observed) -> manifests.Owner:
    meta = observed.meta
    return manifests.Owner(name=meta["name"], namespace=meta["namespace"], uid=meta.get("uid", ""))


def facts_query(observed: Observed, spec: api.LLMDeploymentSpec) -> FactsQuery:
    """The model and revision to look up, the download Job's report for this very revision
    (when the cache is on and the Job said), and status.modelFacts."""
    report = None
    if spec.cache.enabled:
        job_name = manifests.download_job_name(owner_of(observed), spec)
        report = termination.job_report(termination.termination_reports(weights.job_pods(observed, job_name)))
    return FactsQuery(spec.model.id, spec.model.revision, report, (observed.llmd.get("status") or {}).get("modelFacts"))


def rfc3339(now: dt.datetime) -> str:
    return now.astimezone(dt.UTC).strftime("%Y-%m-%dT%H:%M:%SZ")


def decide(observed: Observed, lookups: Lookups, now: dt.datetime) -> Decision:
    """The steps in order: the weight cache, the plan, the adapters, where the pods can run,
    the children and their writes, the status."""
    if observed.meta.get("deletionTimestamp") or observed.namespace_terminating:
        # Being deleted (or its namespace is): the garbage collector removes the children.
        return Decision(phase="Terminating")
    owner, spec = owner_of(observed), spec_of(observed)
    if isinstance(spec, api.InvalidSpec):
        return _invalid(observed, owner, spec, now)
    cache = weights.cache_verdict(observed, owner, spec, now)
    planned = _plan(observed, spec, lookups)
    facts = ModelFacts.from_dict(planned.facts) if planned.facts else None
    adapters = lora.judge_adapters(spec, lookups.adapter_configs, facts, weights.adapter_commits(cache))
    blocked, waiting = _held(observed, spec, lookups, planned, facts, adapters, cache)
    serving = placement.serving_pods(observed, owner)
    workload = live_child(observed.child(manifests.workload_kind(planned.nodes), owner.name))
    desired, writes = [], Writes()
    if blocked is None:
        desired = _children(
            owner, spec, planned, facts, adapters, serve=waiting is None, downloader_image=observed.downloader_image
        )
        writes = writes_for(observed, owner, desired, serving, workload, serve=waiting is None)
        # A child this generation could not write: said in status, the others written all the same.
        blocked, waiting = writes.stalled, waiting or (None if writes.stalled else writes.held)
    decision = Decision(
        phase="",
        desired=tuple(desired),
        apply=writes.apply,
        prune=writes.prune,
        requeue_after=weights.recheck_after(cache),
        blocked=blocked,
        notes=() if planned.status.get("known") else (planned.status.get("reason", ""),),
        needs_claim=CLAIM_MOUNTERS if spec.cache.enabled else (),
    )
    return status.with_status(
        decision,
        observed.llmd.get("status") or {},
        rfc3339(now),
        _status_inputs(
            observed, lookups, spec, owner, planned, adapters, cache, serving, workload, blocked, waiting, writes
        ),
    )


def _invalid(observed: Observed, owner: manifests.Owner, error: api.InvalidSpec, now: dt.datetime) -> Decision:
    """An invalid spec: nothing is made or pruned, and status says why."""
    blocked = Verdict("False", "InvalidSpec", f"The spec is invalid: {error}")
    inputs = status.Observed(
        generation=observed.meta.get("generation", 1),
        desired_replicas=None,
        gpus=1,
        selector=manifests.pod_selector(owner),
        url="",
        deployment=live_child(observed.child("Deployment", owner.name)),
        blocked=blocked,
        woken_at=status.woken_at(observed.meta),
    )
    return status.with_status(
        Decision(phase="", blocked=blocked), observed.llmd.get("status") or {}, rfc3339(now), inputs
    )


def _plan(observed: Observed, spec: api.LLMDeploymentSpec, lookups: Lookups) -> PlanOutcome:
    """GPUs and nodes per replica for the model's facts on the cluster's GPUs, the adapters'
    memory counted in; a plan already made for this generation stands while facts are read."""
    previous = Previous.from_status(observed.llmd.get("status") or {}, observed.meta.get("generation", 1))
    return plan_for(
        spec,
        lookups.facts,
        previous,
        gpu_types_of(list(observed.nodes)),
        lora.adapters_memory(spec, lookups.adapter_configs),
        placement.cluster_for_plan(observed, spec),
    )


def _engine_refusal(
    spec: api.LLMDeploymentSpec, gpus: int, adapters: lora.Adapters, facts: ModelFacts | None
) -> Verdict | None:
    """What the engine itself would refuse at start: a Stalled status now, not a crash-looping pod."""
    engine = engine_for(spec)
    refused = engine.refusals(spec, gpus, adapters.entries, facts)
    if not refused:
        return None
    return Verdict(
        "False",
        "EngineWouldRefuse",
        f"{engine.display_name} would refuse to start with this spec: " + " ".join(refused),
    )


def _held(
    observed: Observed,
    spec: api.LLMDeploymentSpec,
    lookups: Lookups,
    planned: PlanOutcome,
    facts: ModelFacts | None,
    adapters: lora.Adapters,
    cache: weights.CacheVerdict | None,
) -> tuple[Verdict | None, Verdict | None]:
    """What keeps this spec from serving, as (blocked: only a change helps, waiting: under way).
    Blocked, the first of: the plan's verdict, the engine's refusal, a replica on several nodes
    that cannot run here, a failed cache. Waiting, the first of: the facts being read, the
    adapters' configs being read, the cache under way (when nothing blocks)."""
    blocked = (
        planned.blocked
        or _engine_refusal(spec, planned.gpus, adapters, facts)
        or (placement.multi_node_problem(observed, spec, planned.gpus, planned.nodes) if planned.nodes > 1 else None)
    )
    pending = (
        Verdict(
            "False",
            "Planning",
            f"Reading adapter_config.json of {', '.join(lookups.adapters_pending)} to check their base model.",
        )
        if lookups.adapters_pending
        else None
    )
    cache_blocked, cache_waiting = weights.holds(cache) if blocked is None else (None, None)
    return blocked or cache_blocked, planned.waiting or pending or cache_waiting


def _children(
    owner: manifests.Owner,
    spec: api.LLMDeploymentSpec,
    planned: PlanOutcome,
    facts: ModelFacts | None,
    adapters: lora.Adapters,
    serve: bool,
    downloader_image: str,
) -> list[dict[str, Any]]:
    """Every child wanted; the serving ones only once the new spec may serve (`serve`)."""
    tokens = spec.limits.max_total_tokens or (default_max_total_tokens(facts) if facts else None)
    return manifests.desired_children(
        owner,
        spec,
        manifests.Decisions(
            gpus=planned.gpus,
            nodes=planned.nodes,
            serve=serve,
            lora=adapters.entries,
            lora_rank=lora.lora_rank(adapters.checks),
            max_total_tokens=tokens,
            checkpoint_quantization=facts.quant_method if facts else None,
            downloader_image=downloader_image,
        ),
    )


def _status_inputs(
    observed: Observed,
    lookups: Lookups,
    spec: api.LLMDeploymentSpec,
    owner: manifests.Owner,
    planned: PlanOutcome,
    adapters: lora.Adapters,
    cache: weights.CacheVerdict | None,
    serving: tuple[dict[str, Any], ...],
    workload: dict[str, Any] | None,
    blocked: Verdict | None,
    waiting: Verdict | None,
    writes: Writes,
) -> status.Observed:
    """What the status is judged from: the serving pods and workload, the plan, the verdicts."""
    current = observed.llmd.get("status") or {}
    nodes = planned.nodes
    conditions = {"WeightsCached": cache.condition if cache is not None else None, "AdaptersReady": adapters.condition}
    operator_scaled = spec.autoscaling.mode == "operator"
    extra = {
        "engine": spec.engine.name,
        "nodes": nodes if nodes > 1 else None,
        "plan": planned.status,
        "modelFacts": planned.facts,
        # The autoscaler's state as of its last change of a timer (its loop hands it over in
        # the lookups); until it has, the one in status stays (a restarted operator goes on from it).
        "autoscaler": (lookups.autoscaler if lookups.autoscaler is not None else current.get("autoscaler"))
        if operator_scaled
        else None,
        "adapters": adapters.status or None,
    }
    return status.Observed(
        generation=observed.meta.get("generation", 1),
        desired_replicas=spec.replicas,
        gpus=planned.gpus,
        selector=manifests.pod_selector(owner, nodes),
        url=manifests.service_url(owner, spec),
        deployment=workload,
        workload=manifests.workload_kind(nodes),
        group_size=nodes,
        pods=serving,
        no_node_fits=placement.no_node_fits(observed, spec, planned.gpus, nodes, serving),
        blocked=blocked,
        waiting=waiting,
        extra_conditions={k: v for k, v in conditions.items() if v is not None},
        extra={k: v for k, v in extra.items() if v is not None},
        behind=bool(writes.problems),
        sleeps_at_zero=operator_scaled and spec.autoscaling.min_replicas == 0,
        woken_at=status.woken_at(observed.meta),
    )


def with_applied(observed: Observed, written: list[dict[str, Any]], pruned: list[dict[str, Any]]) -> Observed:
    """The observation after our own writes: the live objects the API answered with, and
    the pruned ones gone. Deciding again on it gives the status to report."""
    children = {kind: list(items) for kind, items in observed.children.items()}
    for obj in written:
        trimmed = trim_child(obj)
        items = [c for c in children.get(trimmed["kind"], []) if c["metadata"]["name"] != trimmed["metadata"]["name"]]
        children[trimmed["kind"]] = items + [trimmed]
    for obj in pruned:
        kind, name = obj["kind"], obj["metadata"]["name"]
        children[kind] = [c for c in children.get(kind, []) if c["metadata"]["name"] != name]
    return replace(observed, children={k: tuple(v) for k, v in children.items() if v})

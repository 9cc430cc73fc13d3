"""Pure: what was observed of one LLMDeployment + what was looked up -> what to do.

`decide(observed, lookups, now)` returns the desired children, which of them differ from
the live ones, what to prune, the status to write and the Events to post. It reads
nothing and writes nothing, so every branch is a unit test with literal inputs, and
`llm-operator render` runs the very same function offline.
"""

from __future__ import annotations

import datetime as dt
from dataclasses import dataclass, field, replace
from typing import Mapping

from . import adapters as lora, api, facts as model_facts, planning, resources, status, weights
from .apply import up_to_date
from .engines import engine_for
from .modelinfo import ModelFacts
from .observe import Observed, child_spec, trim_child

# Refusals that the same write will meet again (invalid, forbidden, immutable field).
PERMANENT_REFUSALS = (400, 403, 404, 405, 413, 415, 422)
# Phases that are worth a Warning Event rather than a Normal one.
WARNING_PHASES = ("Failed", "Unschedulable")
# Reasons worth a Warning in any phase: a refusal retried by itself may still need a person
# (the Service IP range full, a quota).
WARNING_REASONS = ("ApplyRefused",)


@dataclass(frozen=True)
class Lookups:
    """What was read outside the cluster for this decision."""

    facts: model_facts.FactsAnswer
    adapter_configs: Mapping[str, dict | None] = field(default_factory=dict)   # name -> config (None: unreadable)
    adapters_pending: tuple[str, ...] = ()                                      # being read from the Hub


@dataclass(frozen=True)
class Event:
    type: str        # Normal | Warning
    reason: str
    message: str


@dataclass(frozen=True)
class Decision:
    phase: str
    desired: tuple[dict, ...] = ()            # every child wanted
    apply: tuple[dict, ...] = ()              # the wanted children that differ from the live ones
    prune: tuple[dict, ...] = ()              # owned children no longer wanted (apiVersion, kind, metadata.name)
    status: dict | None = None                # the whole status wanted
    status_patch: dict | None = None          # the merge patch from the current status to it (None: no change)
    events: tuple[Event, ...] = ()
    requeue_after: float | None = None        # time alone changes something (a claim left Pending)
    blocked: status.Verdict | None = None     # cannot progress until the spec changes
    notes: tuple[str, ...] = ()               # what was assumed (for render's comments)


@dataclass(frozen=True)
class FactsQuery:
    """Which facts a decision needs, and what the cluster already holds of them."""

    model_id: str
    revision: str
    job_report: dict | None
    status_facts: dict | None


def owner_of(observed: Observed) -> resources.Owner:
    meta = observed.meta
    return resources.Owner(name=meta["name"], namespace=meta["namespace"], uid=meta.get("uid", ""))


def _job_pods(observed: Observed, job_name: str) -> tuple[dict, ...]:
    return tuple(p for p in observed.pods if ((p.get("metadata") or {}).get("labels") or {}).get("job-name") == job_name)


def facts_query(observed: Observed, spec: api.LLMDeploymentSpec) -> FactsQuery:
    """The model and revision to look up, the download Job's report for this very revision
    (when the cache is on and the Job said), and status.modelFacts."""
    report = None
    if spec.cache.enabled:
        job_name = resources.download_job_name(owner_of(observed), spec)
        report = model_facts.job_report(model_facts.termination_reports(_job_pods(observed, job_name)))
    return FactsQuery(spec.model.id, spec.model.revision, report, (observed.llmd.get("status") or {}).get("modelFacts"))


def _live(child: dict | None) -> dict | None:
    """A trimmed child as the comparisons and the status read it."""
    if child is None:
        return None
    return {"apiVersion": child.get("apiVersion"), "kind": child.get("kind"), "metadata": child["metadata"],
            "spec": child_spec(child), "status": child.get("status") or {}}


def _cache(observed: Observed, owner: resources.Owner, spec: api.LLMDeploymentSpec, now: dt.datetime) -> weights.CacheVerdict:
    claim_name = resources.cache_claim_name(owner)
    job_name = resources.download_job_name(owner, spec)
    job = observed.child("Job", job_name)
    return weights.judge_cache(weights.CacheObserved(
        claim_name=claim_name,
        job_name=job_name,
        storage_class=spec.cache.storage_class_name,
        storage_class_found=weights.storage_class_found(spec.cache.storage_class_name, observed.storage_classes),
        storage_classes=tuple(sorted(sc["name"] for sc in observed.storage_classes)),
        claim=_live(observed.child("PersistentVolumeClaim", claim_name)),
        job=_live(job),
        job_pods=_job_pods(observed, job_name) if job else (),
        now=now,
    ))


def adapters_verdict(checks: list[lora.AdapterCheck]) -> status.Verdict:
    problems = [c.problem for c in checks if c.problem]
    if problems:
        return status.Verdict("False", "BaseModelMismatch", " ".join(problems))
    unknown = [c.adapter.name for c in checks if c.config is None]
    note = f" (not checked: adapter_config.json of {', '.join(unknown)} could not be read)" if unknown else ""
    return status.Verdict("True", "Served", f"Serving {len(checks)} adapter(s){note}.")


def adapters_status(checks: list[lora.AdapterCheck], commits: dict, cached: bool) -> list[dict]:
    out = []
    for c in checks:
        a = c.adapter
        entry = {"name": a.name, "id": a.id, "revision": a.revision, "cached": bool(cached and a.name in commits),
                 "served": not c.problem, "servedAs": (a.name if cached and a.name in commits else a.id) if not c.problem else ""}
        if c.problem:
            entry["message"] = c.problem
        if c.memory_bytes:
            entry["memoryMiB"] = round(c.memory_bytes / 2**20, 1)
        out.append(entry)
    return out


def _owned(child: dict, uid: str) -> bool:
    return any(ref.get("uid") == uid and ref.get("controller") for ref in child["metadata"].get("ownerReferences") or [])


def _prunable(observed: Observed, owner: resources.Owner, desired: list[dict], keep: tuple[str, ...]) -> tuple[dict, ...]:
    """Children we own (our controller reference, not just our label) that are no longer wanted."""
    wanted = {(d["kind"], d["metadata"]["name"]) for d in desired}
    out = []
    for api_version, kind in resources.MANAGED_KINDS:
        if kind in keep:
            continue
        for child in observed.children.get(kind, ()):
            name = child["metadata"]["name"]
            if (kind, name) in wanted or child["metadata"].get("deletionTimestamp") or not _owned(child, owner.uid):
                continue
            out.append({"apiVersion": api_version, "kind": kind, "metadata": {"name": name, "namespace": owner.namespace}})
    return tuple(out)


def rfc3339(now: dt.datetime) -> str:
    return now.astimezone(dt.timezone.utc).strftime("%Y-%m-%dT%H:%M:%SZ")


def decide(observed: Observed, lookups: Lookups, now: dt.datetime) -> Decision:
    meta = observed.meta
    if meta.get("deletionTimestamp") or observed.namespace_terminating:
        # Being deleted (or its namespace is): the garbage collector removes the children.
        return Decision(phase="Terminating")
    owner = owner_of(observed)
    generation = meta.get("generation", 1)
    current = observed.llmd.get("status") or {}
    try:
        spec = api.parse_spec(observed.llmd.get("spec") or {})
    except api.InvalidSpec as err:
        blocked = status.Verdict("False", "InvalidSpec", f"The spec is invalid: {err}")
        return _with_status(Decision(phase="", blocked=blocked), observed, current, now, status.Observed(
            generation=generation, desired_replicas=None, gpus=1, selector=resources.pod_selector(owner), url="",
            deployment=_live(observed.child("Deployment", owner.name)), blocked=blocked))

    conditions: dict[str, status.Verdict] = {}
    notes: list[str] = []
    requeue_after = None
    cache = None
    if spec.cache.enabled:
        cache = _cache(observed, owner, spec, now)
        conditions["WeightsCached"] = cache.condition
        if cache.condition.reason == "ClaimPending" and "has been Pending" not in cache.condition.message:
            requeue_after = weights.CLAIM_PENDING_REPORT_S + 1   # no event would wake us then

    # Planning, with the adapters' memory.
    configs = lookups.adapter_configs

    def adapter_bytes(facts: ModelFacts) -> float:
        return sum(lora.check_adapter(a, configs.get(a.name), spec.model.id, facts).memory_bytes for a in spec.adapters)

    previous = planning.Previous.from_status(current, generation)
    planned = planning.plan_for(spec, lookups.facts, previous, planning.gpu_types_of(list(observed.nodes)), adapter_bytes)
    if not planned.status.get("known"):
        notes.append(planned.status.get("reason", ""))
    facts = ModelFacts.from_dict(planned.facts) if planned.facts else None
    checks = [lora.check_adapter(a, configs.get(a.name), spec.model.id, facts) for a in spec.adapters]
    commits = ((cache.facts or {}).get("adapters") if cache is not None and cache.complete else None) or {}
    lora_entries = lora.lora_entries(checks, commits if spec.cache.enabled else None)
    if spec.adapters:
        conditions["AdaptersReady"] = adapters_verdict(checks)
    blocked, waiting = planned.blocked, planned.waiting
    if blocked is None:
        # What TGI itself would refuse at start: a Stalled status now, not a crash-looping pod.
        refused = engine_for(spec).refusals(spec, planned.gpus, lora_entries, facts)
        if refused:
            blocked = status.Verdict("False", "EngineWouldRefuse",
                                     "TGI would refuse to start with this spec: " + " ".join(refused))
    if lookups.adapters_pending:
        waiting = waiting or status.Verdict("False", "Planning", f"Reading adapter_config.json of "
                                            f"{', '.join(lookups.adapters_pending)} to check their base model.")
    if observed.refused is not None and blocked is None:
        code, message = observed.refused
        verdict = status.Verdict("False", "ApplyRefused", f"The API refused a write (HTTP {code}): {message}")
        if code in PERMANENT_REFUSALS:
            blocked = verdict     # the same write will be refused again: only a change can help
        else:
            waiting = verdict     # conflicts, throttling, server trouble: retried with a backoff
    if blocked is None and cache is not None and not cache.complete:
        if cache.failed:
            blocked = cache.condition
        else:
            waiting = waiting or cache.condition

    desired: list[dict] = []
    prune: tuple[dict, ...] = ()
    if blocked is None:
        serve = waiting is None
        desired = resources.desired_children(owner, spec, resources.Decisions(gpus=planned.gpus, serve=serve, lora=lora_entries))
        # Until it may serve the new spec, whatever serves now goes on serving.
        prune = _prunable(observed, owner, desired, () if serve else ("Deployment", "PodDisruptionBudget"))
    to_apply = tuple(d for d in desired if not up_to_date(d, _live(observed.child(d["kind"], d["metadata"]["name"]))))

    deployment = _live(observed.child("Deployment", owner.name))
    # Serving pods only (the download Job's pods carry no selector label).
    selector = resources.selector_labels(owner)
    pods = tuple(p for p in observed.pods
                 if all(((p.get("metadata") or {}).get("labels") or {}).get(k) == v for k, v in selector.items()))
    # A pod the scheduler cannot place: could any node ever hold it (wait), or none (stalled)?
    no_node_fits = planning.no_node_fits(list(observed.nodes), spec.gpu.resource, planned.gpus, spec.gpu.product,
                                         dict(spec.scheduling.node_selector)) if status.unschedulable_pods(pods) else None
    extra = {"plan": planned.status, "modelFacts": planned.facts,
             # Written by the autoscaler loop; kept here so the reconcile does not remove it.
             "autoscaler": current.get("autoscaler") if spec.autoscaling.mode == "operator" else None,
             "adapters": adapters_status(checks, commits, spec.cache.enabled) or None}
    decision = Decision(phase="", desired=tuple(desired), apply=to_apply, prune=prune, requeue_after=requeue_after,
                        blocked=blocked, notes=tuple(notes))
    return _with_status(decision, observed, current, now, status.Observed(
        generation=generation,
        desired_replicas=spec.replicas,
        gpus=planned.gpus,
        selector=resources.pod_selector(owner),
        url=resources.service_url(owner, spec),
        deployment=deployment,
        pods=pods,
        no_node_fits=no_node_fits,
        blocked=blocked,
        waiting=waiting,
        extra_conditions=conditions,
        extra={k: v for k, v in extra.items() if v is not None},
    ))


def _with_status(decision: Decision, observed: Observed, current: dict, now: dt.datetime,
                 inputs: status.Observed) -> Decision:
    """The status wanted, the patch to it, and one Event when the phase changes."""
    wanted = status.desired_status(inputs, current, rfc3339(now))
    events: tuple[Event, ...] = ()
    if current.get("phase") != wanted["phase"]:
        ready = next(c for c in wanted["conditions"] if c["type"] == "Ready")
        warn = wanted["phase"] in WARNING_PHASES or ready["reason"] in WARNING_REASONS
        events = (Event("Warning" if warn else "Normal", ready["reason"], ready["message"]),)
    return replace(decision, phase=wanted["phase"], status=wanted, status_patch=status.status_patch(current, wanted),
                   events=events)


def with_applied(observed: Observed, written: list[dict], pruned: list[dict]) -> Observed:
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

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

from llm_operator.decide import adapters as lora
from llm_operator import api
from llm_operator.facts import lookup as model_facts
from llm_operator.planning.memory import default_max_total_tokens
from llm_operator.planning import plan as planning
from llm_operator.decide import manifests as resources
from llm_operator.decide import status
from llm_operator.decide import cache as weights
from llm_operator.decide.compare import up_to_date
from llm_operator.engines import engine_for
from llm_operator.facts.hub import ModelFacts
from llm_operator.decide.observed import Observed, Refusal, child_spec, spec_of, trim_child

# Refusals that the same write will meet again (invalid, forbidden, immutable field).
PERMANENT_REFUSALS = (400, 403, 404, 405, 413, 415, 422)
# Phases that are worth a Warning Event rather than a Normal one.
WARNING_PHASES = ("Failed", "Unschedulable")
# Reasons worth a Warning Event in any phase: a container the kubelet is failing to run, or a
# refusal retried by itself that may still need a person (the Service IP range full, a quota).
WARNING_REASONS = ("CrashLoopBackOff", "ErrImagePull", "ImagePullBackOff", "ErrImageNeverPull", "OOMKilled",
                   "CreateContainerConfigError", "ApplyRefused")


# The kinds that run serving pods (one replica a pod, or a group of pods on several nodes),
# and with the PDB what keeps serving while a new spec waits for its weights or its plan.
SERVING_WORKLOADS = ("Deployment", resources.LWS_KIND)
SERVING_KINDS = (*SERVING_WORKLOADS, "PodDisruptionBudget")

LWS_INSTALL = ("kubectl apply --server-side -f "
               "https://github.com/kubernetes-sigs/lws/releases/download/v0.9.0/manifests.yaml")


@dataclass(frozen=True)
class Lookups:
    """What was read outside the cluster for this decision."""

    facts: model_facts.FactsAnswer
    adapter_configs: Mapping[str, dict | None] = field(default_factory=dict)   # name -> config (None: unreadable)
    adapters_pending: tuple[str, ...] = ()                                      # being read from the Hub
    autoscaler: dict | None = None          # status.autoscaler as the autoscaler loop last reported it (None: not yet)


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
    needs_claim: tuple[str, ...] = ()         # kinds in `apply` that mount the cache claim: not made when it could not be
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


@dataclass(frozen=True)
class Writes:
    """What to write of the desired children, and which of them cannot be written."""

    apply: tuple[dict, ...] = ()
    replace: tuple[dict, ...] = ()                          # deleted now, made again once gone
    problems: tuple[tuple[status.Verdict, bool], ...] = ()  # (what to say, whether only a change can help)


def _joined(verdicts: list[status.Verdict]) -> status.Verdict:
    return status.Verdict("False", verdicts[0].reason, " ".join(v.message for v in verdicts))


def _owner_words(child: dict) -> str:
    """Who holds an object, for a message: its controller, else its owners, else nobody."""
    refs = child["metadata"].get("ownerReferences") or []
    ref = next((r for r in refs if r.get("controller")), None) or (refs[0] if refs else None)
    return f"owned by {ref.get('kind')} {ref.get('name')}" if ref else "owned by no controller (made by hand or by another tool)"


def name_conflict(kind: str, name: str, whose: str) -> status.Verdict:
    return status.Verdict("False", "NameConflict", f"{kind}/{name} already exists and is not this LLMDeployment's "
                          f"({whose}): the operator neither changes nor deletes it, and makes no {kind} of its own. "
                          f"Rename or delete that {kind}, or give this LLMDeployment another name.")


def multi_node_problem(observed: Observed, spec: api.LLMDeploymentSpec, gpus: int, nodes: int) -> status.Verdict | None:
    """Why a replica of `nodes` pods cannot be run here: the operator does not run them (its
    LeaderWorkerSet support is off), or too few nodes could ever hold the group."""
    if not observed.multi_node:
        return status.Verdict("False", "MultiNodeOff", (
            f"A replica on {nodes} nodes runs as a LeaderWorkerSet group, and this operator does not make "
            "LeaderWorkerSets: install LeaderWorkerSet in the cluster (" + LWS_INSTALL + ") and enable it in the "
            "operator (Helm value lws.enabled=true, or `llm-operator run --leaderworkersets`); or serve on one "
            "node (spec.nodes: 1, with an 8-bit quantization if the model needs it)."))
    few = planning.no_node_fits(list(observed.nodes), spec.gpu.resource, gpus, spec.gpu.product,
                                dict(spec.scheduling.node_selector), nodes)
    if few is not None:
        return status.Verdict("False", "NoNodeFits", f"Cannot run a replica on {nodes} nodes: {few}")
    return None


def retried(kind: str, refusal: Refusal) -> bool:
    """Whether a refused write is tried again with the queue's backoff (at most a minute
    apart): what may pass by itself (conflicts, throttling, server trouble), and the
    LeaderWorkerSet API missing (installing LWS is a change to the cluster, not the spec:
    the next try finds it). Other 4xx wait for a change or the resync."""
    if refusal.taken_by is not None:
        return False
    return refusal.status not in PERMANENT_REFUSALS or (kind == resources.LWS_KIND and refusal.status == 404)


def refusal_verdict(kind: str, name: str, refusal: Refusal) -> tuple[status.Verdict, bool]:
    if refusal.taken_by is not None:
        return name_conflict(kind, name, refusal.taken_by), True
    if kind == resources.LWS_KIND and refusal.status == 404:
        # The API has no such kind: LeaderWorkerSet's CRD is not installed (or was removed).
        return status.Verdict("False", "LeaderWorkerSetMissing", (
            f"LeaderWorkerSet/{name} cannot be made: this cluster has no LeaderWorkerSet API ({resources.LWS_API_VERSION}; "
            f"HTTP 404: {refusal.message.strip()}). A replica on several nodes needs it: install LeaderWorkerSet "
            f"({LWS_INSTALL}); the operator tries again every minute. Or serve on one node (spec.nodes: 1).")), True
    verdict = status.Verdict("False", "ApplyRefused",
                             f"The API refused a write of {kind}/{name} (HTTP {refusal.status}): {refusal.message}")
    # The same write will be refused again (invalid, forbidden, immutable): only a change can help.
    # Conflicts, throttling, server trouble: retried with a backoff.
    return verdict, refusal.status in PERMANENT_REFUSALS


def _mounting_pods(observed: Observed, serving: tuple[dict, ...], deployment: dict | None) -> tuple[int, int]:
    """(serving pods, running download pods) of ours that mount the cache claim; a Deployment
    asking for replicas counts as its pods to come."""
    wanted = ((deployment or {}).get("spec") or {}).get("replicas", 0) if deployment else 0
    downloads = 0
    for job in observed.children.get("Job", ()):
        if not weights.job_finished(_live(job)):
            downloads += len(_job_pods(observed, job["metadata"]["name"]))
    return max(len(serving), wanted or 0), downloads


def _writes(observed: Observed, owner: resources.Owner, desired: list[dict], serving: tuple[dict, ...],
            deployment: dict | None) -> Writes:
    """Each desired child: apply it, leave it, re-create it, or say why it cannot be written.

    Ownership: only a child the read model holds with our controller reference is applied
    (server-side apply, forced: our fields are ours). One it has never seen is created
    (act POSTs it, so an object of that name made by someone else is refused, never taken
    over); one it holds with another controller (a deleted LLMDeployment's, not yet
    collected) is not touched."""
    apply, replace_, problems = [], [], []
    claim_name = resources.cache_claim_name(owner)
    claim_ok = True      # the claim is ours and stays: what mounts it may be written
    for d in desired:
        kind, name = d["kind"], d["metadata"]["name"]
        live = observed.child(kind, name)
        refusal = observed.refused.get((kind, name))
        if refusal is not None:
            problems.append(refusal_verdict(kind, name, refusal))
        if live is not None and not _owned(live, owner.uid):
            ref = next((r for r in live["metadata"].get("ownerReferences") or [] if r.get("controller")), {})
            if ref.get("kind") == api.KIND and ref.get("name") == owner.name:
                # An earlier LLMDeployment of this name (that uid no longer exists): the garbage
                # collector removes it, and its deletion wakes us to make ours.
                problems.append((status.Verdict("False", "Creating", f"Waiting for the garbage collector to remove "
                                                f"{kind}/{name} of an earlier LLMDeployment of this name."), False))
            else:
                problems.append((name_conflict(kind, name, _owner_words(live)), True))
            claim_ok = claim_ok and kind != "PersistentVolumeClaim"
            continue
        if live is not None and live["metadata"].get("deletionTimestamp"):
            claim_ok = claim_ok and kind != "PersistentVolumeClaim"
            continue     # being deleted (replaced, or by hand): made again when its deletion wakes us
        if kind in ("Job", *SERVING_WORKLOADS) and not claim_ok and any(v["kind"] == "PersistentVolumeClaim" for v in desired):
            continue     # it would mount a claim that is not (or no longer) there
        if kind == "PersistentVolumeClaim" and live is not None:
            changes = weights.claim_changes(d, {"spec": child_spec(live)})
            if changes:
                pods, downloads = _mounting_pods(observed, serving, deployment)
                if pods or downloads:
                    problems.append((status.Verdict("False", "ClaimImmutable", (
                        f"The cache volume claim {claim_name} cannot change in place ({'; '.join(changes)}): it must be "
                        f"deleted and made again, and the weights downloaded again. {pods} serving and {downloads} "
                        f"download pod(s) of this LLMDeployment mount it, so it is left as it is and they go on. To "
                        f"replace it, scale to zero (spec.replicas: 0): the operator then deletes and re-creates the "
                        f"claim and downloads again; scale back up once WeightsCached is True. Or undo the change.")), True))
                else:
                    # No pod of ours mounts it: replace it, and the Jobs whose downloads it held.
                    claim_ok = False
                    replace_.append(_ref(d))
                    replace_ += [_ref(j) for j in observed.children.get("Job", ()) if _owned(j, owner.uid)
                                 and not j["metadata"].get("deletionTimestamp")]
                continue
        if kind == "Job" and live is not None:
            if weights.job_complete(_live(live)):
                # Done: what it downloads is in its name (a new model, revision or adapter is a
                # new Job), so no other field is worth downloading again for.
                continue
            want = d["metadata"]["annotations"][resources.TEMPLATE_HASH_ANNOTATION]
            if (live["metadata"].get("annotations") or {}).get(resources.TEMPLATE_HASH_ANNOTATION) != want:
                # A Job's pod template is immutable: a download still to do is re-created (the
                # old pod gone first, so that two never write the same files).
                replace_.append({**_ref(d), "propagationPolicy": "Foreground"})
                continue
        if not up_to_date(d, _live(live)):
            apply.append(d)
    wanted = {(d["kind"], d["metadata"]["name"]) for d in desired}
    problems += [refusal_verdict(k, n, r) for (k, n), r in sorted(observed.refused.items()) if (k, n) not in wanted]
    replaced = {(r["kind"], r["metadata"]["name"]) for r in replace_}
    return Writes(apply=tuple(a for a in apply if (a["kind"], a["metadata"]["name"]) not in replaced),
                  replace=tuple(replace_), problems=tuple(problems))


def _ref(obj: dict) -> dict:
    return {"apiVersion": obj["apiVersion"], "kind": obj["kind"],
            "metadata": {"name": obj["metadata"]["name"], "namespace": obj["metadata"].get("namespace", "")}}


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
    spec = spec_of(observed)
    if isinstance(spec, api.InvalidSpec):
        blocked = status.Verdict("False", "InvalidSpec", f"The spec is invalid: {spec}")
        return _with_status(Decision(phase="", blocked=blocked), observed, current, now, status.Observed(
            generation=generation, desired_replicas=None, gpus=1, selector=resources.pod_selector(owner), url="",
            deployment=_live(observed.child("Deployment", owner.name)), blocked=blocked, woken_at=woken_at(observed)))

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
        engine = engine_for(spec)
        refused = engine.refusals(spec, planned.gpus, lora_entries, facts)
        if refused:
            blocked = status.Verdict("False", "EngineWouldRefuse",
                                     f"{engine.display_name} would refuse to start with this spec: "
                                     + " ".join(refused))
    if lookups.adapters_pending:
        waiting = waiting or status.Verdict("False", "Planning", f"Reading adapter_config.json of "
                                            f"{', '.join(lookups.adapters_pending)} to check their base model.")
    nodes = planned.nodes
    if blocked is None and nodes > 1:
        blocked = multi_node_problem(observed, spec, planned.gpus, nodes)
    if blocked is None and cache is not None and not cache.complete:
        if cache.failed:
            blocked = cache.condition
        else:
            waiting = waiting or cache.condition

    workload = resources.workload_kind(nodes)
    deployment = _live(observed.child(workload, owner.name))
    # Serving pods only (the download Job's pods carry no selector label).
    selector = resources.selector_labels(owner)
    pods = tuple(p for p in observed.pods
                 if all(((p.get("metadata") or {}).get("labels") or {}).get(k) == v for k, v in selector.items()))

    desired: list[dict] = []
    prune: tuple[dict, ...] = ()
    writes = Writes()
    if blocked is None:
        serve = waiting is None
        served = [c for c in checks if not c.problem]
        # Only when every served adapter's rank is known (an unread config leaves vLLM its default).
        lora_rank = (max(int(c.config.get("r") or 8) for c in served)
                     if served and all(c.config is not None for c in served) else None)
        tokens = spec.limits.max_total_tokens or (default_max_total_tokens(facts) if facts else None)
        desired = resources.desired_children(owner, spec, resources.Decisions(
            gpus=planned.gpus, nodes=nodes, serve=serve, lora=lora_entries, lora_rank=lora_rank, max_total_tokens=tokens,
            checkpoint_quantization=facts.quant_method if facts else None))
        # Until it may serve the new spec, whatever serves now goes on serving.
        prune = _prunable(observed, owner, desired, () if serve else SERVING_KINDS)
        writes = _writes(observed, owner, desired, pods, deployment)
        prune = tuple(p for p in prune if (p["kind"], p["metadata"]["name"]) not in
                      {(r["kind"], r["metadata"]["name"]) for r in writes.replace}) + writes.replace
    to_apply = writes.apply
    # A child this generation could not write: said in status, the others written all the same.
    stalled = [v for v, permanent in writes.problems if permanent]
    held = [v for v, permanent in writes.problems if not permanent]
    if stalled and blocked is None:
        blocked = _joined(stalled)
    elif held and blocked is None:
        waiting = _joined(held) if waiting is None else waiting
    # A pod the scheduler cannot place: could any node ever hold it (wait), or none (stalled)?
    no_node_fits = planning.no_node_fits(list(observed.nodes), spec.gpu.resource, planned.gpus, spec.gpu.product,
                                         dict(spec.scheduling.node_selector), nodes) \
        if status.unschedulable_pods(pods) else None
    extra = {"engine": spec.engine.name, "nodes": nodes if nodes > 1 else None,
             "plan": planned.status, "modelFacts": planned.facts,
             # The autoscaler's state as of its last change of a timer (its loop hands it over in
             # the lookups); until it has, the one in status stays (a restarted operator goes on from it).
             "autoscaler": (lookups.autoscaler if lookups.autoscaler is not None else current.get("autoscaler"))
             if spec.autoscaling.mode == "operator" else None,
             "adapters": adapters_status(checks, commits, spec.cache.enabled) or None}
    decision = Decision(phase="", desired=tuple(desired), apply=to_apply, prune=prune, requeue_after=requeue_after,
                        blocked=blocked, notes=tuple(notes),
                        needs_claim=("Job", *SERVING_WORKLOADS) if spec.cache.enabled else ())
    return _with_status(decision, observed, current, now, status.Observed(
        generation=generation,
        desired_replicas=spec.replicas,
        gpus=planned.gpus,
        selector=resources.pod_selector(owner, nodes),
        url=resources.service_url(owner, spec),
        deployment=deployment,
        workload=workload,
        group_size=nodes,
        pods=pods,
        no_node_fits=no_node_fits,
        blocked=blocked,
        waiting=waiting,
        extra_conditions=conditions,
        extra={k: v for k, v in extra.items() if v is not None},
        behind=bool(writes.problems),
        sleeps_at_zero=spec.autoscaling.mode == "operator" and spec.autoscaling.min_replicas == 0,
        woken_at=woken_at(observed),
    ))


def woken_at(observed: Observed) -> str | None:
    """When the gateway last woke this model from zero, if its annotation holds a time."""
    text = (observed.meta.get("annotations") or {}).get(api.WOKEN_ANNOTATION)
    return text if status.instant(text) is not None else None


def _with_status(decision: Decision, observed: Observed, current: dict, now: dt.datetime,
                 inputs: status.Observed) -> Decision:
    """The status wanted, the patch to it, and one Event when the phase or Ready's reason changes."""
    wanted = status.desired_status(inputs, current, rfc3339(now))
    events: tuple[Event, ...] = ()
    ready = next(c for c in wanted["conditions"] if c["type"] == "Ready")
    was = next((c.get("reason") for c in current.get("conditions") or [] if c.get("type") == "Ready"), None)
    if current.get("phase") != wanted["phase"] or was != ready["reason"]:
        warning = wanted["phase"] in WARNING_PHASES or ready["reason"] in WARNING_REASONS
        events = (Event("Warning" if warning else "Normal", ready["reason"], ready["message"]),)
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

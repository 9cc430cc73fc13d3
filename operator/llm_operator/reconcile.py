"""One reconcile of one LLMDeployment: manifest -> spec -> plan -> children -> status.

Each arrow is a call into its own module; this function only strings them together and
does the I/O between them. It is level-triggered: whatever woke it (a change to the
LLMDeployment, an event on a child, a restart), it computes the whole desired state,
writes only what differs, and reports.
"""

from __future__ import annotations

import datetime as dt
import logging
import threading
from dataclasses import dataclass

from . import adapters as lora, api, metrics, planning, resources, status, weights
from .modelinfo import ModelFacts
from .apply import Kube, KubeError, sync_children

log = logging.getLogger(__name__)

FACTS = planning.FactsSource()
ADAPTER_CONFIGS = planning.FactsSource(fetch=lora.adapter_config_from_hub)
_inventory: planning.GpuInventory | None = None


def gpu_inventory(kube: Kube) -> planning.GpuInventory:
    global _inventory
    if _inventory is None:
        _inventory = planning.GpuInventory(lambda: kube.list("v1", "Node", None))
    return _inventory


@dataclass
class _Turn:
    lock: threading.Lock
    waiting: bool = False


_turns: dict[tuple[str, str], _Turn] = {}
_turns_guard = threading.Lock()


# Objects pruned since this process started. What we own stops being wanted only when
# the spec changes (a new generation), so a reconcile for any other reason lists nothing.
_pruned: set[tuple[str, str]] = set()


def must_prune(owner: resources.Owner, current: dict, generation: int) -> bool:
    return current.get("observedGeneration") != generation or (owner.namespace, owner.name) not in _pruned


def adapter_configs(spec: api.LLMDeploymentSpec, when_ready) -> tuple[dict[str, dict | None], status.Verdict | None]:
    """adapter_config.json of each adapter (None when it cannot be read), and a waiting
    verdict while some are still being read."""
    configs: dict[str, dict | None] = {}
    pending = []
    for a in spec.adapters:
        try:
            configs[a.name] = ADAPTER_CONFIGS.get(a.id, a.revision, when_ready)
        except planning.FactsPending:
            pending.append(a.name)
        except planning.modelinfo.ModelFactsUnavailable:
            configs[a.name] = None
    if pending:
        msg = f"Reading adapter_config.json of {', '.join(pending)} to check their base model."
        return configs, status.Verdict("False", "Planning", msg)
    return configs, None


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


def observe_cache(kube: Kube, owner: resources.Owner, spec: api.LLMDeploymentSpec) -> weights.CacheObserved:
    claim_name = resources.cache_claim_name(owner)
    job_name = resources.download_job_name(owner, spec)
    job = kube.get("batch/v1", "Job", owner.namespace, job_name)
    return weights.CacheObserved(
        claim_name=claim_name,
        job_name=job_name,
        storage_class=spec.cache.storage_class_name,
        storage_class_found=storage_class_found(kube, spec.cache.storage_class_name),
        claim=kube.get("v1", "PersistentVolumeClaim", owner.namespace, claim_name),
        job=job,
        job_pods=tuple(kube.list("v1", "Pod", owner.namespace, f"job-name={job_name}")) if job else (),
        now=dt.datetime.now(dt.timezone.utc),
    )


def storage_class_found(kube: Kube, name: str) -> bool:
    """The named StorageClass exists; with no name, the cluster has a default one."""
    if name:
        return kube.get("storage.k8s.io/v1", "StorageClass", None, name) is not None
    default = "storageclass.kubernetes.io/is-default-class"
    return any((sc["metadata"].get("annotations") or {}).get(default) == "true"
               for sc in kube.list("storage.k8s.io/v1", "StorageClass", None))


_rechecks: set[tuple[str, str]] = set()


def recheck_later(kube: Kube, owner: resources.Owner, delay_s: float) -> None:
    """Reconcile again after a delay, for what changes with time alone (a claim left
    Pending), once: no event would wake us then."""
    key = (owner.namespace, owner.name)
    with _turns_guard:
        if key in _rechecks:
            return
        _rechecks.add(key)

    def fire() -> None:
        with _turns_guard:
            _rechecks.discard(key)
        reconcile(kube, *key)

    timer = threading.Timer(delay_s, fire)
    timer.daemon = True
    timer.start()


def event(kube: Kube, body: dict, type_: str, reason: str, message: str) -> None:
    """An Event for `kubectl describe`; losing one is not worth failing a reconcile for."""
    meta = body["metadata"]
    involved = {"apiVersion": api.API_VERSION, "kind": api.KIND, "name": meta["name"],
                "namespace": meta["namespace"], "uid": meta["uid"]}
    try:
        kube.post_event(involved, type_, reason, message, now_rfc3339())
        metrics.WRITES.labels("Event", "create").inc()
    except KubeError as err:
        log.warning("could not post Event %s on %s/%s: %s", reason, meta["namespace"], meta["name"], err)


def now_rfc3339() -> str:
    return dt.datetime.now(dt.timezone.utc).strftime("%Y-%m-%dT%H:%M:%SZ")


@dataclass
class Outcome:
    phase: str
    written: list[str]
    blocked: status.Verdict | None


def reconcile(kube: Kube, namespace: str, name: str) -> Outcome | None:
    """Reconcile one LLMDeployment by name, reading it afresh.

    One reconcile at a time per object (child events arrive on several threads). A
    request that finds another already waiting returns None at once: the waiter reads
    the object after it gets its turn, so it sees everything this request would have.
    """
    with _turns_guard:
        turn = _turns.setdefault((namespace, name), _Turn(threading.Lock()))
        if turn.waiting:
            return None
        turn.waiting = True
    with turn.lock:
        with _turns_guard:
            turn.waiting = False
        body = kube.get(api.API_VERSION, api.KIND, namespace, name)
        if body is None or body["metadata"].get("deletionTimestamp"):
            with _turns_guard:
                if not turn.waiting:
                    _turns.pop((namespace, name), None)
                _pruned.discard((namespace, name))
            return None
        with metrics.RECONCILE_SECONDS.time():
            outcome = _reconcile(kube, body)
        metrics.RECONCILES.labels(outcome.phase).inc()
        return outcome


@dataclass
class Planned:
    """What planning concluded: GPUs per replica, whether it may go on, the adapters to
    serve, and its part of the status."""

    gpus: int
    blocked: status.Verdict | None
    waiting: status.Verdict | None
    lora: tuple[str, ...]
    conditions: dict[str, status.Verdict]
    status: dict


def plan_step(kube: Kube, owner: resources.Owner, spec: api.LLMDeploymentSpec, current: dict, generation: int,
              cache: weights.CacheVerdict | None) -> Planned:
    # Facts and adapter configs read in the background come back as a fresh reconcile.
    again = lambda: reconcile(kube, owner.namespace, owner.name)  # noqa: E731
    previous = planning.Previous.from_status(current, generation)
    if cache is not None and cache.facts and not previous.facts:
        # The download Job reported the facts: plan from them, no Hub needed.
        previous = planning.Previous(facts=cache.facts, plan=previous.plan, gpus=previous.gpus)
    configs, adapters_waiting = adapter_configs(spec, again)

    def adapter_bytes(facts: ModelFacts) -> float:
        return sum(lora.check_adapter(a, configs.get(a.name), spec.model.id, facts).memory_bytes for a in spec.adapters)

    outcome = planning.plan_for(spec, previous, FACTS, gpu_inventory(kube).types(), again, adapter_bytes)
    facts = ModelFacts.from_dict(outcome.facts) if outcome.facts else None
    checks = [lora.check_adapter(a, configs.get(a.name), spec.model.id, facts) for a in spec.adapters]
    commits = ((cache.facts or {}).get("adapters") if cache is not None and cache.complete else None) or {}
    return Planned(
        gpus=outcome.gpus,
        blocked=outcome.blocked,
        waiting=outcome.waiting or adapters_waiting,
        lora=lora.lora_entries(checks, commits if spec.cache.enabled else None),
        conditions={"AdaptersReady": adapters_verdict(checks)} if spec.adapters else {},
        status={"plan": outcome.status, "modelFacts": outcome.facts,
                # Written by the autoscaler loop; kept here so the reconcile does not remove it.
                "autoscaler": current.get("autoscaler") if spec.autoscaling.mode == "operator" else None,
                "adapters": adapters_status(checks, commits, spec.cache.enabled) or None},
    )


def _reconcile(kube: Kube, body: dict) -> Outcome:
    meta = body["metadata"]
    owner = resources.Owner(name=meta["name"], namespace=meta["namespace"], uid=meta["uid"])
    generation = meta.get("generation", 1)
    blocked: status.Verdict | None = None
    written: list[str] = []
    try:
        spec = api.parse_spec(body.get("spec") or {})
    except api.InvalidSpec as err:
        spec = None
        blocked = status.Verdict("False", "InvalidSpec", f"The spec is invalid: {err}")

    current = body.get("status") or {}
    conditions: dict[str, status.Verdict] = {}
    cache = None
    if spec is not None and spec.cache.enabled:
        cache = weights.judge_cache(observe_cache(kube, owner, spec))
        conditions["WeightsCached"] = cache.condition
        if cache.condition.reason == "ClaimPending" and "has been Pending" not in cache.condition.message:
            recheck_later(kube, owner, weights.CLAIM_PENDING_REPORT_S + 1)
    planned = Planned(gpus=1, blocked=blocked, waiting=None, lora=(), conditions={}, status={})
    if spec is not None:
        planned = plan_step(kube, owner, spec, current, generation, cache)
    gpus, blocked, waiting = planned.gpus, planned.blocked, planned.waiting
    conditions.update(planned.conditions)
    deployment = None
    pods: tuple[dict, ...] = ()
    prunable: tuple[tuple[str, str], ...] = ()
    keep: tuple[str, ...] = ()
    if spec is not None and blocked is None:
        if cache is not None and not cache.complete:
            if cache.failed:
                blocked = cache.condition
            else:
                waiting = waiting or cache.condition
        serve = blocked is None and waiting is None
        desired = resources.desired_children(owner, spec, resources.Decisions(gpus=gpus, serve=serve, lora=planned.lora))
        # Until it may serve the new spec, whatever serves now goes on serving.
        keep = () if serve else ("Deployment", "PodDisruptionBudget")
        prunable = tuple(k for k in resources.MANAGED_KINDS if k[1] not in keep) if must_prune(owner, current, generation) else ()
        try:
            result = sync_children(kube, owner.namespace, owner.name, desired, prunable)
        except KubeError as err:
            if err.status == 403 and "NamespaceTerminating" in err.body:
                return Outcome(phase="Terminating", written=[], blocked=None)
            raise
        written = result.written
        deployment = result.live.get("Deployment")
    if deployment is None and spec is not None:
        # Not (yet) made for this spec: what already serves is still reported.
        deployment = kube.get("apps/v1", "Deployment", owner.namespace, owner.name)
    if deployment is not None and not status.settled(deployment):
        # The scheduler's messages are on the pods; a settled Deployment has none to tell.
        pods = tuple(kube.list("v1", "Pod", owner.namespace, resources.pod_selector(owner)))

    observed = status.Observed(
        generation=generation,
        desired_replicas=spec.replicas if spec is not None else None,
        gpus=gpus,
        selector=resources.pod_selector(owner),
        url=resources.service_url(owner, spec) if spec else "",
        deployment=deployment,
        pods=pods,
        blocked=blocked,
        waiting=waiting,
        extra_conditions=conditions,
        extra={k: v for k, v in planned.status.items() if v is not None},
    )
    desired_status = status.desired_status(observed, current, now_rfc3339())
    patch = status.status_patch(current, desired_status)
    if prunable and not keep:
        _pruned.add((owner.namespace, owner.name))
    if patch is not None:
        try:
            log.debug("%s/%s: status patch %s", owner.namespace, owner.name, patch)
            kube.patch_status(owner.namespace, owner.name, patch)
            metrics.WRITES.labels(api.KIND, "patch-status").inc()
        except KubeError as err:
            if err.status != 404:   # deleted meanwhile: nothing to report on
                raise
        if current.get("phase") != desired_status["phase"]:
            ready = next(c for c in desired_status["conditions"] if c["type"] == "Ready")
            log.info("%s/%s: %s -> %s: %s", owner.namespace, owner.name, current.get("phase"),
                     desired_status["phase"], ready["message"])
            warn = desired_status["phase"] in ("Failed", "Unschedulable")
            event(kube, body, "Warning" if warn else "Normal", ready["reason"], ready["message"])
    if written:
        event(kube, body, "Normal", "Applied", "Applied " + ", ".join(written) + ".")
    for w in written:
        metrics.WRITES.labels(w.lstrip("-").split("/")[0], "delete" if w.startswith("-") else "apply").inc()
    if written:
        log.info("%s/%s: wrote %s", owner.namespace, owner.name, ", ".join(written))
    return Outcome(phase=desired_status["phase"], written=written, blocked=blocked)

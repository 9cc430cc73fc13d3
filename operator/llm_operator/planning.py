"""Between the reconcile and the pure planner: model facts once per model revision, the GPU
types the cluster has, and the plan turned into a GPU count, a status block and a verdict.

Facts come from the Hub once per (model, revision) and are kept in status.modelFacts, so
neither a reconcile nor an operator restart fetches them again. When they cannot be had
(an offline cluster, a gated model: the operator never reads the token), the operator goes
on with the user's gpus and says the plan is unknown.
"""

from __future__ import annotations

import logging
import threading
import time
from dataclasses import dataclass

from . import api, modelinfo, planner
from .status import Verdict

log = logging.getLogger(__name__)

# A failed fetch is not retried for this long: a reconcile must not wait on the Hub each time.
FACTS_RETRY_S = 600
NODES_TTL_S = 60


@dataclass(frozen=True)
class PlanOutcome:
    gpus: int                          # per replica, to use
    status: dict                       # status.plan
    facts: dict | None                 # status.modelFacts
    blocked: Verdict | None = None     # DoesNotFit / InvalidSharding
    waiting: Verdict | None = None     # facts still being read


class FactsPending(Exception):
    """The facts are being read in the background; the caller is called back when done."""


class FactsSource:
    """Model facts by (id, revision), read in the background so that no reconcile thread
    waits on the Hub (huggingface-hub retries an unreachable Hub for about 20 s), and
    failures remembered for a while."""

    def __init__(self, fetch=modelinfo.facts_from_hub, retry_s: float = FACTS_RETRY_S):
        self._fetch = fetch
        self._retry_s = retry_s
        self._facts: dict[tuple[str, str], modelinfo.ModelFacts] = {}
        self._failures: dict[tuple[str, str], tuple[float, str]] = {}
        self._waiters: dict[tuple[str, str], list] = {}
        self._lock = threading.Lock()

    def get(self, model_id: str, revision: str, when_ready=None) -> modelinfo.ModelFacts:
        """The facts, or ModelFactsUnavailable, or FactsPending (then `when_ready()` is
        called once the outcome is known)."""
        key = (model_id, revision)
        with self._lock:
            if key in self._facts:
                return self._facts[key]
            failed = self._failures.get(key)
            if failed and time.monotonic() - failed[0] < self._retry_s:
                raise modelinfo.ModelFactsUnavailable(failed[1])
            first = key not in self._waiters
            waiters = self._waiters.setdefault(key, [])
            if when_ready is not None:
                waiters.append(when_ready)
        if first:
            threading.Thread(target=self._read, args=(key,), name=f"facts-{model_id}", daemon=True).start()
        raise FactsPending()

    def _read(self, key: tuple[str, str]) -> None:
        try:
            facts = self._fetch(*key)
        except modelinfo.ModelFactsUnavailable as err:
            with self._lock:
                self._failures[key] = (time.monotonic(), str(err))
        except Exception as err:  # noqa: BLE001 - any failure of the Hub client means "unknown", logged
            log.warning("reading facts of %s@%s failed: %r", *key, err)
            with self._lock:
                self._failures[key] = (time.monotonic(), f"Reading the model's facts failed: {err}.")
        else:
            with self._lock:
                self._facts[key] = facts
                self._failures.pop(key, None)
        with self._lock:
            waiters = self._waiters.pop(key, [])
        for callback in waiters:
            callback()


class GpuInventory:
    """GPU types of the cluster's nodes (from GPU feature discovery labels), cached briefly."""

    def __init__(self, list_nodes, ttl_s: float = NODES_TTL_S):
        self._list_nodes = list_nodes
        self._ttl_s = ttl_s
        self._at = -1e9
        self._types: list[planner.GpuType] = []
        self._lock = threading.Lock()

    def types(self) -> list[planner.GpuType]:
        with self._lock:
            if time.monotonic() - self._at > self._ttl_s:
                self._types = gpu_types_of(self._list_nodes())
                self._at = time.monotonic()
            return list(self._types)


def gpu_types_of(nodes: list[dict]) -> list[planner.GpuType]:
    """Distinct GPU types among the nodes, largest memory first."""
    seen: dict[str, planner.GpuType] = {}
    for node in nodes:
        try:
            gpu = planner.gpu_type_from_node_labels((node.get("metadata") or {}).get("labels") or {})
        except planner.UnknownGpuType:
            continue
        if gpu is not None:
            seen[gpu.name] = gpu
    return sorted(seen.values(), key=lambda g: -g.memory_mib)


def gpu_for(spec: api.LLMDeploymentSpec, cluster_types: list[planner.GpuType]) -> planner.GpuType | None:
    """The GPU to plan for: the product asked for (with the memory its nodes report), else the
    largest GPU in the cluster, so that a model is only refused when it fits nowhere."""
    if spec.gpu.product:
        for gpu in cluster_types:
            if spec.gpu.product in gpu.products:
                return gpu
        try:
            return planner.gpu_type_for(spec.gpu.product)
        except planner.UnknownGpuType:
            return None
    return cluster_types[0] if cluster_types else None


def facts_for(spec: api.LLMDeploymentSpec, previous: dict | None, source: FactsSource,
              when_ready=None) -> modelinfo.ModelFacts:
    """The facts kept in status when they are for this model and revision, else read."""
    if previous and previous.get("modelId") == spec.model.id and previous.get("revision") == spec.model.revision:
        return modelinfo.ModelFacts.from_dict(previous)
    return source.get(spec.model.id, spec.model.revision, when_ready)


def plan_for(spec: api.LLMDeploymentSpec, previous: Previous, source: FactsSource,
             cluster_types: list[planner.GpuType], when_ready=None, adapter_bytes=None) -> PlanOutcome:
    """`adapter_bytes(facts)`: memory of the LoRA adapters to serve, counted into the plan."""
    fallback = spec.gpus or 1
    try:
        facts = facts_for(spec, previous.facts, source, when_ready)
    except FactsPending:
        if previous.plan is not None and previous.gpus:
            # Planned already for this very spec (the operator restarted): the plan stands
            # while the facts are read again, so a restart changes and writes nothing.
            return PlanOutcome(previous.gpus, previous.plan, None)
        msg = f"Reading the facts of {spec.model.id}@{spec.model.revision} from the Hub to plan GPU memory."
        return PlanOutcome(fallback, {**unknown_plan(msg), "pending": True}, None, waiting=Verdict("False", "Planning", msg))
    except modelinfo.ModelFactsUnavailable as err:
        return PlanOutcome(fallback, unknown_plan(f"The plan is unknown: {err} Going on with {fallback} GPU(s) per replica."), None, None)
    gpu = gpu_for(spec, cluster_types)
    if gpu is None:
        what = f"GPU product {spec.gpu.product}" if spec.gpu.product else "any GPU node in the cluster"
        return PlanOutcome(fallback, unknown_plan(f"The plan is unknown: the memory of {what} is not known. Going on with {fallback} GPU(s) per replica."),
                           facts.to_dict(), None)
    result = planner.plan(planner.PlanRequest(
        # A product the table lacks is planned by the memory its nodes report.
        facts=facts, quantization=spec.quantization,
        gpu_type=gpu.name if gpu.name in planner.GPU_TYPES else None, gpu_memory_gib=gpu.memory_gib,
        gpus=spec.gpus, max_total_tokens=spec.limits.max_total_tokens,
        adapter_bytes=adapter_bytes(facts) if adapter_bytes else 0.0))
    blocked = None if result.fits else Verdict("False", result.status, result.reason)
    return PlanOutcome(result.num_shard, {**result.to_status(), "known": True}, facts.to_dict(), blocked)


@dataclass(frozen=True)
class Previous:
    """What status says was planned; `plan` and `gpus` only when they were for this generation."""

    facts: dict | None = None
    plan: dict | None = None
    gpus: int | None = None

    @classmethod
    def from_status(cls, status: dict, generation: int) -> "Previous":
        plan = status.get("plan") or {}
        if status.get("observedGeneration") != generation or plan.get("pending"):
            return cls(facts=status.get("modelFacts"))
        return cls(facts=status.get("modelFacts"), plan=status.get("plan"), gpus=status.get("gpus"))


def unknown_plan(reason: str) -> dict:
    return {"known": False, "reason": reason}

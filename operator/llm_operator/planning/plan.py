"""Between the facts and the pure planner: the GPU types the cluster has, and the plan
turned into a GPU count, a status block and a verdict. Pure.

The facts come from facts.lookup (the download Job's report, status.modelFacts for the same
revision, the Hub, or the catalog). When none has them (an offline cluster, a gated model
the catalog does not know: the operator never reads the token), the operator goes on with
the user's gpus and says the plan is unknown.
"""

from __future__ import annotations

import functools
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from llm_common import vllm_rules
from llm_common.modelfacts import ModelFacts
from llm_common.words import plural
from llm_operator import api
from llm_operator.api.conditions import Verdict
from llm_operator.engines import vllm
from llm_operator.facts.answers import PENDING, FactsAnswer, source_phrase, status_facts_of
from llm_operator.planning.admission import Cluster
from llm_operator.planning.gpus import (
    GPU_MEMORY_LABEL,
    GPU_PRODUCT_LABEL,
    GPU_TYPES,
    GpuType,
    UnknownGpuType,
    gpu_type_for,
    gpu_type_from_node_labels,
)
from llm_operator.planning.planner import PlanRequest, plan


@dataclass(frozen=True)
class PlanOutcome:
    gpus: int  # per pod, to use
    status: dict[str, Any]  # status.plan
    facts: dict[str, Any] | None  # status.modelFacts
    blocked: Verdict | None = None  # DoesNotFit / InvalidSharding
    waiting: Verdict | None = None  # facts still being read
    nodes: int = 1  # per replica: above 1, a group of one pod per node


def gpu_types_of(nodes: list[dict[str, Any]]) -> list[GpuType]:
    """Distinct GPU types among the nodes, largest memory first."""
    labels = {
        (labels_of.get(GPU_PRODUCT_LABEL), labels_of.get(GPU_MEMORY_LABEL))
        for labels_of in (((n.get("metadata") or {}).get("labels") or {}) for n in nodes)
    }
    return list(_gpu_types(frozenset(labels)))


@functools.lru_cache(maxsize=64)
def _gpu_types(labels: frozenset[tuple[str | None, str | None]]) -> tuple[GpuType, ...]:
    """(Every reconcile asks; the nodes' GPU labels rarely change.)"""
    seen: dict[str, GpuType] = {}
    for product, memory in labels:
        try:
            gpu = gpu_type_from_node_labels(
                {k: v for k, v in ((GPU_PRODUCT_LABEL, product), (GPU_MEMORY_LABEL, memory)) if v}
            )
        except UnknownGpuType:
            continue
        if gpu is not None:
            seen[gpu.name] = gpu
    return tuple(sorted(seen.values(), key=lambda g: -g.memory_mib))


def gpu_for(spec: api.LLMDeploymentSpec, cluster_types: list[GpuType]) -> GpuType | None:
    """The GPU to plan for: the product asked for (with the memory its nodes report), else the
    largest GPU in the cluster, so that a model is only refused when it fits nowhere."""
    if spec.gpu.product:
        for gpu in cluster_types:
            if spec.gpu.product in gpu.products:
                return gpu
        try:
            return gpu_type_for(spec.gpu.product)
        except UnknownGpuType:
            return None
    return cluster_types[0] if cluster_types else None


def plan_for(
    spec: api.LLMDeploymentSpec,
    answer: FactsAnswer,
    previous: Previous,
    cluster_types: list[GpuType],
    adapter_bytes: Callable[[ModelFacts], float] | None = None,
    cluster: Cluster | None = None,
) -> PlanOutcome:
    """The plan for the facts `answer` gives. `adapter_bytes(facts)`: memory of the LoRA
    adapters to serve, counted into the plan. `cluster`: the nodes the pods may use, so that
    a plan that does not fit names only remedies they can carry out."""
    fallback = spec.gpus or 1
    nodes = spec.nodes or 1
    if answer.source == PENDING:
        if previous.plan is not None and previous.gpus:
            # Planned already for this very spec (the operator restarted): the plan stands
            # while the facts are read again, so a restart changes and writes nothing.
            return PlanOutcome(previous.gpus, previous.plan, None, nodes=previous.nodes or nodes)
        return PlanOutcome(
            fallback,
            {**unknown_plan(answer.message), "pending": True},
            None,
            waiting=Verdict("False", "Planning", answer.message),
            nodes=nodes,
        )
    facts = answer.facts
    if facts is None and answer.missing and spec.model.token_secret_ref is None:
        # The Hub says no such model (or revision): GPUs for it would be spent for nothing.
        # With a token the operator never reads, a private repository answers the same, so
        # then the pods (which have the token) are the judge.
        message = (
            f"{answer.message} Nothing is deployed for {spec.model.id}@{spec.model.revision} "
            "until spec.model names a model and revision the Hub has."
        )
        return PlanOutcome(
            fallback, unknown_plan(answer.message), None, blocked=Verdict("False", answer.missing, message), nodes=nodes
        )
    going_on = (
        f"Going on with {plural(fallback, 'GPU')} per pod on {plural(nodes, 'node')} per replica."
        if nodes > 1
        else f"Going on with {plural(fallback, 'GPU')} per replica."
    )
    if facts is None:
        return PlanOutcome(
            fallback, unknown_plan(f"The plan is unknown: {answer.message} {going_on}"), None, None, nodes=nodes
        )
    gpu = gpu_for(spec, cluster_types)
    kept = status_facts_of(answer)
    if gpu is None:
        what = f"GPU product {spec.gpu.product}" if spec.gpu.product else "any GPU node in the cluster"
        return PlanOutcome(
            fallback,
            unknown_plan(f"The plan is unknown: the memory of {what} is not known. {going_on}"),
            kept,
            None,
            nodes=nodes,
        )
    on_vllm = spec.engine.name == vllm.ENGINE.name
    result = plan(
        PlanRequest(
            # A product the table lacks is planned by the memory its nodes report.
            facts=facts,
            quantization=spec.quantization,
            gpu_type=gpu.name if gpu.name in GPU_TYPES else None,
            gpu_memory_gib=gpu.memory_gib,
            gpus=spec.gpus,
            max_total_tokens=spec.limits.max_total_tokens,
            # vLLM may span nodes (the planner picks how many when the spec leaves it out); TGI may not.
            nodes=spec.nodes if on_vllm else 1,
            adapter_bytes=adapter_bytes(facts) if adapter_bytes else 0.0,
            engine=spec.engine.name,
            # vLLM's share of each GPU and its batch, as the pods will be told them.
            gpu_memory_utilization=_utilization(spec) if on_vllm else None,
            max_batch_tokens=spec.limits.max_batch_prefill_tokens if on_vllm else None,
            cluster=cluster,
        )
    )
    # The verdict names where the facts came from (the Hub, the catalog, the weights).
    reason = f"{result.reason} {source_phrase(answer)}"
    blocked = None if result.fits else Verdict("False", result.status, reason)
    return PlanOutcome(
        result.num_shard,
        {**result.to_status(), "reason": reason, "known": True, "source": answer.source},
        kept,
        blocked,
        nodes=result.nodes,
    )


@dataclass(frozen=True)
class Previous:
    """What status says was planned, when it was for this generation."""

    plan: dict[str, Any] | None = None
    gpus: int | None = None
    nodes: int | None = None

    @classmethod
    def from_status(cls, status: dict[str, Any], generation: int) -> Previous:
        plan = status.get("plan") or {}
        if status.get("observedGeneration") != generation or plan.get("pending"):
            return cls()
        return cls(plan=status.get("plan"), gpus=status.get("gpus"), nodes=status.get("nodes"))


def _utilization(spec: api.LLMDeploymentSpec) -> float | None:
    """--gpu-memory-utilization from engine.args when it is one vLLM takes (0 < u <= 1);
    otherwise the pinned default (a bad value is the engine's refusal to report, not ours)."""
    raw = vllm_rules.value_of(spec.engine.args, "--gpu-memory-utilization")
    try:
        value = float(raw) if raw is not None else None
    except ValueError:
        return None
    return value if value is not None and 0 < value <= 1 else None


def unknown_plan(reason: str) -> dict[str, Any]:
    return {"known": False, "reason": reason}

"""GPU memory planner: model facts + engine + quantization + GPU type -> shard count, node
count and verdict.

Pure: no I/O, no Kubernetes, no Hub. The operator calls it at admission so that a
model that cannot load (the most common TGI failure is out-of-memory at warmup, vLLM's
is refusing to start for want of KV cache) is refused with a sentence instead of
burning a GPU node on a crash loop.

Here: the request, the plan, the search for the fewest GPUs and nodes that fit (given the
shapes of the nodes the pods may use, only a count those nodes offer), and the
remedies of a plan that does not fit: by memory alone, or, given the shapes of the nodes the
pods may use (admission.py), only what those nodes can carry out. The
GPU table is gpus.py; the memory a model needs, memory.py; how each engine spends a GPU,
its memory model (engines/tgi.py, engines/vllm.py: Engine.memory_model); the sentences,
verdicts.py.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field, replace
from typing import Any

from llm_common.modelfacts import ModelFacts
from llm_operator.engines import DEFAULT_ENGINE, ENGINE_NAMES, Engine, engine_named
from llm_operator.engines.memory import MemoryModel
from llm_operator.planning.admission import Cluster
from llm_operator.planning.gpus import GpuType, gpu_to_plan_for
from llm_operator.planning.memory import (
    bits_per_weight,
    budget,
    default_max_total_tokens,
    effective_quantization,
    layers_per_node,
    valid_shard_counts,
)
from llm_operator.planning.verdicts import (
    MIN_USEFUL_TOKENS,
    Layout,
    Remedies,
    does_not_fit_sentence,
    fits_sentence,
    nodes_lack_gpus_sentence,
    sharding_problem,
    single_node,
)

# The most nodes the planner tries when it picks (a spec may ask for more): 16 nodes of
# eight 80 GB GPUs hold 10 TB, several times the largest open models at 16 bits.
MAX_NODES = 16


@dataclass(frozen=True)
class PlanRequest:
    """What the user asked for. gpus=None: pick the smallest valid shard count that fits.
    gpus is per node; nodes=None (vLLM only): pick the fewest nodes that fit."""

    facts: ModelFacts
    quantization: str = "none"
    gpu_type: str | None = None
    gpu_memory_gib: float | None = None
    gpus: int | None = None
    max_total_tokens: int | None = None
    kv_cache_dtype: str | None = None
    adapter_bytes: float = 0.0  # LoRA adapters served beside the model (see adapters.py)
    engine: str = DEFAULT_ENGINE  # an engine's name: "tgi" or "vllm"
    gpu_memory_utilization: float | None = None  # vLLM only; None: its default (engines/vllm.py)
    max_batch_tokens: int | None = None  # vLLM only (--max-num-batched-tokens); None: its default for the GPU
    nodes: int | None = 1  # nodes one replica spans (vLLM's pipeline parallel size)
    # The nodes the pods may use: remedies are then only what they can carry out. None (the
    # CLI, a render): remedies by memory alone.
    cluster: Cluster | None = None


FITS = "Fits"
DOES_NOT_FIT = "DoesNotFit"
INVALID_SHARDING = "InvalidSharding"


@dataclass(frozen=True)
class Plan:
    """The verdict, with the numbers behind it. Sizes are GiB."""

    status: str
    num_shard: int
    fits: bool
    reason: str
    min_gpus: int | None
    weights_gib: float
    weights_gib_per_gpu: float
    kv_cache_gib_per_gpu: float
    overhead_gib_per_gpu: float
    required_gib_per_gpu: float
    gpu_memory_gib: float
    gpu_name: str
    quantization: str
    bits_per_weight: float
    max_total_tokens: int
    engine: str
    usable_gib_per_gpu: float  # what the engine may fill: TGI the whole GPU, vLLM its reservation
    valid_shard_counts: tuple[int, ...] = field(default=())
    nodes: int = 1  # num_shard GPUs on each of these nodes
    min_nodes: int | None = None  # the fewest nodes that fit at num_shard GPUs each (vLLM only)
    layers_per_node: int = 0  # decoder layers on the heaviest pipeline stage

    def to_status(self) -> dict[str, Any]:
        """The LLMDeployment status.plan block (camelCase, floats to 2 decimals). The node
        keys appear only where more than one node is or would be needed."""
        status = {
            "numShard": self.num_shard,
            "weightsGiB": round(self.weights_gib, 2),
            "kvCacheGiBPerGpu": round(self.kv_cache_gib_per_gpu, 2),
            "gpuMemoryGiB": round(self.gpu_memory_gib, 2),
            "fits": self.fits,
            "reason": self.reason,
            "minGpus": self.min_gpus,
        }
        more_than_one = self.min_nodes is not None and self.min_nodes > 1
        if self.nodes > 1 or more_than_one:
            status["nodes"] = self.nodes
        if more_than_one:
            status["minNodes"] = self.min_nodes
        return status

    def to_dict(self) -> dict[str, Any]:
        """Everything, camelCase, for the CLI's --json and for debugging."""
        return {
            **self.to_status(),
            "status": self.status,
            "engine": self.engine,
            "gpu": self.gpu_name,
            "quantization": self.quantization,
            "bitsPerWeight": round(self.bits_per_weight, 3),
            "maxTotalTokens": self.max_total_tokens,
            "weightsGiBPerGpu": round(self.weights_gib_per_gpu, 2),
            "overheadGiBPerGpu": round(self.overhead_gib_per_gpu, 2),
            "requiredGiBPerGpu": round(self.required_gib_per_gpu, 2),
            "usableGiBPerGpu": round(self.usable_gib_per_gpu, 2),
            "validShardCounts": list(self.valid_shard_counts),
            "nodes": self.nodes,
            "minNodes": self.min_nodes,
            "layersPerNode": self.layers_per_node,
        }


def _engine(name: str) -> Engine:
    if name not in ENGINE_NAMES:
        raise ValueError(f"Unknown engine {name!r}: use one of {', '.join(ENGINE_NAMES)}.")
    return engine_named(name)


# --- the plan ----------------------------------------------------------------------------


def plan(request: PlanRequest) -> Plan:
    """Decide the shard count and node count and whether the model fits; the reason says what to change."""
    facts = request.facts
    quantization = effective_quantization(facts, request.quantization)
    gpu = gpu_to_plan_for(request.gpu_type, request.gpu_memory_gib)
    engine = _engine(request.engine)
    # How the engine spends this GPU, with its share and batch as the request sets them.
    model = engine.memory_model(gpu, request.gpu_memory_utilization, request.max_batch_tokens)
    refused = engine.quantization_refusal(quantization)
    if refused:
        # Admission refuses these earlier; this guard keeps a wrong plan from being made.
        raise ValueError(refused)
    if not engine.multi_node and request.nodes not in (1, None):
        raise ValueError(single_node(engine))
    capacity = model.capacity_gib(gpu)
    tokens = request.max_total_tokens or default_max_total_tokens(facts)
    kv_dtype = request.kv_cache_dtype
    nodes, min_gpus = _nodes_and_min_gpus(model, request, quantization, gpu, tokens)
    # The planner's own GPU count must be one the nodes have (None: it is, or no cluster is given).
    short: _Short | None = None
    if request.gpus is None and request.cluster is not None and min_gpus is not None:
        nodes, min_gpus, short = _on_the_nodes(
            request.cluster, model, request, quantization, gpu, tokens, nodes, min_gpus
        )
    valid = valid_shard_counts(facts, quantization, engine=model.engine)
    num_shard = request.gpus if request.gpus is not None else (min_gpus or valid[-1])
    min_nodes = (
        _fewest_nodes(model, facts, quantization, gpu, num_shard, tokens, kv_dtype, request.adapter_bytes)
        if engine.multi_node
        else None
    )

    problem = sharding_problem(facts, num_shard, quantization, model.engine, nodes)
    needs = budget(
        model, facts, quantization, max(num_shard, 1), tokens, kv_dtype, request.adapter_bytes, max(nodes, 1)
    )
    fits = problem is None and needs.required_gib_per_gpu <= capacity and short is None
    if problem is not None:
        status, reason = INVALID_SHARDING, problem
    elif short is not None:  # fits in memory, on more GPUs than the nodes offer
        status = DOES_NOT_FIT
        reason = nodes_lack_gpus_sentence(
            model,
            facts,
            quantization,
            gpu,
            num_shard,
            nodes,
            needs,
            short.largest,
            short.holding,
            _remedies_in(
                short.cluster,
                model,
                request,
                quantization,
                gpu,
                1,  # no GPU count was asked: a remedy names the GPUs it takes
                short.nodes,
                None,  # the fewest GPUs that fit are more than any node has
                tokens,
                tokens_gpus=short.most_placeable or num_shard,
            ),
            short.nodes,
        )
    elif fits:
        status, reason = FITS, fits_sentence(model, facts, quantization, gpu, num_shard, nodes, needs)
    else:
        status = DOES_NOT_FIT
        remedies = (
            _remedies(model, request, quantization, gpu, num_shard, nodes, min_gpus, min_nodes, tokens)
            if request.cluster is None
            else _remedies_in(request.cluster, model, request, quantization, gpu, num_shard, nodes, min_gpus, tokens)
        )
        reason = does_not_fit_sentence(model, facts, quantization, gpu, num_shard, nodes, needs, tokens, remedies)
    return Plan(
        status=status,
        num_shard=num_shard,
        fits=fits,
        reason=reason,
        min_gpus=min_gpus,
        weights_gib=needs.weights_gib,
        weights_gib_per_gpu=needs.weights_gib_per_gpu,
        kv_cache_gib_per_gpu=needs.kv_cache_gib_per_gpu,
        overhead_gib_per_gpu=needs.overhead_gib_per_gpu,
        required_gib_per_gpu=needs.required_gib_per_gpu,
        gpu_memory_gib=gpu.memory_gib,
        gpu_name=gpu.display_name,
        quantization=quantization,
        bits_per_weight=bits_per_weight(facts, quantization),
        max_total_tokens=tokens,
        engine=model.engine,
        usable_gib_per_gpu=capacity,
        valid_shard_counts=valid,
        nodes=nodes,
        min_nodes=min_nodes,
        layers_per_node=layers_per_node(facts, nodes),
    )


# --- the search: the fewest GPUs and nodes that fit ----------------------------------------


def _fits(
    model: MemoryModel,
    facts: ModelFacts,
    quantization: str,
    gpu: GpuType,
    num_shard: int,
    tokens: int,
    kv_dtype: str | None,
    adapter_bytes: float,
    nodes: int,
) -> bool:
    if sharding_problem(facts, num_shard, quantization, model.engine, nodes) is not None:
        return False
    needs = budget(model, facts, quantization, num_shard, tokens, kv_dtype, adapter_bytes, nodes)
    return needs.required_gib_per_gpu <= model.capacity_gib(gpu)


def _smallest_fitting(
    model: MemoryModel,
    facts: ModelFacts,
    quantization: str,
    gpu: GpuType,
    tokens: int,
    kv_dtype: str | None,
    adapter_bytes: float = 0.0,
    nodes: int = 1,
) -> int | None:
    """The fewest GPUs per node that fit on `nodes` nodes, or None."""
    for count in valid_shard_counts(facts, quantization, engine=model.engine):
        if _fits(model, facts, quantization, gpu, count, tokens, kv_dtype, adapter_bytes, nodes):
            return count
    return None


def _fewest_nodes(
    model: MemoryModel,
    facts: ModelFacts,
    quantization: str,
    gpu: GpuType,
    num_shard: int,
    tokens: int,
    kv_dtype: str | None,
    adapter_bytes: float = 0.0,
) -> int | None:
    """The fewest nodes (up to MAX_NODES) that fit at num_shard GPUs each, or None."""
    for nodes in range(1, MAX_NODES + 1):
        if _fits(model, facts, quantization, gpu, num_shard, tokens, kv_dtype, adapter_bytes, nodes):
            return nodes
    return None


def _nodes_and_min_gpus(
    model: MemoryModel, request: PlanRequest, quantization: str, gpu: GpuType, tokens: int
) -> tuple[int, int | None]:
    """The node count to plan for, and the fewest GPUs per node that fit on it."""
    facts, kv_dtype, adapter_bytes = request.facts, request.kv_cache_dtype, request.adapter_bytes

    def smallest(nodes: int) -> int | None:
        return _smallest_fitting(model, facts, quantization, gpu, tokens, kv_dtype, adapter_bytes, nodes)

    if request.nodes is not None:
        return request.nodes, smallest(request.nodes)
    if not engine_named(model.engine).multi_node:
        return 1, smallest(1)
    if request.gpus is not None:
        # More nodes only for a model larger than one node: one that fits one node with more
        # GPUs stays on one node (DoesNotFit, naming the GPUs that fit), never a pipeline.
        one = smallest(1)
        if one is not None:
            return 1, one
        nodes = _fewest_nodes(model, facts, quantization, gpu, request.gpus, tokens, kv_dtype, adapter_bytes)
        return nodes or 1, smallest(nodes or 1)
    # Fewer nodes first: a model that fits one node stays on it, on as few GPUs as fit.
    for nodes in range(1, MAX_NODES + 1):
        gpus = smallest(nodes)
        if gpus is not None:
            return nodes, gpus
    return 1, None


# --- the planner's choice, on the nodes the cluster has ----------------------------------------


@dataclass(frozen=True)
class _Short:
    """Why the planner's own layout cannot run on the nodes of its GPU that the pods may use."""

    cluster: Cluster
    largest: int  # the most GPUs one such node offers
    holding: int  # the nodes that offer as many GPUs as the layout puts on each
    most_placeable: int | None  # the most GPUs per node (a valid count) that enough nodes offer
    nodes: int  # the node count remedies start from: the one asked, else one (the planner's choice)


def _on_the_nodes(
    cluster: Cluster,
    model: MemoryModel,
    request: PlanRequest,
    quantization: str,
    gpu: GpuType,
    tokens: int,
    nodes: int,
    min_gpus: int,
) -> tuple[int, int, _Short | None]:
    """The planner's layout (nodes, GPUs per node) as the cluster's nodes of the planned GPU can
    carry it out: as chosen when enough nodes offer that many GPUs; for vLLM with the node count
    left to the planner and LeaderWorkerSets on, the fewest nodes, then the fewest GPUs each,
    that enough nodes offer and that fit. Otherwise the layout chosen, and why it cannot run."""
    facts, product = request.facts, cluster.product

    def placeable(per_node: int, count: int) -> bool:
        return cluster.nodes_with(gpu, product, per_node) >= count

    largest = max(
        (s.gpus for s in cluster.shapes if s.gpu.name == gpu.name and (not product or s.product == product)), default=0
    )
    # No node of this GPU at all, or a replica across nodes the operator does not run: the
    # pods' own verdicts say so (NoNodeFits, MultiNodeOff), naming what to change.
    if placeable(min_gpus, nodes) or largest == 0 or (nodes > 1 and not cluster.multi_node):
        return nodes, min_gpus, None
    if request.nodes is None and engine_named(model.engine).multi_node and cluster.multi_node:
        layout = _fewest_placeable_layout(model, request, quantization, gpu, tokens, 1, placeable)
        if layout is not None:
            return *layout, None
    asked = request.nodes or 1
    placed = [
        count for count in valid_shard_counts(facts, quantization, engine=model.engine) if placeable(count, asked)
    ]
    holding = cluster.nodes_with(gpu, product, min_gpus)
    return nodes, min_gpus, _Short(cluster, largest, holding, placed[-1] if placed else None, asked)


# --- what would make it fit ------------------------------------------------------------------


def _remedies(
    model: MemoryModel,
    request: PlanRequest,
    quantization: str,
    gpu: GpuType,
    num_shard: int,
    nodes: int,
    min_gpus: int | None,
    min_nodes: int | None,
    tokens: int,
) -> Remedies:
    """What would make it fit: more nodes when no GPU count fits these, more GPUs, a smaller
    format at this GPU count, fewer tokens (verdicts.py says which of these it names)."""
    more_nodes, nodes_engine = None, None
    # Pipeline parallelism across nodes only where the node itself is the limit: vLLM advises
    # tensor parallelism within a node first.
    if min_gpus is None:
        more_nodes, nodes_engine = _more_nodes(model, request, quantization, gpu, num_shard, nodes, min_nodes, tokens)
    return Remedies(
        nodes=more_nodes,
        nodes_engine=nodes_engine,
        gpus=min_gpus if min_gpus is not None and min_gpus > num_shard else None,
        smaller_quantization=_smaller_quantization_that_fits(
            model, request.facts, quantization, gpu, num_shard, tokens, request.kv_cache_dtype, nodes
        ),
        max_total_tokens=_max_tokens_that_fit(
            model, request.facts, quantization, gpu, num_shard, tokens, request.kv_cache_dtype, nodes
        ),
    )


def _more_nodes(
    model: MemoryModel,
    request: PlanRequest,
    quantization: str,
    gpu: GpuType,
    num_shard: int,
    nodes: int,
    min_nodes: int | None,
    tokens: int,
) -> tuple[int | None, str | None]:
    """The node count that fits at this GPU count, if more than these: on this engine when
    it spans nodes, else on one that does (with its defaults), since switching is what it
    takes; and that other engine's name."""
    if engine_named(model.engine).multi_node:
        return (min_nodes, None) if min_nodes is not None and min_nodes > nodes else (None, None)
    for name in ENGINE_NAMES:
        other = engine_named(name)
        if not other.multi_node or other.quantization_refusal(quantization):
            continue
        spanning = other.memory_model(gpu)
        other_nodes = _fewest_nodes(
            spanning, request.facts, quantization, gpu, num_shard, tokens, request.kv_cache_dtype, request.adapter_bytes
        )
        if other_nodes is not None and other_nodes > 1:
            return other_nodes, name
    return None, None


def _max_tokens_that_fit(
    model: MemoryModel,
    facts: ModelFacts,
    quantization: str,
    gpu: GpuType,
    num_shard: int,
    requested_tokens: int,
    kv_dtype: str | None,
    nodes: int = 1,
) -> int:
    """The largest max total tokens below the requested one that fits at this GPU and node
    count (0 if none): the need grows with tokens, so bisect."""
    capacity = model.capacity_gib(gpu)

    def fits(tokens: int) -> bool:
        needs = budget(model, facts, quantization, num_shard, tokens, kv_dtype, nodes=nodes)
        return needs.required_gib_per_gpu <= capacity

    low, high = 0, requested_tokens - 1
    while low < high:
        middle = (low + high + 1) // 2
        low, high = (middle, high) if fits(middle) else (low, middle - 1)
    return low


def _smaller_quantization_that_fits(
    model: MemoryModel,
    facts: ModelFacts,
    quantization: str,
    gpu: GpuType,
    num_shard: int,
    tokens: int,
    kv_dtype: str | None,
    nodes: int = 1,
) -> str | None:
    """The least lossy smaller format the engine has that fits at this GPU and node count, as a phrase."""
    current_bits = bits_per_weight(facts, quantization)
    for phrase, candidate in engine_named(model.engine).smaller_quantizations:
        if bits_per_weight(facts, candidate) >= current_bits:
            continue
        if _fits(model, facts, candidate, gpu, num_shard, tokens, kv_dtype, 0.0, nodes):
            return phrase
    return None


# --- what would make it fit on the nodes the cluster has -------------------------------------


def _remedies_in(
    cluster: Cluster,
    model: MemoryModel,
    request: PlanRequest,
    quantization: str,
    gpu: GpuType,
    num_shard: int,
    nodes: int,
    min_gpus: int | None,
    tokens: int,
    tokens_gpus: int | None = None,
) -> Remedies:
    """What would make it fit that the cluster's nodes can carry out: more GPUs where nodes
    have that many, a smaller format on as few GPUs as the nodes have and it fits, more nodes
    (where a replica may span nodes), fewer tokens (at `tokens_gpus` GPUs per node when given, else at
    these), or another GPU the cluster has."""

    def placeable(per_node: int, count: int) -> bool:
        return cluster.nodes_with(gpu, cluster.product, per_node) >= count

    gpus = min_gpus if min_gpus is not None and min_gpus > num_shard and placeable(min_gpus, nodes) else None
    smaller = _smaller_quantization_on(model, request, quantization, gpu, num_shard, tokens, nodes, placeable)
    if smaller and gpus is not None and smaller[1] >= gpus:
        smaller = None  # as many GPUs hold it in its own format
    # Across nodes only where no node holds it (tensor parallelism within a node first), and
    # only where the operator runs replicas across nodes (LeaderWorkerSets).
    spanning = (
        _more_nodes_on(model, request, quantization, gpu, nodes, tokens, placeable)
        if gpus is None and cluster.multi_node
        else None
    )
    remedies = Remedies(
        nodes=spanning[0] if spanning else None,
        nodes_engine=spanning[2] if spanning else None,
        nodes_gpus=spanning[1] if spanning and spanning[1] != num_shard else None,
        gpus=gpus,
        smaller_quantization=smaller[0] if smaller else None,
        quantization_gpus=smaller[1] if smaller and smaller[1] != num_shard else None,
        max_total_tokens=_max_tokens_on(
            model, request, quantization, gpu, tokens_gpus, num_shard, nodes, tokens, placeable
        ),
        elsewhere=_other_gpu(cluster, request, quantization, gpu, nodes, tokens),
        cluster=cluster.described(),
    )
    named = (remedies.nodes, remedies.gpus, remedies.smaller_quantization, remedies.elsewhere)
    if named == (None,) * 4 and remedies.max_total_tokens < MIN_USEFUL_TOKENS:
        # Nothing one change makes fit: whatever the nodes hold it in, or that nothing does.
        return replace(remedies, elsewhere=_any_layout(cluster, model, request, quantization, gpu, nodes, tokens))
    return remedies


def _max_tokens_on(
    model: MemoryModel,
    request: PlanRequest,
    quantization: str,
    gpu: GpuType,
    tokens_gpus: int | None,
    num_shard: int,
    nodes: int,
    tokens: int,
    placeable: Callable[[int, int], bool],
) -> int:
    """The most tokens that fit at `tokens_gpus` GPUs per node (None: num_shard), when enough
    nodes offer that many (0 if none, or if they do not)."""
    count = tokens_gpus or num_shard
    if not placeable(count, nodes):
        return 0
    return _max_tokens_that_fit(model, request.facts, quantization, gpu, count, tokens, request.kv_cache_dtype, nodes)


def _smaller_quantization_on(
    model: MemoryModel,
    request: PlanRequest,
    quantization: str,
    gpu: GpuType,
    num_shard: int,
    tokens: int,
    nodes: int,
    placeable: Callable[[int, int], bool],
) -> tuple[str, int] | None:
    """The least lossy smaller format that fits on the fewest GPUs (at least these) that
    nodes have, as a phrase, and that GPU count."""
    facts, current_bits = request.facts, bits_per_weight(request.facts, quantization)
    for phrase, candidate in engine_named(model.engine).smaller_quantizations:
        if bits_per_weight(facts, candidate) >= current_bits:
            continue
        for count in valid_shard_counts(facts, candidate, engine=model.engine):
            if count < num_shard or not placeable(count, nodes):
                continue
            if _fits(model, facts, candidate, gpu, count, tokens, request.kv_cache_dtype, request.adapter_bytes, nodes):
                return phrase, count
    return None


def _more_nodes_on(
    model: MemoryModel,
    request: PlanRequest,
    quantization: str,
    gpu: GpuType,
    nodes: int,
    tokens: int,
    placeable: Callable[[int, int], bool],
) -> tuple[int, int, str | None] | None:
    """The fewest nodes above these, with the fewest GPUs each that the nodes have, that fit:
    on this engine when it spans nodes, else on one that does (with its defaults). Returns the
    node count, the GPUs per node, and the other engine's name (None: this one)."""
    candidates: list[tuple[MemoryModel, str | None]]
    if engine_named(model.engine).multi_node:
        candidates = [(model, None)]
    else:
        candidates = [
            (engine_named(name).memory_model(gpu), name)
            for name in ENGINE_NAMES
            if engine_named(name).multi_node and not engine_named(name).quantization_refusal(quantization)
        ]
    for spanning, name in candidates:
        layout = _fewest_placeable_layout(spanning, request, quantization, gpu, tokens, nodes + 1, placeable)
        if layout is not None:
            return *layout, name
    return None


def _fewest_placeable_layout(
    model: MemoryModel,
    request: PlanRequest,
    quantization: str,
    gpu: GpuType,
    tokens: int,
    first_count: int,
    placeable: Callable[[int, int], bool],
) -> tuple[int, int] | None:
    """The fewest nodes from `first_count` on, then the fewest GPUs each, that enough nodes offer
    and that the model fits on with this engine: (nodes, GPUs per node), or None."""
    for count in range(first_count, MAX_NODES + 1):
        if not placeable(1, count):
            break
        for per_node in valid_shard_counts(request.facts, quantization, engine=model.engine):
            if placeable(per_node, count) and _fits(
                model,
                request.facts,
                quantization,
                gpu,
                per_node,
                tokens,
                request.kv_cache_dtype,
                request.adapter_bytes,
                count,
            ):
                return count, per_node
    return None


def _other_gpu(
    cluster: Cluster, request: PlanRequest, quantization: str, gpu: GpuType, nodes: int, tokens: int
) -> Layout | None:
    """Another GPU the cluster's nodes have that holds the model as it is (format, node
    count), on the fewest GPUs its nodes offer: the largest such GPU first."""
    engine = _engine(request.engine)
    for shape in cluster.shapes:
        if (shape.product == cluster.product) if cluster.product else (shape.gpu.name == gpu.name):
            continue
        model = engine.memory_model(shape.gpu, request.gpu_memory_utilization, request.max_batch_tokens)
        for count in valid_shard_counts(request.facts, quantization, engine=engine.name):
            if cluster.nodes_with(shape.gpu, shape.product, count) < nodes:
                break
            if _fits(
                model,
                request.facts,
                quantization,
                shape.gpu,
                count,
                tokens,
                request.kv_cache_dtype,
                request.adapter_bytes,
                nodes,
            ):
                return Layout(count, shape.gpu.display_name, product=shape.product)
    return None


def _any_layout(
    cluster: Cluster, model: MemoryModel, request: PlanRequest, quantization: str, gpu: GpuType, nodes: int, tokens: int
) -> Layout | None:
    """Any way the cluster's nodes hold the model, changing several things at once: the least
    lossy format first, then the GPU asked for before others (the largest first), the fewest
    nodes (more only where replicas may span nodes), the fewest GPUs. None: nothing holds it."""
    facts, asked = request.facts, _engine(request.engine)
    engines: list[tuple[Engine, str | None]] = [(asked, None)]
    if cluster.multi_node and not asked.multi_node:
        engines += [(engine_named(name), name) for name in ENGINE_NAMES if engine_named(name).multi_node]
    same = [
        s for s in cluster.shapes if s.gpu.name == gpu.name and (not cluster.product or s.product == cluster.product)
    ]
    shapes = same + [s for s in cluster.shapes if s not in same]
    current_bits = bits_per_weight(facts, quantization)
    formats: list[tuple[str | None, str]] = [(None, quantization)]
    formats += [(phrase, q) for phrase, q in asked.smaller_quantizations if bits_per_weight(facts, q) < current_bits]
    for phrase, candidate in formats:
        for shape in shapes:
            other = None if shape in same else shape.product
            for engine, switched in engines:
                if engine.quantization_refusal(candidate):
                    continue
                spanning = engine.multi_node and cluster.multi_node
                memory = (
                    model
                    if engine is asked and shape.gpu.name == gpu.name
                    else engine.memory_model(shape.gpu, request.gpu_memory_utilization, request.max_batch_tokens)
                )
                for count in range(nodes, (MAX_NODES if spanning else nodes) + 1):
                    for per_node in valid_shard_counts(facts, candidate, engine=engine.name):
                        if cluster.nodes_with(shape.gpu, shape.product, per_node) < count:
                            break
                        if _fits(
                            memory,
                            facts,
                            candidate,
                            shape.gpu,
                            per_node,
                            tokens,
                            request.kv_cache_dtype,
                            request.adapter_bytes,
                            count,
                        ):
                            return Layout(
                                per_node,
                                shape.gpu.display_name,
                                product=other,
                                nodes=count if count != nodes else None,
                                engine=switched,
                                # The format in the words of the engine that serves it.
                                quantization=phrase
                                and dict((q, p) for p, q in engine.smaller_quantizations)[candidate],
                            )
    return None

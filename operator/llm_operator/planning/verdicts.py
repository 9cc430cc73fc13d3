"""The sentences a plan gives: why an engine cannot split a model so, what fits with how much
to spare, and what does not fit with what would make it fit. The planner (planner.py)
finds the numbers; here they are put in words. Pure.
"""

from __future__ import annotations

from dataclasses import dataclass

from llm_common.modelfacts import ModelFacts
from llm_common.words import noun, plural
from llm_operator.engines import DEFAULT_ENGINE, ENGINE_NAMES, Engine, engine_named
from llm_operator.engines.memory import MemoryModel
from llm_operator.planning.gpus import GpuType
from llm_operator.planning.memory import Budget, bits_per_weight, serving_dtype_bytes, valid_shard_counts

MIN_USEFUL_TOKENS = 512  # below this, suggesting a shorter context is no real remedy


# --- sharding ----------------------------------------------------------------------------


def single_node(engine: Engine) -> str:
    """Why an engine that serves within one node cannot span more, naming those that can."""
    spanning = " or ".join(name for name in ENGINE_NAMES if engine_named(name).multi_node)
    return f"{engine.display_name} serves within one node; multi-node serving needs engine {spanning}."


def sharding_problem(
    facts: ModelFacts, num_shard: int, quantization: str, engine: str = DEFAULT_ENGINE, nodes: int = 1
) -> str | None:
    """Why the engine (by name) cannot split this model num_shard ways on each of `nodes`
    nodes, or None when it can."""
    serving = engine_named(engine)
    if num_shard < 1:
        return f"The GPU count must be at least 1, not {num_shard}."
    if nodes < 1:
        return f"The node count must be at least 1, not {nodes}."
    if nodes > 1 and not serving.multi_node:
        return single_node(serving)
    if nodes > facts.num_layers:
        return (
            f"{facts.short_name} has {plural(facts.num_layers, 'layer')}: pipeline parallelism needs at least one "
            f"layer per node, so at most {plural(facts.num_layers, 'node')}."
        )
    if num_shard == 1:
        return None
    refused = serving.shard_refusal(quantization)
    if refused:
        return refused
    heads, kv_heads = facts.num_attention_heads, facts.num_key_value_heads
    if serving.splits_heads(heads, kv_heads, num_shard):
        return None
    valid = valid_shard_counts(facts, quantization, engine=engine)
    return (
        f"{facts.short_name} has {plural(heads, 'attention head')} and {plural(kv_heads, 'key-value head')}; "
        f"{serving.head_split_rule}, and {num_shard} does not: use {_spoken_list(valid)} {noun(valid[-1], 'GPU')}."
    )


def _spoken_list(numbers: tuple[int, ...]) -> str:
    words = [str(n) for n in numbers]
    return words[0] if len(words) == 1 else ", ".join(words[:-1]) + " or " + words[-1]


# --- fits, or does not ---------------------------------------------------------------------


@dataclass(frozen=True)
class Remedies:
    """What the planner found would make a plan fit, for the sentence that suggests it."""

    nodes: int | None = None  # this many nodes at the same GPU count
    nodes_engine: str | None = None  # ... on this engine (one that spans nodes); None: the same one
    gpus: int | None = None  # this many GPUs (per node)
    smaller_quantization: str | None = None  # a smaller format that fits, as a phrase
    max_total_tokens: int = 0  # the most tokens that fit at this GPU and node count (0: none)
    # Judged on the cluster's nodes (None: on memory alone, as `plan` and `render` do):
    nodes_gpus: int | None = None  # the GPUs on each of those nodes, when not the GPUs asked
    quantization_gpus: int | None = None  # the GPUs the smaller format fits on, when more than asked
    # Another GPU the cluster has that holds the model as asked; or, when nothing above does,
    # whatever way the nodes hold it (format, engine, nodes and GPU together).
    elsewhere: Layout | None = None
    cluster: str | None = None  # the nodes the pods may use, in words ("" when none has GPUs)


@dataclass(frozen=True)
class Layout:
    """A way to serve the model that nodes of the cluster hold, in what it changes of the spec."""

    gpus: int  # per node
    display_name: str  # the GPU's
    product: str | None = None  # another GPU product (spec.gpu.product); None: the one asked
    nodes: int | None = None  # another node count; None: as asked
    engine: str | None = None  # another engine, one that spans nodes; None: as asked
    quantization: str | None = None  # a smaller format, as a phrase; None: as asked


def _precision_phrase(facts: ModelFacts, quantization: str) -> str:
    if quantization == "none":
        return f"at {8 * serving_dtype_bytes(facts)}-bit"
    return f"with {quantization} ({bits_per_weight(facts, quantization):.2f} bits per weight)"


def _gpus_phrase(model: MemoryModel, num_shard: int, gpu: GpuType, nodes: int = 1) -> str:
    each = " each" if num_shard > 1 or nodes > 1 else ""
    count = f"{plural(nodes, 'node')} x {num_shard}" if nodes > 1 else f"{num_shard}"
    phrase = f"{count} x {gpu.display_name} gives {model.capacity_gib(gpu):.1f} GiB{each}"
    if model.utilization is None:
        return phrase
    of = "each GPU" if num_shard > 1 or nodes > 1 else "the GPU"
    return f"{phrase} to {model.display_name} ({model.utilization:g} of {of}, {model.utilization_flag})"


def fits_sentence(
    model: MemoryModel, facts: ModelFacts, quantization: str, gpu: GpuType, num_shard: int, nodes: int, budget: Budget
) -> str:
    spare = model.capacity_gib(gpu) - budget.required_gib_per_gpu
    return (
        f"{facts.short_name} {_precision_phrase(facts, quantization)} needs "
        f"{budget.required_gib_per_gpu:.1f} GiB per GPU ({budget.weights_gib_per_gpu:.1f} weights, "
        f"{budget.kv_cache_gib_per_gpu:.1f} KV cache, {budget.overhead_gib_per_gpu:.1f} runtime); "
        f"{_gpus_phrase(model, num_shard, gpu, nodes)}: fits with {spare:.1f} GiB to spare."
    )


def does_not_fit_sentence(
    model: MemoryModel,
    facts: ModelFacts,
    quantization: str,
    gpu: GpuType,
    num_shard: int,
    nodes: int,
    budget: Budget,
    tokens: int,
    remedies: Remedies,
) -> str:
    capacity = model.capacity_gib(gpu)
    if budget.weights_gib_per_gpu > capacity:
        need = f"needs {budget.weights_gib:.1f} GiB of weights"
    else:
        need = (
            f"needs {budget.required_gib_per_gpu:.1f} GiB per GPU "
            f"({budget.weights_gib_per_gpu:.1f} weights, {budget.kv_cache_gib_per_gpu:.1f} KV cache "
            f"for {tokens} tokens, {budget.overhead_gib_per_gpu:.1f} runtime)"
        )
    remedy = _remedies(remedies, nodes)
    start = (
        f"{facts.short_name} {_precision_phrase(facts, quantization)} {need}; "
        f"{_gpus_phrase(model, num_shard, gpu, nodes)}"
    )
    if model.checks_kv_cache_at_startup and budget.weights_gib_per_gpu <= capacity:
        return f"{start}, so {_startup_refusal(model, budget, capacity, tokens)}. {remedy[0].upper()}{remedy[1:]}."
    return f"{start}: {remedy}."


def nodes_lack_gpus_sentence(
    model: MemoryModel,
    facts: ModelFacts,
    quantization: str,
    gpu: GpuType,
    num_shard: int,
    nodes: int,
    budget: Budget,
    largest: int,
    holding: int,
    remedies: Remedies,
    remedies_nodes: int,
) -> str:
    """The fewest GPUs that hold the model, which the planner chose, need more GPUs on a node
    (or more such nodes) than the nodes the pods may use offer: say so, and what they can
    carry out. `largest`: the most GPUs one of those nodes has; `holding`: how many have
    num_shard; `remedies_nodes`: the node count the remedies were found for."""
    layout = f"{num_shard} x {gpu.display_name}"
    if nodes > 1:
        layout += f" on each of {plural(nodes, 'node')}"
        lacking = f"that would need {nodes} nodes with {plural(num_shard, 'GPU')} each, and " + (
            f"only {holding} {gpu.display_name} {noun(holding, 'node')} the pods may use "
            f"{noun(holding, 'has', 'have')} that many"
            if holding
            else f"no {gpu.display_name} node the pods may use has that many (the largest has {largest})"
        )
    else:
        lacking = (
            f"that would need a node with {plural(num_shard, 'GPU')}, and the largest {gpu.display_name} "
            f"node the pods may use has {largest}"
        )
    return (
        f"{facts.short_name} {_precision_phrase(facts, quantization)} needs at least {layout} "
        f"({budget.required_gib_per_gpu:.1f} GiB per GPU: {budget.weights_gib_per_gpu:.1f} weights, "
        f"{budget.kv_cache_gib_per_gpu:.1f} KV cache, {budget.overhead_gib_per_gpu:.1f} runtime); "
        f"{lacking}: {_remedies(remedies, remedies_nodes)}."
    )


def _startup_refusal(model: MemoryModel, budget: Budget, capacity_gib: float, tokens: int) -> str:
    """Why the engine would not start, in the terms of its own startup check (vLLM:
    vllm/v1/core/kv_cache_planning.py:L50-87 _check_enough_kv_cache_memory)."""
    left = capacity_gib - budget.weights_gib_per_gpu - budget.overhead_gib_per_gpu
    if left <= 0:
        return (
            f"{model.display_name} would refuse to start: no memory is left for the KV cache after weights "
            "and activations"
        )
    return (
        f"{model.display_name} would refuse to start: one sequence of {tokens} tokens needs "
        f"{budget.kv_cache_gib_per_gpu:.1f} GiB of KV cache per GPU and {left:.1f} GiB is left "
        "after weights and activations"
    )


def _remedies(remedies: Remedies, nodes: int) -> str:
    """What would make it fit: more nodes when no GPU count fits these, more GPUs, a smaller
    format at this GPU count, fewer tokens, or a bigger GPU."""
    if remedies.cluster is not None:
        return _remedies_in_cluster(remedies, nodes)
    options = []
    if remedies.nodes is not None:
        count, engine = remedies.nodes, remedies.nodes_engine
        options.append(
            f"engine {engine} on {plural(count, 'node')} (spec.engine.name: {engine}, spec.nodes: {count})"
            if engine
            else f"{plural(count, 'node')} (spec.nodes: {count})"
        )
    if remedies.gpus is not None:
        gpus = plural(remedies.gpus, "GPU")
        options.append(f"{gpus} per node" if nodes > 1 else gpus)
    if remedies.smaller_quantization:
        options.append(remedies.smaller_quantization)
    if remedies.max_total_tokens >= MIN_USEFUL_TOKENS:
        options.append(f"at most {remedies.max_total_tokens} max total tokens")
    if not options:
        return "use a GPU type with more memory or a smaller model"
    if len(options) <= 2:
        return "use " + " or ".join(options)
    return "use " + ", ".join(options[:-1]) + ", or " + options[-1]


def _remedies_in_cluster(remedies: Remedies, nodes: int) -> str:
    """What would make it fit that the cluster's nodes can carry out, naming the nodes; or
    that nothing in the cluster can hold it."""
    per_node = " per node" if nodes > 1 else ""
    options = []
    if remedies.nodes is not None:
        count, engine, each = remedies.nodes, remedies.nodes_engine, remedies.nodes_gpus
        of, fields = (
            (f" of {plural(each, 'GPU')}", f"spec.nodes: {count}, spec.gpus: {each}")
            if each
            else ("", f"spec.nodes: {count}")
        )
        options.append(
            f"engine {engine} on {plural(count, 'node')}{of} (spec.engine.name: {engine}, {fields})"
            if engine
            else f"{plural(count, 'node')}{of} ({fields})"
        )
    if remedies.gpus is not None:
        options.append(f"{plural(remedies.gpus, 'GPU')}{per_node}")
    if remedies.smaller_quantization:
        more = remedies.quantization_gpus
        on = f" on {plural(more, 'GPU')}{per_node} (spec.gpus: {more})" if more else ""
        options.append(remedies.smaller_quantization + on)
    if remedies.elsewhere is not None:
        options.append(_layout_phrase(remedies.elsewhere))
    if remedies.max_total_tokens >= MIN_USEFUL_TOKENS:
        options.append(f"at most {remedies.max_total_tokens} max total tokens")
    if not remedies.cluster:
        return (
            "nothing in this cluster can hold it: no node the pods may use (by spec.scheduling and the nodes' "
            "taints) has GPUs labelled with a product the operator knows, or with their memory "
            "(nvidia.com/gpu.memory); add such nodes, or let the pods use them"
        )
    seen = f"the nodes the pods may use: {remedies.cluster}"
    if not options:
        return (
            f"nothing in this cluster can hold it ({seen}): no GPU count, node count or smaller quantization "
            "fits; add nodes with more GPU memory, or serve a smaller model"
        )
    listed = " or ".join(options) if len(options) <= 2 else ", ".join(options[:-1]) + ", or " + options[-1]
    return f"use {listed} ({seen})"


def _layout_phrase(layout: Layout) -> str:
    """'2 x H100 80GB (spec.gpu.product: NVIDIA-H100-80GB-HBM3, spec.gpus: 2)'; 'a 4-bit quantization
    (awq or gptq) with engine vllm on 3 nodes of 1 x L4 24GB (spec.engine.name: vllm, ...)'."""
    gpus = f"{layout.gpus} x {layout.display_name}"
    where = f"{plural(layout.nodes, 'node')} of {gpus}" if layout.nodes and layout.nodes > 1 else gpus
    fields = [f"spec.engine.name: {layout.engine}"] if layout.engine else []
    fields += [f"spec.gpu.product: {layout.product}"] if layout.product else []
    fields += [f"spec.nodes: {layout.nodes}"] if layout.nodes else []
    fields.append(f"spec.gpus: {layout.gpus}")
    how = " ".join(
        part for part in (layout.quantization, f"with engine {layout.engine}" if layout.engine else None) if part
    )
    return f"{how + ' on ' if how else ''}{where} ({', '.join(fields)})"

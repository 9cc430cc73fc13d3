"""The memory arithmetic of a plan: a model's weights at a quantization, its KV cache, the
activations of a prefill, what pipeline stages pass on, the shard counts an engine can
split it into, and one GPU's budget of all that under an engine's memory model
(engines/memory.py). Pure.

Across nodes (vLLM only; TGI shards within one node): tensor parallel over a node's GPUs,
pipeline parallel over the nodes, as vLLM advises. A GPU of the heaviest stage holds its
share of ceil(layers / nodes) layers, of one embedding matrix, and of those layers' KV
cache, plus buffers for the hidden states the stages pass on.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

from llm_common.modelfacts import ModelFacts
from llm_operator.engines import DEFAULT_ENGINE, engine_named
from llm_operator.engines.memory import MemoryModel

# Every --quantize value TGI has, which is every quantization the operator knows (vLLM's are a subset).
from llm_operator.engines.tgi import QUANTIZATIONS
from llm_operator.planning.gpus import MAX_GPUS_PER_NODE

GIB = 1024**3

# --- weights ----------------------------------------------------------------------------

# Bits per weight of each quantized format, overheads included, for the default layout
# TGI loads. Group-wise formats store, per group of G weights of one output column, an
# fp16 scale (and for asymmetric formats a zero point): overhead = (16 + zero bits) / G.
# The often-quoted "4.25 bits" for GPTQ/AWQ assumes an fp16 zero; both AutoGPTQ and
# AutoAWQ pack zeros as 4-bit integers, hence 4 + 20/128.
_BITS_PER_WEIGHT = {
    # GPTQ (AutoGPTQ/GPTQModel layout): int4 qweight packed in int32, qzeros 4-bit packed,
    # fp16 scales per group of 128; g_idx is one int32 per input row (negligible).
    "gptq": 4 + (16 + 4) / 128,
    # AWQ (AutoAWQ GEMM layout): same storage as GPTQ, group size 128.
    "awq": 4 + (16 + 4) / 128,
    # Marlin (IST-DASLab marlin, symmetric): int4 + an fp16 scale per group of 128, no zeros.
    "marlin": 4 + 16 / 128,
    # EETQ: int8 weight-only, one fp16 scale per output channel (negligible per weight).
    "eetq": 8.0,
    # fp8: float8_e4m3fn weights with per-tensor or per-channel scales (TGI fp8 / fbgemm).
    "fp8": 8.0,
    # bitsandbytes LLM.int8(): int8 weights plus per-row fp32 statistics (negligible).
    "bitsandbytes": 8.0,
    # bitsandbytes 4-bit as TGI builds it (Params4bit, compress_statistics=True): 4 bits,
    # an 8-bit absmax per block of 64, and an fp32 absmax per 256 blocks (double quant).
    "bitsandbytes-nf4": 4 + 8 / 64 + 32 / (64 * 256),
    "bitsandbytes-fp4": 4 + 8 / 64 + 32 / (64 * 256),
    # exl2 mixes bit widths per layer; the checkpoint says its average in
    # quantization_config.bits. Without it, assume the common 4.0 bpw.
    "exl2": 4.0,
    # compressed-tensors covers W4A16 (group 128) to W8A8; config_groups says which.
    # Without it, assume 8-bit (FP8/INT8 W8A8, the most published variant).
    "compressed-tensors": 8.0,
}

# Unquantized weights cost their serving dtype. A float32 checkpoint (gemma-2-9b ships
# one) is 4 bytes a parameter on disk, but TGI serves in float16 or bfloat16 only
# (--dtype accepts nothing else) and casts on load: 2 bytes a parameter on the GPU.
_SERVING_DTYPE_BYTES = {"float32": 2, "float": 2, "bfloat16": 2, "float16": 2, "half": 2}

# quantization_config.quant_method (pre-quantized checkpoints) -> TGI --quantize value.
_QUANT_METHOD_TO_QUANTIZATION = {
    "gptq": "gptq",
    "awq": "awq",
    "fp8": "fp8",
    "fbgemm_fp8": "fp8",
    "exl2": "exl2",
    "compressed-tensors": "compressed-tensors",
    "eetq": "eetq",
    "marlin": "marlin",
}


def effective_quantization(facts: ModelFacts, quantization: str | None) -> str:
    """The quantization the engine will run: the one asked for, or for a pre-quantized
    checkpoint (quantization_config in config.json) the checkpoint's own method."""
    requested = (quantization or "none").lower()
    if requested not in QUANTIZATIONS:
        raise ValueError(f"Unknown quantization {quantization!r}: use one of {', '.join(QUANTIZATIONS)}.")
    if requested != "none" or not facts.quantization_config:
        return requested
    method = facts.quant_method
    if method == "bitsandbytes":
        return _bitsandbytes_variant(facts.quantization_config)
    return _QUANT_METHOD_TO_QUANTIZATION.get(method, "none")


def _bitsandbytes_variant(config: Mapping[str, Any]) -> str:
    if config.get("load_in_4bit"):
        return "bitsandbytes-fp4" if config.get("bnb_4bit_quant_type") == "fp4" else "bitsandbytes-nf4"
    return "bitsandbytes"


def serving_dtype_bytes(facts: ModelFacts) -> int:
    """Bytes a parameter of unquantized weights takes on the GPU."""
    return _SERVING_DTYPE_BYTES.get(facts.torch_dtype, 2)


def bits_per_weight(facts: ModelFacts, quantization: str) -> float:
    """Stored bits per quantized weight, read from quantization_config when it says."""
    if quantization == "none":
        return 8.0 * serving_dtype_bytes(facts)
    config = facts.quantization_config or {}
    if quantization in ("gptq", "awq") and config.get("bits"):
        return _group_quantized_bits(int(config["bits"]), int(config.get("group_size") or 128))
    if quantization == "exl2" and config.get("bits"):
        return float(config["bits"])
    if quantization == "compressed-tensors":
        return _compressed_tensors_bits(config)
    return _BITS_PER_WEIGHT[quantization]


def _group_quantized_bits(bits: int, group_size: int) -> float:
    # group_size -1 means one scale per output channel: overhead negligible.
    return bits + (16 + bits) / group_size if group_size > 0 else float(bits)


def _compressed_tensors_bits(config: Mapping[str, Any]) -> float:
    for group in (config.get("config_groups") or {}).values():
        weights = group.get("weights") or {}
        if weights.get("num_bits"):
            bits = int(weights["num_bits"])
            group_size = weights.get("group_size")
            return bits + 16 / group_size if group_size else float(bits)
    return _BITS_PER_WEIGHT["compressed-tensors"]


@dataclass(frozen=True)
class _Weights:
    """A model's weights in bytes, split where pipeline stages split them."""

    decoder: float  # the decoder layers, at the quantized bits
    embeddings: float  # embed_tokens and lm_head (once when tied), at 16 bits
    embedding_matrices: int  # 1 tied, 2 untied

    @property
    def total(self) -> float:
        return self.decoder + self.embeddings


def _weights(facts: ModelFacts, quantization: str) -> _Weights:
    # Quantized formats leave the token embedding and lm_head in 16 bits (TGI, vLLM and the
    # quantizers only replace the decoder's linears); unquantized, all is the serving dtype.
    params = _parameter_count(facts)
    bits = bits_per_weight(facts, quantization)
    embeddings = min(facts.embedding_parameters, params)
    embedding_bits = bits if quantization == "none" else 16
    return _Weights(
        decoder=(params - embeddings) * bits / 8,
        embeddings=embeddings * embedding_bits / 8,
        embedding_matrices=1 if facts.tie_word_embeddings else 2,
    )


def weights_bytes(facts: ModelFacts, quantization: str) -> float:
    """Bytes of weights across all shards (and all pipeline stages)."""
    return _weights(facts, quantization).total


def layers_per_node(facts: ModelFacts, nodes: int) -> int:
    """Decoder layers on the heaviest pipeline stage: vLLM splits them evenly and gives the
    remainder one each to some stages (vllm/distributed/utils.py get_pp_indices)."""
    return -(-facts.num_layers // max(nodes, 1))


def stage_weights_bytes(facts: ModelFacts, quantization: str, nodes: int = 1) -> float:
    """Bytes of weights on the heaviest of `nodes` pipeline stages, before tensor parallelism
    splits them across that node's GPUs. One node holds the whole model."""
    weights = _weights(facts, quantization)
    if nodes <= 1:
        return weights.total
    # The first stage holds embed_tokens and the last lm_head (each its own copy when tied):
    # the heaviest stage has its layers and one vocab x hidden matrix.
    one_matrix = weights.embeddings / weights.embedding_matrices
    return weights.decoder * layers_per_node(facts, nodes) / facts.num_layers + one_matrix


def _parameter_count(facts: ModelFacts) -> int:
    if facts.parameter_count is None:
        raise ValueError(f"{facts.short_name} has no parameter count: give one or let modelinfo estimate it.")
    return facts.parameter_count


# --- KV cache and activations ------------------------------------------------------------

_KV_CACHE_DTYPE_BYTES = {None: 2, "auto": 2, "fp8_e4m3fn": 1, "fp8_e5m2": 1}

# Default context when the spec sets none: TGI 2's default max_total_tokens,
# min(max_position_embeddings, 4096). (TGI 3 may choose more after measuring free
# memory; a spec that cares sets limits.maxTotalTokens and the plan uses it.)
DEFAULT_MAX_TOTAL_TOKENS = 4096

# Prefill activations: peak live tensors per token are the residual stream and attention
# output (~4 x hidden) and the MLP's gate, up and activation (~3 x intermediate / shards;
# x experts_per_tok for MoE), in 16 bits. How many tokens a prefill holds is the engine's
# (MemoryModel.prefill_tokens).
_ACTIVATION_BYTES = 2
_RESIDUAL_TENSORS = 4
_MLP_TENSORS = 3

# Between pipeline stages vLLM sends the hidden states and the residual of every token in
# the batch (IntermediateTensors in vllm/model_executor/models/llama.py), 16 bits each.
_PIPELINE_TENSORS = 2


def kv_cache_bytes_per_token(
    facts: ModelFacts, kv_cache_dtype: str | None = None, num_shard: int = 1, layers: int | None = None
) -> int:
    """layers x 2 (K and V) x kv heads x head_dim x dtype bytes, for one GPU of num_shard.
    KV heads split across shards; with fewer KV heads than shards (multi-query) each
    shard keeps a replica. `layers`: those on this GPU's pipeline stage (default: all)."""
    if kv_cache_dtype not in _KV_CACHE_DTYPE_BYTES:
        raise ValueError(f"Unknown kv-cache dtype {kv_cache_dtype!r}: use fp8_e4m3fn or fp8_e5m2.")
    kv_heads_per_gpu = max(1, facts.num_key_value_heads // num_shard)
    layers = facts.num_layers if layers is None else layers
    return layers * 2 * kv_heads_per_gpu * facts.head_dim * _KV_CACHE_DTYPE_BYTES[kv_cache_dtype]


def default_max_total_tokens(facts: ModelFacts) -> int:
    return min(facts.max_position_embeddings, DEFAULT_MAX_TOTAL_TOKENS)


def prefill_activation_bytes(facts: ModelFacts, prefill_tokens: int, num_shard: int) -> float:
    """Rough peak of live activations during the warmup prefill, on one GPU."""
    experts_factor = max(1, facts.num_experts_per_tok) if facts.num_experts else 1
    per_token = (
        _RESIDUAL_TENSORS * facts.hidden_size + _MLP_TENSORS * facts.intermediate_size * experts_factor / num_shard
    )
    return prefill_tokens * per_token * _ACTIVATION_BYTES


def pipeline_buffer_bytes(facts: ModelFacts, prefill_tokens: int, nodes: int) -> float:
    """One GPU's buffers for what pipeline stages send and receive: none on one node."""
    if nodes <= 1:
        return 0.0
    return prefill_tokens * _PIPELINE_TENSORS * facts.hidden_size * _ACTIVATION_BYTES


# --- shard counts ------------------------------------------------------------------------


def valid_shard_counts(
    facts: ModelFacts, quantization: str, limit: int = MAX_GPUS_PER_NODE, engine: str = DEFAULT_ENGINE
) -> tuple[int, ...]:
    """Every GPU count up to `limit` the engine (by name) can shard this model across."""
    serving = engine_named(engine)
    if serving.shard_refusal(quantization):
        return (1,)
    heads, kv_heads = facts.num_attention_heads, facts.num_key_value_heads
    return tuple(n for n in range(1, limit + 1) if serving.splits_heads(heads, kv_heads, n))


# --- one GPU's budget --------------------------------------------------------------------


@dataclass(frozen=True)
class Budget:
    """Per-GPU memory needs for one shard count on one node count, in GiB."""

    weights_gib: float
    weights_gib_per_gpu: float
    kv_cache_gib_per_gpu: float
    overhead_gib_per_gpu: float

    @property
    def required_gib_per_gpu(self) -> float:
        return self.weights_gib_per_gpu + self.overhead_gib_per_gpu + self.kv_cache_gib_per_gpu


def budget(
    model: MemoryModel,
    facts: ModelFacts,
    quantization: str,
    num_shard: int,
    tokens: int,
    kv_dtype: str | None,
    adapter_bytes: float = 0.0,
    nodes: int = 1,
) -> Budget:
    """One GPU's needs with tensor parallelism across num_shard GPUs of a node and pipeline
    parallelism across `nodes` nodes: a GPU of the heaviest stage holds its share of that
    stage's weights and of its layers' KV cache."""
    stage_layers = layers_per_node(facts, nodes)
    stage_weights = stage_weights_bytes(facts, quantization, nodes)
    kv = kv_cache_bytes_per_token(facts, kv_dtype, num_shard, layers=stage_layers) * tokens
    kv_headroom = kv * model.kv_headroom
    fixed = model.fixed_overhead_gib * GIB
    prefill_tokens = model.prefill_tokens(tokens)
    activations = prefill_activation_bytes(facts, prefill_tokens, num_shard) + pipeline_buffer_bytes(
        facts, prefill_tokens, nodes
    )
    # LoRA adapters are counted whole on every GPU: they are small, and this errs on the safe side.
    overhead = fixed + activations + kv_headroom + adapter_bytes
    return Budget(
        weights_gib=weights_bytes(facts, quantization) / GIB,
        weights_gib_per_gpu=stage_weights / num_shard / GIB,
        kv_cache_gib_per_gpu=kv / GIB,
        overhead_gib_per_gpu=overhead / GIB,
    )

"""GPU memory planner: model facts + quantization + GPU type -> shard count and verdict.

Pure: no I/O, no Kubernetes, no Hub. The operator calls it at admission so that a
model that cannot load (the most common TGI failure is out-of-memory at warmup) is
refused with a sentence instead of burning a GPU node on a crash loop.

Per GPU, TGI needs:  weights / shards + driver reserve + CUDA context
                     + prefill activations + KV cache for the requested tokens / 0.90
because at warmup it gives the KV cache 90% of the memory left after weights and the
largest prefill (shared/reference/tgi.md, "Memory").
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, Mapping

from llm_operator.engines.tgi import QUANTIZATIONS
from llm_operator.modelinfo import ModelFacts

GIB = 1024**3

# --- weights ----------------------------------------------------------------------------

# QUANTIZATIONS (imported above): the engine's --quantize values.

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
    "gptq": "gptq", "awq": "awq", "fp8": "fp8", "fbgemm_fp8": "fp8", "exl2": "exl2",
    "compressed-tensors": "compressed-tensors", "eetq": "eetq", "marlin": "marlin",
}

# --- KV cache and runtime ----------------------------------------------------------------

_KV_CACHE_DTYPE_BYTES = {None: 2, "auto": 2, "fp8_e4m3fn": 1, "fp8_e5m2": 1}

# Default context when the spec sets none: TGI 2's default max_total_tokens,
# min(max_position_embeddings, 4096). (TGI 3 may choose more after measuring free
# memory; a spec that cares sets limits.maxTotalTokens and the plan uses it.)
DEFAULT_MAX_TOTAL_TOKENS = 4096

# TGI sizes the KV cache to 90% of the memory left after weights and warmup
# (text_generation_server/models/globals.py: TGI_WIGGLE_ROOM = 0.90, used by
# flash_causal_lm.py's warmup as free_memory * TGI_WIGGLE_ROOM).
TGI_KV_MEMORY_FRACTION = 0.90

# Memory nvidia-smi (and GFD's nvidia.com/gpu.memory label) counts but CUDA never hands
# out: measured on an H100 80GB HBM3 (driver 580), NVML total 81559 MiB, cudaMemGetInfo
# total 81079 MiB.
DRIVER_RESERVED_GIB = 0.5

# Per-process CUDA context plus cuBLAS workspaces: measured 0.67 GiB on that H100 with
# torch 2.11 after one bf16 matmul and one attention call; rounded up for NCCL's
# communicator buffers when sharded.
CUDA_CONTEXT_GIB = 0.75

# Prefill activations: at warmup TGI runs one batch of max_batch_prefill_tokens (its
# default is max_input_tokens + 50, i.e. about max_total_tokens). Peak live tensors per
# token are the residual stream and attention output (~4 x hidden) and the MLP's gate,
# up and activation (~3 x intermediate / shards; x experts_per_tok for MoE), in 16 bits.
_ACTIVATION_BYTES = 2
_RESIDUAL_TENSORS = 4
_MLP_TENSORS = 3
# TGI 3 prefills long prompts in chunks (chunked prefill is on by default with its CUDA
# attention backends), so the largest prefill batch stays bounded however long the
# context: assume at most this many tokens in one prefill.
MAX_PREFILL_TOKENS = 8192

MAX_GPUS_PER_NODE = 8  # TGI shards with NCCL inside one node only


# --- GPU types ---------------------------------------------------------------------------

@dataclass(frozen=True)
class GpuType:
    """A GPU model: short name, display name, memory as nvidia-smi reports it, and the
    nvidia.com/gpu.product label values NVIDIA GPU feature discovery sets for it."""

    name: str
    display_name: str
    memory_mib: int
    products: tuple[str, ...] = ()

    @property
    def memory_gib(self) -> float:
        return self.memory_mib / 1024


# Memory is the total nvidia-smi reports (also GFD's nvidia.com/gpu.memory label, MiB),
# which is a little under the marketing size: an "80GB" H100 has 81559 MiB = 79.6 GiB.
GPU_TYPES: dict[str, GpuType] = {gpu.name: gpu for gpu in (
    GpuType("b200", "B200", 183359, ("NVIDIA-B200",)),
    GpuType("h200", "H200 141GB", 143771, ("NVIDIA-H200", "NVIDIA-H200-141GB-HBM3e")),
    GpuType("h100-nvl", "H100 NVL 94GB", 95830, ("NVIDIA-H100-NVL",)),
    GpuType("h100-80gb", "H100 80GB", 81559, ("NVIDIA-H100-80GB-HBM3", "NVIDIA-H100-PCIe")),
    GpuType("a100-80gb", "A100 80GB", 81920, ("NVIDIA-A100-SXM4-80GB", "NVIDIA-A100-80GB-PCIe")),
    GpuType("a100-40gb", "A100 40GB", 40960, ("NVIDIA-A100-SXM4-40GB", "NVIDIA-A100-PCIE-40GB")),
    GpuType("l40s", "L40S 48GB", 46068, ("NVIDIA-L40S",)),
    GpuType("l40", "L40 48GB", 46068, ("NVIDIA-L40",)),
    GpuType("rtx-a6000", "RTX A6000 48GB", 49140, ("NVIDIA-RTX-A6000",)),
    GpuType("a10g", "A10G 24GB", 23028, ("NVIDIA-A10G",)),
    GpuType("a10", "A10 24GB", 23028, ("NVIDIA-A10",)),
    GpuType("l4", "L4 24GB", 23034, ("NVIDIA-L4",)),
    GpuType("v100-32gb", "V100 32GB", 32768, ("Tesla-V100-SXM2-32GB", "Tesla-V100-PCIE-32GB")),
    GpuType("v100-16gb", "V100 16GB", 16384, ("Tesla-V100-SXM2-16GB", "Tesla-V100-PCIE-16GB")),
    GpuType("t4", "T4 16GB", 15360, ("Tesla-T4",)),
)}


# Node labels NVIDIA GPU feature discovery sets (the product name, and memory in MiB).
GPU_PRODUCT_LABEL = "nvidia.com/gpu.product"
GPU_MEMORY_LABEL = "nvidia.com/gpu.memory"


class UnknownGpuType(ValueError):
    """The GPU name is neither a short name nor a known product label."""


def gpu_type_for(name_or_product: str, memory_mib: int | str | None = None) -> GpuType:
    """The GPU type for a short name ('h100-80gb') or a GFD product label
    ('NVIDIA-H100-80GB-HBM3'), case-insensitive. `memory_mib` (a node's
    nvidia.com/gpu.memory label) overrides the table and makes unknown products usable."""
    wanted = name_or_product.strip().lower()
    # GFD appends "-SHARED" to the product when time-slicing is on; the memory is the same.
    wanted = wanted.removesuffix("-shared")
    for gpu in GPU_TYPES.values():
        if wanted == gpu.name or wanted in (product.lower() for product in gpu.products):
            return _with_memory(gpu, memory_mib)
    if memory_mib is not None:
        return GpuType(name_or_product, name_or_product, int(memory_mib), (name_or_product,))
    known = ", ".join(GPU_TYPES)
    raise UnknownGpuType(
        f"Unknown GPU type {name_or_product!r}: use one of {known}, a nvidia.com/gpu.product "
        "label value, or give the GPU memory explicitly."
    )


def gpu_type_from_node_labels(labels: Mapping[str, str]) -> GpuType | None:
    """The GPU type of a node from its GFD labels; None when the node has no product label."""
    product = labels.get(GPU_PRODUCT_LABEL)
    if not product:
        return None
    return gpu_type_for(product, memory_mib=labels.get(GPU_MEMORY_LABEL))


def _with_memory(gpu: GpuType, memory_mib: int | str | None) -> GpuType:
    if memory_mib is None:
        return gpu
    return GpuType(gpu.name, gpu.display_name, int(memory_mib), gpu.products)


# --- request and plan --------------------------------------------------------------------

@dataclass(frozen=True)
class PlanRequest:
    """What the user asked for. gpus=None: pick the smallest valid shard count that fits."""

    facts: ModelFacts
    quantization: str = "none"
    gpu_type: str | None = None
    gpu_memory_gib: float | None = None
    gpus: int | None = None
    max_total_tokens: int | None = None
    kv_cache_dtype: str | None = None
    adapter_bytes: float = 0.0          # LoRA adapters served beside the model (see adapters.py)


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
    valid_shard_counts: tuple[int, ...] = field(default=())

    def to_status(self) -> dict[str, Any]:
        """The LLMDeployment status.plan block (camelCase, floats to 2 decimals)."""
        return {
            "numShard": self.num_shard,
            "weightsGiB": round(self.weights_gib, 2),
            "kvCacheGiBPerGpu": round(self.kv_cache_gib_per_gpu, 2),
            "gpuMemoryGiB": round(self.gpu_memory_gib, 2),
            "fits": self.fits,
            "reason": self.reason,
            "minGpus": self.min_gpus,
        }

    def to_dict(self) -> dict[str, Any]:
        """Everything, camelCase, for the CLI's --json and for debugging."""
        return {
            **self.to_status(),
            "status": self.status,
            "gpu": self.gpu_name,
            "quantization": self.quantization,
            "bitsPerWeight": round(self.bits_per_weight, 3),
            "maxTotalTokens": self.max_total_tokens,
            "weightsGiBPerGpu": round(self.weights_gib_per_gpu, 2),
            "overheadGiBPerGpu": round(self.overhead_gib_per_gpu, 2),
            "requiredGiBPerGpu": round(self.required_gib_per_gpu, 2),
            "validShardCounts": list(self.valid_shard_counts),
        }


def effective_quantization(facts: ModelFacts, quantization: str | None) -> str:
    """The quantization TGI will run: the one asked for, or for a pre-quantized
    checkpoint (quantization_config in config.json) the checkpoint's own method."""
    requested = (quantization or "none").lower()
    if requested not in QUANTIZATIONS:
        raise ValueError(f"Unknown quantization {quantization!r}: use one of {', '.join(QUANTIZATIONS)}.")
    if requested != "none" or not facts.quantization_config:
        return requested
    method = str(facts.quantization_config.get("quant_method", "")).lower()
    if method == "bitsandbytes":
        return _bitsandbytes_variant(facts.quantization_config)
    return _QUANT_METHOD_TO_QUANTIZATION.get(method, "none")


def _bitsandbytes_variant(config: Mapping[str, Any]) -> str:
    if config.get("load_in_4bit"):
        return "bitsandbytes-fp4" if config.get("bnb_4bit_quant_type") == "fp4" else "bitsandbytes-nf4"
    return "bitsandbytes"


def bits_per_weight(facts: ModelFacts, quantization: str) -> float:
    """Stored bits per quantized weight, read from quantization_config when it says."""
    if quantization == "none":
        return 8.0 * _SERVING_DTYPE_BYTES.get(facts.torch_dtype, 2)
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


def weights_bytes(facts: ModelFacts, quantization: str) -> float:
    """Bytes of weights across all shards. Quantized formats leave the token embedding
    and lm_head in 16 bits (TGI and the quantizers only replace the decoder's linears)."""
    params = _parameter_count(facts)
    bits = bits_per_weight(facts, quantization)
    if quantization == "none":
        return params * bits / 8
    embeddings = min(facts.embedding_parameters, params)
    return (params - embeddings) * bits / 8 + embeddings * 2


def _parameter_count(facts: ModelFacts) -> int:
    if facts.parameter_count is None:
        raise ValueError(f"{facts.short_name} has no parameter count: give one or let modelinfo estimate it.")
    return facts.parameter_count


def kv_cache_bytes_per_token(facts: ModelFacts, kv_cache_dtype: str | None = None, num_shard: int = 1) -> int:
    """layers x 2 (K and V) x kv heads x head_dim x dtype bytes, for one GPU of num_shard.
    KV heads split across shards; with fewer KV heads than shards (multi-query) each
    shard keeps a replica."""
    if kv_cache_dtype not in _KV_CACHE_DTYPE_BYTES:
        raise ValueError(f"Unknown kv-cache dtype {kv_cache_dtype!r}: use fp8_e4m3fn or fp8_e5m2.")
    kv_heads_per_gpu = max(1, facts.num_key_value_heads // num_shard)
    return facts.num_layers * 2 * kv_heads_per_gpu * facts.head_dim * _KV_CACHE_DTYPE_BYTES[kv_cache_dtype]


def default_max_total_tokens(facts: ModelFacts) -> int:
    return min(facts.max_position_embeddings, DEFAULT_MAX_TOTAL_TOKENS)


def prefill_activation_bytes(facts: ModelFacts, prefill_tokens: int, num_shard: int) -> float:
    """Rough peak of live activations during the warmup prefill, on one GPU."""
    experts_factor = max(1, facts.num_experts_per_tok) if facts.num_experts else 1
    per_token = (_RESIDUAL_TENSORS * facts.hidden_size
                 + _MLP_TENSORS * facts.intermediate_size * experts_factor / num_shard)
    return prefill_tokens * per_token * _ACTIVATION_BYTES


# --- sharding ----------------------------------------------------------------------------

def sharding_problem(facts: ModelFacts, num_shard: int, quantization: str) -> str | None:
    """Why TGI cannot split this model num_shard ways, or None when it can."""
    if num_shard < 1:
        return f"The GPU count must be at least 1, not {num_shard}."
    if num_shard == 1:
        return None
    if quantization == "exl2":
        return "TGI cannot shard exl2 models: use 1 GPU, or a gptq/awq build of the model to use more."
    heads, kv_heads = facts.num_attention_heads, facts.num_key_value_heads
    # A single KV head (multi-query attention) is replicated on every shard.
    kv_ok = kv_heads == 1 or kv_heads % num_shard == 0
    if heads % num_shard == 0 and kv_ok:
        return None
    counts = _spoken_list(valid_shard_counts(facts, quantization))
    return (f"{facts.short_name} has {heads} attention heads and {kv_heads} key-value heads; "
            f"TGI needs the GPU count to divide both, and {num_shard} does not: use {counts} GPUs.")


def valid_shard_counts(facts: ModelFacts, quantization: str, limit: int = MAX_GPUS_PER_NODE) -> tuple[int, ...]:
    """Every GPU count up to `limit` TGI can shard this model across."""
    if quantization == "exl2":
        return (1,)
    heads, kv_heads = facts.num_attention_heads, facts.num_key_value_heads
    return tuple(
        n for n in range(1, limit + 1)
        if heads % n == 0 and (kv_heads == 1 or kv_heads % n == 0)
    )


def _spoken_list(numbers: tuple[int, ...]) -> str:
    words = [str(n) for n in numbers]
    return words[0] if len(words) == 1 else ", ".join(words[:-1]) + " or " + words[-1]


# --- the plan ----------------------------------------------------------------------------

@dataclass(frozen=True)
class _Budget:
    """Per-GPU memory needs for one shard count."""

    weights_gib: float
    weights_gib_per_gpu: float
    kv_cache_gib_per_gpu: float
    overhead_gib_per_gpu: float

    @property
    def required_gib_per_gpu(self) -> float:
        return self.weights_gib_per_gpu + self.overhead_gib_per_gpu + self.kv_cache_gib_per_gpu


def _budget(facts: ModelFacts, quantization: str, num_shard: int, tokens: int, kv_dtype: str | None,
            adapter_bytes: float = 0.0) -> _Budget:
    weights = weights_bytes(facts, quantization)
    kv = kv_cache_bytes_per_token(facts, kv_dtype, num_shard) * tokens
    # TGI keeps 10% of what is left after weights out of the KV cache: count it here.
    kv_headroom = kv * (1 / TGI_KV_MEMORY_FRACTION - 1)
    prefill_tokens = min(tokens, MAX_PREFILL_TOKENS)
    fixed = (DRIVER_RESERVED_GIB + CUDA_CONTEXT_GIB) * GIB
    # LoRA adapters are counted whole on every GPU: they are small, and this errs on the safe side.
    overhead = fixed + prefill_activation_bytes(facts, prefill_tokens, num_shard) + kv_headroom + adapter_bytes
    return _Budget(
        weights_gib=weights / GIB,
        weights_gib_per_gpu=weights / num_shard / GIB,
        kv_cache_gib_per_gpu=kv / GIB,
        overhead_gib_per_gpu=overhead / GIB,
    )


def _resolve_gpu(request: PlanRequest) -> GpuType:
    if request.gpu_type:
        gpu = gpu_type_for(request.gpu_type)
        if request.gpu_memory_gib is not None:
            return GpuType(gpu.name, gpu.display_name, round(request.gpu_memory_gib * 1024), gpu.products)
        return gpu
    if request.gpu_memory_gib is not None:
        label = f"{request.gpu_memory_gib:g} GiB GPU"
        return GpuType(label, label, round(request.gpu_memory_gib * 1024))
    raise UnknownGpuType("No GPU type or GPU memory given: name a GPU type (for example h100-80gb) or its memory.")


def _smallest_fitting(facts: ModelFacts, quantization: str, gpu: GpuType, tokens: int,
                      kv_dtype: str | None, adapter_bytes: float = 0.0) -> int | None:
    for count in valid_shard_counts(facts, quantization):
        if _budget(facts, quantization, count, tokens, kv_dtype, adapter_bytes).required_gib_per_gpu <= gpu.memory_gib:
            return count
    return None


def plan(request: PlanRequest) -> Plan:
    """Decide the shard count and whether the model fits; the reason says what to change."""
    facts = request.facts
    quantization = effective_quantization(facts, request.quantization)
    gpu = _resolve_gpu(request)
    tokens = request.max_total_tokens or default_max_total_tokens(facts)
    kv_dtype = request.kv_cache_dtype
    min_gpus = _smallest_fitting(facts, quantization, gpu, tokens, kv_dtype, request.adapter_bytes)
    valid = valid_shard_counts(facts, quantization)
    num_shard = request.gpus if request.gpus is not None else (min_gpus or valid[-1])

    problem = sharding_problem(facts, num_shard, quantization)
    budget = _budget(facts, quantization, max(num_shard, 1), tokens, kv_dtype, request.adapter_bytes)
    fits = problem is None and budget.required_gib_per_gpu <= gpu.memory_gib
    if problem is not None:
        status, reason = INVALID_SHARDING, problem
    elif fits:
        status, reason = FITS, _fits_sentence(facts, quantization, gpu, num_shard, budget)
    else:
        status = DOES_NOT_FIT
        reason = _does_not_fit_sentence(request, quantization, gpu, num_shard, budget, min_gpus, tokens)
    return Plan(
        status=status,
        num_shard=num_shard,
        fits=fits,
        reason=reason,
        min_gpus=min_gpus,
        weights_gib=budget.weights_gib,
        weights_gib_per_gpu=budget.weights_gib_per_gpu,
        kv_cache_gib_per_gpu=budget.kv_cache_gib_per_gpu,
        overhead_gib_per_gpu=budget.overhead_gib_per_gpu,
        required_gib_per_gpu=budget.required_gib_per_gpu,
        gpu_memory_gib=gpu.memory_gib,
        gpu_name=gpu.display_name,
        quantization=quantization,
        bits_per_weight=bits_per_weight(facts, quantization),
        max_total_tokens=tokens,
        valid_shard_counts=valid,
    )


def _precision_phrase(facts: ModelFacts, quantization: str) -> str:
    if quantization == "none":
        return f"at {8 * _SERVING_DTYPE_BYTES.get(facts.torch_dtype, 2)}-bit"
    return f"with {quantization} ({bits_per_weight(facts, quantization):.2f} bits per weight)"


def _gpus_phrase(num_shard: int, gpu: GpuType) -> str:
    each = " each" if num_shard > 1 else ""
    return f"{num_shard} x {gpu.display_name} gives {gpu.memory_gib:.1f} GiB{each}"


def _fits_sentence(facts: ModelFacts, quantization: str, gpu: GpuType, num_shard: int, budget: _Budget) -> str:
    spare = gpu.memory_gib - budget.required_gib_per_gpu
    return (f"{facts.short_name} {_precision_phrase(facts, quantization)} needs "
            f"{budget.required_gib_per_gpu:.1f} GiB per GPU ({budget.weights_gib_per_gpu:.1f} weights, "
            f"{budget.kv_cache_gib_per_gpu:.1f} KV cache, {budget.overhead_gib_per_gpu:.1f} runtime); "
            f"{_gpus_phrase(num_shard, gpu)}: fits with {spare:.1f} GiB to spare.")


def _does_not_fit_sentence(request: PlanRequest, quantization: str, gpu: GpuType, num_shard: int,
                           budget: _Budget, min_gpus: int | None, tokens: int) -> str:
    facts = request.facts
    if budget.weights_gib_per_gpu > gpu.memory_gib:
        need = f"needs {budget.weights_gib:.1f} GiB of weights"
    else:
        need = (f"needs {budget.required_gib_per_gpu:.1f} GiB per GPU "
                f"({budget.weights_gib_per_gpu:.1f} weights, {budget.kv_cache_gib_per_gpu:.1f} KV cache "
                f"for {tokens} tokens, {budget.overhead_gib_per_gpu:.1f} runtime)")
    remedies = _remedies(request, quantization, gpu, num_shard, min_gpus, tokens)
    return f"{facts.short_name} {_precision_phrase(facts, quantization)} {need}; {_gpus_phrase(num_shard, gpu)}: {remedies}."


def _remedies(request: PlanRequest, quantization: str, gpu: GpuType, num_shard: int,
              min_gpus: int | None, tokens: int) -> str:
    """What would make it fit: more GPUs, a smaller format at this GPU count, or a bigger GPU."""
    options = []
    if min_gpus is not None and min_gpus > num_shard:
        options.append(f"{min_gpus} GPUs")
    smaller = _smaller_quantization_that_fits(
        request.facts, quantization, gpu, num_shard, tokens, request.kv_cache_dtype)
    if smaller:
        options.append(smaller)
    fitting_tokens = _max_tokens_that_fit(request.facts, quantization, gpu, num_shard, tokens, request.kv_cache_dtype)
    if fitting_tokens >= MIN_USEFUL_TOKENS:
        options.append(f"at most {fitting_tokens} max total tokens")
    if not options:
        return "use a GPU type with more memory or a smaller model"
    if len(options) <= 2:
        return "use " + " or ".join(options)
    return "use " + ", ".join(options[:-1]) + ", or " + options[-1]


MIN_USEFUL_TOKENS = 512  # below this, suggesting a shorter context is no real remedy


def _max_tokens_that_fit(facts: ModelFacts, quantization: str, gpu: GpuType, num_shard: int,
                         requested_tokens: int, kv_dtype: str | None) -> int:
    """The largest max total tokens below the requested one that fits at this GPU count
    (0 if none): the need grows with tokens, so bisect."""
    def fits(tokens: int) -> bool:
        return _budget(facts, quantization, num_shard, tokens, kv_dtype).required_gib_per_gpu <= gpu.memory_gib

    low, high = 0, requested_tokens - 1
    while low < high:
        middle = (low + high + 1) // 2
        low, high = (middle, high) if fits(middle) else (low, middle - 1)
    return low


def _smaller_quantization_that_fits(facts: ModelFacts, quantization: str, gpu: GpuType, num_shard: int,
                                    tokens: int, kv_dtype: str | None) -> str | None:
    """The least lossy smaller format that fits at this GPU count, as a phrase."""
    current_bits = bits_per_weight(facts, quantization)
    for phrase, candidate in (("an 8-bit quantization (fp8 or eetq)", "fp8"),
                              ("a 4-bit quantization (awq or gptq)", "awq")):
        if bits_per_weight(facts, candidate) >= current_bits:
            continue
        if sharding_problem(facts, num_shard, candidate) is not None:
            continue
        if _budget(facts, candidate, num_shard, tokens, kv_dtype).required_gib_per_gpu <= gpu.memory_gib:
            return phrase
    return None

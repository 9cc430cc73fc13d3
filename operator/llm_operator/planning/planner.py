"""GPU memory planner: model facts + engine + quantization + GPU type -> shard count and verdict.

Pure: no I/O, no Kubernetes, no Hub. The operator calls it at admission so that a
model that cannot load (the most common TGI failure is out-of-memory at warmup, vLLM's
is refusing to start for want of KV cache) is refused with a sentence instead of
burning a GPU node on a crash loop.

Per GPU, TGI needs:  weights / shards + driver reserve + CUDA context
                     + prefill activations + KV cache for the requested tokens / 0.90
out of the whole GPU, because at warmup it gives the KV cache 90% of the memory left
after weights and the largest prefill (shared/reference/tgi.md, "Memory").

Per GPU, vLLM 0.33.0 needs:  weights / shards + CUDA context
                             + activations of one --max-num-batched-tokens batch
                             + KV cache for one sequence of the requested tokens
out of --gpu-memory-utilization x the GPU's CUDA memory, because it pre-allocates that
share, profiles one batch, gives the KV cache what is left, and refuses to start when
one max-length sequence does not fit there (vllm/v1/core/kv_cache_planning.py:L50-87).

Across nodes (vLLM only; TGI shards within one node): tensor parallel over a node's GPUs,
pipeline parallel over the nodes, as vLLM advises. A GPU of the heaviest stage holds its
share of ceil(layers / nodes) layers, of one embedding matrix, and of those layers' KV
cache, plus buffers for the hidden states the stages pass on.
"""

from __future__ import annotations

from dataclasses import dataclass, field, replace
from typing import Any, Mapping

from llm_common import vllm as vllm_serving
from llm_operator.engines.tgi import QUANTIZATIONS
from llm_operator.facts.hub import ModelFacts

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

MAX_GPUS_PER_NODE = 8  # TGI shards with NCCL inside one node only (vLLM's tensor parallelism too)

# The most nodes the planner tries when it picks (a spec may ask for more): 16 nodes of
# eight 80 GB GPUs hold 10 TB, several times the largest open models at 16 bits.
MAX_NODES = 16

# --- engines -----------------------------------------------------------------------------

TGI = "tgi"
VLLM = "vllm"
ENGINES = (TGI, VLLM)

# vLLM pre-allocates this share of each GPU's CUDA memory and fits everything inside it
# (vllm/config/cache.py:L215, gpu_memory_utilization default 0.92 in 0.33.0; 0.9 before;
# vllm/v1/worker/utils.py:L716-772 request_memory: ceil(total_memory x utilization)).
VLLM_GPU_MEMORY_UTILIZATION = 0.92

# TGI --quantize values vLLM 0.33.0 has no method for (llm_common.vllm says why).
VLLM_MISSING_QUANTIZATIONS = vllm_serving.ONLY_IN_TGI

TGI_SINGLE_NODE = "TGI serves within one node; multi-node serving needs engine vllm."


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


def vllm_max_num_batched_tokens(gpu: GpuType) -> int:
    """vLLM 0.33.0's default --max-num-batched-tokens for `vllm serve` on this GPU, which is
    also the size of the batch its memory profile runs (vllm/engine/arg_utils.py:L2940-3040
    get_batch_defaults, OPENAI_API_SERVER; chunked prefill on)."""
    # It compares torch's total_memory, what CUDA hands out: the GPU less the driver's reserve.
    cuda_gib = gpu.memory_gib - DRIVER_RESERVED_GIB
    if cuda_gib >= 160:
        return 16384
    # A100s stay on the small default: a larger one lowered their throughput (vLLM PR #17885).
    if cuda_gib >= 70 and not _is_a100(gpu):
        return 8192
    return 2048


def _is_a100(gpu: GpuType) -> bool:
    # vLLM looks for "a100" in the CUDA device name ("NVIDIA A100-SXM4-80GB").
    return any("a100" in name.lower() for name in (gpu.name, gpu.display_name, *gpu.products))


# --- request and plan --------------------------------------------------------------------

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
    adapter_bytes: float = 0.0          # LoRA adapters served beside the model (see adapters.py)
    engine: str = TGI                   # "tgi" or "vllm"
    gpu_memory_utilization: float | None = None   # vLLM only; None: VLLM_GPU_MEMORY_UTILIZATION
    max_batch_tokens: int | None = None           # vLLM only (--max-num-batched-tokens); None: its default for the GPU
    nodes: int | None = 1               # nodes one replica spans (vLLM's pipeline parallel size)


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
    usable_gib_per_gpu: float   # what the engine may fill: TGI the whole GPU, vLLM its reservation
    valid_shard_counts: tuple[int, ...] = field(default=())
    nodes: int = 1                  # num_shard GPUs on each of these nodes
    min_nodes: int | None = None    # the fewest nodes that fit at num_shard GPUs each (vLLM only)
    layers_per_node: int = 0        # decoder layers on the heaviest pipeline stage

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


@dataclass(frozen=True)
class _Weights:
    """A model's weights in bytes, split where pipeline stages split them."""

    decoder: float          # the decoder layers, at the quantized bits
    embeddings: float       # embed_tokens and lm_head (once when tied), at 16 bits
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


def kv_cache_bytes_per_token(facts: ModelFacts, kv_cache_dtype: str | None = None, num_shard: int = 1,
                             layers: int | None = None) -> int:
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
    per_token = (_RESIDUAL_TENSORS * facts.hidden_size
                 + _MLP_TENSORS * facts.intermediate_size * experts_factor / num_shard)
    return prefill_tokens * per_token * _ACTIVATION_BYTES


# Between pipeline stages vLLM sends the hidden states and the residual of every token in
# the batch (IntermediateTensors in vllm/model_executor/models/llama.py), 16 bits each.
_PIPELINE_TENSORS = 2


def pipeline_buffer_bytes(facts: ModelFacts, prefill_tokens: int, nodes: int) -> float:
    """One GPU's buffers for what pipeline stages send and receive: none on one node."""
    if nodes <= 1:
        return 0.0
    return prefill_tokens * _PIPELINE_TENSORS * facts.hidden_size * _ACTIVATION_BYTES


# --- sharding ----------------------------------------------------------------------------

def sharding_problem(facts: ModelFacts, num_shard: int, quantization: str, engine: str = TGI,
                     nodes: int = 1) -> str | None:
    """Why the engine cannot split this model num_shard ways on each of `nodes` nodes, or
    None when it can."""
    if num_shard < 1:
        return f"The GPU count must be at least 1, not {num_shard}."
    if nodes < 1:
        return f"The node count must be at least 1, not {nodes}."
    if nodes > 1 and engine == TGI:
        return TGI_SINGLE_NODE
    if nodes > facts.num_layers:
        return (f"{facts.short_name} has {facts.num_layers} layers: pipeline parallelism needs at least one "
                f"layer per node, so at most {facts.num_layers} nodes.")
    if num_shard == 1:
        return None
    if engine == TGI and quantization == "exl2":
        return "TGI cannot shard exl2 models: use 1 GPU, or a gptq/awq build of the model to use more."
    if _heads_split(facts, num_shard, engine):
        return None
    heads, kv_heads = facts.num_attention_heads, facts.num_key_value_heads
    counts = _spoken_list(valid_shard_counts(facts, quantization, engine=engine))
    if engine == VLLM:
        rule = ("vLLM needs the GPU count to divide the attention heads, and to divide the key-value heads "
                "or be a multiple of them")
    else:
        rule = "TGI needs the GPU count to divide both"
    return (f"{facts.short_name} has {heads} attention heads and {kv_heads} key-value heads; "
            f"{rule}, and {num_shard} does not: use {counts} GPUs.")


def valid_shard_counts(facts: ModelFacts, quantization: str, limit: int = MAX_GPUS_PER_NODE,
                       engine: str = TGI) -> tuple[int, ...]:
    """Every GPU count up to `limit` the engine can shard this model across."""
    if engine == TGI and quantization == "exl2":
        return (1,)
    return tuple(n for n in range(1, limit + 1) if _heads_split(facts, n, engine))


def _heads_split(facts: ModelFacts, num_shard: int, engine: str) -> bool:
    heads, kv_heads = facts.num_attention_heads, facts.num_key_value_heads
    if heads % num_shard:
        return False
    if engine == VLLM:
        # From as many shards as KV heads on, each shard holds one KV head and copies are
        # even only when the count is a multiple (vllm/model_executor/layers/linear.py:L1064-1071
        # QKVParallelLinear; vllm/config/model.py:L1557-1564 for the attention heads).
        return kv_heads % num_shard == 0 if num_shard < kv_heads else num_shard % kv_heads == 0
    # A single KV head (multi-query attention) is replicated on every shard.
    return kv_heads == 1 or kv_heads % num_shard == 0


def _spoken_list(numbers: tuple[int, ...]) -> str:
    words = [str(n) for n in numbers]
    return words[0] if len(words) == 1 else ", ".join(words[:-1]) + " or " + words[-1]


# --- how each engine spends a GPU --------------------------------------------------------

@dataclass(frozen=True)
class MemoryModel:
    """What one engine may fill on a GPU and what it spends besides weights and KV cache."""

    engine: str                  # "tgi" or "vllm"
    display_name: str            # "TGI" or "vLLM", for sentences
    utilization: float | None    # vLLM: its share of the CUDA memory; None: the whole GPU (TGI)
    fixed_overhead_gib: float    # per GPU, whatever the model
    kv_headroom: float           # memory kept out of the KV cache, as a fraction of it
    max_prefill_tokens: int      # tokens in the largest batch the activation estimate assumes
    prefill_follows_context: bool   # True: the prefill is one sequence, at most max total tokens

    def capacity_gib(self, gpu: GpuType) -> float:
        """GiB per GPU the engine may fill."""
        if self.utilization is None:
            return gpu.memory_gib
        # cudaMemGetInfo's total, not nvidia-smi's, is what vLLM takes its share of.
        return (gpu.memory_gib - DRIVER_RESERVED_GIB) * self.utilization

    def prefill_tokens(self, max_total_tokens: int) -> int:
        if self.prefill_follows_context:
            return min(max_total_tokens, self.max_prefill_tokens)
        return self.max_prefill_tokens


def memory_model_for(request: PlanRequest, gpu: GpuType) -> MemoryModel:
    """The engine's memory behaviour for this request on this GPU."""
    if request.engine == TGI:
        for value, setting in ((request.gpu_memory_utilization, "gpu_memory_utilization"),
                               (request.max_batch_tokens, "max_batch_tokens")):
            if value is not None:
                raise ValueError(f"{setting} is a vLLM setting; TGI takes none.")
        return MemoryModel(
            engine=TGI, display_name="TGI", utilization=None,
            # TGI sizes the KV cache from free memory it measures, so the driver's reserve counts against the GPU.
            fixed_overhead_gib=DRIVER_RESERVED_GIB + CUDA_CONTEXT_GIB,
            # TGI keeps 10% of what is left after weights out of the KV cache: count it here.
            kv_headroom=1 / TGI_KV_MEMORY_FRACTION - 1,
            max_prefill_tokens=MAX_PREFILL_TOKENS, prefill_follows_context=True,
        )
    if request.engine == VLLM:
        utilization = (VLLM_GPU_MEMORY_UTILIZATION if request.gpu_memory_utilization is None
                       else request.gpu_memory_utilization)
        if not 0 < utilization <= 1:
            raise ValueError(f"gpu_memory_utilization must be above 0 and at most 1, not {utilization:g}.")
        if request.max_batch_tokens is not None and request.max_batch_tokens < 1:
            raise ValueError(f"max_batch_tokens must be at least 1, not {request.max_batch_tokens}.")
        return MemoryModel(
            engine=VLLM, display_name="vLLM", utilization=utilization,
            # Weights, the profile run's peak and non-torch memory (CUDA context, NCCL) come out of
            # the reservation (vllm/v1/worker/gpu_worker.py:L641-775 determine_available_memory).
            # Its CUDA-graph estimate is measured at startup and not counted here.
            fixed_overhead_gib=CUDA_CONTEXT_GIB,
            # The KV cache gets all that is left; the startup check wants one max-length sequence.
            kv_headroom=0.0,
            # The profile run is one batch of max_num_batched_tokens, however long a sequence may be
            # (vllm/v1/worker/gpu_model_runner.py profile_run: _dummy_run(self.max_num_tokens)).
            max_prefill_tokens=request.max_batch_tokens or vllm_max_num_batched_tokens(gpu),
            prefill_follows_context=False,
        )
    raise ValueError(f"Unknown engine {request.engine!r}: use one of {', '.join(ENGINES)}.")


def _engine_problem(quantization: str, engine: str) -> str | None:
    # Admission refuses these earlier; this guard keeps a wrong plan from being made.
    if engine == VLLM and quantization in VLLM_MISSING_QUANTIZATIONS:
        return f"vLLM 0.33.0 has no {quantization} quantization; TGI has it: use engine tgi, or another quantization."
    return None


# --- the plan ----------------------------------------------------------------------------

@dataclass(frozen=True)
class _Budget:
    """Per-GPU memory needs for one shard count on one node count."""

    weights_gib: float
    weights_gib_per_gpu: float
    kv_cache_gib_per_gpu: float
    overhead_gib_per_gpu: float

    @property
    def required_gib_per_gpu(self) -> float:
        return self.weights_gib_per_gpu + self.overhead_gib_per_gpu + self.kv_cache_gib_per_gpu


def _budget(model: MemoryModel, facts: ModelFacts, quantization: str, num_shard: int, tokens: int,
            kv_dtype: str | None, adapter_bytes: float = 0.0, nodes: int = 1) -> _Budget:
    """One GPU's needs with tensor parallelism across num_shard GPUs of a node and pipeline
    parallelism across `nodes` nodes: a GPU of the heaviest stage holds its share of that
    stage's weights and of its layers' KV cache."""
    stage_layers = layers_per_node(facts, nodes)
    stage_weights = stage_weights_bytes(facts, quantization, nodes)
    kv = kv_cache_bytes_per_token(facts, kv_dtype, num_shard, layers=stage_layers) * tokens
    kv_headroom = kv * model.kv_headroom
    fixed = model.fixed_overhead_gib * GIB
    prefill_tokens = model.prefill_tokens(tokens)
    activations = (prefill_activation_bytes(facts, prefill_tokens, num_shard)
                   + pipeline_buffer_bytes(facts, prefill_tokens, nodes))
    # LoRA adapters are counted whole on every GPU: they are small, and this errs on the safe side.
    overhead = fixed + activations + kv_headroom + adapter_bytes
    return _Budget(
        weights_gib=weights_bytes(facts, quantization) / GIB,
        weights_gib_per_gpu=stage_weights / num_shard / GIB,
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


def _fits(model: MemoryModel, facts: ModelFacts, quantization: str, gpu: GpuType, num_shard: int, tokens: int,
          kv_dtype: str | None, adapter_bytes: float, nodes: int) -> bool:
    if sharding_problem(facts, num_shard, quantization, model.engine, nodes) is not None:
        return False
    budget = _budget(model, facts, quantization, num_shard, tokens, kv_dtype, adapter_bytes, nodes)
    return budget.required_gib_per_gpu <= model.capacity_gib(gpu)


def _smallest_fitting(model: MemoryModel, facts: ModelFacts, quantization: str, gpu: GpuType, tokens: int,
                      kv_dtype: str | None, adapter_bytes: float = 0.0, nodes: int = 1) -> int | None:
    """The fewest GPUs per node that fit on `nodes` nodes, or None."""
    for count in valid_shard_counts(facts, quantization, engine=model.engine):
        if _fits(model, facts, quantization, gpu, count, tokens, kv_dtype, adapter_bytes, nodes):
            return count
    return None


def _fewest_nodes(model: MemoryModel, facts: ModelFacts, quantization: str, gpu: GpuType, num_shard: int,
                  tokens: int, kv_dtype: str | None, adapter_bytes: float = 0.0) -> int | None:
    """The fewest nodes (up to MAX_NODES) that fit at num_shard GPUs each, or None."""
    for nodes in range(1, MAX_NODES + 1):
        if _fits(model, facts, quantization, gpu, num_shard, tokens, kv_dtype, adapter_bytes, nodes):
            return nodes
    return None


def _nodes_and_min_gpus(model: MemoryModel, request: PlanRequest, quantization: str, gpu: GpuType,
                        tokens: int) -> tuple[int, int | None]:
    """The node count to plan for, and the fewest GPUs per node that fit on it."""
    facts, kv_dtype, adapter_bytes = request.facts, request.kv_cache_dtype, request.adapter_bytes

    def smallest(nodes: int) -> int | None:
        return _smallest_fitting(model, facts, quantization, gpu, tokens, kv_dtype, adapter_bytes, nodes)

    if request.nodes is not None:
        return request.nodes, smallest(request.nodes)
    if model.engine == TGI:
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


def plan(request: PlanRequest) -> Plan:
    """Decide the shard count and node count and whether the model fits; the reason says what to change."""
    facts = request.facts
    quantization = effective_quantization(facts, request.quantization)
    gpu = _resolve_gpu(request)
    model = memory_model_for(request, gpu)
    refused = _engine_problem(quantization, model.engine)
    if refused:
        raise ValueError(refused)
    if model.engine == TGI and request.nodes not in (1, None):
        raise ValueError(TGI_SINGLE_NODE)
    capacity = model.capacity_gib(gpu)
    tokens = request.max_total_tokens or default_max_total_tokens(facts)
    kv_dtype = request.kv_cache_dtype
    nodes, min_gpus = _nodes_and_min_gpus(model, request, quantization, gpu, tokens)
    valid = valid_shard_counts(facts, quantization, engine=model.engine)
    num_shard = request.gpus if request.gpus is not None else (min_gpus or valid[-1])
    min_nodes = (_fewest_nodes(model, facts, quantization, gpu, num_shard, tokens, kv_dtype, request.adapter_bytes)
                 if model.engine == VLLM else None)

    problem = sharding_problem(facts, num_shard, quantization, model.engine, nodes)
    budget = _budget(model, facts, quantization, max(num_shard, 1), tokens, kv_dtype, request.adapter_bytes,
                     max(nodes, 1))
    fits = problem is None and budget.required_gib_per_gpu <= capacity
    if problem is not None:
        status, reason = INVALID_SHARDING, problem
    elif fits:
        status, reason = FITS, _fits_sentence(model, facts, quantization, gpu, num_shard, nodes, budget)
    else:
        status = DOES_NOT_FIT
        reason = _does_not_fit_sentence(model, request, quantization, gpu, num_shard, nodes, budget, min_gpus,
                                        min_nodes, tokens)
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
        engine=model.engine,
        usable_gib_per_gpu=capacity,
        valid_shard_counts=valid,
        nodes=nodes,
        min_nodes=min_nodes,
        layers_per_node=layers_per_node(facts, nodes),
    )


def _precision_phrase(facts: ModelFacts, quantization: str) -> str:
    if quantization == "none":
        return f"at {8 * _SERVING_DTYPE_BYTES.get(facts.torch_dtype, 2)}-bit"
    return f"with {quantization} ({bits_per_weight(facts, quantization):.2f} bits per weight)"


def _gpus_phrase(model: MemoryModel, num_shard: int, gpu: GpuType, nodes: int = 1) -> str:
    each = " each" if num_shard > 1 or nodes > 1 else ""
    count = f"{nodes} nodes x {num_shard}" if nodes > 1 else f"{num_shard}"
    phrase = f"{count} x {gpu.display_name} gives {model.capacity_gib(gpu):.1f} GiB{each}"
    if model.utilization is None:
        return phrase
    of = "each GPU" if num_shard > 1 or nodes > 1 else "the GPU"
    return f"{phrase} to {model.display_name} ({model.utilization:g} of {of}, --gpu-memory-utilization)"


def _fits_sentence(model: MemoryModel, facts: ModelFacts, quantization: str, gpu: GpuType, num_shard: int,
                   nodes: int, budget: _Budget) -> str:
    spare = model.capacity_gib(gpu) - budget.required_gib_per_gpu
    return (f"{facts.short_name} {_precision_phrase(facts, quantization)} needs "
            f"{budget.required_gib_per_gpu:.1f} GiB per GPU ({budget.weights_gib_per_gpu:.1f} weights, "
            f"{budget.kv_cache_gib_per_gpu:.1f} KV cache, {budget.overhead_gib_per_gpu:.1f} runtime); "
            f"{_gpus_phrase(model, num_shard, gpu, nodes)}: fits with {spare:.1f} GiB to spare.")


def _does_not_fit_sentence(model: MemoryModel, request: PlanRequest, quantization: str, gpu: GpuType,
                           num_shard: int, nodes: int, budget: _Budget, min_gpus: int | None,
                           min_nodes: int | None, tokens: int) -> str:
    facts = request.facts
    capacity = model.capacity_gib(gpu)
    if budget.weights_gib_per_gpu > capacity:
        need = f"needs {budget.weights_gib:.1f} GiB of weights"
    else:
        need = (f"needs {budget.required_gib_per_gpu:.1f} GiB per GPU "
                f"({budget.weights_gib_per_gpu:.1f} weights, {budget.kv_cache_gib_per_gpu:.1f} KV cache "
                f"for {tokens} tokens, {budget.overhead_gib_per_gpu:.1f} runtime)")
    remedies = _remedies(model, request, quantization, gpu, num_shard, nodes, min_gpus, min_nodes, tokens)
    start = (f"{facts.short_name} {_precision_phrase(facts, quantization)} {need}; "
             f"{_gpus_phrase(model, num_shard, gpu, nodes)}")
    if model.engine == VLLM and budget.weights_gib_per_gpu <= capacity:
        return f"{start}, so {_vllm_refusal(budget, capacity, tokens)}. {remedies[0].upper()}{remedies[1:]}."
    return f"{start}: {remedies}."


def _vllm_refusal(budget: _Budget, capacity_gib: float, tokens: int) -> str:
    """Why vLLM would not start, in the terms of its own startup check
    (vllm/v1/core/kv_cache_planning.py:L50-87 _check_enough_kv_cache_memory)."""
    left = capacity_gib - budget.weights_gib_per_gpu - budget.overhead_gib_per_gpu
    if left <= 0:
        return "vLLM would refuse to start: no memory is left for the KV cache after weights and activations"
    return (f"vLLM would refuse to start: one sequence of {tokens} tokens needs "
            f"{budget.kv_cache_gib_per_gpu:.1f} GiB of KV cache per GPU and {left:.1f} GiB is left "
            "after weights and activations")


def _remedies(model: MemoryModel, request: PlanRequest, quantization: str, gpu: GpuType, num_shard: int,
              nodes: int, min_gpus: int | None, min_nodes: int | None, tokens: int) -> str:
    """What would make it fit: more nodes when no GPU count fits these, more GPUs, a smaller
    format at this GPU count, fewer tokens, or a bigger GPU."""
    options = []
    # Pipeline parallelism across nodes only where the node itself is the limit: vLLM advises
    # tensor parallelism within a node first.
    if min_gpus is None:
        options.extend(_more_nodes(model, request, quantization, gpu, num_shard, nodes, min_nodes, tokens))
    if min_gpus is not None and min_gpus > num_shard:
        options.append(f"{min_gpus} GPUs per node" if nodes > 1 else f"{min_gpus} GPUs")
    smaller = _smaller_quantization_that_fits(
        model, request.facts, quantization, gpu, num_shard, tokens, request.kv_cache_dtype, nodes)
    if smaller:
        options.append(smaller)
    fitting_tokens = _max_tokens_that_fit(
        model, request.facts, quantization, gpu, num_shard, tokens, request.kv_cache_dtype, nodes)
    if fitting_tokens >= MIN_USEFUL_TOKENS:
        options.append(f"at most {fitting_tokens} max total tokens")
    if not options:
        return "use a GPU type with more memory or a smaller model"
    if len(options) <= 2:
        return "use " + " or ".join(options)
    return "use " + ", ".join(options[:-1]) + ", or " + options[-1]


def _more_nodes(model: MemoryModel, request: PlanRequest, quantization: str, gpu: GpuType, num_shard: int,
                nodes: int, min_nodes: int | None, tokens: int) -> list[str]:
    """The multi-node remedy at this GPU count, if one fits: for TGI, as vLLM would plan it,
    since switching to vLLM is what it takes."""
    if model.engine == VLLM:
        if min_nodes is not None and min_nodes > nodes:
            return [f"{min_nodes} nodes (spec.nodes: {min_nodes})"]
        return []
    if quantization in VLLM_MISSING_QUANTIZATIONS:
        return []
    vllm = memory_model_for(replace(request, engine=VLLM), gpu)
    vllm_nodes = _fewest_nodes(vllm, request.facts, quantization, gpu, num_shard, tokens, request.kv_cache_dtype,
                               request.adapter_bytes)
    if vllm_nodes is None or vllm_nodes <= 1:
        return []
    return [f"engine vllm on {vllm_nodes} nodes (spec.engine.name: vllm, spec.nodes: {vllm_nodes})"]


MIN_USEFUL_TOKENS = 512  # below this, suggesting a shorter context is no real remedy


def _max_tokens_that_fit(model: MemoryModel, facts: ModelFacts, quantization: str, gpu: GpuType,
                         num_shard: int, requested_tokens: int, kv_dtype: str | None, nodes: int = 1) -> int:
    """The largest max total tokens below the requested one that fits at this GPU and node
    count (0 if none): the need grows with tokens, so bisect."""
    capacity = model.capacity_gib(gpu)

    def fits(tokens: int) -> bool:
        budget = _budget(model, facts, quantization, num_shard, tokens, kv_dtype, nodes=nodes)
        return budget.required_gib_per_gpu <= capacity

    low, high = 0, requested_tokens - 1
    while low < high:
        middle = (low + high + 1) // 2
        low, high = (middle, high) if fits(middle) else (low, middle - 1)
    return low


# Smaller formats to suggest, least lossy first, as each engine has them (vLLM 0.33.0 has
# no eetq: vllm/model_executor/layers/quantization/__init__.py:L15-48).
_SMALLER_QUANTIZATIONS = {
    TGI: (("an 8-bit quantization (fp8 or eetq)", "fp8"), ("a 4-bit quantization (awq or gptq)", "awq")),
    VLLM: (("an 8-bit quantization (fp8)", "fp8"), ("a 4-bit quantization (awq or gptq)", "awq")),
}


def _smaller_quantization_that_fits(model: MemoryModel, facts: ModelFacts, quantization: str, gpu: GpuType,
                                    num_shard: int, tokens: int, kv_dtype: str | None,
                                    nodes: int = 1) -> str | None:
    """The least lossy smaller format that fits at this GPU and node count, as a phrase."""
    current_bits = bits_per_weight(facts, quantization)
    for phrase, candidate in _SMALLER_QUANTIZATIONS[model.engine]:
        if bits_per_weight(facts, candidate) >= current_bits:
            continue
        if _fits(model, facts, candidate, gpu, num_shard, tokens, kv_dtype, 0.0, nodes):
            return phrase
    return None

"""vLLM's OpenAI-compatible server (0.33.0): the only module of the operator that knows its
image, flags, environment, probes, port, metric names, argument rules and memory model.

The argv itself is built by llm_common.vllm, the function `llm-runtime serve` execs vLLM
with, so the operator's pods and the runtime's can never disagree.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

from llm_common import vllm, vllm_rules
from llm_common.modelfacts import ModelFacts
from llm_operator.engines import GroupRole, LoadMetrics, SpecLike, health_probes
from llm_operator.engines.memory import CUDA_CONTEXT_GIB, DRIVER_RESERVED_GIB, GpuLike, MemoryModel

VERSION = vllm.VERSION
DEFAULT_IMAGE = f"vllm/vllm-openai:v{VERSION}"
# What our quantization enum has and vLLM lacks (admission refuses these with engine vllm).
ONLY_IN_TGI = vllm.ONLY_IN_TGI

# Formats that only a checkpoint quantized beforehand has (vLLM quantizes at load with fp8 only).
PRE_QUANTIZED = ("awq", "gptq", "marlin", "compressed-tensors")

# Everything our enum has that vLLM 0.33.0 can serve; the rest is refused at admission.
QUANTIZATIONS = ("none", *vllm.QUANTIZATION)

# The image's entrypoint is `vllm serve` (docker/Dockerfile, vllm-openai target); say it
# here so that a custom image with another entrypoint runs the same thing.
COMMAND = ("vllm", "serve")

# Waiting and running requests as vLLM 0.33.0 exports them (vllm/v1/metrics/loggers.py,
# labels engine and model_name). "concurrency" on the HPA is running + waiting, which an
# adapter serves as one metric (a recording rule): see docs/autoscaling.md.
LOAD_METRICS = LoadMetrics(
    prefix="vllm:",
    queue=("vllm:num_requests_waiting",),
    concurrency=("vllm:num_requests_waiting", "vllm:num_requests_running"),
    per_pod={"queue": "vllm_num_requests_waiting", "concurrency": "vllm_num_requests_in_flight"},
)

# vLLM finishes the requests in flight on SIGTERM, as TGI does; the same grace.
TERMINATION_GRACE_S = 120
# vLLM listens only once the model is loaded, compiled and its CUDA graphs captured: up to an hour.
STARTUP_PERIOD_S = 10
STARTUP_FAILURES = 360
# 200 once the engine runs, 503 when it has died (vllm/entrypoints/serve/instrumentator/health.py).
HEALTH_PATH = "/health"

# --- memory model ----------------------------------------------------------------------------

# vLLM pre-allocates this share of each GPU's CUDA memory and fits everything inside it
# (vllm/config/cache.py:L215, gpu_memory_utilization default 0.92 in 0.33.0; 0.9 before;
# vllm/v1/worker/utils.py:L716-772 request_memory: ceil(total_memory x utilization)).
GPU_MEMORY_UTILIZATION = 0.92

# How the planner says when vLLM can split attention across GPUs (splits_heads).
HEAD_SPLIT_RULE = (
    "vLLM needs the GPU count to divide the attention heads, and to divide the key-value heads or be a multiple of them"
)

# Smaller formats the plan suggests when memory is short, least lossy first (vLLM 0.33.0 has
# no eetq: vllm/model_executor/layers/quantization/__init__.py:L15-48).
SMALLER_QUANTIZATIONS = (("an 8-bit quantization (fp8)", "fp8"), ("a 4-bit quantization (awq or gptq)", "awq"))


def default_max_num_batched_tokens(gpu: GpuLike) -> int:
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


def _is_a100(gpu: GpuLike) -> bool:
    # vLLM looks for "a100" in the CUDA device name ("NVIDIA A100-SXM4-80GB").
    return any("a100" in name.lower() for name in (gpu.name, gpu.display_name, *gpu.products))


def memory_model(
    gpu: GpuLike, gpu_memory_utilization: float | None = None, max_batch_tokens: int | None = None
) -> MemoryModel:
    """How vLLM 0.33.0 spends a GPU. Per GPU it needs
        weights / shards + CUDA context
        + activations of one --max-num-batched-tokens batch
        + KV cache for one sequence of the requested tokens
    out of --gpu-memory-utilization x the GPU's CUDA memory, because it pre-allocates that
    share, profiles one batch, gives the KV cache what is left, and refuses to start when
    one max-length sequence does not fit there (vllm/v1/core/kv_cache_planning.py:L50-87)."""
    utilization = GPU_MEMORY_UTILIZATION if gpu_memory_utilization is None else gpu_memory_utilization
    if not 0 < utilization <= 1:
        raise ValueError(f"gpu_memory_utilization must be above 0 and at most 1, not {utilization:g}.")
    if max_batch_tokens is not None and max_batch_tokens < 1:
        raise ValueError(f"max_batch_tokens must be at least 1, not {max_batch_tokens}.")
    return MemoryModel(
        engine="vllm",
        display_name="vLLM",
        utilization=utilization,
        # Weights, the profile run's peak and non-torch memory (CUDA context, NCCL) come out of
        # the reservation (vllm/v1/worker/gpu_worker.py:L641-775 determine_available_memory).
        # Its CUDA-graph estimate is measured at startup and not counted here.
        fixed_overhead_gib=CUDA_CONTEXT_GIB,
        # The KV cache gets all that is left; the startup check wants one max-length sequence.
        kv_headroom=0.0,
        # The profile run is one batch of max_num_batched_tokens, however long a sequence may be
        # (vllm/v1/worker/gpu_model_runner.py profile_run: _dummy_run(self.max_num_tokens)).
        max_prefill_tokens=max_batch_tokens or default_max_num_batched_tokens(gpu),
        prefill_follows_context=False,
        checks_kv_cache_at_startup=True,
        utilization_flag="--gpu-memory-utilization",
    )


def splits_heads(heads: int, kv_heads: int, num_shard: int) -> bool:
    """vLLM splits the attention heads evenly (vllm/config/model.py:L1557-1564); from as many
    shards as KV heads on, each shard holds one KV head and copies are even only when the
    count is a multiple (vllm/model_executor/layers/linear.py:L1064-1071 QKVParallelLinear)."""
    if heads % num_shard:
        return False
    return kv_heads % num_shard == 0 if num_shard < kv_heads else num_shard % kv_heads == 0


def quantization_refusal(quantization: str) -> str | None:
    if quantization in ONLY_IN_TGI:
        return (
            f"vLLM {vllm.VERSION} has no {quantization} quantization; TGI has it: use engine tgi, "
            "or another quantization."
        )
    return None


def serve_settings(
    spec: SpecLike,
    gpus: int,
    lora: tuple[str, ...] = (),
    name: str = "",
    lora_rank: int | None = None,
    max_total_tokens: int | None = None,
    checkpoint_quantization: str | None = None,
    group: GroupRole | None = None,
) -> vllm.ServeSettings:
    limits = spec.limits
    quantization = str(getattr(spec.quantization, "value", spec.quantization))
    dtype = str(getattr(spec.dtype, "value", spec.dtype))
    # Clients name the model by the LLMDeployment's name or the Hub id; /v1/models lists both.
    names = tuple(n for n in (name, spec.model.id) if n)
    settings = vllm.ServeSettings(
        model_id=spec.model.id,
        revision=spec.model.revision,
        tensor_parallel_size=gpus,
        quantization=quantization,
        checkpoint_quantization=checkpoint_quantization,
        dtype=dtype,
        trust_remote_code=spec.model.trust_remote_code,
        # Always said: left out, vLLM takes the model's whole context, which the plan did not count.
        max_model_len=limits.max_total_tokens or max_total_tokens,
        max_num_batched_tokens=limits.max_batch_prefill_tokens,
        max_num_seqs=limits.max_concurrent_requests,
        served_model_names=names,
        lora_modules=vllm.lora_modules(lora),
        max_lora_rank=vllm.lora_rank_for([lora_rank]) if lora and lora_rank else None,
        extra_args=tuple(spec.engine.args),
    )
    if group:
        settings = dataclasses.replace(
            settings, nodes=group.nodes, node_rank=group.rank, master_addr=group.leader_address
        )
    return settings


def args_problems(args: Sequence[str]) -> list[str]:
    """What `vllm serve` 0.33.0 would refuse in engine.args, by its own table (llm_common.vllm_rules)."""
    where = "spec.engine.args"
    problems = []
    unknown = vllm_rules.unknown_options(args)
    if unknown:
        problems.append(f"{where}: {', '.join(unknown)} is not an option of `vllm serve` {vllm.VERSION}.")
    stray = vllm_rules.positionals(args)
    if stray:
        problems.append(
            f"{where}: {', '.join(stray)} is no option's value (vLLM takes one positional word, the "
            "model, which spec.model.id sets)."
        )
    repeated = vllm_rules.repeated_options(args)
    if repeated:
        problems.append(
            f"{where} gives {', '.join(repeated)} more than once: vLLM would keep the last; give each once."
        )
    problems += [f"{where}: {p}" for p in vllm_rules.value_problems(args)]
    return problems


def refusals(spec: SpecLike, gpus: int, lora: tuple[str, ...] = (), facts: ModelFacts | None = None) -> list[str]:
    """Why vLLM 0.33.0 would refuse to start the pods this spec makes, as sentences naming
    spec fields: what admission cannot know."""
    problems = args_problems(spec.engine.args)
    quantization = str(getattr(spec.quantization, "value", spec.quantization))
    if quantization in vllm.ONLY_IN_TGI:
        problems.append(f"spec.quantization {quantization} is not in vLLM {vllm.VERSION}; engine tgi has it.")
    limits = spec.limits
    if facts is not None and limits.max_total_tokens and limits.max_total_tokens > facts.max_position_embeddings:
        # vllm/config/model.py: max_model_len above the model's context is refused unless
        # VLLM_ALLOW_LONG_MAX_MODEL_LEN=1.
        problems.append(
            f"spec.limits.maxTotalTokens ({limits.max_total_tokens}) is above {facts.short_name}'s context "
            f"({facts.max_position_embeddings} tokens): vLLM refuses a longer --max-model-len."
        )
    if (
        limits.max_batch_prefill_tokens is not None
        and limits.max_concurrent_requests is not None
        and limits.max_batch_prefill_tokens < limits.max_concurrent_requests
    ):
        # vllm/config/scheduler.py: max_num_batched_tokens must be >= max_num_seqs.
        problems.append(
            f"spec.limits.maxBatchPrefillTokens ({limits.max_batch_prefill_tokens}) is below "
            f"spec.limits.maxConcurrentRequests ({limits.max_concurrent_requests}): vLLM needs at least "
            "one token per sequence in a batch."
        )
    if facts is not None and not facts.quantization_config and quantization in PRE_QUANTIZED:
        # vLLM quantizes at load with fp8 only; these formats are a checkpoint's own.
        problems.append(
            f"spec.quantization {quantization} needs a checkpoint published in that format, and "
            f"{facts.short_name}'s weights are stored unquantized: use fp8 (quantized at load), or a "
            f"build of the model published in {quantization}."
        )
    if facts is not None and facts.quantization_config and quantization not in ("none", ""):
        method = facts.quant_method
        wanted = vllm.QUANTIZATION.get(quantization, quantization)
        if method and method != wanted and not (method == "gptq" and wanted == "gptq_marlin"):
            # vllm/config/model.py refuses a --quantization other than the checkpoint's own.
            problems.append(
                f"spec.quantization {quantization} differs from the checkpoint's own ({method}): vLLM "
                "refuses the mismatch; set spec.quantization to none or to the checkpoint's method."
            )
    # With the cache on, the download Job fetches the pinned revision and the pods load it by
    # path; until the Job is done the entries still name the Hub, and that is no refusal.
    pinned = [] if spec.cache.enabled else vllm.pinned_hub_adapters(lora)
    if pinned:
        problems.append(
            f"vLLM fetches an adapter from the Hub at its main revision only: {', '.join(pinned)} pins "
            "another; turn spec.cache on (the download Job fetches the pinned revision) or pin main."
        )
    return problems


@dataclass(frozen=True)
class VLLM:
    name: str = "vllm"
    display_name: str = "vLLM"
    app_name: str = "vllm"
    default_image: str = DEFAULT_IMAGE
    port: int = vllm.DEFAULT_PORT
    command: tuple[str, ...] = COMMAND
    quantizations: tuple[str, ...] = QUANTIZATIONS
    load_metrics: LoadMetrics = LOAD_METRICS
    termination_grace_seconds: int = TERMINATION_GRACE_S
    startup_seconds: int = STARTUP_PERIOD_S * STARTUP_FAILURES
    multi_node: bool = True
    head_split_rule: str = HEAD_SPLIT_RULE
    smaller_quantizations: tuple[tuple[str, str], ...] = SMALLER_QUANTIZATIONS

    def args(
        self,
        spec: SpecLike,
        gpus: int,
        lora: tuple[str, ...] = (),
        name: str = "",
        lora_rank: int | None = None,
        max_total_tokens: int | None = None,
        checkpoint_quantization: str | None = None,
        group: GroupRole | None = None,
    ) -> list[str]:
        return vllm.serve_args(
            serve_settings(spec, gpus, lora, name, lora_rank, max_total_tokens, checkpoint_quantization, group)
        )

    def refusals(
        self, spec: SpecLike, gpus: int, lora: tuple[str, ...] = (), facts: ModelFacts | None = None
    ) -> list[str]:
        return refusals(spec, gpus, lora, facts)

    def env(self, spec: SpecLike) -> dict[str, str]:
        # With the cache, the weights are on the volume already: vLLM must not go online.
        return vllm.serve_env(offline=spec.cache.enabled)

    def probes(self) -> dict[str, dict[str, Any]]:
        return health_probes(HEALTH_PATH, STARTUP_PERIOD_S, STARTUP_FAILURES)

    def memory_model(
        self, gpu: GpuLike, gpu_memory_utilization: float | None = None, max_batch_tokens: int | None = None
    ) -> MemoryModel:
        return memory_model(gpu, gpu_memory_utilization, max_batch_tokens)

    def splits_heads(self, heads: int, kv_heads: int, num_shard: int) -> bool:
        return splits_heads(heads, kv_heads, num_shard)

    def shard_refusal(self, quantization: str) -> str | None:
        return None  # every quantization it has shards

    def quantization_refusal(self, quantization: str) -> str | None:
        return quantization_refusal(quantization)


ENGINE = VLLM()

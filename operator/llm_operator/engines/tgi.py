"""Hugging Face Text Generation Inference: the only module of the operator that knows its
image, flags, environment, probes, port, metric names, argument rules and memory model.

The argv itself is built by llm_common.tgi, the function `llm-runtime serve` execs the
launcher with, so the operator's pods and the runtime's can never disagree.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from llm_common import tgi_rules
from llm_common.modelfacts import ModelFacts
from llm_common.tgi import DEFAULT_PORT, LauncherSettings, launcher_args, launcher_env, settings_problems
from llm_operator.engines import GroupRole, LoadMetrics, SpecLike, health_probes
from llm_operator.engines.memory import CUDA_CONTEXT_GIB, DRIVER_RESERVED_GIB, GpuLike, MemoryModel

DEFAULT_IMAGE = "ghcr.io/huggingface/text-generation-inference:3.3.7"

# Values of the launcher's --quantize (TGI 3.3.7), plus "none" for weights as they are.
QUANTIZATIONS = (
    "none",
    "awq",
    "gptq",
    "marlin",
    "eetq",
    "fp8",
    "bitsandbytes",
    "bitsandbytes-nf4",
    "bitsandbytes-fp4",
    "exl2",
    "compressed-tensors",
)

# TGI refuses --dtype together with --quantize, except for bitsandbytes (server cli.py; the
# rule is in llm_common/data/tgi-launcher-3.3.7.json).
DTYPE_COMPATIBLE_QUANTIZATIONS = ("none", *tgi_rules.DTYPE_WITH_QUANTIZE)

# Queue and running batch as TGI's router exports them. "concurrency" on the HPA is batch +
# queue, which an adapter serves as one metric (a recording rule): see docs/autoscaling.md.
LOAD_METRICS = LoadMetrics(
    prefix="tgi_",
    queue=("tgi_queue_size",),
    concurrency=("tgi_queue_size", "tgi_batch_current_size"),
    per_pod={"queue": "tgi_queue_size", "concurrency": "tgi_requests_in_flight"},
)

# The image's entrypoint (tgi-entrypoint.sh, v3.3.7) runs `text-generation-launcher $@` unquoted, so an
# argument with a space or a glob character would be split or expanded: run the launcher itself. Its
# other two steps are not needed: ldconfig ("not a big deal in most cases", it says; the NVIDIA
# runtime's hook refreshes the cache) and sourcing the venv (the image's PATH has /usr/src/.venv/bin).
COMMAND = ("text-generation-launcher",)

# TGI drains for 90 s on SIGTERM (--graceful-termination-timeout); give it more.
TERMINATION_GRACE_S = 120
# TGI opens its port only after loading and warming up: allow up to an hour.
STARTUP_PERIOD_S = 10
STARTUP_FAILURES = 360
HEALTH_PATH = "/health"

# --- memory model ----------------------------------------------------------------------------

# TGI sizes the KV cache to 90% of the memory left after weights and warmup
# (text_generation_server/models/globals.py: TGI_WIGGLE_ROOM = 0.90, used by
# flash_causal_lm.py's warmup as free_memory * TGI_WIGGLE_ROOM).
KV_MEMORY_FRACTION = 0.90

# Prefill activations: at warmup TGI runs one batch of max_batch_prefill_tokens (its
# default is max_input_tokens + 50, i.e. about max_total_tokens). TGI 3 prefills long
# prompts in chunks (chunked prefill is on by default with its CUDA attention backends), so
# the largest prefill batch stays bounded however long the context: assume at most this
# many tokens in one prefill.
MAX_PREFILL_TOKENS = 8192

# How the planner says when TGI can split attention across GPUs (splits_heads).
HEAD_SPLIT_RULE = "TGI needs the GPU count to divide both"

# Smaller formats the plan suggests when memory is short, least lossy first.
SMALLER_QUANTIZATIONS = (("an 8-bit quantization (fp8 or eetq)", "fp8"), ("a 4-bit quantization (awq or gptq)", "awq"))


def memory_model(
    gpu: GpuLike, gpu_memory_utilization: float | None = None, max_batch_tokens: int | None = None
) -> MemoryModel:
    """How TGI spends a GPU. Per GPU it needs
        weights / shards + driver reserve + CUDA context
        + prefill activations + KV cache for the requested tokens / 0.90
    out of the whole GPU, because at warmup it gives the KV cache 90% of the memory left
    after weights and the largest prefill (shared/reference/tgi.md, "Memory")."""
    for value, setting in ((gpu_memory_utilization, "gpu_memory_utilization"), (max_batch_tokens, "max_batch_tokens")):
        if value is not None:
            raise ValueError(f"{setting} is a vLLM setting; TGI takes none.")
    return MemoryModel(
        engine="tgi",
        display_name="TGI",
        utilization=None,
        # TGI sizes the KV cache from free memory it measures, so the driver's reserve counts against the GPU.
        fixed_overhead_gib=DRIVER_RESERVED_GIB + CUDA_CONTEXT_GIB,
        # TGI keeps 10% of what is left after weights out of the KV cache: count it here.
        kv_headroom=1 / KV_MEMORY_FRACTION - 1,
        max_prefill_tokens=MAX_PREFILL_TOKENS,
        prefill_follows_context=True,
    )


def splits_heads(heads: int, kv_heads: int, num_shard: int) -> bool:
    """TGI splits the attention heads and the key-value heads evenly; a single KV head
    (multi-query attention) is replicated on every shard."""
    if heads % num_shard:
        return False
    return kv_heads == 1 or kv_heads % num_shard == 0


def shard_refusal(quantization: str) -> str | None:
    if quantization == "exl2":
        return "TGI cannot shard exl2 models: use 1 GPU, or a gptq/awq build of the model to use more."
    return None


def launcher_settings(spec: SpecLike, gpus: int, lora: tuple[str, ...] = ()) -> LauncherSettings:
    limits = spec.limits
    return LauncherSettings(
        model_id=spec.model.id,
        revision=spec.model.revision,
        num_shard=gpus,
        quantize=spec.quantization,
        dtype=spec.dtype,
        trust_remote_code=spec.model.trust_remote_code,
        max_input_tokens=limits.max_input_tokens,
        max_total_tokens=limits.max_total_tokens,
        max_batch_prefill_tokens=limits.max_batch_prefill_tokens,
        max_concurrent_requests=limits.max_concurrent_requests,
        extra_args=tuple(spec.engine.args),
        lora_adapters=lora,
    )


# Why --hostname, --port and --json-output are the operator's alone.
FIXED_FLAGS_REASON = (
    f"the operator sets it: the pods listen on 0.0.0.0:{DEFAULT_PORT} and log JSON, "
    "which the Service, the probes and log readers rely on"
)


def spec_name(flag: tgi_rules.Flag) -> str:
    """How a launcher flag is named to the author of an LLMDeployment."""
    if flag.owner and flag.owner != tgi_rules.OPERATOR:
        return flag.owner
    if flag.owner == tgi_rules.OPERATOR:
        return f"{flag.option} (set by the operator)"
    return f"{flag.option} in spec.engine.args"


def checkpoint_of(facts: ModelFacts | None) -> tgi_rules.Checkpoint | None:
    """What TGI reads from the model's config.json, from its facts (None: not known)."""
    if facts is None:
        return None
    return tgi_rules.Checkpoint.from_config(facts.quantization_config, facts.max_position_embeddings)


def refusals(spec: SpecLike, gpus: int, lora: tuple[str, ...] = (), facts: ModelFacts | None = None) -> list[str]:
    """Why TGI 3.3.7 would refuse to start the pods this spec makes, as sentences naming spec
    fields: what admission cannot know (flag values against spec fields, the checkpoint's own
    quantization and context)."""
    return settings_problems(
        launcher_settings(spec, gpus, lora),
        checkpoint_of(facts),
        spec_name,
        "spec.engine.args",
        fixed=FIXED_FLAGS_REASON,
    )


@dataclass(frozen=True)
class TextGenerationInference:
    name: str = "tgi"
    display_name: str = "TGI"
    app_name: str = "text-generation-inference"
    default_image: str = DEFAULT_IMAGE
    port: int = DEFAULT_PORT
    command: tuple[str, ...] = COMMAND
    quantizations: tuple[str, ...] = QUANTIZATIONS
    load_metrics: LoadMetrics = LOAD_METRICS
    termination_grace_seconds: int = TERMINATION_GRACE_S
    startup_seconds: int = STARTUP_PERIOD_S * STARTUP_FAILURES
    multi_node: bool = False
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
        if group is not None:
            raise ValueError("TGI serves within one node: a multi-node group needs engine vllm.")
        # TGI serves the model under its Hub id, sizes adapters itself, defaults the tokens as
        # the plan does (min(context, 4096)) and takes --quantize fp8 for any checkpoint:
        # name, rank, tokens and the checkpoint's quantization are not needed.
        return launcher_args(launcher_settings(spec, gpus, lora))

    def refusals(
        self, spec: SpecLike, gpus: int, lora: tuple[str, ...] = (), facts: ModelFacts | None = None
    ) -> list[str]:
        return refusals(spec, gpus, lora, facts)

    def env(self, spec: SpecLike) -> dict[str, str]:
        # With the cache, the weights are on the volume already: the launcher must not go online.
        return launcher_env(launcher_settings(spec, 1), offline=spec.cache.enabled)

    def probes(self) -> dict[str, dict[str, Any]]:
        return health_probes(HEALTH_PATH, STARTUP_PERIOD_S, STARTUP_FAILURES)

    def memory_model(
        self, gpu: GpuLike, gpu_memory_utilization: float | None = None, max_batch_tokens: int | None = None
    ) -> MemoryModel:
        return memory_model(gpu, gpu_memory_utilization, max_batch_tokens)

    def splits_heads(self, heads: int, kv_heads: int, num_shard: int) -> bool:
        return splits_heads(heads, kv_heads, num_shard)

    def shard_refusal(self, quantization: str) -> str | None:
        return shard_refusal(quantization)

    def quantization_refusal(self, quantization: str) -> str | None:
        return None  # QUANTIZATIONS is every value the operator knows


TGI = TextGenerationInference()

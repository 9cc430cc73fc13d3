"""Hugging Face Text Generation Inference: the only module of the operator that knows its
image, flags, environment, probes, port, metric names and argument rules.

The argv itself is built by llm_common.tgi, the function `llm-runtime serve` execs the
launcher with, so the operator's pods and the runtime's can never disagree.
"""

from __future__ import annotations

from dataclasses import dataclass

from llm_common import tgi_rules
from llm_common.tgi import DEFAULT_PORT, LauncherSettings, launcher_args, launcher_env, settings_problems

from llm_operator.engines import GroupRole, LoadMetrics, SpecLike, health_probes

DEFAULT_IMAGE = "ghcr.io/huggingface/text-generation-inference:3.3.7"

# Values of the launcher's --quantize (TGI 3.3.7), plus "none" for weights as they are.
QUANTIZATIONS = (
    "none", "awq", "gptq", "marlin", "eetq", "fp8", "bitsandbytes",
    "bitsandbytes-nf4", "bitsandbytes-fp4", "exl2", "compressed-tensors",
)

# TGI refuses --dtype together with --quantize, except for bitsandbytes (server cli.py; the
# rule is in llm_common/data/tgi-launcher-3.3.7.json).
DTYPE_COMPATIBLE_QUANTIZATIONS = ("none", *tgi_rules.DTYPE_WITH_QUANTIZE)

# Queue and running batch as TGI's router exports them. "concurrency" on the HPA is batch +
# queue, which an adapter serves as one metric (a recording rule): see the README.
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
FIXED_FLAGS_REASON = (f"the operator sets it: the pods listen on 0.0.0.0:{DEFAULT_PORT} and log JSON, "
                      "which the Service, the probes and log readers rely on")


def spec_name(flag: tgi_rules.Flag) -> str:
    """How a launcher flag is named to the author of an LLMDeployment."""
    if flag.owner and flag.owner != tgi_rules.OPERATOR:
        return flag.owner
    if flag.owner == tgi_rules.OPERATOR:
        return f"{flag.option} (set by the operator)"
    return f"{flag.option} in spec.engine.args"


def checkpoint_of(facts) -> tgi_rules.Checkpoint | None:
    """What TGI reads from the model's config.json, from its facts (None: not known)."""
    if facts is None:
        return None
    return tgi_rules.Checkpoint.from_config(facts.quantization_config, facts.max_position_embeddings)


def refusals(spec: SpecLike, gpus: int, lora: tuple[str, ...] = (), facts=None) -> list[str]:
    """Why TGI 3.3.7 would refuse to start the pods this spec makes, as sentences naming spec
    fields: what admission cannot know (flag values against spec fields, the checkpoint's own
    quantization and context)."""
    return settings_problems(launcher_settings(spec, gpus, lora), checkpoint_of(facts), spec_name, "spec.engine.args",
                             fixed=FIXED_FLAGS_REASON)


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

    def args(self, spec: SpecLike, gpus: int, lora: tuple[str, ...] = (), name: str = "",
             lora_rank: int | None = None, max_total_tokens: int | None = None,
             checkpoint_quantization: str | None = None, group: GroupRole | None = None) -> list[str]:
        if group is not None:
            raise ValueError("TGI serves within one node: a multi-node group needs engine vllm.")
        # TGI serves the model under its Hub id, sizes adapters itself, defaults the tokens as
        # the plan does (min(context, 4096)) and takes --quantize fp8 for any checkpoint:
        # name, rank, tokens and the checkpoint's quantization are not needed.
        return launcher_args(launcher_settings(spec, gpus, lora))

    def refusals(self, spec: SpecLike, gpus: int, lora: tuple[str, ...] = (), facts=None) -> list[str]:
        return refusals(spec, gpus, lora, facts)

    def env(self, spec: SpecLike) -> dict[str, str]:
        # With the cache, the weights are on the volume already: the launcher must not go online.
        return launcher_env(launcher_settings(spec, 1), offline=spec.cache.enabled)

    def probes(self) -> dict[str, dict]:
        return health_probes(HEALTH_PATH, STARTUP_PERIOD_S, STARTUP_FAILURES)


TGI = TextGenerationInference()

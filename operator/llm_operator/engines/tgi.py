"""Hugging Face Text Generation Inference: the only module of the operator that knows its
image, flags, environment, probes, port, metric names and argument rules.

The argv itself is built by llm_common.tgi, the function `llm-runtime serve` execs the
launcher with, so the operator's pods and the runtime's can never disagree.
"""

from __future__ import annotations

from dataclasses import dataclass

from llm_common.tgi import DEFAULT_PORT, LauncherSettings, launcher_args, launcher_env

from . import PORT_NAME, LoadMetrics, SpecLike

DEFAULT_IMAGE = "ghcr.io/huggingface/text-generation-inference:3.3.7"

# Values of the launcher's --quantize (TGI 3.3.7), plus "none" for weights as they are.
QUANTIZATIONS = (
    "none", "awq", "gptq", "marlin", "eetq", "fp8", "bitsandbytes",
    "bitsandbytes-nf4", "bitsandbytes-fp4", "exl2", "compressed-tensors",
)

# TGI refuses --dtype together with --quantize, except for bitsandbytes (tgi.md).
DTYPE_COMPATIBLE_QUANTIZATIONS = ("none", "bitsandbytes", "bitsandbytes-nf4", "bitsandbytes-fp4")

# Queue and running batch as TGI's router exports them. "concurrency" on the HPA is batch +
# queue, which an adapter serves as one metric (a recording rule): see the README.
LOAD_METRICS = LoadMetrics(
    prefix="tgi_",
    queue=("tgi_queue_size",),
    concurrency=("tgi_queue_size", "tgi_batch_current_size"),
    per_pod={"queue": "tgi_queue_size", "concurrency": "tgi_requests_in_flight"},
)

# TGI drains for 90 s on SIGTERM (--graceful-termination-timeout); give it more.
TERMINATION_GRACE_S = 120
# TGI opens its port only after loading and warming up: allow up to an hour.
STARTUP_PERIOD_S = 10
STARTUP_FAILURES = 360
HEALTH_PATH = "/health"


def _probe(period: int, failures: int, timeout: int = 5) -> dict:
    return {"httpGet": {"path": HEALTH_PATH, "port": PORT_NAME, "scheme": "HTTP"}, "periodSeconds": period,
            "failureThreshold": failures, "timeoutSeconds": timeout, "successThreshold": 1}


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


@dataclass(frozen=True)
class TextGenerationInference:
    name: str = "tgi"
    app_name: str = "text-generation-inference"
    default_image: str = DEFAULT_IMAGE
    port: int = DEFAULT_PORT
    quantizations: tuple[str, ...] = QUANTIZATIONS
    load_metrics: LoadMetrics = LOAD_METRICS
    termination_grace_seconds: int = TERMINATION_GRACE_S
    startup_seconds: int = STARTUP_PERIOD_S * STARTUP_FAILURES

    def args(self, spec: SpecLike, gpus: int, lora: tuple[str, ...] = ()) -> list[str]:
        return launcher_args(launcher_settings(spec, gpus, lora))

    def env(self, spec: SpecLike) -> dict[str, str]:
        # With the cache, the weights are on the volume already: the launcher must not go online.
        return launcher_env(launcher_settings(spec, 1), offline=spec.cache.enabled)

    def probes(self) -> dict[str, dict]:
        return {
            "startupProbe": _probe(STARTUP_PERIOD_S, STARTUP_FAILURES),
            "readinessProbe": _probe(10, 3),
            "livenessProbe": _probe(30, 6, timeout=10),
        }


TGI = TextGenerationInference()

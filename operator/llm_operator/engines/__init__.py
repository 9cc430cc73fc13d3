"""Serving engines: the one seam between the operator and what runs in the serving pods.

Each engine module is the only place that knows its engine's image, argv, environment,
probes, port, metric names, quantizations, argument rules and memory model (how it spends a
GPU and splits a model across GPUs, which the planner asks for); the rest of the operator asks
the engine it gets from `engine_for(spec)`: Text Generation Inference (tgi.py, the default) or
vLLM (vllm.py), by `spec.engine.name`.

Pure: no I/O, and no import of api (api reads the engines' data to build its enums).
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any, Protocol

from llm_common.modelfacts import ModelFacts
from llm_operator.engines.memory import GpuLike, MemoryModel

# The container port's name: every engine's probes use it, and the Service targets it.
PORT_NAME = "http"


def health_probes(path: str, startup_period_s: int, startup_failures: int) -> dict[str, dict[str, Any]]:
    """startupProbe, readinessProbe and livenessProbe on GET `path` at the named port: the
    startup one allows the engine startup_period_s x startup_failures to load the model."""

    def probe(period: int, failures: int, timeout: int = 5) -> dict[str, Any]:
        return {
            "httpGet": {"path": path, "port": PORT_NAME, "scheme": "HTTP"},
            "periodSeconds": period,
            "failureThreshold": failures,
            "timeoutSeconds": timeout,
            "successThreshold": 1,
        }

    return {
        "startupProbe": probe(startup_period_s, startup_failures),
        "readinessProbe": probe(10, 3),
        "livenessProbe": probe(30, 6, timeout=10),
    }


@dataclass(frozen=True)
class LoadMetrics:
    """Which of an engine's Prometheus metrics stand for load, for the autoscalers."""

    prefix: str  # every metric of the engine starts with it
    queue: tuple[str, ...]  # gauges whose sum is the "queue" load of a pod
    concurrency: tuple[str, ...]  # gauges whose sum is the "concurrency" load of a pod
    # spec.autoscaling.metric -> the per-pod metric a custom-metrics adapter serves to the HPA
    per_pod: Mapping[str, str] = field(default_factory=dict)

    def load(self, samples: Mapping[str, float], metric: str) -> float | None:
        """One pod's load for the spec's metric, from its parsed /metrics; None (unknown)
        when the text is not this engine's at all or the gauges read NaN or infinite. A
        gauge the engine has not registered yet counts as 0."""
        names = {"queue": self.queue, "concurrency": self.concurrency}.get(str(getattr(metric, "value", metric)))
        if names is None:
            raise ValueError(f"unknown autoscaling metric {metric!r}; expected queue or concurrency")
        if not any(name.startswith(self.prefix) for name in samples):
            return None
        load = sum(samples.get(name, 0.0) for name in names)
        return max(0.0, load) if math.isfinite(load) else None


@dataclass(frozen=True)
class GroupRole:
    """One pod of a multi-node replica (a LeaderWorkerSet group): how many nodes the model
    spans, this pod's rank among them (a number, or "$(VAR)" the kubelet expands) and the
    leader's address. Rank 0 is the leader, which serves HTTP."""

    nodes: int
    rank: str
    leader_address: str

    @property
    def leader(self) -> bool:
        return self.rank == "0"


class SpecLike(Protocol):
    """What an engine reads of api.LLMDeploymentSpec (duck-typed: engines do not import api)."""

    # Read-only, so that the spec's enums (str subclasses) are strs here.
    @property
    def model(self) -> Any: ...
    @property
    def quantization(self) -> str: ...
    @property
    def dtype(self) -> str: ...
    @property
    def limits(self) -> Any: ...
    @property
    def cache(self) -> Any: ...
    @property
    def engine(self) -> Any: ...


class Engine(Protocol):
    # Read-only: the engines are frozen dataclasses.
    @property
    def name(self) -> str: ...
    @property
    def display_name(self) -> str: ...  # how sentences name it: "TGI", "vLLM"
    @property
    def app_name(self) -> str: ...  # app.kubernetes.io/name of the children
    @property
    def default_image(self) -> str: ...
    @property
    def port(self) -> int: ...
    @property
    def command(self) -> tuple[str, ...]: ...  # the serving container's command (not its image's entrypoint)
    @property
    def quantizations(self) -> tuple[str, ...]: ...  # every --quantize value the engine has, "none" first
    @property
    def load_metrics(self) -> LoadMetrics: ...
    @property
    def termination_grace_seconds(self) -> int: ...
    @property
    def startup_seconds(self) -> int: ...  # the longest a pod may take to load and warm up
    @property
    def multi_node(self) -> bool: ...  # whether one replica may span nodes (pipeline stages)
    # How the planner sizes it (engines/memory.py):
    @property
    def head_split_rule(self) -> str: ...  # when it can split attention N ways, in words, for sentences
    # (phrase, quantization) the plan suggests when memory is short, least lossy first
    @property
    def smaller_quantizations(self) -> tuple[tuple[str, str], ...]: ...

    def args(
        self,
        spec: SpecLike,
        gpus: int,
        lora: tuple[str, ...],
        name: str = "",
        lora_rank: int | None = None,
        max_total_tokens: int | None = None,
        checkpoint_quantization: str | None = None,
        group: GroupRole | None = None,
    ) -> list[str]:
        """The serving container's arguments: tensor-parallel over `gpus`, with these adapters
        (the highest rank among them: `lora_rank`), served as `name` (the LLMDeployment's),
        for sequences of `max_total_tokens` when the spec leaves them out (the plan's), for a
        checkpoint quantized by `checkpoint_quantization` ("": 16-bit weights; None: unknown),
        as this pod of a multi-node `group` (None: one pod serves alone)."""

    def refusals(
        self, spec: SpecLike, gpus: int, lora: tuple[str, ...] = (), facts: ModelFacts | None = None
    ) -> list[str]:
        """Why the engine would refuse to start with this spec (sentences naming spec fields),
        judged by its own argument rules with the model's facts when known; empty: it would start."""

    def env(self, spec: SpecLike) -> dict[str, str]:
        """The environment the engine needs beyond what its image sets."""

    def probes(self) -> dict[str, dict[str, Any]]:
        """startupProbe, readinessProbe and livenessProbe of the serving container."""

    def memory_model(
        self, gpu: GpuLike, gpu_memory_utilization: float | None = None, max_batch_tokens: int | None = None
    ) -> MemoryModel:
        """What the engine may fill on `gpu` and what it spends there besides weights and KV
        cache, with its share of the GPU and its batch as the pods will be told them (None:
        its defaults); ValueError for a setting it does not take or a value out of range."""

    def splits_heads(self, heads: int, kv_heads: int, num_shard: int) -> bool:
        """Whether tensor parallelism over num_shard GPUs can split attention with these heads."""

    def shard_refusal(self, quantization: str) -> str | None:
        """Why the engine serves this quantization on one GPU only (a sentence); None: it shards it."""

    def quantization_refusal(self, quantization: str) -> str | None:
        """Why the engine cannot serve this quantization at all (a sentence); None: it can."""


ENGINE_NAMES = ("tgi", "vllm")


def engine_named(name: str) -> Engine:
    from llm_operator.engines import tgi, vllm

    engines: dict[str, Engine] = {tgi.TGI.name: tgi.TGI, vllm.ENGINE.name: vllm.ENGINE}
    try:
        return engines[str(getattr(name, "value", name))]
    except KeyError:
        raise ValueError(f"unknown engine {name!r}: expected one of {', '.join(engines)}") from None


DEFAULT_ENGINE = "tgi"


def engine_for(spec: SpecLike) -> Engine:
    """The engine that serves this spec."""
    return engine_named(spec.engine.name)

"""How a model is served and scaled: spec.limits (the engine's token limits), spec.autoscaling
(none, an HPA, or the operator's own loop), spec.routing (the gateway's choice of replica) and
spec.service."""

from __future__ import annotations

from enum import Enum

from pydantic import Field

from llm_operator.api.base import Model, Rule, RuledModel, _set


class AutoscalingMode(str, Enum):
    none = "none"
    hpa = "hpa"
    operator = "operator"


class RoutingStrategy(str, Enum):
    leastLoad = "leastLoad"
    prefix = "prefix"


class HPASource(str, Enum):
    engine = "engine"
    gateway = "gateway"


class ScalingMetric(str, Enum):
    queue = "queue"
    concurrency = "concurrency"


class ServiceType(str, Enum):
    ClusterIP = "ClusterIP"
    NodePort = "NodePort"
    LoadBalancer = "LoadBalancer"


class Limits(RuledModel):
    """Token and concurrency limits, passed to TGI's launcher. Unset: TGI picks them from the model and the GPU memory."""

    max_input_tokens: int | None = Field(
        None, description="Longest prompt accepted, in tokens (--max-input-tokens).", ge=1, le=10_000_000
    )
    max_total_tokens: int | None = Field(
        None,
        description="Longest prompt plus generated tokens, in tokens (--max-total-tokens); must exceed maxInputTokens.",
        ge=2,
        le=10_000_000,
    )
    max_batch_prefill_tokens: int | None = Field(
        None,
        description="Tokens prefilled in one batch (--max-batch-prefill-tokens); at least maxInputTokens.",
        ge=1,
        le=10_000_000,
    )
    max_concurrent_requests: int | None = Field(
        None,
        description="Requests in flight per replica before clients get HTTP 429 (--max-concurrent-requests).",
        ge=1,
        le=100_000,
    )

    __rules__ = (
        Rule(
            "!has(self.maxInputTokens) || !has(self.maxTotalTokens) || self.maxTotalTokens > self.maxInputTokens",
            "maxTotalTokens must be greater than maxInputTokens: it counts the prompt and the generated tokens.",
            ".maxTotalTokens",
            lambda s: (
                not (_set(s, "max_input_tokens") and _set(s, "max_total_tokens"))
                or s.max_total_tokens > s.max_input_tokens
            ),
        ),
        Rule(
            "!has(self.maxInputTokens) || !has(self.maxBatchPrefillTokens) || self.maxBatchPrefillTokens >= self.maxInputTokens",
            "maxBatchPrefillTokens must be at least maxInputTokens, or the longest prompt could never be prefilled.",
            ".maxBatchPrefillTokens",
            lambda s: (
                not (_set(s, "max_input_tokens") and _set(s, "max_batch_prefill_tokens"))
                or s.max_batch_prefill_tokens >= s.max_input_tokens
            ),
        ),
    )


class Autoscaling(RuledModel):
    """How the replica count follows load."""

    mode: AutoscalingMode = Field(
        AutoscalingMode.none,
        description="none: spec.replicas is used as given (kubectl scale works); hpa: a HorizontalPodAutoscaler on a TGI metric, scaling this object (needs a custom-metrics adapter); operator: the operator reads the pods' /metrics and scales this object itself.",
    )
    min_replicas: int = Field(
        1,
        description="Fewest replicas the autoscaler keeps. 0 (mode operator only) lets the model "
        "sit at zero replicas; a request through the gateway wakes it.",
        ge=0,
        le=1000,
    )
    max_replicas: int = Field(4, description="Most replicas the autoscaler makes.", ge=1, le=1000)
    metric: ScalingMetric = Field(
        ScalingMetric.queue,
        description="queue: requests waiting (tgi_queue_size) per replica; concurrency: requests in flight (batch plus queue) per replica.",
    )
    target: int = Field(8, description="Target value of the metric per replica.", ge=1, le=100_000)
    scale_down_delay_seconds: int = Field(
        300, description="How long load must stay low before replicas are removed.", ge=0, le=86_400
    )
    hpa_source: HPASource = Field(
        HPASource.engine,
        description="mode hpa: where the HorizontalPodAutoscaler's metric "
        "comes from. engine: the engine's per-pod metric (a Pods metric; a custom-metrics "
        "adapter serves it per pod); gateway: the model's requests in flight through the "
        "gateway (an External metric, llm_gateway_requests_in_flight selected by "
        "model_namespace and model_name, target averaged over the replicas); needs metric "
        "concurrency.",
    )
    scale_to_zero_after_seconds: int | None = Field(
        None,
        description="minReplicas 0 only: scale to zero once no request "
        "has come through the gateway for this long (the operator reads the "
        "gateway's counts, --gateway-pods or --gateway-metrics-url); the next "
        "request wakes the model. Unset: a running model is never scaled to "
        "zero.",
        ge=1,
        le=604_800,
    )

    __rules__ = (
        Rule(
            "self.minReplicas <= self.maxReplicas",
            "minReplicas must not exceed maxReplicas.",
            ".minReplicas",
            lambda s: s.min_replicas <= s.max_replicas,
        ),
        # An HPA scales to zero only behind Kubernetes' alpha HPAScaleToZero feature gate.
        Rule(
            "self.minReplicas >= 1 || self.mode == 'operator'",
            "minReplicas 0 needs mode operator: a HorizontalPodAutoscaler cannot scale to zero (without Kubernetes' "
            "alpha HPAScaleToZero feature gate) and mode none ignores autoscaling; set mode: operator, or minReplicas "
            "to 1 or more.",
            ".minReplicas",
            lambda s: s.min_replicas >= 1 or s.mode == "operator",
        ),
        Rule(
            "self.hpaSource != 'gateway' || (self.mode == 'hpa' && self.metric == 'concurrency')",
            "hpaSource gateway needs mode hpa and metric concurrency (the gateway counts requests in flight, not an "
            "engine's queue; mode operator reads the gateway by itself); set mode: hpa and metric: concurrency, or "
            "hpaSource: engine.",
            ".hpaSource",
            lambda s: s.hpa_source != "gateway" or (s.mode == "hpa" and s.metric == "concurrency"),
        ),
        Rule(
            "!has(self.scaleToZeroAfterSeconds) || self.minReplicas == 0",
            "scaleToZeroAfterSeconds needs minReplicas 0 (zero is below any other floor); set minReplicas: 0 and "
            "mode: operator, or leave scaleToZeroAfterSeconds out.",
            ".scaleToZeroAfterSeconds",
            lambda s: not _set(s, "scale_to_zero_after_seconds") or s.min_replicas == 0,
        ),
    )


class Routing(Model):
    """How the gateway spreads this model's requests over its replicas."""

    strategy: RoutingStrategy = Field(
        RoutingStrategy.leastLoad,
        description="leastLoad: the replica with the fewest "
        "requests in flight through the gateway, ties at random; prefix: requests whose "
        "prompts start alike go to the same replica, where the engine has that prefix "
        "cached (consistent hashing with bounded loads), spilling to the next replica on "
        "the ring when one is over loadFactorPercent of the mean load.",
    )
    prefix_chars: int = Field(
        4096,
        description="strategy prefix: how many characters from the prompt's start (the chat "
        "messages in order, or the completion prompt) make the routing key.",
        ge=1,
        le=1_000_000,
    )
    load_factor_percent: int = Field(
        125,
        description="strategy prefix: the most requests in flight a replica may have, "
        "in percent of the mean over the model's replicas, before requests for its "
        "prefixes go to the next replica on the ring.",
        ge=100,
        le=1000,
    )


class ServiceSpec(Model):
    type: ServiceType = Field(ServiceType.ClusterIP, description="Service type in front of the pods.")
    port: int = Field(80, description="Service port; it forwards to the engine's named port http.", ge=1, le=65535)

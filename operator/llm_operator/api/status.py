"""The LLMDeployment's status as the CRD declares it: conditions in the standard shape,
the plan, and what the operator reports of the children and the autoscaler."""

from __future__ import annotations

from typing import Any, Literal

from pydantic import Field

from llm_operator.api.base import Model
from llm_operator.api.names import WOKEN_ANNOTATION


class Condition(Model):
    type: str = Field(description="Ready, Reconciling, Stalled, ...", max_length=316)
    status: Literal["True", "False", "Unknown"] = Field(description="True, False or Unknown.")
    reason: str = Field(description="One CamelCase word saying why.", max_length=1024)
    message: str = Field("", description="A sentence a person can act on.", max_length=32_768)
    last_transition_time: str = Field(description="When status last changed (RFC 3339).")
    observed_generation: int | None = Field(
        None, description="metadata.generation this condition was computed from.", ge=0
    )


class PlanStatus(Model):
    """What the planner concluded about fitting the model on the GPUs."""

    num_shard: int | None = Field(None, description="Shards (GPUs) per replica.")
    weights_gi_b: float | None = Field(
        None, alias="weightsGiB", description="Weights in GiB at the chosen quantization."
    )
    kv_cache_gi_b_per_gpu: float | None = Field(
        None, alias="kvCacheGiBPerGpu", description="KV cache per GPU in GiB for maxTotalTokens."
    )
    gpu_memory_gi_b: float | None = Field(None, alias="gpuMemoryGiB", description="Memory of one GPU in GiB.")
    fits: bool | None = Field(None, description="Whether weights, KV cache and overhead fit.")
    reason: str = Field("", description="The verdict as a sentence.")
    min_gpus: int | None = Field(None, description="Fewest GPUs that fit, if any.")
    nodes: int | None = Field(None, description="Nodes per replica the plan is for, when above 1.")
    min_nodes: int | None = Field(
        None, description="Fewest nodes that fit at this GPU count per node (vLLM), when above 1."
    )
    known: bool = Field(True, description="False when the model's facts could not be had and the plan is unknown.")
    pending: bool | None = Field(None, description="True while the model's facts are being read; no plan yet.")
    source: Literal["job", "hub", "catalog", "status", "config"] | None = Field(
        None,
        description="Where the model's facts came from: job (the download Job read them from the weights), hub "
        "(the Hugging Face Hub), catalog (the operator's catalog, when the Hub could not answer), status (an earlier "
        "status.modelFacts), config (a local config.json).",
    )


class LLMDeploymentStatus(Model):
    """Observed state, written by the operator."""

    observed_generation: int | None = Field(None, description="metadata.generation the status describes.")
    phase: str = Field(
        "",
        description="One word: Ready or ScaledToZero (Ready=True); Failed (Stalled=True: only a change "
        "to the spec or the cluster helps); Pending, Progressing or Unschedulable (Reconciling=True: waiting).",
    )
    conditions: list[Condition] = Field(
        default_factory=list,
        description="Ready (summary), Reconciling (work under way) and Stalled "
        "(cannot progress without a change), as kstatus-based GitOps tools read them, and more.",
    )
    engine: str | None = Field(None, description="The serving engine the pods run: tgi or vllm.", max_length=16)
    gpus: int | None = Field(None, description="GPUs per pod in use (spec.gpus or the planner's choice).")
    nodes: int | None = Field(
        None,
        description="Nodes (pods) per replica in use (spec.nodes or the planner's choice); above 1 each replica is a LeaderWorkerSet group.",
    )
    replicas: int | None = Field(None, description="Serving replicas that exist (pods; groups when nodes is above 1).")
    ready_replicas: int | None = Field(
        None, description="Serving replicas that are ready (a group is ready when all its pods are)."
    )
    ready: str = Field("", description="readyReplicas/replicas, for kubectl get.")
    selector: str = Field("", description="Label selector of the serving pods (for the scale subresource).")
    url: str = Field("", description="In-cluster URL of the Service.")
    plan: PlanStatus | None = Field(None, description="The planner's verdict.")
    adapters: list[dict[str, Any]] | None = Field(
        None,
        description="Each LoRA adapter: name, id, revision, whether it is cached, how clients name it (servedAs), and why it is not served, if it is not.",
    )
    last_woken_by_request: str | None = Field(
        None,
        description="When a request through the gateway last woke the model from zero replicas (RFC 3339), from the annotation "
        + WOKEN_ANNOTATION
        + ".",
    )
    autoscaler: dict[str, Any] | None = Field(
        None,
        description="The operator-native autoscaler's state and last decision with its inputs, kept across operator restarts.",
    )
    model_facts: dict[str, Any] | None = Field(
        None,
        description="The model's facts the plan was made from (layers, heads, parameters, ...), kept so they are fetched once per revision.",
    )

"""The LLMDeployment's spec: pydantic models, the one source of truth.

crd.py turns them into the CustomResourceDefinition; the read model parses each spec with
them once per generation (`parse_spec`), and nothing below indexes into the raw dict.
"""

from __future__ import annotations

import json
from enum import Enum
from typing import Any, Literal

from pydantic import Field

from llm_operator.api.base import (
    DNS_SUBDOMAIN,
    HUB_REPO_ID,
    QUANTITY,
    Model,  # noqa: F401
    Rule,
    RuledModel,
    RuleViolation,
    _cel_list,
)
from llm_operator.api.engine import DEFAULT_TGI_IMAGE, DEFAULT_VLLM_IMAGE, Engine, EnvVar, ResourceRequirements  # noqa: F401
from llm_operator.api.names import (
    API_VERSION,
    KIND,
    SHORT_NAMES,  # noqa: F401
)
from llm_operator.api.serving import (  # noqa: F401
    Autoscaling,
    AutoscalingMode,
    HPASource,
    Limits,
    Routing,
    RoutingStrategy,
    ScalingMetric,
    ServiceSpec,
    ServiceType,
)
from llm_operator.engines import tgi
from llm_operator.engines import vllm as vllm_engine

# The download Job runs `llm-runtime download` from the operator's own image.
DEFAULT_DOWNLOADER_IMAGE = "ghcr.io/llm-operator/llm-operator:0.1.0"
# Nodes one replica may span (pipeline stages): the planner looks no further either.
MAX_NODES = 16


# The quantizations the engine has (engines/tgi.py QUANTIZATIONS, in its order), as members
# named like the values; written out so that type checkers see the members (test_engines
# checks that they are tgi.QUANTIZATIONS).
class Quantization(str, Enum):
    none = "none"
    awq = "awq"
    gptq = "gptq"
    marlin = "marlin"
    eetq = "eetq"
    fp8 = "fp8"
    bitsandbytes = "bitsandbytes"
    bitsandbytes_nf4 = "bitsandbytes-nf4"
    bitsandbytes_fp4 = "bitsandbytes-fp4"
    exl2 = "exl2"
    compressed_tensors = "compressed-tensors"


# The quantizations the engine accepts a --dtype with (engines/tgi.py).
DTYPE_COMPATIBLE_QUANTIZATIONS = tgi.DTYPE_COMPATIBLE_QUANTIZATIONS


class DType(str, Enum):
    auto = "auto"
    float16 = "float16"
    bfloat16 = "bfloat16"


class AccessMode(str, Enum):
    ReadWriteOnce = "ReadWriteOnce"
    ReadWriteMany = "ReadWriteMany"
    ReadWriteOncePod = "ReadWriteOncePod"


class SecretKeyRef(Model):
    """A key in a Secret in the LLMDeployment's namespace. The operator never reads it: the pods get it by secretKeyRef."""

    name: str = Field(description="Name of the Secret.", min_length=1, max_length=253, pattern=DNS_SUBDOMAIN)
    key: str = Field(
        "token",
        description="Key within the Secret that holds the Hugging Face token.",
        min_length=1,
        max_length=253,
        pattern=r"^[-._a-zA-Z0-9]+$",
    )


class ModelSource(Model):
    """Which model to serve."""

    id: str = Field(
        description="Hugging Face Hub repository id of the model, e.g. mistralai/Mistral-7B-Instruct-v0.2.",
        min_length=1,
        max_length=96,
        pattern=HUB_REPO_ID,
    )
    revision: str = Field(
        "main",
        description="Branch, tag or commit of the model repository; pin a commit for reproducible deployments.",
        min_length=1,
        max_length=128,
        pattern=r"^[A-Za-z0-9][A-Za-z0-9._/-]*$",
    )
    token_secret_ref: SecretKeyRef | None = Field(
        None,
        description="Secret key holding a Hub token, for gated or private models. Passed to the pods by secretKeyRef; the operator never reads it.",
    )
    trust_remote_code: bool = Field(
        False,
        description="Allow the model repository's own Python code to run (TGI's --trust-remote-code). Only for repositories you trust.",
    )


class GPU(Model):
    """What kind of GPU the pods ask for."""

    resource: str = Field(
        "nvidia.com/gpu",
        description="Extended resource name the device plugin advertises.",
        min_length=1,
        max_length=253,
        pattern=r"^([a-z0-9.-]+/)?[a-z0-9]([-a-z0-9_.]*[a-z0-9])?$",
    )
    product: str = Field(
        "",
        description="GPU product as NVIDIA GPU feature discovery labels it (nvidia.com/gpu.product), e.g. NVIDIA-H100-80GB-HBM3; pods are then only placed on such nodes. Empty: any GPU node.",
        max_length=63,
        pattern=r"^([A-Za-z0-9]([-A-Za-z0-9_.]*[A-Za-z0-9])?)?$",
    )


class Toleration(RuledModel):
    """A toleration of node taints, as in a pod's spec."""

    key: str = Field(
        "",
        description="Taint key the toleration applies to; empty with operator Exists matches every taint.",
        max_length=316,
    )
    operator: Literal["Exists", "Equal"] = Field("Equal", description="Exists or Equal.")
    value: str = Field("", description="Taint value for operator Equal.", max_length=63)
    effect: Literal["", "NoSchedule", "PreferNoSchedule", "NoExecute"] = Field(
        "", description="Taint effect to tolerate; empty: all."
    )
    toleration_seconds: int | None = Field(
        None, description="For NoExecute: how long the pod stays bound after the taint appears."
    )

    # The apiserver's own checks of a pod's tolerations: caught at apply, not when a child is refused.
    __rules__ = (
        Rule(
            "self.operator != 'Exists' || !has(self.value) || self.value == ''",
            "value must be empty with operator Exists: Exists matches the key whatever its value.",
            ".value",
            lambda t: t.operator != "Exists" or t.value == "",
        ),
        Rule(
            "self.operator == 'Exists' || (has(self.key) && self.key != '')",
            "key must be set with operator Equal; to tolerate every taint, use operator Exists with no key.",
            ".key",
            lambda t: t.operator == "Exists" or t.key != "",
        ),
        Rule(
            "!has(self.tolerationSeconds) || self.effect == 'NoExecute'",
            "tolerationSeconds needs effect NoExecute: only a NoExecute taint evicts pods after a while.",
            ".tolerationSeconds",
            lambda t: t.toleration_seconds is None or t.effect == "NoExecute",
        ),
    )


class Scheduling(Model):
    """Where the pods may run, in addition to the GPU constraints the operator sets. The download
    Job's pod (spec.cache) runs where these say too, unless spec.cache.scheduling is set."""

    node_selector: dict[str, str] = Field(
        default_factory=dict, description="Node labels the pods require.", max_length=32
    )
    tolerations: list[Toleration] = Field(
        default_factory=list,
        description="Extra tolerations; the serving pods always tolerate the GPU taint too (gpu.resource, e.g. nvidia.com/gpu).",
        max_length=32,
    )
    affinity: dict[str, Any] = Field(
        default_factory=dict,
        description="A Kubernetes Affinity; the serving pods' is merged with the GPU product affinity (gpu.product).",
    )
    priority_class_name: str = Field("", description="PriorityClass of the pods.", max_length=253)


# The download Job's own variables: spec fields set them (resources.desired_download_job).
DOWNLOAD_JOB_ENV = ("MODEL_ID", "REVISION", "CACHE_DIR", "STALL_TIMEOUT_S", "ADAPTERS", "HF_TOKEN")


class Cache(RuledModel):
    """A PersistentVolumeClaim the weights are downloaded into once, shared by every replica."""

    enabled: bool = Field(
        False, description="Download the weights into a shared volume once, before any serving pod starts."
    )
    size: str = Field(
        "200Gi",
        description="Size of the cache volume, a Kubernetes quantity such as 200Gi.",
        max_length=32,
        pattern=QUANTITY,
    )
    storage_class_name: str = Field(
        "",
        description="StorageClass of the cache volume. Empty: the cluster's default StorageClass.",
        max_length=253,
        pattern=r"^([a-z0-9]([-a-z0-9.]*[a-z0-9])?)?$",
    )
    access_mode: AccessMode = Field(
        AccessMode.ReadWriteMany,
        description="Access mode of the volume. ReadWriteMany lets replicas on several nodes share it.",
    )
    downloader_image: str = Field(
        "",
        description="Image of the download Job (it runs `llm-runtime download`). Empty: the operator's setting "
        "(`llm-operator run --downloader-image`; the Helm chart gives the operator's own image), else "
        f"{DEFAULT_DOWNLOADER_IMAGE}.",
        max_length=512,
    )
    stall_timeout_seconds: int = Field(
        300,
        description="The download fails (and its Job retries) when no byte arrives for this long.",
        ge=10,
        le=86_400,
    )
    backoff_limit: int = Field(
        4, description="Retries of the download Job before it is reported as failed.", ge=0, le=100
    )
    deadline_seconds: int = Field(
        21_600, description="The download Job's activeDeadlineSeconds: the most it may take in all.", ge=60, le=604_800
    )
    env: list[EnvVar] = Field(
        default_factory=list,
        description="Extra environment of the download Job: a Hub mirror (HF_ENDPOINT), a proxy (HTTPS_PROXY, NO_PROXY). Not the Job's own variables (MODEL_ID, REVISION, CACHE_DIR, STALL_TIMEOUT_S, ADAPTERS, HF_TOKEN): the spec sets those.",
        max_length=32,
    )
    pod_annotations: dict[str, str] = Field(
        default_factory=dict,
        description="Annotations on the download Job's pod (a proxy or mesh it needs to reach the Hub). spec.podAnnotations are for the serving pods only. A change re-creates a download still running; a finished one is left alone.",
        max_length=64,
    )
    scheduling: Scheduling | None = Field(
        None,
        description="Where the download Job's pod may run, instead of spec.scheduling: its nodeSelector, tolerations, affinity and priorityClassName as written, nothing added (not the GPU taint's toleration, not the GPU product). Unset: spec.scheduling's, with the GPU taint tolerated; with accessMode ReadWriteMany, less the GPU labels (nvidia.com/gpu.product and the others under the GPU resource's domain), so that the download need not wait for a GPU node. A change re-creates a download still running; a finished one is left alone.",
    )

    __rules__ = (
        Rule(
            f"!has(self.env) || self.env.all(e, !(e.name in {_cel_list(DOWNLOAD_JOB_ENV)}))",
            f"env must not set the download Job's own variables ({', '.join(DOWNLOAD_JOB_ENV)}): the spec sets "
            "them (spec.model, spec.adapters, spec.cache.stallTimeoutSeconds, spec.model.tokenSecretRef).",
            ".env",
            lambda s: all(e.name not in DOWNLOAD_JOB_ENV for e in s.env),
        ),
    )


class Adapter(Model):
    """A LoRA adapter served beside the base model, by the same pods and Service."""

    name: str = Field(
        description="Name clients ask for (adapter_id on /generate, model on /v1/chat/completions): lower-case letters, digits, '-', '_' and '.'.",
        min_length=1,
        max_length=63,
        pattern=r"^[a-z0-9]([-a-z0-9_.]*[a-z0-9])?$",
    )
    id: str = Field(
        description="Hub repository holding the PEFT adapter (adapter_config.json and weights).",
        min_length=1,
        max_length=96,
        pattern=HUB_REPO_ID,
    )
    revision: str = Field(
        "main",
        description="Branch, tag or commit of the adapter repository.",
        min_length=1,
        max_length=128,
        pattern=r"^[A-Za-z0-9][A-Za-z0-9._/-]*$",
    )


class LLMDeploymentSpec(RuledModel):
    """Desired state of an LLMDeployment: a model served by GPU pods behind a Service."""

    model: ModelSource = Field(description="The model to serve, from the Hugging Face Hub.")
    quantization: Quantization = Field(
        Quantization.none,
        description="Weight quantization TGI applies or expects (--quantize). none serves the weights as they are.",
    )
    dtype: DType = Field(
        DType.auto,
        description="Weight dtype (--dtype); auto lets TGI choose. TGI refuses a dtype with any quantization but bitsandbytes.",
    )
    gpus: int | None = Field(
        None,
        description="GPUs per pod, one tensor-parallel shard each (--num-shard); with nodes above 1, GPUs on each node of a replica. Unset: the planner picks the fewest that fit.",
        ge=1,
        le=16,
    )
    nodes: int | None = Field(
        None,
        description="Nodes one replica spans (engine vllm only): the model is split tensor-parallel across the gpus of each node and pipeline-parallel across the nodes, and each replica is a LeaderWorkerSet group of this many pods, one per node. Unset: 1, or for vllm the fewest nodes the planner finds the model fits on. Above 1 needs LeaderWorkerSet (leaderworkerset.x-k8s.io) installed in the cluster.",
        ge=1,
        le=MAX_NODES,
    )
    gpu: GPU = Field(default_factory=GPU, description="GPU resource name and product.")
    replicas: int = Field(
        1,
        description="Serving replicas: pods, or with nodes above 1 groups of pods. With autoscaling on, the autoscaler writes it through the scale subresource: leave it out of GitOps sources then.",
        ge=0,
        le=1000,
    )
    autoscaling: Autoscaling = Field(default_factory=Autoscaling, description="Autoscaling of the replica count.")
    routing: Routing = Field(
        default_factory=Routing,
        description="How the gateway (llm-operator gateway) chooses a replica for each request.",
    )
    limits: Limits = Field(default_factory=Limits, description="Token and concurrency limits.")
    cache: Cache = Field(default_factory=Cache, description="Shared weight cache.")
    engine: Engine = Field(
        default_factory=Engine, description="Serving engine image, extra arguments, environment and resources."
    )
    scheduling: Scheduling = Field(default_factory=Scheduling, description="Extra scheduling constraints of the pods.")
    service: ServiceSpec = Field(default_factory=ServiceSpec, description="The Service in front of the pods.")
    adapters: list[Adapter] = Field(
        default_factory=list,
        description="LoRA adapters served beside the model (TGI --lora-adapters); with the cache on they are downloaded and verified with the weights.",
        max_length=32,
    )
    pod_annotations: dict[str, str] = Field(
        default_factory=dict,
        description="Annotations added to the serving pods (for service meshes, log shippers, scrapers).",
        max_length=64,
    )
    pod_labels: dict[str, str] = Field(
        default_factory=dict,
        description="Labels added to the serving pods; the operator's own labels win.",
        max_length=64,
    )

    __rules__ = (
        Rule(
            "self.quantization != 'exl2' || !has(self.gpus) || self.gpus == 1",
            "exl2 models cannot be sharded across GPUs: set gpus to 1 or choose another quantization.",
            ".gpus",
            lambda s: s.quantization != "exl2" or s.gpus is None or s.gpus == 1,
        ),
        Rule(
            "!has(self.nodes) || self.nodes == 1 || (has(self.engine) && self.engine.name == 'vllm')",
            "nodes above 1 needs engine.name vllm: TGI serves a model within one node only; vLLM splits it "
            "pipeline-parallel across nodes (set engine.name: vllm), or use nodes: 1.",
            ".nodes",
            lambda s: s.nodes is None or s.nodes == 1 or s.engine.name == "vllm",
        ),
        Rule(
            "!has(self.nodes) || self.nodes == 1 || !has(self.cache) || !has(self.cache.enabled) || !self.cache.enabled "
            "|| !has(self.cache.accessMode) || self.cache.accessMode == 'ReadWriteMany'",
            "cache.accessMode must be ReadWriteMany when nodes is above 1: every node of a replica mounts the weight "
            "cache, and a ReadWriteOnce or ReadWriteOncePod volume mounts on one node only.",
            ".cache.accessMode",
            lambda s: s.nodes is None or s.nodes == 1 or not s.cache.enabled or s.cache.access_mode == "ReadWriteMany",
        ),
        Rule(
            "!has(self.adapters) || self.adapters.all(a, self.adapters.exists_one(b, b.name == a.name))",
            "adapters: names must be unique: each is the name clients ask for.",
            ".adapters",
            lambda s: len({a.name for a in s.adapters}) == len(s.adapters),
        ),
        Rule(
            "self.dtype == 'auto' || (has(self.engine) && self.engine.name != 'tgi') || self.quantization in "
            + repr(list(DTYPE_COMPATIBLE_QUANTIZATIONS)).replace('"', "'"),
            "dtype must be auto when quantization is awq, gptq, marlin, eetq, fp8, exl2 or compressed-tensors: TGI refuses --dtype with those.",
            ".dtype",
            lambda s: s.dtype == "auto" or s.engine.name != "tgi" or s.quantization in DTYPE_COMPATIBLE_QUANTIZATIONS,
        ),
        Rule(
            "!has(self.engine) || self.engine.name != 'vllm' || !(self.quantization in "
            + repr(list(vllm_engine.ONLY_IN_TGI)).replace('"', "'")
            + ")",
            f"quantization eetq, exl2, bitsandbytes, bitsandbytes-nf4 and bitsandbytes-fp4 are not in vLLM {vllm_engine.VERSION}: "
            "use engine.name tgi for them, or with vllm one of awq, gptq, marlin, fp8 or compressed-tensors.",
            ".quantization",
            lambda s: s.engine.name != "vllm" or s.quantization not in vllm_engine.ONLY_IN_TGI,
            explain=lambda s: (
                f"quantization {getattr(s.quantization, 'value', s.quantization)} is not in vLLM "
                f"{vllm_engine.VERSION}: engine.name tgi has it; with vllm use awq, gptq, marlin, fp8 "
                "or compressed-tensors."
            ),
        ),
    )

    @property
    def autoscaled(self) -> bool:
        return self.autoscaling.mode != "none"


# The object's name becomes the Service's name, which must be a DNS-1035 label. The CRD puts
# this rule on metadata.name itself, so the apiserver's refusal names that field.
NAME_RULE = Rule(
    "self.size() <= 63 && self.matches('^[a-z]([-a-z0-9]*[a-z0-9])?$')",
    "must be at most 63 characters of lower-case letters, digits and '-', starting with a letter and not ending with '-': it names the Service.",
    ".metadata.name",
    lambda name: len(name) <= 63 and __import__("re").match(r"^[a-z]([-a-z0-9]*[a-z0-9])?$", name) is not None,
)


class InvalidSpec(ValueError):
    """A manifest the API refuses; str() names the field and what would be valid."""


def parse_spec(spec: dict[str, Any]) -> LLMDeploymentSpec:
    """The typed spec, or InvalidSpec with every problem as `field: message`."""
    from pydantic import ValidationError

    try:
        return LLMDeploymentSpec.model_validate(spec)
    except ValidationError as err:
        problems = []
        for e in err.errors():
            path = ["spec", *(str(p) for p in e["loc"])]
            violated = (e.get("ctx") or {}).get("error")
            if isinstance(violated, RuleViolation):
                path.append(violated.rule.field_path.lstrip("."))
            msg = e["msg"].removeprefix("Value error, ")
            problems.append(f"{'.'.join(path)}: {msg}")
        raise InvalidSpec("; ".join(problems)) from None


def validate_manifest(obj: dict[str, Any]) -> LLMDeploymentSpec:
    """Check a whole LLMDeployment manifest as the apiserver would, without a cluster."""
    if obj.get("apiVersion") != API_VERSION or obj.get("kind") != KIND:
        raise InvalidSpec(
            f"apiVersion/kind: expected {API_VERSION} {KIND}, got {obj.get('apiVersion')} {obj.get('kind')}"
        )
    name = (obj.get("metadata") or {}).get("name", "")
    if not NAME_RULE.holds(name):
        # Worded as kubectl shows the apiserver's refusal.
        raise InvalidSpec(f"metadata.name: Invalid value: {json.dumps(name)}: {NAME_RULE.message}")
    return parse_spec(obj.get("spec") or {})

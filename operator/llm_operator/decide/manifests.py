"""Pure: an LLMDeployment's spec (and plan) -> the child manifests it should have.

Every child is a plain dict ready for server-side apply. Names are deterministic (the
LLMDeployment's own name, which the CRD restricts to a DNS-1035 label), so a restart
mid-reconcile finds what it made instead of making it twice.
"""

from __future__ import annotations

import hashlib
import json
from dataclasses import dataclass, fields
from typing import Any

from llm_operator import api
from llm_operator.api.names import GATEWAY_IN_FLIGHT
from llm_operator.engines import PORT_NAME, GroupRole, engine_for

MANAGED_BY = "llm-operator"
INSTANCE_LABEL = "app.kubernetes.io/instance"
NAME_LABEL = f"{api.GROUP}/name"  # the selector label of serving pods
HASH_ANNOTATION = f"{api.GROUP}/desired-hash"
# On the serving pod template (so on every pod): which revision of the template a pod runs.
# Status counts ready pods of the current revision only, from the pods it already watches.
TEMPLATE_HASH_LABEL = f"{api.GROUP}/template-hash"
# On the download Job: the digest of its (immutable) pod template, to tell when it must be re-created.
TEMPLATE_HASH_ANNOTATION = f"{api.GROUP}/template-hash"
# On a serving workload: what its pod template was rendered from (`template_inputs`) and the
# template as written (JSON), so that while those inputs are unchanged a newer operator writes the
# same template again instead of its own rendering, and no serving pod restarts (decide/revision.py).
TEMPLATE_INPUTS_ANNOTATION = f"{api.GROUP}/template-inputs"
WRITTEN_TEMPLATE_ANNOTATION = f"{api.GROUP}/pod-template"
# Part of the inputs: raised only for a change of rendering that must reach running pods (a fix
# they need); any other change of rendering waits for the next change of a model's spec.
TEMPLATE_EPOCH = 1
# Spec fields no serving pod is rendered from: a change of them (the autoscalers write replicas)
# is no reason to take up a newer operator's rendering.
NOT_IN_POD_TEMPLATE = frozenset({"replicas", "autoscaling", "routing", "service"})
# The field of each serving workload that holds its pod template(s): what is kept, and recorded.
WORKLOAD_TEMPLATE_FIELD = {"Deployment": "template", "LeaderWorkerSet": "leaderWorkerTemplate"}
ENGINE_CONTAINER = "engine"
# The node label NVIDIA GPU feature discovery gives a node's GPU product (spec.gpu.product).
GPU_PRODUCT_LABEL = "nvidia.com/gpu.product"
# A multi-node replica's pods: the leader serves HTTP (the Service selects it alone).
ROLE_LABEL = f"{api.GROUP}/role"
LEADER, WORKER = "leader", "worker"

# LeaderWorkerSet (sigs.k8s.io/lws), for replicas spanning nodes.
LWS_GROUP = "leaderworkerset.x-k8s.io"
LWS_API_VERSION = f"{LWS_GROUP}/v1"
LWS_KIND = "LeaderWorkerSet"
LWS_GROUP_INDEX_LABEL = "leaderworkerset.sigs.k8s.io/group-index"
# Set by LWS's pod webhook in every container; the kubelet expands $(VAR) in args.
LWS_LEADER_ADDRESS = "$(LWS_LEADER_ADDRESS)"
LWS_WORKER_INDEX = "$(LWS_WORKER_INDEX)"
# The user the download Job runs `llm-runtime download` as: the operator image's USER and the
# chart's runAsUser (one uid everywhere; tests/unit/hack/test_dockerfile.py checks they agree).
DOWNLOAD_UID = 65532


@dataclass(frozen=True)
class Owner:
    """The LLMDeployment the children belong to."""

    name: str
    namespace: str
    uid: str

    def reference(self) -> dict[str, Any]:
        return {
            "apiVersion": api.API_VERSION,
            "kind": api.KIND,
            "name": self.name,
            "uid": self.uid,
            "controller": True,
            "blockOwnerDeletion": True,
        }


@dataclass(frozen=True)
class Decisions:
    """What the reconcile decided before building children."""

    gpus: int  # per pod: spec.gpus or the planner's choice
    nodes: int = 1  # per replica: above 1, a LeaderWorkerSet group of this many pods
    serve: bool = True  # False while the plan or the weight cache is not ready
    lora: tuple[str, ...] = ()  # the adapters to serve, as llm_common.lora.adapter_entry writes them
    lora_rank: int | None = None  # the highest rank among them (vLLM sizes its LoRA slots by it)
    # Tokens per sequence the plan was made for, when the spec leaves them out: vLLM would
    # otherwise take the model's whole context, which the plan did not count.
    max_total_tokens: int | None = None
    # The checkpoint's own quant_method: "" for weights in 16 bits, None when not known.
    checkpoint_quantization: str | None = None
    # The download Job's image where the spec names none (the operator's setting); empty: the default.
    downloader_image: str = ""


def selector_labels(owner: Owner) -> dict[str, str]:
    return {NAME_LABEL: owner.name}


def serving_labels(owner: Owner, nodes: int) -> dict[str, str]:
    """The pods that serve HTTP: all of them, or of multi-node groups the leaders only."""
    return {**selector_labels(owner), **({ROLE_LABEL: LEADER} if nodes > 1 else {})}


def common_labels(owner: Owner, component: str, app_name: str) -> dict[str, str]:
    return {
        "app.kubernetes.io/name": app_name,
        INSTANCE_LABEL: owner.name,
        "app.kubernetes.io/component": component,
        "app.kubernetes.io/managed-by": MANAGED_BY,
        "app.kubernetes.io/part-of": "llm-operator",
    }


def _metadata(owner: Owner, spec: api.LLMDeploymentSpec, name: str, component: str) -> dict[str, Any]:
    labels = common_labels(owner, component, engine_for(spec).app_name)
    return {"name": name, "namespace": owner.namespace, "labels": labels, "ownerReferences": [owner.reference()]}


def with_hash(obj: dict[str, Any]) -> dict[str, Any]:
    """Stamp the object with a hash of itself, so that any change to what we want is
    seen as a change even where a subset comparison with the live object would miss it
    (a field we stopped setting)."""
    digest = hashlib.sha256(json.dumps(obj, sort_keys=True).encode()).hexdigest()[:16]
    obj["metadata"].setdefault("annotations", {})[HASH_ANNOTATION] = digest
    return obj


def template_hash(template: dict[str, Any]) -> str:
    """A short, stable digest of a pod template (before the label carrying it is added)."""
    return hashlib.sha256(json.dumps(template, sort_keys=True).encode()).hexdigest()[:10]


def template_inputs(owner: Owner, spec: api.LLMDeploymentSpec, d: Decisions) -> str:
    """A digest of what a serving pod template is rendered from: the name, the spec less the
    fields no pod reads (NOT_IN_POD_TEMPLATE), the plan's decisions and TEMPLATE_EPOCH. Fields
    left at their defaults are left out, so that a field a newer operator adds (with a default)
    changes nothing."""
    decisions = {f.name: getattr(d, f.name) for f in fields(d) if f.name != "serve" and getattr(d, f.name) != f.default}
    inputs = {
        "epoch": TEMPLATE_EPOCH,
        "name": owner.name,
        "spec": spec.model_dump(mode="json", by_alias=True, exclude_defaults=True, exclude=set(NOT_IN_POD_TEMPLATE)),
        "decisions": decisions,
    }
    return hashlib.sha256(json.dumps(inputs, sort_keys=True).encode()).hexdigest()[:16]


def written_json(template: dict[str, Any]) -> str:
    """A pod template as WRITTEN_TEMPLATE_ANNOTATION records it."""
    return json.dumps(template, sort_keys=True, separators=(",", ":"))


def _record_template(body: dict[str, Any], inputs: str) -> None:
    """Record on the workload what its template was rendered from and the template written."""
    template = body["spec"][WORKLOAD_TEMPLATE_FIELD[body["kind"]]]
    body["metadata"]["annotations"] = {
        TEMPLATE_INPUTS_ANNOTATION: inputs,
        WRITTEN_TEMPLATE_ANNOTATION: written_json(template),
    }


def _env(spec: api.LLMDeploymentSpec) -> list[dict[str, Any]]:
    env: list[dict[str, Any]] = [{"name": k, "value": v} for k, v in engine_for(spec).env(spec).items()]
    ref = spec.model.token_secret_ref
    if ref is not None:
        # By reference only: the operator never reads the Secret.
        env.append({"name": "HF_TOKEN", "valueFrom": {"secretKeyRef": {"name": ref.name, "key": ref.key}}})
    ours = {e["name"] for e in env}
    env += [{"name": e.name, "value": e.value} for e in spec.engine.env if e.name not in ours]
    return env


def pod_tolerations(spec: api.LLMDeploymentSpec) -> list[dict[str, Any]]:
    # GPU nodes carry nvidia.com/gpu=present:NoSchedule on most clusters.
    tolerations = [{"key": spec.gpu.resource, "operator": "Exists", "effect": "NoSchedule"}]
    for t in spec.scheduling.tolerations:
        tolerations.append(t.wire())
    return tolerations


def pod_affinity(spec: api.LLMDeploymentSpec) -> dict[str, Any] | None:
    """The user's affinity, with the GPU product required in every node selector term."""
    affinity = json.loads(json.dumps(spec.scheduling.affinity))  # a copy we may change
    if spec.gpu.product:
        expr = {"key": GPU_PRODUCT_LABEL, "operator": "In", "values": [spec.gpu.product]}
        required = affinity.setdefault("nodeAffinity", {}).setdefault(
            "requiredDuringSchedulingIgnoredDuringExecution", {}
        )
        terms = required.setdefault("nodeSelectorTerms", [])
        if not terms:
            terms.append({})
        for term in terms:
            term.setdefault("matchExpressions", []).append(expr)
    return affinity or None


def _quantity_gi(n: int) -> str:
    return f"{n}Gi"


def _pod_template(
    owner: Owner, spec: api.LLMDeploymentSpec, d: Decisions, group: GroupRole | None = None
) -> dict[str, Any]:
    """The serving pod's template: the engine's container with its GPUs, the cache volume and
    the scheduling constraints. For a pod of a multi-node group, its role's argv (a worker
    serves no HTTP: no port and no probes)."""
    engine = engine_for(spec)
    resources = spec.engine.resources
    limits = {**resources.limits, spec.gpu.resource: str(d.gpus)}
    requests = {**resources.requests}
    serves_http = group is None or group.leader
    container = {
        "name": ENGINE_CONTAINER,
        "image": spec.engine.image or engine.default_image,
        **({"imagePullPolicy": spec.engine.image_pull_policy} if spec.engine.image_pull_policy else {}),
        # The engine itself, not the image's entrypoint script (engines/tgi.py says why).
        "command": list(engine.command),
        "args": engine.args(
            spec,
            d.gpus,
            d.lora,
            name=owner.name,
            lora_rank=d.lora_rank,
            max_total_tokens=d.max_total_tokens,
            checkpoint_quantization=d.checkpoint_quantization,
            group=group,
        ),
        "env": _env(spec),
        **({"ports": [{"name": PORT_NAME, "containerPort": engine.port, "protocol": "TCP"}]} if serves_http else {}),
        "resources": {"limits": limits, **({"requests": requests} if requests else {})},
        "volumeMounts": [
            {"name": "shm", "mountPath": "/dev/shm"},
            {"name": "data", "mountPath": "/data", **({"readOnly": True} if spec.cache.enabled else {})},
        ],
        **(engine.probes() if serves_http else {}),
        "securityContext": {"allowPrivilegeEscalation": False},
    }
    pod_spec: dict[str, Any] = {
        "containers": [container],
        "terminationGracePeriodSeconds": engine.termination_grace_seconds,
        "tolerations": pod_tolerations(spec),
        "volumes": [
            # NCCL falls back to shared memory between shards; the container default (64Mi) is too small.
            {"name": "shm", "emptyDir": {"medium": "Memory", "sizeLimit": _quantity_gi(max(1, d.gpus))}},
            # The shared weight cache (read-only: the download Job filled it), or scratch space.
            {"name": "data", "persistentVolumeClaim": {"claimName": cache_claim_name(owner), "readOnly": True}}
            if spec.cache.enabled
            else {"name": "data", "emptyDir": {}},
        ],
        "enableServiceLinks": False,
    }
    if spec.scheduling.node_selector:
        pod_spec["nodeSelector"] = dict(spec.scheduling.node_selector)
    affinity = pod_affinity(spec)
    if affinity:
        pod_spec["affinity"] = affinity
    if spec.scheduling.priority_class_name:
        pod_spec["priorityClassName"] = spec.scheduling.priority_class_name
    pod_labels = {**spec.pod_labels, **common_labels(owner, "server", engine.app_name), **selector_labels(owner)}
    if group is not None:
        pod_labels[ROLE_LABEL] = LEADER if group.leader else WORKER
    template_meta: dict[str, Any] = {"labels": pod_labels}
    if spec.pod_annotations:
        template_meta["annotations"] = dict(spec.pod_annotations)
    return {"metadata": template_meta, "spec": pod_spec}


def desired_deployment(owner: Owner, spec: api.LLMDeploymentSpec, d: Decisions) -> dict[str, Any]:
    engine = engine_for(spec)
    template = _pod_template(owner, spec, d)
    template["metadata"]["labels"][TEMPLATE_HASH_LABEL] = template_hash(template)
    body: dict[str, Any] = {
        "apiVersion": "apps/v1",
        "kind": "Deployment",
        "metadata": _metadata(owner, spec, owner.name, "server"),
        "spec": {
            "selector": {"matchLabels": selector_labels(owner)},
            # A new pod must be ready before an old one goes: no gap in serving.
            "strategy": {"type": "RollingUpdate", "rollingUpdate": {"maxSurge": 1, "maxUnavailable": 0}},
            "revisionHistoryLimit": 3,
            # Longer than the startup probe's budget, so slow model loads are not called failed.
            "progressDeadlineSeconds": engine.startup_seconds + 600,
            "template": template,
        },
    }
    # Always spec.replicas: autoscalers write that (the scale subresource), never the Deployment.
    body["spec"]["replicas"] = spec.replicas
    _record_template(body, template_inputs(owner, spec, d))
    return with_hash(body)


def desired_leaderworkerset(owner: Owner, spec: api.LLMDeploymentSpec, d: Decisions) -> dict[str, Any]:
    """A replica spanning `d.nodes` nodes: a LeaderWorkerSet group of one pod per node, the
    leader (rank 0) serving HTTP and each worker joining it with its rank. LWS's own webhook
    gives every pod its group labels and the LWS_* variables the ranks and address come from."""
    leader = _pod_template(owner, spec, d, GroupRole(d.nodes, "0", LWS_LEADER_ADDRESS))
    worker = _pod_template(owner, spec, d, GroupRole(d.nodes, LWS_WORKER_INDEX, LWS_LEADER_ADDRESS))
    for template in (leader, worker):
        # One pod of this model per node: a group's pods on as many nodes as it has stages, and
        # no other group's beside them. (Not LWS's exclusive-topology annotation: it keeps a
        # whole group inside one domain of its key, so on the hostname one node.)
        template["spec"].setdefault("affinity", {})["podAntiAffinity"] = {
            "requiredDuringSchedulingIgnoredDuringExecution": [
                {"labelSelector": {"matchLabels": selector_labels(owner)}, "topologyKey": "kubernetes.io/hostname"}
            ]
        }
    revision = template_hash({"leader": leader, "worker": worker})
    for template in (leader, worker):
        template["metadata"]["labels"][TEMPLATE_HASH_LABEL] = revision
    metadata = _metadata(owner, spec, owner.name, "server")
    body: dict[str, Any] = {
        "apiVersion": LWS_API_VERSION,
        "kind": LWS_KIND,
        "metadata": metadata,
        "spec": {
            # Always spec.replicas (groups): autoscalers write that, never the LeaderWorkerSet.
            "replicas": spec.replicas,
            "startupPolicy": "LeaderCreated",
            # A new group must be ready before an old one goes, as with a Deployment.
            "rolloutStrategy": {
                "type": "RollingUpdate",
                "rollingUpdateConfiguration": {"maxUnavailable": 0, "maxSurge": 1},
            },
            "leaderWorkerTemplate": {
                "size": d.nodes,
                # A stage lost is the model lost: a pod restarted alone could not rejoin.
                "restartPolicy": "RecreateGroupOnPodRestart",
                "leaderTemplate": leader,
                "workerTemplate": worker,
            },
        },
    }
    _record_template(body, template_inputs(owner, spec, d))
    return with_hash(body)


def desired_service(owner: Owner, spec: api.LLMDeploymentSpec, nodes: int = 1) -> dict[str, Any]:
    return with_hash(
        {
            "apiVersion": "v1",
            "kind": "Service",
            "metadata": _metadata(owner, spec, owner.name, "server"),
            "spec": {
                "type": spec.service.type,
                "selector": serving_labels(owner, nodes),
                "ports": [{"name": "http", "port": spec.service.port, "targetPort": PORT_NAME, "protocol": "TCP"}],
            },
        }
    )


def desired_pdb(owner: Owner, spec: api.LLMDeploymentSpec) -> dict[str, Any] | None:
    """Voluntary disruptions (node drains) take at most one replica at a time, when there are
    several: one pod of all of them, so with multi-node groups (where one pod lost restarts
    its whole group) one group at a time."""
    replicas = spec.autoscaling.min_replicas if spec.autoscaled else spec.replicas
    if replicas <= 1:
        return None
    return with_hash(
        {
            "apiVersion": "policy/v1",
            "kind": "PodDisruptionBudget",
            "metadata": _metadata(owner, spec, owner.name, "server"),
            "spec": {"selector": {"matchLabels": selector_labels(owner)}, "maxUnavailable": 1},
        }
    )


def desired_hpa(owner: Owner, spec: api.LLMDeploymentSpec) -> dict[str, Any] | None:
    """An autoscaling/v2 HPA scaling the LLMDeployment itself through its scale subresource."""
    a = spec.autoscaling
    if a.mode != "hpa":
        return None
    if a.hpa_source == "gateway":
        # The gateway's count for this model (every replica of the gateway, summed by the adapter's
        # query); AverageValue divides it by the current replicas, so target is per replica.
        metric = {
            "type": "External",
            "external": {
                "metric": {
                    "name": GATEWAY_IN_FLIGHT,
                    "selector": {"matchLabels": {"model_namespace": owner.namespace, "model_name": owner.name}},
                },
                "target": {"type": "AverageValue", "averageValue": str(a.target)},
            },
        }
    else:
        metric = {
            "type": "Pods",
            "pods": {
                # The engine's per-pod metric, as a custom-metrics adapter serves it.
                "metric": {"name": engine_for(spec).load_metrics.per_pod[a.metric]},
                "target": {"type": "AverageValue", "averageValue": str(a.target)},
            },
        }
    return with_hash(
        {
            "apiVersion": "autoscaling/v2",
            "kind": "HorizontalPodAutoscaler",
            "metadata": _metadata(owner, spec, owner.name, "autoscaler"),
            "spec": {
                "scaleTargetRef": {"apiVersion": api.API_VERSION, "kind": api.KIND, "name": owner.name},
                "minReplicas": a.min_replicas,
                "maxReplicas": a.max_replicas,
                "metrics": [metric],
                "behavior": {
                    "scaleUp": {"stabilizationWindowSeconds": 0},
                    "scaleDown": {"stabilizationWindowSeconds": a.scale_down_delay_seconds},
                },
            },
        }
    )


def cache_claim_name(owner: Owner) -> str:
    # One claim per LLMDeployment, kept across model changes (the cache holds revisions side by side).
    return f"{owner.name}-weights"


def download_job_name(owner: Owner, spec: api.LLMDeploymentSpec) -> str:
    """Named after what it downloads: a new model id, revision or adapter is a new Job (files
    already complete in the cache are not fetched again)."""
    what = f"{spec.model.id}@{spec.model.revision}" + "".join(f",{a.name}={a.id}@{a.revision}" for a in spec.adapters)
    # A Job's name must fit a label value (63): a longer owner name is cut to 40 characters,
    # and then the whole name goes into the hash, so two owners sharing 40 never share a Job.
    if len(owner.name) > 40:
        what = f"{owner.name}/{what}"
    return f"{owner.name[:40]}-download-{hashlib.sha256(what.encode()).hexdigest()[:8]}"


def desired_cache_claim(owner: Owner, spec: api.LLMDeploymentSpec) -> dict[str, Any]:
    claim = {
        "accessModes": [spec.cache.access_mode],
        "resources": {"requests": {"storage": spec.cache.size}},
    }
    if spec.cache.storage_class_name:
        claim["storageClassName"] = spec.cache.storage_class_name
    return with_hash(
        {
            "apiVersion": "v1",
            "kind": "PersistentVolumeClaim",
            "metadata": _metadata(owner, spec, cache_claim_name(owner), "weight-cache"),
            "spec": claim,
        }
    )


def _gpu_label(key: str, spec: api.LLMDeploymentSpec) -> bool:
    """A node label that says only what a node's GPUs are: the product, and every label in the GPU
    resource's domain (GPU feature discovery writes nvidia.com/gpu.memory, .count, nvidia.com/mig.*...)."""
    domain = spec.gpu.resource.split("/")[0] if "/" in spec.gpu.resource else None
    return key == GPU_PRODUCT_LABEL or (domain is not None and key.startswith(f"{domain}/"))


def _term_without_gpu_labels(term: dict[str, Any], spec: api.LLMDeploymentSpec) -> dict[str, Any] | None:
    """A node selector term less its GPU label expressions; None when nothing else was in it."""
    expressions = [e for e in term.get("matchExpressions") or [] if not _gpu_label(e.get("key", ""), spec)]
    out = {k: v for k, v in term.items() if k != "matchExpressions"}
    if expressions:
        out["matchExpressions"] = expressions
    had = bool(term.get("matchExpressions") or term.get("matchFields"))
    return None if had and not (expressions or out.get("matchFields")) else out


def _node_affinity_without_gpu_labels(node_affinity: dict[str, Any], spec: api.LLMDeploymentSpec) -> dict[str, Any]:
    out: dict[str, Any] = {}
    required = node_affinity.get("requiredDuringSchedulingIgnoredDuringExecution") or {}
    terms = [_term_without_gpu_labels(t, spec) for t in required.get("nodeSelectorTerms") or []]
    # The terms are alternatives: one that asked for GPUs only now allows every node, and so the
    # requirement as a whole does (left as {}, a term would match no node at all).
    if terms and all(t is not None for t in terms):
        out["requiredDuringSchedulingIgnoredDuringExecution"] = {**required, "nodeSelectorTerms": terms}
    preferred = []
    for p in node_affinity.get("preferredDuringSchedulingIgnoredDuringExecution") or []:
        term = _term_without_gpu_labels(p.get("preference") or {}, spec)
        if term is not None:
            preferred.append({**p, "preference": term})
    if preferred:
        out["preferredDuringSchedulingIgnoredDuringExecution"] = preferred
    return out


def download_placement(spec: api.LLMDeploymentSpec) -> dict[str, Any]:
    """The download pod's nodeSelector, tolerations, affinity and priorityClassName.

    spec.cache.scheduling, as written. Unset: where the serving pods may run (their tolerations,
    the GPU taint's included, their node selector and node affinity, their PriorityClass), as
    the Job must reach the volume where they do and may be kept to a pool, a zone or a quota's
    PriorityClass like them. Not their pod (anti-)affinity: it places serving pods among others,
    and could keep the download off the very node that holds a ReadWriteOnce volume. With a
    ReadWriteMany volume, which any node reaches, the GPU labels are left out, so the download
    need not wait for (or take room on) a GPU node; a ReadWriteOnce one is mounted on one node,
    and with a WaitForFirstConsumer StorageClass the download's node decides which, so there
    it keeps the GPU product too: it lands where the serving pods can follow."""
    own = spec.cache.scheduling
    if own is not None:
        placement: dict[str, Any] = {
            "nodeSelector": dict(own.node_selector),
            "tolerations": [t.wire() for t in own.tolerations],
            "affinity": json.loads(json.dumps(own.affinity)),  # a copy
            "priorityClassName": own.priority_class_name,
        }
    else:
        node_selector = dict(spec.scheduling.node_selector)
        node_affinity = (pod_affinity(spec) or {}).get("nodeAffinity") or {}
        if spec.cache.access_mode == api.AccessMode.ReadWriteMany:
            node_selector = {k: v for k, v in node_selector.items() if not _gpu_label(k, spec)}
            node_affinity = _node_affinity_without_gpu_labels(node_affinity, spec)
        placement = {
            "nodeSelector": node_selector,
            "tolerations": pod_tolerations(spec),
            "affinity": {"nodeAffinity": node_affinity} if node_affinity else {},
            "priorityClassName": spec.scheduling.priority_class_name,
        }
    return {k: v for k, v in placement.items() if v}


def downloader_image(spec: api.LLMDeploymentSpec, operator_default: str = "") -> str:
    """The download Job's image: the spec's, else the operator's setting (the chart gives the
    operator's own image, so that an install from a private registry downloads from it too),
    else the image of this release."""
    return spec.cache.downloader_image or operator_default or api.DEFAULT_DOWNLOADER_IMAGE


def desired_download_job(owner: Owner, spec: api.LLMDeploymentSpec, default_image: str = "") -> dict[str, Any]:
    """`default_image`: the image where spec.cache.downloaderImage is empty (`run --downloader-image`)."""
    env: list[dict[str, Any]] = [
        {"name": "MODEL_ID", "value": spec.model.id},
        {"name": "REVISION", "value": spec.model.revision},
        {"name": "CACHE_DIR", "value": "/data"},
        {"name": "STALL_TIMEOUT_S", "value": str(spec.cache.stall_timeout_seconds)},
    ]
    if spec.adapters:
        env.append({"name": "ADAPTERS", "value": ",".join(f"{a.name}={a.id}@{a.revision}" for a in spec.adapters)})
    ref = spec.model.token_secret_ref
    if ref is not None:
        env.append({"name": "HF_TOKEN", "valueFrom": {"secretKeyRef": {"name": ref.name, "key": ref.key}}})
    ours = {e["name"] for e in env} | {"ADAPTERS", "HF_TOKEN"}
    env += [{"name": e.name, "value": e.value} for e in spec.cache.env if e.name not in ours]
    # Only what the download itself needs: the serving pods' spec.podAnnotations (a scraper,
    # a mesh, a log shipper) are not its business, and a Job's pod template is immutable, so
    # each such field here would force the Job to be re-created for no change in what it does.
    template_meta: dict[str, Any] = {"labels": {**common_labels(owner, "weight-download", engine_for(spec).app_name)}}
    if spec.cache.pod_annotations:
        template_meta["annotations"] = dict(spec.cache.pod_annotations)
    job: dict[str, Any] = {
        "apiVersion": "batch/v1",
        "kind": "Job",
        "metadata": _metadata(owner, spec, download_job_name(owner, spec), "weight-download"),
        "spec": {
            "backoffLimit": spec.cache.backoff_limit,
            "activeDeadlineSeconds": spec.cache.deadline_seconds,
            # llm-runtime exits 2 (bad settings) or 4 (gated, not found, no space): retrying cannot help.
            "podFailurePolicy": {
                "rules": [
                    {
                        "action": "FailJob",
                        "onExitCodes": {"containerName": "download", "operator": "In", "values": [2, 4]},
                    }
                ]
            },
            "template": {
                "metadata": template_meta,
                "spec": {
                    "restartPolicy": "Never",
                    "securityContext": {
                        "runAsNonRoot": True,
                        "runAsUser": DOWNLOAD_UID,
                        "runAsGroup": DOWNLOAD_UID,
                        "fsGroup": DOWNLOAD_UID,
                        "seccompProfile": {"type": "RuntimeDefault"},
                    },
                    "containers": [
                        {
                            "name": "download",
                            "image": downloader_image(spec, default_image),
                            "command": ["llm-runtime", "download"],
                            "env": env,
                            "volumeMounts": [{"name": "data", "mountPath": "/data"}],
                            "resources": {"requests": {"cpu": "500m", "memory": "1Gi"}, "limits": {"memory": "4Gi"}},
                            "securityContext": {
                                "allowPrivilegeEscalation": False,
                                "readOnlyRootFilesystem": True,
                                "capabilities": {"drop": ["ALL"]},
                            },
                            # The model's facts come back here, so the operator never needs the token.
                            "terminationMessagePolicy": "File",
                        }
                    ],
                    "volumes": [{"name": "data", "persistentVolumeClaim": {"claimName": cache_claim_name(owner)}}],
                    **download_placement(spec),
                },
            },
        },
    }
    # The pod template is immutable: a Job whose template differs from this one is re-created.
    job["metadata"]["annotations"] = {TEMPLATE_HASH_ANNOTATION: template_hash(job["spec"]["template"])}
    return with_hash(job)


def desired_children(owner: Owner, spec: api.LLMDeploymentSpec, d: Decisions) -> list[dict[str, Any]]:
    """Everything the LLMDeployment should own, in the order to apply it."""
    children = [desired_service(owner, spec, d.nodes)]
    if spec.cache.enabled:
        children += [desired_cache_claim(owner, spec), desired_download_job(owner, spec, d.downloader_image)]
    if d.serve:
        children.append(desired_leaderworkerset(owner, spec, d) if d.nodes > 1 else desired_deployment(owner, spec, d))
        pdb = desired_pdb(owner, spec)
        if pdb is not None:
            children.append(pdb)
    hpa = desired_hpa(owner, spec)
    if hpa is not None:
        children.append(hpa)
    return children


def service_url(owner: Owner, spec: api.LLMDeploymentSpec) -> str:
    port = "" if spec.service.port == 80 else f":{spec.service.port}"
    return f"http://{owner.name}.{owner.namespace}.svc.cluster.local{port}"


def pod_selector(owner: Owner, nodes: int = 1) -> str:
    """The scale subresource's selector: the pods whose metrics stand for a replica's load
    (of a multi-node group, its leader's)."""
    return ",".join(f"{k}={v}" for k, v in serving_labels(owner, nodes).items())


def workload_kind(nodes: int) -> str:
    """The kind that runs the serving pods."""
    return LWS_KIND if nodes > 1 else "Deployment"


# Kinds the operator may create, for pruning what is no longer desired: (apiVersion, kind).
MANAGED_KINDS = (
    ("v1", "Service"),
    ("apps/v1", "Deployment"),
    (LWS_API_VERSION, LWS_KIND),
    ("policy/v1", "PodDisruptionBudget"),
    ("batch/v1", "Job"),
    ("v1", "PersistentVolumeClaim"),
    ("autoscaling/v2", "HorizontalPodAutoscaler"),
)

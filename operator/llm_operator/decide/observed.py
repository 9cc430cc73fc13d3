"""Pure: what a decision reads of the cluster. The trimming of a watched object to the few
fields decisions read, and `Observed`, the snapshot of one LLMDeployment with its children,
pods, nodes and StorageClasses that the read model (controller/readmodel.py) hands to decide().
"""

from __future__ import annotations

import json
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from typing import Any, overload

from llm_operator import api
from llm_operator.api import FIELD_MANAGER
from llm_operator.decide.manifests import INSTANCE_LABEL

DEFAULT_CLASS_ANNOTATION = "storageclass.kubernetes.io/is-default-class"
SPEC_JSON = "specJson"  # a child's spec, kept as compact JSON: a tenth of the memory of the dict

# Child kinds the operator makes (kube/kinds.py knows their API groups and plurals).
CHILD_KINDS = (
    "Deployment",
    "Service",
    "PodDisruptionBudget",
    "Job",
    "PersistentVolumeClaim",
    "HorizontalPodAutoscaler",
    # Watched only when the operator makes them (`run --leaderworkersets`): LWS is optional.
    "LeaderWorkerSet",
)
SINGLE_NODE_KINDS = tuple(k for k in CHILD_KINDS if k != "LeaderWorkerSet")

TERMINATING_S = 300.0
Key = tuple[str, str]  # (namespace, name) of an LLMDeployment


# --- trimming: a watched object -> the few fields decisions read (pure) -----------------------


def _meta(body: Mapping[str, Any], keys: Iterable[str]) -> dict[str, Any]:
    meta = body.get("metadata") or {}
    return {k: meta[k] for k in keys if meta.get(k) is not None}


def trim_llmdeployment(body: Mapping[str, Any]) -> dict[str, Any]:
    meta = _meta(body, ("name", "namespace", "uid", "generation", "resourceVersion", "deletionTimestamp"))
    # Of the annotations only the gateway's wake-up time is read (status.lastWokenByRequest).
    woken = ((body.get("metadata") or {}).get("annotations") or {}).get(api.WOKEN_ANNOTATION)
    if woken is not None:
        meta["annotations"] = {api.WOKEN_ANNOTATION: woken}
    return {
        "metadata": meta,
        "spec": _plain(body.get("spec") or {}),
        "status": _plain(body.get("status") or {}),
    }


_CHILD_STATUS = {
    "Deployment": (
        "replicas",
        "readyReplicas",
        "updatedReplicas",
        "availableReplicas",
        "observedGeneration",
        "conditions",
    ),
    "LeaderWorkerSet": ("replicas", "readyReplicas", "updatedReplicas", "observedGeneration"),
    "Job": ("conditions", "failed", "succeeded", "active"),
    "PersistentVolumeClaim": ("phase",),
}


def _status_of(kind: str, status: Mapping[str, Any]) -> dict[str, Any]:
    out = {k: _plain(status[k]) for k in _CHILD_STATUS.get(kind, ()) if k in status}
    if kind == "Deployment" and "conditions" in out:
        # Only a rollout past its deadline is read; the controller manager rewrites the
        # other conditions' times and messages on every step, which would wake us for nothing.
        out["conditions"] = [
            {k: c[k] for k in ("type", "status", "reason", "message") if k in c}
            for c in out["conditions"]
            if c.get("reason") == "ProgressDeadlineExceeded"
        ]
    return out


CREATED_AS_UPDATE = "createdAsUpdate"


def created_as_update(body: Mapping[str, Any]) -> bool:
    """Whether our fields are still recorded as a create's update, not as applied: true
    from our POST until the first later write turns the entry into an apply entry."""
    return any(
        e.get("manager") == FIELD_MANAGER and e.get("operation") == "Update" and not e.get("subresource")
        for e in (body.get("metadata") or {}).get("managedFields") or []
    )


def trim_child(body: Mapping[str, Any]) -> dict[str, Any]:
    """A child as decisions read it: identity, our labels and annotations, owners, its spec
    (as JSON text), the status fields that say how it is doing, and whether our fields are
    still recorded as the create's update."""
    kind = body.get("kind", "")
    out = {
        "apiVersion": body.get("apiVersion"),
        "kind": kind,
        "metadata": _meta(
            body,
            (
                "name",
                "namespace",
                "uid",
                "generation",
                "resourceVersion",
                "creationTimestamp",
                "deletionTimestamp",
                "labels",
                "annotations",
                "ownerReferences",
            ),
        ),
        SPEC_JSON: json.dumps(body.get("spec") or {}, separators=(",", ":"), default=_json_default),
        "status": _status_of(kind, body.get("status") or {}),
    }
    if created_as_update(body):
        out[CREATED_AS_UPDATE] = True
    return out


def same_but_version(a: Mapping[str, Any] | None, b: Mapping[str, Any] | None) -> bool:
    """Two trimmed states of one object that no decision can tell apart."""
    if a is None or b is None:
        return False
    return _without_version(a) == _without_version(b)


def _without_version(o: Mapping[str, Any]) -> dict[str, Any]:
    return {**o, "metadata": {k: v for k, v in o["metadata"].items() if k != "resourceVersion"}}


def child_spec(child: Mapping[str, Any]) -> dict[str, Any]:
    return json.loads(child[SPEC_JSON]) if SPEC_JSON in child else dict(child.get("spec") or {})


@overload
def live_child(child: Mapping[str, Any]) -> dict[str, Any]: ...
@overload
def live_child(child: None) -> None: ...
@overload
def live_child(child: Mapping[str, Any] | None) -> dict[str, Any] | None: ...


def live_child(child: Mapping[str, Any] | None) -> dict[str, Any] | None:
    """A trimmed child as the comparisons and the status read it (its spec as a dict)."""
    if child is None:
        return None
    return {
        "apiVersion": child.get("apiVersion"),
        "kind": child.get("kind"),
        "metadata": child["metadata"],
        "spec": child_spec(child),
        "status": child.get("status") or {},
    }


def trim_pod(body: Mapping[str, Any]) -> dict[str, Any]:
    """A pod: whether it is scheduled and ready, its IP (the autoscaler scrapes it) and its
    containers' waiting and terminated states (why a serving pod cannot start; the download
    Job reports the model's facts in its termination message)."""
    status = body.get("status") or {}
    conditions = [
        {k: c[k] for k in ("type", "status", "reason", "message") if c.get(k) is not None}
        for c in status.get("conditions") or []
        if c.get("type") in ("PodScheduled", "Ready")
    ]
    containers = [c for c in (_container_status(cs) for cs in status.get("containerStatuses") or []) if c]
    out: dict[str, Any] = {
        "metadata": _meta(body, ("name", "namespace", "creationTimestamp", "deletionTimestamp", "labels"))
    }
    out["status"] = {"conditions": conditions}
    if status.get("podIP"):
        out["status"]["podIP"] = status["podIP"]
    if containers:
        out["status"]["containerStatuses"] = containers
    return out


# What status reads of a container's state: why it waits, or how it ended.
_STATE_FIELDS = {"waiting": ("reason", "message"), "terminated": ("reason", "exitCode", "message")}


def _container_status(cs: Mapping[str, Any]) -> dict[str, Any] | None:
    """A container's status as decisions read it: why it is waiting or how it last ended,
    and its restarts; None for a container running without a restart (nothing to say)."""
    out: dict[str, Any] = {}
    for key in ("state", "lastState"):
        for phase, fields in _STATE_FIELDS.items():
            detail = (cs.get(key) or {}).get(phase) or {}
            kept = {f: detail[f] for f in fields if detail.get(f) not in (None, "")}
            if kept:
                out.setdefault(key, {})[phase] = kept
    if cs.get("restartCount"):
        out["restartCount"] = cs["restartCount"]
    if out and cs.get("name"):
        out["name"] = cs["name"]
    return out or None


def trim_node(body: Mapping[str, Any]) -> dict[str, Any]:
    """A node: its labels (the GPU product for planning; any label a nodeSelector or a node
    affinity may name), the taints that keep pods off (NoSchedule, NoExecute) and its
    allocatable extended resources (GPUs), so that status can tell a pod no node could ever
    hold from one waiting for GPUs to free up."""
    allocatable = (body.get("status") or {}).get("allocatable") or {}
    # Key, value and effect only: timeAdded changes with every not-ready blip and decides nothing.
    taints = [
        {k: t[k] for k in ("key", "value", "effect") if t.get(k)}
        for t in (body.get("spec") or {}).get("taints") or []
        if t.get("effect") in ("NoSchedule", "NoExecute")
    ]
    return {
        "metadata": {
            "name": (body.get("metadata") or {}).get("name"),
            "labels": dict((body.get("metadata") or {}).get("labels") or {}),
        },
        **({"spec": {"taints": taints}} if taints else {}),
        "status": {"allocatable": {k: str(v) for k, v in allocatable.items() if "/" in k}},
    }


def trim_storage_class(body: Mapping[str, Any]) -> dict[str, Any]:
    annotations = (body.get("metadata") or {}).get("annotations") or {}
    return {
        "name": (body.get("metadata") or {}).get("name"),
        "default": annotations.get(DEFAULT_CLASS_ANNOTATION) == "true",
    }


_SCALARS = frozenset({str, int, float, bool, type(None)})


def _plain(value: Any) -> Any:
    """kopf hands out mapping views; decisions and the overlay keep plain dicts and lists.
    Scalars, dicts and lists are checked by type first: an isinstance against the Mapping
    ABC for every leaf was a tenth of a reconcile's CPU (profiled)."""
    kind = type(value)
    if kind in _SCALARS:
        return value
    if kind is dict or isinstance(value, Mapping):
        return {k: _plain(v) for k, v in value.items()}
    if kind is list or isinstance(value, tuple):
        return [_plain(v) for v in value]
    return value


def _json_default(value: Any) -> Any:
    """For json.dumps: a kopf mapping view as the dict it shows (plain dicts need nothing)."""
    if isinstance(value, Mapping):
        return dict(value)
    if isinstance(value, (list, tuple)):
        return list(value)
    raise TypeError(f"{type(value).__name__} is not JSON")


def owner_of(body: Mapping[str, Any]) -> Key | None:
    meta = body.get("metadata") or {}
    owner = (meta.get("labels") or {}).get(INSTANCE_LABEL)
    return (meta["namespace"], owner) if owner and meta.get("namespace") else None


# --- a snapshot of one owner ----------------------------------------------------------------


@dataclass(frozen=True)
class Refusal:
    """The API refused a write of one child."""

    status: int  # HTTP status
    message: str  # the API's own sentence
    taken_by: str | None = None  # the name is taken by an object not ours: who owns it ("no owner", "Deployment x")


@dataclass(frozen=True)
class Observed:
    """Everything a decision about one LLMDeployment may read, as plain values."""

    llmd: dict[str, Any]  # trimmed LLMDeployment
    children: dict[str, tuple[dict[str, Any], ...]] = field(default_factory=dict)  # kind -> labelled with its name
    pods: tuple[dict[str, Any], ...] = ()  # pods labelled with its name (serving and download)
    nodes: tuple[dict[str, Any], ...] = ()  # nodes: labels, taints and allocatable GPUs
    storage_classes: tuple[dict[str, Any], ...] = ()  # {name, default}
    namespace_terminating: bool = False  # a write was refused: the namespace is going away
    refused: Mapping[tuple[str, str], Refusal] = field(
        default_factory=dict
    )  # (kind, name) -> the API refused our write
    # (kind, name) -> who holds it: names the API said are taken by an object not ours, remembered
    # by the read model until that object changes or goes (so they are not tried again meanwhile).
    taken: Mapping[tuple[str, str], str] = field(default_factory=dict)
    multi_node: bool = False  # the operator makes (and watches) LeaderWorkerSets
    # The download Job's image where spec.cache.downloaderImage is empty (`run --downloader-image`;
    # the chart gives the operator's own image); empty: api.DEFAULT_DOWNLOADER_IMAGE.
    downloader_image: str = ""
    # The spec parsed once per generation by the read model: an api.LLMDeploymentSpec, or the
    # api.InvalidSpec it raised; None in an observation made by hand (render, tests): parsed on use.
    spec: api.LLMDeploymentSpec | api.InvalidSpec | None = None

    @property
    def meta(self) -> dict[str, Any]:
        meta: dict[str, Any] = self.llmd["metadata"]
        return meta

    def child(self, kind: str, name: str) -> dict[str, Any] | None:
        return next((c for c in self.children.get(kind, ()) if c["metadata"]["name"] == name), None)

    def pods_labelled(self, labels: Mapping[str, str]) -> tuple[dict[str, Any], ...]:
        """The pods carrying every one of these labels."""
        return tuple(
            p
            for p in self.pods
            if all(((p.get("metadata") or {}).get("labels") or {}).get(k) == v for k, v in labels.items())
        )


def parse_spec(llmd: Mapping[str, Any]) -> api.LLMDeploymentSpec | api.InvalidSpec:
    """The spec of a trimmed LLMDeployment, or why it is invalid (returned, not raised)."""
    try:
        return api.parse_spec(llmd.get("spec") or {})
    except api.InvalidSpec as err:
        return err


def spec_of(observed: Observed) -> api.LLMDeploymentSpec | api.InvalidSpec:
    """The observation's parsed spec: the read model's, parsed once per generation."""
    return observed.spec if observed.spec is not None else parse_spec(observed.llmd)

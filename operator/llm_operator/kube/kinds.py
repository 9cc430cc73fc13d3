"""The kinds the operator and the gateway touch, and the API paths of their objects: one
table, one path builder, for the sync client, the async client and the informers."""

from __future__ import annotations

from dataclasses import dataclass

from llm_operator.api import names


@dataclass(frozen=True)
class Kind:
    group: str  # "" for the core group
    version: str
    plural: str
    namespaced: bool = True

    @property
    def api_version(self) -> str:
        return f"{self.group}/{self.version}" if self.group else self.version


KINDS: dict[str, Kind] = {
    "Service": Kind("", "v1", "services"),
    "Pod": Kind("", "v1", "pods"),
    "Event": Kind("", "v1", "events"),
    "PersistentVolumeClaim": Kind("", "v1", "persistentvolumeclaims"),
    "Node": Kind("", "v1", "nodes", namespaced=False),
    "Deployment": Kind("apps", "v1", "deployments"),
    "PodDisruptionBudget": Kind("policy", "v1", "poddisruptionbudgets"),
    "Job": Kind("batch", "v1", "jobs"),
    "HorizontalPodAutoscaler": Kind("autoscaling", "v2", "horizontalpodautoscalers"),
    "StorageClass": Kind("storage.k8s.io", "v1", "storageclasses", namespaced=False),
    # Optional: made and watched only with `run --leaderworkersets`.
    "LeaderWorkerSet": Kind("leaderworkerset.x-k8s.io", "v1", "leaderworkersets"),
    names.KIND: Kind(names.GROUP, names.VERSION, names.PLURAL),
}


def collection_path(group: str, version: str, plural: str, namespace: str | None = None) -> str:
    """`/api/v1[/namespaces/NS]/PLURAL` or `/apis/GROUP/VERSION[/namespaces/NS]/PLURAL`."""
    base = f"/apis/{group}/{version}" if group else f"/api/{version}"
    return f"{base}/namespaces/{namespace}/{plural}" if namespace else f"{base}/{plural}"


def path(kind: str, namespace: str | None = None, name: str | None = None, sub: str | None = None) -> str:
    """The path of a collection, an object, or an object's subresource (status, scale)."""
    k = KINDS[kind]
    out = collection_path(k.group, k.version, k.plural, namespace if k.namespaced else None)
    if name:
        out += f"/{name}"
    if sub:
        out += f"/{sub}"
    return out

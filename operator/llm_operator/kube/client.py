"""The API client and the comparisons that decide whether a child needs applying.

A thin REST layer over the kubernetes client's ApiClient (auth, TLS, retries on
connection errors), speaking plain dicts; and the pure checks of a desired child against
the live one (`up_to_date`), so that a reconcile that changes nothing writes nothing.
"""

from __future__ import annotations

import json
import logging
from dataclasses import dataclass
from urllib.parse import urlencode

from kubernetes import client, config
from kubernetes.client.exceptions import ApiException

from llm_operator import api
from llm_operator.decide.manifests import HASH_ANNOTATION

FIELD_MANAGER = "llm-operator"
log = logging.getLogger(__name__)

_PLURALS = {
    "Service": "services", "Deployment": "deployments", "PodDisruptionBudget": "poddisruptionbudgets",
    "Job": "jobs", "PersistentVolumeClaim": "persistentvolumeclaims", "Pod": "pods", "Event": "events",
    "HorizontalPodAutoscaler": "horizontalpodautoscalers", "StorageClass": "storageclasses", "Node": "nodes",
    "LeaderWorkerSet": "leaderworkersets",
    api.KIND: api.PLURAL,
}
_CLUSTER_SCOPED = {"StorageClass", "Node"}


class KubeError(RuntimeError):
    def __init__(self, status: int, reason: str, body: str):
        super().__init__(f"{status} {reason}: {body[:500]}")
        self.status = status
        self.body = body


def load_configuration() -> client.Configuration:
    """In-cluster credentials when running in a pod, else the kubeconfig (the writes' client
    and the asynchronous watches authenticate alike)."""
    configuration = client.Configuration()
    try:
        config.load_incluster_config(client_configuration=configuration)
    except config.ConfigException:
        config.load_kube_config(client_configuration=configuration)
    return configuration


def load_config(pool_size: int = 32) -> client.ApiClient:
    """The client for writes. The connection pool is as large as the handler threads, or
    connections are dropped and re-handshaken."""
    configuration = load_configuration()
    configuration.connection_pool_maxsize = pool_size
    return client.ApiClient(configuration)


@dataclass
class Kube:
    """Plain-dict access to the API for the few kinds the operator touches."""

    api_client: client.ApiClient
    timeout_s: float = 30

    @staticmethod
    def path(api_version: str, kind: str, namespace: str | None, name: str | None = None, sub: str | None = None) -> str:
        base = "/api/v1" if api_version == "v1" else f"/apis/{api_version}"
        parts = [base]
        if namespace and kind not in _CLUSTER_SCOPED:
            parts.append(f"namespaces/{namespace}")
        parts.append(_PLURALS[kind])
        if name:
            parts.append(name)
        if sub:
            parts.append(sub)
        return "/".join(parts)

    def request(self, method: str, path: str, body=None, query: dict | None = None,
                content_type: str = "application/json") -> dict | None:
        if query:
            path += "?" + urlencode(query)
        headers = {"Accept": "application/json", "Content-Type": content_type}
        m, url, headers, body, _ = self.api_client.param_serialize(
            method, path, header_params=headers, body=body, auth_settings=["BearerToken"])
        try:
            resp = self.api_client.call_api(m, url, header_params=headers, body=body,
                                            _request_timeout=self.timeout_s)
            resp.read()
        except ApiException as err:
            raise KubeError(err.status, err.reason, err.body or "") from None
        if resp.status >= 400:
            raise KubeError(resp.status, resp.reason, resp.data.decode(errors="replace"))
        return json.loads(resp.data) if resp.data else None

    def get(self, api_version: str, kind: str, namespace: str | None, name: str) -> dict | None:
        try:
            return self.request("GET", self.path(api_version, kind, namespace, name))
        except KubeError as err:
            if err.status == 404:
                return None
            raise

    def list(self, api_version: str, kind: str, namespace: str | None, selector: str = "") -> list[dict]:
        query = {"labelSelector": selector} if selector else None
        out = self.request("GET", self.path(api_version, kind, namespace), query=query)
        return out.get("items", []) if out else []

    def apply(self, obj: dict) -> dict:
        """Server-side apply with our field manager, taking over fields from hand edits."""
        meta = obj["metadata"]
        path = self.path(obj["apiVersion"], obj["kind"], meta.get("namespace"), meta["name"])
        return self.request("PATCH", path, body=json.dumps(obj),
                            query={"fieldManager": FIELD_MANAGER, "force": "true"},
                            content_type="application/apply-patch+yaml")

    def create(self, obj: dict) -> dict:
        """POST: refused with 409 when an object of that name exists, whoever made it. Our
        fields are then recorded under operation Update; `as_applied` turns that entry into
        our apply entry before the first later write (one request at creation, none in the
        steady state)."""
        meta = obj["metadata"]
        return self.request("POST", self.path(obj["apiVersion"], obj["kind"], meta.get("namespace")), body=obj,
                            query={"fieldManager": FIELD_MANAGER})

    def as_applied(self, obj: dict) -> None:
        """Record our fields as applied, not as the create's update: apply never removes a
        field another entry still owns, our own update entry included, so a field we stop
        setting would stay. Done as kubectl's client-side-to-server-side migration does, with a
        JSON patch of managedFields guarded by the resourceVersion it was read at; a concurrent
        write makes it fail (409 or 422), and it is done again before the next write."""
        meta = obj["metadata"]
        live = self.get(obj["apiVersion"], obj["kind"], meta.get("namespace"), meta["name"])
        if live is None:
            return
        entries = (live.get("metadata") or {}).get("managedFields") or []
        fixed = [{**e, "operation": "Apply"} if e.get("manager") == FIELD_MANAGER and e.get("operation") == "Update"
                 and not e.get("subresource") else e for e in entries]
        if fixed == entries:
            return
        self.json_patch(obj, [{"op": "test", "path": "/metadata/resourceVersion", "value": live["metadata"]["resourceVersion"]},
                              {"op": "replace", "path": "/metadata/managedFields", "value": fixed}])

    def json_patch(self, obj: dict, ops: list[dict]) -> dict:
        meta = obj["metadata"]
        path = self.path(obj["apiVersion"], obj["kind"], meta.get("namespace"), meta["name"])
        return self.request("PATCH", path, body=ops, query={"fieldManager": FIELD_MANAGER},
                            content_type="application/json-patch+json")

    def delete(self, api_version: str, kind: str, namespace: str | None, name: str,
               propagation: str = "Background") -> None:
        try:
            self.request("DELETE", self.path(api_version, kind, namespace, name),
                         body={"propagationPolicy": propagation})
        except KubeError as err:
            if err.status != 404:
                raise

    def post_event(self, involved: dict, type_: str, reason: str, message: str, now: str) -> None:
        """A core/v1 Event on `involved` (apiVersion, kind, name, namespace, uid), for `kubectl describe`."""
        meta = involved
        body = {
            "apiVersion": "v1", "kind": "Event",
            "metadata": {"generateName": f"{meta['name']}.", "namespace": meta["namespace"]},
            "involvedObject": {k: meta[k] for k in ("apiVersion", "kind", "name", "namespace", "uid")},
            "type": type_, "reason": reason, "message": message[:1024],
            "source": {"component": FIELD_MANAGER}, "reportingComponent": FIELD_MANAGER,
            "reportingInstance": FIELD_MANAGER,
            "firstTimestamp": now, "lastTimestamp": now, "count": 1,
        }
        self.request("POST", self.path("v1", "Event", meta["namespace"]), body=body)

    def patch_status(self, namespace: str, name: str, status: dict) -> dict:
        path = self.path(api.API_VERSION, api.KIND, namespace, name, "status")
        return self.request("PATCH", path, body={"status": status}, content_type="application/merge-patch+json")


def is_subset(desired, live) -> bool:
    """True when every value in `desired` is in `live` (which may carry defaults and more)."""
    if isinstance(desired, dict):
        return isinstance(live, dict) and all(k in live and is_subset(v, live[k]) for k, v in desired.items())
    if isinstance(desired, list):
        return isinstance(live, list) and len(desired) == len(live) and all(
            is_subset(d, l) for d, l in zip(desired, live))
    return desired == live


def up_to_date(desired: dict, live: dict | None) -> bool:
    """The live child is what we want: same desired-hash (nothing changed on our side)
    and every field we set still holds (nothing changed by hand)."""
    if live is None:
        return False
    want = desired["metadata"]["annotations"][HASH_ANNOTATION]
    have = (live.get("metadata", {}).get("annotations") or {}).get(HASH_ANNOTATION)
    return want == have and is_subset(desired.get("spec", {}), live.get("spec", {})) and is_subset(
        {k: v for k, v in desired["metadata"].items() if k in ("labels", "annotations")}, live["metadata"])


def replace_ops(desired: dict, live: dict) -> list[dict]:
    """JSON-patch operations that put back each top-level spec field that differs."""
    have = live.get("spec") or {}
    return [{"op": "replace" if key in have else "add", "path": f"/spec/{key}", "value": value}
            for key, value in desired.get("spec", {}).items() if not is_subset(value, have.get(key))]


def apply_or_replace(kube: Kube, obj: dict, current: dict | None) -> dict:
    """Server-side apply; where a hand edit left list entries that another field manager
    owns (apply merges lists by key, so a changed Service port is added beside ours and
    the result is invalid or still wrong), replace the differing fields outright."""
    try:
        result = kube.apply(obj)
    except KubeError as err:
        if err.status != 422 or current is None:
            raise
        result = current
    if is_subset(obj.get("spec", {}), result.get("spec", {})):
        return result
    log.info("%s/%s: replacing fields edited by hand", obj["kind"], obj["metadata"]["name"])
    kube.json_patch(obj, replace_ops(obj, result))
    return kube.apply(obj)

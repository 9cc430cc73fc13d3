"""The synchronous API client: a thin REST layer over the kubernetes client's ApiClient
(auth, TLS, retries on connection errors), speaking plain dicts. The reconcile threads
write through it; the watches use kube/asyncclient.py, which authenticates alike.
"""

from __future__ import annotations

import builtins
import json
import logging
from dataclasses import dataclass
from typing import Any, cast
from urllib.parse import urlencode

from kubernetes import client, config
from kubernetes.client.exceptions import ApiException

from llm_operator.api import names
from llm_operator.kube import kinds
from llm_operator.kube.errors import KubeError
from llm_operator.kube.events import event_body

FIELD_MANAGER = names.FIELD_MANAGER
log = logging.getLogger(__name__)


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
    def path(
        api_version: str, kind: str, namespace: str | None, name: str | None = None, sub: str | None = None
    ) -> str:
        """The path of `kind` (whose apiVersion the kind table knows; `api_version` is the object's own)."""
        return kinds.path(kind, namespace, name, sub)

    def request(
        self,
        method: str,
        path: str,
        body: Any = None,
        query: dict[str, str] | None = None,
        content_type: str = "application/json",
    ) -> dict[str, Any] | None:
        if query:
            path += "?" + urlencode(query)
        headers = {"Accept": "application/json", "Content-Type": content_type}
        m, url, headers, body, _ = self.api_client.param_serialize(
            method, path, header_params=headers, body=body, auth_settings=["BearerToken"]
        )
        try:
            resp = self.api_client.call_api(m, url, header_params=headers, body=body, _request_timeout=self.timeout_s)
            data = resp.read()  # resp.data, which read() fills
        except ApiException as err:
            raise KubeError(err.status, err.body or "", err.reason) from None
        if resp.status >= 400:
            raise KubeError(resp.status, data.decode(errors="replace"), resp.reason)
        return json.loads(data) if data else None

    def _object(
        self,
        method: str,
        path: str,
        body: Any = None,
        query: dict[str, str] | None = None,
        content_type: str = "application/json",
    ) -> dict[str, Any]:
        """A request the API answers with the object written (create, apply, patch)."""
        return cast(dict[str, Any], self.request(method, path, body, query, content_type))

    def get(self, api_version: str, kind: str, namespace: str | None, name: str) -> dict[str, Any] | None:
        try:
            return self.request("GET", self.path(api_version, kind, namespace, name))
        except KubeError as err:
            if err.status == 404:
                return None
            raise

    def list(self, api_version: str, kind: str, namespace: str | None, selector: str = "") -> list[dict[str, Any]]:
        query = {"labelSelector": selector} if selector else None
        out = self.request("GET", self.path(api_version, kind, namespace), query=query)
        items: builtins.list[dict[str, Any]] = out.get("items", []) if out else []
        return items

    def apply(self, obj: dict[str, Any]) -> dict[str, Any]:
        """Server-side apply with our field manager, taking over fields from hand edits."""
        meta = obj["metadata"]
        path = self.path(obj["apiVersion"], obj["kind"], meta.get("namespace"), meta["name"])
        return self._object(
            "PATCH",
            path,
            body=json.dumps(obj),
            query={"fieldManager": FIELD_MANAGER, "force": "true"},
            content_type="application/apply-patch+yaml",
        )

    def create(self, obj: dict[str, Any]) -> dict[str, Any]:
        """POST: refused with 409 when an object of that name exists, whoever made it. Our
        fields are then recorded under operation Update; `as_applied` turns that entry into
        our apply entry before the first later write (one request at creation, none in the
        steady state)."""
        meta = obj["metadata"]
        return self._object(
            "POST",
            self.path(obj["apiVersion"], obj["kind"], meta.get("namespace")),
            body=obj,
            query={"fieldManager": FIELD_MANAGER},
        )

    def as_applied(self, obj: dict[str, Any]) -> None:
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
        fixed = [
            {**e, "operation": "Apply"}
            if e.get("manager") == FIELD_MANAGER and e.get("operation") == "Update" and not e.get("subresource")
            else e
            for e in entries
        ]
        if fixed == entries:
            return
        self.json_patch(
            obj,
            [
                {"op": "test", "path": "/metadata/resourceVersion", "value": live["metadata"]["resourceVersion"]},
                {"op": "replace", "path": "/metadata/managedFields", "value": fixed},
            ],
        )

    def json_patch(self, obj: dict[str, Any], ops: builtins.list[dict[str, Any]]) -> dict[str, Any]:
        meta = obj["metadata"]
        path = self.path(obj["apiVersion"], obj["kind"], meta.get("namespace"), meta["name"])
        return self._object(
            "PATCH", path, body=ops, query={"fieldManager": FIELD_MANAGER}, content_type="application/json-patch+json"
        )

    def delete(
        self, api_version: str, kind: str, namespace: str | None, name: str, propagation: str = "Background"
    ) -> None:
        try:
            self.request(
                "DELETE", self.path(api_version, kind, namespace, name), body={"propagationPolicy": propagation}
            )
        except KubeError as err:
            if err.status != 404:
                raise

    def post_event(self, involved: dict[str, Any], type_: str, reason: str, message: str, now: str) -> None:
        """A core/v1 Event on `involved` (apiVersion, kind, name, namespace, uid), for `kubectl describe`."""
        self.request(
            "POST",
            kinds.path("Event", involved["namespace"]),
            body=event_body(involved, type_, reason, message, now, FIELD_MANAGER),
        )

    def patch_status(self, namespace: str, name: str, status: dict[str, Any]) -> dict[str, Any]:
        path = self.path(names.API_VERSION, names.KIND, namespace, name, "status")
        return self._object("PATCH", path, body={"status": status}, content_type="application/merge-patch+json")

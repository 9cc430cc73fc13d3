"""A recording stand-in for kube.client.Kube, for unit tests of the controller's I/O: it
answers writes as the apiserver would (a resourceVersion, the object back) and records
each request. Integration tests use the real apiserver; this is for the branches only a
refusal or an outage reaches."""

from __future__ import annotations

import itertools
import json

from llm_operator.kube import kinds
from llm_operator.kube.errors import KubeError


class FakeKube:
    def __init__(self, objects: dict | None = None):
        self.objects: dict[tuple[str, str, str], dict] = dict(objects or {})  # (kind, namespace, name) -> object
        self.calls: list[tuple] = []
        self.refuse: dict[tuple[str, str], KubeError] = {}  # (verb, kind) -> what to raise
        self._rv = itertools.count(100)

    path = staticmethod(
        lambda api_version, kind, namespace, name=None, sub=None: kinds.path(kind, namespace, name, sub)
    )

    def _refused(self, verb: str, kind: str) -> None:
        err = self.refuse.get((verb, kind))
        if err is not None:
            raise err

    def _stored(self, obj: dict) -> dict:
        out = json.loads(json.dumps(obj))
        out["metadata"]["resourceVersion"] = str(next(self._rv))
        self.objects[(obj["kind"], obj["metadata"]["namespace"], obj["metadata"]["name"])] = out
        return out

    def create(self, obj: dict) -> dict:
        self.calls.append(("create", obj["kind"], obj["metadata"]["name"]))
        self._refused("create", obj["kind"])
        if (obj["kind"], obj["metadata"]["namespace"], obj["metadata"]["name"]) in self.objects:
            raise KubeError(409, json.dumps({"message": "already exists"}), "Conflict")
        return self._stored(obj)

    def apply(self, obj: dict) -> dict:
        self.calls.append(("apply", obj["kind"], obj["metadata"]["name"]))
        self._refused("apply", obj["kind"])
        return self._stored(obj)

    def get(self, api_version: str, kind: str, namespace: str | None, name: str) -> dict | None:
        self.calls.append(("get", kind, name))
        return self.objects.get((kind, namespace or "", name))

    def as_applied(self, obj: dict) -> None:
        self.calls.append(("as_applied", obj["kind"], obj["metadata"]["name"]))

    def json_patch(self, obj: dict, ops: list[dict]) -> dict:
        self.calls.append(("json_patch", obj["kind"], obj["metadata"]["name"]))
        return self._stored(obj)

    def delete(
        self, api_version: str, kind: str, namespace: str | None, name: str, propagation: str = "Background"
    ) -> None:
        self.calls.append(("delete", kind, name))
        self._refused("delete", kind)
        self.objects.pop((kind, namespace or "", name), None)

    def patch_status(self, namespace: str, name: str, status: dict) -> dict:
        self.calls.append(("patch_status", "LLMDeployment", name, status))
        self._refused("patch_status", "LLMDeployment")
        llmd = self.objects.get(("LLMDeployment", namespace, name))
        if llmd is None:
            raise KubeError(404, json.dumps({"message": "not found"}), "Not Found")
        merged = {**llmd, "status": {**(llmd.get("status") or {}), **status}}
        return self._stored(merged)

    def post_event(self, involved: dict, type_: str, reason: str, message: str, now: str) -> None:
        self.calls.append(("event", reason, message))

    def request(
        self, method: str, path: str, body=None, query: dict | None = None, content_type: str = "application/json"
    ) -> dict | None:
        self.calls.append(("request", method, path, body, query))
        return {}

    def writes(self) -> list[tuple]:
        return [c for c in self.calls if c[0] not in ("get", "event")]

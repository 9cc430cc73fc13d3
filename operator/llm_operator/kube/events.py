"""core/v1 Event bodies, as `kubectl describe` shows them: one shape for the operator's
and the gateway's Events."""

from __future__ import annotations

from typing import Any

from llm_operator.api import names


def involved(namespace: str, name: str, uid: str) -> dict[str, str]:
    """An LLMDeployment as an Event's involvedObject."""
    return {"apiVersion": names.API_VERSION, "kind": names.KIND, "name": name, "namespace": namespace, "uid": uid}


def event_body(
    involved: dict[str, Any], type_: str, reason: str, message: str, stamp: str, component: str
) -> dict[str, Any]:
    """A new Event on `involved` (apiVersion, kind, name, namespace, uid) at `stamp` (RFC 3339)."""
    return {
        "apiVersion": "v1",
        "kind": "Event",
        "metadata": {"generateName": f"{involved['name']}.", "namespace": involved["namespace"]},
        "involvedObject": {k: involved[k] for k in ("apiVersion", "kind", "name", "namespace", "uid")},
        "type": type_,
        "reason": reason,
        "message": message[:1024],
        "source": {"component": component},
        "reportingComponent": component,
        "reportingInstance": component,
        "firstTimestamp": stamp,
        "lastTimestamp": stamp,
        "count": 1,
    }

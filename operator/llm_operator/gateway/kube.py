"""The gateway's access to the Kubernetes API, on asyncio: list-then-watch streams (the
shared async client) and the few writes it makes (the scale subresource, one annotation,
Events), so that watching shares the proxy's event loop.
"""

from __future__ import annotations

import datetime as dt

from llm_operator import api
from llm_operator.kube import kinds
from llm_operator.kube.asyncclient import AsyncKube
from llm_operator.kube.events import event_body, involved

FIELD_MANAGER = "llm-operator-gateway"


class Kube(AsyncKube):
    """The shared client plus the gateway's writes."""

    async def wake(self, namespace: str, name: str, uid: str, now: dt.datetime) -> None:
        """Scale an LLMDeployment from 0 to 1, mark it woken by a request, post an Event."""
        stamp = now.strftime("%Y-%m-%dT%H:%M:%SZ")
        await self.request(
            "PATCH",
            kinds.path(api.KIND, namespace, name, "scale"),
            body={"spec": {"replicas": 1}},
            params={"fieldManager": FIELD_MANAGER},
            content_type="application/merge-patch+json",
        )
        await self.request(
            "PATCH",
            kinds.path(api.KIND, namespace, name),
            body={"metadata": {"annotations": {api.WOKEN_ANNOTATION: stamp}}},
            params={"fieldManager": FIELD_MANAGER},
            content_type="application/merge-patch+json",
        )
        await self.post_event(
            namespace,
            name,
            uid,
            "Normal",
            "WokenByRequest",
            f"Scaled from 0 to 1 replica: a request for {name} arrived through the gateway; "
            "it is held until a pod is ready.",
            stamp,
        )

    async def post_event(
        self, namespace: str, name: str, uid: str, type_: str, reason: str, message: str, stamp: str
    ) -> None:
        body = event_body(involved(namespace, name, uid), type_, reason, message, stamp, FIELD_MANAGER)
        await self.request("POST", kinds.path("Event", namespace), body=body)

"""The gateway's access to the Kubernetes API, on asyncio: list-then-watch streams and the
few writes it makes (the scale subresource, one annotation, Events).

Credentials come from the kubernetes client's loaders (in-cluster first, else the
kubeconfig), so the gateway authenticates exactly as the operator does; the requests go
over aiohttp so that watching shares the proxy's event loop.
"""

from __future__ import annotations

import asyncio
import datetime as dt
import json
import logging
import ssl
from typing import Awaitable, Callable

import aiohttp
from kubernetes import client, config

from .. import api

log = logging.getLogger(__name__)

FIELD_MANAGER = "llm-operator-gateway"
WATCH_TIMEOUT_S = 300          # the server ends each watch after this; we resume from the last version
BACKOFF_S = (0.5, 1, 2, 5, 10)

OnList = Callable[[list[dict]], Awaitable[None] | None]
OnEvent = Callable[[str, dict], Awaitable[None] | None]


class KubeError(RuntimeError):
    def __init__(self, status: int, body: str):
        super().__init__(f"{status}: {body[:300]}")
        self.status = status


class Kube:
    def __init__(self, configuration: client.Configuration):
        self.configuration = configuration
        self.host = configuration.host.rstrip("/")
        self._ssl = self._ssl_context(configuration)
        self.session: aiohttp.ClientSession | None = None

    @classmethod
    def load(cls) -> "Kube":
        configuration = client.Configuration()
        try:
            config.load_incluster_config(client_configuration=configuration)
        except config.ConfigException:
            config.load_kube_config(client_configuration=configuration)
        return cls(configuration)

    @staticmethod
    def _ssl_context(c: client.Configuration) -> ssl.SSLContext | bool:
        if not c.host.startswith("https"):
            return False
        ctx = ssl.create_default_context(cafile=c.ssl_ca_cert) if c.ssl_ca_cert else ssl.create_default_context()
        if c.cert_file:
            ctx.load_cert_chain(c.cert_file, c.key_file)
        if not c.verify_ssl:
            ctx.check_hostname = False
            ctx.verify_mode = ssl.CERT_NONE
        return ctx

    def _headers(self) -> dict:
        headers = {"Accept": "application/json"}
        # Re-read on every call: the in-cluster loader refreshes a projected token's value.
        token = self.configuration.get_api_key_with_prefix("authorization") or self.configuration.get_api_key_with_prefix("BearerToken")
        if token:
            headers["Authorization"] = token
        return headers

    async def start(self) -> None:
        self.session = aiohttp.ClientSession(connector=aiohttp.TCPConnector(ssl=self._ssl, limit=16))

    async def close(self) -> None:
        if self.session:
            await self.session.close()

    async def request(self, method: str, path: str, body=None, params: dict | None = None,
                      content_type: str = "application/json") -> dict:
        headers = {**self._headers(), "Content-Type": content_type}
        data = json.dumps(body) if body is not None else None
        async with self.session.request(method, self.host + path, data=data, params=params, headers=headers,
                                        timeout=aiohttp.ClientTimeout(total=30)) as resp:
            text = await resp.text()
            if resp.status >= 400:
                raise KubeError(resp.status, text)
            return json.loads(text) if text else {}

    # ---- list + watch ------------------------------------------------------------------
    async def list_watch(self, path: str, selector: str, on_list: OnList, on_event: OnEvent,
                         stop: asyncio.Event) -> None:
        """List `path`, hand the items to on_list, then watch from that version and hand each
        event to on_event; on 410 Gone or a broken stream, list again. Runs until `stop`."""
        failures = 0
        while not stop.is_set():
            try:
                listing = await self.request("GET", path, params={"labelSelector": selector} if selector else None)
                version = listing["metadata"]["resourceVersion"]
                await _call(on_list, listing.get("items") or [])
                failures = 0
                while not stop.is_set():
                    version = await self._watch_once(path, selector, version, on_event)
                    if version is None:       # 410 Gone: list afresh
                        break
            except asyncio.CancelledError:
                raise
            except Exception as err:          # noqa: BLE001: any failure of the stream is retried after a pause
                delay = BACKOFF_S[min(failures, len(BACKOFF_S) - 1)]
                failures += 1
                log.warning("watching %s failed (%s); again in %.1f s", path, err, delay)
                try:
                    await asyncio.wait_for(stop.wait(), delay)
                except asyncio.TimeoutError:
                    pass

    async def _watch_once(self, path: str, selector: str, version: str, on_event: OnEvent) -> str | None:
        params = {"watch": "1", "resourceVersion": version, "allowWatchBookmarks": "true",
                  "timeoutSeconds": str(WATCH_TIMEOUT_S)}
        if selector:
            params["labelSelector"] = selector
        timeout = aiohttp.ClientTimeout(total=None, sock_read=WATCH_TIMEOUT_S + 30, sock_connect=10)
        async with self.session.get(self.host + path, params=params, headers=self._headers(), timeout=timeout) as resp:
            if resp.status == 410:
                return None
            if resp.status >= 400:
                raise KubeError(resp.status, await resp.text())
            async for line in resp.content:
                if not line.strip():
                    continue
                event = json.loads(line)
                kind, obj = event.get("type"), event.get("object") or {}
                if kind == "ERROR":
                    if obj.get("code") == 410:
                        return None
                    raise KubeError(obj.get("code", 500), obj.get("message", ""))
                version = (obj.get("metadata") or {}).get("resourceVersion", version)
                if kind != "BOOKMARK":
                    await _call(on_event, kind, obj)
        return version

    # ---- writes ------------------------------------------------------------------------
    def _llmd_path(self, namespace: str, name: str, sub: str = "") -> str:
        return f"/apis/{api.API_VERSION}/namespaces/{namespace}/{api.PLURAL}/{name}" + (f"/{sub}" if sub else "")

    async def wake(self, namespace: str, name: str, uid: str, now: dt.datetime) -> None:
        """Scale an LLMDeployment from 0 to 1, mark it woken by a request, post an Event."""
        stamp = now.strftime("%Y-%m-%dT%H:%M:%SZ")
        await self.request("PATCH", self._llmd_path(namespace, name, "scale"), body={"spec": {"replicas": 1}},
                           params={"fieldManager": FIELD_MANAGER}, content_type="application/merge-patch+json")
        await self.request("PATCH", self._llmd_path(namespace, name),
                           body={"metadata": {"annotations": {api.WOKEN_ANNOTATION: stamp}}},
                           params={"fieldManager": FIELD_MANAGER}, content_type="application/merge-patch+json")
        await self.post_event(namespace, name, uid, "Normal", "WokenByRequest",
                              f"Scaled from 0 to 1 replica: a request for {name} arrived through the gateway; "
                              "it is held until a pod is ready.", stamp)

    async def post_event(self, namespace: str, name: str, uid: str, type_: str, reason: str, message: str,
                         stamp: str) -> None:
        body = {
            "apiVersion": "v1", "kind": "Event",
            "metadata": {"generateName": f"{name}.", "namespace": namespace},
            "involvedObject": {"apiVersion": api.API_VERSION, "kind": api.KIND, "name": name,
                               "namespace": namespace, "uid": uid},
            "type": type_, "reason": reason, "message": message[:1024],
            "source": {"component": FIELD_MANAGER}, "reportingComponent": FIELD_MANAGER,
            "reportingInstance": FIELD_MANAGER, "firstTimestamp": stamp, "lastTimestamp": stamp, "count": 1,
        }
        await self.request("POST", f"/api/v1/namespaces/{namespace}/events", body=body)


async def _call(fn, *args):
    out = fn(*args)
    if asyncio.iscoroutine(out):
        await out

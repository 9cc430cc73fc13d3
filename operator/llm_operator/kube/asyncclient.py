"""Asynchronous access to the Kubernetes API over aiohttp: requests and list-then-watch
streams, on the caller's event loop. The operator's informers and the gateway use it.

Credentials come from the kubernetes client's loaders (in-cluster first, else the
kubeconfig), so both authenticate exactly as the operator's writes do.
"""

from __future__ import annotations

import asyncio
import json
import logging
import ssl
from collections.abc import Awaitable, Callable
from typing import Any, Self

import aiohttp
from kubernetes import client

from llm_operator.kube.client import load_configuration
from llm_operator.kube.errors import KubeError

log = logging.getLogger(__name__)

WATCH_TIMEOUT_S = 300  # the server ends each watch after this; we resume from the last version
BACKOFF_S = (0.5, 1, 2, 5, 10)
LIST_PAGE = 500  # items per page of a first listing

OnList = Callable[[list[dict[str, Any]]], Awaitable[None] | None]
OnEvent = Callable[[str, dict[str, Any]], Awaitable[None] | None]


class AsyncKube:
    def __init__(self, configuration: client.Configuration, connections: int = 16) -> None:
        """`connections`: at most this many at once (0: no limit; each watch holds one)."""
        self.configuration = configuration
        self.host = configuration.host.rstrip("/")
        self._ssl = self._ssl_context(configuration)
        self._connections = connections
        self.session: aiohttp.ClientSession | None = None

    @classmethod
    def load(cls, connections: int = 16) -> Self:
        return cls(load_configuration(), connections)

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

    def _headers(self) -> dict[str, str]:
        headers = {"Accept": "application/json"}
        # Re-read on every call: the in-cluster loader refreshes a projected token's value.
        token = self.configuration.get_api_key_with_prefix(
            "authorization"
        ) or self.configuration.get_api_key_with_prefix("BearerToken")
        if token:
            headers["Authorization"] = token
        return headers

    async def start(self) -> None:
        self.session = aiohttp.ClientSession(connector=aiohttp.TCPConnector(ssl=self._ssl, limit=self._connections))

    async def close(self) -> None:
        if self.session:
            await self.session.close()

    def _session(self) -> aiohttp.ClientSession:
        assert self.session is not None, "AsyncKube.start() opens the session first"
        return self.session

    async def request(
        self,
        method: str,
        path: str,
        body: Any = None,
        params: dict[str, str] | None = None,
        content_type: str = "application/json",
    ) -> dict[str, Any]:
        headers = {**self._headers(), "Content-Type": content_type}
        data = json.dumps(body) if body is not None else None
        async with self._session().request(
            method, self.host + path, data=data, params=params, headers=headers, timeout=aiohttp.ClientTimeout(total=30)
        ) as resp:
            text = await resp.text()
            if resp.status >= 400:
                raise KubeError(resp.status, text)
            answer: dict[str, Any] = json.loads(text) if text else {}
            return answer

    # ---- list + watch ------------------------------------------------------------------
    async def list_all(self, path: str, selector: str, fields: str = "") -> tuple[list[dict[str, Any]], str]:
        """Every item of `path` (in pages) and the version the listing is consistent at."""
        items: list[dict[str, Any]] = []
        params = {"limit": str(LIST_PAGE), **_selectors(selector, fields)}
        while True:
            page = await self.request("GET", path, params=params)
            items.extend(page.get("items") or [])
            meta = page.get("metadata") or {}
            if not meta.get("continue"):
                return items, meta["resourceVersion"]
            params = {**params, "continue": meta["continue"]}

    async def list_watch(
        self,
        path: str,
        selector: str,
        on_list: OnList,
        on_event: OnEvent,
        stop: asyncio.Event,
        on_failure: Callable[[Exception], None] | None = None,
        fields: str = "",
        since: str | None = None,
    ) -> None:
        """List `path`, hand the items to on_list, then watch from that version and hand each
        event to on_event; on 410 Gone or a broken stream, list again. Runs until `stop`.
        A listing's items carry no kind: on_list gets them as the API lists them. Each
        failure goes to `on_failure` too; the same failure again is logged only at debug.
        `fields`: a field selector beside the label selector; `since`: a version already
        read, watched from without a first listing."""
        failures = 0
        said = ""
        version = since
        while not stop.is_set():
            try:
                if version is None:
                    items, version = await self.list_all(path, selector, fields)
                    await _call(on_list, items)
                    failures, said = 0, ""
                while not stop.is_set():
                    resumed = await self._watch_once(path, selector, version, on_event, fields)
                    if resumed is None:  # 410 Gone: list afresh
                        version = None
                        break
                    version = resumed
            except asyncio.CancelledError:
                raise
            except Exception as err:  # noqa: BLE001: any failure of the stream is retried after a pause
                version = None  # listed afresh: what changed meanwhile is in the listing
                delay = BACKOFF_S[min(failures, len(BACKOFF_S) - 1)]
                failures += 1
                if on_failure is not None:
                    on_failure(err)
                level = logging.DEBUG if str(err) == said else logging.WARNING
                said = str(err)
                log.log(level, "watching %s failed (%s); again in %.1f s", path, err, delay)
                try:
                    await asyncio.wait_for(stop.wait(), delay)
                except TimeoutError:
                    pass

    async def _watch_once(
        self, path: str, selector: str, version: str, on_event: OnEvent, fields: str = ""
    ) -> str | None:
        params = {
            "watch": "1",
            "resourceVersion": version,
            "allowWatchBookmarks": "true",
            "timeoutSeconds": str(WATCH_TIMEOUT_S),
            **_selectors(selector, fields),
        }
        timeout = aiohttp.ClientTimeout(total=None, sock_read=WATCH_TIMEOUT_S + 30, sock_connect=10)
        session = self._session()
        async with session.get(self.host + path, params=params, headers=self._headers(), timeout=timeout) as resp:
            if resp.status == 410:
                return None
            if resp.status >= 400:
                raise KubeError(resp.status, await resp.text())
            # One JSON event per line, of any length (aiohttp's readline stops at 128 KiB).
            pending = b""
            async for chunk in resp.content.iter_any():
                pending += chunk
                *lines, pending = pending.split(b"\n")
                for line in lines:
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


def _selectors(labels: str, fields: str) -> dict[str, str]:
    return {k: v for k, v in (("labelSelector", labels), ("fieldSelector", fields)) if v}


async def _call(fn: Callable[..., Awaitable[None] | None], *args: Any) -> None:
    out = fn(*args)
    if asyncio.iscoroutine(out):
        await out

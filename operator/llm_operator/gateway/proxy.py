"""Forwarding a request to one of its model's engines: holding it while the model has no
ready endpoint (waking it from zero), asking the scheduler for an endpoint, streaming the
answer through with backpressure, bounded retries before the first byte, an error event
when an engine fails mid-stream.
"""

from __future__ import annotations

import asyncio
import datetime as dt
import json
import logging
import time
from dataclasses import dataclass
from typing import TYPE_CHECKING

import aiohttp
from aiohttp import web

from llm_common.words import plural
from llm_operator.gateway.endpoints import Endpoint, EndpointStore, Key, Model
from llm_operator.gateway.metrics import GatewayMetrics
from llm_operator.gateway.scheduling import Scheduler

if TYPE_CHECKING:
    from llm_operator.gateway.kube import Kube

log = logging.getLogger(__name__)

EJECT_S = 5.0  # an endpoint that refused a connection is skipped this long
WAKE_AGAIN_S = 30.0  # a wake not yet seen in the watch is not repeated before this
RETRY_AFTER_S = 30
# Not passed on: hop-by-hop headers, the client's credentials for the gateway, and what
# aiohttp recomputes.
_DROP = frozenset(
    h.lower()
    for h in (
        "Connection",
        "Keep-Alive",
        "Proxy-Authenticate",
        "Proxy-Authorization",
        "TE",
        "Trailer",
        "Trailers",
        "Transfer-Encoding",
        "Upgrade",
        "Host",
        "Content-Length",
        "Authorization",
    )
)
_UPSTREAM_ERRORS = (aiohttp.ClientConnectionError, aiohttp.ClientPayloadError, asyncio.TimeoutError)


@dataclass
class Settings:
    hold_timeout_s: float = 900.0
    max_held_per_model: int = 1000
    max_body_bytes: int = 8 * 2**20
    connect_timeout_s: float = 5.0
    retries: int = 2
    api_keys_file: str = ""


class HTTPFailure(Exception):
    """An answer in OpenAI's error shape."""

    def __init__(
        self,
        status: int,
        message: str,
        type_: str,
        code: str | None = None,
        headers: dict[str, str] | None = None,
        param: str | None = None,
    ):
        super().__init__(message)
        self.status, self.message, self.type, self.code, self.headers = status, message, type_, code, headers or {}
        self.param = param  # the body's field at fault, as OpenAI names it

    def response(self) -> web.Response:
        body = {"error": {"message": self.message, "type": self.type, "param": self.param, "code": self.code}}
        return web.json_response(body, status=self.status, headers=self.headers)


def mid_stream_error(label: str, tail: bytes) -> bytes:
    """The SSE event that ends a stream whose engine failed after bytes reached the client: OpenAI's
    error shape; blank lines first when the engine stopped inside an event, so this one stands alone."""
    body = {
        "error": {
            "message": f"The endpoint serving {label} failed mid-stream: the answer is incomplete.",
            "type": "upstream_error",
            "param": None,
            "code": "endpoint_failed_mid_stream",
        }
    }
    return (b"" if tail.endswith(b"\n\n") else b"\n\n") + b"data: " + json.dumps(body).encode() + b"\n\n"


class Proxy:
    """Sends requests to the endpoints the scheduler picks from the store, recording in the
    store the requests in flight per endpoint and the endpoints that refuse connections."""

    def __init__(
        self,
        settings: Settings,
        store: EndpointStore,
        scheduler: Scheduler,
        metrics: GatewayMetrics,
        kube: Kube | None = None,
    ):
        self.settings = settings
        self.store = store
        self.scheduler = scheduler
        self.metrics = metrics
        self.kube = kube  # for waking a model from zero; None: never woken
        self.held: dict[Key, int] = {}  # model key -> requests waiting for an endpoint
        self._changed: dict[Key, asyncio.Event] = {}
        self._woken: dict[Key, float] = {}
        self._wakes: set[asyncio.Task[None]] = set()
        self.session: aiohttp.ClientSession | None = None
        store.observe(self.changed)

    async def start(self) -> None:
        timeout = aiohttp.ClientTimeout(total=None, sock_connect=self.settings.connect_timeout_s)
        self.session = aiohttp.ClientSession(
            connector=aiohttp.TCPConnector(limit=0, force_close=False), timeout=timeout, auto_decompress=False
        )

    async def close(self) -> None:
        for task in self._wakes:
            task.cancel()
        await asyncio.gather(*self._wakes, return_exceptions=True)
        if self.session:
            await self.session.close()

    def changed(self, key: Key) -> None:
        """The model's table changed: the requests held for it look again."""
        event = self._changed.pop(key, None)
        if event:
            event.set()

    # ---- choosing an endpoint, holding -------------------------------------------------
    async def endpoint_for(
        self, model: Model, tried: set[str], deadline: float, route_key: bytes | None = None
    ) -> Endpoint:
        key, label = model.key, model.label
        held = False
        try:
            while True:
                now = time.monotonic()
                current = self.store.models.get(key)
                if current is None:
                    raise HTTPFailure(
                        404,
                        f"The model {model.name!r} no longer exists. Available: {self.store.names_sentence()}.",
                        "model_not_found",
                        "model_not_found",
                    )
                usable = self.store.usable(key, now)
                picked = self.scheduler.pick(current, usable, self.store.outstanding, tried, route_key)
                if picked is not None:
                    endpoint, outcome = picked
                    if outcome:
                        self.metrics.prefix_routed.labels(current.label, outcome).inc()
                    return endpoint
                if usable:
                    raise HTTPFailure(
                        502,
                        f"Every ready endpoint of the model {current.name!r} failed this request "
                        f"({', '.join(sorted(tried))}).",
                        "service_unavailable",
                        "upstream_error",
                    )
                if current.stalled and not self.store.endpoints(key):
                    raise HTTPFailure(
                        503,
                        f"The model {current.name!r} cannot be served: {current.stalled}",
                        "service_unavailable",
                        "model_stalled",
                    )
                if current.replicas == 0:
                    if not current.wakes:
                        raise HTTPFailure(
                            503,
                            f"The model {current.name!r} is scaled to zero (spec.replicas: 0) "
                            "and not set to wake on request: scale it up, or set "
                            "spec.autoscaling mode: operator with minReplicas: 0.",
                            "service_unavailable",
                            "model_scaled_to_zero",
                        )
                    self._wake(current, now)
                if not held:
                    if self.held.get(key, 0) >= self.settings.max_held_per_model:
                        raise HTTPFailure(
                            429,
                            f"The model {current.name!r} already has "
                            f"{plural(self.settings.max_held_per_model, 'request')} waiting for it to be "
                            "ready; retry later.",
                            "rate_limit_error",
                            "too_many_held_requests",
                            {"Retry-After": str(RETRY_AFTER_S)},
                        )
                    held = True
                    self.held[key] = self.held.get(key, 0) + 1
                    self.metrics.held.labels(label).inc()
                remaining = deadline - now
                if remaining <= 0:
                    raise HTTPFailure(
                        503,
                        f"The model {current.name!r} is still loading: no replica became ready "
                        f"within {self.settings.hold_timeout_s:g} s. Retry later.",
                        "service_unavailable",
                        "model_loading",
                        {"Retry-After": str(RETRY_AFTER_S)},
                    )
                wake_at = self.store.next_return(now)
                wait = remaining if wake_at is None else min(remaining, wake_at - now + 0.01)
                event = self._changed.setdefault(key, asyncio.Event())
                try:
                    await asyncio.wait_for(event.wait(), wait)
                except TimeoutError:
                    pass
        finally:
            if held:
                self.held[key] -= 1
                self.metrics.held.labels(label).dec()

    def _wake(self, model: Model, now: float) -> None:
        kube = self.kube
        if kube is None or now - self._woken.get(model.key, -WAKE_AGAIN_S) < WAKE_AGAIN_S:
            return
        self._woken[model.key] = now
        self.metrics.wakes.labels(model.label).inc()
        log.info("%s: scaling from zero for a request", model.label)

        async def wake() -> None:
            try:
                await kube.wake(model.namespace, model.name, model.uid, dt.datetime.now(dt.UTC))
            except Exception as err:  # noqa: BLE001 - logged and counted; held requests wait or time out
                log.warning("%s: waking from zero failed: %s", model.label, err)
                self.metrics.upstream_errors.labels(model.label, "wake_failed").inc()
                self._woken.pop(model.key, None)

        task = asyncio.create_task(wake())
        self._wakes.add(task)
        task.add_done_callback(self._wakes.discard)

    # ---- forwarding --------------------------------------------------------------------
    async def forward(
        self,
        request: web.Request,
        model: Model,
        path: str,
        data: bytes | None,
        started: float,
        route_key: bytes | None = None,
    ) -> web.StreamResponse:
        label = model.label
        session = self.session
        assert session is not None, "Proxy.start() first"
        headers = {k: v for k, v in request.headers.items() if k.lower() not in _DROP}
        deadline = started + self.settings.hold_timeout_s
        tried: set[str] = set()
        attempt = 0
        while True:
            endpoint = await self.endpoint_for(model, tried, deadline, route_key)
            hp = endpoint.hostport
            url = f"http://{hp}{path}"
            if request.query_string:
                url += "?" + request.query_string
            self.store.acquire(hp)
            upstream = None
            try:
                try:
                    upstream = await session.request(request.method, url, data=data, headers=headers)
                    if upstream.status == 503 and attempt < self.settings.retries:
                        self.metrics.upstream_errors.labels(label, "status_503").inc()
                        raise _Retry()
                    streaming = upstream.headers.get("Content-Type", "").startswith("text/event-stream")
                    if not streaming:
                        body = await upstream.read()  # whole, before any byte goes out: still retryable
                except _Retry:
                    log.info("%s: %s answered 503; trying another endpoint", label, hp)
                    tried.add(hp)
                except _UPSTREAM_ERRORS as err:
                    cause = _cause(err)
                    log.info("%s: %s failed (%s: %s)", label, hp, cause, err)
                    self.metrics.upstream_errors.labels(label, cause).inc()
                    if cause == "connect":
                        self.store.eject(hp, time.monotonic() + EJECT_S)
                    tried.add(hp)
                    if attempt >= self.settings.retries:
                        raise HTTPFailure(
                            502,
                            f"The model {model.name!r} did not answer: {cause} error at {hp} "
                            f"after {plural(attempt + 1, 'attempt')}.",
                            "service_unavailable",
                            "upstream_error",
                        ) from None
                else:
                    out_headers = {k: v for k, v in upstream.headers.items() if k.lower() not in _DROP}
                    if not streaming:
                        self.metrics.ttfb.labels(label).observe(time.monotonic() - started)
                        return web.Response(status=upstream.status, body=body, headers=out_headers)
                    return await self._stream(request, upstream, out_headers, label, started)
                attempt += 1
                self.metrics.retries.labels(label).inc()
            finally:
                self.store.release(hp)
                if upstream is not None:
                    upstream.release()

    async def _stream(
        self,
        request: web.Request,
        upstream: aiohttp.ClientResponse,
        headers: dict[str, str],
        label: str,
        started: float,
    ) -> web.StreamResponse:
        response = web.StreamResponse(status=upstream.status, headers=headers)
        await response.prepare(request)
        first, tail = True, b"\n\n"
        try:
            async for chunk in upstream.content.iter_any():
                if first:
                    self.metrics.ttfb.labels(label).observe(time.monotonic() - started)
                    first = False
                await response.write(chunk)  # waits while the client is slow: backpressure
                tail = (tail + chunk)[-2:]
        except _UPSTREAM_ERRORS as err:
            # Bytes have reached the client: never retried. A clean end would read as a finished
            # answer, so the stream ends with an error event, as vLLM reports its own errors
            # mid-stream (OpenAI's clients raise on it), and without [DONE].
            self.metrics.upstream_errors.labels(label, "disconnected_streaming").inc()
            log.info("%s: endpoint failed mid-stream (%s)", label, err)
            upstream.close()
            if "text/event-stream" in headers.get("Content-Type", headers.get("content-type", "")):
                await response.write(mid_stream_error(label, tail))
            await response.write_eof()
            return response
        except (ConnectionResetError, asyncio.CancelledError):
            upstream.close()  # the client went away: cancel the upstream request
            raise
        await response.write_eof()
        return response


class _Retry(Exception):
    pass


def _cause(err: BaseException) -> str:
    if isinstance(err, asyncio.TimeoutError) or isinstance(err, aiohttp.ServerTimeoutError):
        return "timeout"
    if isinstance(err, aiohttp.ClientConnectorError):
        return "connect"
    return "disconnected"

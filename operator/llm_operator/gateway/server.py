"""The gateway's HTTP side (aiohttp): OpenAI routes by the body's `model`, a native
pass-through per model, holding while a model has no ready endpoint (waking it from zero),
least-outstanding balancing, streaming with backpressure, bounded retries, limits, metrics.
"""

from __future__ import annotations

import asyncio
import datetime as dt
import json
import logging
import os
import random
import time
from dataclasses import dataclass
from pathlib import Path

import aiohttp
from aiohttp import web
from prometheus_client import CONTENT_TYPE_LATEST, generate_latest

from llm_operator.gateway import prefix
from llm_operator.gateway.metrics import GatewayMetrics
from llm_operator.gateway.routes import Endpoint, Model, Routes, model_of, pick

log = logging.getLogger(__name__)

EJECT_S = 5.0             # an endpoint that refused a connection is skipped this long
WAKE_AGAIN_S = 30.0       # a wake not yet seen in the watch is not repeated before this
RETRY_AFTER_S = 30
# Not passed on: hop-by-hop headers, the client's credentials for the gateway, and what
# aiohttp recomputes.
_DROP = frozenset(h.lower() for h in (
    "Connection", "Keep-Alive", "Proxy-Authenticate", "Proxy-Authorization", "TE", "Trailer", "Trailers",
    "Transfer-Encoding", "Upgrade", "Host", "Content-Length", "Authorization"))
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

    def __init__(self, status: int, message: str, type_: str, code: str | None = None,
                 headers: dict | None = None):
        super().__init__(message)
        self.status, self.message, self.type, self.code, self.headers = status, message, type_, code, headers or {}

    def response(self) -> web.Response:
        body = {"error": {"message": self.message, "type": self.type, "param": None, "code": self.code}}
        return web.json_response(body, status=self.status, headers=self.headers)


def mid_stream_error(label: str, tail: bytes) -> bytes:
    """The SSE event that ends a stream whose engine failed after bytes reached the client: OpenAI's
    error shape; blank lines first when the engine stopped inside an event, so this one stands alone."""
    body = {"error": {"message": f"The endpoint serving {label} failed mid-stream: the answer is incomplete.",
                      "type": "upstream_error", "param": None, "code": "endpoint_failed_mid_stream"}}
    return (b"" if tail.endswith(b"\n\n") else b"\n\n") + b"data: " + json.dumps(body).encode() + b"\n\n"


def _error_type(status: int) -> str:
    return {400: "invalid_request_error", 401: "authentication_error", 404: "model_not_found",
            413: "invalid_request_error", 429: "rate_limit_error"}.get(status, "service_unavailable")


class ApiKeys:
    """Bearer tokens accepted, one per line of a mounted file, re-read when it changes."""

    def __init__(self, path: str):
        self.path = Path(path) if path else None
        self._mtime = None
        self._keys: frozenset[str] = frozenset()
        self._checked = 0.0

    def allows(self, header: str | None) -> bool:
        if self.path is None:
            return True
        now = time.monotonic()
        if now - self._checked > 5 or self._mtime is None:
            self._checked = now
            try:
                mtime = self.path.stat().st_mtime_ns
                if mtime != self._mtime:
                    lines = self.path.read_text().splitlines()
                    self._keys = frozenset(k.strip() for k in lines if k.strip() and not k.startswith("#"))
                    self._mtime = mtime
            except OSError as err:
                log.warning("API keys file %s unreadable (%s): every request is refused", self.path, err)
                self._keys = frozenset()
        if not header or not header.startswith("Bearer "):
            return False
        return header[len("Bearer "):].strip() in self._keys


class Gateway:
    def __init__(self, settings: Settings, kube=None, rng: random.Random | None = None):
        self.settings = settings
        self.kube = kube
        self.routes = Routes()
        self.metrics = GatewayMetrics()
        self.keys = ApiKeys(settings.api_keys_file)
        self.rng = rng or random.Random()
        self.outstanding: dict[str, int] = {}        # host:port -> requests sent there and not finished
        self.rings: dict[tuple[str, str], prefix.Ring] = {}   # model key -> its ring (strategy prefix)
        self.ejected: dict[str, float] = {}          # host:port -> monotonic time it may be used again
        self.held: dict[tuple[str, str], int] = {}
        self._changed: dict[tuple[str, str], asyncio.Event] = {}
        self._woken: dict[tuple[str, str], float] = {}
        self.synced = {"models": kube is None, "pods": kube is None}
        self.session: aiohttp.ClientSession | None = None
        self._tasks: list[asyncio.Task] = []
        self._wakes: set[asyncio.Task] = set()
        self._stop = asyncio.Event()

    # ---- the table, from watches (or set directly) ----------------------------------
    def changed(self, key: tuple[str, str]) -> None:
        event = self._changed.pop(key, None)
        if event:
            event.set()
        self.metrics.endpoints.labels(f"{key[0]}/{key[1]}").set(len(self.routes.endpoints(key)))

    def set_model(self, model: Model) -> None:
        self.routes.set_model(model)
        self.changed(model.key)

    def on_models_listed(self, items: list[dict]) -> None:
        keys = set(self.routes.models)
        self.routes.models = {}
        for obj in items:
            self.routes.set_model(model_of(obj))
        self.synced["models"] = True
        for key in keys | set(self.routes.models):
            self.changed(key)

    def on_model_event(self, kind: str, obj: dict) -> None:
        model = model_of(obj)
        if kind == "DELETED":
            self.routes.drop_model(model.key)
        else:
            self.routes.set_model(model)
        self.changed(model.key)

    def on_pods_listed(self, items: list[dict]) -> None:
        for key in self.routes.replace_pods(items):
            self.changed(key)
        self.synced["pods"] = True

    def on_pod_event(self, kind: str, obj: dict) -> None:
        self.changed(self.routes.set_pod(obj, deleted=kind == "DELETED"))

    # ---- lifecycle ---------------------------------------------------------------------
    async def start(self, namespaces: list[str]) -> None:
        timeout = aiohttp.ClientTimeout(total=None, sock_connect=self.settings.connect_timeout_s)
        self.session = aiohttp.ClientSession(connector=aiohttp.TCPConnector(limit=0, force_close=False),
                                             timeout=timeout, auto_decompress=False)
        if self.kube is None:
            return
        from llm_operator import api
        from llm_operator.gateway.routes import POD_SELECTOR

        await self.kube.start()
        scopes = namespaces or [None]
        for ns in scopes:
            prefix = f"/namespaces/{ns}" if ns else ""
            llmd = f"/apis/{api.API_VERSION}{prefix}/{api.PLURAL}"
            pods = f"/api/v1{prefix}/pods"
            on_models = self.on_models_listed if len(scopes) == 1 else self._merge_listed("models", ns, len(scopes))
            on_pods = self.on_pods_listed if len(scopes) == 1 else self._merge_listed("pods", ns, len(scopes))
            self._tasks.append(asyncio.create_task(
                self.kube.list_watch(llmd, "", on_models, self.on_model_event, self._stop)))
            self._tasks.append(asyncio.create_task(
                self.kube.list_watch(pods, POD_SELECTOR, on_pods, self.on_pod_event, self._stop)))

    def _merge_listed(self, what: str, namespace: str, scopes: int):
        """With several namespaces, a (re)list replaces only that namespace's part of the table."""
        listed: set[str] = getattr(self, "_listed_" + what, set())
        setattr(self, "_listed_" + what, listed)

        def apply(items: list[dict]) -> None:
            if what == "models":
                for key in [k for k in self.routes.models if k[0] == namespace]:
                    self.routes.drop_model(key)
                    self.changed(key)
                for obj in items:
                    self.set_model(model_of(obj))
            else:
                for key in [k for k in self.routes.pods if k[0] == namespace]:
                    self.routes.pods.pop(key, None)
                    self.changed(key)
                for obj in items:
                    self.changed(self.routes.set_pod(obj))
            listed.add(namespace)
            self.synced[what] = len(listed) >= scopes
        return apply

    async def close(self) -> None:
        self._stop.set()
        for task in (*self._tasks, *self._wakes):
            task.cancel()
        await asyncio.gather(*self._tasks, *self._wakes, return_exceptions=True)
        if self.session:
            await self.session.close()
        if self.kube is not None:
            await self.kube.close()

    # ---- choosing an endpoint, holding -------------------------------------------------
    def _usable(self, key: tuple[str, str], now: float) -> list[Endpoint]:
        return [e for e in self.routes.endpoints(key) if self.ejected.get(e.hostport, 0) <= now]

    def choose(self, model: Model, usable: list[Endpoint], tried: set[str], route_key: bytes | None) -> Endpoint | None:
        """By the model's spec.routing: least outstanding requests, or its prefix's replica."""
        if route_key is None or model.routing != "prefix" or not usable:
            return pick(usable, self.outstanding, self.rng, tried)
        members = frozenset(e.hostport for e in usable)
        ring = self.rings.get(model.key)
        if ring is None or ring.members != members:
            ring = self.rings[model.key] = prefix.Ring(members)
        choice = prefix.pick(ring, route_key, self.outstanding, model.load_factor, tried)
        if choice is None:
            return None
        self.metrics.prefix_routed.labels(model.label, "spilled" if choice.spilled else "home").inc()
        return next(e for e in usable if e.hostport == choice.member)

    async def endpoint_for(self, model: Model, tried: set[str], deadline: float,
                           route_key: bytes | None = None) -> Endpoint:
        key, label = model.key, model.label
        held = False
        try:
            while True:
                now = time.monotonic()
                current = self.routes.models.get(key)
                if current is None:
                    raise HTTPFailure(404, f"The model {model.name!r} no longer exists. Available: "
                                           f"{self.routes.names_sentence()}.", "model_not_found", "model_not_found")
                usable = self._usable(key, now)
                choice = self.choose(current, usable, tried, route_key)
                if choice is not None:
                    return choice
                if usable:
                    raise HTTPFailure(502, f"Every ready endpoint of the model {current.name!r} failed this request "
                                           f"({', '.join(sorted(tried))}).", "service_unavailable", "upstream_error")
                if current.stalled and not self.routes.endpoints(key):
                    raise HTTPFailure(503, f"The model {current.name!r} cannot be served: {current.stalled}",
                                      "service_unavailable", "model_stalled")
                if current.replicas == 0:
                    if not current.wakes:
                        raise HTTPFailure(503, f"The model {current.name!r} is scaled to zero (spec.replicas: 0) "
                                               "and not set to wake on request: scale it up, or set "
                                               "spec.autoscaling mode: operator with minReplicas: 0.",
                                          "service_unavailable", "model_scaled_to_zero")
                    self._wake(current, now)
                if not held:
                    if self.held.get(key, 0) >= self.settings.max_held_per_model:
                        raise HTTPFailure(429, f"The model {current.name!r} already has "
                                               f"{self.settings.max_held_per_model} requests waiting for it to be "
                                               "ready; retry later.", "rate_limit_error", "too_many_held_requests",
                                          {"Retry-After": str(RETRY_AFTER_S)})
                    held = True
                    self.held[key] = self.held.get(key, 0) + 1
                    self.metrics.held.labels(label).inc()
                remaining = deadline - now
                if remaining <= 0:
                    raise HTTPFailure(503, f"The model {current.name!r} is still loading: no replica became ready "
                                           f"within {self.settings.hold_timeout_s:g} s. Retry later.",
                                      "service_unavailable", "model_loading", {"Retry-After": str(RETRY_AFTER_S)})
                wake_at = min((t for t in self.ejected.values() if t > now), default=None)
                wait = remaining if wake_at is None else min(remaining, wake_at - now + 0.01)
                event = self._changed.setdefault(key, asyncio.Event())
                try:
                    await asyncio.wait_for(event.wait(), wait)
                except asyncio.TimeoutError:
                    pass
        finally:
            if held:
                self.held[key] -= 1
                self.metrics.held.labels(label).dec()

    def _wake(self, model: Model, now: float) -> None:
        if self.kube is None or now - self._woken.get(model.key, -WAKE_AGAIN_S) < WAKE_AGAIN_S:
            return
        self._woken[model.key] = now
        self.metrics.wakes.labels(model.label).inc()
        log.info("%s: scaling from zero for a request", model.label)

        async def wake() -> None:
            try:
                await self.kube.wake(model.namespace, model.name, model.uid, dt.datetime.now(dt.timezone.utc))
            except Exception as err:   # noqa: BLE001: logged and counted; held requests wait or time out
                log.warning("%s: waking from zero failed: %s", model.label, err)
                self.metrics.upstream_errors.labels(model.label, "wake_failed").inc()
                self._woken.pop(model.key, None)

        task = asyncio.create_task(wake())
        self._wakes.add(task)
        task.add_done_callback(self._wakes.discard)

    # ---- forwarding --------------------------------------------------------------------
    async def forward(self, request: web.Request, model: Model, path: str, data: bytes | None,
                      started: float, route_key: bytes | None = None) -> web.StreamResponse:
        label = model.label
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
            self.outstanding[hp] = self.outstanding.get(hp, 0) + 1
            upstream = None
            try:
                try:
                    upstream = await self.session.request(request.method, url, data=data, headers=headers)
                    if upstream.status == 503 and attempt < self.settings.retries:
                        self.metrics.upstream_errors.labels(label, "status_503").inc()
                        raise _Retry()
                    streaming = upstream.headers.get("Content-Type", "").startswith("text/event-stream")
                    if not streaming:
                        body = await upstream.read()      # whole, before any byte goes out: still retryable
                except _Retry:
                    log.info("%s: %s answered 503; trying another endpoint", label, hp)
                    tried.add(hp)
                except _UPSTREAM_ERRORS as err:
                    cause = _cause(err)
                    log.info("%s: %s failed (%s: %s)", label, hp, cause, err)
                    self.metrics.upstream_errors.labels(label, cause).inc()
                    if cause == "connect":
                        self.ejected[hp] = time.monotonic() + EJECT_S
                    tried.add(hp)
                    if attempt >= self.settings.retries:
                        raise HTTPFailure(502, f"The model {model.name!r} did not answer: {cause} error at {hp} "
                                               f"after {attempt + 1} attempt(s).", "service_unavailable",
                                          "upstream_error") from None
                else:
                    out_headers = {k: v for k, v in upstream.headers.items() if k.lower() not in _DROP}
                    if not streaming:
                        self.metrics.ttfb.labels(label).observe(time.monotonic() - started)
                        return web.Response(status=upstream.status, body=body, headers=out_headers)
                    return await self._stream(request, upstream, out_headers, label, started)
                attempt += 1
                self.metrics.retries.labels(label).inc()
            finally:
                self.outstanding[hp] -= 1
                if not self.outstanding[hp]:
                    del self.outstanding[hp]
                if upstream is not None:
                    upstream.release()

    async def _stream(self, request: web.Request, upstream: aiohttp.ClientResponse, headers: dict,
                      label: str, started: float) -> web.StreamResponse:
        response = web.StreamResponse(status=upstream.status, headers=headers)
        await response.prepare(request)
        first, tail = True, b"\n\n"
        try:
            async for chunk in upstream.content.iter_any():
                if first:
                    self.metrics.ttfb.labels(label).observe(time.monotonic() - started)
                    first = False
                await response.write(chunk)            # waits while the client is slow: backpressure
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
            upstream.close()                           # the client went away: cancel the upstream request
            raise
        await response.write_eof()
        return response

    # ---- HTTP handlers -----------------------------------------------------------------
    def _check_key(self, request: web.Request) -> None:
        if not self.keys.allows(request.headers.get("Authorization")):
            raise HTTPFailure(401, "A valid API key is required: send it as 'Authorization: Bearer KEY'.",
                              "authentication_error", "invalid_api_key")

    async def _body(self, request: web.Request) -> bytes:
        limit = self.settings.max_body_bytes
        if request.content_length is not None and request.content_length > limit:
            raise HTTPFailure(413, f"The request body is {request.content_length} bytes; the limit is {limit}.",
                              "invalid_request_error", "request_too_large")
        try:
            return await request.read()
        except web.HTTPRequestEntityTooLarge:
            raise HTTPFailure(413, f"The request body is over the limit of {limit} bytes.",
                              "invalid_request_error", "request_too_large") from None

    async def openai(self, request: web.Request) -> web.StreamResponse:
        started = time.monotonic()
        label, code = "", 500
        try:
            self._check_key(request)
            raw = await self._body(request)
            try:
                body = json.loads(raw)
                if not isinstance(body, dict):
                    raise ValueError("not an object")
            except ValueError as err:
                raise HTTPFailure(400, f"The request body is not a JSON object: {err}.", "invalid_request_error",
                                  "invalid_json") from None
            resolved = self.routes.resolve(body.get("model"))
            if resolved.model is None:
                raise HTTPFailure(resolved.status, resolved.error, _error_type(resolved.status),
                                  "model_not_found" if resolved.status == 404 else "invalid_model")
            model = resolved.model
            label = model.label
            route_key = (prefix.prefix_key(body, resolved.adapter, model.prefix_chars)
                         if model.routing == "prefix" else None)
            body["model"] = model.upstream_model(resolved.adapter)
            response = await self._counted(request, model, request.path, json.dumps(body).encode(), started,
                                           route_key)
            code = response.status
            return response
        except HTTPFailure as failure:
            code = failure.status
            return failure.response()
        finally:
            if label:
                self.metrics.requests.labels(label, str(code)).inc()
                self.metrics.duration.labels(label).observe(time.monotonic() - started)

    async def native(self, request: web.Request) -> web.StreamResponse:
        """/models/NAME/PATH -> PATH on one of the model's endpoints, in the engine's own API."""
        started = time.monotonic()
        label, code = "", 500
        try:
            self._check_key(request)
            name = request.match_info["name"]
            resolved = self.routes.resolve(name)
            if resolved.model is None or resolved.adapter is not None:
                raise HTTPFailure(404, resolved.error or f"{name!r} is an adapter; its base model's name is "
                                                         f"{resolved.model.name!r}.", "model_not_found", "model_not_found")
            model = resolved.model
            label = model.label
            data = await self._body(request) if request.can_read_body else None
            response = await self._counted(request, model, "/" + request.match_info["tail"], data, started)
            code = response.status
            return response
        except HTTPFailure as failure:
            code = failure.status
            return failure.response()
        finally:
            if label:
                self.metrics.requests.labels(label, str(code)).inc()
                self.metrics.duration.labels(label).observe(time.monotonic() - started)

    async def _counted(self, request, model: Model, path: str, data, started: float,
                       route_key: bytes | None = None) -> web.StreamResponse:
        gauge = self.metrics.in_flight.labels(model.label, model.namespace, model.name)
        gauge.inc()
        try:
            return await self.forward(request, model, path, data, started, route_key)
        finally:
            gauge.dec()

    async def list_models(self, request: web.Request) -> web.Response:
        try:
            self._check_key(request)
        except HTTPFailure as failure:
            return failure.response()
        data = []
        names = self.routes.names()
        for m in self.routes.listed():
            data.append({"id": m.name if m.name in names else m.label, "object": "model", "owned_by": m.namespace,
                         "created": 0, "root": m.label, "parent": None})
            for name, served in m.adapters:
                data.append({"id": name, "object": "model", "owned_by": m.namespace, "created": 0,
                             "root": served, "parent": m.name})
        return web.json_response({"object": "list", "data": data})

    async def healthz(self, request: web.Request) -> web.Response:
        return web.Response(text="ok\n")

    async def readyz(self, request: web.Request) -> web.Response:
        waiting = [k for k, v in self.synced.items() if not v]
        if waiting:
            return web.Response(status=503, text=f"waiting for the first list of: {', '.join(waiting)}\n")
        return web.Response(text="ok\n")

    async def prometheus(self, request: web.Request) -> web.Response:
        return web.Response(body=generate_latest(self.metrics.registry),
                            headers={"Content-Type": CONTENT_TYPE_LATEST})

    def app(self) -> web.Application:
        app = web.Application(client_max_size=self.settings.max_body_bytes)
        app.router.add_post("/v1/chat/completions", self.openai)
        app.router.add_post("/v1/completions", self.openai)
        app.router.add_get("/v1/models", self.list_models)
        app.router.add_route("*", "/models/{name}/{tail:.*}", self.native)
        app.router.add_get("/healthz", self.healthz)
        app.router.add_get("/readyz", self.readyz)
        app.router.add_get("/metrics", self.prometheus)
        return app


class _Retry(Exception):
    pass


def _cause(err: BaseException) -> str:
    if isinstance(err, asyncio.TimeoutError) or isinstance(err, aiohttp.ServerTimeoutError):
        return "timeout"
    if isinstance(err, aiohttp.ClientConnectorError):
        return "connect"
    return "disconnected"


async def serve(gateway: Gateway, host: str, port: int, namespaces: list[str]) -> None:
    """Run until cancelled (SIGTERM/SIGINT in the CLI)."""
    await gateway.start(namespaces)
    runner = web.AppRunner(gateway.app(), handler_cancellation=True, access_log=None)
    await runner.setup()
    site = web.TCPSite(runner, host, port, backlog=4096)
    await site.start()
    log.info("gateway listening on http://%s:%d", host, port)
    try:
        await asyncio.Event().wait()
    finally:
        await runner.cleanup()
        await gateway.close()


def load_static(path: str) -> list[tuple[Model, list[Endpoint]]]:
    """A fixed table instead of a cluster: a YAML/JSON list of
    {name, namespace, engine, adapters: {name: servedAs}, endpoints: ["host:port", ...],
    routing: {strategy, prefixChars, loadFactorPercent}} (routing as in an LLMDeployment's spec)."""
    import yaml

    out = []
    for item in yaml.safe_load(Path(path).read_text()) or []:
        model = Model(namespace=item.get("namespace", "default"), name=item["name"],
                      engine=item.get("engine", "tgi"), ready=True, replicas=len(item.get("endpoints") or []),
                      adapters=tuple((item.get("adapters") or {}).items()),
                      routing=(item.get("routing") or {}).get("strategy", "leastLoad"),
                      prefix_chars=int((item.get("routing") or {}).get("prefixChars", prefix.DEFAULT_PREFIX_CHARS)),
                      load_factor=int((item.get("routing") or {}).get("loadFactorPercent",
                                                                       prefix.DEFAULT_LOAD_FACTOR_PERCENT)) / 100)
        endpoints = []
        for i, hostport in enumerate(item.get("endpoints") or []):
            host, _, port = hostport.rpartition(":")
            endpoints.append(Endpoint(host, int(port), f"{model.name}-{i}"))
        out.append((model, endpoints))
    return out


def install_static(gateway: Gateway, table: list[tuple[Model, list[Endpoint]]]) -> None:
    for model, endpoints in table:
        gateway.routes.set_model(model)
        gateway.routes.pods[model.key] = {e.pod: e for e in endpoints}
        gateway.changed(model.key)


def env_list(name: str) -> list[str]:
    return [v for v in os.environ.get(name, "").split(",") if v]

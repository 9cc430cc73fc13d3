"""The gateway's HTTP layer (aiohttp): the OpenAI routes (/v1/...), a native pass-through per
model (/models/NAME/...), /metrics, /healthz and /readyz, in front of the parts it wires
together: the watch feed (feed.py) keeps the endpoint store (endpoints.py) current, and the
proxy (proxy.py) forwards each request to the endpoint the scheduler (scheduling.py) picks.
"""

from __future__ import annotations

import asyncio
import json
import logging
import random
import time
from collections.abc import Awaitable, Callable
from pathlib import Path
from typing import TYPE_CHECKING, Any

from aiohttp import web
from aiohttp.http_exceptions import HttpProcessingError
from prometheus_client import CONTENT_TYPE_LATEST, generate_latest

from llm_operator.gateway import scheduling
from llm_operator.gateway.endpoints import EndpointStore, Key, Model
from llm_operator.gateway.feed import Feed
from llm_operator.gateway.metrics import GatewayMetrics
from llm_operator.gateway.proxy import HTTPFailure, Proxy, Settings
from llm_operator.gateway.scheduling import Scheduler

if TYPE_CHECKING:
    from llm_operator.gateway.kube import Kube

log = logging.getLogger(__name__)


def _error_type(status: int) -> str:
    return {
        400: "invalid_request_error",
        401: "authentication_error",
        404: "model_not_found",
        413: "invalid_request_error",
        429: "rate_limit_error",
    }.get(status, "service_unavailable")


ROUTES = "POST /v1/chat/completions, POST /v1/completions, GET /v1/models, /models/NAME/PATH, GET /healthz, /readyz, /metrics"
_EXAMPLE = '{"model": "NAME", "messages": [{"role": "user", "content": "Hello"}]}'


def _json_type(value: object) -> str:
    """What a JSON value is, in words: 'an array', 'a string', ..."""
    if value is None:
        return "null"
    if isinstance(value, bool):
        return "a boolean"
    if isinstance(value, (int, float)):
        return "a number"
    if isinstance(value, str):
        return "a string"
    return "an array" if isinstance(value, list) else "an object"


def _bad_body(message: str, code: str, param: str | None = None) -> HTTPFailure:
    return HTTPFailure(400, message, "invalid_request_error", code, param=param)


def parse_body(raw: bytes) -> dict[str, Any]:
    """An OpenAI request body, parsed once: a JSON object whose fields the gateway reads have
    the right types, or HTTPFailure 400 saying what is wrong."""
    try:
        body = json.loads(raw)
    except RecursionError:
        # json's parser recurses once per nested array or object and stops at Python's
        # recursion limit (about 1,000) with RecursionError, not ValueError.
        raise _bad_body(
            "The request body is nested too deeply: arrays or objects about 1,000 levels inside each other.",
            "json_too_deeply_nested",
        ) from None
    except ValueError as err:  # JSONDecodeError, UnicodeDecodeError, a number over 4,300 digits
        if not raw.strip():
            raise _bad_body(
                f"The request body is empty: send a JSON object such as {_EXAMPLE}.", "invalid_json"
            ) from None
        raise _bad_body(f"The request body is not valid JSON: {err}.", "invalid_json") from None
    if not isinstance(body, dict):
        raise _bad_body(
            f"The request body is {_json_type(body)}; it must be a JSON object such as {_EXAMPLE}.", "invalid_json"
        )
    check_fields(body)
    return body


def check_fields(body: dict[str, Any]) -> None:
    """HTTPFailure 400 when a field that decides how the request is routed or answered has the
    wrong type (a missing field is the engine's to refuse; `model` is checked when resolved)."""
    messages = body.get("messages")
    if messages is not None:
        if not isinstance(messages, list):
            raise _bad_body(
                f'"messages" is {_json_type(messages)}; it must be an array of message objects '
                'such as [{"role": "user", "content": "Hello"}].',
                "invalid_type",
                "messages",
            )
        for i, message in enumerate(messages):
            if not isinstance(message, dict):
                raise _bad_body(
                    f'"messages[{i}]" is {_json_type(message)}; each message must be an object '
                    'such as {"role": "user", "content": "Hello"}.',
                    "invalid_type",
                    "messages",
                )
    prompt = body.get("prompt")
    if prompt is not None and not isinstance(prompt, (str, list)):
        raise _bad_body(
            f'"prompt" is {_json_type(prompt)}; it must be a string or an array of strings.', "invalid_type", "prompt"
        )
    stream = body.get("stream")
    if stream is not None and not isinstance(stream, bool):
        raise _bad_body(f'"stream" is {_json_type(stream)}; it must be true or false.', "invalid_type", "stream")


def route_failure(method: str, path: str, exc: web.HTTPException) -> HTTPFailure:
    """An error aiohttp raises itself (no such route, a method the route does not take, a body
    over the limit), in OpenAI's error shape."""
    if isinstance(exc, web.HTTPNotFound):
        return HTTPFailure(
            404,
            f"There is no route {method} {path}. The gateway serves {ROUTES}.",
            "invalid_request_error",
            "unknown_url",
        )
    if isinstance(exc, web.HTTPMethodNotAllowed):
        allowed = sorted(exc.allowed_methods)
        return HTTPFailure(
            405,
            f"{path} does not take {method}; it takes {', '.join(allowed)}.",
            "invalid_request_error",
            "method_not_allowed",
            {"Allow": ",".join(allowed)},
        )
    type_ = "invalid_request_error" if exc.status < 500 else "server_error"
    return HTTPFailure(exc.status, f"{exc.status} {exc.reason}: {method} {path}.", type_, None)


@web.middleware
async def openai_errors(
    request: web.Request, handler: Callable[[web.Request], Awaitable[web.StreamResponse]]
) -> web.StreamResponse:
    """Every error in OpenAI's error shape: aiohttp's own (404, 405, 413, ...) and a failure
    nothing expected, which aiohttp would answer with a plain-text 500."""
    try:
        return await handler(request)
    except web.HTTPException as exc:
        if exc.status < 400:
            raise
        return route_failure(request.method, request.path, exc).response()
    except Exception:
        if request.writer.output_size > 0:
            raise  # the answer has begun: nothing else can be sent (aiohttp closes the connection)
        log.exception("%s %s failed", request.method, request.path)
        return HTTPFailure(
            500, "The gateway failed on this request; its log says why.", "server_error", "internal_error"
        ).response()


class ApiKeys:
    """Bearer tokens accepted, one per line of a mounted file, re-read when it changes."""

    def __init__(self, path: str):
        self.path = Path(path) if path else None
        self._mtime: int | None = None
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
        return header[len("Bearer ") :].strip() in self._keys


class Gateway:
    """The parts, wired: store <- feed; request -> scheduler -> proxy -> engine."""

    def __init__(self, settings: Settings, kube: Kube | None = None, rng: random.Random | None = None):
        self.settings = settings
        self.kube = kube
        self.metrics = GatewayMetrics()
        self.keys = ApiKeys(settings.api_keys_file)
        self.store = EndpointStore()
        self.feed = Feed(self.store, kube)
        self.scheduler = Scheduler(rng)
        self.proxy = Proxy(settings, self.store, self.scheduler, self.metrics, kube)
        self.store.observe(self._count_endpoints)

    def _count_endpoints(self, key: Key) -> None:
        self.metrics.endpoints.labels(f"{key[0]}/{key[1]}").set(len(self.store.endpoints(key)))

    async def start(self, namespaces: list[str]) -> None:
        await self.proxy.start()
        if self.kube is not None:
            await self.kube.start()
        self.feed.start(namespaces)

    async def close(self) -> None:
        await self.feed.stop()
        await self.proxy.close()
        if self.kube is not None:
            await self.kube.close()

    # ---- HTTP handlers -----------------------------------------------------------------
    def _check_key(self, request: web.Request) -> None:
        if not self.keys.allows(request.headers.get("Authorization")):
            raise HTTPFailure(
                401,
                "A valid API key is required: send it as 'Authorization: Bearer KEY'.",
                "authentication_error",
                "invalid_api_key",
            )

    async def _body(self, request: web.Request) -> bytes:
        limit = self.settings.max_body_bytes
        if request.content_length is not None and request.content_length > limit:
            raise HTTPFailure(
                413,
                f"The request body is {request.content_length} bytes; the limit is {limit}.",
                "invalid_request_error",
                "request_too_large",
            )
        try:
            return await request.read()
        except web.HTTPRequestEntityTooLarge:
            raise HTTPFailure(
                413,
                f"The request body is over the limit of {limit} bytes.",
                "invalid_request_error",
                "request_too_large",
            ) from None
        except web.RequestPayloadError as err:  # e.g. a Content-Encoding that does not decode
            cause = err.__cause__
            detail = cause.message if isinstance(cause, HttpProcessingError) else str(err)
            raise HTTPFailure(
                400,
                f"The request body could not be read: {detail}.",
                "invalid_request_error",
                "unreadable_body",
                {"Connection": "close"},  # the rest of the body cannot be skipped: aiohttp drops the connection
            ) from None

    async def openai(self, request: web.Request) -> web.StreamResponse:
        started = time.monotonic()
        label, code = "", 500
        try:
            self._check_key(request)
            body = parse_body(await self._body(request))
            resolved = self.store.resolve(body.get("model"))
            if resolved.model is None:
                raise HTTPFailure(
                    resolved.status,
                    resolved.error,
                    _error_type(resolved.status),
                    "model_not_found" if resolved.status == 404 else "invalid_model",
                    param="model",
                )
            model = resolved.model
            label = model.label
            route_key = scheduling.route_key(model, body, resolved.adapter)
            body["model"] = model.upstream_model(resolved.adapter)
            response = await self._counted(request, model, request.path, json.dumps(body).encode(), started, route_key)
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
            resolved = self.store.resolve(name)
            if resolved.model is None:
                raise HTTPFailure(404, resolved.error, "model_not_found", "model_not_found")
            if resolved.adapter is not None:
                raise HTTPFailure(
                    404,
                    f"{name!r} is an adapter; its base model's name is {resolved.model.name!r}.",
                    "model_not_found",
                    "model_not_found",
                )
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

    async def _counted(
        self,
        request: web.Request,
        model: Model,
        path: str,
        data: bytes | None,
        started: float,
        route_key: bytes | None = None,
    ) -> web.StreamResponse:
        gauge = self.metrics.in_flight.labels(model.label, model.namespace, model.name)
        gauge.inc()
        try:
            return await self.proxy.forward(request, model, path, data, started, route_key)
        finally:
            gauge.dec()

    async def list_models(self, request: web.Request) -> web.Response:
        try:
            self._check_key(request)
        except HTTPFailure as failure:
            return failure.response()
        data = []
        names = self.store.names()
        for m in self.store.listed():
            data.append(
                {
                    "id": m.name if m.name in names else m.label,
                    "object": "model",
                    "owned_by": m.namespace,
                    "created": 0,
                    "root": m.label,
                    "parent": None,
                }
            )
            for name, served in m.adapters:
                data.append(
                    {
                        "id": name,
                        "object": "model",
                        "owned_by": m.namespace,
                        "created": 0,
                        "root": served,
                        "parent": m.name,
                    }
                )
        return web.json_response({"object": "list", "data": data})

    async def healthz(self, request: web.Request) -> web.Response:
        return web.Response(text="ok\n")

    async def readyz(self, request: web.Request) -> web.Response:
        waiting = [k for k, v in self.feed.synced.items() if not v]
        if waiting:
            return web.Response(status=503, text=f"waiting for the first list of: {', '.join(waiting)}\n")
        return web.Response(text="ok\n")

    async def prometheus(self, request: web.Request) -> web.Response:
        return web.Response(body=generate_latest(self.metrics.registry), headers={"Content-Type": CONTENT_TYPE_LATEST})

    def app(self) -> web.Application:
        app = web.Application(client_max_size=self.settings.max_body_bytes, middlewares=[openai_errors])
        app.router.add_post("/v1/chat/completions", self.openai)
        app.router.add_post("/v1/completions", self.openai)
        app.router.add_get("/v1/models", self.list_models)
        app.router.add_route("*", "/models/{name}/{tail:.*}", self.native)
        app.router.add_get("/healthz", self.healthz)
        app.router.add_get("/readyz", self.readyz)
        app.router.add_get("/metrics", self.prometheus)
        return app


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

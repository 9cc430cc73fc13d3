"""FakeEngine: its settings, its lifecycle (in a running loop or a thread of its own), and how it
serves a generation request: admission, the FIFO queue for a batch slot, prefill after the prefix
cache, then decode at its simulated speed.
"""

from __future__ import annotations

import asyncio
import ipaddress
import json
import threading

from aiohttp import web

from .answers import DONE, SSE_HEADERS, BadRequest, Job, error_response, stream_events, usage_chunk, whole_answer
from .cache import PrefixCache
from .metrics import metrics_text
from .routes import EngineRoutes
from .slots import BatchSlots

LOOPBACK = ipaddress.ip_network("127.0.0.0/8")


class FakeEngine(EngineRoutes):
    """One fake engine on one loopback address. tests/support/fakeengine.py's docstring says what it
    simulates; its routes are in routes.py."""

    def __init__(
        self,
        host: str = "127.0.0.1",
        port: int = 0,
        *,
        model_id: str = "fake-org/fake-model",
        adapters=(),
        served_names=None,
        flavor: str = "tgi",
        metrics_flavor: str | None = None,
        prefill_tokens_per_s: float = 10_000.0,
        decode_tokens_per_s: float = 50.0,
        max_batch: int = 8,
        default_max_tokens: int = 16,
        block_tokens: int = 16,
        cache_blocks: int = 4096,
        max_input_tokens: int = 8192,
        max_total_tokens: int = 16384,
        max_concurrent_requests: int = 4096,
        model_dtype: str = "torch.float16",
        in_container: bool = False,
    ):
        # in_container: it runs in a container's own network namespace (the real node's engine
        # stand-in, tests/realnode), where listening on every address reaches only that pod.
        try:
            address = ipaddress.ip_address(host)
        except ValueError:
            address = None
        if address is None or (address not in LOOPBACK and not (in_container and address.is_unspecified)):
            raise ValueError(f"the fake engine listens only on 127.0.0.0/8 (a loopback address), not {host!r}")
        for name, value in (("flavor", flavor), ("metrics_flavor", metrics_flavor or flavor)):
            if value not in ("tgi", "vllm"):
                raise ValueError(f"{name} must be 'tgi' or 'vllm', not {value!r}")
        if prefill_tokens_per_s <= 0 or decode_tokens_per_s <= 0:
            raise ValueError("prefill_tokens_per_s and decode_tokens_per_s must be above 0 (float('inf'): no delay)")
        self.host, self.port = host, port
        self.model_id = model_id
        self.adapters = tuple(adapters)
        # TGI calls its base model "tgi"; vLLM answers to its --served-model-name, by default the model id.
        self.served_names = (
            tuple(served_names) if served_names is not None else (("tgi",) if flavor == "tgi" else (model_id,))
        )
        self.flavor, self.metrics_flavor = flavor, metrics_flavor or flavor
        self.prefill_s_per_token = 1 / prefill_tokens_per_s
        self.decode_s_per_token = 1 / decode_tokens_per_s
        self.default_max_tokens = default_max_tokens
        self.max_input_tokens, self.max_total_tokens = max_input_tokens, max_total_tokens
        self.max_concurrent_requests = max_concurrent_requests
        self.model_dtype = model_dtype
        self.cache = PrefixCache(block_tokens, cache_blocks)
        self.slots = BatchSlots(max_batch)
        self.healthy = True
        self._faults: list[int] = []
        self.started = self.completed = self.cancelled = self.failed = self.rejected = 0
        self.queued_peak = 0
        self.prefix_hits = self.prefix_queries = 0
        self.prompt_tokens = self.generation_tokens = 0
        self.request_log: list[tuple[str, str]] = []
        self._ids = 0
        self._runner: web.AppRunner | None = None
        self._loop: asyncio.AbstractEventLoop | None = None
        self._thread: threading.Thread | None = None

    # --- what tests use ------------------------------------------------------------------

    @property
    def url(self) -> str:
        return f"http://{self.host}:{self.port}"

    @property
    def address(self) -> str:
        """HOST:PORT, the value of the x-fake-engine header."""
        return f"{self.host}:{self.port}"

    @property
    def running(self) -> int:
        return self.slots.running

    @property
    def queued(self) -> int:
        return self.slots.waiting

    def fail_next(self, n: int = 1, status: int = 503) -> None:
        """The next n generation requests answer `status` before any byte."""
        self._faults.extend([status] * n)

    def set_healthy(self, healthy: bool) -> None:
        self.healthy = healthy

    async def start(self) -> None:
        """Listen, inside the running loop; port 0 picks a free port (then .port tells it)."""
        app = web.Application()
        self.add_routes(app)
        # handler_cancellation: a client that goes away cancels its handler, so generation stops.
        runner = web.AppRunner(app, handler_cancellation=True, access_log=None, shutdown_timeout=1.0)
        await runner.setup()
        site = web.TCPSite(runner, self.host, self.port, backlog=1024)
        try:
            await site.start()
        except OSError:
            await runner.cleanup()
            raise
        self.port = site._server.sockets[0].getsockname()[1]
        self._runner = runner

    async def close(self) -> None:
        """Stop listening and abort every open connection, as a killed endpoint would."""
        runner, self._runner = self._runner, None
        if runner is None:
            return
        for site in list(runner.sites):
            await site.stop()
        for handler in runner.server.connections:
            if handler.transport is not None:
                handler.transport.abort()
        await runner.cleanup()

    def start_in_thread(self, timeout: float = 10) -> FakeEngine:
        """Run the engine on its own event loop in a daemon thread; returns once it listens."""
        if self._thread is not None:
            raise RuntimeError(f"the fake engine on {self.address} is already running")
        ready, failure = threading.Event(), []
        loop = asyncio.new_event_loop()

        def serve() -> None:
            asyncio.set_event_loop(loop)
            try:
                loop.run_until_complete(self.start())
            except BaseException as error:  # handed to the caller of start_in_thread
                failure.append(error)
                ready.set()
                loop.close()
                return
            ready.set()
            loop.run_forever()
            loop.run_until_complete(loop.shutdown_asyncgens())
            loop.close()

        self._loop = loop
        self._thread = threading.Thread(target=serve, name=f"fakeengine {self.host}", daemon=True)
        self._thread.start()
        if not ready.wait(timeout):
            raise TimeoutError(f"the fake engine on {self.host}:{self.port} did not start within {timeout}s")
        if failure:
            self._thread.join(timeout)
            self._thread = self._loop = None
            raise failure[0]
        return self

    def stop(self, timeout: float = 10) -> None:
        """Stop an engine started with start_in_thread (close its listener, abort its connections)."""
        if self._thread is None:
            return
        asyncio.run_coroutine_threadsafe(self.close(), self._loop).result(timeout)
        self._loop.call_soon_threadsafe(self._loop.stop)
        self._thread.join(timeout)
        self._thread = self._loop = None

    def __enter__(self) -> FakeEngine:
        return self.start_in_thread()

    def __exit__(self, *exc) -> None:
        self.stop()

    # --- generation ----------------------------------------------------------------------

    async def _run(self, adapter: str | None, tokens: list[str], n_out: int, emit=None) -> None:
        """Queue, prefill and decode one request. emit(i) is awaited as token i is generated;
        without emit, the whole decode is one sleep (a non-streaming answer)."""
        loop = asyncio.get_running_loop()
        self.started += 1
        try:
            if self.slots.free == 0 or self.slots.waiters:
                self.queued_peak = max(self.queued_peak, self.slots.waiting + 1)
            await self.slots.acquire()
            try:
                hashes = self.cache.block_hashes(adapter, tokens)
                hit = self.cache.cached_tokens(hashes)
                self.prefix_hits += hit
                self.prefix_queries += len(tokens)
                self.prompt_tokens += len(tokens)
                prefill = (len(tokens) - hit) * self.prefill_s_per_token
                if prefill > 0:
                    await asyncio.sleep(prefill)
                self.cache.insert(hashes)
                if emit is None:
                    decode = (n_out - 1) * self.decode_s_per_token
                    if decode > 0:
                        await asyncio.sleep(decode)
                else:
                    # Deadlines from one origin, so that a busy loop does not slow the stream down.
                    origin, step = loop.time(), self.decode_s_per_token
                    for i in range(n_out):
                        if i:
                            delay = origin + i * step - loop.time()
                            if delay > 0:
                                await asyncio.sleep(delay)
                        await emit(i)
                self.generation_tokens += n_out
            finally:
                self.slots.release()
        except (asyncio.CancelledError, ConnectionResetError):
            self.cancelled += 1
            raise
        self.completed += 1

    def _admit(self, requested: str | None, tokens: list[str], n_out) -> tuple[str | None, str]:
        """Check a generation request; returns (adapter or None, the model name it is answered as)."""
        if requested is None or requested in self.served_names:
            adapter, name = None, self.model_id
        elif requested in self.adapters:
            adapter, name = requested, requested
        elif self.flavor == "vllm":
            raise BadRequest(404, f"The model `{requested}` does not exist.")
        else:
            raise BadRequest(
                422,
                f"adapter `{requested}` is not loaded: this engine serves {self.model_id} "
                f"(as {', '.join(self.served_names)}) and the adapters [{', '.join(self.adapters)}]",
            )
        if not isinstance(n_out, int) or isinstance(n_out, bool) or n_out < 1:
            raise BadRequest(422, f"Input validation error: `max_new_tokens` must be a positive integer, not {n_out!r}")
        if len(tokens) > self.max_input_tokens:
            raise BadRequest(
                422,
                f"Input validation error: `inputs` must have less than {self.max_input_tokens} "
                f"tokens. Given: {len(tokens)}",
            )
        if len(tokens) + n_out > self.max_total_tokens:
            raise BadRequest(
                422,
                f"Input validation error: `inputs` tokens + `max_new_tokens` must be <= "
                f"{self.max_total_tokens}. Given: {len(tokens)} `inputs` tokens and {n_out} `max_new_tokens`",
            )
        if self.slots.running + self.slots.waiting >= self.max_concurrent_requests:
            raise BadRequest(429, "Model is overloaded", "overloaded")
        return adapter, name

    async def _answer(self, request: web.Request, parse) -> web.StreamResponse:
        """The common path of every generation route: parse, log, inject faults, admit, then serve.
        parse(body) -> (requested model or None, prompt tokens, tokens to generate, stream?)."""
        try:
            body = json.loads(await request.read())
            if not isinstance(body, dict):
                raise ValueError("the body is not a JSON object")
            requested, tokens, n_out, stream = parse(body)
        except (ValueError, TypeError, AttributeError, KeyError) as error:
            self.request_log.append((None, request.path))
            self.rejected += 1
            return self._error(422, f"Failed to deserialize the JSON body into the target type: {error}")
        is_base = requested is None or requested in self.served_names
        self.request_log.append((self.model_id if is_base else requested, request.path))
        if self._faults:
            status = self._faults.pop(0)
            self.failed += 1
            return self._error(status, f"injected fault: HTTP {status}", "fake_fault")
        try:
            adapter, name = self._admit(requested, tokens, n_out)
        except BadRequest as bad:
            self.rejected += 1
            return self._error(bad.status, bad.message, bad.error_type)
        self._ids += 1
        job = Job(self._ids, adapter, name, tokens, n_out, stream, body)
        route = request.match_info.route.resource.canonical
        if stream:
            return await self._stream(request, job, route)
        await self._run(adapter, tokens, n_out)
        return web.json_response(whole_answer(job, route), headers={"x-fake-model": name})

    async def _stream(self, request: web.Request, job: Job, route: str) -> web.StreamResponse:
        response = web.StreamResponse(headers={**SSE_HEADERS, "x-fake-model": job.name})
        await response.prepare(request)
        event, last = stream_events(job, route)
        final = job.n_out - 1

        async def emit(i: int) -> None:
            await response.write(last if i == final else event(i))

        try:
            await self._run(job.adapter, job.tokens, job.n_out, emit)
            if route != "/generate_stream":
                if job.include_usage:
                    await response.write(b"data: " + json.dumps(usage_chunk(job, route)).encode() + b"\n\n")
                await response.write(DONE)
            await response.write_eof()
        except ConnectionResetError:
            pass  # the client went away between tokens: _run counted it
        return response

    def _error(self, status: int, message: str, error_type: str = "validation") -> web.Response:
        return error_response(self.flavor, status, message, error_type)

    def metrics_text(self) -> str:
        """The /metrics page: TGI's names, or vLLM's (with model_name and engine labels)."""
        return metrics_text(self)

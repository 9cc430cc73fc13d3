"""A fake inference engine: an aiohttp server that speaks Text Generation Inference's HTTP API
(and enough of vLLM's) and simulates an engine's speed, for tests and benchmarks without a GPU.

Routes (every response carries `x-fake-engine: HOST:PORT` and, on generation, `x-fake-model`):
  POST /generate              TGI: {"inputs", "parameters": {"max_new_tokens", "adapter_id"}}
  POST /generate_stream       TGI's server-sent events, one per token; the last has generated_text
  POST /v1/chat/completions   OpenAI, streaming ("stream": true, then `data: [DONE]`) or not
  POST /v1/completions        the same for a plain prompt
  GET  /health /info /v1/models /metrics

Models: a request for a name in `served_names` (or none) gets the base model; any other name is
an adapter id and must be one of `adapters`, else TGI's 422 {"error", "error_type"} (flavor
"tgi") or vLLM's 404 {"error": {"message", "type": "NotFoundError", "code"}} (flavor "vllm").
Bodies name the model actually used: OpenAI's `model` is the adapter id or `model_id`; TGI's
answers get an extra "model" key.

Speed: a prompt's tokens are its whitespace-separated words (chat: each message's words after a
role marker). A request waits in a FIFO queue until one of `max_batch` slots is free, then its
prefill takes (uncached prompt tokens / prefill_tokens_per_s) seconds and yields the first token;
each next token comes 1 / decode_tokens_per_s seconds later, per stream. Output: max_new_tokens
(TGI) or max_tokens (OpenAI) tokens, `default_max_tokens` if unset, the words "tok0 tok1 ...".
Both are simulated per request: a full batch costs each request no more than running alone.

Prefix cache: an LRU of `cache_blocks` hashes of full blocks of `block_tokens` prompt tokens,
each hash chained over its whole prefix (and the adapter), as vLLM's. A prompt's cached tokens
are those of its longest run of cached leading blocks. Hits and queries are counted in tokens,
as vLLM's vllm:prefix_cache_hits / vllm:prefix_cache_queries are.

Faults: fail_next(n, status) answers the next n generation requests with that status before
any byte; set_healthy(False) turns /health to 503; stop() (or `await close()`) closes the
listener and aborts open connections, as a killed endpoint would; start_in_thread() again brings it
back on the same port. A request whose client goes
away stops where it is (queue, prefill or decode) and counts as cancelled.

Counters (read from any thread): started, completed, cancelled, failed (injected), rejected
(invalid requests), queued_peak, prefix_hits / prefix_queries (tokens), and request_log: one
(model or adapter, path) per generation request, in arrival order.

  engine = FakeEngine("127.0.0.5", 0, adapters=("org/lora",)).start_in_thread()
  ... engine.url, engine.port ...
  engine.stop()

or `await engine.start()` / `await engine.close()` inside a running loop, or the CLI:
  python tests/support/fakeengine.py --host 127.0.0.5 --port 8080 --max-batch 4 --adapter org/lora
"""

from __future__ import annotations

import argparse
import asyncio
import ipaddress
import json
import signal
import threading
import time
from collections import OrderedDict, deque

from aiohttp import web

LOOPBACK = ipaddress.ip_network("127.0.0.0/8")
TGI_VERSION = "3.3.7"
# vLLM's error "type" for each status it answers with (vllm/entrypoints/openai/protocol.py ErrorResponse).
VLLM_ERROR_TYPES = {
    400: "BadRequestError",
    404: "NotFoundError",
    422: "BadRequestError",
    429: "TooManyRequestsError",
    500: "InternalServerError",
    503: "ServiceUnavailableError",
}
SSE_HEADERS = {"Content-Type": "text/event-stream", "Cache-Control": "no-cache"}
DONE = b"data: [DONE]\n\n"


def token_text(i: int) -> str:
    """The i-th generated token's text: the answer is "tok0 tok1 ...", each later token with its space."""
    return f" tok{i}" if i else "tok0"


def generated_text(n: int) -> str:
    return " ".join(f"tok{i}" for i in range(n))


def chat_tokens(messages) -> list[str]:
    """A chat's prompt tokens: a role marker, then the message's words, per message; then the assistant's marker."""
    tokens: list[str] = []
    for message in messages:
        content = message.get("content") or ""
        if isinstance(content, list):  # OpenAI content parts: only the text ones count
            content = " ".join(part.get("text", "") for part in content if isinstance(part, dict))
        tokens.append(f"<|{message.get('role', 'user')}|>")
        tokens.extend(str(content).split())
    tokens.append("<|assistant|>")
    return tokens


class BadRequest(Exception):
    """A request the engine refuses: status, message and TGI's error_type."""

    def __init__(self, status: int, message: str, error_type: str = "validation"):
        super().__init__(message)
        self.status, self.message, self.error_type = status, message, error_type


class PrefixCache:
    """An LRU of chained block hashes; a block's hash covers its whole prefix, so a hit on block k
    means blocks 0..k are the same. Only full blocks are cached."""

    def __init__(self, block_tokens: int, capacity_blocks: int):
        if block_tokens < 1:
            raise ValueError(f"block_tokens must be at least 1, not {block_tokens}")
        self.block_tokens, self.capacity = block_tokens, capacity_blocks
        self.blocks: OrderedDict[int, None] = OrderedDict()

    def block_hashes(self, namespace: str | None, tokens: list[str]) -> list[int]:
        # The adapter is part of the root: an adapter's KV cache is not the base model's.
        h, out, b = hash(("root", namespace)), [], self.block_tokens
        for start in range(0, len(tokens) - b + 1, b):
            h = hash((h, tuple(tokens[start : start + b])))
            out.append(h)
        return out

    def cached_tokens(self, hashes: list[int]) -> int:
        """Tokens covered by the longest run of cached leading blocks; those blocks become most recent."""
        n = 0
        for h in hashes:
            if h not in self.blocks:
                break
            self.blocks.move_to_end(h)
            n += 1
        return n * self.block_tokens

    def insert(self, hashes: list[int]) -> None:
        if self.capacity <= 0:
            return
        for h in hashes:
            self.blocks[h] = None
            self.blocks.move_to_end(h)
        while len(self.blocks) > self.capacity:
            self.blocks.popitem(last=False)


class BatchSlots:
    """At most `size` requests generate at once; the others wait first come, first served."""

    def __init__(self, size: int):
        if size < 1:
            raise ValueError(f"max_batch must be at least 1, not {size}")
        self.size, self.free = size, size
        self.waiters: deque[asyncio.Future] = deque()

    @property
    def running(self) -> int:
        return self.size - self.free

    @property
    def waiting(self) -> int:
        return len(self.waiters)

    async def acquire(self) -> None:
        if self.free and not self.waiters:
            self.free -= 1
            return
        waiter = asyncio.get_running_loop().create_future()
        self.waiters.append(waiter)
        try:
            await waiter
        except asyncio.CancelledError:
            if waiter.done() and not waiter.cancelled():
                self.release()  # granted a slot just as its client went away: pass it on
            elif waiter in self.waiters:  # release() may have dropped it already, skipping it as cancelled
                self.waiters.remove(waiter)
            raise

    def release(self) -> None:
        while self.waiters:
            waiter = self.waiters.popleft()
            if not waiter.done():
                waiter.set_result(None)  # the slot goes straight to the next in line
                return
        self.free += 1


class FakeEngine:
    """One fake engine on one loopback address. See the module docstring for what it simulates."""

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
        app.on_response_prepare.append(self._stamp)
        app.router.add_post("/generate", self._generate)
        app.router.add_post("/generate_stream", self._generate_stream)
        app.router.add_post("/v1/chat/completions", self._chat_completions)
        app.router.add_post("/v1/completions", self._completions)
        app.router.add_get("/health", self._health)
        app.router.add_get("/info", self._info)
        app.router.add_get("/v1/models", self._models)
        app.router.add_get("/metrics", self._metrics)
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
        job = _Job(self._ids, adapter, name, tokens, n_out, stream, body)
        route = request.match_info.route.resource.canonical
        if stream:
            return await self._stream(request, job, route)
        await self._run(adapter, tokens, n_out)
        return web.json_response(self._whole_answer(job, route), headers={"x-fake-model": name})

    async def _stream(self, request: web.Request, job: _Job, route: str) -> web.StreamResponse:
        response = web.StreamResponse(headers={**SSE_HEADERS, "x-fake-model": job.name})
        await response.prepare(request)
        event, last = self._events(job, route)
        final = job.n_out - 1

        async def emit(i: int) -> None:
            await response.write(last if i == final else event(i))

        try:
            await self._run(job.adapter, job.tokens, job.n_out, emit)
            if route != "/generate_stream":
                if job.include_usage:
                    await response.write(b"data: " + json.dumps(self._usage_chunk(job, route)).encode() + b"\n\n")
                await response.write(DONE)
            await response.write_eof()
        except ConnectionResetError:
            pass  # the client went away between tokens: _run counted it
        return response

    def _events(self, job: _Job, route: str):
        """(event(i) -> the SSE bytes of token i, the whole last event). A token's event is a bytes
        template filled with %, so a token costs no json.dumps."""
        name = json.dumps(job.name).replace("%", "%%")  # the templates below go through % once, per token
        job.created = created = int(time.time())
        last_text = token_text(job.n_out - 1)
        if route == "/generate_stream":
            # TGI's event; "model" is the fake engine's own addition.
            template = (
                'data: {"index":%d,"token":{"id":%d,"text":"%s","logprob":-0.1,"special":false},'
                '"generated_text":null,"details":null,"model":' + name + "}\n\n"
            ).encode()
            last = {
                "index": job.n_out - 1,
                "token": {"id": job.n_out - 1, "text": last_text, "logprob": -0.1, "special": False},
                "generated_text": generated_text(job.n_out),
                "details": None,
                "model": job.name,
            }

            def event(i: int) -> bytes:
                return template % (i, i, token_text(i).encode())
        elif route == "/v1/chat/completions":
            head = (
                f'data: {{"id":"chatcmpl-{job.id}","object":"chat.completion.chunk","created":{created},'
                f'"model":{name},"system_fingerprint":"fake-engine","choices":[{{"index":0,"delta":'
            )
            tail = '"},"logprobs":null,"finish_reason":null}]}\n\n'
            first = (head + '{"role":"assistant","content":"%s' + tail).encode()
            template = (head + '{"content":"%s' + tail).encode()
            delta = {"role": "assistant", "content": last_text} if job.n_out == 1 else {"content": last_text}
            last = {
                "id": f"chatcmpl-{job.id}",
                "object": "chat.completion.chunk",
                "created": created,
                "model": job.name,
                "system_fingerprint": "fake-engine",
                "choices": [{"index": 0, "delta": delta, "logprobs": None, "finish_reason": "length"}],
            }

            def event(i: int) -> bytes:
                return (template if i else first) % token_text(i).encode()
        else:
            template = (
                f'data: {{"id":"cmpl-{job.id}","object":"text_completion","created":{created},'
                f'"model":{name},"system_fingerprint":"fake-engine","choices":[{{"index":0,"text":"%s",'
                '"logprobs":null,"finish_reason":null}]}\n\n'
            ).encode()
            last = {
                "id": f"cmpl-{job.id}",
                "object": "text_completion",
                "created": created,
                "model": job.name,
                "system_fingerprint": "fake-engine",
                "choices": [{"index": 0, "text": last_text, "logprobs": None, "finish_reason": "length"}],
            }

            def event(i: int) -> bytes:
                return template % token_text(i).encode()

        return event, b"data: " + json.dumps(last, separators=(",", ":")).encode() + b"\n\n"

    def _usage(self, job: _Job) -> dict:
        return {
            "prompt_tokens": len(job.tokens),
            "completion_tokens": job.n_out,
            "total_tokens": len(job.tokens) + job.n_out,
        }

    def _usage_chunk(self, job: _Job, route: str) -> dict:
        kind = "chat.completion.chunk" if route == "/v1/chat/completions" else "text_completion"
        prefix = "chatcmpl" if route == "/v1/chat/completions" else "cmpl"
        return {
            "id": f"{prefix}-{job.id}",
            "object": kind,
            "created": job.created,
            "model": job.name,
            "system_fingerprint": "fake-engine",
            "choices": [],
            "usage": self._usage(job),
        }

    def _whole_answer(self, job: _Job, route: str) -> dict:
        text = generated_text(job.n_out)
        if route == "/generate":
            return {"generated_text": text, "model": job.name}
        created = int(time.time())
        if route == "/v1/chat/completions":
            choice = {
                "index": 0,
                "message": {"role": "assistant", "content": text},
                "logprobs": None,
                "finish_reason": "length",
            }
            return {
                "id": f"chatcmpl-{job.id}",
                "object": "chat.completion",
                "created": created,
                "model": job.name,
                "system_fingerprint": "fake-engine",
                "choices": [choice],
                "usage": self._usage(job),
            }
        choice = {"index": 0, "text": text, "logprobs": None, "finish_reason": "length"}
        return {
            "id": f"cmpl-{job.id}",
            "object": "text_completion",
            "created": created,
            "model": job.name,
            "system_fingerprint": "fake-engine",
            "choices": [choice],
            "usage": self._usage(job),
        }

    def _error(self, status: int, message: str, error_type: str = "validation") -> web.Response:
        if self.flavor == "vllm":
            body = {
                "error": {
                    "message": message,
                    "type": VLLM_ERROR_TYPES.get(status, "BadRequestError"),
                    "param": None,
                    "code": status,
                }
            }
        else:
            body = {"error": message, "error_type": error_type}
        return web.json_response(body, status=status)

    # --- routes --------------------------------------------------------------------------

    async def _stamp(self, request: web.Request, response: web.StreamResponse) -> None:
        response.headers["x-fake-engine"] = self.address

    def _tgi_parse(self, stream: bool):
        def parse(body: dict):
            inputs = body["inputs"]
            if not isinstance(inputs, str):
                raise TypeError("`inputs` must be a string")
            parameters = body.get("parameters") or {}
            n_out = parameters.get("max_new_tokens")
            return (
                parameters.get("adapter_id"),
                inputs.split(),
                self.default_max_tokens if n_out is None else n_out,
                stream,
            )

        return parse

    async def _generate(self, request: web.Request) -> web.StreamResponse:
        return await self._answer(request, self._tgi_parse(stream=False))

    async def _generate_stream(self, request: web.Request) -> web.StreamResponse:
        return await self._answer(request, self._tgi_parse(stream=True))

    def _openai_n_out(self, body: dict):
        n_out = body.get("max_completion_tokens", body.get("max_tokens"))
        return self.default_max_tokens if n_out is None else n_out

    async def _chat_completions(self, request: web.Request) -> web.StreamResponse:
        def parse(body: dict):
            messages = body["messages"]
            if not isinstance(messages, list):
                raise TypeError("`messages` must be a list")
            return body.get("model"), chat_tokens(messages), self._openai_n_out(body), bool(body.get("stream"))

        return await self._answer(request, parse)

    async def _completions(self, request: web.Request) -> web.StreamResponse:
        def parse(body: dict):
            prompt = body["prompt"]
            if isinstance(prompt, list):  # one prompt in a list; several are not simulated
                if len(prompt) != 1 or not isinstance(prompt[0], str):
                    raise TypeError("the fake engine takes one string prompt")
                prompt = prompt[0]
            if not isinstance(prompt, str):
                raise TypeError("`prompt` must be a string")
            return body.get("model"), prompt.split(), self._openai_n_out(body), bool(body.get("stream"))

        return await self._answer(request, parse)

    async def _health(self, request: web.Request) -> web.Response:
        if self.healthy:
            return web.Response(status=200)
        return self._error(503, "unhealthy", "healthcheck")

    async def _info(self, request: web.Request) -> web.Response:
        return web.json_response(
            {
                "model_id": self.model_id,
                "model_sha": None,
                "model_dtype": self.model_dtype,
                "model_device_type": "cuda",
                "model_pipeline_tag": "text-generation",
                "max_concurrent_requests": self.max_concurrent_requests,
                "max_best_of": 2,
                "max_stop_sequences": 4,
                "max_input_tokens": self.max_input_tokens,
                "max_total_tokens": self.max_total_tokens,
                "validation_workers": 2,
                "max_client_batch_size": 4,
                "router": "text-generation-router",
                "version": TGI_VERSION,
                "sha": None,
                "docker_label": None,
            }
        )

    async def _models(self, request: web.Request) -> web.Response:
        created = int(time.time())
        data = [
            {
                "id": name,
                "object": "model",
                "created": created,
                "owned_by": "fake-engine",
                "root": self.model_id,
                "parent": None,
            }
            for name in self.served_names
        ]
        data += [
            {
                "id": name,
                "object": "model",
                "created": created,
                "owned_by": "fake-engine",
                "root": name,
                "parent": self.served_names[0] if self.served_names else self.model_id,
            }
            for name in self.adapters
        ]
        return web.json_response({"object": "list", "data": data})

    async def _metrics(self, request: web.Request) -> web.Response:
        return web.Response(text=self.metrics_text(), content_type="text/plain", charset="utf-8")

    def metrics_text(self) -> str:
        """The /metrics page: TGI's names, or vLLM's (with model_name and engine labels)."""
        if self.metrics_flavor == "vllm":
            labels = '{engine="0",model_name=%s}' % json.dumps(
                self.served_names[0] if self.served_names else self.model_id
            )
            rows = [
                (
                    "vllm:num_requests_running",
                    "gauge",
                    "Number of requests in model execution batches.",
                    "",
                    self.slots.running,
                ),
                (
                    "vllm:num_requests_waiting",
                    "gauge",
                    "Number of requests waiting to be processed.",
                    "",
                    self.slots.waiting,
                ),
                (
                    "vllm:prefix_cache_queries",
                    "counter",
                    "Prefix cache queries, in terms of number of queried tokens.",
                    "_total",
                    self.prefix_queries,
                ),
                (
                    "vllm:prefix_cache_hits",
                    "counter",
                    "Prefix cache hits, in terms of number of cached tokens.",
                    "_total",
                    self.prefix_hits,
                ),
                ("vllm:prompt_tokens", "counter", "Number of prefill tokens processed.", "_total", self.prompt_tokens),
                (
                    "vllm:generation_tokens",
                    "counter",
                    "Number of generation tokens processed.",
                    "_total",
                    self.generation_tokens,
                ),
            ]
            lines = []
            for name, kind, help_text, suffix, value in rows:
                lines += [
                    f"# HELP {name}{suffix} {help_text}",
                    f"# TYPE {name}{suffix} {kind}",
                    f"{name}{suffix}{labels} {float(value)}",
                ]
            lines.append(
                f'vllm:request_success_total{{engine="0",finished_reason="length",model_name={json.dumps(self.served_names[0] if self.served_names else self.model_id)}}} {float(self.completed)}'
            )
            return "\n".join(lines) + "\n"
        rows = [
            ("tgi_queue_size", "gauge", self.slots.waiting),
            ("tgi_batch_current_size", "gauge", self.slots.running),
            ("tgi_request_count", "counter", self.started + self.failed + self.rejected),
            ("tgi_request_success", "counter", self.completed),
            # Not TGI's: the fake engine's prefix cache, in tokens.
            ("fake_engine_prefix_cache_queries_tokens", "counter", self.prefix_queries),
            ("fake_engine_prefix_cache_hits_tokens", "counter", self.prefix_hits),
        ]
        lines = []
        for name, kind, value in rows:
            lines += [f"# TYPE {name} {kind}", f"{name} {value}"]
        return "\n".join(lines) + "\n"


class _Job:
    __slots__ = ("id", "adapter", "name", "tokens", "n_out", "stream", "include_usage", "created")

    def __init__(self, job_id, adapter, name, tokens, n_out, stream, body):
        self.id, self.adapter, self.name, self.tokens, self.n_out, self.stream = (
            job_id,
            adapter,
            name,
            tokens,
            n_out,
            stream,
        )
        options = body.get("stream_options") or {}
        self.include_usage = bool(isinstance(options, dict) and options.get("include_usage"))
        self.created = 0


def main(argv=None) -> None:
    parser = argparse.ArgumentParser(
        description="A fake TGI/vLLM engine on a loopback address, for tests and benchmarks."
    )
    parser.add_argument("--host", default="127.0.0.1", help="a 127.0.0.0/8 address")
    parser.add_argument("--port", type=int, default=8080, help="0 picks a free port")
    parser.add_argument("--model-id", default="fake-org/fake-model")
    parser.add_argument(
        "--adapter", dest="adapters", action="append", default=[], help="an adapter id it serves (repeatable)"
    )
    parser.add_argument(
        "--served-name",
        dest="served_names",
        action="append",
        default=None,
        help="a name that means the base model (repeatable; default: tgi, or the model id for vllm)",
    )
    parser.add_argument(
        "--flavor", choices=("tgi", "vllm"), default="tgi", help="error shapes and default metric names"
    )
    parser.add_argument("--metrics-flavor", choices=("tgi", "vllm"), default=None)
    parser.add_argument("--prefill-tokens-per-s", type=float, default=10_000.0)
    parser.add_argument("--decode-tokens-per-s", type=float, default=50.0)
    parser.add_argument("--max-batch", type=int, default=8)
    parser.add_argument("--default-max-tokens", type=int, default=16)
    parser.add_argument("--block-tokens", type=int, default=16)
    parser.add_argument("--cache-blocks", type=int, default=4096)
    parser.add_argument("--max-input-tokens", type=int, default=8192)
    parser.add_argument("--max-total-tokens", type=int, default=16384)
    parser.add_argument("--max-concurrent-requests", type=int, default=4096)
    parser.add_argument(
        "--in-container", action="store_true", help="in a container's own network namespace: --host may be 0.0.0.0"
    )
    args = parser.parse_args(argv)
    options = vars(args)
    host, port = options.pop("host"), options.pop("port")
    try:
        engine = FakeEngine(host, port, **options)
    except ValueError as error:
        parser.error(str(error))

    async def serve() -> None:
        await engine.start()
        print(f"listening on {engine.url}", flush=True)
        stopping = asyncio.Event()
        loop = asyncio.get_running_loop()
        for sig in (signal.SIGTERM, signal.SIGINT):
            loop.add_signal_handler(sig, stopping.set)
        await stopping.wait()
        await engine.close()

    asyncio.run(serve())


if __name__ == "__main__":
    main()

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

This file is the entry point (the CLI, and what importers and the stand-in images use); the parts
are in tests/support/engine_sim/ (engine, routes, answers, metrics, slots, cache, tokens).
"""

from __future__ import annotations

import argparse
import asyncio
import signal

if __package__:  # imported as support.fakeengine
    from .engine_sim import (
        LOOPBACK,
        TGI_VERSION,
        BadRequest,
        BatchSlots,
        FakeEngine,
        PrefixCache,
        chat_tokens,
        generated_text,
        token_text,
    )
else:  # run as a file, or imported from its own folder (the stand-in images' /opt/standin)
    from engine_sim import (
        LOOPBACK,
        TGI_VERSION,
        BadRequest,
        BatchSlots,
        FakeEngine,
        PrefixCache,
        chat_tokens,
        generated_text,
        token_text,
    )

__all__ = [
    "LOOPBACK",
    "TGI_VERSION",
    "BadRequest",
    "BatchSlots",
    "FakeEngine",
    "PrefixCache",
    "chat_tokens",
    "generated_text",
    "main",
    "token_text",
]


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

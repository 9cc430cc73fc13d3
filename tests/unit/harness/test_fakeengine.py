"""tests/support/fakeengine.py over real HTTP on loopback addresses: its API shapes, its simulated speed
(streaming, batch queue, prefix cache), its faults, and its refusal to leave loopback."""

from __future__ import annotations

import asyncio
import json
import os
import signal
import subprocess
import sys
import time
import urllib.error
import urllib.request
from pathlib import Path

import aiohttp
import pytest

from llm_operator.autoscale.policy import parse_prometheus_text
from support.fakeengine import BatchSlots, FakeEngine, PrefixCache, chat_tokens

pytestmark = pytest.mark.timeout(30)

TESTS = Path(__file__).resolve().parents[2]
CLIENT_TIMEOUT = aiohttp.ClientTimeout(total=15)


@pytest.fixture
def engines():
    """FakeEngine(host, 0, **options) started in a thread; all stopped at the end of the test."""
    started = []

    def make(host: str = "127.0.0.5", **options) -> FakeEngine:
        engine = FakeEngine(host, 0, **options).start_in_thread()
        started.append(engine)
        return engine

    yield make
    for engine in started:
        engine.stop()


def run(coro):
    return asyncio.run(asyncio.wait_for(coro, 20))


async def post(session, engine, path, body):
    """(status, headers, parsed JSON body) of one POST."""
    async with session.post(engine.url + path, json=body) as response:
        return response.status, response.headers, await response.json(content_type=None)


async def read_events(response, t0: float) -> list[tuple[float, str]]:
    """(seconds since t0, data) of each SSE event of a response."""
    events = []
    async for line in response.content:
        if line.startswith(b"data: "):
            events.append((time.monotonic() - t0, line[6:].decode().strip()))
    return events


async def first_event_after(session, engine, path, body) -> float:
    """Seconds from sending a streaming request to its first event."""
    t0 = time.monotonic()
    async with session.post(engine.url + path, json=body) as response:
        assert response.status == 200
        async for line in response.content:
            if line.startswith(b"data: "):
                ttfb = time.monotonic() - t0
                break
        await response.read()
    return ttfb


def metrics(engine) -> dict[str, float]:
    with urllib.request.urlopen(engine.url + "/metrics", timeout=5) as response:
        return parse_prometheus_text(response.read().decode())


def wait_until(what: str, check, timeout: float = 5):
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if check():
            return
        time.sleep(0.01)
    raise AssertionError(f"timed out after {timeout}s waiting for {what}")


# --- pure parts --------------------------------------------------------------------------


def test_prefix_cache_hashes_chain_over_the_whole_prefix_and_evict_the_least_recent():
    cache = PrefixCache(block_tokens=2, capacity_blocks=3)
    a = cache.block_hashes(None, ["a", "b", "c", "d", "e"])  # 2 full blocks; "e" is never cached
    assert len(a) == 2
    assert cache.cached_tokens(a) == 0
    cache.insert(a)
    assert cache.cached_tokens(a) == 4
    # The same second block after another first block is another hash: no hit past the first miss.
    assert cache.cached_tokens(cache.block_hashes(None, ["x", "y", "c", "d"])) == 0
    # An adapter's blocks are not the base model's.
    assert cache.cached_tokens(cache.block_hashes("org/lora", ["a", "b", "c", "d"])) == 0
    cache.insert(cache.block_hashes(None, ["p", "q", "r", "s"]))  # 4 blocks in 3: a's first goes
    assert cache.cached_tokens(a) == 0


def test_batch_slots_hand_a_freed_slot_to_the_first_waiter():
    async def scenario():
        slots = BatchSlots(1)
        await slots.acquire()
        order = []

        async def wait(name):
            await slots.acquire()
            order.append(name)

        first, second = asyncio.create_task(wait("first")), asyncio.create_task(wait("second"))
        await asyncio.sleep(0)
        assert (slots.running, slots.waiting) == (1, 2)
        slots.release()
        await first
        assert order == ["first"] and slots.waiting == 1
        second.cancel()  # a waiter whose client went away leaves the queue
        with pytest.raises(asyncio.CancelledError):
            await second
        assert (slots.running, slots.waiting) == (1, 0)
        slots.release()
        assert (slots.running, slots.waiting) == (0, 0)

    run(scenario())


def test_a_waiter_cancelled_just_before_a_release_leaves_cleanly():
    async def scenario():
        slots = BatchSlots(1)
        await slots.acquire()
        waiter = asyncio.create_task(slots.acquire())
        await asyncio.sleep(0)
        waiter.cancel()
        slots.release()  # before the cancelled waiter runs again: it is skipped, the slot is freed
        with pytest.raises(asyncio.CancelledError):
            await waiter
        assert (slots.running, slots.waiting) == (0, 0)

    run(scenario())


def test_chat_tokens_are_role_markers_and_words():
    assert chat_tokens(
        [{"role": "system", "content": "be brief"}, {"role": "user", "content": [{"type": "text", "text": "hi there"}]}]
    ) == ["<|system|>", "be", "brief", "<|user|>", "hi", "there", "<|assistant|>"]


# --- the server --------------------------------------------------------------------------


@pytest.mark.parametrize("host", ["10.0.0.1", "0.0.0.0", "::1", "localhost", "192.168.1.5"])
def test_a_host_outside_loopback_is_refused(host):
    with pytest.raises(ValueError, match=r"only on 127\.0\.0\.0/8.*" + host.replace(".", r"\.")):
        FakeEngine(host, 0)


def test_tokens_stream_as_they_are_generated(engines):
    engine = engines("127.0.0.5", decode_tokens_per_s=20)  # 10 tokens: the last 450 ms after the first

    async def scenario():
        async with aiohttp.ClientSession(timeout=CLIENT_TIMEOUT) as session:
            t0 = time.monotonic()
            async with session.post(
                engine.url + "/generate_stream", json={"inputs": "a b c", "parameters": {"max_new_tokens": 10}}
            ) as response:
                assert response.status == 200
                assert response.headers["x-fake-engine"] == engine.address
                assert response.headers["Content-Type"].startswith("text/event-stream")
                return await read_events(response, t0)

    events = run(scenario())
    assert len(events) == 10
    (first_at, _), (last_at, _) = events[0], events[-1]
    assert first_at < 0.15, f"the first token came {first_at:.3f}s after the request"
    assert last_at - first_at > 0.35, f"the stream took {last_at - first_at:.3f}s, not ~0.45s"
    tokens = [json.loads(data) for _, data in events]
    assert [t["token"]["text"] for t in tokens] == ["tok0"] + [f" tok{i}" for i in range(1, 10)]
    assert [t["index"] for t in tokens] == list(range(10))
    assert all(t["generated_text"] is None for t in tokens[:-1])
    assert tokens[-1]["generated_text"] == " ".join(f"tok{i}" for i in range(10))
    assert tokens[-1]["model"] == engine.model_id
    assert (engine.started, engine.completed) == (1, 1)


def test_openai_streams_end_with_done_and_name_the_model(engines):
    engine = engines("127.0.0.6", decode_tokens_per_s=1000)

    async def scenario():
        async with aiohttp.ClientSession(timeout=CLIENT_TIMEOUT) as session:
            out = {}
            for path, body in (
                (
                    "/v1/chat/completions",
                    {"messages": [{"role": "user", "content": "hi"}], "stream_options": {"include_usage": True}},
                ),
                ("/v1/completions", {"prompt": "once upon"}),
            ):
                async with session.post(engine.url + path, json={**body, "stream": True, "max_tokens": 3}) as response:
                    assert response.headers["x-fake-engine"] == engine.address
                    out[path] = [data for _, data in await read_events(response, 0)]
            return out

    out = run(scenario())
    chat = out["/v1/chat/completions"]
    assert chat[-1] == "[DONE]"
    chunks = [json.loads(c) for c in chat[:-1]]
    assert [c["object"] for c in chunks] == ["chat.completion.chunk"] * 4
    assert {c["model"] for c in chunks} == {engine.model_id}
    assert "".join(c["choices"][0]["delta"]["content"] for c in chunks[:3]) == "tok0 tok1 tok2"
    assert chunks[0]["choices"][0]["delta"]["role"] == "assistant"
    assert [c["choices"][0]["finish_reason"] for c in chunks[:3]] == [None, None, "length"]
    assert chunks[3]["choices"] == [] and chunks[3]["usage"] == {
        "prompt_tokens": 3,
        "completion_tokens": 3,
        "total_tokens": 6,
    }
    text = out["/v1/completions"]
    assert text[-1] == "[DONE]"
    assert "".join(json.loads(c)["choices"][0]["text"] for c in text[:-1]) == "tok0 tok1 tok2"


def test_whole_answers_have_each_apis_shape(engines):
    engine = engines("127.0.0.7", decode_tokens_per_s=1000)

    async def scenario():
        async with aiohttp.ClientSession(timeout=CLIENT_TIMEOUT) as session:
            return [
                await post(session, engine, "/generate", {"inputs": "a b", "parameters": {"max_new_tokens": 2}}),
                await post(
                    session,
                    engine,
                    "/v1/chat/completions",
                    {"model": "tgi", "messages": [{"role": "user", "content": "a b"}], "max_tokens": 4},
                ),
                await post(session, engine, "/v1/completions", {"prompt": "a b c"}),
            ]

    (s1, h1, generate), (s2, h2, chat), (s3, _, completion) = run(scenario())
    assert (s1, s2, s3) == (200, 200, 200)
    assert h1["x-fake-engine"] == h2["x-fake-engine"] == engine.address
    assert generate == {"generated_text": "tok0 tok1", "model": engine.model_id}
    assert chat["object"] == "chat.completion" and chat["model"] == engine.model_id
    assert chat["choices"][0]["message"] == {"role": "assistant", "content": "tok0 tok1 tok2 tok3"}
    assert chat["usage"] == {"prompt_tokens": 4, "completion_tokens": 4, "total_tokens": 8}
    assert completion["object"] == "text_completion"
    assert completion["choices"][0]["text"] == " ".join(f"tok{i}" for i in range(16))  # the default length
    assert completion["usage"]["prompt_tokens"] == 3


def test_an_adapter_is_served_by_its_id_and_an_unknown_one_is_refused(engines):
    engine = engines("127.0.0.8", adapters=("org/sql-lora",), decode_tokens_per_s=1000)

    async def scenario():
        async with aiohttp.ClientSession(timeout=CLIENT_TIMEOUT) as session:
            return [
                await post(
                    session,
                    engine,
                    "/v1/chat/completions",
                    {"model": "org/sql-lora", "messages": [{"role": "user", "content": "x"}], "max_tokens": 1},
                ),
                await post(
                    session,
                    engine,
                    "/generate",
                    {"inputs": "x", "parameters": {"max_new_tokens": 1, "adapter_id": "org/sql-lora"}},
                ),
                await post(session, engine, "/v1/completions", {"model": "org/other", "prompt": "x"}),
                await post(session, engine, "/generate", {"inputs": "x", "parameters": {"adapter_id": "org/other"}}),
            ]

    (s1, h1, chat), (s2, _, generate), (s3, h3, unknown), (s4, _, unknown_tgi) = run(scenario())
    assert (s1, chat["model"], h1["x-fake-model"]) == (200, "org/sql-lora", "org/sql-lora")
    assert (s2, generate["model"]) == (200, "org/sql-lora")
    assert (s3, s4) == (422, 422)
    assert h3["x-fake-engine"] == engine.address
    assert unknown["error_type"] == "validation" and "org/other" in unknown["error"]
    assert unknown_tgi["error_type"] == "validation"
    assert engine.request_log == [
        ("org/sql-lora", "/v1/chat/completions"),
        ("org/sql-lora", "/generate"),
        ("org/other", "/v1/completions"),
        ("org/other", "/generate"),
    ]
    assert (engine.started, engine.rejected) == (2, 2)


def test_as_vllm_the_served_names_mean_the_base_model_and_an_unknown_one_is_not_found(engines):
    engine = engines(
        "127.0.0.9",
        flavor="vllm",
        served_names=("llama", "meta-llama/Llama-3.1-8B"),
        model_id="meta-llama/Llama-3.1-8B",
        decode_tokens_per_s=1000,
    )

    async def scenario():
        async with aiohttp.ClientSession(timeout=CLIENT_TIMEOUT) as session:
            return [
                await post(session, engine, "/v1/completions", {"model": "llama", "prompt": "x", "max_tokens": 1}),
                await post(session, engine, "/v1/completions", {"model": "tgi", "prompt": "x", "max_tokens": 1}),
            ]

    (s1, _, served), (s2, _, unknown) = run(scenario())
    assert (s1, served["model"]) == (200, "meta-llama/Llama-3.1-8B")
    assert s2 == 404
    assert unknown == {
        "error": {"message": "The model `tgi` does not exist.", "type": "NotFoundError", "param": None, "code": 404}
    }


def test_requests_past_the_batch_wait_in_a_queue_the_metrics_show(engines):
    engine = engines("127.0.0.10", max_batch=2, decode_tokens_per_s=10)  # 4 tokens: 300 ms in a slot

    async def scenario():
        async with aiohttp.ClientSession(timeout=CLIENT_TIMEOUT) as session:

            async def one(i):
                t0 = time.monotonic()
                status, _, body = await post(
                    session, engine, "/generate", {"inputs": f"request {i}", "parameters": {"max_new_tokens": 4}}
                )
                return status, time.monotonic() - t0

            tasks = [asyncio.create_task(one(i)) for i in range(5)]
            await asyncio.to_thread(wait_until, "5 requests admitted", lambda: engine.started == 5)
            seen = await asyncio.to_thread(metrics, engine)
            return seen, await asyncio.gather(*tasks)

    seen, results = run(scenario())
    assert seen["tgi_batch_current_size"] == 2
    assert seen["tgi_queue_size"] == 3
    assert engine.queued_peak == 3
    assert [status for status, _ in results] == [200] * 5
    took = sorted(t for _, t in results)
    # Two at a time: the 5th starts once two rounds have finished (3 rounds x 300 ms).
    assert took[1] < 0.5 and took[4] > 0.8, took
    after = metrics(engine)
    assert (after["tgi_queue_size"], after["tgi_batch_current_size"]) == (0, 0)
    assert after["tgi_request_count"] == 5 and after["tgi_request_success"] == 5


def test_a_cached_prefix_skips_its_prefill(engines):
    # 2,000 prompt tokens at 10,000 tok/s: 200 ms of prefill, unless its 125 blocks are cached.
    engine = engines("127.0.0.11", prefill_tokens_per_s=10_000, decode_tokens_per_s=1000, block_tokens=16)
    prefix = " ".join(f"w{i}" for i in range(2000))

    async def scenario():
        async with aiohttp.ClientSession(timeout=CLIENT_TIMEOUT) as session:
            times = []
            for tail in ("first question", "second question"):
                times.append(
                    await first_event_after(
                        session,
                        engine,
                        "/v1/completions",
                        {"prompt": f"{prefix} {tail}", "max_tokens": 2, "stream": True},
                    )
                )
            return times

    cold, warm = run(scenario())
    assert cold > 0.18, f"the first request's prefill took {cold:.3f}s, not ~0.2s"
    assert warm < 0.08, f"the second request, its prefix cached, took {warm:.3f}s to its first token"
    assert (engine.prefix_queries, engine.prefix_hits) == (4004, 2000)
    seen = metrics(engine)
    assert seen["fake_engine_prefix_cache_hits_tokens"] == 2000
    assert seen["fake_engine_prefix_cache_queries_tokens"] == 4004


def test_vllm_metric_names_carry_the_model_name(engines):
    engine = engines("127.0.0.12", metrics_flavor="vllm", decode_tokens_per_s=1000, block_tokens=2)

    async def scenario():
        async with aiohttp.ClientSession(timeout=CLIENT_TIMEOUT) as session:
            for _ in range(2):
                await post(session, engine, "/generate", {"inputs": "a b c d e", "parameters": {"max_new_tokens": 1}})
            async with session.get(engine.url + "/metrics") as response:
                return await response.text()

    text = run(scenario())
    for name in (
        "vllm:num_requests_waiting",
        "vllm:num_requests_running",
        "vllm:prefix_cache_queries_total",
        "vllm:prefix_cache_hits_total",
    ):
        assert f'{name}{{engine="0",model_name="tgi"}} ' in text, name
    assert "tgi_queue_size" not in text
    seen = parse_prometheus_text(text)
    assert seen["vllm:prefix_cache_queries_total"] == 10 and seen["vllm:prefix_cache_hits_total"] == 4
    assert seen["vllm:num_requests_waiting"] == 0


def test_fail_next_answers_the_status_before_any_byte(engines):
    engine = engines("127.0.0.13", decode_tokens_per_s=1000)
    engine.fail_next(2, status=503)

    async def scenario():
        async with aiohttp.ClientSession(timeout=CLIENT_TIMEOUT) as session:
            body = {"messages": [{"role": "user", "content": "x"}], "max_tokens": 1, "stream": True}
            out = []
            for _ in range(3):
                async with session.post(engine.url + "/v1/chat/completions", json=body) as response:
                    out.append((response.status, response.headers["x-fake-engine"], await response.text()))
            return out

    (s1, h1, b1), (s2, _, _), (s3, _, b3) = run(scenario())
    assert (s1, s2, s3) == (503, 503, 200)
    assert h1 == engine.address and json.loads(b1)["error_type"] == "fake_fault"
    assert b3.endswith("data: [DONE]\n\n")
    assert (engine.failed, engine.started, engine.completed) == (2, 1, 1)
    assert len(engine.request_log) == 3


def test_a_client_that_goes_away_cancels_its_generation(engines):
    engine = engines("127.0.0.14", max_batch=1, decode_tokens_per_s=10)  # 100 tokens: 10 s

    async def scenario():
        async with aiohttp.ClientSession(timeout=CLIENT_TIMEOUT) as session:
            body = {"inputs": "x", "parameters": {"max_new_tokens": 100}}
            response = await session.post(engine.url + "/generate_stream", json=body)
            await response.content.readline()  # the first token
            queued = asyncio.create_task(session.post(engine.url + "/generate", json=body))
            await asyncio.to_thread(wait_until, "the second request queued", lambda: engine.queued == 1)
            response.close()  # drops the connection mid-stream
            queued.cancel()
            await asyncio.gather(queued, return_exceptions=True)
            await asyncio.to_thread(wait_until, "both requests cancelled", lambda: engine.cancelled == 2)
            # The slot is free again: a new request starts at once.
            t0 = time.monotonic()
            status, _, _ = await post(
                session, engine, "/generate", {"inputs": "y", "parameters": {"max_new_tokens": 1}}
            )
            return status, time.monotonic() - t0

    status, took = run(scenario())
    assert status == 200 and took < 0.5
    assert (engine.started, engine.completed, engine.cancelled) == (3, 1, 2)
    assert (engine.running, engine.queued) == (0, 0)


def test_health_info_models_and_a_killed_endpoint(engines):
    engine = engines("127.0.0.15", adapters=("org/a",), max_input_tokens=100, decode_tokens_per_s=5)

    async def scenario():
        async with aiohttp.ClientSession(timeout=CLIENT_TIMEOUT) as session:
            async with session.get(engine.url + "/health") as response:
                healthy = response.status
            engine.set_healthy(False)
            async with session.get(engine.url + "/health") as response:
                unhealthy = response.status, response.headers["x-fake-engine"]
            async with session.get(engine.url + "/info") as response:
                info = await response.json()
            async with session.get(engine.url + "/v1/models") as response:
                models = [m["id"] for m in (await response.json())["data"]]
            too_long = await post(session, engine, "/generate", {"inputs": "w " * 101})
            stream = await session.post(engine.url + "/generate_stream", json={"inputs": "x"})
            await stream.content.readline()
            await asyncio.to_thread(engine.stop)  # a killed endpoint: the open stream is cut
            with pytest.raises(aiohttp.ClientError):
                await stream.read()
            with pytest.raises(aiohttp.ClientConnectionError):
                await session.get(engine.url + "/health")
            return healthy, unhealthy, info, models, too_long

    healthy, unhealthy, info, models, (status, _, too_long) = run(scenario())
    assert healthy == 200 and unhealthy == (503, engine.address)
    assert info["model_id"] == engine.model_id and info["max_input_tokens"] == 100
    assert {"model_dtype", "max_concurrent_requests", "max_total_tokens", "version"} <= info.keys()
    assert models == ["tgi", "org/a"]
    assert status == 422 and "less than 100 tokens" in too_long["error"]
    assert engine.cancelled == 1


def test_a_stopped_engine_comes_back_on_its_port(engines):
    engine = engines("127.0.0.17", decode_tokens_per_s=1000)
    port = engine.port
    engine.stop()
    with pytest.raises(urllib.error.URLError, match="Connection refused"):
        metrics(engine)
    engine.start_in_thread()
    assert engine.port == port
    assert metrics(engine)["tgi_queue_size"] == 0


def test_the_cli_listens_until_sigterm():
    process = subprocess.Popen(
        [
            sys.executable,
            str(TESTS / "support" / "fakeengine.py"),
            "--host",
            "127.0.0.16",
            "--port",
            "0",
            "--adapter",
            "org/a",
            "--metrics-flavor",
            "vllm",
        ],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        env=os.environ,
    )
    try:
        line = process.stdout.readline()
        assert line.startswith("listening on http://127.0.0.16:"), line + process.stderr.read()
        with urllib.request.urlopen(line.split()[-1] + "/metrics", timeout=5) as response:
            assert "vllm:num_requests_waiting" in response.read().decode()
        process.send_signal(signal.SIGTERM)
        assert process.wait(timeout=10) == 0
    finally:
        if process.poll() is None:
            process.kill()
            process.wait(timeout=5)


def test_the_cli_refuses_a_host_outside_loopback():
    done = subprocess.run(
        [sys.executable, str(TESTS / "support" / "fakeengine.py"), "--host", "10.1.2.3"],
        capture_output=True,
        text=True,
        timeout=20,
    )
    assert done.returncode == 2 and "127.0.0.0/8" in done.stderr and "10.1.2.3" in done.stderr

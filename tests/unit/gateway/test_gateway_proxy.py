"""The gateway's HTTP behaviour over real sockets on 127.0.0.1, with small upstream servers
written here (each test shows exactly what the engine does): routing and the body's model,
errors in OpenAI's shape, streaming as it comes, retries only before the first byte,
holding, limits and keys."""

import asyncio
import json
import time

import aiohttp
from aiohttp import web

from llm_operator.gateway.endpoints import Endpoint, Model
from llm_operator.gateway.feed import install_static
from llm_operator.gateway.proxy import Settings, mid_stream_error
from llm_operator.gateway.server import Gateway


async def upstream(handler):
    """An engine stand-in on 127.0.0.1: (runner, port)."""
    app = web.Application()
    app.router.add_route("*", "/{tail:.*}", handler)
    runner = web.AppRunner(app, handler_cancellation=True)
    await runner.setup()
    site = web.TCPSite(runner, "127.0.0.1", 0)
    await site.start()
    return runner, site._server.sockets[0].getsockname()[1]


async def gateway(settings=None, table=()):
    gw = Gateway(settings or Settings())
    install_static(gw.store, list(table))
    await gw.start([])
    runner = web.AppRunner(gw.app(), handler_cancellation=True)
    await runner.setup()
    site = web.TCPSite(runner, "127.0.0.1", 0)
    await site.start()
    return gw, runner, f"http://127.0.0.1:{site._server.sockets[0].getsockname()[1]}"


def model(name, engine="tgi", replicas=1, adapters=(), **kw):
    return Model(
        namespace="models", name=name, engine=engine, replicas=replicas, ready=True, adapters=tuple(adapters), **kw
    )


def ep(port, pod="p"):
    return Endpoint("127.0.0.1", port, pod)


async def echo(request):
    body = await request.json() if request.can_read_body else {}
    return web.json_response(
        {
            "path": request.path,
            "model": body.get("model"),
            "port": request.url.port,
            "auth": request.headers.get("Authorization"),
        }
    )


def run(coro):
    return asyncio.run(asyncio.wait_for(coro, 60))


def test_routes_by_model_rewrites_the_model_for_the_engine_and_lists_models():
    async def scenario():
        (u1, p1), (u2, p2) = await upstream(echo), await upstream(echo)
        gw, runner, url = await gateway(
            table=[
                (model("llama"), [ep(p1)]),
                (model("qwen", engine="vllm", adapters=[("sql", "org/sql-lora")]), [ep(p2)]),
            ]
        )
        async with aiohttp.ClientSession() as s:

            async def ask(name, path="/v1/chat/completions"):
                async with s.post(
                    url + path, json={"model": name, "messages": []}, headers={"Authorization": "Bearer client-key"}
                ) as r:
                    return r.status, await r.json()

            assert await ask("llama") == (
                200,
                {"path": "/v1/chat/completions", "model": "tgi", "port": p1, "auth": None},
            )
            assert (await ask("qwen", "/v1/completions"))[1]["model"] == "qwen"
            assert (await ask("sql"))[1] == {
                "path": "/v1/chat/completions",
                "model": "org/sql-lora",
                "port": p2,
                "auth": None,
            }
            status, body = await ask("gpt-4")
            assert status == 404
            assert body["error"]["code"] == "model_not_found"
            assert body["error"]["message"] == "The model 'gpt-4' does not exist. Available: llama, qwen, sql."
            async with s.get(url + "/v1/models") as r:
                ids = [(m["id"], m["parent"]) for m in (await r.json())["data"]]
            assert ids == [("llama", None), ("qwen", None), ("sql", "qwen")]
            async with s.post(url + "/models/llama/generate?x=1", json={"inputs": "hi"}) as r:
                assert (await r.json())["path"] == "/generate"
            async with s.post(url + "/v1/chat/completions", data=b"{not json") as r:
                assert r.status == 400 and (await r.json())["error"]["code"] == "invalid_json"
            async with s.get(url + "/metrics") as r:
                text = await r.text()
            assert 'llm_gateway_requests_total{code="200",model="models/llama"} 2.0' in text
            assert 'llm_gateway_requests_total{code="200",model="models/qwen"} 2.0' in text
            # In flight carries the model's namespace and name apart, for an HPA's External metric selector.
            assert (
                'llm_gateway_requests_in_flight{model="models/llama",model_name="llama",model_namespace="models"} 0.0'
                in text
            ), text
        await runner.cleanup()
        await gw.close()
        await u1.cleanup()
        await u2.cleanup()

    run(scenario())


def test_a_stream_reaches_the_client_chunk_by_chunk():
    release = asyncio.Event()

    async def sse(request):
        resp = web.StreamResponse(headers={"Content-Type": "text/event-stream"})
        await resp.prepare(request)
        await resp.write(b'data: {"token": 1}\n\n')
        await asyncio.wait_for(release.wait(), 10)  # the last token only after the client saw the first
        await resp.write(b"data: [DONE]\n\n")
        return resp

    async def scenario():
        u, port = await upstream(sse)
        gw, runner, url = await gateway(table=[(model("m"), [ep(port)])])
        async with aiohttp.ClientSession() as s:
            async with s.post(url + "/v1/chat/completions", json={"model": "m", "stream": True}) as r:
                assert r.headers["Content-Type"].startswith("text/event-stream")
                first = await r.content.readuntil(b"\n\n")
                assert first == b'data: {"token": 1}\n\n'
                release.set()
                assert await r.content.read() == b"data: [DONE]\n\n"
        await runner.cleanup()
        await gw.close()
        await u.cleanup()

    run(scenario())


def test_a_client_that_goes_away_cancels_the_upstream_request():
    cancelled = asyncio.Event()

    async def slow(request):
        resp = web.StreamResponse(headers={"Content-Type": "text/event-stream"})
        await resp.prepare(request)
        try:
            for _ in range(600):
                await resp.write(b"data: x\n\n")
                await asyncio.sleep(0.05)
        except (asyncio.CancelledError, ConnectionResetError):
            cancelled.set()
            raise
        return resp

    async def scenario():
        u, port = await upstream(slow)
        gw, runner, url = await gateway(table=[(model("m"), [ep(port)])])
        async with aiohttp.ClientSession() as s:
            async with s.post(url + "/v1/chat/completions", json={"model": "m", "stream": True}) as r:
                await r.content.readuntil(b"\n\n")
        # the client's connection is closed on leaving the session
        await asyncio.wait_for(cancelled.wait(), 10)
        assert gw.store.outstanding == {}
        await runner.cleanup()
        await gw.close()
        await u.cleanup()

    run(scenario())


def test_retries_go_to_another_endpoint_before_any_byte_and_never_after():
    calls = []

    async def busy(request):
        calls.append("busy")
        return web.json_response({"error": "overloaded"}, status=503)

    async def dies_mid_stream(request):
        calls.append("dies")
        resp = web.StreamResponse(headers={"Content-Type": "text/event-stream"})
        await resp.prepare(request)
        await resp.write(b"data: 1\n\n")
        request.transport.close()
        return resp

    async def scenario():
        (ub, pb), (ue, pe), (ud, pd) = await upstream(busy), await upstream(echo), await upstream(dies_mid_stream)
        closed = pe + 1000 if pe < 60000 else pe - 1000  # nothing listens there
        gw, runner, url = await gateway(
            table=[
                (model("m"), [ep(closed, "a-refuses"), ep(pb, "b-busy"), ep(pe, "c-fine")]),
                (model("s"), [ep(pd, "d")]),
            ]
        )
        connect_error = 'llm_gateway_upstream_errors_total{cause="connect",model="models/m"}'
        async with aiohttp.ClientSession() as s:
            # Ties go at random: each request tries the refusing endpoint first with odds 1/2, so
            # requests go on (at most 40: 2**-40 odds of never) until one has met it; every one
            # of them is answered by the endpoint that works.
            for _ in range(40):
                async with s.post(url + "/v1/chat/completions", json={"model": "m"}) as r:
                    assert r.status == 200 and (await r.json())["port"] == pe
                async with s.get(url + "/metrics") as r:
                    if connect_error in await r.text():
                        break
            async with s.post(url + "/v1/chat/completions", json={"model": "s", "stream": True}) as r:
                assert r.status == 200
                body = await r.content.read()
            # What reached the client, then an error event in OpenAI's shape, and no [DONE].
            first, error = body.split(b"\n\n")[:2]
            assert first == b"data: 1" and b"[DONE]" not in body
            assert json.loads(error.removeprefix(b"data: "))["error"]["code"] == "endpoint_failed_mid_stream"
            async with s.get(url + "/metrics") as r:
                text = await r.text()
        assert calls.count("dies") == 1  # a started stream is not retried
        assert connect_error in text
        assert 'llm_gateway_upstream_errors_total{cause="disconnected_streaming",model="models/s"} 1.0' in text
        assert time.monotonic() < gw.store.ejected[f"127.0.0.1:{closed}"]  # the refusing one is skipped a while
        await runner.cleanup()
        await gw.close()
        for u in (ub, ue, ud):
            await u.cleanup()

    run(scenario())


def test_requests_are_held_until_an_endpoint_is_ready_then_answered():
    async def scenario():
        u, port = await upstream(echo)
        gw, runner, url = await gateway(Settings(hold_timeout_s=20), table=[(model("m"), [])])
        async with aiohttp.ClientSession() as s:
            tasks = [
                asyncio.create_task(s.post(url + "/v1/completions", json={"model": "m", "prompt": "x"}))
                for _ in range(20)
            ]
            deadline = time.monotonic() + 10
            while gw.proxy.held.get(("models", "m"), 0) < 20 and time.monotonic() < deadline:
                await asyncio.sleep(0.02)
            assert gw.proxy.held[("models", "m")] == 20
            assert not any(t.done() for t in tasks)
            gw.store.set_endpoints(("models", "m"), [ep(port)])
            responses = await asyncio.gather(*tasks)
            assert [r.status for r in responses] == [200] * 20
            for r in responses:
                r.release()
        assert gw.proxy.held[("models", "m")] == 0
        await runner.cleanup()
        await gw.close()
        await u.cleanup()

    run(scenario())


def test_holding_ends_in_503_with_retry_after_and_a_cap_answers_429():
    async def scenario():
        gw, runner, url = await gateway(
            Settings(hold_timeout_s=0.5, max_held_per_model=2),
            table=[
                (model("m"), []),
                (model("off", replicas=0), []),
                (model("bad", stalled="It needs 4 GPUs; nodes have at most 1."), []),
            ],
        )
        async with aiohttp.ClientSession() as s:

            async def ask(name):
                async with s.post(url + "/v1/completions", json={"model": name}) as r:
                    return r.status, r.headers.get("Retry-After"), (await r.json())["error"]

            started = time.monotonic()
            results = await asyncio.gather(*(ask("m") for _ in range(3)))
            assert time.monotonic() - started < 5
            assert sorted(r[0] for r in results) == [429, 503, 503]
            timeout = next(r for r in results if r[0] == 503)
            assert timeout[1] == "30" and timeout[2]["code"] == "model_loading"
            assert "still loading" in timeout[2]["message"]
            status, _, error = await ask("off")  # at zero without minReplicas 0: answered at once
            assert status == 503 and "minReplicas: 0" in error["message"]
            status, _, error = await ask("bad")
            assert status == 503 and error["message"].endswith("It needs 4 GPUs; nodes have at most 1.")
        await runner.cleanup()
        await gw.close()

    run(scenario())


def test_limits_body_size_and_api_keys(tmp_path):
    keys = tmp_path / "keys"
    keys.write_text("# keys\nsecret-1\n")

    async def scenario():
        u, port = await upstream(echo)
        gw, runner, url = await gateway(
            Settings(max_body_bytes=1000, api_keys_file=str(keys)), table=[(model("m"), [ep(port)])]
        )
        async with aiohttp.ClientSession() as s:
            async with s.post(url + "/v1/completions", json={"model": "m"}) as r:
                assert r.status == 401 and (await r.json())["error"]["type"] == "authentication_error"
            auth = {"Authorization": "Bearer secret-1"}
            async with s.post(url + "/v1/completions", json={"model": "m"}, headers=auth) as r:
                assert r.status == 200 and (await r.json())["auth"] is None  # the key stays at the gateway
            async with s.post(url + "/v1/completions", json={"model": "m", "prompt": "x" * 2000}, headers=auth) as r:
                assert r.status == 413 and "limit is 1000" in (await r.json())["error"]["message"]
            async with s.get(url + "/healthz") as r:
                assert r.status == 200  # probes need no key
        await runner.cleanup()
        await gw.close()
        await u.cleanup()

    run(scenario())


def test_the_mid_stream_error_event_stands_alone_after_a_cut_event():
    whole = mid_stream_error("ns/m", b"\n\n")
    assert whole.startswith(b"data: {") and whole.endswith(b"\n\n")
    assert json.loads(whole[len(b"data: ") :])["error"]["type"] == "upstream_error"
    # The engine stopped inside an event: the cut one ends first, so the error is an event of its own.
    assert mid_stream_error("ns/m", b'"x') == b"\n\n" + whole


def test_the_native_pass_through_names_a_model_not_an_adapter():
    async def scenario():
        u, port = await upstream(echo)
        gw, runner, url = await gateway(table=[(model("qwen", adapters=[("sql", "org/sql-lora")]), [ep(port)])])
        async with aiohttp.ClientSession() as s:
            async with s.get(url + "/models/qwen/health") as r:
                assert r.status == 200 and (await r.json())["path"] == "/health"
            async with s.get(url + "/models/sql/health") as r:
                error = (await r.json())["error"]
                assert r.status == 404 and error["message"] == "'sql' is an adapter; its base model's name is 'qwen'."
            async with s.get(url + "/models/gpt-4/health") as r:
                error = (await r.json())["error"]
                assert r.status == 404 and error["code"] == "model_not_found"
                assert error["message"] == "The model 'gpt-4' does not exist. Available: qwen, sql."
        await runner.cleanup()
        await gw.close()
        await u.cleanup()

    run(scenario())

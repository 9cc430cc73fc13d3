"""spec.routing through the gateway over real sockets on 127.0.0.1: prefix routing keeps a
prefix on one replica, spreads different prefixes, spills when the home is over the load
bound, and model_of reads spec.routing."""

import asyncio

import aiohttp
from aiohttp import web

from llm_operator.gateway.endpoints import Endpoint, Model, model_of
from llm_operator.gateway.feed import install_static
from llm_operator.gateway.prefix import Ring, prefix_key
from llm_operator.gateway.proxy import Settings
from llm_operator.gateway.server import Gateway


async def engine(gate: asyncio.Event | None = None):
    """Answers with its port; with a gate, holds each answer until the gate opens."""

    async def handler(request):
        await request.read()
        if gate is not None:
            await gate.wait()
        return web.json_response({"port": request.url.port})

    app = web.Application()
    app.router.add_post("/v1/chat/completions", handler)
    runner = web.AppRunner(app)
    await runner.setup()
    site = web.TCPSite(runner, "127.0.0.1", 0)
    await site.start()
    return runner, site._server.sockets[0].getsockname()[1]


async def start_gateway(models):
    gw = Gateway(Settings())
    install_static(gw.store, models)
    await gw.start([])
    runner = web.AppRunner(gw.app())
    await runner.setup()
    site = web.TCPSite(runner, "127.0.0.1", 0)
    await site.start()
    return gw, runner, f"http://127.0.0.1:{site._server.sockets[0].getsockname()[1]}"


def chat(system, user="hi", model="m"):
    return {"model": model, "messages": [{"role": "system", "content": system}, {"role": "user", "content": user}]}


def run(coro):
    return asyncio.run(asyncio.wait_for(coro, 60))


def test_model_of_reads_spec_routing_with_defaults():
    m = model_of(
        {
            "metadata": {"name": "a", "namespace": "n"},
            "spec": {"routing": {"strategy": "prefix", "prefixChars": 300, "loadFactorPercent": 150}},
        }
    )
    assert (m.routing, m.prefix_chars, m.load_factor) == ("prefix", 300, 1.5)
    d = model_of({"metadata": {"name": "a", "namespace": "n"}, "spec": {}})
    assert (d.routing, d.prefix_chars, d.load_factor) == ("leastLoad", 4096, 1.25)


def test_one_prefix_stays_on_its_replica_and_prefixes_spread():
    async def scenario():
        engines = [await engine() for _ in range(4)]
        ports = [p for _, p in engines]
        m = Model(namespace="n", name="m", ready=True, replicas=4, routing="prefix", prefix_chars=40)
        gw, runner, url = await start_gateway([(m, [Endpoint("127.0.0.1", p, f"pod{i}") for i, p in enumerate(ports)])])
        ring = Ring(f"127.0.0.1:{p}" for p in ports)
        async with aiohttp.ClientSession() as s:

            async def ask(body):
                async with s.post(url + "/v1/chat/completions", json=body) as r:
                    assert r.status == 200
                    return (await r.json())["port"]

            # One system prompt, many users' questions (past prefixChars): one replica, its home.
            system = "You answer questions about the fleet's GPUs. " * 3
            landed = {await ask(chat(system, f"question {i}")) for i in range(20)}
            home = ring.home(prefix_key(chat(system), None, 40))
            assert landed == {int(home.rpartition(":")[2])}
            # Twenty different prefixes reach more than one replica, each one always the same.
            seen = {}
            for i in range(20):
                for _ in range(2):
                    seen.setdefault(i, set()).add(await ask(chat(f"system prompt number {i} " * 4)))
            assert all(len(v) == 1 for v in seen.values())
            assert len({p for v in seen.values() for p in v}) > 1
        async with aiohttp.ClientSession() as s:
            async with s.get(url + "/metrics") as r:
                text = await r.text()
        assert 'llm_gateway_prefix_routed_total{model="n/m",outcome="home"} 60.0' in text
        await runner.cleanup()
        await gw.close()
        for r, _ in engines:
            await r.cleanup()

    run(scenario())


def test_a_busy_home_spills_to_the_next_replica_on_the_ring():
    async def scenario():
        gate = asyncio.Event()
        engines = [await engine(gate) for _ in range(2)]
        ports = [p for _, p in engines]
        m = Model(namespace="n", name="m", ready=True, replicas=2, routing="prefix", load_factor=1.0)
        gw, runner, url = await start_gateway([(m, [Endpoint("127.0.0.1", p, f"pod{i}") for i, p in enumerate(ports)])])
        async with aiohttp.ClientSession() as s:

            async def ask():
                async with s.post(url + "/v1/chat/completions", json=chat("same prefix")) as r:
                    return (await r.json())["port"]

            # Four requests for one prefix at once, load factor 1.0 over 2 replicas: the bound
            # is ceil((L + 1) / 2), so they alternate home, home, other, ...: two on each.
            tasks = [asyncio.create_task(ask()) for _ in range(4)]
            for _ in range(200):
                if sum(gw.store.outstanding.values()) == 4:
                    break
                await asyncio.sleep(0.01)
            assert sorted(gw.store.outstanding.values()) == [2, 2]
            gate.set()
            ports_answered = await asyncio.gather(*tasks)
            assert sorted(ports_answered.count(p) for p in ports) == [2, 2]
            async with s.get(url + "/metrics") as r:
                text = await r.text()
        assert 'outcome="spilled"} 2.0' in text and 'outcome="home"} 2.0' in text
        await runner.cleanup()
        await gw.close()
        for r, _ in engines:
            await r.cleanup()

    run(scenario())


def test_least_load_is_still_the_default():
    async def scenario():
        engines = [await engine() for _ in range(2)]
        m = Model(namespace="n", name="m", ready=True, replicas=2)
        gw, runner, url = await start_gateway(
            [(m, [Endpoint("127.0.0.1", p, f"pod{i}") for i, (_, p) in enumerate(engines)])]
        )
        async with aiohttp.ClientSession() as s:
            for _ in range(5):
                async with s.post(url + "/v1/chat/completions", json=chat("same prefix")) as r:
                    assert r.status == 200
            async with s.get(url + "/metrics") as r:
                assert "llm_gateway_prefix_routed_total{" not in await r.text()
        await runner.cleanup()
        await gw.close()
        for r, _ in engines:
            await r.cleanup()

    run(scenario())

"""The gateway on the local plane: `llm-operator gateway` as the chart's ServiceAccount, in
front of LLMDeployments whose kwok pods have loopback IPs where fake engines listen.
Requests go client -> gateway (127.0.0.1) -> a ready pod's address from the pod watch."""

from __future__ import annotations

import asyncio
import json
import time
import urllib.request

import aiohttp
import pytest

from support.cluster import condition, wait_for
from support.enginefarm import GATED, EngineFarm, wait_ready_engines
from support.gatewayprocess import HOLD_TIMEOUT_S
from support.loopback import require_loopback
from support.manifests import llmd

pytestmark = pytest.mark.usefixtures("operator")


@pytest.fixture
def farm(cluster, namespace):
    farms = []

    def make(options=None):
        f = EngineFarm(cluster.kubeconfig, namespace, options).__enter__()
        farms.append(f)
        return f

    yield make
    for f in farms:
        f.close()
        assert not f.errors, f"the engine farm failed: {f.errors[:3]}"


def served(name, **spec):
    spec.setdefault("gpus", 1)
    spec.setdefault("podAnnotations", GATED)
    return json.dumps(llmd(name, **spec))


def listed(gateway) -> list[str]:
    with urllib.request.urlopen(gateway.url + "/v1/models", timeout=5) as resp:
        return [m["id"] for m in json.loads(resp.read())["data"]]


async def post(session, url, body, **kw):
    async with session.post(url, json=body, **kw) as r:
        return r.status, dict(r.headers), await r.read()


def test_routes_by_model_name_and_adapter_across_three_models(kubectl, gateway, farm):
    support = {"name": "support", "id": "test/support-lora"}
    engines = farm({"mistral": {"adapters": ("support", "test/support-lora")}})
    kubectl.apply(served("mistral", model={"id": "test/mistral-7b"}, adapters=[support]))
    kubectl.apply(served("qwen", model={"id": "test/qwen2.5-7b"}))
    kubectl.apply(served("mistral-b", model={"id": "test/mistral-7b"}))
    for name in ("mistral", "qwen", "mistral-b"):
        kubectl.run("wait", "--for=condition=Ready", f"llmd/{name}", "--timeout=90s")
    wait_for(
        "the gateway to list the three models and the adapter",
        lambda: {"mistral", "qwen", "mistral-b", "support"} <= set(listed(gateway)),
        20,
    )
    served_as = next(a["servedAs"] for a in kubectl.get("llmd", "mistral")["status"]["adapters"])
    address = {name: wait_ready_engines(engines, name, 1)[0].address for name in ("mistral", "qwen", "mistral-b")}
    for a in address.values():
        require_loopback(a.split(":")[0])

    async def scenario():
        async with aiohttp.ClientSession() as s:
            url = gateway.url + "/v1/chat/completions"
            out = {}
            for name in ("mistral", "qwen", "mistral-b", "support"):
                status, headers, body = await post(
                    s, url, {"model": name, "messages": [{"role": "user", "content": "hi"}]}
                )
                answer = json.loads(body)
                assert status == 200, (name, status, answer)
                out[name] = (status, headers.get("x-fake-engine"), answer.get("model"))
            status, _, body = await post(s, url, {"model": "gpt-4", "messages": []})
            out["gpt-4"] = (status, json.loads(body))
            return out

    out = asyncio.run(scenario())
    assert out["mistral"][:2] == (200, address["mistral"])
    assert out["qwen"][:2] == (200, address["qwen"])
    assert out["mistral-b"][:2] == (200, address["mistral-b"])
    # The adapter's name reached its base model's pod as the id the engine serves it under.
    assert out["support"] == (200, address["mistral"], served_as)
    mistral_engine = wait_ready_engines(engines, "mistral", 1)[0]
    assert (served_as, "/v1/chat/completions") in mistral_engine.request_log
    status, error = out["gpt-4"]
    assert status == 404 and error["error"]["code"] == "model_not_found"
    assert error["error"]["message"].startswith("The model 'gpt-4' does not exist. Available: ")
    for name in ("mistral", "qwen", "mistral-b", "support"):
        assert name in error["error"]["message"]


def test_streams_pass_tokens_as_they_come_and_unready_pods_get_no_new_requests(kubectl, gateway, farm):
    engines = farm({"slow": {"decode_tokens_per_s": 10}})
    kubectl.apply(served("slow", model={"id": "test/qwen2.5-7b"}, replicas=2))
    kubectl.run("wait", "--for=condition=Ready", "llmd/slow", "--timeout=90s")
    a, b = wait_ready_engines(engines, "slow", 2)
    wait_for(
        "the gateway to route to both pods",
        lambda: 'llm_gateway_ready_endpoints{model="%s/slow"} 2.0' % kubectl.namespace in gateway.metrics(),
        20,
    )

    async def stream():
        async with aiohttp.ClientSession() as s:
            started = time.monotonic()
            async with s.post(
                gateway.url + "/v1/chat/completions",
                json={
                    "model": "slow",
                    "stream": True,
                    "max_tokens": 20,
                    "messages": [{"role": "user", "content": "count"}],
                },
            ) as r:
                assert r.status == 200 and r.headers["Content-Type"].startswith("text/event-stream")
                times = []
                async for line in r.content:
                    if line.startswith(b"data: "):
                        times.append(time.monotonic() - started)
                return times

    times = asyncio.run(stream())
    assert len(times) >= 21  # 20 tokens and [DONE]
    # 20 tokens at 10/s take about 2 s: the first reached the client long before the last was made.
    assert times[0] < 1.0 and times[-1] - times[0] > 1.5, times

    # Pod of engine a turns unready: from then on every request goes to b.
    pod_a = next(p for p in kubectl.items("pod", "llm-operator.io/name=slow") if p["status"].get("podIP") == a.host)
    kubectl.run(
        "annotate", "pod", pod_a["metadata"]["name"], "--overwrite", "pod-ready.stage.kwok.x-k8s.io/gate=closed"
    )
    conditions = [{"type": "Ready", "status": "False"}, {"type": "ContainersReady", "status": "False"}]
    kubectl.run(
        "patch",
        "pod",
        pod_a["metadata"]["name"],
        "--subresource=status",
        "--type=strategic",
        "-p",
        json.dumps({"status": {"conditions": conditions}}),
    )
    wait_for(
        "the gateway to drop the unready pod",
        lambda: 'llm_gateway_ready_endpoints{model="%s/slow"} 1.0' % kubectl.namespace in gateway.metrics(),
        10,
    )
    before = a.started

    async def burst():
        async with aiohttp.ClientSession() as s:
            return await asyncio.gather(
                *(
                    post(s, gateway.url + "/v1/completions", {"model": "slow", "prompt": "x", "max_tokens": 1})
                    for _ in range(10)
                )
            )

    results = asyncio.run(burst())
    assert [r[0] for r in results] == [200] * 10
    assert {r[1]["x-fake-engine"] for r in results} == {b.address}
    assert a.started == before


def test_a_killed_endpoint_mid_burst_loses_no_request_that_had_not_started_streaming(kubectl, gateway, farm):
    engines = farm({"burst": {"decode_tokens_per_s": 40, "max_batch": 4}})
    kubectl.apply(served("burst", model={"id": "test/qwen2.5-7b"}, replicas=2))
    kubectl.run("wait", "--for=condition=Ready", "llmd/burst", "--timeout=90s")
    a, b = wait_ready_engines(engines, "burst", 2)
    wait_for(
        "the gateway to route to both pods",
        lambda: 'llm_gateway_ready_endpoints{model="%s/burst"} 2.0' % kubectl.namespace in gateway.metrics(),
        20,
    )

    async def scenario():
        async with aiohttp.ClientSession() as s:
            tasks = [
                asyncio.create_task(
                    post(s, gateway.url + "/v1/completions", {"model": "burst", "prompt": "p", "max_tokens": 8})
                )
                for _ in range(40)
            ]
            deadline = time.monotonic() + 10
            while a.started < 4 and time.monotonic() < deadline:  # a is busy, with more queued behind
                await asyncio.sleep(0.01)
            await asyncio.get_running_loop().run_in_executor(None, a.stop)
            return await asyncio.gather(*tasks)

    results = asyncio.run(scenario())
    assert a.completed < 40 and a.queued_peak > 0  # a died with requests on it
    assert [r[0] for r in results] == [200] * 40, [r for r in results if r[0] != 200][:3]
    assert b.completed + a.completed >= 40
    text = gateway.metrics()
    assert 'llm_gateway_retries_total{model="%s/burst"}' % kubectl.namespace in text


def test_scale_from_zero_holds_100_requests_until_the_pod_is_ready(kubectl, gateway, farm):
    engines = farm({"drowsy": {"decode_tokens_per_s": 200}})
    kubectl.apply(
        served(
            "drowsy",
            model={"id": "test/qwen2.5-7b"},
            replicas=0,
            autoscaling={"mode": "operator", "minReplicas": 0, "maxReplicas": 2},
        )
    )
    wait_for(
        "the model to be Ready at zero",
        lambda: (
            (o := kubectl.get("llmd", "drowsy"))
            and any(
                c["type"] == "Ready" and c["status"] == "True" and c.get("reason") == "ScaledToZero"
                for c in (o.get("status") or {}).get("conditions") or []
            )
        ),
        60,
    )
    wait_for("the gateway to list it", lambda: "drowsy" in listed(gateway), 20)

    async def scenario():
        async with aiohttp.ClientSession(timeout=aiohttp.ClientTimeout(total=HOLD_TIMEOUT_S + 30)) as s:
            started = time.monotonic()
            answers = await asyncio.gather(
                *(
                    post(
                        s,
                        gateway.url + "/v1/chat/completions",
                        {"model": "drowsy", "max_tokens": 4, "messages": [{"role": "user", "content": f"q{i}"}]},
                    )
                    for i in range(100)
                )
            )
            return time.monotonic() - started, answers

    took, answers = asyncio.run(scenario())
    assert took < HOLD_TIMEOUT_S
    assert [a[0] for a in answers] == [200] * 100, [a for a in answers if a[0] != 200][:3]
    (engine,) = wait_ready_engines(engines, "drowsy", 1)
    assert engine.completed == 100
    obj = kubectl.get("llmd", "drowsy")
    assert obj["spec"]["replicas"] == 1
    assert obj["status"].get("lastWokenByRequest")
    events = json.loads(
        kubectl.run("get", "events", "--field-selector", "involvedObject.name=drowsy", "-o", "json").stdout
    )["items"]
    assert any(e["reason"] == "WokenByRequest" for e in events)
    assert 'llm_gateway_wakes_total{model="%s/drowsy"} 1.0' % kubectl.namespace in gateway.metrics()


def test_scales_up_from_the_gateways_counts_then_to_zero_when_idle_and_the_next_request_wakes_it(
    kubectl, gateway, farm
):
    # 5 tokens/s and 30 tokens: each request stays in flight about 6 s.
    engines = farm({"busy-gw": {"decode_tokens_per_s": 5}})
    kubectl.apply(
        served(
            "busy-gw",
            model={"id": "test/qwen2.5-7b"},
            replicas=1,
            autoscaling={
                "mode": "operator",
                "minReplicas": 0,
                "maxReplicas": 3,
                "metric": "concurrency",
                "target": 2,
                "scaleDownDelaySeconds": 1,
                "scaleToZeroAfterSeconds": 3,
            },
        )
    )
    kubectl.run("wait", "--for=condition=Ready", "llmd/busy-gw", "--timeout=90s")
    wait_ready_engines(engines, "busy-gw", 1)
    wait_for("the gateway to list it", lambda: "busy-gw" in listed(gateway), 20)

    def spec_replicas():
        return kubectl.get("llmd", "busy-gw")["spec"]["replicas"]

    def reasons(reason):
        items = json.loads(
            kubectl.run("get", "events", "--field-selector", "involvedObject.name=busy-gw", "-o", "json").stdout
        )["items"]
        return [e["message"] for e in items if e["reason"] == reason]

    async def load():
        async with aiohttp.ClientSession() as s:
            tasks = [
                asyncio.create_task(
                    post(
                        s,
                        gateway.url + "/v1/chat/completions",
                        {
                            "model": "busy-gw",
                            "stream": True,
                            "max_tokens": 30,
                            "messages": [{"role": "user", "content": f"q{i}"}],
                        },
                    )
                )
                for i in range(6)
            ]
            # 6 in flight through the gateway, 2 per replica: 3 replicas, while the pods
            # themselves are never scraped (kwok pods' metrics come from pod_metrics, unset here).
            await asyncio.to_thread(wait_for, "3 replicas from the gateway's counts", lambda: spec_replicas() == 3, 20)
            return await asyncio.gather(*tasks)

    answers = asyncio.run(load())
    assert [a[0] for a in answers] == [200] * 6
    ups = reasons("ScaledUp")
    assert ups and all("through the gateway (1 of 1 gateway replicas answered)" in u for u in ups), ups
    assert any("-> 3 replicas" in u for u in ups), ups
    # Idle: down to 1 after scaleDownDelaySeconds, then to 0 once 3 s passed with no request.
    wait_for("zero replicas after the idle time", lambda: spec_replicas() == 0, 30)
    (asleep,) = [m for m in reasons("ScaledDown") if "scaling to 0" in m]
    assert "no request through the gateway for" in asleep and "(scaleToZeroAfterSeconds 3)" in asleep, asleep
    stored = kubectl.get("llmd", "busy-gw")["status"]["autoscaler"]
    assert stored["lastDecision"]["desiredReplicas"] == 0 and stored.get("idleSince") is None  # null clears it
    wait_for(
        "the model to be Ready at zero",
        lambda: condition(kubectl.get("llmd", "busy-gw"), "Ready").get("reason") == "ScaledToZero",
        30,
    )

    async def wake():
        async with aiohttp.ClientSession(timeout=aiohttp.ClientTimeout(total=HOLD_TIMEOUT_S + 30)) as s:
            return await post(
                s,
                gateway.url + "/v1/chat/completions",
                {"model": "busy-gw", "max_tokens": 2, "messages": [{"role": "user", "content": "again"}]},
            )

    status, _, body = asyncio.run(wake())
    assert status == 200, body
    assert spec_replicas() >= 1
    assert 'llm_gateway_wakes_total{model="%s/busy-gw"} 1.0' % kubectl.namespace in gateway.metrics()

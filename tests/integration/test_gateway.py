"""The gateway on the local plane: `llm-operator gateway` as the chart's ServiceAccount, in
front of LLMDeployments whose kwok pods have loopback IPs where fake engines listen.
Requests go client -> gateway (127.0.0.1) -> a ready pod's address from the pod watch."""

from __future__ import annotations

import asyncio
import json
import os
import subprocess
import sys
import time
import urllib.request

import aiohttp
import pytest

from conftest import ROOT, free_port, wait_for
from enginefarm import GATED, EngineFarm, wait_ready_engines
from loopback import require_loopback
from manifests import llmd

pytestmark = pytest.mark.usefixtures("operator")

HOLD_TIMEOUT_S = 120


class GatewayProcess:
    def __init__(self, kubeconfig, log_path, extra_args=()):
        self.kubeconfig, self.log_path, self.extra_args = kubeconfig, log_path, extra_args
        self.port = free_port()
        self.url = f"http://127.0.0.1:{self.port}"
        self.proc = None

    def start(self):
        env = {**os.environ, "KUBECONFIG": str(self.kubeconfig)}
        self.proc = subprocess.Popen(
            [sys.executable, "-m", "llm_operator.cli", "gateway", f"--listen=127.0.0.1:{self.port}",
             f"--hold-timeout={HOLD_TIMEOUT_S}", *self.extra_args],
            env=env, stdout=open(self.log_path, "ab"), stderr=subprocess.STDOUT, cwd=ROOT)

        def ready():
            if self.proc.poll() is not None:
                raise AssertionError(f"the gateway exited with {self.proc.returncode}:\n{self.log()[-3000:]}")
            try:
                with urllib.request.urlopen(self.url + "/readyz", timeout=1) as resp:
                    return resp.status == 200
            except OSError:
                return False
        wait_for("the gateway's /readyz", ready, 30)

    def stop(self):
        if self.proc and self.proc.poll() is None:
            self.proc.terminate()
            self.proc.wait(timeout=20)

    def log(self):
        return self.log_path.read_text(errors="replace")

    def metrics(self) -> str:
        with urllib.request.urlopen(self.url + "/metrics", timeout=5) as resp:
            return resp.read().decode()


@pytest.fixture(scope="module")
def gateway(cluster, crd_installed, tmp_path_factory):
    from serviceaccount import install_gateway_rbac

    # With exactly the chart's rules for the gateway, as its own ServiceAccount.
    kubeconfig = install_gateway_rbac(cluster, release="llm-operator-gw")
    gw = GatewayProcess(kubeconfig, tmp_path_factory.mktemp("gateway") / "gateway.log")
    gw.start()
    yield gw
    gw.stop()
    refused = [line for line in gw.log().splitlines() if "403" in line or "forbidden" in line.lower()]
    assert not refused, "the chart's RBAC refused the gateway:\n" + "\n".join(refused[:10])


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
    wait_for("the gateway to list the three models and the adapter",
             lambda: {"mistral", "qwen", "mistral-b", "support"} <= set(listed(gateway)), 20)
    served_as = next(a["servedAs"] for a in kubectl.get("llmd", "mistral")["status"]["adapters"])
    address = {name: wait_ready_engines(engines, name, 1)[0].address for name in ("mistral", "qwen", "mistral-b")}
    for a in address.values():
        require_loopback(a.split(":")[0])

    async def scenario():
        async with aiohttp.ClientSession() as s:
            url = gateway.url + "/v1/chat/completions"
            out = {}
            for name in ("mistral", "qwen", "mistral-b", "support"):
                status, headers, body = await post(s, url, {"model": name, "messages": [{"role": "user", "content": "hi"}]})
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
    wait_for("the gateway to route to both pods",
             lambda: 'llm_gateway_ready_endpoints{model="%s/slow"} 2.0' % kubectl.namespace in gateway.metrics(), 20)

    async def stream():
        async with aiohttp.ClientSession() as s:
            started = time.monotonic()
            async with s.post(gateway.url + "/v1/chat/completions", json={
                    "model": "slow", "stream": True, "max_tokens": 20,
                    "messages": [{"role": "user", "content": "count"}]}) as r:
                assert r.status == 200 and r.headers["Content-Type"].startswith("text/event-stream")
                times = []
                async for line in r.content:
                    if line.startswith(b"data: "):
                        times.append(time.monotonic() - started)
                return times
    times = asyncio.run(stream())
    assert len(times) >= 21                        # 20 tokens and [DONE]
    # 20 tokens at 10/s take about 2 s: the first reached the client long before the last was made.
    assert times[0] < 1.0 and times[-1] - times[0] > 1.5, times

    # Pod of engine a turns unready: from then on every request goes to b.
    pod_a = next(p for p in kubectl.items("pod", "llm-operator.io/name=slow")
                 if p["status"].get("podIP") == a.host)
    kubectl.run("annotate", "pod", pod_a["metadata"]["name"], "--overwrite", "pod-ready.stage.kwok.x-k8s.io/gate=closed")
    conditions = [{"type": "Ready", "status": "False"}, {"type": "ContainersReady", "status": "False"}]
    kubectl.run("patch", "pod", pod_a["metadata"]["name"], "--subresource=status", "--type=strategic",
                "-p", json.dumps({"status": {"conditions": conditions}}))
    wait_for("the gateway to drop the unready pod",
             lambda: 'llm_gateway_ready_endpoints{model="%s/slow"} 1.0' % kubectl.namespace in gateway.metrics(), 10)
    before = a.started

    async def burst():
        async with aiohttp.ClientSession() as s:
            return await asyncio.gather(*(post(s, gateway.url + "/v1/completions",
                                                {"model": "slow", "prompt": "x", "max_tokens": 1}) for _ in range(10)))
    results = asyncio.run(burst())
    assert [r[0] for r in results] == [200] * 10
    assert {r[1]["x-fake-engine"] for r in results} == {b.address}
    assert a.started == before


def test_a_killed_endpoint_mid_burst_loses_no_request_that_had_not_started_streaming(kubectl, gateway, farm):
    engines = farm({"burst": {"decode_tokens_per_s": 40, "max_batch": 4}})
    kubectl.apply(served("burst", model={"id": "test/qwen2.5-7b"}, replicas=2))
    kubectl.run("wait", "--for=condition=Ready", "llmd/burst", "--timeout=90s")
    a, b = wait_ready_engines(engines, "burst", 2)
    wait_for("the gateway to route to both pods",
             lambda: 'llm_gateway_ready_endpoints{model="%s/burst"} 2.0' % kubectl.namespace in gateway.metrics(), 20)

    async def scenario():
        async with aiohttp.ClientSession() as s:
            tasks = [asyncio.create_task(post(s, gateway.url + "/v1/completions",
                                              {"model": "burst", "prompt": "p", "max_tokens": 8}))
                     for _ in range(40)]
            deadline = time.monotonic() + 10
            while a.started < 4 and time.monotonic() < deadline:   # a is busy, with more queued behind
                await asyncio.sleep(0.01)
            await asyncio.get_running_loop().run_in_executor(None, a.stop)
            return await asyncio.gather(*tasks)
    results = asyncio.run(scenario())
    assert a.completed < 40 and a.queued_peak > 0               # a died with requests on it
    assert [r[0] for r in results] == [200] * 40, [r for r in results if r[0] != 200][:3]
    assert b.completed + a.completed >= 40
    text = gateway.metrics()
    assert 'llm_gateway_retries_total{model="%s/burst"}' % kubectl.namespace in text


def test_scale_from_zero_holds_100_requests_until_the_pod_is_ready(kubectl, gateway, farm):
    engines = farm({"sleepy": {"decode_tokens_per_s": 200}})
    kubectl.apply(served("sleepy", model={"id": "test/qwen2.5-7b"}, replicas=0,
                         autoscaling={"mode": "operator", "minReplicas": 0, "maxReplicas": 2}))
    wait_for("the model to be Ready at zero", lambda: (o := kubectl.get("llmd", "sleepy")) and any(
        c["type"] == "Ready" and c["status"] == "True" and c.get("reason") == "ScaledToZero"
        for c in (o.get("status") or {}).get("conditions") or []), 60)
    wait_for("the gateway to list it", lambda: "sleepy" in listed(gateway), 20)

    async def scenario():
        async with aiohttp.ClientSession(timeout=aiohttp.ClientTimeout(total=HOLD_TIMEOUT_S + 30)) as s:
            started = time.monotonic()
            answers = await asyncio.gather(*(post(s, gateway.url + "/v1/chat/completions", {
                "model": "sleepy", "max_tokens": 4, "messages": [{"role": "user", "content": f"q{i}"}]})
                for i in range(100)))
            return time.monotonic() - started, answers
    took, answers = asyncio.run(scenario())
    assert took < HOLD_TIMEOUT_S
    assert [a[0] for a in answers] == [200] * 100, [a for a in answers if a[0] != 200][:3]
    (engine,) = wait_ready_engines(engines, "sleepy", 1)
    assert engine.completed == 100
    obj = kubectl.get("llmd", "sleepy")
    assert obj["spec"]["replicas"] == 1
    assert obj["status"].get("lastWokenByRequest")
    events = json.loads(kubectl.run("get", "events", "--field-selector", "involvedObject.name=sleepy",
                                    "-o", "json").stdout)["items"]
    assert any(e["reason"] == "WokenByRequest" for e in events)
    assert 'llm_gateway_wakes_total{model="%s/sleepy"} 1.0' % kubectl.namespace in gateway.metrics()

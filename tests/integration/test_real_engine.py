"""The real-engine tier: vLLM's CPU build serving a model made here, through the operator's own
path (the plan from the model's config.json, the download Job into the cache, the pod's argv, env
and probes) and the gateway, with the real `openai` client.

One namespace for the whole module: an engine takes tens of seconds to start on 2 CPUs, so the
tests run in order on one LLMDeployment, `tiny`, each changing what it needs (scaling, killing
an engine). The farm (tests/support/realengine.py) runs each pod's container as a process and prints
every override it makes.
"""

from __future__ import annotations

import hashlib
import json
import re
import subprocess
import threading
import time
import urllib.request
import uuid
from pathlib import Path

import openai
import pytest

from support.cluster import Kubectl, condition, events, make_storage_class, wait_for
from support.hub import TINY_LORA, TINY_MODEL
from support.manifests import llmd
from support.realengine import (
    FLAGS_ONLY_IN_0_33,
    GATED_DOWNLOAD,
    GATED_ENGINE,
    RealEngineFarm,
    engine_argv,
    map_paths,
    vllm_venv,
    wait_ready_engines,
)

pytestmark = pytest.mark.usefixtures("operator")

ROOT = Path(__file__).resolve().parents[2]
NAME = "tiny"
STORAGE_CLASS = "real-engine-cache"
START_TIMEOUT_S = 420  # a cold start on 2 CPUs busy with the plane: imports, weights, the first request
MAX_SEQS = 2  # spec.limits.maxConcurrentRequests: more requests than this queue in vLLM


class Real:
    def __init__(self, kubectl: Kubectl, farm: RealEngineFarm, cache: Path, venv: Path, gateway, hub):
        self.kubectl, self.farm, self.cache, self.venv, self.gateway, self.hub = (
            kubectl,
            farm,
            cache,
            venv,
            gateway,
            hub,
        )
        self.client = openai.OpenAI(base_url=f"{gateway.url}/v1", api_key="unused", max_retries=0, timeout=120)


def manifest(hub, **spec) -> str:
    body = llmd(
        NAME,
        engine={"name": "vllm"},
        model={"id": TINY_MODEL, "revision": hub.commit(TINY_MODEL)},
        gpus=1,
        limits={"maxConcurrentRequests": MAX_SEQS},
        adapters=[{"name": "tiny-lora", "id": TINY_LORA, "revision": hub.commit(TINY_LORA)}],
        cache={
            "enabled": True,
            "size": "1Gi",
            "storageClassName": STORAGE_CLASS,
            "env": [{"name": "HF_ENDPOINT", "value": hub.endpoint}],
            "podAnnotations": GATED_DOWNLOAD,
        },
        podAnnotations=GATED_ENGINE,
        **spec,
    )
    return json.dumps(body)


@pytest.fixture(scope="module")
def real(cluster, crd_installed, operator, gateway, pod_metrics, tiny_hub, tmp_path_factory):
    venv = vllm_venv()
    namespace = f"t-real-{uuid.uuid4().hex[:6]}"
    Kubectl(cluster).run("create", "namespace", namespace)
    kubectl = Kubectl(cluster, namespace)
    pod_metrics.relay.add(namespace)  # the operator's scrapes reach the engines themselves
    workdir = tmp_path_factory.mktemp("real-engines")
    cache = workdir / "cache"
    cache.mkdir()
    make_storage_class(cluster, STORAGE_CLASS)
    Kubectl(cluster).apply(
        json.dumps(
            {
                "apiVersion": "v1",
                "kind": "PersistentVolume",
                "metadata": {"name": f"{namespace}-cache"},
                "spec": {
                    "capacity": {"storage": "1Gi"},
                    "accessModes": ["ReadWriteMany"],
                    "storageClassName": STORAGE_CLASS,
                    "persistentVolumeReclaimPolicy": "Delete",
                    "claimRef": {"namespace": namespace, "name": f"{NAME}-weights"},
                    "hostPath": {"path": str(cache)},
                },
            }
        )
    )
    with RealEngineFarm(cluster.kubeconfig, namespace, workdir, venv) as farm:
        yield Real(kubectl, farm, cache, venv, gateway, tiny_hub)
        errors = list(farm.errors)
    Kubectl(cluster).run("delete", "namespace", namespace, "--wait=false", check=False)
    Kubectl(cluster).run("delete", "pv", f"{namespace}-cache", "--wait=false", check=False)
    pod_metrics.relay.discard(namespace)
    assert not errors, "the farm reported:\n" + "\n".join(errors)


def scrape(url: str) -> str:
    with urllib.request.urlopen(f"{url}/metrics", timeout=5) as resp:
        return resp.read().decode()


def sample(text: str, name: str) -> float:
    """The sum of one metric's samples in Prometheus text."""
    return sum(
        float(line.rsplit(" ", 1)[1])
        for line in text.splitlines()
        if line.startswith(name + "{") or line.startswith(name + " ")
    )


def test_apply_to_ready_through_the_download_job_and_a_real_engine(real):
    kubectl, farm = real.kubectl, real.farm
    start = time.monotonic()
    kubectl.apply(manifest(real.hub))
    wait_ready_engines(farm, NAME, 1, START_TIMEOUT_S)
    kubectl.run("wait", "--for=condition=Ready", f"llmd/{NAME}", "--timeout=30s")
    print(
        f"\nkubectl apply -> Ready with a real engine: {time.monotonic() - start:.1f} s "
        f"(engine start {farm.engines_of(NAME)[0].startup_s:.1f} s)"
    )
    row = kubectl.run("get", "llmd", NAME).stdout.splitlines()[1].split()
    assert row[:7] == [NAME, TINY_MODEL, "vllm", "none", "1", "1/1", "Ready"], row

    # The download ran as the Job's own container, against the Hub its env names.
    (download,) = [launch for launch in farm.launches if launch["kind"] == "download"]
    assert download["env"]["HF_ENDPOINT"] == real.hub.endpoint and download["env"]["CACHE_DIR"] == str(real.cache)
    (job,) = kubectl.items("jobs", f"app.kubernetes.io/instance={NAME}")
    assert any(c["type"] == "Complete" and c["status"] == "True" for c in job["status"]["conditions"])
    # The plan came from the model's own config.json (through the Job's report).
    obj = kubectl.get("llmd", NAME)
    facts = obj["status"]["modelFacts"]
    assert (facts["numLayers"], facts["hiddenSize"], facts["maxPositionEmbeddings"]) == (2, 256, 2048)
    assert obj["status"]["plan"]["known"] is True and obj["status"]["plan"]["fits"] is True
    assert condition(obj, "WeightsCached")["status"] == "True"
    # The engine loads what the Job wrote: the same bytes, in the Hub cache layout on the claim's volume.
    snapshot = real.cache / "hub" / "models--test--tiny-llama" / "snapshots" / real.hub.commit(TINY_MODEL)
    assert (
        hashlib.sha256((snapshot / "model.safetensors").read_bytes()).hexdigest()
        == hashlib.sha256(real.hub.repos[TINY_MODEL]["model.safetensors"]).hexdigest()
    )

    # The engine ran the pod's own command and args: only the overrides the farm lists differ.
    (engine,) = farm.engines_of(NAME)
    pod = kubectl.get("pod", engine.name)
    container = next(c for c in pod["spec"]["containers"] if c["name"] == "engine")
    expected = engine_argv(
        {"name": "engine", "command": container["command"], "args": container["args"]},
        real.venv,
        pod["status"]["podIP"],
    )
    (data,) = [m["mountPath"] for m in container["volumeMounts"] if m["name"] == "data"]
    assert engine.argv == [map_paths(word, {data: real.cache}) for word in expected]
    assert container["args"][container["args"].index("--host") + 1] == "0.0.0.0"
    assert engine.env["HF_HOME"] == str(real.cache) and engine.env["HF_HUB_OFFLINE"] == "1"
    # Readiness is the pod's own probe: the gate opened once /health answered.
    assert container["readinessProbe"]["httpGet"]["path"] == "/health"


def test_the_openai_client_through_the_gateway_by_model_and_by_adapter(real):
    client = real.client
    chat = client.chat.completions.create(
        model=NAME, messages=[{"role": "user", "content": "What is free software?"}], max_tokens=8, temperature=0
    )
    assert chat.model and chat.choices[0].message.content and chat.usage.completion_tokens == 8
    chunks = list(
        client.chat.completions.create(
            model=NAME, messages=[{"role": "user", "content": "Say more."}], max_tokens=16, temperature=0, stream=True
        )
    )
    text = "".join(c.choices[0].delta.content or "" for c in chunks if c.choices)
    assert len(chunks) >= 8 and text, chunks
    completion = client.completions.create(
        model=NAME, prompt="The GNU General Public License", max_tokens=8, temperature=0
    )
    assert completion.choices[0].text and completion.usage.completion_tokens == 8
    streamed = list(
        client.completions.create(
            model=NAME, prompt="The GNU General Public License", max_tokens=8, temperature=0, stream=True
        )
    )
    assert "".join(c.choices[0].text for c in streamed if c.choices) == completion.choices[0].text

    # The adapter: vLLM lists it, and the gateway routes its name to the model's engines.
    (engine,) = real.farm.engines_of(NAME)
    with urllib.request.urlopen(f"{engine.url}/v1/models", timeout=5) as resp:
        served = {m["id"]: m for m in json.load(resp)["data"]}
    adapter = next(a for a in real.kubectl.get("llmd", NAME)["status"]["adapters"] if a["name"] == "tiny-lora")
    assert adapter["served"] is True and adapter["servedAs"] in served, (adapter, list(served))
    assert served[adapter["servedAs"]].get("parent") in served
    by_adapter = client.completions.create(
        model="tiny-lora", prompt="The GNU General Public License", max_tokens=8, temperature=0
    )
    assert by_adapter.choices[0].text
    # vLLM really applies it: greedy decoding of the same prompt differs from the base model's.
    assert by_adapter.choices[0].text != completion.choices[0].text
    assert client.models.list().data and "tiny-lora" in {m.id for m in client.models.list().data}
    with pytest.raises(openai.NotFoundError):
        client.completions.create(model="no-such-model", prompt="x", max_tokens=1)


def metric_names(text: str) -> set[str]:
    return {m.group(1) for m in re.finditer(r"^([a-zA-Z_:][a-zA-Z0-9_:]*)(?:\{| )", text, re.M)}


def test_the_metrics_the_operator_and_the_docs_name_exist_on_the_real_engine(real):
    from llm_operator.engines import vllm as vllm_engine

    (engine,) = real.farm.engines_of(NAME)
    real.client.completions.create(model=NAME, prompt="x", max_tokens=2)  # counters start at the first request
    names = metric_names(scrape(engine.url))
    operator_names = set(vllm_engine.LOAD_METRICS.queue) | set(vllm_engine.LOAD_METRICS.concurrency)
    pages = [ROOT / "README.md", *sorted((ROOT / "docs").rglob("*.md"))]
    documented = set(re.findall(r"\bvllm:[a-z_]+", "\n".join(p.read_text() for p in pages)))
    assert documented, "the docs name no vllm: metric"
    assert operator_names <= names, operator_names - names
    # The docs name what 0.32.0 lacks as lacking; everything else it names is exported.
    assert documented - set(LATER_THAN_0_32) <= names, documented - names
    # The fixtures the unit tests parse (written from 0.33.0's exporter) name only what a real engine exports.
    for fixture in sorted((ROOT / "tests" / "data" / "vllm-metrics").glob("*.txt")):
        fixture_names = {n for n in metric_names(fixture.read_text()) if n.startswith("vllm:")}
        load = {n for n in fixture_names if n in operator_names}
        assert load == operator_names, (fixture.name, load)
        assert fixture_names - names == set(LATER_THAN_0_32), (fixture.name, sorted(fixture_names - names))


# Series of 0.33.0's exporter (the fixtures) that 0.32.0, the CPU build, does not export; none
# is one the operator reads. Checked both ways: exactly these are absent from the real scrape.
LATER_THAN_0_32 = ("vllm:watermark_requests_created", "vllm:watermark_requests_total")


def test_a_spec_the_operator_says_vllm_would_refuse_is_refused_by_vllm(real, tmp_path):
    kubectl = real.kubectl
    too_long = json.loads(manifest(real.hub))
    too_long["metadata"]["name"] = "too-long"
    too_long["spec"]["limits"] = {"maxTotalTokens": 4096}  # the model's context is 2048
    del too_long["spec"]["cache"], too_long["spec"]["adapters"]
    kubectl.apply(json.dumps(too_long))
    obj = wait_for(
        "Ready reason EngineWouldRefuse",
        lambda: (
            (o := kubectl.get("llmd", "too-long")) and condition(o, "Ready").get("reason") == "EngineWouldRefuse" and o
        ),
        60,
    )
    assert "2048" in condition(obj, "Ready")["message"], condition(obj, "Ready")["message"]
    # Forced: the served model's own argv with --max-model-len 4096, the weights from the cache.
    (engine,) = real.farm.engines_of(NAME)
    argv = engine.argv + ["--max-model-len", "4096", "--port", "0"]
    env = {**engine.env, "VLLM_HOST_IP": "127.0.0.1"}
    argv[argv.index("--host") + 1] = "127.0.0.1"
    proc = subprocess.run(argv, env=env, cwd=tmp_path, capture_output=True, text=True, timeout=240)
    assert proc.returncode != 0, proc.stdout[-2000:]
    assert re.search(
        r"max_model_len.*4096.*2048|4096.*(greater|larger|exceed).*2048", proc.stdout + proc.stderr, re.S
    ), (proc.stdout + proc.stderr)[-3000:]


def test_vllm_0_32_lacks_only_the_0_33_flags_the_tier_names(real):
    """The CPU build is 0.32.0; the operator renders for 0.33.0's table. The flags in the table
    that 0.32.0's own parser lacks are exactly realengine.FLAGS_ONLY_IN_0_33, and none of them
    is one the operator writes."""
    script = (
        "import json\nfrom vllm.entrypoints.cli.serve import ServeSubcommand\n"
        "from vllm.utils.argparse_utils import FlexibleArgumentParser\n"
        "sub = FlexibleArgumentParser().add_subparsers()\nparser = ServeSubcommand().subparser_init(sub)\n"
        "print(json.dumps(sorted(s for a in parser._actions for s in a.option_strings)))\n"
    )
    proc = subprocess.run(
        [str(real.venv / "bin" / "python"), "-c", script], capture_output=True, text=True, timeout=240
    )
    assert proc.returncode == 0, proc.stderr[-3000:]
    options = set(json.loads(proc.stdout.strip().splitlines()[-1]))
    table = json.loads((ROOT / "common" / "llm_common" / "data" / "vllm-serve-0.33.0.json").read_text())["flags"]
    lacking = {
        "--" + f["name"]: f.get("owner")
        for f in table
        if not f.get("positional")
        and not {"--" + f["name"], *f.get("aliases", []), *f.get("hidden_aliases", [])} & options
    }
    assert set(lacking) == set(FLAGS_ONLY_IN_0_33), lacking
    assert not any(lacking.values()), lacking


def load(real, n: int, max_tokens: int, model: str = NAME) -> tuple[list[threading.Thread], list]:
    """n streamed completions through the gateway at once, each `max_tokens` long; (threads, results:
    the tokens each one got, or its error)."""
    results: list = []

    def one():
        try:
            stream = real.client.completions.create(
                model=model,
                prompt="Load",
                max_tokens=max_tokens,
                stream=True,
                stream_options={"include_usage": True},
                extra_body={"ignore_eos": True},
            )
            # vLLM may put several tokens in one chunk: the count is the usage it reports last.
            results.append([c.usage.completion_tokens for c in stream if c.usage][-1])
        except openai.OpenAIError as err:
            results.append(err)

    threads = [threading.Thread(target=one, daemon=True) for _ in range(n)]
    for t in threads:
        t.start()
    return threads, results


def join(threads, timeout: float) -> None:
    deadline = time.monotonic() + timeout
    for t in threads:
        t.join(max(0.1, deadline - time.monotonic()))
    assert not any(t.is_alive() for t in threads), f"load still running after {timeout} s"


def test_the_autoscaler_scales_on_the_real_engines_queue(real):
    kubectl = real.kubectl
    kubectl.run(
        "patch",
        "llmd",
        NAME,
        "--type=merge",
        "-p",
        json.dumps(
            {
                "spec": {
                    "autoscaling": {
                        "mode": "operator",
                        "metric": "queue",
                        "target": 2,
                        "minReplicas": 1,
                        "maxReplicas": 2,
                        "scaleDownDelaySeconds": 3600,
                    }
                }
            }
        ),
    )
    (engine,) = real.farm.engines_of(NAME)
    # vLLM runs 2 at once (--max-num-seqs 2): 10 wait. Long answers keep them waiting long enough
    # to be seen however fast the tiny model decodes (200 tokens each drained in about a second).
    tokens = 1500
    threads, results = load(real, 12, tokens)
    waiting = wait_for(
        "vLLM's own queue to fill",
        lambda: (w := sample(scrape(engine.url), "vllm:num_requests_waiting")) >= 4 and w,
        60,
        interval=0.1,
    )
    wait_for("spec.replicas 2 from the real queue", lambda: kubectl.get("llmd", NAME)["spec"]["replicas"] == 2, 60)
    # The Event follows the scale write: waited for, not read at once.
    (scaled,) = wait_for("the ScaledUp event", lambda: events(kubectl, NAME, "ScaledUp"), 30)
    print(f"\nqueue: vllm:num_requests_waiting {waiting:.0f} -> {scaled['message']}")
    assert "queue" in scaled["message"] or "waiting" in scaled["message"], scaled["message"]
    join(threads, 300)
    assert all(r == tokens for r in results), results
    wait_ready_engines(real.farm, NAME, 2, START_TIMEOUT_S)


def test_an_engine_killed_mid_stream_fails_its_stream_promptly_and_the_next_requests_go_to_the_other(real):
    kubectl, farm = real.kubectl, real.farm
    kubectl.run(
        "patch",
        "llmd",
        NAME,
        "--type=merge",
        "-p",
        json.dumps({"spec": {"autoscaling": {"mode": "none"}, "replicas": 2}}),
    )
    engines = wait_ready_engines(farm, NAME, 2)
    stream = real.client.completions.create(
        model=NAME, prompt="Long", max_tokens=1500, stream=True, extra_body={"ignore_eos": True}
    )
    it = iter(stream)
    next(it)
    victim = next(e for e in engines if sample(scrape(e.url), "vllm:num_requests_running") >= 1)
    survivor = next(e for e in engines if e is not victim)
    before = sample(scrape(survivor.url), "vllm:request_success_total")
    killed = time.monotonic()
    farm.kill(victim)
    with pytest.raises(openai.APIError, match="failed mid-stream") as err:  # an error, not a hang nor a clean end
        for chunk in it:
            assert not (chunk.choices and chunk.choices[0].finish_reason == "length"), "the stream finished normally"
    print(
        f"\nengine killed mid-stream: the client raised {type(err.value).__name__} "
        f"{time.monotonic() - killed:.2f} s after the kill"
    )
    assert time.monotonic() - killed < 10
    # Requests not yet started go to the other replica (the dead one's pod is still Ready).
    for _ in range(6):
        done = real.client.completions.create(model=NAME, prompt="After", max_tokens=4)
        assert done.choices[0].text is not None
    assert sample(scrape(survivor.url), "vllm:request_success_total") - before == 6
    # As a kubelet would restart it: the dead engine's pod goes, the Deployment makes another.
    kubectl.run("delete", "pod", victim.name, "--wait=false")


def test_the_autoscaler_scales_on_the_gateways_counts(real):
    kubectl = real.kubectl
    kubectl.run(
        "patch",
        "llmd",
        NAME,
        "--type=merge",
        "-p",
        json.dumps(
            {
                "spec": {
                    "autoscaling": {
                        "mode": "operator",
                        "metric": "concurrency",
                        "target": 1,
                        "minReplicas": 1,
                        "maxReplicas": 3,
                        "scaleDownDelaySeconds": 3600,
                    }
                }
            }
        ),
    )
    wait_ready_engines(real.farm, NAME, 2, START_TIMEOUT_S)
    # Long answers keep the 6 in flight across an autoscaler tick however fast the tiny model decodes.
    tokens = 1500
    threads, results = load(real, 6, tokens)
    wait_for(
        "spec.replicas 3 from the gateway's in-flight count",
        lambda: kubectl.get("llmd", NAME)["spec"]["replicas"] == 3,
        60,
    )
    scaled = wait_for(
        "a ScaledUp event from the gateway's counts",
        lambda: [e for e in events(kubectl, NAME, "ScaledUp") if "gateway" in e["message"] and "to 3" in e["message"]],
        30,
    )
    print(f"\nconcurrency: {scaled[-1]['message']}")
    join(threads, 300)
    assert all(r == tokens for r in results), results


def test_scale_from_zero_answers_every_held_request_once_the_real_engine_is_up(real):
    kubectl, farm = real.kubectl, real.farm
    kubectl.run(
        "patch",
        "llmd",
        NAME,
        "--type=merge",
        "-p",
        json.dumps(
            {
                "spec": {
                    "autoscaling": {
                        "mode": "operator",
                        "metric": "concurrency",
                        "target": 4,
                        "minReplicas": 0,
                        "maxReplicas": 1,
                        "scaleDownDelaySeconds": 0,
                        "scaleToZeroAfterSeconds": 5,
                    }
                }
            }
        ),
    )
    wait_for(
        "the model at zero, no engine left",
        lambda: (
            kubectl.get("llmd", NAME)["spec"]["replicas"] == 0
            and not kubectl.items("pods", f"llm-operator.io/name={NAME}")
            and not farm.engines_of(NAME, ready=False)
        ),
        180,
    )
    held = time.monotonic()
    firsts: list[float] = []
    results: list = []

    def one(i: int):
        try:
            stream = real.client.chat.completions.create(
                model=NAME, messages=[{"role": "user", "content": f"Wake {i}"}], max_tokens=8, stream=True
            )
            n = 0
            for chunk in stream:
                if chunk.choices and chunk.choices[0].delta.content is not None and not n:
                    firsts.append(time.monotonic())
                n += 1
            results.append(n)
        except openai.OpenAIError as err:
            results.append(err)

    threads = [threading.Thread(target=one, args=(i,), daemon=True) for i in range(4)]
    for t in threads:
        t.start()
    join(threads, START_TIMEOUT_S + 60)
    assert len(results) == 4 and all(isinstance(r, int) and r > 1 for r in results), results
    (engine,) = farm.engines_of(NAME)
    ready = engine.ready_at
    print(
        f"\nscale from zero on a real engine: first held request -> its first token {min(firsts) - held:.1f} s; "
        f"engine start {engine.startup_s:.1f} s; pod Ready -> first token {min(firsts) - ready:.2f} s"
    )
    assert min(firsts) > ready

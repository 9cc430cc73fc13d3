"""A second engine behind the same API (issue 15): the same LLMDeployment with
spec.engine.name vllm runs vLLM; switching the engine of a live object rolls out new pods
while the old ones keep serving until the new ones are Ready."""

from __future__ import annotations

import json

import pytest

from support.cluster import condition, container, wait_for
from support.manifests import llmd

pytestmark = pytest.mark.usefixtures("operator")

# The new pods turn Ready only after this, so the overlap can be seen.
READY_DELAY = {"pod-ready.stage.kwok.x-k8s.io/delay": "6s"}


def test_a_vllm_spec_runs_vllm(kubectl):
    kubectl.apply(
        json.dumps(
            llmd(
                "on-vllm",
                model={"id": "test/mistral-7b"},
                engine={"name": "vllm"},
                gpus=1,
                limits={"maxTotalTokens": 8192, "maxConcurrentRequests": 64},
            )
        )
    )
    kubectl.run("wait", "--for=condition=Ready", "llmd/on-vllm", "--timeout=60s")
    c = container(kubectl, "on-vllm")
    assert (c["image"], c["command"]) == ("vllm/vllm-openai:v0.33.0", ["vllm", "serve"])
    assert c["args"][:5] == ["test/mistral-7b", "--revision", "main", "--tensor-parallel-size", "1"]
    assert c["args"][c["args"].index("--served-model-name") : c["args"].index("--host")] == [
        "--served-model-name",
        "on-vllm",
        "test/mistral-7b",
    ]
    assert c["ports"] == [{"name": "http", "containerPort": 8000, "protocol": "TCP"}]
    service = kubectl.get("service", "on-vllm")
    assert service["spec"]["ports"][0]["targetPort"] == "http"
    obj = kubectl.get("llmd", "on-vllm")
    assert obj["status"]["engine"] == "vllm"
    assert "vllm" in kubectl.run("get", "llmd", "on-vllm").stdout.splitlines()[1].split()


def test_switching_the_engine_keeps_the_old_pods_serving_until_the_new_ones_are_ready(kubectl):
    kubectl.apply(json.dumps(llmd("switch", model={"id": "test/mistral-7b"}, gpus=1)))
    kubectl.run("wait", "--for=condition=Ready", "llmd/switch", "--timeout=60s")
    (old,) = kubectl.items("pods", "llm-operator.io/name=switch")
    assert container(kubectl, "switch")["command"] == ["text-generation-launcher"]

    kubectl.run(
        "patch",
        "llmd",
        "switch",
        "--type=merge",
        "-p",
        json.dumps({"spec": {"engine": {"name": "vllm"}, "podAnnotations": READY_DELAY}}),
    )
    wait_for("the Deployment to run vLLM", lambda: container(kubectl, "switch")["command"] == ["vllm", "serve"], 30)

    # While the vLLM pod loads, the TGI pod is still there and Ready, and status says so.
    def overlap():
        pods = kubectl.items("pods", "llm-operator.io/name=switch")
        by_name = {p["metadata"]["name"]: p for p in pods}
        new = [p for p in pods if p["metadata"]["name"] != old["metadata"]["name"]]
        if new and old["metadata"]["name"] in by_name and condition(new[0], "Ready").get("status") != "True":
            return by_name[old["metadata"]["name"]], new[0], kubectl.get("llmd", "switch")
        return None

    still, starting, obj = wait_for("a moment with the new pod starting beside the old one", overlap, 30)
    assert condition(still, "Ready")["status"] == "True"
    assert not still["metadata"].get("deletionTimestamp")
    assert starting["spec"]["containers"][0]["command"] == ["vllm", "serve"]
    assert obj["status"]["phase"] != "Ready" and condition(obj, "Ready")["status"] == "False"

    kubectl.run("wait", "--for=condition=Ready", "llmd/switch", "--timeout=60s")
    obj = kubectl.get("llmd", "switch")
    assert obj["status"]["engine"] == "vllm" and obj["status"]["observedGeneration"] == 2
    live = [
        p for p in kubectl.items("pods", "llm-operator.io/name=switch") if not p["metadata"].get("deletionTimestamp")
    ]
    assert [p["spec"]["containers"][0]["command"] for p in live] == [["vllm", "serve"]]


def test_admission_refuses_a_quantization_vllm_lacks_naming_tgi(kubectl):
    proc = kubectl.run(
        "apply", "-f", "-", input=json.dumps(llmd("no-eetq", engine={"name": "vllm"}, quantization="eetq")), check=False
    )
    assert proc.returncode != 0
    assert "quantization eetq, exl2, bitsandbytes" in proc.stderr and "use engine.name tgi for them" in proc.stderr


def test_vllm_engine_args_a_spec_field_sets_are_refused_at_admission_and_unknown_ones_stall(kubectl):
    proc = kubectl.run(
        "apply", "-f", "-", input=json.dumps(llmd("own-tp", engine={"name": "vllm", "args": ["-tp", "2"]})), check=False
    )
    assert proc.returncode != 0
    assert "the operator sets them from spec.gpus; set that instead" in proc.stderr and "-tp" in proc.stderr
    # TGI's table does not judge vLLM's flags, nor the other way round.
    kubectl.apply(
        json.dumps(
            llmd(
                "odd-flag", model={"id": "test/mistral-7b"}, gpus=1, engine={"name": "vllm", "args": ["--no-such-flag"]}
            )
        )
    )
    obj = wait_for(
        "EngineWouldRefuse",
        lambda: (
            (o := kubectl.get("llmd", "odd-flag")) and condition(o, "Ready").get("reason") == "EngineWouldRefuse" and o
        ),
        30,
    )
    assert condition(obj, "Ready")["message"] == (
        "vLLM would refuse to start with this spec: spec.engine.args: "
        "--no-such-flag is not an option of `vllm serve` 0.33.0."
    )
    assert condition(obj, "Stalled")["status"] == "True"
    assert kubectl.get("deployment", "odd-flag") is None

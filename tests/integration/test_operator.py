"""The operator against the real control plane (issue 2): children, scheduling, status,
repair, rollout, deletion, and quiet restarts."""

from __future__ import annotations

import json
import re

import pytest
import yaml

from support.cluster import arg, children, condition, engine_args, settled, versions_of, wait_for
from support.manifests import EXAMPLES, llmd

pytestmark = pytest.mark.usefixtures("operator")

READY_DELAY = {"pod-ready.stage.kwok.x-k8s.io/delay": "4s"}


@pytest.mark.parametrize("path", EXAMPLES, ids=[p.stem for p in EXAMPLES])
def test_example_becomes_ready_on_matching_gpu_nodes(kubectl, path):
    doc = yaml.safe_load(path.read_text())
    name, spec = doc["metadata"]["name"], doc["spec"]
    # Pods turn ready only after a delay, so the in-between state can be seen.
    doc["spec"]["podAnnotations"] = READY_DELAY
    kubectl.apply(json.dumps(doc))

    def progressing():
        obj = kubectl.get("llmd", name)
        return obj if condition(obj, "Reconciling").get("status") == "True" else None

    obj = wait_for("Reconciling=True while pods start", progressing, 30, interval=0.1)
    assert condition(obj, "Ready")["status"] == "False"
    assert condition(obj, "Stalled")["status"] == "False"

    kubectl.run("wait", "--for=condition=Ready", f"llmd/{name}", "--timeout=60s")
    obj = kubectl.get("llmd", name)
    assert obj["status"]["phase"] == "Ready"
    assert condition(obj, "Reconciling")["status"] == "False"
    assert obj["status"]["observedGeneration"] == obj["metadata"]["generation"]

    want = {"deployments": [name], "services": [name]}
    if spec.get("replicas", 1) > 1:
        want["poddisruptionbudgets"] = [name]
    assert children(kubectl, name) == want

    # Every example is planned from the catalog (the Hub stand-in does not hold them), and
    # one leaves gpus to the planner.
    plan = obj["status"]["plan"]
    assert (plan["known"], plan["source"], plan["fits"]) == (True, "catalog", True)
    gpus = spec.get("gpus") or plan["numShard"]
    assert obj["status"]["gpus"] == gpus
    deployment = kubectl.get("deployment", name)
    args = engine_args(deployment)
    engine = (spec.get("engine") or {}).get("name", "tgi")
    assert obj["status"]["engine"] == engine
    quantization = None if spec.get("quantization", "none") == "none" else spec["quantization"]
    if engine == "vllm":
        assert args[0] == spec["model"]["id"]
        assert arg(args, "--tensor-parallel-size") == str(gpus)
        assert arg(args, "--quantization") == quantization
    else:
        assert arg(args, "--model-id") == spec["model"]["id"]
        assert arg(args, "--num-shard") == str(gpus)
        assert arg(args, "--quantize") == quantization
    pods = kubectl.items("pods", f"llm-operator.io/name={name}")
    assert len(pods) == spec.get("replicas", 1)
    nodes = {n["metadata"]["name"]: n for n in kubectl.items("nodes")}
    for pod in pods:
        node = nodes[pod["spec"]["nodeName"]]
        assert int(node["status"]["allocatable"].get("nvidia.com/gpu", "0")) >= gpus
        if spec.get("gpu", {}).get("product"):
            assert node["metadata"]["labels"]["nvidia.com/gpu.product"] == spec["gpu"]["product"]
        limits = pod["spec"]["containers"][0]["resources"]["limits"]
        assert limits["nvidia.com/gpu"] == str(gpus)
    service = kubectl.get("service", name)
    assert service["spec"]["ports"][0]["name"] == "http"
    assert obj["status"]["url"] == f"http://{name}.{kubectl.namespace}.svc.cluster.local"
    printed = kubectl.run("get", "llmd", name).stdout
    assert re.search(
        rf"{name}\s+{re.escape(spec['model']['id'])}\s+{engine}\s+\S+\s+{gpus}\s+\d+/\d+\s+Ready", printed
    ), printed


def test_more_gpus_than_any_node_has_is_stalled(kubectl):
    kubectl.apply(json.dumps(llmd("huge", gpus=16)))

    def unschedulable():
        obj = kubectl.get("llmd", "huge")
        return obj if condition(obj, "Ready").get("reason") == "NoNodeFits" else None

    obj = wait_for("Ready=False reason NoNodeFits", unschedulable, 30)
    ready = condition(obj, "Ready")
    assert ready["status"] == "False"
    assert "no node could ever hold one: each pod asks for 16 nvidia.com/gpu; the cluster has" in ready["message"]
    assert "2 nodes with 8 x NVIDIA-H100-80GB-HBM3" in ready["message"]
    assert "Insufficient nvidia.com/gpu" in ready["message"]
    assert condition(obj, "Stalled")["status"] == "True" and condition(obj, "Reconciling")["status"] == "False"
    assert obj["status"]["phase"] == "Failed"
    assert kubectl.run("get", "llmd", "huge", "--no-headers").stdout.split()[6:8] == ["Failed", "NoNodeFits"]
    # No storm of retries: once settled, nothing rewrites the object or its Deployment.
    versions = settled(kubectl, [("llmd", "huge"), ("deployment", "huge")])
    seen = {versions_of(kubectl, [("llmd", "huge"), ("deployment", "huge")]) for _ in range(20)}
    assert seen == {versions}


def test_changing_gpus_rolls_the_deployment(kubectl):
    kubectl.apply(json.dumps(llmd("roll", gpus=1)))
    kubectl.run("wait", "--for=condition=Ready", "llmd/roll", "--timeout=60s")
    kubectl.run("patch", "llmd", "roll", "--type=merge", "-p", '{"spec": {"gpus": 2}}')

    def rolled():
        d = kubectl.get("deployment", "roll")
        c = d["spec"]["template"]["spec"]["containers"][0]
        return arg(c["args"], "--num-shard") == "2" and c["resources"]["limits"]["nvidia.com/gpu"] == "2"

    wait_for("--num-shard 2 and a 2-GPU limit", rolled, 30)
    kubectl.run("rollout", "status", "deployment/roll", "--timeout=60s")
    kubectl.run("wait", "--for=condition=Ready", "llmd/roll", "--timeout=60s")
    obj = kubectl.get("llmd", "roll")
    assert obj["status"]["gpus"] == 2 and obj["status"]["observedGeneration"] == 2
    pods = kubectl.items("pods", "llm-operator.io/name=roll")
    live = [p for p in pods if not p["metadata"].get("deletionTimestamp")]
    assert [p["spec"]["containers"][0]["resources"]["limits"]["nvidia.com/gpu"] for p in live] == ["2"]


def test_deleted_or_edited_children_are_repaired(kubectl):
    kubectl.apply(json.dumps(llmd("repair", gpus=1)))
    kubectl.run("wait", "--for=condition=Ready", "llmd/repair", "--timeout=60s")
    uid = kubectl.get("deployment", "repair")["metadata"]["uid"]
    kubectl.run("delete", "deployment", "repair")
    wait_for(
        "the Deployment to come back",
        lambda: (d := kubectl.get("deployment", "repair")) and d["metadata"]["uid"] != uid,
        30,
    )
    kubectl.run(
        "patch",
        "service",
        "repair",
        "--type=merge",
        "-p",
        '{"spec": {"ports": [{"name": "http", "port": 9999, "targetPort": "http"}]}}',
    )
    wait_for(
        "the Service port to be put back",
        lambda: kubectl.get("service", "repair")["spec"]["ports"][0]["port"] == 80,
        30,
    )
    kubectl.run("wait", "--for=condition=Ready", "llmd/repair", "--timeout=60s")


def test_deleting_the_llmdeployment_removes_every_child(kubectl):
    kubectl.apply(json.dumps(llmd("gone", gpus=1, replicas=2)))
    kubectl.run("wait", "--for=condition=Ready", "llmd/gone", "--timeout=60s")
    assert set(children(kubectl, "gone")) == {"deployments", "services", "poddisruptionbudgets"}
    kubectl.run("delete", "llmd", "gone", "--wait=true", "--timeout=30s")
    wait_for("every child to be collected", lambda: children(kubectl, "gone") == {}, 30)
    wait_for("the pods to go", lambda: kubectl.items("pods", "llm-operator.io/name=gone") == [], 30)


def test_scaling_down_to_one_prunes_the_disruption_budget(kubectl):
    kubectl.apply(json.dumps(llmd("prune", gpus=1, replicas=2)))
    kubectl.run("wait", "--for=condition=Ready", "llmd/prune", "--timeout=60s")
    assert kubectl.get("pdb", "prune") is not None
    kubectl.run("patch", "llmd", "prune", "--type=merge", "-p", '{"spec": {"replicas": 1}}')
    wait_for("the PodDisruptionBudget to be pruned", lambda: kubectl.get("pdb", "prune") is None, 30)


def test_no_finalizer_so_deletion_never_waits_for_the_operator(kubectl):
    """Owner references let the garbage collector remove the children; a finalizer would
    only block deleting a model (or its namespace) while the operator is down."""
    kubectl.apply(
        json.dumps(llmd("nofin", gpus=1, autoscaling={"mode": "operator", "minReplicas": 1, "maxReplicas": 2}))
    )
    kubectl.run("wait", "--for=condition=Ready", "llmd/nofin", "--timeout=60s")
    assert not kubectl.get("llmd", "nofin")["metadata"].get("finalizers")

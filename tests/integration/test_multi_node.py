"""Models larger than one node (issue 14): a replica on several nodes is a LeaderWorkerSet
group, run by the real LWS controller of the local plane (its webhook labels the pods),
placed by the real scheduler on the simulated H100 nodes, and reported per group."""

from __future__ import annotations

import json

import pytest

from support.cluster import condition, pods_of, wait_for, wait_for_other_namespaces_to_go
from support.manifests import llmd

pytestmark = pytest.mark.usefixtures("operator")

# Gated on the Hub (the stand-in answers so without a token): planned from the catalog.
LLAMA_405B = "meta-llama/Meta-Llama-3.1-405B"
H100 = "NVIDIA-H100-80GB-HBM3"
GROUP_INDEX = "leaderworkerset.sigs.k8s.io/group-index"
WORKER_INDEX = "leaderworkerset.sigs.k8s.io/worker-index"


def big(name: str, **spec) -> str:
    spec = {"model": {"id": LLAMA_405B}, "engine": {"name": "vllm"}, "gpus": 8, "gpu": {"product": H100}, **spec}
    return json.dumps(llmd(name, **spec))


def wait_stalled(kubectl, name: str, what: str, timeout: float = 60) -> dict:
    def stalled():
        obj = kubectl.get("llmd", name)
        return obj if condition(obj, "Stalled").get("status") == "True" else None

    return wait_for(what, stalled, timeout)


@pytest.fixture
def h100s_free(kubectl):
    """Both H100 nodes whole: other tests' pods (in namespaces being deleted) gone first."""
    wait_for_other_namespaces_to_go(kubectl)


def test_405b_on_two_nodes_is_one_group_placed_on_two_h100_nodes_and_ready_when_both_pods_are(kubectl, h100s_free):
    kubectl.apply(big("llama-405b", nodes=2))
    kubectl.run("wait", "--for=condition=Ready", "llmd/llama-405b", "--timeout=90s")

    lws = kubectl.get("leaderworkersets", "llama-405b")
    assert lws["spec"]["leaderWorkerTemplate"]["size"] == 2
    assert lws["spec"]["leaderWorkerTemplate"]["restartPolicy"] == "RecreateGroupOnPodRestart"
    assert kubectl.get("deployment", "llama-405b") is None

    pods = pods_of(kubectl, "llama-405b")
    assert len(pods) == 2
    # LWS's own webhook labelled them: one group, a leader (worker 0) and a worker (1).
    assert sorted(p["metadata"]["labels"][WORKER_INDEX] for p in pods) == ["0", "1"]
    assert {p["metadata"]["labels"][GROUP_INDEX] for p in pods} == {"0"}
    nodes = {p["spec"]["nodeName"] for p in pods}
    assert len(nodes) == 2, f"both pods of the group on one node: {nodes}"
    for node in nodes:
        assert kubectl.get("node", node)["metadata"]["labels"]["nvidia.com/gpu.product"] == H100
    for p in pods:
        assert p["spec"]["containers"][0]["resources"]["limits"]["nvidia.com/gpu"] == "8"
        assert condition(p, "Ready")["status"] == "True"
    # The webhook gave the pods the leader's address the argv refers to.
    leader = next(p for p in pods if p["metadata"]["labels"][WORKER_INDEX] == "0")
    worker = next(p for p in pods if p["metadata"]["labels"][WORKER_INDEX] == "1")
    assert "LWS_LEADER_ADDRESS" in {e["name"] for e in worker["spec"]["containers"][0]["env"]}
    assert "--headless" in worker["spec"]["containers"][0]["args"]
    assert leader["spec"]["containers"][0]["args"][-4:] == ["--host", "0.0.0.0", "--port", "8000"]

    # The Service selects the leader only.
    service = kubectl.get("service", "llama-405b")
    assert service["spec"]["selector"] == {"llm-operator.io/name": "llama-405b", "llm-operator.io/role": "leader"}
    selected = kubectl.items("pods", ",".join(f"{k}={v}" for k, v in service["spec"]["selector"].items()))
    assert [p["metadata"]["name"] for p in selected] == [leader["metadata"]["name"]]

    obj = kubectl.get("llmd", "llama-405b")
    assert obj["status"]["nodes"] == 2 and obj["status"]["gpus"] == 8 and obj["status"]["ready"] == "1/1"
    assert condition(obj, "Ready")["message"].startswith("1/1 replicas (each a group of 2 pods on 2 nodes) are ready")

    # A lost worker restarts the whole group: the leader is made anew too.
    kubectl.run("delete", "pod", worker["metadata"]["name"], "--wait=false")

    def leader_replaced():
        now = pods_of(kubectl, "llama-405b")
        leaders = [p for p in now if p["metadata"]["labels"].get(WORKER_INDEX) == "0"]
        return leaders and leaders[0]["metadata"]["uid"] != leader["metadata"]["uid"]

    wait_for("the group to be recreated (a new leader pod)", leader_replaced, 60)

    def ready_again():
        obj = kubectl.get("llmd", "llama-405b")
        pods = pods_of(kubectl, "llama-405b")
        return (
            len(pods) == 2
            and all(condition(p, "Ready").get("status") == "True" for p in pods)
            and condition(obj, "Ready").get("status") == "True"
        )

    wait_for("the recreated group to be Ready", ready_again, 90)

    # Two groups need four H100 nodes; the cluster has two: the second group waits, Reconciling.
    kubectl.run("scale", "llmd/llama-405b", "--replicas=2")

    def second_group_waits():
        obj = kubectl.get("llmd", "llama-405b")
        return obj if condition(obj, "Ready").get("reason") == "WaitingForGPUs" else None

    obj = wait_for("the second group to wait for GPUs", second_group_waits, 60)
    assert kubectl.get("leaderworkersets", "llama-405b")["spec"]["replicas"] == 2
    assert obj["status"]["phase"] == "Unschedulable"
    assert condition(obj, "Reconciling")["status"] == "True" and condition(obj, "Stalled")["status"] == "False"
    message = condition(obj, "Ready")["message"]
    assert message.startswith("1 of 2 replicas (each a group of 2 pods on 2 nodes) serve; pod llama-405b-1")
    assert "of group 1) waits" in message and "The scheduler says: 0/" in message
    kubectl.run("delete", "llmd", "llama-405b", "--wait=true", "--timeout=60s")


def test_the_planner_picks_two_nodes_and_one_node_does_not_fit_naming_two(kubectl):
    kubectl.apply(big("picked"))
    kubectl.apply(big("one-node", nodes=1))

    def planned():
        obj = kubectl.get("llmd", "picked")
        return obj if (obj.get("status") or {}).get("nodes") else None

    obj = wait_for("the planner to pick the nodes", planned, 60)
    assert obj["status"]["nodes"] == 2 and obj["status"]["plan"]["nodes"] == 2
    assert kubectl.get("leaderworkersets", "picked")["spec"]["leaderWorkerTemplate"]["size"] == 2

    obj = wait_stalled(kubectl, "one-node", "one node to be refused")
    ready = condition(obj, "Ready")
    assert ready["reason"] == "DoesNotFit"
    assert "2 nodes (spec.nodes: 2)" in ready["message"] and "an 8-bit quantization" in ready["message"]
    assert kubectl.get("deployment", "one-node") is None and kubectl.get("leaderworkersets", "one-node") is None
    kubectl.run("delete", "llmd", "picked", "one-node", "--wait=true", "--timeout=60s")


def test_tgi_on_two_nodes_is_refused_at_admission_naming_vllm(kubectl):
    proc = kubectl.run("apply", "-f", "-", input=big("tgi-two", engine={"name": "tgi"}, nodes=2), check=False)
    assert proc.returncode != 0
    assert "spec.nodes" in proc.stderr and "nodes above 1 needs engine.name vllm" in proc.stderr


@pytest.fixture
def plane_without_lws(tmp_path, hub):
    """A second control plane, with no LeaderWorkerSet installed, and an operator that has
    multi-node replicas on (as with the chart's lws.enabled where LWS was never installed)."""
    from localcluster import LocalCluster, tools_dir
    from support.cluster import Kubectl, install_crd
    from support.operatorprocess import OperatorProcess

    plane = LocalCluster(tmp_path / "plane", bin_dir=tools_dir(), lws=False)
    plane.up()
    op = None
    try:
        install_crd(plane)
        op = OperatorProcess(
            plane,
            tmp_path / "operator.log",
            extra_args=("--leaderworkersets",),
            extra_env={"HF_ENDPOINT": hub.endpoint, "HF_HOME": str(tmp_path / "hf")},
        )
        op.start()
        yield Kubectl(plane, "default"), op
    finally:
        if op is not None:
            op.stop()
        plane.down()


def test_without_the_lws_api_a_multi_node_model_says_how_to_install_it_and_the_rest_serve(plane_without_lws):
    kubectl, op = plane_without_lws
    kubectl.apply(big("huge", nodes=2))
    kubectl.apply(json.dumps(llmd("small", model={"id": "test/mistral-7b"}, gpus=1)))
    kubectl.run("wait", "--for=condition=Ready", "llmd/small", "--timeout=60s")

    obj = wait_stalled(kubectl, "huge", "the multi-node model to be Stalled")
    ready = condition(obj, "Ready")
    assert ready["reason"] == "LeaderWorkerSetMissing"
    assert ready["message"].startswith("LeaderWorkerSet/huge cannot be made: this cluster has no LeaderWorkerSet API")
    assert (
        "kubectl apply --server-side -f https://github.com/kubernetes-sigs/lws/releases/download/" in ready["message"]
    )
    events = kubectl.items("events", "")
    assert any(e.get("reason") == "LeaderWorkerSetMissing" and e["involvedObject"]["name"] == "huge" for e in events)
    # The operator says it cannot list the kind, and goes on serving everything else.
    assert "leaderworkersets (HTTP 404): going on without them" in op.log()
    assert condition(kubectl.get("llmd", "small"), "Ready")["status"] == "True"

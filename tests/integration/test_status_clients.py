"""Status as kstatus (Flux) and Argo CD read it, on the real control plane: scaled to zero
is Ready; a shortage of GPUs a node could offer is Reconciling, not Stalled."""

from __future__ import annotations

import json

import pytest

from support.cluster import Kubectl, condition, wait_for
from support.manifests import llmd

pytestmark = pytest.mark.usefixtures("operator")


def reason_is(kubectl, name: str, reason: str):
    def check():
        obj = kubectl.get("llmd", name)
        ready = condition(obj, "Ready")
        current = obj and (obj.get("status") or {}).get("observedGeneration") == obj["metadata"]["generation"]
        return obj if current and ready.get("reason") == reason else None

    return check


def test_scaled_to_zero_is_ready(kubectl):
    kubectl.apply(json.dumps(llmd("zero", gpus=1)))
    kubectl.run("wait", "--for=condition=Ready", "llmd/zero", "--timeout=60s")
    kubectl.run("scale", "llmd/zero", "--replicas=0")
    obj = wait_for("Ready=True reason ScaledToZero", reason_is(kubectl, "zero", "ScaledToZero"), 60)
    ready = condition(obj, "Ready")
    assert ready["status"] == "True" and "no pod serves the model; scale up to serve" in ready["message"]
    assert condition(obj, "Reconciling")["status"] == "False" and condition(obj, "Stalled")["status"] == "False"
    assert obj["status"]["phase"] == "ScaledToZero"
    assert kubectl.items("pods", "llm-operator.io/name=zero") == []
    kubectl.run("wait", "--for=condition=Ready", "llmd/zero", "--timeout=5s")
    row = kubectl.run("get", "llmd", "zero", "--no-headers").stdout.split()
    assert row[5:8] == ["0/0", "ScaledToZero", "ScaledToZero"], row


@pytest.fixture
def small_node(cluster, namespace):
    """A kwok node of this test's own with 2 GPUs, tainted so that only this test's pods land on it."""
    name = f"gpu-{namespace}"
    admin = Kubectl(cluster)
    admin.apply(f"""
apiVersion: v1
kind: Node
metadata:
  name: {name}
  annotations: {{kwok.x-k8s.io/node: fake}}
  labels: {{kubernetes.io/hostname: {name}, type: kwok, nvidia.com/gpu.product: NVIDIA-L4,
           nvidia.com/gpu.memory: "23034", test-pool: {namespace}}}
spec:
  taints:
  - {{key: nvidia.com/gpu, value: present, effect: NoSchedule}}
  - {{key: test-pool, value: {namespace}, effect: NoSchedule}}
status:
  capacity: {{cpu: "48", memory: 192Gi, pods: "110", nvidia.com/gpu: "2"}}
  allocatable: {{cpu: "47", memory: 180Gi, pods: "110", nvidia.com/gpu: "2"}}
""")
    wait_for(
        "the node to be Ready",
        lambda: any(
            c["type"] == "Ready" and c["status"] == "True"
            for c in admin.get("node", name)["status"].get("conditions", [])
        ),
        30,
    )
    # The apiserver taints a new node not-ready; the node lifecycle controller that would lift it
    # is off on the local plane (as for the cluster's own nodes, hack/localcluster.py).
    admin.run("taint", "nodes", name, "node.kubernetes.io/not-ready:NoSchedule-")
    yield {
        "nodeSelector": {"test-pool": namespace},
        "tolerations": [{"key": "test-pool", "operator": "Equal", "value": namespace, "effect": "NoSchedule"}],
    }
    admin.run("delete", "node", name, "--wait=false", check=False)


def test_a_temporary_shortage_of_gpus_is_reconciling_not_stalled(kubectl, small_node):
    """Three replicas of one GPU each on a node with two: two serve, one waits."""
    kubectl.apply(json.dumps(llmd("short", gpus=1, replicas=3, scheduling=small_node)))
    obj = wait_for(
        "Ready=False reason WaitingForGPUs with 2 serving",
        lambda: (o := reason_is(kubectl, "short", "WaitingForGPUs")()) and o["status"].get("readyReplicas") == 2 and o,
        60,
    )
    ready = condition(obj, "Ready")
    assert ready["status"] == "False"
    assert ready["message"].startswith("2 of 3 replicas serve; 1 wait for GPUs that no node has free now"), ready[
        "message"
    ]
    assert "Insufficient nvidia.com/gpu" in ready["message"]
    assert condition(obj, "Reconciling")["status"] == "True" and condition(obj, "Stalled")["status"] == "False"
    assert obj["status"]["phase"] == "Unschedulable"
    wide = kubectl.run("get", "llmd", "short", "-o", "wide").stdout
    assert "WaitingForGPUs" in wide and "2 of 3 replicas serve" in wide, wide
    # Asking for what fits: Ready, without any other change.
    kubectl.run("scale", "llmd/short", "--replicas=2")
    kubectl.run("wait", "--for=condition=Ready", "llmd/short", "--timeout=60s")
    assert condition(kubectl.get("llmd", "short"), "Ready")["reason"] == "Ready"


def test_a_taint_the_pods_do_not_tolerate_is_stalled_naming_it_until_the_spec_tolerates_it(kubectl, small_node):
    """The test's node is tainted test-pool=<namespace>:NoSchedule: without the toleration no node
    could ever hold the pod (Stalled, the taint named); with it, the pod is placed."""
    untolerated = {"nodeSelector": small_node["nodeSelector"]}
    kubectl.apply(json.dumps(llmd("tainted", gpus=1, scheduling=untolerated)))
    obj = wait_for("Ready=False reason NoNodeFits", reason_is(kubectl, "tainted", "NoNodeFits"), 60)
    ready = condition(obj, "Ready")
    assert ready["message"].startswith("1 of 1 replicas cannot be scheduled, and no node could ever hold one: ")
    assert (
        f"; 1 node with 2 x NVIDIA-L4 has the taint test-pool={kubectl.namespace}:NoSchedule, which the pods do "
        "not tolerate;"
    ) in ready["message"], ready["message"]
    assert (
        f"2 nodes with 4 x NVIDIA-L4 lack the label test-pool={kubectl.namespace} of spec.scheduling"
        in ready["message"]
    )
    assert "untolerated taint" in ready["message"]  # the scheduler's own words follow
    assert condition(obj, "Stalled")["status"] == "True" and obj["status"]["phase"] == "Failed"
    kubectl.run("patch", "llmd", "tainted", "--type=merge", "-p", json.dumps({"spec": {"scheduling": small_node}}))
    kubectl.run("wait", "--for=condition=Ready", "llmd/tainted", "--timeout=60s")
    assert condition(kubectl.get("llmd", "tainted"), "Stalled")["status"] == "False"

"""Where the download Job's pod runs, on the real control plane: on a tainted node pool the
serving pods are kept to (spec.scheduling), or on storage nodes of its own (spec.cache.scheduling);
a change of the scheduling does not download again what is already cached."""

from __future__ import annotations

import json

import pytest

from support.cluster import Kubectl, condition, wait_for
from support.manifests import CACHE_STORAGE_CLASS, llmd

pytestmark = pytest.mark.usefixtures("operator")


@pytest.fixture
def kwok_node(cluster):
    """`kwok_node(name, labels, taints, gpus)`: a kwok node of the test's own, Ready, deleted after."""
    admin = Kubectl(cluster)
    made: list[str] = []

    def make(name: str, labels: dict, taints: list[dict], gpus: int = 0) -> None:
        extra = {"nvidia.com/gpu": str(gpus)} if gpus else {}
        admin.apply(
            json.dumps(
                {
                    "apiVersion": "v1",
                    "kind": "Node",
                    "metadata": {
                        "name": name,
                        "annotations": {"kwok.x-k8s.io/node": "fake"},
                        "labels": {"kubernetes.io/hostname": name, "type": "kwok", **labels},
                    },
                    "spec": {"taints": taints},
                    "status": {
                        "capacity": {"cpu": "16", "memory": "64Gi", "pods": "110", **extra},
                        "allocatable": {"cpu": "15", "memory": "60Gi", "pods": "110", **extra},
                    },
                }
            )
        )
        made.append(name)
        wait_for(
            f"node {name} to be Ready",
            lambda: any(
                c["type"] == "Ready" and c["status"] == "True"
                for c in ((admin.get("node", name) or {}).get("status") or {}).get("conditions", [])
            ),
            30,
        )
        # The apiserver taints a new node not-ready; the node lifecycle controller that would lift
        # it is off on the local plane (hack/localcluster.py).
        admin.run("taint", "nodes", name, "node.kubernetes.io/not-ready:NoSchedule-", check=False)

    yield make
    for name in made:
        admin.run("delete", "node", name, "--wait=false", check=False)


def cache(**extra) -> dict:
    return {"enabled": True, "size": "100Gi", "storageClassName": CACHE_STORAGE_CLASS, **extra}


def download_pod(kubectl, instance: str) -> dict:
    (job,) = kubectl.items("jobs", f"app.kubernetes.io/instance={instance}")
    return wait_for(
        "the download pod to be bound to a node",
        lambda: next(
            (p for p in kubectl.items("pods", f"job-name={job['metadata']['name']}") if p["spec"].get("nodeName")),
            None,
        ),
        30,
    )


def test_the_download_runs_on_the_tainted_pool_the_serving_pods_are_kept_to(kubectl, namespace, volume, kwok_node):
    node = f"pool-{namespace}"
    pool = {"key": "test-pool", "operator": "Equal", "value": namespace, "effect": "NoSchedule"}
    kwok_node(
        node,
        {"test-pool": namespace, "nvidia.com/gpu.product": "NVIDIA-L4"},
        [
            {"key": "nvidia.com/gpu", "value": "present", "effect": "NoSchedule"},
            {"key": "test-pool", "value": namespace, "effect": "NoSchedule"},
        ],
        gpus=2,
    )
    volume("pooled-weights")
    scheduling = {"nodeSelector": {"test-pool": namespace}, "tolerations": [pool]}
    kubectl.apply(json.dumps(llmd("pooled", gpus=1, cache=cache(), scheduling=scheduling)))
    kubectl.run("wait", "--for=condition=Ready", "llmd/pooled", "--timeout=60s")

    # Without the pool's toleration the download could only have gone to the one untainted node.
    pod = download_pod(kubectl, "pooled")
    assert pod["spec"]["nodeName"] == node
    assert pod["spec"]["nodeSelector"] == {"test-pool": namespace}
    assert pool in pod["spec"]["tolerations"]
    assert {"key": "nvidia.com/gpu", "operator": "Exists", "effect": "NoSchedule"} in pod["spec"]["tolerations"]
    (serving,) = kubectl.items("pods", "llm-operator.io/name=pooled")
    assert serving["spec"]["nodeName"] == node

    # A new toleration: the serving pods roll; the download that is done is not done again.
    (job,) = kubectl.items("jobs", "app.kubernetes.io/instance=pooled")
    extra = {"key": "maintenance", "operator": "Exists", "effect": "NoSchedule"}
    patch = {"spec": {"scheduling": {**scheduling, "tolerations": [pool, extra]}}}
    kubectl.run("patch", "llmd", "pooled", "--type=merge", "-p", json.dumps(patch))
    wait_for(
        "the new generation written and Ready",
        lambda: (
            (o := kubectl.get("llmd", "pooled"))
            and o["status"].get("observedGeneration") == o["metadata"]["generation"]
            and condition(o, "Ready").get("status") == "True"
        ),
        60,
    )
    assert extra in kubectl.get("deployment", "pooled")["spec"]["template"]["spec"]["tolerations"]
    (after,) = kubectl.items("jobs", "app.kubernetes.io/instance=pooled")
    assert after["metadata"]["uid"] == job["metadata"]["uid"] and not after["metadata"].get("deletionTimestamp")
    assert extra not in after["spec"]["template"]["spec"]["tolerations"]


def test_cache_scheduling_puts_the_download_on_a_storage_node_of_its_own(kubectl, namespace, volume, kwok_node):
    node = f"storage-{namespace}"
    taint = {"key": "storage", "operator": "Equal", "value": namespace, "effect": "NoSchedule"}
    kwok_node(node, {"storage": namespace}, [{"key": "storage", "value": namespace, "effect": "NoSchedule"}])
    volume("stored-weights")
    own = {"nodeSelector": {"storage": namespace}, "tolerations": [taint]}
    kubectl.apply(json.dumps(llmd("stored", gpus=1, cache=cache(scheduling=own))))
    kubectl.run("wait", "--for=condition=Ready", "llmd/stored", "--timeout=60s")

    pod = download_pod(kubectl, "stored")
    assert pod["spec"]["nodeName"] == node
    assert pod["spec"]["nodeSelector"] == {"storage": namespace} and taint in pod["spec"]["tolerations"]
    # As written: not the GPU taint's toleration the serving pods get.
    assert not [t for t in pod["spec"]["tolerations"] if t.get("key") == "nvidia.com/gpu"]
    # The serving pod is not kept to the storage node (which has no GPUs).
    (serving,) = kubectl.items("pods", "llm-operator.io/name=stored")
    assert serving["spec"]["nodeName"] != node and "nodeSelector" not in serving["spec"]

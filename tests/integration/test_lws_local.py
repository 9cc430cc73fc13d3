"""The local control plane runs the real LeaderWorkerSet controller: LWS's own webhook
labels a group's pods and gives them their environment and affinity, its controller makes
the StatefulSets, and a group restarts as one, as in a cluster with LWS installed."""

from __future__ import annotations

import hashlib
import json

from support.cluster import Kubectl, condition, ready, wait_for, wait_for_other_namespaces_to_go

LWS = "leaderworkerset.sigs.k8s.io"
H100 = "NVIDIA-H100-80GB-HBM3"
H100_NODES = {"gpu-h100-0", "gpu-h100-1"}


def leaderworkerset(name: str, topology: str) -> str:
    """A group of two pods, each asking for a whole H100 node's 8 GPUs, placed exclusively
    by `topology` and restarted as one when any of its pods goes."""
    pod = {
        # A deleted pod lingers a second, as under a kubelet stopping its containers: LWS
        # recreates the group on seeing a member being deleted.
        "metadata": {"annotations": {"pod-delete.stage.kwok.x-k8s.io/delay": "1s"}},
        "spec": {
            "nodeSelector": {"nvidia.com/gpu.product": H100},
            "tolerations": [{"key": "nvidia.com/gpu", "operator": "Exists", "effect": "NoSchedule"}],
            "containers": [
                {"name": "engine", "image": "registry.invalid/none", "resources": {"limits": {"nvidia.com/gpu": "8"}}}
            ],
        },
    }
    return json.dumps(
        {
            "apiVersion": "leaderworkerset.x-k8s.io/v1",
            "kind": "LeaderWorkerSet",
            "metadata": {"name": name, "annotations": {f"{LWS}/exclusive-topology": topology}},
            "spec": {
                "replicas": 1,
                "leaderWorkerTemplate": {
                    "size": 2,
                    "restartPolicy": "RecreateGroupOnPodRestart",
                    "leaderTemplate": pod,
                    "workerTemplate": pod,
                },
            },
        }
    )


def env_of(pod: dict) -> dict:
    return {e["name"]: e.get("value") for e in pod["spec"]["containers"][0].get("env", [])}


def delete_and_wait(kubectl: Kubectl) -> None:
    """The group goes, so that the next tests find both H100 nodes free."""
    kubectl.run("delete", "leaderworkerset", "--all", "--wait=true", "--timeout=60s")
    wait_for("the group's pods to be gone", lambda: not kubectl.items("pods"), 60)


def test_a_group_gets_lws_labels_env_and_affinity_from_its_webhook_and_restarts_as_one(kubectl):
    # The exclusive topology is a domain both H100 nodes share: LWS keeps a whole group in
    # one domain (by kubernetes.io/hostname, on one node; see the next test).
    topology = "node.kubernetes.io/instance-type"
    wait_for_other_namespaces_to_go(kubectl)  # their pods may still hold the H100s
    kubectl.apply(leaderworkerset("group", topology))
    try:

        def both_scheduled():
            leader, worker = kubectl.get("pod", "group-0"), kubectl.get("pod", "group-0-1")
            return (
                leader
                and worker
                and leader["spec"].get("nodeName")
                and worker["spec"].get("nodeName")
                and (leader, worker)
            )

        leader, worker = wait_for("the leader and the worker pod to be scheduled", both_scheduled, 60)
        ns = kubectl.namespace

        # Set by LWS's pod webhook (the StatefulSets' templates carry only the name, and the
        # worker's the group index and key): the leader's group index and key, each pod's
        # worker index, and the environment every member reads.
        group_key = hashlib.sha1(f"{ns}/group-0".encode()).hexdigest()  # LWS's: sha1 of namespace/leader
        for pod, index in ((leader, "0"), (worker, "1")):
            labels = pod["metadata"]["labels"]
            assert (
                labels[f"{LWS}/name"],
                labels[f"{LWS}/group-index"],
                labels[f"{LWS}/worker-index"],
                labels[f"{LWS}/group-key"],
            ) == ("group", "0", index, group_key)
        for pod, index in ((leader, "0"), (worker, "1")):
            assert env_of(pod) == {
                "LWS_LEADER_ADDRESS": f"group-0.group.{ns}",
                "LWS_GROUP_SIZE": "2",
                "LWS_WORKER_INDEX": index,
            }
        # The exclusive placement: the leader with the webhook's affinity to its own group
        # and against every other group in the domain; the workers pinned by the controller
        # to the domain the leader landed in.
        affinity = leader["spec"]["affinity"]
        (together,) = affinity["podAffinity"]["requiredDuringSchedulingIgnoredDuringExecution"]
        assert together["topologyKey"] == topology
        assert together["labelSelector"]["matchExpressions"] == [
            {"key": f"{LWS}/group-key", "operator": "In", "values": [group_key]}
        ]
        (apart,) = affinity["podAntiAffinity"]["requiredDuringSchedulingIgnoredDuringExecution"]
        assert apart["topologyKey"] == topology
        assert worker["spec"]["nodeSelector"] == {"nvidia.com/gpu.product": H100, topology: "p5.48xlarge"}

        # 8 GPUs each: one H100 node per pod.
        assert {leader["spec"]["nodeName"], worker["spec"]["nodeName"]} == H100_NODES

        wait_for(
            "both pods Ready",
            lambda: ready(kubectl.get("pod", "group-0")) and ready(kubectl.get("pod", "group-0-1")),
            60,
        )
        wait_for(
            "the LeaderWorkerSet's readyReplicas=1",
            lambda: (kubectl.get("leaderworkerset", "group").get("status") or {}).get("readyReplicas") == 1,
            60,
        )

        # A worker goes: LWS recreates the whole group, the leader too.
        kubectl.run("delete", "pod", "group-0-1", "--wait=false")
        wait_for(
            "a new leader pod",
            lambda: (p := kubectl.get("pod", "group-0")) and p["metadata"]["uid"] != leader["metadata"]["uid"],
            60,
        )

        def group_back():
            new_leader, new_worker = kubectl.get("pod", "group-0"), kubectl.get("pod", "group-0-1")
            return (
                ready(new_leader)
                and ready(new_worker)
                and new_worker["metadata"]["uid"] != worker["metadata"]["uid"]
                and (new_leader, new_worker)
            )

        new_leader, new_worker = wait_for("the recreated group Ready", group_back, 60)
        assert new_leader["metadata"]["uid"] != leader["metadata"]["uid"]
        assert {new_leader["spec"]["nodeName"], new_worker["spec"]["nodeName"]} == H100_NODES
        wait_for(
            "the LeaderWorkerSet's readyReplicas=1 again",
            lambda: (kubectl.get("leaderworkerset", "group").get("status") or {}).get("readyReplicas") == 1,
            60,
        )
        assert any(
            e["reason"] == "RecreateGroup"
            for e in kubectl.items("events")
            if e["involvedObject"]["kind"] == "LeaderWorkerSet"
        )
    finally:
        delete_and_wait(kubectl)


def test_exclusive_topology_by_hostname_keeps_a_group_on_one_node(kubectl):
    """LWS pins a group's workers to its leader's domain: by hostname, two pods of 8 GPUs
    each can never both run, and the worker waits on the scheduler."""
    wait_for_other_namespaces_to_go(kubectl)
    kubectl.apply(leaderworkerset("one-node", "kubernetes.io/hostname"))
    try:
        leader = wait_for(
            "the leader scheduled",
            lambda: (p := kubectl.get("pod", "one-node-0")) and p["spec"].get("nodeName") and p,
            60,
        )

        def unschedulable():
            worker = kubectl.get("pod", "one-node-0-1")
            cond = condition(worker, "PodScheduled")
            return cond.get("reason") == "Unschedulable" and (worker, cond)

        worker, cond = wait_for("the worker unschedulable", unschedulable, 60)
        assert worker["spec"]["nodeSelector"]["kubernetes.io/hostname"] == leader["spec"]["nodeName"]
        assert "Insufficient nvidia.com/gpu" in cond["message"], cond["message"]
    finally:
        delete_and_wait(kubectl)


def test_pods_outside_a_leaderworkerset_are_not_touched_by_its_webhook(kubectl):
    """The pod webhook acts on LWS pods only (its objectSelector, as LWS ships it)."""
    kubectl.run("run", "plain", "--image=registry.invalid/none", "--restart=Never")
    pod = kubectl.get("pod", "plain")
    assert not any(k.startswith(LWS) for k in pod["metadata"].get("labels", {}))
    assert "env" not in pod["spec"]["containers"][0]
    hooks = Kubectl(kubectl.cluster).get("mutatingwebhookconfiguration", "lws-mutating-webhook-configuration")
    pod_hook = next(h for h in hooks["webhooks"] if h["name"] == "mpod.kb.io")
    assert pod_hook["objectSelector"] == {"matchExpressions": [{"key": f"{LWS}/name", "operator": "Exists"}]}
    assert pod_hook["clientConfig"]["url"].startswith("https://127.0.0.1:")

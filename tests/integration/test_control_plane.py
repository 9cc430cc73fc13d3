"""The local control plane behaves like a real cluster with GPU nodes (issue 1)."""

from __future__ import annotations

import subprocess

import pytest

from localcluster import LocalCluster, pid_alive
from support.cluster import Kubectl, wait_for
from support.gatewayprocess import wait_gateway_authorized

GPU_TOLERATION = '[{"key": "nvidia.com/gpu", "operator": "Exists", "effect": "NoSchedule"}]'


def gpu_deployment(name: str, gpus: int, tolerate: bool = True) -> str:
    tolerations = f"tolerations: {GPU_TOLERATION}" if tolerate else ""
    resources = f'{{limits: {{nvidia.com/gpu: "{gpus}"}}}}' if gpus else "{}"
    return f"""
apiVersion: apps/v1
kind: Deployment
metadata: {{name: {name}}}
spec:
  selector: {{matchLabels: {{app: {name}}}}}
  template:
    metadata: {{labels: {{app: {name}}}}}
    spec:
      {tolerations}
      containers:
      - name: c
        image: registry.invalid/none
        resources: {resources}
"""


def test_nodes_are_labelled_like_gpu_feature_discovery(cluster):
    nodes = {n["metadata"]["name"]: n for n in Kubectl(cluster).items("nodes")}
    h100 = nodes["gpu-h100-0"]
    assert h100["metadata"]["labels"]["nvidia.com/gpu.product"] == "NVIDIA-H100-80GB-HBM3"
    assert h100["metadata"]["labels"]["nvidia.com/gpu.memory"] == "81559"
    assert h100["metadata"]["labels"]["nvidia.com/gpu.count"] == "8"
    assert h100["status"]["allocatable"]["nvidia.com/gpu"] == "8"
    assert {"key": "nvidia.com/gpu", "value": "present", "effect": "NoSchedule"} in h100["spec"]["taints"]
    l4 = nodes["gpu-l4-0"]
    assert l4["metadata"]["labels"]["nvidia.com/gpu.product"] == "NVIDIA-L4"
    assert l4["status"]["allocatable"]["nvidia.com/gpu"] == "4"
    assert "nvidia.com/gpu" not in nodes["cpu-0"]["status"]["allocatable"]
    assert sorted(nodes) == ["cpu-0", "gpu-h100-0", "gpu-h100-1", "gpu-l4-0", "gpu-l4-1"]
    assert not nodes["cpu-0"]["spec"].get("taints")


def test_eight_gpu_pod_lands_on_the_h100_node_and_is_ready(kubectl):
    kubectl.apply(gpu_deployment("eight", 8))
    wait_for("readyReplicas=1", lambda: kubectl.get("deployment", "eight")["status"].get("readyReplicas") == 1, 30)
    (pod,) = kubectl.items("pods", "app=eight")
    node = kubectl.get("node", pod["spec"]["nodeName"])
    # Only the H100 nodes have 8 GPUs.
    assert node["metadata"]["labels"]["nvidia.com/gpu.product"] == "NVIDIA-H100-80GB-HBM3"


def test_nine_gpu_pod_stays_pending_with_the_schedulers_message(kubectl):
    kubectl.apply(gpu_deployment("nine", 9))

    def unschedulable():
        for pod in kubectl.items("pods", "app=nine"):
            for c in pod["status"].get("conditions", []):
                if c["type"] == "PodScheduled" and c["status"] == "False":
                    return c
        return None

    cond = wait_for("PodScheduled=False", unschedulable, 30)
    assert cond["reason"] == "Unschedulable"
    assert "Insufficient nvidia.com/gpu" in cond["message"]
    (pod,) = kubectl.items("pods", "app=nine")
    assert pod["status"]["phase"] == "Pending" and not pod["spec"].get("nodeName")


def test_pods_without_the_toleration_never_land_on_gpu_nodes(kubectl):
    kubectl.apply(gpu_deployment("plain", 0, tolerate=False))
    kubectl.run("scale", "deployment/plain", "--replicas=6")
    wait_for("6 ready replicas", lambda: kubectl.get("deployment", "plain")["status"].get("readyReplicas") == 6, 30)
    nodes = {p["spec"]["nodeName"] for p in kubectl.items("pods", "app=plain")}
    assert nodes == {"cpu-0"}


def test_garbage_collector_removes_owned_objects(kubectl):
    owner = kubectl.apply("apiVersion: v1\nkind: ConfigMap\nmetadata: {name: owner}\n")
    uid = kubectl.get("configmap", "owner")["metadata"]["uid"]
    kubectl.apply(f"""
apiVersion: v1
kind: ConfigMap
metadata:
  name: owned
  ownerReferences: [{{apiVersion: v1, kind: ConfigMap, name: owner, uid: {uid}}}]
""")
    assert owner.returncode == 0 and kubectl.get("configmap", "owned") is not None
    kubectl.run("delete", "configmap", "owner")
    wait_for("the owned ConfigMap to be collected", lambda: kubectl.get("configmap", "owned") is None, 30)


def test_job_pod_completes_and_job_succeeds(kubectl):
    kubectl.apply("""
apiVersion: batch/v1
kind: Job
metadata: {name: once}
spec:
  backoffLimit: 0
  template:
    spec:
      restartPolicy: Never
      containers: [{name: c, image: registry.invalid/none}]
""")
    job = wait_for(
        "Job Complete",
        lambda: (
            (j := kubectl.get("job", "once"))
            and any(c["type"] == "Complete" and c["status"] == "True" for c in j["status"].get("conditions", []))
            and j
        ),
        30,
    )
    assert job["status"]["succeeded"] == 1
    (pod,) = kubectl.items("pods", "job-name=once")
    assert pod["status"]["phase"] == "Succeeded"


def test_a_failing_job_pod_fails_the_job(kubectl):
    """The kwok stage honours an exit code, so failure paths can be tested too."""
    kubectl.apply("""
apiVersion: batch/v1
kind: Job
metadata: {name: broken}
spec:
  backoffLimit: 0
  template:
    metadata:
      annotations:
        pod-complete.stage.kwok.x-k8s.io/exit-code: "3"
        pod-complete.stage.kwok.x-k8s.io/message: "download stalled"
    spec:
      restartPolicy: Never
      containers: [{name: c, image: registry.invalid/none}]
""")
    wait_for(
        "Job Failed",
        lambda: (
            (j := kubectl.get("job", "broken"))
            and any(c["type"] == "Failed" and c["status"] == "True" for c in j["status"].get("conditions", []))
        ),
        30,
    )
    (pod,) = kubectl.items("pods", "job-name=broken")
    term = pod["status"]["containerStatuses"][0]["state"]["terminated"]
    assert term["exitCode"] == 3 and term["message"] == "download stalled"


@pytest.mark.parametrize("lws", [True, False], ids=["with-lws", "without-lws"])
def test_cluster_down_leaves_no_process(tmp_path, lws):
    """A second, throwaway plane: up, then down, then nothing of it runs; without LWS, as
    a cluster that has not installed it: no controller, no CRD, no webhook."""
    plane = LocalCluster(tmp_path / "plane", lws=lws)
    plane.up()
    pids = plane.pids()
    assert set(pids) == {"etcd", "kube-apiserver", "kube-controller-manager", "kube-scheduler", "kwok"} | (
        {"lws-manager"} if lws else set()
    )
    assert all(pid_alive(p) for p in pids.values())
    admin = Kubectl(plane)
    assert (admin.get("crd", "leaderworkersets.leaderworkerset.x-k8s.io") is not None) == lws
    assert bool(admin.items("mutatingwebhookconfigurations")) == lws
    plane.down()
    assert not any(pid_alive(p) for p in pids.values())
    ps = subprocess.run(["ps", "-eo", "pid,args"], capture_output=True, text=True).stdout
    assert str(tmp_path / "plane") not in ps, ps


def test_the_apiserver_alone_stops_and_comes_back_with_the_same_port_certificates_and_data(cluster, operator, gateway):
    admin = Kubectl(cluster)
    # The session's operator sees the outage: a restarting apiserver answers 403 until its RBAC
    # caches are filled, which says nothing about the chart's rules.
    outage_from, gateway_from = operator.log_size(), gateway.log_size()
    admin.run("create", "configmap", "survives-outage", "-n", "default", "--from-literal=k=v")
    before = cluster.pids()
    server = cluster.server
    try:
        cluster.stop_apiserver()
        assert not pid_alive(before["kube-apiserver"])
        # The rest of the plane keeps running through the outage.
        assert all(pid_alive(pid) for name, pid in before.items() if name != "kube-apiserver")
        refused = admin.run("get", "--raw", "/readyz", check=False)
        assert refused.returncode != 0 and "refused" in refused.stderr, refused.stderr
    finally:
        if not pid_alive(cluster.pids()["kube-apiserver"]):
            secs = cluster.start_apiserver()
            print(f"\nkube-apiserver back in {secs:.1f}s")
    after = cluster.pids()
    assert cluster.server == server and after["kube-apiserver"] != before["kube-apiserver"]
    assert {n: p for n, p in after.items() if n != "kube-apiserver"} == {
        n: p for n, p in before.items() if n != "kube-apiserver"
    }
    # Same certificates (the old kubeconfig still works) and the same etcd (the data is there).
    assert Kubectl(cluster, "default").get("configmap", "survives-outage")["data"] == {"k": "v"}
    Kubectl(cluster, "default").run("delete", "configmap", "survives-outage")
    operator.excused.append((outage_from, operator.log_size()))
    wait_gateway_authorized(Kubectl(cluster))
    gateway.excused.append((gateway_from, gateway.log_size()))  # the session's gateway, likewise

"""The local control plane (hack/localcluster.py) as the benchmark needs it: the controller
manager's rate limit raised, the CRD, a /16 ServiceCIDR, more H100 nodes; waits until the
garbage collector knows LLMDeployments and until the Deployment controller caught up."""

from __future__ import annotations

import os
import time

from llm_operator import api
from llm_operator.kube.client import Kube, KubeError
from localcluster import LocalCluster, tools_dir

from . import ROOT
from .apiserver import Raw, count_objects
from .config import (
    BASELINE_NAMESPACES,
    CONTROLLER_QPS,
    EXTRA_H100_NODES,
    EXTRA_SERVICE_CIDR,
    OPERATOR_NAMESPACES,
    BenchError,
    log,
)
from .objects import manifest, spec_of


class BenchCluster(LocalCluster):
    """The local control plane, with the controller manager's client rate limit raised:
    at its default (20 requests/s) its Deployment controller needs minutes to catch up
    with a burst of 1,000 Deployments, and every later measurement would wait behind it."""

    def _spawn(self, name: str, args: list[str]):
        if name == "kube-controller-manager":
            args = [*args, f"--kube-api-qps={CONTROLLER_QPS}", f"--kube-api-burst={2 * CONTROLLER_QPS}"]
        return super()._spawn(name, args)


def extra_nodes_yaml(count: int) -> str:
    """H100 nodes like hack/kwok/nodes.yaml's, managed by kwok (the annotation)."""
    docs = []
    for i in range(1, count + 1):
        name = f"gpu-h100-bench-{i}"
        docs.append(f"""apiVersion: v1
kind: Node
metadata:
  name: {name}
  annotations: {{kwok.x-k8s.io/node: fake}}
  labels:
    kubernetes.io/hostname: {name}
    kubernetes.io/os: linux
    kubernetes.io/arch: amd64
    type: kwok
    nvidia.com/gpu.present: "true"
    nvidia.com/gpu.product: NVIDIA-H100-80GB-HBM3
    nvidia.com/gpu.memory: "81559"
    nvidia.com/gpu.count: "8"
spec:
  taints:
  - {{key: nvidia.com/gpu, value: present, effect: NoSchedule}}
status:
  capacity: {{cpu: "192", memory: 2Ti, pods: "110", nvidia.com/gpu: "8"}}
  allocatable: {{cpu: "190", memory: 1900Gi, pods: "110", nvidia.com/gpu: "8"}}
""")
    return "---\n".join(docs)


class ClusterSetup:
    """Bench's cluster half: setup, and the waits on the control plane's controllers."""

    def setup(self) -> None:
        log(f"starting a local control plane in {self.work}")
        self.cluster = BenchCluster(self.work / "cluster", bin_dir=tools_dir())
        secs = self.cluster.up()
        log(f"control plane up in {secs:.1f}s")
        os.environ["KUBECONFIG"] = str(self.cluster.kubeconfig)
        from kubernetes import client, config

        config.load_kube_config(config_file=str(self.cluster.kubeconfig))
        self.kube = Kube(client.ApiClient())
        self.raw = Raw.of(self.cluster)
        k = self.cluster.kubectl
        k("apply", "--server-side", "-f", str(ROOT / "crds" / "llmdeployments.yaml"))
        k("wait", "--for=condition=Established", "--timeout=60s", "crd/llmdeployments.llm-operator.io")
        # hack/localcluster.py gives Services a /24 (254 addresses); a benchmark makes more.
        k("apply", "-f", "-", input=EXTRA_SERVICE_CIDR)
        k("wait", "--for=condition=Ready", "--timeout=60s", "servicecidr/bench-extra")
        k("apply", "-f", "-", input=extra_nodes_yaml(EXTRA_H100_NODES))
        extra = {f"gpu-h100-bench-{i}" for i in range(1, EXTRA_H100_NODES + 1)}
        deadline = time.monotonic() + 60
        while True:
            nodes = self.kube.list("v1", "Node", None)
            ready = {
                n["metadata"]["name"]
                for n in nodes
                if any(
                    c.get("type") == "Ready" and c.get("status") == "True"
                    for c in (n.get("status") or {}).get("conditions") or []
                )
            }
            if extra <= ready and len(ready) == len(nodes):
                break
            if time.monotonic() > deadline:
                raise BenchError(f"the nodes did not all turn Ready within 60s (ready: {sorted(ready)})")
            time.sleep(0.5)
        gpus = sum(int((n.get("status") or {}).get("allocatable", {}).get("nvidia.com/gpu", 0)) for n in nodes)
        if gpus < self.args.n_ready:
            raise BenchError(f"the cluster has {gpus} GPUs, fewer than --n-ready {self.args.n_ready} (one each)")
        self.cluster.kubectl_ok("taint", "nodes", "--all", "node.kubernetes.io/not-ready:NoSchedule-")
        for ns in BASELINE_NAMESPACES + OPERATOR_NAMESPACES + ["bench-setup"]:
            k("create", "namespace", ns)
        # Pods are refused until their namespace's default ServiceAccount exists (the controller manager makes it).
        deadline = time.monotonic() + 60
        while not self.cluster.kubectl_ok("get", "serviceaccount", "default", "-n", "bench-ready"):
            if time.monotonic() > deadline:
                raise BenchError("ServiceAccount bench-ready/default did not appear within 60s")
            time.sleep(0.5)
        log(f"CRD installed, a /16 ServiceCIDR added, {EXTRA_H100_NODES} extra H100 nodes ready")
        self.wait_gc_knows_crd()

    def wait_gc_knows_crd(self, timeout: float = 120) -> None:
        """Wait until the controller manager's garbage collector knows LLMDeployments. It
        finds new resources by discovery every 30 s; until then it fails and retries every
        child owned by an LLMDeployment, and once it knows them it reads each such owner
        (GET), all at once: a few requests per object of the first bursts, landing in
        whichever burst runs then. A probe: a ConfigMap owned by a deleted LLMDeployment,
        which the collector removes only once it knows the kind; a fresh one every 2 s
        (a failed one is retried later and later)."""
        ns, started = "bench-setup", time.monotonic()
        cms = f"/api/v1/namespaces/{ns}/configmaps"
        probes: list[str] = []
        while time.monotonic() - started < timeout:
            name = f"gc-probe-{len(probes)}"
            owner = self.kube.request(
                "POST", Kube.path(api.API_VERSION, api.KIND, ns), body=manifest(name, ns, spec_of(1, 0))
            )
            ref = {"apiVersion": api.API_VERSION, "kind": api.KIND, "name": name, "uid": owner["metadata"]["uid"]}
            self.kube.request(
                "POST",
                cms,
                body={"apiVersion": "v1", "kind": "ConfigMap", "metadata": {"name": name, "ownerReferences": [ref]}},
            )
            self.kube.delete(api.API_VERSION, api.KIND, ns, name)
            probes.append(name)
            deadline = time.monotonic() + 2
            while time.monotonic() < deadline:
                left = [
                    c["metadata"]["name"]
                    for c in self.kube.request("GET", cms)["items"]
                    if c["metadata"]["name"].startswith("gc-probe-")
                ]
                if len(left) < len(probes):
                    for name in left:
                        try:
                            self.kube.request("DELETE", f"{cms}/{name}")
                        except KubeError as err:
                            if err.status != 404:  # the collector got there first
                                raise
                    log(
                        f"  the garbage collector knows LLMDeployments ({time.monotonic() - started:.0f}s after asking)"
                    )
                    self.wait_api_quiet()  # its reads of the other probes' owners
                    return
                time.sleep(0.5)
        log(f"  note: the garbage collector did not collect a probe within {timeout:.0f}s; going on")

    def wait_controllers(self, timeout: float = 300) -> None:
        """Wait until the Deployment controller has caught up (a ReplicaSet for every
        Deployment), so that a burst does not start behind the previous one's work."""
        started = time.monotonic()
        while True:
            deployments = count_objects(self.raw, "/apis/apps/v1/deployments")
            replicasets = count_objects(self.raw, "/apis/apps/v1/replicasets")
            if replicasets >= deployments:
                break
            if time.monotonic() - started > timeout:
                raise BenchError(
                    f"the Deployment controller did not catch up within {timeout:.0f}s "
                    f"({replicasets} ReplicaSets for {deployments} Deployments)"
                )
            time.sleep(2)
        waited = time.monotonic() - started
        if waited > 1:
            log(f"  waited {waited:.0f}s for the Deployment controller to catch up")

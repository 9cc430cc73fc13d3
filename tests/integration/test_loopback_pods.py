"""Pods of the local plane get loopback IPs, so that tests can send traffic to a pod's own
address and nowhere else; the apiserver refuses those IPs in EndpointSlices, so on this
plane whoever needs a pod's address reads the pod, not an EndpointSlice."""

from __future__ import annotations

import ipaddress
import json

from support.cluster import Kubectl, wait_for
from support.loopback import LOOPBACK, pod_url, require_loopback

GPU_NODES = ["gpu-h100-0", "gpu-h100-1", "gpu-l4-0", "gpu-l4-1"]
# Where the plane's own components listen (127.0.0.1); no pod address may fall in it.
PLANE = ipaddress.IPv4Network("127.0.0.0/16")
# kwok's --cidr (hack/localcluster.py): pod IPs on nodes without a podCIDR of their own.
KWOK_FALLBACK = ipaddress.IPv4Network("127.244.0.0/16")
LOOPBACK_SENTENCE = "may not be in the loopback range (127.0.0.0/8, ::1/128)"


def pinned_pod(name: str, node: str, extra_tolerations: list[dict] = ()) -> dict:
    return {
        "apiVersion": "v1",
        "kind": "Pod",
        "metadata": {"name": name, "labels": {"app": "loopback"}},
        "spec": {
            "nodeSelector": {"kubernetes.io/hostname": node},
            "tolerations": [
                {"key": "nvidia.com/gpu", "operator": "Exists", "effect": "NoSchedule"},
                *extra_tolerations,
            ],
            "containers": [{"name": "c", "image": "registry.invalid/none"}],
        },
    }


def pod_ip(kubectl, name: str) -> str:
    return wait_for(
        f"pod {name} to get an IP", lambda: ((kubectl.get("pod", name) or {}).get("status") or {}).get("podIP"), 30
    )


def test_a_pod_on_each_gpu_node_gets_an_ip_in_its_nodes_loopback_podcidr(cluster, kubectl):
    nodes = {n["metadata"]["name"]: n for n in Kubectl(cluster).items("nodes")}
    cidrs = {name: nodes[name]["spec"].get("podCIDRs") for name in GPU_NODES}
    assert all(c and len(c) == 1 and c[0] == nodes[n]["spec"].get("podCIDR") for n, c in cidrs.items()), cidrs
    networks = {name: ipaddress.IPv4Network(c[0]) for name, c in cidrs.items()}
    assert len(set(networks.values())) == len(GPU_NODES), f"nodes share a podCIDR: {cidrs}"
    for name, net in networks.items():
        assert net.subnet_of(LOOPBACK) and not net.overlaps(PLANE), net
        # Room for as many pods as the node takes (less the network and broadcast addresses).
        assert net.num_addresses - 2 >= int(nodes[name]["status"]["allocatable"]["pods"]), net

    for node in GPU_NODES:
        kubectl.apply(json.dumps(pinned_pod(f"on-{node}", node)))
    for node in GPU_NODES:
        ip = pod_ip(kubectl, f"on-{node}")
        pod = kubectl.get("pod", f"on-{node}")
        assert pod["spec"]["nodeName"] == node
        assert ipaddress.IPv4Address(ip) in networks[node], f"{node}: {ip} not in {networks[node]}"
        assert [p["ip"] for p in pod["status"]["podIPs"]] == [ip]
        assert require_loopback(ip) == ip
        assert pod_url(pod, 8000, "metrics") == f"http://{ip}:8000/metrics"


def test_a_node_without_a_podcidr_gives_pods_kwoks_loopback_fallback(cluster, kubectl, namespace):
    admin = Kubectl(cluster)
    name = f"bare-{namespace}"
    admin.apply(
        json.dumps(
            {
                "apiVersion": "v1",
                "kind": "Node",
                "metadata": {
                    "name": name,
                    "annotations": {"kwok.x-k8s.io/node": "fake"},
                    "labels": {"kubernetes.io/hostname": name, "type": "kwok"},
                },
                "spec": {"taints": [{"key": "test-pool", "value": namespace, "effect": "NoSchedule"}]},
                "status": {
                    "capacity": {"cpu": "4", "memory": "8Gi", "pods": "110"},
                    "allocatable": {"cpu": "4", "memory": "8Gi", "pods": "110"},
                },
            }
        )
    )
    try:
        wait_for(
            "the node to be Ready",
            lambda: any(
                c["type"] == "Ready" and c["status"] == "True"
                for c in (admin.get("node", name) or {}).get("status", {}).get("conditions", [])
            ),
            30,
        )
        # The node lifecycle controller that would lift the apiserver's not-ready taint is off.
        admin.run("taint", "nodes", name, "node.kubernetes.io/not-ready:NoSchedule-")
        kubectl.apply(
            json.dumps(
                pinned_pod(
                    "bare",
                    name,
                    [{"key": "test-pool", "operator": "Equal", "value": namespace, "effect": "NoSchedule"}],
                )
            )
        )
        ip = pod_ip(kubectl, "bare")
        assert ipaddress.IPv4Address(ip) in KWOK_FALLBACK, ip
        assert require_loopback(ip) == ip
    finally:
        admin.run("delete", "node", name, "--wait=false", check=False)


def test_the_apiserver_refuses_a_pods_loopback_ip_in_an_endpointslice(kubectl):
    kubectl.apply(json.dumps(pinned_pod("served", "gpu-l4-0")))
    ip = pod_ip(kubectl, "served")
    slice_ = {
        "apiVersion": "discovery.k8s.io/v1",
        "kind": "EndpointSlice",
        "metadata": {"name": "served-by-hand", "labels": {"kubernetes.io/service-name": "served"}},
        "addressType": "IPv4",
        "endpoints": [{"addresses": [ip]}],
        "ports": [{"name": "http", "port": 8000, "protocol": "TCP"}],
    }
    proc = kubectl.run("apply", "-f", "-", input=json.dumps(slice_), check=False)
    assert proc.returncode != 0
    assert f'endpoints[0].addresses[0]: Invalid value: "{ip}": {LOOPBACK_SENTENCE}' in proc.stderr, proc.stderr
    assert kubectl.items("endpointslices") == []

"""The one gate for addresses that tests and benchmarks send traffic to: loopback, and the real
node's bridge network (tests/realnode), which hack/realnode.py creates on this machine.

On the local plane pods get IPs in 127.0.0.0/8 (each node's podCIDR, hack/kwok/nodes.yaml),
so a fake engine can listen on a pod's own address. A pod's IP that is not on loopback
means the plane is not the one these tests expect, and traffic must not leave the machine.
"""

from __future__ import annotations

import ipaddress

LOOPBACK = ipaddress.IPv4Network("127.0.0.0/8")
RULE = "tests and benchmarks send traffic only to loopback IPv4 addresses, 127.0.0.0/8"
# hack/realnode.py's bridge (llmop-br0) and its pods: on this machine, routed nowhere else.
REAL_NODE_NETWORK = ipaddress.IPv4Network("10.251.0.0/24")
REAL_NODE_BRIDGE = "llmop-br0"


def require_loopback(address: str) -> str:
    """`address` itself when it is an IPv4 address in 127.0.0.0/8; ValueError otherwise."""
    try:
        ip = ipaddress.ip_address(address) if isinstance(address, str) else None
    except ValueError:
        ip = None
    if ip is None:
        raise ValueError(f"{address!r} is not an IP address: {RULE}")
    if ip.version != 4 or ip not in LOOPBACK:
        raise ValueError(f"{address} is not in 127.0.0.0/8: {RULE}")
    return address


def pod_url(pod: dict, port: int, path: str = "") -> str:
    """http://POD_IP:PORT/PATH for a pod whose status.podIP is on loopback."""
    ip = (pod.get("status") or {}).get("podIP")
    if not ip:
        name = (pod.get("metadata") or {}).get("name", "?")
        raise ValueError(f"pod {name} has no status.podIP yet: {RULE}")
    require_loopback(ip)
    return f"http://{ip}:{port}/{path.lstrip('/')}"


def real_node_url(pod: dict, port: int, path: str = "") -> str:
    """http://POD_IP:PORT/PATH for a pod of the real node: its IP in the bridge network, with the
    bridge present on this machine (so the traffic stays here)."""
    import pathlib

    ip = (pod.get("status") or {}).get("podIP") or ""
    try:
        address = ipaddress.ip_address(ip)
    except ValueError:
        raise ValueError(f"pod {(pod.get('metadata') or {}).get('name', '?')} has no pod IP yet") from None
    if address not in REAL_NODE_NETWORK:
        raise ValueError(f"{ip} is not in the real node's network {REAL_NODE_NETWORK}")
    if not pathlib.Path(f"/sys/class/net/{REAL_NODE_BRIDGE}").exists():
        raise ValueError(f"the real node's bridge {REAL_NODE_BRIDGE} is not on this machine: {ip} could be elsewhere")
    return f"http://{ip}:{port}/{path.lstrip('/')}"

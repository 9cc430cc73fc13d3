"""The one gate for addresses that tests and benchmarks send traffic to: loopback only.

On the local plane pods get IPs in 127.0.0.0/8 (each node's podCIDR, hack/kwok/nodes.yaml),
so a fake engine can listen on a pod's own address. A pod's IP that is not on loopback
means the plane is not the one these tests expect, and traffic must not leave the machine.
"""

from __future__ import annotations

import ipaddress

LOOPBACK = ipaddress.IPv4Network("127.0.0.0/8")
RULE = "tests and benchmarks send traffic only to loopback IPv4 addresses, 127.0.0.0/8"


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

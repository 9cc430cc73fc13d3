#!/usr/bin/env python3
"""One real node for the local control plane (hack/localcluster.py): containerd, runc and the
CNI bridge plugin from Debian's packages and a kubelet built from Go modules, so that pods run
as real containers from images built on this machine (hack/images.py, imagePullPolicy Never)
or pulled from a registry on loopback (RealNode.trust_plain_http_registry). It is a test tier,
not a way to serve models: there is no GPU.

    python hack/realnode.py up   --dir .cluster     # after `localcluster.py up --dir .cluster`
    python hack/realnode.py down --dir .cluster     # leaves the machine as `up` found it

Addresses: a bridge this helper creates (llmop-br0, 10.251.0.1/24) carries the node IP and
the pods; pods reach the apiserver (bound to loopback) through a forwarder on the bridge's
address, at the port the apiserver has on loopback. Nothing is routed off the machine (no
masquerade, no default route out of the bridge).

What the kubelet, containerd and the bridge plugin change on the host, and `down` restores:
the sysctls in SYSCTLS, iptables and ip6tables (every table, restored to what `up` saved),
network links and namespaces, mounts and cgroups under this node's own paths, its processes.
Needs root. Standard library only.
"""

# The parts live in hack/kubenode/ (settings, host, forward, configs, node); their names are importable from here.
from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))

from kubenode.forward import forward  # noqa: E402
from kubenode.host import (  # noqa: E402
    HOST_DIRS,
    cgroup_dirs,
    host_files,
    host_snapshot,
    iptables_tables,
    links,
    mounts_under,
    netns,
    our_processes,
    read_sysctls,
    sh,
)
from kubenode.node import RealNode  # noqa: E402
from kubenode.settings import (  # noqa: E402
    BRIDGE,
    CGROUP_ROOT,
    CNI_BIN,
    CNI_NETWORK,
    COMPONENTS,
    GATEWAY,
    HACK,
    IPTABLES,
    NETNS_DIR,
    NODE_LABEL,
    NODE_NAME,
    PREFIX,
    SERVICE_IP,
    SUBNET,
    SYSCTLS,
    TAINT_KEY,
)
from localcluster import ClusterError, LocalCluster, free_port, pid_alive, signal_group, wait_until  # noqa: E402

__all__ = [
    "BRIDGE",
    "CGROUP_ROOT",
    "CNI_BIN",
    "CNI_NETWORK",
    "COMPONENTS",
    "GATEWAY",
    "HACK",
    "HOST_DIRS",
    "IPTABLES",
    "NETNS_DIR",
    "NODE_LABEL",
    "NODE_NAME",
    "PREFIX",
    "SERVICE_IP",
    "SUBNET",
    "SYSCTLS",
    "TAINT_KEY",
    "ClusterError",
    "LocalCluster",
    "RealNode",
    "cgroup_dirs",
    "forward",
    "free_port",
    "host_files",
    "host_snapshot",
    "iptables_tables",
    "links",
    "main",
    "mounts_under",
    "netns",
    "our_processes",
    "pid_alive",
    "read_sysctls",
    "sh",
    "signal_group",
    "wait_until",
]


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("action", choices=["up", "down", "forward", "snapshot"])
    parser.add_argument("args", nargs="*")
    parser.add_argument("--dir", default=".cluster")
    args = parser.parse_args(argv)
    if args.action == "forward":  # TARGET LISTEN...
        (th, tp), *listen = (a.rsplit(":", 1) for a in args.args)
        forward([(h, int(p)) for h, p in listen], th, int(tp))
        return 0
    if args.action == "snapshot":
        print(json.dumps(host_snapshot(), indent=2))
        return 0
    cluster = LocalCluster(Path(args.dir))
    node = RealNode(cluster)
    try:
        if args.action == "up":
            from images import Builder, ImageError, ensure_packages

            try:
                ensure_packages()
                built = Builder().build()
            except ImageError as err:
                raise ClusterError(str(err)) from err
            secs = node.up([archive for _, archive in built.values()])
            print(
                f"real node {NODE_NAME} Ready in {secs:.1f}s (node IP {GATEWAY}); images: "
                + ", ".join(image for image, _ in built.values())
            )
        else:
            problems = node.down()
            if problems:
                print("realnode: not everything could be restored:\n  " + "\n  ".join(problems), file=sys.stderr)
                return 1
            print("real node stopped; the host's sysctls, links, iptables and cgroups are as before")
    except ClusterError as err:
        print(f"realnode: {err}", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())

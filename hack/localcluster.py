#!/usr/bin/env python3
"""A local Kubernetes control plane as plain processes: etcd, kube-apiserver,
kube-controller-manager, kube-scheduler, kwok with simulated GPU nodes, and the
LeaderWorkerSet (LWS) controller with its webhooks served on loopback.

    python hack/localcluster.py up   [--dir .cluster] [--no-lws]   # starts it in the background
    python hack/localcluster.py down [--dir .cluster]   # stops it, leaving no process
    python hack/localcluster.py status [--dir .cluster]
    python hack/localcluster.py apiserver-stop | apiserver-start [--dir .cluster]
                                 # an apiserver outage: the same flags, port and certificates on start

`up` writes DIR/kubeconfig and DIR/env (source it: KUBECONFIG, kubectl and helm on PATH).
The pytest fixture in tests/conftest.py drives the same class. Standard library only.
"""

# The parts live in hack/localplane/ (procs, pki, lws, cluster); their names are importable from here.
from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

from localplane.cluster import LocalCluster
from localplane.lws import LWS_RESOURCES
from localplane.procs import (
    COMPONENTS,
    HACK,
    START_TIMEOUT_S,
    ClusterError,
    Ports,
    free_port,
    json_stream,
    pid_alive,
    signal_group,
    tools_dir,
    wait_until,
)

__all__ = [
    "COMPONENTS",
    "HACK",
    "LWS_RESOURCES",
    "START_TIMEOUT_S",
    "ClusterError",
    "LocalCluster",
    "Ports",
    "free_port",
    "json_stream",
    "main",
    "pid_alive",
    "signal_group",
    "tools_dir",
    "wait_until",
]


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("action", choices=["up", "down", "status", "apiserver-stop", "apiserver-start"])
    parser.add_argument(
        "--dir", default=".cluster", help="where state, logs and the kubeconfig live (default .cluster)"
    )
    parser.add_argument(
        "--no-lws",
        dest="lws",
        action="store_false",
        help="up: without the LeaderWorkerSet controller, its CRDs and webhooks (a cluster without LWS)",
    )
    args = parser.parse_args(argv)
    cluster = LocalCluster(Path(args.dir), lws=args.lws)
    try:
        if args.action == "up":
            secs = cluster.up()
            print(f"control plane up in {secs:.1f}s at {cluster.server}")
            print(f"  source {cluster.env_file}    # KUBECONFIG, kubectl and helm on PATH")
            print(cluster.kubectl("get", "nodes", "-L", "nvidia.com/gpu.product,nvidia.com/gpu.count").rstrip())
        elif args.action == "apiserver-stop":
            cluster.stop_apiserver()
            print("kube-apiserver stopped; etcd and the other components keep running")
        elif args.action == "apiserver-start":
            secs = cluster.start_apiserver()
            print(f"kube-apiserver back in {secs:.1f}s at {cluster.server}")
        elif args.action == "down":
            cluster.down()
            print("control plane stopped; no process left")
        else:
            running = cluster.running_pids()
            print(json.dumps(running, indent=2) if running else "not running")
            return 0 if running else 1
    except ClusterError as err:
        print(f"localcluster: {err}", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())

"""The real node's names and addresses, and the host settings it changes (re-exported by
hack/realnode.py)."""

from __future__ import annotations

from pathlib import Path

HACK = Path(__file__).resolve().parent.parent
NODE_NAME = "llmop-real-0"
BRIDGE = "llmop-br0"
GATEWAY = "10.251.0.1"
SUBNET = "10.251.0.0/24"
PREFIX = 24
# The `kubernetes` Service's ClusterIP (the first of localcluster's service range).
SERVICE_IP = "10.0.0.1"
CNI_NETWORK = "llmop-real"
# Other tests' pods never land here: only pods that tolerate it.
TAINT_KEY = "llm-operator.dev/real-node"
NODE_LABEL = "llm-operator.dev/real-node"
# The kubelet's cgroup root: every pod's cgroup is below it in every hierarchy.
CGROUP_ROOT = "llmop-realnode"
# Host settings the kubelet (vm.overcommit_memory, kernel.panic, kernel.panic_on_oops) and the
# bridge plugin (ip_forward) change.
SYSCTLS = (
    "vm/overcommit_memory",
    "kernel/panic",
    "kernel/panic_on_oops",
    "net/ipv4/ip_forward",
    "net/ipv4/conf/all/forwarding",
    "net/ipv6/conf/all/forwarding",
)
IPTABLES = ("iptables", "ip6tables")
NETNS_DIR = Path("/var/run/netns")
CNI_BIN = "/usr/lib/cni"
COMPONENTS = ("apiserver-forward", "containerd", "kubelet")

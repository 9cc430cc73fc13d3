"""The host's state that the real node changes and `down` must give back: sysctls, iptables,
links, network namespaces, processes, cgroups, mounts and the files under fixed host paths;
and `sh`, which runs a command and fails with its message. Standard library only."""

from __future__ import annotations

import os
import subprocess
from pathlib import Path

from kubenode.settings import CGROUP_ROOT, CNI_NETWORK, IPTABLES, NETNS_DIR, SYSCTLS
from localplane.procs import ClusterError


def sh(*cmd: str, check: bool = True, input: str | None = None) -> str:
    proc = subprocess.run(cmd, text=True, capture_output=True, input=input)
    if check and proc.returncode != 0:
        raise ClusterError(f"{' '.join(cmd)} failed: {proc.stderr.strip() or proc.stdout.strip()}")
    return proc.stdout


def read_sysctls() -> dict[str, str]:
    out = {}
    for name in SYSCTLS:
        path = Path("/proc/sys") / name
        if path.exists():
            out[name] = path.read_text().strip()
    return out


def iptables_tables(tool: str) -> dict[str, str]:
    """Each table's rules as `TOOL-save` prints them, less comments and counters."""
    tables = {}
    names = Path(f"/proc/net/{'ip6' if tool == 'ip6tables' else 'ip'}_tables_names")
    for table in (
        sorted(set(names.read_text().split()) | {"filter", "nat", "mangle"}) if names.exists() else ("filter",)
    ):
        proc = subprocess.run([f"{tool}-save", "-t", table], text=True, capture_output=True)
        if proc.returncode == 0:
            tables[table] = "\n".join(
                line if not line.startswith(":") else line.split(" [")[0]
                for line in proc.stdout.splitlines()
                if not line.startswith("#")
            )
    return tables


def links() -> list[str]:
    return sorted(line.split()[0].split("@")[0] for line in sh("ip", "-br", "link").splitlines() if line.strip())


def netns() -> list[str]:
    return sorted(p.name for p in NETNS_DIR.iterdir()) if NETNS_DIR.is_dir() else []


def our_processes(paths: list[str]) -> dict[int, str]:
    """Processes whose command line names one of our paths, or the kubelet/containerd/shims of a node."""
    found = {}
    for d in Path("/proc").iterdir():
        if not d.name.isdigit() or int(d.name) == os.getpid():
            continue
        try:
            cmd = (d / "cmdline").read_bytes().replace(b"\0", b" ").decode(errors="replace").strip()
        except OSError:
            continue
        if cmd and any(p in cmd for p in paths):
            found[int(d.name)] = cmd[:200]
    return found


def cgroup_dirs() -> list[Path]:
    """This node's cgroup root in every hierarchy where it exists."""
    base = Path("/sys/fs/cgroup")
    dirs = [d / CGROUP_ROOT for d in base.iterdir() if (d / CGROUP_ROOT).is_dir()] if base.is_dir() else []
    if (base / CGROUP_ROOT).is_dir():
        dirs.append(base / CGROUP_ROOT)
    return dirs


def container_pids(container_id: str) -> list[int]:
    """The processes of one of this node's containers (its id without `containerd://`): those in
    its cgroup, which the kubelet names after it, in any hierarchy."""
    pids: set[int] = set()
    for top in cgroup_dirs():
        for d in top.rglob(container_id):
            try:
                pids |= {int(p) for p in (d / "cgroup.procs").read_text().split()}
            except OSError:
                pass
    return sorted(pids)


# Fixed paths the kubelet, containerd and CNI write outside the node's own directories (pod
# logs and their links, CNI's result cache): what `up` adds there, `down` removes.
HOST_DIRS = ("/var/log/pods", "/var/log/containers", "/var/lib/cni", "/var/run/netns")


def host_files() -> dict[str, list[str]]:
    return {d: sorted(os.listdir(d)) if os.path.isdir(d) else None for d in HOST_DIRS}


def host_snapshot() -> dict:
    """What `down` restores, as comparable data (the real-node test checks before == after)."""
    return {
        "sysctls": read_sysctls(),
        "links": links(),
        "netns": netns(),
        "files": host_files(),
        "iptables": {tool: iptables_tables(tool) for tool in IPTABLES},
        "cgroups": [str(d) for d in cgroup_dirs()],
        "processes": sorted(our_processes(["llmop-real", CNI_NETWORK, "containerd-shim"]).values()),
    }


def mounts_under(prefixes: list[str]) -> list[str]:
    out = []
    for line in Path("/proc/self/mountinfo").read_text().splitlines():
        point = line.split()[4].replace("\\040", " ")
        if any(point == p or point.startswith(p.rstrip("/") + "/") for p in prefixes):
            out.append(point)
    return sorted(set(out), key=lambda p: -p.count("/"))

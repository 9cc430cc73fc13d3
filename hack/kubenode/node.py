"""RealNode: containerd and a kubelet joined to the local control plane on a bridge of their
own, its images imported, and `down`, which gives the host back as `up` found it. Its
configuration files are written by configs.py, the host's state read by host.py. Needs root.
Standard library only."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

from kubenode.configs import NodeConfigs
from kubenode.host import cgroup_dirs, host_snapshot, iptables_tables, links, mounts_under, netns, our_processes, sh
from kubenode.settings import BRIDGE, CGROUP_ROOT, CNI_BIN, GATEWAY, HACK, NODE_LABEL, NODE_NAME, PREFIX, SERVICE_IP
from localplane.cluster import LocalCluster
from localplane.procs import ClusterError, free_port, pid_alive, signal_group, wait_until


class RealNode(NodeConfigs):
    """The real node of the control plane whose state lives in cluster.root."""

    def __init__(self, cluster: LocalCluster, kubelet: Path | None = None):
        self.cluster = cluster
        self.dir = cluster.root / "realnode"
        # Short, fixed paths for what has a length limit (unix sockets) or is shared by
        # every process (containerd's state): one real node per machine.
        self.run_dir = Path("/run/llmop-real")
        self.state_file = self.dir / "state.json"
        self._kubelet = kubelet

    @property
    def sock(self) -> Path:
        return self.run_dir / "containerd.sock"

    def state(self) -> dict:
        return json.loads(self.state_file.read_text()) if self.state_file.exists() else {}

    def _save(self, **kw) -> None:
        state = self.state()
        state.update(kw)
        self.dir.mkdir(parents=True, exist_ok=True)
        self.state_file.write_text(json.dumps(state, indent=2))

    def kubelet_binary(self) -> str:
        if self._kubelet is None:
            try:
                out = subprocess.run(
                    ["bash", str(HACK / "tools.sh"), "kubelet"], check=True, stdout=subprocess.PIPE, text=True
                ).stdout
            except subprocess.CalledProcessError as err:
                raise ClusterError("hack/tools.sh could not build the kubelet (its message is above)") from err
            self._kubelet = Path(out.strip().splitlines()[-1])
        return str(self._kubelet)

    def preflight(self) -> None:
        if os.geteuid() != 0:
            raise ClusterError("the real node needs root (containerd, runc, network links, cgroups)")
        for tool in (
            "containerd",
            "runc",
            "ctr",
            "ip",
            "iptables-save",
            "iptables-restore",
            f"{CNI_BIN}/bridge",
            f"{CNI_BIN}/host-local",
            f"{CNI_BIN}/loopback",
        ):
            if not (Path(tool).exists() or subprocess.run(["which", tool], capture_output=True).returncode == 0):
                raise ClusterError(
                    f"the real node needs {tool}; `python hack/images.py build` installs the Debian "
                    "packages (containerd runc containernetworking-plugins iptables iproute2)"
                )
        if self.state().get("pids") and any(pid_alive(p) for p in self.state()["pids"].values()):
            raise ClusterError(f"a real node is already running from {self.dir}; run `down` first")
        if BRIDGE in links():
            raise ClusterError(
                f"network link {BRIDGE} exists already: another real node runs on this machine, "
                f"or one was not taken down (`python hack/realnode.py down --dir DIR`)"
            )

    # ---- up ----------------------------------------------------------------------------
    def up(self, images: list[Path], timeout: float = 120) -> float:
        """Start the node, import `images` (docker-archives) and wait until it is Ready."""
        started = time.monotonic()
        self.preflight()
        if not self.cluster.running_pids():
            raise ClusterError("the control plane is not running: start it first (localcluster.py up)")
        self.dir.mkdir(parents=True, exist_ok=True)
        (self.dir / "logs").mkdir(exist_ok=True)
        self._save(before=host_snapshot(), pids={})
        procs: dict[str, subprocess.Popen] = {}
        try:
            self._bridge()
            apiserver_port = int(self.cluster.server.rsplit(":", 1)[1])
            # In-cluster clients read KUBERNETES_SERVICE_HOST/PORT, the `kubernetes` Service's
            # ClusterIP and port (no kube-proxy here): that address is on the bridge too.
            procs["apiserver-forward"] = self._spawn(
                "apiserver-forward",
                [
                    sys.executable,
                    str(HACK / "realnode.py"),
                    "forward",
                    f"127.0.0.1:{apiserver_port}",
                    f"{GATEWAY}:{apiserver_port}",
                    f"{SERVICE_IP}:443",
                ],
            )
            self._save(pids={n: p.pid for n, p in procs.items()}, apiserver=f"https://{GATEWAY}:{apiserver_port}")
            procs["containerd"] = self._spawn("containerd", ["containerd", "--config", str(self._containerd_config())])
            self._save(pids={n: p.pid for n, p in procs.items()})
            wait_until(
                "containerd to answer on its socket",
                lambda: subprocess.run(["ctr", "-a", str(self.sock), "version"], capture_output=True).returncode == 0,
                30,
                procs,
            )
            for archive in images:
                sh("ctr", "-a", str(self.sock), "-n", "k8s.io", "images", "import", "--no-unpack=false", str(archive))
            self._make_cgroups()
            kubelet_port, healthz_port = free_port(), free_port()
            procs["kubelet"] = self._spawn(
                "kubelet",
                [
                    self.kubelet_binary(),
                    f"--config={self._kubelet_config(kubelet_port, healthz_port)}",
                    f"--kubeconfig={self._kubelet_kubeconfig()}",
                    f"--hostname-override={NODE_NAME}",
                    f"--node-ip={GATEWAY}",
                    f"--root-dir={self.dir / 'kubelet'}",
                    f"--cert-dir={self.dir / 'kubelet-pki'}",
                    f"--node-labels={NODE_LABEL}=true,kubernetes.io/os=linux",
                    "--v=1",
                ],
            )
            self._save(pids={n: p.pid for n, p in procs.items()})
            wait_until(f"node {NODE_NAME} to register and be Ready", self._ready, timeout, procs)
            # As for the kwok nodes: the controller that would lift it is off (localcluster.py).
            self.cluster.kubectl_ok("taint", "nodes", NODE_NAME, "node.kubernetes.io/not-ready:NoSchedule-")
        except ClusterError as err:
            tails = "\n".join(f"--- {name}.log (last lines) ---\n{self.log_tail(name)}" for name in procs)
            self.down()
            raise ClusterError(f"{err}\n{tails}") from err
        except BaseException:
            self.down()
            raise
        return time.monotonic() - started

    def _make_cgroups(self) -> None:
        """The kubelet's cgroup root, in every hierarchy (it refuses to start without them)."""
        base = Path("/sys/fs/cgroup")
        for h in sorted(d for d in base.iterdir() if d.is_dir() and (d / "cgroup.procs").exists()):
            d = h / CGROUP_ROOT
            d.mkdir(exist_ok=True)
            if h.name == "cpuset":  # a v1 cpuset starts empty: no task could join it
                for f in ("cpuset.cpus", "cpuset.mems"):
                    (d / f).write_text((h / f).read_text())

    def log_tail(self, name: str, lines: int = 15) -> str:
        path = self.dir / "logs" / f"{name}.log"
        return "\n".join(path.read_text(errors="replace").splitlines()[-lines:]) if path.exists() else ""

    def _spawn(self, name: str, args: list[str]) -> subprocess.Popen:
        log = open(self.dir / "logs" / f"{name}.log", "ab")
        return subprocess.Popen(
            args, stdout=log, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL, start_new_session=True, cwd=self.dir
        )

    def _bridge(self) -> None:
        sh("ip", "link", "add", BRIDGE, "type", "bridge")
        sh("ip", "addr", "add", f"{GATEWAY}/{PREFIX}", "dev", BRIDGE)
        sh("ip", "addr", "add", f"{SERVICE_IP}/32", "dev", BRIDGE)
        sh("ip", "link", "set", BRIDGE, "up")

    def _ready(self) -> bool:
        out = self.cluster.kubectl_ok(
            "get", "node", NODE_NAME, "-o", "jsonpath={.status.conditions[?(@.type=='Ready')].status}"
        )
        return out == "True"

    # ---- down --------------------------------------------------------------------------
    def down(self, timeout: float = 20) -> list[str]:
        """Stop everything and give the host back as `up` found it. Returns what could not be
        restored (empty when all was)."""
        state = self.state()
        pids = state.get("pids", {})
        problems: list[str] = []
        if pids.get("kubelet"):
            self._stop(pids["kubelet"], timeout)
        # Containers outlive the kubelet and containerd: kill what runs in the pods' cgroups.
        self._kill_cgroups(timeout)
        if pids.get("containerd"):
            self._stop(pids["containerd"], timeout)
        for pid in our_processes([str(self.run_dir), str(self.dir)]):
            signal_group(pid, signal.SIGKILL)
            try:
                os.kill(pid, signal.SIGKILL)
            except ProcessLookupError:
                pass
        if pids.get("apiserver-forward"):
            self._stop(pids["apiserver-forward"], 5)
        self._kill_cgroups(timeout)
        for point in mounts_under([str(self.dir), str(self.run_dir)]):
            subprocess.run(["umount", "-l", point], capture_output=True)
        before = state.get("before") or {}
        for name in set(netns()) - set(before.get("netns", [])):
            if name.startswith("cni-"):
                subprocess.run(["ip", "netns", "delete", name], capture_output=True)
        for name in set(links()) - set(before.get("links", [])):
            if name == BRIDGE or name.startswith("veth"):
                subprocess.run(["ip", "link", "delete", name], capture_output=True)
        for tool, tables in (before.get("iptables") or {}).items():
            now = iptables_tables(tool)
            for table, rules in tables.items():
                if now.get(table) != rules:
                    proc = subprocess.run(
                        [f"{tool}-restore", "-w", "5"], input=rules + "\n", text=True, capture_output=True
                    )
                    if proc.returncode != 0:
                        problems.append(f"{tool}-restore of table {table}: {proc.stderr.strip()}")
        for name, value in (before.get("sysctls") or {}).items():
            path = Path("/proc/sys") / name
            if path.read_text().strip() != value:
                try:
                    path.write_text(value + "\n")
                except OSError as err:
                    problems.append(f"sysctl {name}: {err}")
        self._remove_cgroups(problems)
        for d, entries in (before.get("files") or {}).items():
            if entries is None:
                subprocess.run(["rm", "-rf", "--one-file-system", d], capture_output=True)
            elif os.path.isdir(d):
                for name in set(os.listdir(d)) - set(entries):
                    subprocess.run(["rm", "-rf", "--one-file-system", os.path.join(d, name)], capture_output=True)
        for d in (
            self.run_dir,
            self.dir / "containerd-root",
            self.dir / "kubelet",
            self.dir / "ipam",
            self.dir / "volumes",
            self.registry_hosts_dir,
        ):
            subprocess.run(["rm", "-rf", "--one-file-system", str(d)], capture_output=True)
        if before:
            after = host_snapshot()
            for key in ("sysctls", "links", "netns", "files", "iptables", "cgroups", "processes"):
                if after[key] != before[key]:
                    problems.append(f"{key} differ after down: before {before[key]!r}, after {after[key]!r}"[:2000])
        if self.state_file.exists():
            self.state_file.unlink()
        return problems

    def _stop(self, pid: int, timeout: float) -> None:
        signal_group(pid, signal.SIGTERM)
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline and pid_alive(pid):
            time.sleep(0.1)
        signal_group(pid, signal.SIGKILL)
        deadline = time.monotonic() + 5
        while time.monotonic() < deadline and pid_alive(pid):
            time.sleep(0.1)

    def _kill_cgroups(self, timeout: float) -> None:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            pids = set()
            for top in cgroup_dirs():
                for procs in top.rglob("cgroup.procs"):
                    try:
                        pids |= {int(p) for p in procs.read_text().split()}
                    except OSError:
                        pass
            if not pids:
                return
            for pid in pids:
                try:
                    os.kill(pid, signal.SIGKILL)
                except ProcessLookupError:
                    pass
            time.sleep(0.2)

    def _remove_cgroups(self, problems: list[str]) -> None:
        for top in cgroup_dirs():
            for d in sorted((p for p in top.rglob("*") if p.is_dir()), key=lambda p: -len(p.parts)) + [top]:
                try:
                    d.rmdir()
                except OSError as err:
                    problems.append(f"cgroup {d}: {err}")

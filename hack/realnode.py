#!/usr/bin/env python3
"""One real node for the local control plane (hack/localcluster.py): containerd, runc and the
CNI bridge plugin from Debian's packages and a kubelet built from Go modules, so that pods run
as real containers from images built on this machine (hack/images.py, imagePullPolicy Never).
It is a test tier, not a way to serve models: there is no GPU and no registry.

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

from __future__ import annotations

import argparse
import json
import os
import signal
import socket
import subprocess
import sys
import threading
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))

from localcluster import ClusterError, LocalCluster, free_port, pid_alive, signal_group, wait_until  # noqa: E402

HACK = Path(__file__).resolve().parent
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


def sh(*cmd: str, check: bool = True, input: str | None = None) -> str:
    proc = subprocess.run(cmd, text=True, capture_output=True, input=input)
    if check and proc.returncode != 0:
        raise ClusterError(f"{' '.join(cmd)} failed: {proc.stderr.strip() or proc.stdout.strip()}")
    return proc.stdout


# ---- the host's state: what `down` must give back ------------------------------------
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


# ---- the forwarder: pods reach the loopback apiserver ----------------------------------
def forward(listeners: list[tuple[str, int]], target_host: str, target_port: int) -> None:
    """Accept on each listener and splice each connection to target (TLS passes through)."""
    servers = [socket.create_server(address) for address in listeners]

    def pipe(src: socket.socket, dst: socket.socket) -> None:
        try:
            while data := src.recv(65536):
                dst.sendall(data)
        except OSError:
            pass
        finally:
            for s in (src, dst):
                try:
                    s.shutdown(socket.SHUT_RDWR)
                except OSError:
                    pass

    def serve(client: socket.socket) -> None:
        try:
            upstream = socket.create_connection((target_host, target_port), timeout=10)
        except OSError:
            client.close()
            return
        upstream.settimeout(None)
        threading.Thread(target=pipe, args=(client, upstream), daemon=True).start()
        pipe(upstream, client)
        client.close()
        upstream.close()

    def accept(server: socket.socket) -> None:
        while True:
            client, _ = server.accept()
            threading.Thread(target=serve, args=(client,), daemon=True).start()

    signal.signal(signal.SIGTERM, lambda *_: os._exit(0))
    for server in servers[1:]:
        threading.Thread(target=accept, args=(server,), daemon=True).start()
    accept(servers[0])


class RealNode:
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
                    str(Path(__file__).resolve()),
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

    def _containerd_config(self) -> Path:
        from images import PAUSE_IMAGE

        cni_conf = self.dir / "cni"
        cni_conf.mkdir(exist_ok=True)
        (cni_conf / "10-llmop-real.conflist").write_text(
            json.dumps(
                {
                    "cniVersion": "1.0.0",
                    "name": CNI_NETWORK,
                    "plugins": [
                        {
                            "type": "bridge",
                            "bridge": BRIDGE,
                            "isGateway": True,
                            "ipMasq": False,
                            "hairpinMode": True,
                            "ipam": {
                                "type": "host-local",
                                "dataDir": str(self.dir / "ipam"),
                                "ranges": [
                                    [
                                        {
                                            "subnet": SUBNET,
                                            "gateway": GATEWAY,
                                            "rangeStart": "10.251.0.10",
                                            "rangeEnd": "10.251.0.250",
                                        }
                                    ]
                                ],
                                "routes": [{"dst": SUBNET}, {"dst": f"{SERVICE_IP}/32"}],
                            },
                        },
                        {"type": "loopback"},
                    ],
                },
                indent=2,
            )
        )
        path = self.dir / "containerd.toml"
        path.write_text(f"""version = 2
root = "{self.dir / "containerd-root"}"
state = "{self.run_dir / "state"}"
disabled_plugins = ["io.containerd.snapshotter.v1.btrfs", "io.containerd.snapshotter.v1.zfs",
  "io.containerd.snapshotter.v1.devmapper", "io.containerd.snapshotter.v1.aufs", "io.containerd.internal.v1.opt",
  "io.containerd.tracing.processor.v1.otlp"]
[grpc]
  address = "{self.sock}"
[ttrpc]
  address = "{self.run_dir / "containerd.sock.ttrpc"}"
[debug]
  level = "warn"
[metrics]
  address = ""
[plugins."io.containerd.grpc.v1.cri"]
  sandbox_image = "{PAUSE_IMAGE}"
  # No CAP_SYS_RESOURCE here: containerd must not lower OOM scores below its own.
  restrict_oom_score_adj = true
  disable_apparmor = true
  enable_selinux = false
  stream_server_address = "127.0.0.1"
  stream_server_port = "0"
  [plugins."io.containerd.grpc.v1.cri".containerd]
    snapshotter = "overlayfs"
    default_runtime_name = "runc"
    [plugins."io.containerd.grpc.v1.cri".containerd.runtimes.runc]
      runtime_type = "io.containerd.runc.v2"
      [plugins."io.containerd.grpc.v1.cri".containerd.runtimes.runc.options]
        BinaryName = "runc"
        SystemdCgroup = false
  [plugins."io.containerd.grpc.v1.cri".cni]
    bin_dir = "{CNI_BIN}"
    conf_dir = "{cni_conf}"
    max_conf_num = 1
""")
        return path

    def _kubelet_config(self, port: int, healthz_port: int) -> Path:
        path = self.dir / "kubelet.json"
        path.write_text(
            json.dumps(
                {
                    "apiVersion": "kubelet.config.k8s.io/v1beta1",
                    "kind": "KubeletConfiguration",
                    "address": GATEWAY,
                    "port": port,
                    "readOnlyPort": 0,
                    "healthzBindAddress": "127.0.0.1",
                    "healthzPort": healthz_port,
                    # Local only: the apiserver reaches the kubelet anonymously (logs, exec, port-forward).
                    "authentication": {"anonymous": {"enabled": True}, "webhook": {"enabled": False}},
                    "authorization": {"mode": "AlwaysAllow"},
                    "containerRuntimeEndpoint": f"unix://{self.sock}",
                    "cgroupDriver": "cgroupfs",
                    "cgroupRoot": f"/{CGROUP_ROOT}",
                    "failCgroupV1": False,
                    "failSwapOn": False,
                    "protectKernelDefaults": False,
                    "registerWithTaints": [{"key": TAINT_KEY, "value": "true", "effect": "NoSchedule"}],
                    "maxPods": 30,
                    "serializeImagePulls": False,
                    # Images are imported, never pulled: never collect them, never evict for a full disk.
                    "imageGCHighThresholdPercent": 100,
                    "imageGCLowThresholdPercent": 99,
                    "evictionHard": {"memory.available": "100Mi", "nodefs.available": "1%", "imagefs.available": "1%"},
                    "resolvConf": str(self._resolv_conf()),
                    "nodeStatusReportFrequency": "10s",
                    "nodeStatusUpdateFrequency": "5s",
                    "syncFrequency": "5s",
                    "fileCheckFrequency": "5s",
                    "enableServer": True,
                    "staticPodPath": "",
                    "containerLogMaxSize": "5Mi",
                    "containerLogMaxFiles": 2,
                    "shutdownGracePeriod": "0s",
                },
                indent=2,
            )
        )
        return path

    def _resolv_conf(self) -> Path:
        # Pods resolve nothing off the machine.
        path = self.dir / "resolv.conf"
        path.write_text("nameserver 127.0.0.1\noptions ndots:1\n")
        return path

    def _kubelet_kubeconfig(self) -> Path:
        """The kubelet's client certificate, as the Node authorizer wants it: system:node:NAME."""
        pki = self.cluster.pki
        key, csr, crt = pki / "kubelet.key", pki / "kubelet.csr", pki / "kubelet.crt"
        if not crt.exists():
            self.cluster._openssl(
                "req",
                "-newkey",
                "rsa:2048",
                "-nodes",
                "-keyout",
                key.name,
                "-out",
                csr.name,
                "-subj",
                f"/O=system:nodes/CN=system:node:{NODE_NAME}",
            )
            self.cluster._openssl(
                "x509",
                "-req",
                "-in",
                csr.name,
                "-CA",
                "ca.crt",
                "-CAkey",
                "ca.key",
                "-CAcreateserial",
                "-out",
                crt.name,
                "-days",
                "3650",
                "-extfile",
                "client.cnf",
            )
        path = self.dir / "kubelet.kubeconfig"
        path.write_text(f"""apiVersion: v1
kind: Config
clusters:
- name: local
  cluster: {{server: "{self.cluster.server}", certificate-authority: "{pki / "ca.crt"}"}}
users:
- name: kubelet
  user: {{client-certificate: "{crt}", client-key: "{key}"}}
contexts:
- name: local
  context: {{cluster: local, user: kubelet}}
current-context: local
""")
        return path

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

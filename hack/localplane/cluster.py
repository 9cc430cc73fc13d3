"""LocalCluster: one local control plane (etcd, kube-apiserver, kube-controller-manager,
kube-scheduler, kwok and the LWS manager as processes of their own), its state under one
directory, and an apiserver outage on demand. Its certificates are in pki.py, the LWS
controller's parts in lws.py. Standard library only."""

from __future__ import annotations

import json
import shutil
import signal
import ssl
import subprocess
import time
import urllib.error
import urllib.request
from pathlib import Path

from localplane.lws import LWS_RESOURCES, LeaderWorkerSet
from localplane.pki import Certificates
from localplane.procs import (
    HACK,
    START_TIMEOUT_S,
    ClusterError,
    Ports,
    pid_alive,
    signal_group,
    tools_dir,
    wait_until,
)


class LocalCluster(Certificates, LeaderWorkerSet):
    """One control plane whose state (certificates, data, logs, pids) lives in `root`."""

    def __init__(self, root: Path, bin_dir: Path | None = None, lws: bool = True):
        self.root = Path(root).resolve()
        self._bin_dir = bin_dir
        # The LeaderWorkerSet controller and its webhooks; off plays a cluster without LWS.
        self.lws = lws
        self.pki = self.root / "pki"
        self.logs = self.root / "logs"
        self.kubeconfig = self.root / "kubeconfig"
        self.env_file = self.root / "env"
        self.state_file = self.root / "state.json"

    # ---- paths and state -------------------------------------------------------------
    @property
    def bin_dir(self) -> Path:
        if self._bin_dir is None:
            self._bin_dir = tools_dir()
        return self._bin_dir

    def binary(self, name: str) -> str:
        return str(self.bin_dir / name)

    def state(self) -> dict:
        if self.state_file.exists():
            return json.loads(self.state_file.read_text())
        return {}

    def pids(self) -> dict[str, int]:
        return self.state().get("pids", {})

    def running_pids(self) -> dict[str, int]:
        return {name: pid for name, pid in self.pids().items() if pid_alive(pid)}

    @property
    def server(self) -> str:
        return self.state()["server"]

    # ---- processes -------------------------------------------------------------------
    def _spawn(self, name: str, args: list[str]) -> subprocess.Popen:
        log = open(self.logs / f"{name}.log", "ab")
        # A session of its own: `up` returns while the plane keeps running, and `down`
        # can signal the whole group.
        return subprocess.Popen(
            [self.binary(name), *args],
            stdout=log,
            stderr=subprocess.STDOUT,
            stdin=subprocess.DEVNULL,
            start_new_session=True,
            cwd=self.root,
        )

    def _save_state(self, **kw) -> None:
        state = self.state()
        state.update(kw)
        self.state_file.write_text(json.dumps(state, indent=2))

    def up(self, timeout: float = START_TIMEOUT_S) -> float:
        """Start every component and wait until the simulated nodes are Ready.
        Returns the seconds it took."""
        started = time.monotonic()
        if self.running_pids():
            raise ClusterError(f"a control plane is already running from {self.root}; run `down` first")
        # Every `up` starts from an empty store: tests and demos must not depend on leftovers.
        shutil.rmtree(self.root / "etcd-data", ignore_errors=True)
        for sub in ("etcd-data", "logs"):
            (self.root / sub).mkdir(parents=True, exist_ok=True)
        self.make_pki()
        ports = Ports.pick()
        server = f"https://127.0.0.1:{ports.apiserver}"
        self.write_kubeconfig(server)
        procs: dict[str, subprocess.Popen] = {}

        def record(name: str, proc: subprocess.Popen) -> None:
            procs[name] = proc
            self._save_state(server=server, pids={n: p.pid for n, p in procs.items()})

        try:
            record(
                "etcd",
                self._spawn(
                    "etcd",
                    [
                        "--name=local",
                        f"--data-dir={self.root / 'etcd-data'}",
                        f"--listen-client-urls=http://127.0.0.1:{ports.etcd_client}",
                        f"--advertise-client-urls=http://127.0.0.1:{ports.etcd_client}",
                        f"--listen-peer-urls=http://127.0.0.1:{ports.etcd_peer}",
                        f"--initial-advertise-peer-urls=http://127.0.0.1:{ports.etcd_peer}",
                        f"--initial-cluster=local=http://127.0.0.1:{ports.etcd_peer}",
                        "--unsafe-no-fsync",
                        "--log-level=warn",
                        "--quota-backend-bytes=4294967296",
                    ],
                ),
            )
            p = self.pki
            apiserver_args = [
                f"--etcd-servers=http://127.0.0.1:{ports.etcd_client}",
                f"--secure-port={ports.apiserver}",
                "--bind-address=127.0.0.1",
                "--advertise-address=127.0.0.1",
                # No kubelet or kube-proxy run here, so no in-cluster endpoint for the apiserver.
                "--endpoint-reconciler-type=none",
                f"--cert-dir={p}",
                f"--tls-cert-file={p / 'apiserver.crt'}",
                f"--tls-private-key-file={p / 'apiserver.key'}",
                f"--client-ca-file={p / 'ca.crt'}",
                "--authorization-mode=Node,RBAC",
                "--service-cluster-ip-range=10.0.0.0/24",
                "--service-account-issuer=https://kubernetes.default.svc.cluster.local",
                f"--service-account-key-file={p / 'sa.pub'}",
                f"--service-account-signing-key-file={p / 'sa.key'}",
                "--allow-privileged=true",
                "--profiling=false",
                "--v=0",
                # Nodes by address, never by name through the machine's DNS (kubectl logs/exec).
                "--kubelet-preferred-address-types=InternalIP",
            ]
            # Kept so that `start_apiserver` brings it back with the very same flags.
            self._save_state(apiserver_args=apiserver_args)
            record("kube-apiserver", self._spawn("kube-apiserver", apiserver_args))
            wait_until("kube-apiserver to answer /readyz", lambda: self._readyz(server), timeout, procs)
            if self.lws:
                # The CRDs served before the controller manager starts: its garbage collector maps
                # owners by the discovery it reads at start (then every 30 s), and would leave an
                # LWS's StatefulSets and pods behind it until then.
                self.kubectl("apply", "--server-side", "-f", str(self.bin_dir / "lws-manifests" / "crd"))
                wait_until(
                    "the LWS CRDs to be served",
                    lambda: all(self._get(server, f"{path}?limit=1") for path in LWS_RESOURCES),
                    timeout,
                    procs,
                )
            for name, args in (
                (
                    "kube-controller-manager",
                    [
                        f"--kubeconfig={self.kubeconfig}",
                        "--leader-elect=false",
                        "--secure-port=0",
                        f"--service-account-private-key-file={p / 'sa.key'}",
                        f"--root-ca-file={p / 'ca.crt'}",
                        # Fake nodes have no kubelet: the node lifecycle controller would evict their pods.
                        # Pods have loopback IPs, which the apiserver refuses in Endpoints and
                        # EndpointSlices ("may not be in the loopback range"): their controllers would
                        # only retry and write a Warning Event each time, so they are off too.
                        "--controllers=*,-nodelifecycle,-cloud-node-lifecycle,-service-lb-controller,-node-route-controller,"
                        "-endpoint,-endpointslice,-endpointslicemirroring",
                        "--horizontal-pod-autoscaler-sync-period=5s",
                        "--v=0",
                    ],
                ),
                (
                    "kube-scheduler",
                    [f"--kubeconfig={self.kubeconfig}", "--leader-elect=false", "--secure-port=0", "--v=0"],
                ),
                (
                    "kwok",
                    [
                        f"--kubeconfig={self.kubeconfig}",
                        "--manage-all-nodes=false",
                        "--manage-nodes-with-annotation-selector=kwok.x-k8s.io/node=fake",
                        f"--server-address=127.0.0.1:{ports.kwok}",
                        # Pod IPs on loopback, where tests may send traffic: from a node's podCIDRs
                        # (hack/kwok/nodes.yaml), else from --cidr (nodes a test makes). A node's
                        # address is where its kubelet API, kwok's server, listens.
                        "--cidr=127.244.0.1/16",
                        "--node-ip=127.0.0.1",
                        "-c",
                        str(HACK / "kwok" / "stages.yaml"),
                    ],
                ),
            ):
                record(name, self._spawn(name, args))
            if self.lws:
                record(
                    "lws-manager",
                    self._spawn(
                        "lws-manager",
                        [
                            f"--config={self._write_lws_config(ports.lws_webhook)}",
                            f"--kubeconfig={self.kubeconfig}",
                            "--zap-log-level=info",
                        ],
                    ),
                )
                webhooks = self._lws_webhook_configurations(ports.lws_webhook)
                self.kubectl("apply", "--server-side", "-f", "-", input="\n".join(map(json.dumps, webhooks)))
            self.kubectl("apply", "-f", str(HACK / "kwok" / "nodes.yaml"))
            wait_until("the simulated nodes to be Ready", self._nodes_ready, timeout, procs)
            # The apiserver taints new nodes not-ready; the node lifecycle controller, which
            # would lift it, is off (it would evict pods from nodes that have no kubelet).
            self.kubectl("taint", "nodes", "--all", "node.kubernetes.io/not-ready:NoSchedule-")
            # The controller manager is working once it has made the default ServiceAccount.
            wait_until(
                "the controller manager to create ServiceAccount default/default",
                lambda: self.kubectl_ok("get", "serviceaccount", "default", "-n", "default"),
                timeout,
                procs,
            )
            if self.lws:
                self._wait_for_lws(
                    [hook["clientConfig"]["url"] for config in webhooks for hook in config["webhooks"]], timeout, procs
                )
        except BaseException:
            self.down()
            raise
        return time.monotonic() - started

    # ---- faults ----------------------------------------------------------------------
    def stop_apiserver(self, timeout: float = 20) -> None:
        """Stop the kube-apiserver alone (SIGTERM, then SIGKILL); etcd and the other
        components keep running and retry, as they would through a real outage."""
        pid = self.pids().get("kube-apiserver")
        if pid is None or not pid_alive(pid):
            raise ClusterError("kube-apiserver is not running")
        signal_group(pid, signal.SIGTERM)
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline and pid_alive(pid):
            time.sleep(0.1)
        if pid_alive(pid):
            signal_group(pid, signal.SIGKILL)
            wait_until("kube-apiserver to exit after SIGKILL", lambda: not pid_alive(pid), 5)
        signal_group(pid, 0)  # reaps it if it is our child
        wait_until("the apiserver's port to close", lambda: not self._readyz(self.server), 5)

    def start_apiserver(self, timeout: float = START_TIMEOUT_S) -> float:
        """Start the kube-apiserver again with the flags `up` gave it (same port, same
        certificates, same etcd) and wait for /readyz. Returns the seconds it took."""
        started = time.monotonic()
        state = self.state()
        if pid_alive(state.get("pids", {}).get("kube-apiserver", -1)):
            raise ClusterError("kube-apiserver is already running")
        proc = self._spawn("kube-apiserver", state["apiserver_args"])
        self._save_state(pids={**state["pids"], "kube-apiserver": proc.pid})
        wait_until(
            "kube-apiserver to answer /readyz again",
            lambda: self._readyz(self.server),
            timeout,
            {"kube-apiserver": proc},
        )
        return time.monotonic() - started

    def _readyz(self, server: str) -> bool:
        return self._get(server, "/readyz")

    def _get(self, server: str, path: str) -> bool:
        """True when the apiserver answers GET `path` (as the admin) with 200."""
        ctx = ssl.create_default_context(cafile=str(self.pki / "ca.crt"))
        ctx.load_cert_chain(str(self.pki / "admin.crt"), str(self.pki / "admin.key"))
        try:
            with urllib.request.urlopen(f"{server}{path}", context=ctx, timeout=2) as resp:
                return resp.status == 200
        except (urllib.error.URLError, OSError):
            return False

    def _nodes_ready(self) -> bool:
        out = self.kubectl_ok(
            "get",
            "nodes",
            "-o",
            "jsonpath={range .items[*]}{.status.conditions[?(@.type=='Ready')].status}{'\\n'}{end}",
        )
        return bool(out) and all(line == "True" for line in out.split())

    def kubectl(self, *args: str, input: str | None = None) -> str:
        proc = subprocess.run(
            [self.binary("kubectl"), f"--kubeconfig={self.kubeconfig}", *args],
            input=input,
            text=True,
            capture_output=True,
            timeout=60,
        )
        if proc.returncode != 0:
            raise ClusterError(f"kubectl {' '.join(args)} failed: {proc.stderr.strip()}")
        return proc.stdout

    def kubectl_ok(self, *args: str, input: str | None = None) -> str:
        """kubectl's output, or "" when it fails (for polling)."""
        try:
            return self.kubectl(*args, input=input).strip()
        except ClusterError:
            return ""

    def down(self, timeout: float = 20) -> None:
        """Stop every component (SIGTERM, then SIGKILL) and wait until none is left."""
        pids = self.pids()
        # Reverse start order: clients first, etcd last.
        for name in reversed(list(pids)):
            signal_group(pids[name], signal.SIGTERM)
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline and any(pid_alive(pid) for pid in pids.values()):
            time.sleep(0.1)
        for pid in pids.values():
            signal_group(pid, signal.SIGKILL)
        deadline = time.monotonic() + 5
        while time.monotonic() < deadline and any(pid_alive(pid) for pid in pids.values()):
            time.sleep(0.1)
        left = {n: p for n, p in pids.items() if pid_alive(p)}
        if left:
            raise ClusterError(f"processes still running after down: {left}")
        if self.state_file.exists():
            self.state_file.unlink()

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

from __future__ import annotations

import argparse
import base64
import json
import os
import shutil
import signal
import socket
import ssl
import subprocess
import sys
import time
import urllib.error
import urllib.request
from dataclasses import dataclass
from pathlib import Path

HACK = Path(__file__).resolve().parent
COMPONENTS = ("etcd", "kube-apiserver", "kube-controller-manager", "kube-scheduler", "kwok", "lws-manager")
# The resources of LWS's CRDs (its manager watches both).
LWS_RESOURCES = (
    "/apis/leaderworkerset.x-k8s.io/v1/leaderworkersets",
    "/apis/disaggregatedset.x-k8s.io/v1/disaggregatedsets",
)
START_TIMEOUT_S = 60


class ClusterError(RuntimeError):
    """The control plane could not be brought up; the message says which part and why."""


def tools_dir() -> Path:
    """The directory holding the pinned binaries (built or reused by hack/tools.sh)."""
    try:
        out = subprocess.run(
            ["bash", str(HACK / "tools.sh")], check=True, stdout=subprocess.PIPE, text=True
        ).stdout.strip()
    except subprocess.CalledProcessError as err:
        raise ClusterError("hack/tools.sh could not provide the Kubernetes binaries (its message is above)") from err
    return Path(out.splitlines()[-1])


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def wait_until(what: str, check, timeout: float, procs: dict[str, subprocess.Popen] | None = None) -> None:
    """Poll `check` until it is true; fail with `what` after `timeout` seconds or if a process died."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if check():
            return
        for name, proc in (procs or {}).items():
            if proc.poll() is not None:
                raise ClusterError(f"{name} exited with code {proc.returncode} while waiting for {what}; see its log")
        time.sleep(0.2)
    raise ClusterError(f"timed out after {timeout:.0f}s waiting for {what}")


@dataclass
class Ports:
    etcd_client: int
    etcd_peer: int
    apiserver: int
    kwok: int
    lws_webhook: int

    @classmethod
    def pick(cls) -> Ports:
        return cls(free_port(), free_port(), free_port(), free_port(), free_port())


class LocalCluster:
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

    # ---- certificates ----------------------------------------------------------------
    def _openssl(self, *args: str) -> None:
        subprocess.run(["openssl", *args], check=True, cwd=self.pki, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)

    def make_pki(self) -> None:
        """A CA, the apiserver's serving certificate, an admin client certificate
        (group system:masters), the service-account signing key and the LWS webhook's
        serving certificate (for 127.0.0.1, in the tls.crt/tls.key layout controller-runtime reads)."""
        self.pki.mkdir(parents=True, exist_ok=True)
        # The real node's bridge address (hack/realnode.py) came later: older certificates lack it.
        if not (self.pki / "admin.crt").exists() or "10.251.0.1" not in (self.pki / "san.cnf").read_text():
            shutil.rmtree(self.pki / "lws-webhook", ignore_errors=True)  # signed by the CA made below
            self._make_base_pki()
        if not (self.pki / "lws-webhook" / "tls.crt").exists():
            (self.pki / "lws-webhook").mkdir(exist_ok=True)
            (self.pki / "webhook.cnf").write_text(
                "basicConstraints=CA:FALSE\nkeyUsage=digitalSignature,keyEncipherment\n"
                "extendedKeyUsage=serverAuth\nsubjectAltName=IP:127.0.0.1,DNS:localhost\n"
            )
            o = self._openssl
            o(
                "req",
                "-newkey",
                "rsa:2048",
                "-nodes",
                "-keyout",
                "lws-webhook/tls.key",
                "-out",
                "lws-webhook.csr",
                "-subj",
                "/CN=lws-webhook",
            )
            o(
                "x509",
                "-req",
                "-in",
                "lws-webhook.csr",
                "-CA",
                "ca.crt",
                "-CAkey",
                "ca.key",
                "-CAcreateserial",
                "-out",
                "lws-webhook/tls.crt",
                "-days",
                "3650",
                "-extfile",
                "webhook.cnf",
            )

    def _make_base_pki(self) -> None:
        o = self._openssl
        o(
            "req",
            "-x509",
            "-newkey",
            "rsa:2048",
            "-nodes",
            "-keyout",
            "ca.key",
            "-out",
            "ca.crt",
            "-days",
            "3650",
            "-subj",
            "/CN=llm-operator-local-ca",
        )
        (self.pki / "san.cnf").write_text(
            "basicConstraints=CA:FALSE\nkeyUsage=digitalSignature,keyEncipherment\n"
            "extendedKeyUsage=serverAuth\nsubjectAltName=IP:127.0.0.1,IP:10.0.0.1,IP:10.251.0.1,DNS:localhost,"
            "DNS:kubernetes,DNS:kubernetes.default,DNS:kubernetes.default.svc,"
            "DNS:kubernetes.default.svc.cluster.local\n"
        )
        (self.pki / "client.cnf").write_text(
            "basicConstraints=CA:FALSE\nkeyUsage=digitalSignature,keyEncipherment\nextendedKeyUsage=clientAuth\n"
        )
        for name, subj, ext in (
            ("apiserver", "/CN=kube-apiserver", "san.cnf"),
            ("admin", "/O=system:masters/CN=local-admin", "client.cnf"),
        ):
            o("req", "-newkey", "rsa:2048", "-nodes", "-keyout", f"{name}.key", "-out", f"{name}.csr", "-subj", subj)
            o(
                "x509",
                "-req",
                "-in",
                f"{name}.csr",
                "-CA",
                "ca.crt",
                "-CAkey",
                "ca.key",
                "-CAcreateserial",
                "-out",
                f"{name}.crt",
                "-days",
                "3650",
                "-extfile",
                ext,
            )
        o("genrsa", "-out", "sa.key", "2048")
        o("rsa", "-in", "sa.key", "-pubout", "-out", "sa.pub")

    def write_kubeconfig(self, server: str) -> None:
        self.kubeconfig.write_text(
            f"""apiVersion: v1
kind: Config
clusters:
- name: local
  cluster:
    server: {server}
    certificate-authority: {self.pki / "ca.crt"}
users:
- name: admin
  user:
    client-certificate: {self.pki / "admin.crt"}
    client-key: {self.pki / "admin.key"}
contexts:
- name: local
  context: {{cluster: local, user: admin, namespace: default}}
current-context: local
"""
        )
        os.chmod(self.kubeconfig, 0o600)
        self.env_file.write_text(f'export KUBECONFIG="{self.kubeconfig}"\nexport PATH="{self.bin_dir}:$PATH"\n')

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

    # ---- LeaderWorkerSet ---------------------------------------------------------------
    def _write_lws_config(self, port: int) -> Path:
        """The manager's configuration (its --config, LWS's config.lws.x-k8s.io Configuration):
        no internal cert management (it would make a Secret for a Service and patch the
        webhook configurations; the local CA signs its certificate instead), no leader
        election, the webhook on loopback, metrics and health endpoints off."""
        path = self.root / "lws-config.json"
        path.write_text(
            json.dumps(
                {
                    "apiVersion": "config.lws.x-k8s.io/v1alpha1",
                    "kind": "Configuration",
                    "leaderElection": {"leaderElect": False},
                    "internalCertManagement": {"enable": False},
                    "webhook": {"host": "127.0.0.1", "port": port, "certDir": str(self.pki / "lws-webhook")},
                    "metrics": {"bindAddress": "0"},
                    "health": {"healthProbeBindAddress": "0"},
                },
                indent=2,
            )
        )
        return path

    def _lws_webhook_configurations(self, port: int) -> list[dict]:
        """LWS's own webhook configurations as its config/default install makes them (the
        kustomization in config/webhook: rules, paths, failure policies, and the pod webhooks'
        objectSelector, so they act on LWS pods only), each webhook reached at
        https://127.0.0.1:PORT/PATH instead of through a Service."""
        rendered = self.kubectl(
            "create", "-k", str(self.bin_dir / "lws-manifests" / "webhook"), "--dry-run=client", "-o", "json"
        )
        ca_bundle = base64.b64encode((self.pki / "ca.crt").read_bytes()).decode()
        configs = []
        for obj in json_stream(rendered):
            if obj["kind"] not in ("MutatingWebhookConfiguration", "ValidatingWebhookConfiguration"):
                continue  # the Service the webhooks would be reached through in a cluster
            obj["metadata"] = {"name": "lws-" + obj["metadata"]["name"]}  # config/default's namePrefix
            for hook in obj["webhooks"]:
                path = hook["clientConfig"]["service"]["path"]
                hook["clientConfig"] = {"url": f"https://127.0.0.1:{port}{path}", "caBundle": ca_bundle}
            configs.append(obj)
        return configs

    def _lws_serves(self, urls: list[str]) -> bool:
        """True when the manager serves every webhook URL with the certificate the apiserver
        trusts (it registers them one by one once its certificates are read)."""
        ctx = ssl.create_default_context(cafile=str(self.pki / "ca.crt"))
        for url in urls:
            req = urllib.request.Request(url, data=b"{}", method="POST", headers={"Content-Type": "application/json"})
            try:
                with urllib.request.urlopen(req, context=ctx, timeout=2):
                    pass  # controller-runtime answers an empty review with an AdmissionReview error
            except urllib.error.HTTPError as err:
                if err.code == 404:
                    return False
            except (urllib.error.URLError, OSError):
                return False
        return True

    def _lws_admits(self) -> bool:
        """True when the apiserver admits a LeaderWorkerSet through LWS's webhooks (a
        server-side dry run: the CRD is Established and the webhooks answer)."""
        probe = {
            "apiVersion": "leaderworkerset.x-k8s.io/v1",
            "kind": "LeaderWorkerSet",
            "metadata": {"name": "localcluster-probe", "namespace": "default"},
            "spec": {
                "leaderWorkerTemplate": {
                    "size": 1,
                    "workerTemplate": {"spec": {"containers": [{"name": "c", "image": "registry.invalid/none"}]}},
                }
            },
        }
        return bool(self.kubectl_ok("create", "--dry-run=server", "-o", "name", "-f", "-", input=json.dumps(probe)))

    def _wait_for_lws(self, urls: list[str], timeout: float, procs: dict[str, subprocess.Popen]) -> None:
        wait_until(
            f"the LWS manager to serve its webhooks ({', '.join(urls)})", lambda: self._lws_serves(urls), timeout, procs
        )
        wait_until("the apiserver to admit a LeaderWorkerSet through LWS's webhooks", self._lws_admits, timeout, procs)

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


def json_stream(text: str) -> list[dict]:
    """The objects of kubectl's `-o json` output for several objects: one JSON document each."""
    decoder, objects, at, text = json.JSONDecoder(), [], 0, text.strip()
    while at < len(text):
        obj, at = decoder.raw_decode(text, at)
        objects.append(obj)
        while at < len(text) and text[at].isspace():
            at += 1
    return objects


def pid_alive(pid: int) -> bool:
    """True when the process exists and is not a zombie."""
    try:
        stat = Path(f"/proc/{pid}/stat").read_text()
    except (FileNotFoundError, ProcessLookupError):
        return False
    return stat.rsplit(")", 1)[1].split()[0] != "Z"


def signal_group(pid: int, sig: int) -> None:
    try:
        os.killpg(pid, sig)
    except (ProcessLookupError, PermissionError):
        pass
    # Reap it if it is our child (the pytest fixture's case), so it is not left a zombie.
    try:
        os.waitpid(pid, os.WNOHANG)
    except ChildProcessError:
        pass


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

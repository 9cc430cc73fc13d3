"""Shared fixtures: one local control plane per test session, a fresh namespace per test,
and the operator running against it as a real process.

The control plane is never skipped: if it cannot start, every integration test errors
with the reason (missing Go toolchain, unreachable module proxy, a component that died).
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import time
import urllib.request
import uuid
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "hack"))

from localcluster import LocalCluster, free_port, pid_alive, tools_dir  # noqa: E402
from support.processlog import ProcessLog  # noqa: E402


def wait_for(what: str, check, timeout: float = 30, interval: float = 0.2):
    """Poll `check` until it returns something truthy; fail naming `what` after `timeout` s."""
    deadline = time.monotonic() + timeout
    last = None
    while time.monotonic() < deadline:
        last = check()
        if last:
            return last
        time.sleep(interval)
    raise AssertionError(f"timed out after {timeout}s waiting for {what}; last seen: {last!r}")


def condition(obj: dict | None, ctype: str) -> dict:
    """One status condition of an object, or {}."""
    for c in ((obj or {}).get("status") or {}).get("conditions") or []:
        if c["type"] == ctype:
            return c
    return {}


def versions_of(kubectl, objects) -> tuple:
    return tuple(kubectl.get(kind, name)["metadata"]["resourceVersion"] for kind, name in objects)


def settled(kubectl, objects, quiet: float = 3, timeout: float = 30) -> tuple:
    """The objects' resourceVersions once none has changed for `quiet` seconds."""
    deadline = time.monotonic() + timeout
    last, since = versions_of(kubectl, objects), time.monotonic()
    while time.monotonic() < deadline:
        now = versions_of(kubectl, objects)
        if now != last:
            last, since = now, time.monotonic()
        elif time.monotonic() - since >= quiet:
            return last
        time.sleep(0.2)
    raise AssertionError(f"{objects} kept changing for {timeout}s")


def wait_for_other_namespaces_to_go(kubectl, timeout: float = 120) -> None:
    """apiserver counts and the Service IP range are cluster-wide: let other tests'
    namespaces finish going first (the failure names those left and why)."""
    left: dict = {}

    def others_gone() -> bool:
        left.clear()
        left.update({n["metadata"]["name"]: [c.get("message") for c in (n.get("status") or {}).get("conditions") or []
                                             if c.get("status") == "True"] or (n.get("status") or {}).get("phase")
                     for n in kubectl.items("namespaces")
                     if n["metadata"]["name"].startswith("t-") and n["metadata"]["name"] != kubectl.namespace})
        return not left
    try:
        wait_for("other test namespaces to be gone", others_gone, timeout, interval=0.5)
    except AssertionError as err:
        raise AssertionError(f"{err}; still there, with why: {left}") from None


def make_storage_class(cluster, name: str) -> None:
    """A StorageClass with no provisioner: claims bind only to volumes made ahead (bound_volume)."""
    Kubectl(cluster).apply(f"""
apiVersion: storage.k8s.io/v1
kind: StorageClass
metadata: {{name: {name}}}
provisioner: kubernetes.io/no-provisioner
volumeBindingMode: Immediate
""")


def bound_volume(cluster, namespace: str, claim: str, storage_class: str, name: str | None = None) -> None:
    """A PersistentVolume of `storage_class` bound ahead to the claim the operator will make."""
    name = name or f"{namespace}-{claim}"
    Kubectl(cluster).apply(json.dumps({
        "apiVersion": "v1", "kind": "PersistentVolume", "metadata": {"name": name},
        "spec": {"capacity": {"storage": "500Gi"}, "accessModes": ["ReadWriteMany"], "storageClassName": storage_class,
                 "persistentVolumeReclaimPolicy": "Delete", "claimRef": {"namespace": namespace, "name": claim},
                 "hostPath": {"path": f"/tmp/{name}"}}}))


class Kubectl:
    """kubectl against the session's control plane, in one namespace."""

    def __init__(self, cluster: LocalCluster, namespace: str | None = None):
        self.cluster = cluster
        self.namespace = namespace

    def run(self, *args: str, input: str | None = None, check: bool = True, as_user: str | None = None,
            timeout: float = 60) -> subprocess.CompletedProcess:
        cmd = [self.cluster.binary("kubectl"), f"--kubeconfig={self.cluster.kubeconfig}"]
        if self.namespace:
            cmd.append(f"--namespace={self.namespace}")
        if as_user:
            cmd.append(f"--as={as_user}")
        proc = subprocess.run([*cmd, *args], input=input, text=True, capture_output=True, timeout=timeout)
        if check and proc.returncode != 0:
            raise AssertionError(f"kubectl {' '.join(args)} failed: {proc.stderr.strip()}")
        return proc

    def apply(self, manifest: str, *flags: str) -> subprocess.CompletedProcess:
        return self.run("apply", "-f", "-", *flags, input=manifest)

    def get(self, kind: str, name: str | None = None, selector: str | None = None) -> dict | None:
        args = ["get", kind, "-o", "json"]
        if name:
            args.insert(2, name)
        if selector:
            args += ["-l", selector]
        proc = self.run(*args, check=False)
        if proc.returncode != 0:
            if "NotFound" in proc.stderr:
                return None
            raise AssertionError(f"kubectl get {kind} {name or ''} failed: {proc.stderr.strip()}")
        return json.loads(proc.stdout)

    def items(self, kind: str, selector: str | None = None) -> list[dict]:
        return (self.get(kind, selector=selector) or {}).get("items", [])


ARGOCD_HEALTH = ROOT / "charts" / "llm-operator" / "argocd-health.lua"


@pytest.fixture(scope="session")
def client_verdicts():
    """Judge objects as the real clients do: `run(objects)` gives, per object, kstatus'
    (cli-utils) and Argo CD's (argocd-health.lua under gopher-lua) verdicts, each a dict with
    status and message, from hack/statuscheck (built and cached by hack/tools.sh)."""
    binary = tools_dir() / "statuscheck"

    def run(objects: list[dict], health: Path = ARGOCD_HEALTH) -> list[dict]:
        proc = subprocess.run([str(binary), f"--argocd-health={health}"], input=json.dumps(objects),
                              text=True, capture_output=True, timeout=30)
        if proc.returncode != 0:
            raise AssertionError(f"statuscheck failed ({proc.returncode}): {proc.stderr.strip()}")
        out = [json.loads(line) for line in proc.stdout.splitlines()]
        want = sum(len(o["items"]) if o.get("kind", "").endswith("List") else 1 for o in objects)
        assert len(out) == want, f"statuscheck judged {len(out)} of {want} objects:\n{proc.stdout}"
        return out
    return run


@pytest.fixture(scope="session")
def cluster(tmp_path_factory) -> LocalCluster:
    root = tmp_path_factory.mktemp("cluster")
    plane = LocalCluster(root, bin_dir=tools_dir())
    secs = plane.up()
    print(f"\nlocal control plane up in {secs:.1f}s ({root})")
    yield plane
    plane.down()


@pytest.fixture
def namespace(cluster) -> str:
    name = f"t-{uuid.uuid4().hex[:8]}"
    Kubectl(cluster).run("create", "namespace", name)
    yield name
    Kubectl(cluster).run("delete", "namespace", name, "--wait=false", check=False)


@pytest.fixture
def kubectl(cluster, namespace) -> Kubectl:
    return Kubectl(cluster, namespace)


def install_crd(cluster) -> None:
    """Apply the CRD and wait until it is Established. Not `kubectl wait --for=condition=`:
    on a CRD so new that it has no status.conditions yet, kubectl fails at once
    ("accessor error: <nil> ...") instead of waiting."""
    kubectl = Kubectl(cluster)
    kubectl.run("apply", "--server-side", "-f", str(ROOT / "crds" / "llmdeployments.yaml"))
    wait_for("the LLMDeployment CRD to be Established",
             lambda: condition(kubectl.get("crd", "llmdeployments.llm-operator.io"), "Established").get("status") == "True",
             30)


@pytest.fixture(scope="session")
def crd_installed(cluster) -> None:
    install_crd(cluster)


class OperatorProcess(ProcessLog):
    """`llm-operator run` as a child process, with its log in a file."""

    def __init__(self, cluster: LocalCluster, log_path: Path, extra_env: dict | None = None,
                 kubeconfig: Path | None = None, scope: tuple[str, ...] = ("--all-namespaces",),
                 extra_args: tuple[str, ...] = ()):
        self.extra_args = extra_args
        self.cluster = cluster
        self.kubeconfig = kubeconfig or cluster.kubeconfig
        self.scope = scope
        super().__init__(log_path)
        self.extra_env = extra_env or {}
        self.proc: subprocess.Popen | None = None

    def start(self) -> None:
        env = {**os.environ, "KUBECONFIG": str(self.kubeconfig), **self.extra_env}
        log = open(self.log_path, "ab")
        self.liveness = f"http://127.0.0.1:{free_port()}/healthz"
        self.metrics_port = free_port()
        self.proc = subprocess.Popen(
            [sys.executable, "-m", "llm_operator.cli", "run", *self.scope, f"--liveness={self.liveness}",
             f"--metrics-port={self.metrics_port}", *self.extra_args],
            env=env, stdout=log, stderr=subprocess.STDOUT, cwd=ROOT,
        )

        def alive() -> bool:
            if self.proc.poll() is not None:
                raise AssertionError(f"the operator exited with {self.proc.returncode}:\n{self.log()[-3000:]}")
            try:
                with urllib.request.urlopen(self.liveness, timeout=1) as resp:
                    return resp.status == 200
            except OSError:
                return False

        wait_for("the operator's liveness endpoint", alive, 30)

    def stop(self) -> None:
        if self.proc and self.proc.poll() is None:
            self.proc.terminate()
            try:
                self.proc.wait(timeout=20)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait(timeout=10)

    def refusals(self) -> list[str]:
        """Log lines where the API refused the operator: the apiserver's 403s ("Forbidden",
        "... is forbidden: User ...") and kopf's "Not enough permissions"; not a write into
        a namespace being deleted, which every cleanup causes, nor an admission refusal that
        says "forbidden" about the object itself (a claim that cannot grow); nor what a test
        excused (an apiserver restarting answers 403 until its caches fill)."""
        return [line for line in self.unexcused_lines()
                if any(sign in line for sign in ("Forbidden", "forbidden: User", "Not enough permissions"))
                and "being terminated" not in line]

    def metric(self, name: str) -> float:
        """Sum of one metric's samples on the operator's /metrics."""
        with urllib.request.urlopen(f"http://127.0.0.1:{self.metrics_port}/metrics", timeout=5) as resp:
            text = resp.read().decode()
        return sum(float(line.rsplit(" ", 1)[1]) for line in text.splitlines()
                   if line.startswith(name) and not line.startswith("#"))


def apiserver_writes(cluster: LocalCluster, resources: set[str]) -> dict[tuple[str, str, str], float]:
    """apiserver_request_total for write verbs on `resources`, by (resource, subresource, verb)."""
    text = Kubectl(cluster).run("get", "--raw", "/metrics").stdout
    out: dict[tuple[str, str, str], float] = {}
    for line in text.splitlines():
        if not line.startswith("apiserver_request_total{"):
            continue
        labels = dict(kv.split("=", 1) for kv in line[line.index("{") + 1:line.rindex("}")].split(","))
        labels = {k: v.strip('"') for k, v in labels.items()}
        if labels.get("resource") in resources and labels.get("verb") in ("POST", "PUT", "PATCH", "APPLY", "DELETE"):
            key = (labels["resource"], labels.get("subresource", ""), labels["verb"])
            out[key] = out.get(key, 0) + float(line.rsplit(" ", 1)[1])
    return out


MODELS = ROOT / "tests" / "data" / "models"
# Repositories the Hub stand-in serves to the operator: config.json and a safetensors
# header whose one tensor holds the model's published parameter count.
# Names the Hub stand-in answers as not existing: a repository, and a revision of any repository.
HUB_MISSING = {"test/no-such-model"}
HUB_MISSING_REVISIONS = {"no-such-revision"}
HUB_UNREACHABLE = {"test/unreachable"}     # the connection drops, as when the Hub cannot be reached
HUB_MODELS = {"test/llama-3-70b": "llama-3-70b", "test/qwen2.5-7b": "qwen2.5-7b", "test/mistral-7b": "mistral-7b"}


TINY_MODEL, TINY_LORA = "test/tiny-llama", "test/tiny-llama-lora"


@pytest.fixture(scope="session")
def tiny_repos(tmp_path_factory) -> dict[str, dict[str, bytes]]:
    """The tiny Llama and its LoRA adapter (hack/tinymodel.py), as Hub repositories: what a real
    engine serves in the real-engine tier."""
    import tinymodel

    made = tinymodel.make(tmp_path_factory.mktemp("tiny-model"), base_repo=TINY_MODEL)
    return {repo: {f.name: f.read_bytes() for f in sorted(made[kind].iterdir())}
            for repo, kind in ((TINY_MODEL, "model"), (TINY_LORA, "lora"))}


@pytest.fixture(scope="session")
def tiny_hub(tiny_repos):
    """A Hub stand-in with the whole protocol llm-runtime download uses (tests/support/hub.py),
    serving the tiny model and its adapter under commit ids of their content."""
    from support.hub import HubServer

    server = HubServer(tiny_repos)
    yield server
    server.close()


@pytest.fixture(scope="session")
def hub(tiny_repos):
    from support.hubstub import FakeHub, safetensors_header_only

    params = json.loads((MODELS / "params.json").read_text())
    repos = {
        repo: {"config.json": (MODELS / short / "config.json").read_bytes(),
               "model.safetensors": safetensors_header_only({"all": ("BF16", [params[short]])})}
        for repo, short in HUB_MODELS.items()
    }
    # Pre-quantized checkpoints: TGI reads quantization_config from config.json and quantizes by it.
    mistral = json.loads((MODELS / "mistral-7b" / "config.json").read_text())
    for repo, quantization in (("test/mistral-7b-awq", {"quant_method": "awq", "bits": 4, "group_size": 128, "version": "gemm"}),
                               ("test/mistral-7b-exl2", {"quant_method": "exl2", "bits": 4.0})):
        repos[repo] = {"config.json": json.dumps({**mistral, "quantization_config": quantization}).encode(),
                       "model.safetensors": safetensors_header_only({"all": ("BF16", [params["mistral-7b"]])})}
    # LoRA adapters as PEFT saves them: three trained on test/mistral-7b, one on another model.
    for repo, base in (("test/support-lora", "test/mistral-7b"), ("test/sql-lora", "test/mistral-7b"),
                       ("test/summary-lora", "mirror-org/Mistral-7B"), ("test/llama-lora", "meta-llama/Llama-2-7b-hf")):
        repos[repo] = {"adapter_config.json": json.dumps({
            "base_model_name_or_path": base, "peft_type": "LORA", "task_type": "CAUSAL_LM", "r": 16, "lora_alpha": 32,
            "lora_dropout": 0.05, "target_modules": ["q_proj", "k_proj", "v_proj", "o_proj"], "bias": "none"}).encode()}
    # The tiny model's files as they are: the operator plans it from its own config.json.
    repos.update(tiny_repos)
    # Repositories it does not hold answer as gated (the operator goes on with the spec's
    # GPUs, as for a private model), but for the ones named as missing: those do not exist.
    server = FakeHub(repos, gated={"test/gated"}, missing=HUB_MISSING, missing_revisions=HUB_MISSING_REVISIONS,
                     unreachable=HUB_UNREACHABLE)
    yield server
    server.close()


class PodMetrics:
    """Serves TGI /metrics text in place of the pods (kwok pods have no server), by
    namespace, with per-pod overrides; a pod set to None does not answer. For a namespace in
    `relay` (real engines, tests/support/realengine.py), each scrape is passed to the pod's own address
    and the engine's answer returned as it is."""

    def __init__(self):
        from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
        import threading

        self.by_namespace: dict[str, str] = {}
        self.by_pod: dict[tuple[str, str], str | None] = {}
        self.relay: set[str] = set()
        served = self

        class Handler(BaseHTTPRequestHandler):
            def do_GET(self):
                path, _, query = self.path.partition("?")
                parts = path.strip("/").split("/")
                text = None
                if len(parts) == 3 and parts[0] in served.relay:
                    text = served.from_pod(dict(kv.split("=", 1) for kv in query.split("&") if "=" in kv))
                elif len(parts) == 3:
                    text = served.text_for(parts[0], parts[1])
                if text is None:
                    self.send_response(503)
                    self.end_headers()
                    return
                body = text.encode()
                self.send_response(200)
                self.send_header("Content-Type", "text/plain; version=0.0.4")
                self.send_header("Content-Length", str(len(body)))
                self.end_headers()
                self.wfile.write(body)

            def log_message(self, *args):
                pass

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.url = (f"http://127.0.0.1:{self.server.server_address[1]}/{{namespace}}/{{pod}}/metrics"
                    "?ip={pod_ip}&port={port}")
        threading.Thread(target=self.server.serve_forever, daemon=True).start()

    def text_for(self, namespace: str, pod: str) -> str | None:
        if (namespace, pod) in self.by_pod:
            return self.by_pod[(namespace, pod)]
        return self.by_namespace.get(namespace)

    @staticmethod
    def from_pod(query: dict[str, str]) -> str | None:
        from support.loopback import require_loopback

        try:
            url = f"http://{require_loopback(query.get('ip', ''))}:{int(query.get('port', ''))}/metrics"
            with urllib.request.urlopen(url, timeout=2) as resp:
                return resp.read().decode()
        except (OSError, ValueError):
            return None

    def close(self):
        self.server.shutdown()
        self.server.server_close()


@pytest.fixture(scope="session")
def pod_metrics():
    server = PodMetrics()
    yield server
    server.close()


@pytest.fixture(scope="session")
def gateway(cluster, crd_installed, tmp_path_factory):
    from support.gatewayprocess import GatewayProcess
    from support.serviceaccount import install_gateway_rbac

    # With exactly the chart's rules for the gateway, as its own ServiceAccount.
    kubeconfig = install_gateway_rbac(cluster, release="llm-operator-gw")
    gw = GatewayProcess(kubeconfig, tmp_path_factory.mktemp("gateway") / "gateway.log")
    gw.start()
    yield gw
    gw.stop()
    refused = gw.refusals()
    assert not refused, "the chart's RBAC refused the gateway:\n" + "\n".join(refused[:10])


@pytest.fixture(scope="session")
def operator(cluster, crd_installed, hub, pod_metrics, gateway, tmp_path_factory) -> OperatorProcess:
    home = tmp_path_factory.mktemp("operator")
    # The Hub is the one edge no test reaches: the operator reads model facts from the stand-in.
    # kwok pods serve nothing: their /metrics come from a local server the tests control.
    env = {"HF_ENDPOINT": hub.endpoint, "HF_HOME": str(home / "hf")}
    # The local plane runs LeaderWorkerSet: multi-node replicas on, as the chart's lws.enabled does.
    # The session's gateway runs beside it: the autoscaler reads its counts (metric concurrency).
    args = (f"--pod-metrics-url={pod_metrics.url}", "--autoscale-interval=1", "--leaderworkersets",
            f"--gateway-metrics-url={gateway.url}/metrics")
    from support.serviceaccount import install_operator_rbac

    # The operator runs with exactly the Helm chart's RBAC, as its ServiceAccount: every
    # integration test is also a test that those rules are enough. (A release of its own:
    # tests of the default values apply theirs as release llm-operator.)
    op = OperatorProcess(cluster, home / "operator.log", extra_env=env,
                         kubeconfig=install_operator_rbac(cluster, set_values=("lws.enabled=true",), release="llm-operator-lws"),
                         extra_args=args)
    op.start()
    yield op
    op.stop()
    refused = op.refusals()
    assert not refused, "the chart's RBAC refused the operator:\n" + "\n".join(refused[:10])

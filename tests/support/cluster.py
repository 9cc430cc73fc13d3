"""The local control plane as the tests drive it: kubectl in one namespace, waiting for a
condition, reading status conditions, and the cluster-wide objects some tests need first (a
StorageClass, a PersistentVolume bound ahead, the CRD)."""

from __future__ import annotations

import json
import subprocess
import time
from typing import TYPE_CHECKING

from support.paths import ROOT

if TYPE_CHECKING:
    from localcluster import LocalCluster


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


class Kubectl:
    """kubectl against the session's control plane, in one namespace."""

    def __init__(self, cluster: LocalCluster, namespace: str | None = None):
        self.cluster = cluster
        self.namespace = namespace

    def run(
        self, *args: str, input: str | None = None, check: bool = True, as_user: str | None = None, timeout: float = 60
    ) -> subprocess.CompletedProcess:
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
        left.update(
            {
                n["metadata"]["name"]: [
                    c.get("message")
                    for c in (n.get("status") or {}).get("conditions") or []
                    if c.get("status") == "True"
                ]
                or (n.get("status") or {}).get("phase")
                for n in kubectl.items("namespaces")
                if n["metadata"]["name"].startswith("t-") and n["metadata"]["name"] != kubectl.namespace
            }
        )
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
    Kubectl(cluster).apply(
        json.dumps(
            {
                "apiVersion": "v1",
                "kind": "PersistentVolume",
                "metadata": {"name": name},
                "spec": {
                    "capacity": {"storage": "500Gi"},
                    "accessModes": ["ReadWriteMany"],
                    "storageClassName": storage_class,
                    "persistentVolumeReclaimPolicy": "Delete",
                    "claimRef": {"namespace": namespace, "name": claim},
                    "hostPath": {"path": f"/tmp/{name}"},
                },
            }
        )
    )


def install_crd(cluster) -> None:
    """Apply the CRD and wait until it is Established. Not `kubectl wait --for=condition=`:
    on a CRD so new that it has no status.conditions yet, kubectl fails at once
    ("accessor error: <nil> ...") instead of waiting."""
    kubectl = Kubectl(cluster)
    kubectl.run("apply", "--server-side", "-f", str(ROOT / "crds" / "llmdeployments.yaml"))
    wait_for(
        "the LLMDeployment CRD to be Established",
        lambda: condition(kubectl.get("crd", "llmdeployments.llm-operator.io"), "Established").get("status") == "True",
        30,
    )


def apiserver_writes(cluster: LocalCluster, resources: set[str]) -> dict[tuple[str, str, str], float]:
    """apiserver_request_total for write verbs on `resources`, by (resource, subresource, verb)."""
    text = Kubectl(cluster).run("get", "--raw", "/metrics").stdout
    out: dict[tuple[str, str, str], float] = {}
    for line in text.splitlines():
        if not line.startswith("apiserver_request_total{"):
            continue
        labels = dict(kv.split("=", 1) for kv in line[line.index("{") + 1 : line.rindex("}")].split(","))
        labels = {k: v.strip('"') for k, v in labels.items()}
        if labels.get("resource") in resources and labels.get("verb") in ("POST", "PUT", "PATCH", "APPLY", "DELETE"):
            key = (labels["resource"], labels.get("subresource", ""), labels["verb"])
            out[key] = out.get(key, 0) + float(line.rsplit(" ", 1)[1])
    return out


def apiserver_requests(cluster: LocalCluster, resource: str) -> dict[str, float]:
    """apiserver_request_total of one resource, its subresources left out, by verb (POST, GET
    of one object, LIST, WATCH, ...): every request the apiserver answered, whoever sent it."""
    text = Kubectl(cluster).run("get", "--raw", "/metrics").stdout
    out: dict[str, float] = {}
    for line in text.splitlines():
        if not line.startswith("apiserver_request_total{"):
            continue
        labels = dict(kv.split("=", 1) for kv in line[line.index("{") + 1 : line.rindex("}")].split(","))
        labels = {k: v.strip('"') for k, v in labels.items()}
        if labels.get("resource") == resource and not labels.get("subresource"):
            out[labels["verb"]] = out.get(labels["verb"], 0) + float(line.rsplit(" ", 1)[1])
    return out


# ---- reading what the operator made ----------------------------------------------------------

# The kinds of an LLMDeployment's children (labelled app.kubernetes.io/instance=<its name>).
CHILD_KINDS = (
    "deployments",
    "services",
    "poddisruptionbudgets",
    "jobs",
    "persistentvolumeclaims",
    "horizontalpodautoscalers",
)


def children(kubectl, name: str) -> dict[str, list[str]]:
    """An LLMDeployment's children by kind: their names, for each kind it has any of."""
    out = {}
    for kind in CHILD_KINDS:
        names = [i["metadata"]["name"] for i in kubectl.items(kind, f"app.kubernetes.io/instance={name}")]
        if names:
            out[kind] = names
    return out


def wait_reason(kubectl, name: str, reason: str, timeout: float = 30) -> dict:
    """LLMDeployment `name` once its Ready condition gives `reason`."""
    return wait_for(
        f"llmd/{name} Ready reason {reason}",
        lambda: (o := kubectl.get("llmd", name)) and condition(o, "Ready").get("reason") == reason and o,
        timeout,
    )


def events(kubectl, name: str, reason: str) -> list[dict]:
    """The namespace's Events about the object named `name`, of `reason`."""
    return [e for e in kubectl.items("events") if e["involvedObject"]["name"] == name and e["reason"] == reason]


def pods_of(kubectl, name: str) -> list[dict]:
    """An LLMDeployment's pods, but those being deleted."""
    return [
        p for p in kubectl.items("pods", f"llm-operator.io/name={name}") if not p["metadata"].get("deletionTimestamp")
    ]


def ready(pod: dict | None) -> bool:
    """A pod (or any object) with condition Ready=True."""
    return bool(pod) and condition(pod, "Ready").get("status") == "True"


def container(kubectl, name: str) -> dict:
    """The engine container of Deployment `name`'s pod template."""
    return kubectl.get("deployment", name)["spec"]["template"]["spec"]["containers"][0]


def engine_args(deployment: dict) -> list[str]:
    """The engine container's args in a Deployment."""
    return deployment["spec"]["template"]["spec"]["containers"][0]["args"]


def arg(args: list[str], flag: str) -> str | None:
    """The value after `flag` in an argv, or None."""
    return args[args.index(flag) + 1] if flag in args else None

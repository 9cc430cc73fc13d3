"""Publishing the images: hack/publish.py builds the Dockerfile's operator target with buildah at
one fixed time, pushes it and the chart that names it to a registry (the CNCF distribution
registry, plain HTTP on loopback, hack/registry.py), and the real node's containerd pulls the
image when the chart is installed from that registry.

The build runs over the local stand-in of the Dockerfile's base that the rest of the tier uses
(hack/images.py), in the same buildah storage; the images it tags there are removed afterwards.
Only the operator target is built: the runtime and vllm-cpu targets go through the same code."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import urllib.request
from datetime import UTC, datetime

import pytest

from images import HOST_CA, Builder, ensure_packages
from kubenode.host import container_pids
from realnode import NODE_LABEL, NODE_NAME, TAINT_KEY, RealNode, host_snapshot
from registry import LocalRegistry
from support.cluster import Kubectl, wait_for
from support.loopback import real_node_url
from support.paths import ROOT

OPERATOR_NAMESPACE = "llm-published-system"
WATCHED = "llm-published"
PREFIX = "llmop"  # REGISTRY is HOST:PORT/llmop, as a team's registry path
TAG = "rn"
CHART_VERSION = "0.1.0"
ON_THE_NODE = {
    "nodeSelector": {NODE_LABEL: "true"},
    "tolerations": [{"key": TAINT_KEY, "operator": "Exists", "effect": "NoSchedule"}],
}


@pytest.fixture(scope="module")
def registry(tmp_path_factory):
    local = LocalRegistry(tmp_path_factory.mktemp("registry"))
    local.start()
    yield local
    local.stop()
    assert local.proc is not None and local.proc.poll() is not None, "the registry is still running"


def publish(
    registry: LocalRegistry, tag: str, out, epoch: int | None = None, chart_version: str = CHART_VERSION
) -> dict:
    """hack/publish.py as `make images ... PUSH=1 PLAIN_HTTP=1` runs it, with the tier's base and
    the build settings of hack/images.py (host network for PyPI, the machine's CA bundle)."""
    env = {k: v for k, v in os.environ.items() if k != "SOURCE_DATE_EPOCH"}
    if epoch is not None:
        env["SOURCE_DATE_EPOCH"] = str(epoch)
    # fmt: off
    cmd = [
        sys.executable, str(ROOT / "hack" / "publish.py"),
        "--registry", f"{registry.host}/{PREFIX}", "--tag", tag, "--targets", "operator",
        "--push", "--plain-http", "--out", str(out), "--chart-version", chart_version,
        "--storage", str(Builder().root), "--pull", "never",
        "--network", "host", "--volume", f"{HOST_CA}:{HOST_CA}:ro",
    ]
    # fmt: on
    proc = subprocess.run(cmd, capture_output=True, text=True, env=env, timeout=420)
    assert proc.returncode == 0, proc.stdout + proc.stderr[-4000:]
    return json.loads((out / "published.json").read_text())


@pytest.fixture(scope="module")
def published(registry, tmp_path_factory):
    ensure_packages()
    builder = Builder()
    built = builder.build(("pause", "python"))  # the base the Dockerfile names, and the node's pause image
    report = publish(registry, TAG, tmp_path_factory.mktemp("dist"))
    yield {**report, "pause": built["pause"][1]}
    for tag in (TAG, "again"):
        subprocess.run(
            [
                "buildah",
                "--root",
                str(builder.root / "storage"),
                "--runroot",
                str(builder.root / "run"),
                "--storage-driver",
                "vfs",
                "rmi",
                f"{registry.host}/{PREFIX}/llm-operator:{tag}",
            ],
            capture_output=True,
        )


def registry_get(registry: LocalRegistry, path: str, accept: str = "") -> tuple[dict, dict]:
    req = urllib.request.Request(f"http://{registry.host}/v2/{path}", headers={"Accept": accept} if accept else {})
    with urllib.request.urlopen(req, timeout=10) as resp:
        return dict(resp.headers), json.loads(resp.read())


def test_the_same_tree_builds_the_same_image_and_pushes_the_same_digest(registry, published, tmp_path):
    first = published["images"]["operator"]
    commit_time = subprocess.run(
        ["git", "-C", str(ROOT), "log", "-1", "--format=%ct"], capture_output=True, text=True
    ).stdout.strip()
    # The fixed time is the last commit's when SOURCE_DATE_EPOCH is not set; given here, so that
    # a commit made between the two builds cannot change it.
    assert published["sourceDateEpoch"] <= int(commit_time)
    # A chart version of its own: the chart that names TAG stays what 0.1.0 is in the registry.
    again = publish(registry, "again", tmp_path, published["sourceDateEpoch"], "0.1.0-again")["images"]["operator"]
    assert (again["id"], again["digest"]) == (first["id"], first["digest"])
    oci = "application/vnd.oci.image.manifest.v1+json"
    headers, manifest = registry_get(registry, f"{PREFIX}/llm-operator/manifests/{TAG}", oci)
    assert headers["Docker-Content-Digest"] == first["digest"]
    _, config = registry_get(registry, f"{PREFIX}/llm-operator/blobs/{manifest['config']['digest']}")
    created = datetime.fromtimestamp(published["sourceDateEpoch"], UTC).strftime("%Y-%m-%dT%H:%M:%SZ")
    assert config["created"] == created
    assert config["config"]["User"] == "65532:65532"


def test_the_published_chart_runs_the_pulled_image_on_the_real_node(
    cluster, crd_installed, registry, published, tmp_path
):
    """`helm install` from the registry, with the packaged chart's own image values: the kubelet's
    containerd pulls the operator image over plain HTTP and runs it under the chart's security
    context (uid 65532, read-only root filesystem, no capabilities); it serves /healthz and is Ready."""
    kubectl = Kubectl(cluster)
    chart = published["chart"]["oci"]
    assert chart == f"oci://{registry.host}/{PREFIX}/charts/llm-operator"
    assert published["chart"]["package"].endswith(f"/llm-operator-{CHART_VERSION}.tgz")
    image = f"{registry.host}/{PREFIX}/llm-operator:{TAG}"
    before = host_snapshot()
    node = RealNode(cluster)
    node.up([published["pause"]])
    helm = [str(cluster.bin_dir / "helm"), f"--kubeconfig={cluster.kubeconfig}"]
    try:
        node.trust_plain_http_registry(registry.host)
        kubectl.run("create", "namespace", WATCHED, check=False)
        values = tmp_path / "values.json"  # JSON is YAML; no image values: the packaged chart's own
        values.write_text(
            json.dumps(
                {
                    **ON_THE_NODE,
                    "gateway": {"enabled": False},
                    "hub": {"offline": True},
                    "rbac": {"scope": "namespaced", "namespaces": [WATCHED]},
                }
            )
        )
        # fmt: off
        proc = subprocess.run(
            [
                *helm, "install", "published", chart, "--version", CHART_VERSION, "--plain-http",
                "-n", OPERATOR_NAMESPACE, "--create-namespace", "--wait", "--timeout=180s",
                "-f", str(values),
            ],
            capture_output=True, text=True, timeout=240,
        )
        # fmt: on
        if proc.returncode != 0:
            pods = kubectl.run("describe", "pods", "-n", OPERATOR_NAMESPACE, check=False).stdout
            raise AssertionError(f"helm install failed: {proc.stderr}\n{pods[-4000:]}")
        pod = json.loads(
            kubectl.run(
                "get", "pods", "-n", OPERATOR_NAMESPACE, "-l", "app.kubernetes.io/component=operator", "-o", "json"
            ).stdout
        )["items"][0]
        assert pod["spec"]["nodeName"] == NODE_NAME
        container, status = pod["spec"]["containers"][0], pod["status"]["containerStatuses"][0]
        assert (container["image"], container["imagePullPolicy"]) == (image, "IfNotPresent")
        # Pulled: containerd names the image by the digest the registry has it under.
        assert status["imageID"] == f"{registry.host}/{PREFIX}/llm-operator@{published['images']['operator']['digest']}"
        assert pod["spec"]["securityContext"]["runAsUser"] == 65532
        assert container["securityContext"]["readOnlyRootFilesystem"] is True
        assert status["ready"] is True
        with urllib.request.urlopen(real_node_url(pod, 8080, "/healthz"), timeout=10) as resp:
            assert resp.status == 200
        pids = wait_for(
            "the operator's processes", lambda: container_pids(status["containerID"].split("://", 1)[1]), 10
        )
        for pid in pids:
            uids = next(line for line in open(f"/proc/{pid}/status") if line.startswith("Uid:")).split()[1:]
            assert uids == ["65532"] * 4, (pid, uids)
    finally:
        subprocess.run(
            [*helm, "uninstall", "published", "-n", OPERATOR_NAMESPACE, "--wait", "--timeout=60s"],
            capture_output=True,
            timeout=90,
        )
        kubectl.run("delete", "namespace", WATCHED, OPERATOR_NAMESPACE, "--wait=false", check=False)
        problems = node.down()
        kubectl.run("delete", "node", NODE_NAME, "--wait=false", check=False)
    assert problems == []
    assert host_snapshot() == before

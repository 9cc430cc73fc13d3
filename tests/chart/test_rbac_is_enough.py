"""The chart's RBAC is enough: the operator, authenticated as the chart's ServiceAccount and
nothing more, takes an example model to Ready and reports a model that cannot fit, without
one request being refused. Once for each RBAC scope of the chart."""

from __future__ import annotations

import subprocess
import time
import uuid
from pathlib import Path

import pytest
import yaml

from support.cluster import Kubectl, condition, wait_for
from support.operatorprocess import OperatorProcess
from support.paths import ROOT
from support.serviceaccount import install_operator_rbac

pytestmark = pytest.mark.usefixtures("crd_installed")


def assert_no_other_operator(kubectl: Kubectl, name: str) -> None:
    """Nothing else may reconcile our models, or a Ready model would prove nothing about our
    rights: with no operator running, a model just applied keeps the CRD's default status."""
    deadline = time.monotonic() + 3
    while time.monotonic() < deadline:
        status = (kubectl.get("llmd", name) or {}).get("status") or {}
        assert status.get("observedGeneration") == 0 and not status.get("conditions"), (
            "another operator is running against this control plane; this test must be the only one"
        )
        time.sleep(0.2)


def serve_and_judge(cluster, kubeconfig: Path, scope: list[str], ns: str, hub, home: Path) -> None:
    """Apply the mistral-7b example and a model too big for its GPUs in `ns`; run the
    operator as the ServiceAccount; the first becomes Ready, the second Stalled, and the
    operator's log shows no refusal."""
    kubectl = Kubectl(cluster, ns)
    example = yaml.safe_load((ROOT / "examples" / "mistral-7b.yaml").read_text())
    name = example["metadata"]["name"]
    # 140 GB of bf16 weights on one GPU: the planner refuses it.
    too_big = {
        "apiVersion": "llm-operator.io/v1alpha1",
        "kind": "LLMDeployment",
        "metadata": {"name": "too-big"},
        "spec": {"model": {"id": "test/llama-3-70b"}, "gpus": 1},
    }
    kubectl.apply(yaml.safe_dump_all([example, too_big]))
    assert_no_other_operator(kubectl, name)

    # The same Hub stand-in as the integration suite's operator; only the credentials differ.
    op = OperatorProcess(
        cluster,
        home / "operator.log",
        kubeconfig=kubeconfig,
        scope=tuple(scope),
        extra_env={"HF_ENDPOINT": hub.endpoint, "HF_HOME": str(home / "hf")},
    )
    op.start()
    seen: dict[str, object] = {}

    def look(*wanted: tuple[str, str]) -> bool:
        refused = op.refusals()
        assert not refused, "the operator was refused:\n" + "\n".join(refused[:10])
        for obj, ctype in wanted:
            seen[f"{obj} {ctype}"] = condition(kubectl.get("llmd", obj), ctype)
        return all(seen[f"{obj} {ctype}"].get("status") == "True" for obj, ctype in wanted)

    def wait(what: str, check) -> None:
        try:
            wait_for(what, check, 60, interval=0.5)
        except AssertionError as err:
            raise AssertionError(f"{err}\nseen: {seen}\noperator log:\n{op.log()[-3000:]}") from None

    try:
        wait(f"llmd/{name} Ready and llmd/too-big Stalled", lambda: look((name, "Ready"), ("too-big", "Stalled")))
        assert kubectl.get("deployment", name) and kubectl.get("service", name)
    finally:
        op.stop()
    # Nothing refused after that either (the last status writes and watch events).
    assert not op.refusals(), op.log()[-4000:]


def test_kubeconfig_authenticates_as_the_chart_service_account(cluster):
    kubeconfig = install_operator_rbac(cluster)
    kubectl = [cluster.binary("kubectl"), f"--kubeconfig={kubeconfig}"]
    who = subprocess.run(
        [*kubectl, "auth", "whoami", "-o", "jsonpath={.status.userInfo.username}"],
        capture_output=True,
        text=True,
        timeout=30,
    )
    assert who.stdout == "system:serviceaccount:llm-system:llm-operator", who.stderr
    secrets = subprocess.run(
        [*kubectl, "get", "secrets", "-n", "llm-system"], capture_output=True, text=True, timeout=30
    )
    assert secrets.returncode != 0 and "Forbidden" in secrets.stderr


def test_cluster_scope_rbac_is_enough(cluster, hub, tmp_path):
    kubeconfig = install_operator_rbac(cluster)
    ns = f"rbac-{uuid.uuid4().hex[:8]}"
    Kubectl(cluster).run("create", "namespace", ns)
    try:
        serve_and_judge(cluster, kubeconfig, ["--all-namespaces"], ns, hub, tmp_path)
    finally:
        Kubectl(cluster).run("delete", "namespace", ns, "--wait=false", check=False)


def test_namespaced_scope_rbac_is_enough(cluster, hub, tmp_path):
    ns = f"rbac-ns-{uuid.uuid4().hex[:8]}"
    Kubectl(cluster).run("create", "namespace", ns)
    # Its own release name: the cluster-scope ClusterRole named llm-operator stays as it is.
    kubeconfig = install_operator_rbac(
        cluster,
        namespace="llm-system-namespaced",
        release="namespaced",
        set_values=("rbac.scope=namespaced", f"rbac.namespaces={{{ns}}}"),
    )
    try:
        serve_and_judge(cluster, kubeconfig, [f"--namespace={ns}"], ns, hub, tmp_path)
    finally:
        Kubectl(cluster).run("delete", "namespace", ns, "--wait=false", check=False)

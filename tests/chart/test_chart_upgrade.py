"""`helm upgrade` from the chart as it was before the gateway joined it, whose operator
Deployment selects by name and instance only (a Deployment's selector cannot change): the
upgrade succeeds with nothing deleted by hand, the Deployment is the same object with its
selector kept, and its pod runs the new template."""

from __future__ import annotations

import subprocess
import uuid
from pathlib import Path

import pytest

from support.cluster import Kubectl
from support.paths import CHART, ROOT

# The parent of the commit that added the gateway to the chart: the chart users upgrade from.
BEFORE_THE_GATEWAY = "a4217ed68459770735abe6d7d2cd2ed8f4bbaad7"


@pytest.fixture(scope="module")
def previous_chart(tmp_path_factory) -> Path:
    out = tmp_path_factory.mktemp("previous-chart")
    archive = subprocess.run(
        ["git", "-C", str(ROOT), "archive", BEFORE_THE_GATEWAY, "charts/llm-operator"],
        capture_output=True,
        check=True,
        timeout=60,
    )
    subprocess.run(["tar", "-x", "-C", str(out)], input=archive.stdout, check=True, timeout=60)
    return out / "charts" / "llm-operator"


def test_upgrade_from_the_chart_before_the_gateway_needs_no_manual_step(cluster, helm, previous_chart):
    release, ns = "chart-upgrade", f"chart-upgrade-{uuid.uuid4().hex[:6]}"
    full = f"{release}-llm-operator"
    instance = {"app.kubernetes.io/name": "llm-operator", "app.kubernetes.io/instance": release}
    k = Kubectl(cluster, ns)
    try:
        # --skip-crds: the session's CRD is the current one; the old chart's must not replace it.
        helm(
            "install",
            release,
            str(previous_chart),
            f"--namespace={ns}",
            "--create-namespace",
            "--skip-crds",
            "--wait",
            "--timeout=90s",
        )
        old = k.get("deployment", full)
        assert old["spec"]["selector"]["matchLabels"] == instance
        assert k.get("deployment", f"{full}-gateway") is None

        proc = helm("upgrade", release, str(CHART), f"--namespace={ns}", "--wait", "--timeout=90s", check=False)
        assert proc.returncode == 0, proc.stderr
        new = k.get("deployment", full)
        assert new["metadata"]["uid"] == old["metadata"]["uid"], "the Deployment was replaced"
        assert new["spec"]["selector"]["matchLabels"] == instance
        template = new["spec"]["template"]
        assert template["metadata"]["labels"]["app.kubernetes.io/component"] == "operator"
        (container,) = template["spec"]["containers"]
        assert any(a.startswith("--gateway-pods=") for a in container["args"]), container["args"]
        status = new["status"]
        assert status["observedGeneration"] == new["metadata"]["generation"] > old["metadata"]["generation"]
        assert status.get("updatedReplicas") == status.get("readyReplicas") == status.get("replicas") == 1
        (pod,) = k.items("pods", "app.kubernetes.io/component=operator")
        assert pod["spec"]["containers"][0]["args"] == container["args"], "the pod runs the new template"
        assert any(c["type"] == "Ready" and c["status"] == "True" for c in pod["status"]["conditions"])
        assert k.get("deployment", f"{full}-gateway")["status"].get("readyReplicas") == 1

        # And the upgraded release upgrades again.
        helm(
            "upgrade",
            release,
            str(CHART),
            f"--namespace={ns}",
            "--wait",
            "--timeout=90s",
            "--set",
            "operator.verbose=true",
        )
        again = k.get("deployment", full)
        assert again["metadata"]["uid"] == old["metadata"]["uid"]
        assert again["spec"]["selector"]["matchLabels"] == instance
        assert "--verbose" in again["spec"]["template"]["spec"]["containers"][0]["args"]
    finally:
        helm("uninstall", release, f"--namespace={ns}", "--ignore-not-found", check=False)
        Kubectl(cluster).run("delete", "namespace", ns, "--wait=false", check=False)

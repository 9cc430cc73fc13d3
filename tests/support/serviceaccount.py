"""Run anything as the Helm chart's ServiceAccount: its RBAC applied from the chart itself,
and a kubeconfig that authenticates with a token of that ServiceAccount.

    kubeconfig = install_operator_rbac(cluster)          # the chart's rules, cluster scope
    env = {**os.environ, "KUBECONFIG": str(kubeconfig)}   # the operator now has only those

The objects are rendered with `helm template --show-only` for the ServiceAccount and RBAC
templates only, so nothing else of the chart (the operator Deployment, its Service) is
created and no Helm release exists that a `helm install` of the same name would clash with.
"""

from __future__ import annotations

import json
import subprocess
from pathlib import Path

import yaml

from support.paths import CHART

RELEASE = "llm-operator"  # so the ServiceAccount and ClusterRole are named llm-operator
RBAC_TEMPLATES = ("templates/serviceaccount.yaml", "templates/rbac.yaml")
GATEWAY_RBAC_TEMPLATES = ("templates/gateway-serviceaccount.yaml", "templates/gateway-rbac.yaml")


def _run(cmd: list[str], input: str | None = None) -> str:
    proc = subprocess.run(cmd, input=input, text=True, capture_output=True, timeout=120)
    if proc.returncode != 0:
        raise AssertionError(f"{' '.join(cmd[:3])} ... failed ({proc.returncode}): {proc.stderr.strip()}")
    return proc.stdout


def render_operator_rbac(
    cluster,
    namespace: str = "llm-system",
    set_values: tuple[str, ...] = (),
    release: str = RELEASE,
    templates: tuple[str, ...] = RBAC_TEMPLATES,
) -> str:
    """The chart's ServiceAccount and RBAC objects as YAML (release `release` in `namespace`)."""
    cmd = [
        cluster.binary("helm"),
        "template",
        release,
        str(CHART),
        f"--namespace={namespace}",
        f"--kube-version={kube_version(cluster)}",
    ]
    for template in templates:
        cmd += ["--show-only", template]
    for value in set_values:
        cmd += ["--set", value]
    return _run(cmd)


def kube_version(cluster) -> str:
    """The apiserver's version (v1.35.4), for the chart's kubeVersion check in `helm template`."""
    out = _run([cluster.binary("kubectl"), f"--kubeconfig={cluster.kubeconfig}", "version", "-o", "json"])
    return json.loads(out)["serverVersion"]["gitVersion"]


def install_operator_rbac(
    cluster,
    namespace: str = "llm-system",
    set_values: tuple[str, ...] = (),
    release: str = RELEASE,
    token_duration: str = "2h",
    templates: tuple[str, ...] = RBAC_TEMPLATES,
) -> Path:
    """Apply the chart's ServiceAccount and RBAC and return the path of a kubeconfig that
    authenticates as that ServiceAccount: same server and CA as `cluster.kubeconfig`, a
    token from the TokenRequest API, `namespace` preset.

    Release `release` (default llm-operator: ServiceAccount llm-system/llm-operator, a
    ClusterRole of that name) in `namespace`. For namespaced scope pass
    set_values=("rbac.scope=namespaced", "rbac.namespaces={a,b}") and another `release`,
    so as not to rewrite the cluster-scope ClusterRole another operator may be using."""
    kubectl = [cluster.binary("kubectl"), f"--kubeconfig={cluster.kubeconfig}"]
    # Declarative, so that a second call (another test, a rerun) changes nothing.
    _run(
        [*kubectl, "apply", "--server-side", "--field-manager=llm-operator-tests", "-f", "-"],
        input=f"apiVersion: v1\nkind: Namespace\nmetadata:\n  name: {namespace}\n",
    )
    rendered = render_operator_rbac(cluster, namespace, set_values, release, templates)
    (account,) = [d["metadata"]["name"] for d in yaml.safe_load_all(rendered) if d and d["kind"] == "ServiceAccount"]
    _run([*kubectl, "apply", "--server-side", "--field-manager=llm-operator-tests", "-f", "-"], input=rendered)
    token = _run(
        [*kubectl, "create", "token", account, f"--namespace={namespace}", f"--duration={token_duration}"]
    ).strip()
    if not token:
        raise AssertionError(f"kubectl create token {account} -n {namespace} printed no token")
    path = Path(cluster.root) / f"kubeconfig-sa-{namespace}-{account}"
    path.write_text(
        f"""apiVersion: v1
kind: Config
clusters:
- name: local
  cluster:
    server: {cluster.server}
    certificate-authority: {Path(cluster.pki) / "ca.crt"}
users:
- name: {account}
  user:
    token: {token}
contexts:
- name: {account}
  context: {{cluster: local, user: {account}, namespace: {namespace}}}
current-context: {account}
"""
    )
    path.chmod(0o600)
    return path


def install_gateway_rbac(cluster, namespace: str = "llm-system", release: str = RELEASE) -> Path:
    """The same for the chart's gateway: its own ServiceAccount and rules."""
    return install_operator_rbac(cluster, namespace, release=release, templates=GATEWAY_RBAC_TEMPLATES)

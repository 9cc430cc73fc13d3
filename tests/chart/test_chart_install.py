"""The Helm chart against the session's control plane: a server-side dry run in each RBAC
scope, the refusal of an install on a Kubernetes older than 1.29 (an apiserver stand-in), and a
real install, upgrade and uninstall, with what each ServiceAccount may then do."""

from __future__ import annotations

import json
import subprocess
import threading
import uuid
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

import pytest
import yaml
from chartcheck import OLD_CLUSTER_REFUSAL, can_i

from support.cluster import Kubectl, wait_for
from support.paths import CHART


# ---- against the control plane ---------------------------------------------------------
@pytest.mark.parametrize("scope", ["cluster", "namespaced"])
def test_rendered_chart_passes_a_server_side_dry_run(cluster, helm, kube_version, namespace, scope):
    watched = [f"{namespace}-w1", f"{namespace}-w2"]
    for ns in watched:
        Kubectl(cluster).run("create", "namespace", ns)
    try:
        args = [
            "template",
            f"dry-{scope}",
            str(CHART),
            f"--namespace={namespace}",
            f"--kube-version={kube_version}",
            "--include-crds",
        ]
        if scope == "namespaced":
            args += ["--set", "rbac.scope=namespaced", "--set", f"rbac.namespaces={{{','.join(watched)}}}"]
        rendered = helm(*args).stdout
        out = Kubectl(cluster).run("apply", "--server-side", "--dry-run=server", "-f", "-", input=rendered).stdout
        kinds = {line.split("/")[0] for line in out.splitlines()}
        assert {
            "customresourcedefinition.apiextensions.k8s.io",
            "serviceaccount",
            "clusterrole.rbac.authorization.k8s.io",
            "deployment.apps",
            "service",
        } <= kinds, out
        if scope == "namespaced":
            roles = [line.split()[0] for line in out.splitlines() if line.startswith("role.rbac.authorization.k8s.io/")]
            # The operator's and the gateway's, in each of the two watched namespaces, and
            # the operator's list of the gateway's pods in the release's.
            assert sorted(roles) == [f"role.rbac.authorization.k8s.io/dry-{scope}-llm-operator"] * 2 + [
                f"role.rbac.authorization.k8s.io/dry-{scope}-llm-operator-gateway"
            ] * 2 + [f"role.rbac.authorization.k8s.io/dry-{scope}-llm-operator-gateway-pods"], out
        # A dry run creates nothing.
        assert Kubectl(cluster, namespace).get("deployment", f"dry-{scope}-llm-operator") is None
    finally:
        for ns in watched:
            Kubectl(cluster).run("delete", "namespace", ns, "--wait=false", check=False)


class _OldApiserver(BaseHTTPRequestHandler):
    """Discovery, the kube-system Namespace and an empty release store of a Kubernetes 1.28
    apiserver: just what `helm install --dry-run=server` reads before it renders. No apiserver
    this old is built here, so this edge is a stand-in."""

    answers = {
        "/version": {"major": "1", "minor": "28", "gitVersion": "v1.28.9", "platform": "linux/amd64"},
        "/api": {
            "kind": "APIVersions",
            "versions": ["v1"],
            "serverAddressByClientCIDRs": [{"clientCIDR": "0.0.0.0/0", "serverAddress": "127.0.0.1"}],
        },
        "/apis": {"kind": "APIGroupList", "apiVersion": "v1", "groups": []},
        "/api/v1": {
            "kind": "APIResourceList",
            "groupVersion": "v1",
            "resources": [
                {
                    "name": "namespaces",
                    "singularName": "namespace",
                    "namespaced": False,
                    "kind": "Namespace",
                    "verbs": ["get", "list"],
                },
                {
                    "name": "secrets",
                    "singularName": "secret",
                    "namespaced": True,
                    "kind": "Secret",
                    "verbs": ["get", "list", "create"],
                },
            ],
        },
        "/api/v1/namespaces/kube-system": {
            "apiVersion": "v1",
            "kind": "Namespace",
            "metadata": {"name": "kube-system"},
        },
        "/api/v1/namespaces/llm-system/secrets": {
            "apiVersion": "v1",
            "kind": "SecretList",
            "metadata": {},
            "items": [],
        },
    }
    paths: list[str] = []

    def log_message(self, *args) -> None:
        pass

    def do_GET(self) -> None:
        path = self.path.split("?")[0]
        self.paths.append(path)
        body = self.answers.get(path)
        self.send_response(200 if body else 404)
        self.send_header("Content-Type", "application/json")
        self.end_headers()
        self.wfile.write(
            json.dumps(
                body or {"kind": "Status", "apiVersion": "v1", "status": "Failure", "reason": "NotFound", "code": 404}
            ).encode()
        )


def test_install_on_an_older_cluster_is_refused(helm_env, cluster, tmp_path):
    server = ThreadingHTTPServer(("127.0.0.1", 0), _OldApiserver)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    try:
        kubeconfig = tmp_path / "kubeconfig"
        kubeconfig.write_text(
            yaml.safe_dump(
                {
                    "apiVersion": "v1",
                    "kind": "Config",
                    "current-context": "old",
                    "clusters": [
                        {"name": "old", "cluster": {"server": f"http://127.0.0.1:{server.server_address[1]}"}}
                    ],
                    "users": [{"name": "old", "user": {}}],
                    "contexts": [{"name": "old", "context": {"cluster": "old", "user": "old"}}],
                }
            )
        )
        proc = subprocess.run(
            [
                cluster.binary("helm"),
                f"--kubeconfig={kubeconfig}",
                "install",
                "x",
                str(CHART),
                "--namespace=llm-system",
                "--dry-run=server",
            ],
            text=True,
            capture_output=True,
            timeout=60,
            env=helm_env,
        )
    finally:
        server.shutdown()
    assert proc.returncode != 0
    assert (
        f"{OLD_CLUSTER_REFUSAL} (the LLMDeployment CRD's validation rules use CEL of 1.29), and this is v1.28.9"
        in proc.stderr
    ), proc.stderr
    # Refused because the chart asked the cluster: the version came from the cluster, not a flag.
    assert "/api/v1/namespaces/kube-system" in _OldApiserver.paths


def test_install_upgrade_uninstall(cluster, helm):
    # Not `helm install llm-operator -n llm-system`: tests/support/serviceaccount.py applies the
    # chart's RBAC under those names for the integration suite's operator in this same
    # control plane, and a release of that name would clash with (or, uninstalled, remove) it.
    release, ns = "chart-test", f"chart-test-{uuid.uuid4().hex[:6]}"
    full = f"{release}-llm-operator"
    sa = f"{ns}:{full}"
    gateway = f"{full}-gateway"
    gateway_sa = f"{ns}:{gateway}"
    watched = [f"{ns}-models", f"{ns}-staging"]
    other = f"{ns}-other"
    for w in [*watched, other]:
        Kubectl(cluster).run("create", "namespace", w)
    k = Kubectl(cluster, ns)
    try:
        # -- install, cluster scope
        proc = helm(
            "install", release, str(CHART), f"--namespace={ns}", "--create-namespace", "--wait", "--timeout=90s"
        )
        assert "STATUS: deployed" in proc.stdout
        assert "kubectl get llmd" in proc.stdout and "kind: LLMDeployment" in proc.stdout, "NOTES.txt"
        dep = k.get("deployment", full)
        assert dep["status"].get("readyReplicas") == 1
        assert k.get("serviceaccount", full) and k.get("service", f"{full}-metrics")
        assert Kubectl(cluster).get("clusterrole", full) and Kubectl(cluster).get("clusterrolebinding", full)
        # Helm installs crds/ on the first install (or leaves an existing CRD alone).
        assert Kubectl(cluster).get("crd", "llmdeployments.llm-operator.io")
        # The gateway, by default: its pod is kwok's (nothing serves), the objects are real.
        assert "port-forward svc/" + gateway in proc.stdout, "NOTES.txt: how to reach the gateway"
        gw = k.get("deployment", gateway)
        assert gw["status"].get("readyReplicas") == 1
        assert gw["spec"]["template"]["spec"]["serviceAccountName"] == gateway
        assert k.get("serviceaccount", gateway) and k.get("service", gateway)
        assert Kubectl(cluster).get("clusterrole", gateway) and Kubectl(cluster).get("clusterrolebinding", gateway)
        # Each Deployment owns only its own pods.
        operator_pods = k.items("pods", "app.kubernetes.io/component=operator")
        gateway_pods = k.items("pods", "app.kubernetes.io/component=gateway")
        assert len(operator_pods) == 1 and len(gateway_pods) == 1
        for selector in (dep["spec"]["selector"]["matchLabels"], gw["spec"]["selector"]["matchLabels"]):
            assert len(k.items("pods", ",".join(f"{key}={v}" for key, v in selector.items()))) == 1, selector
        for target in (watched[0], other, ns):
            assert can_i(cluster, gateway_sa, "get", "secrets", "-n", target) == "no"
        assert can_i(cluster, gateway_sa, "watch", "llmdeployments.llm-operator.io", "-n", other) == "yes"
        assert can_i(cluster, gateway_sa, "patch", "llmdeployments.llm-operator.io", "-n", other) == "yes"
        assert (
            can_i(cluster, gateway_sa, "update", "llmdeployments.llm-operator.io", "--subresource=scale", "-n", other)
            == "yes"
        )
        assert (
            can_i(cluster, gateway_sa, "patch", "llmdeployments.llm-operator.io", "--subresource=status", "-n", other)
            == "no"
        )
        assert can_i(cluster, gateway_sa, "delete", "llmdeployments.llm-operator.io", "-n", other) == "no"
        assert can_i(cluster, gateway_sa, "watch", "pods", "-n", other) == "yes"
        assert can_i(cluster, gateway_sa, "get", "pods", "-n", other) == "no"
        assert can_i(cluster, gateway_sa, "create", "deployments.apps", "-n", other) == "no"
        assert can_i(cluster, gateway_sa, "create", "events", "-n", other) == "yes"
        assert can_i(cluster, gateway_sa, "list", "nodes") == "no"

        for target in (watched[0], other, ns):
            for verb in ("get", "list", "watch"):
                assert can_i(cluster, sa, verb, "secrets", "-n", target) == "no"
        assert can_i(cluster, sa, "get", "secrets", "--all-namespaces") == "no"
        assert can_i(cluster, sa, "watch", "llmdeployments.llm-operator.io", "-n", other) == "yes"
        assert (
            can_i(cluster, sa, "patch", "llmdeployments.llm-operator.io", "--subresource=status", "-n", other) == "yes"
        )
        assert can_i(cluster, sa, "create", "deployments.apps", "-n", other) == "yes"
        assert can_i(cluster, sa, "delete", "llmdeployments.llm-operator.io", "-n", other) == "no"
        assert can_i(cluster, sa, "update", "deployments.apps", "-n", other) == "no"
        assert can_i(cluster, sa, "create", "pods", "-n", other) == "no"
        assert can_i(cluster, sa, "create", "events", "-n", other) == "yes"
        assert can_i(cluster, sa, "create", "events.events.k8s.io", "-n", other) == "yes"
        assert can_i(cluster, sa, "list", "nodes") == "yes"
        assert can_i(cluster, sa, "patch", "nodes") == "no"
        assert can_i(cluster, sa, "list", "namespaces") == "no", "kopf with -A does not look at namespaces"

        # -- upgrade: other resources
        helm(
            "upgrade",
            release,
            str(CHART),
            f"--namespace={ns}",
            "--wait",
            "--timeout=90s",
            "--set",
            "resources.limits.memory=768Mi",
            "--set",
            "resources.requests.cpu=200m",
        )
        (c,) = k.get("deployment", full)["spec"]["template"]["spec"]["containers"]
        assert c["resources"] == {"limits": {"memory": "768Mi"}, "requests": {"cpu": "200m", "memory": "256Mi"}}

        # -- upgrade: namespaced scope
        helm(
            "upgrade",
            release,
            str(CHART),
            f"--namespace={ns}",
            "--wait",
            "--timeout=90s",
            "--set",
            "rbac.scope=namespaced",
            "--set",
            f"rbac.namespaces={{{','.join(watched)}}}",
        )
        (c,) = k.get("deployment", full)["spec"]["template"]["spec"]["containers"]
        assert c["args"][:3] == ["run", f"--namespace={watched[0]}", f"--namespace={watched[1]}"]
        assert c["resources"]["limits"]["memory"] == "512Mi", "an upgrade without --reuse-values resets values"
        (c,) = k.get("deployment", gateway)["spec"]["template"]["spec"]["containers"]
        assert c["args"][:4] == [
            "gateway",
            "--listen=0.0.0.0:8080",
            f"--namespace={watched[0]}",
            f"--namespace={watched[1]}",
        ]
        assert Kubectl(cluster).get("clusterrole", gateway) is None
        for w in watched:
            assert Kubectl(cluster, w).get("role", gateway) and Kubectl(cluster, w).get("rolebinding", gateway)
            assert (
                can_i(cluster, gateway_sa, "patch", "llmdeployments.llm-operator.io", "--subresource=scale", "-n", w)
                == "yes"
            )
            assert can_i(cluster, gateway_sa, "get", "secrets", "-n", w) == "no"
        assert can_i(cluster, gateway_sa, "watch", "llmdeployments.llm-operator.io", "-n", other) == "no"
        for w in watched:
            assert Kubectl(cluster, w).get("role", full) and Kubectl(cluster, w).get("rolebinding", full)
            assert can_i(cluster, sa, "create", "deployments.apps", "-n", w) == "yes"
            assert can_i(cluster, sa, "watch", "llmdeployments.llm-operator.io", "-n", w) == "yes"
            assert can_i(cluster, sa, "get", "secrets", "-n", w) == "no"
        assert can_i(cluster, sa, "create", "deployments.apps", "-n", other) == "no"
        assert can_i(cluster, sa, "watch", "llmdeployments.llm-operator.io", "-n", other) == "no"
        assert can_i(cluster, sa, "list", "nodes") == "yes"
        assert can_i(cluster, sa, "watch", "namespaces") == "yes"

        # -- uninstall: nothing of the operator is left
        helm("uninstall", release, f"--namespace={ns}", "--wait", "--timeout=90s")
        leftovers = (
            Kubectl(cluster)
            .run(
                "get",
                "serviceaccounts,deployments,services,roles,rolebindings,clusterroles,clusterrolebindings",
                "--all-namespaces",
                "-l",
                f"app.kubernetes.io/instance={release}",
                "-o",
                "name",
            )
            .stdout.split()
        )
        assert leftovers == []
        assert k.get("serviceaccount", full) is None and k.get("deployment", full) is None
        assert k.get("service", f"{full}-metrics") is None
        assert k.get("deployment", gateway) is None and k.get("service", gateway) is None
        assert k.get("serviceaccount", gateway) is None
        assert Kubectl(cluster).get("clusterrole", full) is None
        assert Kubectl(cluster).get("clusterrolebinding", full) is None
        for w in watched:
            assert Kubectl(cluster, w).get("role", full) is None
        wait_for(
            "the operator's and the gateway's pods to go",
            lambda: not k.items("pods", f"app.kubernetes.io/instance={release}"),
            30,
        )
        assert helm("list", f"--namespace={ns}", "-q").stdout.strip() == ""
        # Helm never deletes CRDs from a chart's crds/ directory (so uninstalling the
        # operator does not delete every model with it): the CRD stays, on purpose.
        assert Kubectl(cluster).get("crd", "llmdeployments.llm-operator.io")
    finally:
        helm("uninstall", release, f"--namespace={ns}", "--ignore-not-found", check=False)
        for w in [*watched, other, ns]:
            Kubectl(cluster).run("delete", "namespace", w, "--wait=false", check=False)

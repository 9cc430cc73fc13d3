"""The Helm chart (issue 3): lint, schema, rendered objects, RBAC, a server-side dry run and a
real install, upgrade and uninstall against the session's control plane."""

from __future__ import annotations

import json
import subprocess
import threading
import uuid
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

import pytest
import yaml

from support.cluster import Kubectl, wait_for
from support.paths import CHART, ROOT

CHART_META = yaml.safe_load((CHART / "Chart.yaml").read_text())
NAMESPACED = ("rbac.scope=namespaced", "rbac.namespaces={models-a,models-b}")

# What the operator may do inside a namespace it watches, (apiGroup, resource) -> verbs.
CHILD_VERBS = {"get", "list", "watch", "create", "patch", "delete"}
NAMESPACED_RULES = {
    ("llm-operator.io", "llmdeployments"): {"list", "watch"},
    ("llm-operator.io", "llmdeployments/status"): {"patch"},
    ("llm-operator.io", "llmdeployments/scale"): {"patch"},
    ("llm-operator.io", "llmdeployments/finalizers"): {"update"},
    ("apps", "deployments"): CHILD_VERBS,
    ("", "services"): CHILD_VERBS,
    ("", "persistentvolumeclaims"): CHILD_VERBS,
    ("policy", "poddisruptionbudgets"): CHILD_VERBS,
    ("batch", "jobs"): CHILD_VERBS,
    ("autoscaling", "horizontalpodautoscalers"): CHILD_VERBS,
    ("", "pods"): {"list", "watch"},
    ("", "events"): {"create", "patch"},
    ("events.k8s.io", "events"): {"create", "patch"},
}
# Cluster-scoped and read-only, in both scopes.
CLUSTER_RULES = {
    ("", "nodes"): {"list", "watch"},
    ("storage.k8s.io", "storageclasses"): {"list", "watch"},
    ("apiextensions.k8s.io", "customresourcedefinitions"): {"list", "watch"},
}
# kopf lists and watches namespaces only when given --namespace names.
KOPF_NAMESPACES_RULE = {("", "namespaces"): {"list", "watch"}}


# ---- helpers (the helm fixtures are in conftest.py) -------------------------------------
def only(objs: list[dict], kind: str, component: str = "operator") -> list[dict]:
    """The objects of `kind` that belong to `component` (the operator's, unless told: the
    chart also renders the gateway's Deployment, Service, ServiceAccount and RBAC)."""
    return [
        o for o in objs if o["kind"] == kind and o["metadata"]["labels"].get("app.kubernetes.io/component") == component
    ]


def rules_of(role: dict) -> dict[tuple[str, str], set[str]]:
    """A Role's rules as (apiGroup, resource) -> verbs; fails on anything looser."""
    out: dict[tuple[str, str], set[str]] = {}
    for rule in role["rules"]:
        assert set(rule) == {"apiGroups", "resources", "verbs"}, f"unexpected rule shape: {rule}"
        for group in rule["apiGroups"]:
            for resource in rule["resources"]:
                out.setdefault((group, resource), set()).update(rule["verbs"])
    return out


def can_i(cluster, sa: str, *args: str) -> str:
    """`kubectl auth can-i ARGS` as the ServiceAccount `namespace:name`: "yes" or "no"."""
    ns, name = sa.split(":")
    proc = Kubectl(cluster).run("auth", "can-i", *args, as_user=f"system:serviceaccount:{ns}:{name}", check=False)
    answer = proc.stdout.strip()
    assert answer in ("yes", "no"), f"kubectl auth can-i {' '.join(args)}: {proc.stdout} {proc.stderr}"
    return answer


# ---- the chart on its own --------------------------------------------------------------
def test_chart_crd_is_the_generated_crd():
    generated = (ROOT / "crds" / "llmdeployments.yaml").read_bytes()
    assert (CHART / "crds" / "llmdeployments.yaml").read_bytes() == generated, (
        "charts/llm-operator/crds/llmdeployments.yaml differs from crds/llmdeployments.yaml: run `make crds`"
    )


def test_chart_metadata():
    assert CHART_META["apiVersion"] == "v2"
    assert CHART_META["appVersion"] == "0.1.0"
    # No kubeVersion: `helm template` would check it against its default (v1.20.0) and fail;
    # the templates check the version instead (test_older_kubernetes_is_refused).
    assert "kubeVersion" not in CHART_META
    pyproject = (ROOT / "pyproject.toml").read_text()
    assert f'version = "{CHART_META["appVersion"]}"' in pyproject, "appVersion should be the operator's version"


@pytest.mark.parametrize("values", [(), NAMESPACED], ids=["cluster", "namespaced"])
def test_lint_strict_passes(helm, values):
    args = ["lint", "--strict", str(CHART)]
    for v in values:
        args += ["--set", v]
    proc = helm(*args)
    assert "0 chart(s) failed" in proc.stdout


@pytest.mark.parametrize(
    "value, complaint",
    [
        ("replicas=2", "additional properties 'replicas' not allowed"),
        ("image.tags=x", "additional properties 'tags' not allowed"),
        ("metrics.serviceMonitor.scrape=x", "additional properties 'scrape' not allowed"),
        ("image.pullPolicy=Sometimes", "/image/pullPolicy"),
        ("rbac.scope=everywhere", "/rbac/scope"),
        ("rbac.scope=namespaced", "/rbac/namespaces"),
        ("rbac.namespaces={Not_A_Name}", "/rbac/namespaces/0"),
        ("healthPort=http", "/healthPort"),
        ("metrics.port=70000", "/metrics/port"),
        ("runAsUser=0", "/runAsUser"),
        ("resources.limits.memory=lots", "/resources/limits/memory"),
        ("tolerations[0].operator=Maybe", "/tolerations/0/operator"),
    ],
)
def test_schema_rejects_bad_values(helm, kube_version, value, complaint):
    proc = helm("template", "x", str(CHART), f"--kube-version={kube_version}", "--set", value, check=False)
    assert proc.returncode != 0, f"--set {value} was accepted"
    assert complaint in proc.stderr, proc.stderr


def test_helm_template_renders_with_no_flags(helm_env, cluster):
    """What kustomize's helmCharts, helmfile and `helm template | kubectl apply` run: no
    --kube-version, no cluster (no kubeconfig either)."""
    proc = subprocess.run(
        [cluster.binary("helm"), "template", str(CHART)],
        text=True,
        capture_output=True,
        timeout=60,
        env={**helm_env, "KUBECONFIG": "/nonexistent"},
    )
    assert proc.returncode == 0, proc.stderr
    kinds = {d["kind"] for d in yaml.safe_load_all(proc.stdout) if d}
    assert {"Deployment", "ServiceAccount", "ClusterRole", "ClusterRoleBinding", "Service"} <= kinds, kinds


OLD_CLUSTER_REFUSAL = "llm-operator needs Kubernetes 1.29 or newer"


def test_older_kubernetes_is_refused(helm):
    proc = helm("template", "x", str(CHART), "--kube-version=v1.28.9", check=False)
    assert proc.returncode != 0
    assert (
        f"{OLD_CLUSTER_REFUSAL} (the LLMDeployment CRD's validation rules use CEL of 1.29), and this is v1.28.9"
        in proc.stderr
    ), proc.stderr
    assert helm("template", "x", str(CHART), "--kube-version=v1.29.0", check=False).returncode == 0


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


def test_every_object_carries_the_standard_labels(render):
    objs = render(*NAMESPACED, "metrics.serviceMonitor.enabled=true")
    want = {
        "app.kubernetes.io/name": "llm-operator",
        "app.kubernetes.io/instance": "llm-operator",
        "app.kubernetes.io/version": "0.1.0",
        "app.kubernetes.io/managed-by": "Helm",
        "helm.sh/chart": "llm-operator-0.1.0",
    }
    assert {o["kind"] for o in objs} == {
        "ServiceAccount",
        "ClusterRole",
        "ClusterRoleBinding",
        "Role",
        "RoleBinding",
        "Service",
        "Deployment",
        "ServiceMonitor",
    }
    for o in objs:
        labels = o["metadata"]["labels"]
        assert {k: labels.get(k) for k in want} == want, f"{o['kind']}/{o['metadata']['name']}: {labels}"
        assert labels["app.kubernetes.io/component"] in ("operator", "gateway"), labels


def test_default_names_are_llm_operator(render):
    names = {(o["kind"], o["metadata"]["name"]) for o in render()}
    assert names == {
        ("ServiceAccount", "llm-operator"),
        ("ClusterRole", "llm-operator"),
        ("ClusterRoleBinding", "llm-operator"),
        ("Service", "llm-operator-metrics"),
        ("Deployment", "llm-operator"),
        ("ServiceAccount", "llm-operator-gateway"),
        ("ClusterRole", "llm-operator-gateway"),
        ("ClusterRoleBinding", "llm-operator-gateway"),
        ("Service", "llm-operator-gateway"),
        ("Deployment", "llm-operator-gateway"),
    }


def test_rbac_and_service_account_can_be_brought_by_the_user(render, helm, kube_version):
    objs = render(
        "rbac.create=false",
        "serviceAccount.create=false",
        "serviceAccount.name=platform-operator",
        "gateway.serviceAccount.create=false",
        "gateway.serviceAccount.name=platform-gateway",
    )
    assert {o["kind"] for o in objs} == {"Service", "Deployment"}
    (gateway,) = only(objs, "Deployment", "gateway")
    assert gateway["spec"]["template"]["spec"]["serviceAccountName"] == "platform-gateway"
    (dep,) = only(objs, "Deployment")
    assert dep["spec"]["template"]["spec"]["serviceAccountName"] == "platform-operator"
    proc = helm(
        "template",
        "x",
        str(CHART),
        f"--kube-version={kube_version}",
        "--set",
        "serviceAccount.create=false",
        check=False,
    )
    assert proc.returncode != 0 and "serviceAccount.name must name an existing ServiceAccount" in proc.stderr


def test_operator_deployment(render):
    (dep,) = only(render(), "Deployment")
    spec = dep["spec"]
    assert spec["replicas"] == 1 and spec["strategy"] == {"type": "Recreate"}
    pod = spec["template"]["spec"]
    assert pod["serviceAccountName"] == "llm-operator"
    assert pod["securityContext"]["runAsNonRoot"] is True
    assert pod["securityContext"]["seccompProfile"] == {"type": "RuntimeDefault"}
    (c,) = pod["containers"]
    assert c["image"] == f"ghcr.io/llm-operator/llm-operator:{CHART_META['appVersion']}"
    # The autoscaler reads the gateway's counts from its pods (gateway.enabled, the default).
    assert c["args"] == [
        "run",
        "--all-namespaces",
        "--liveness=http://0.0.0.0:8080/healthz",
        "--metrics-port=8081",
        "--gateway-pods=llm-system/app.kubernetes.io/component=gateway,"
        "app.kubernetes.io/instance=llm-operator,app.kubernetes.io/name=llm-operator",
    ]
    assert {p["name"]: p["containerPort"] for p in c["ports"]} == {"health": 8080, "metrics": 8081}
    for probe in ("livenessProbe", "readinessProbe"):
        assert c[probe]["httpGet"] == {"path": "/healthz", "port": "health"}
    sc = c["securityContext"]
    assert sc["runAsNonRoot"] is True and sc["readOnlyRootFilesystem"] is True
    assert sc["allowPrivilegeEscalation"] is False
    assert sc["capabilities"] == {"drop": ["ALL"]}
    assert sc["seccompProfile"] == {"type": "RuntimeDefault"}
    assert c["resources"]["requests"] and c["resources"]["limits"]["memory"]
    assert {"name": "tmp", "mountPath": "/tmp"} in c["volumeMounts"]
    assert {"name": "tmp", "emptyDir": {"sizeLimit": "64Mi"}} in pod["volumes"]


def test_values_reach_the_deployment(render):
    (dep,) = only(
        render(
            *NAMESPACED,
            "image.tag=dev",
            "operator.verbose=true",
            "operator.extraArgs={--foo}",
            "healthPort=9000",
            "metrics.port=9001",
            "resources.limits.memory=1Gi",
            "operator.env[0].name=HTTPS_PROXY",
            "operator.env[0].value=http://proxy:3128",
        ),
        "Deployment",
    )
    (c,) = dep["spec"]["template"]["spec"]["containers"]
    assert c["image"].endswith(":dev")
    assert c["args"] == [
        "run",
        "--namespace=models-a",
        "--namespace=models-b",
        "--liveness=http://0.0.0.0:9000/healthz",
        "--metrics-port=9001",
        "--gateway-pods=llm-system/app.kubernetes.io/component=gateway,"
        "app.kubernetes.io/instance=llm-operator,app.kubernetes.io/name=llm-operator",
        "--verbose",
        "--foo",
    ]
    assert {p["name"]: p["containerPort"] for p in c["ports"]} == {"health": 9000, "metrics": 9001}
    assert c["resources"]["limits"]["memory"] == "1Gi"
    assert {"name": "HTTPS_PROXY", "value": "http://proxy:3128"} in c["env"]


def test_metrics_service_and_optional_service_monitor(render):
    objs = render()
    assert only(objs, "ServiceMonitor") == []
    (svc,) = only(objs, "Service")
    assert svc["spec"]["ports"] == [{"name": "metrics", "port": 8081, "targetPort": "metrics", "protocol": "TCP"}]
    (dep,) = only(objs, "Deployment")
    assert svc["spec"]["selector"] == dep["spec"]["selector"]["matchLabels"]
    # The gateway's pods have the same name and instance labels: the component tells them apart.
    assert svc["spec"]["selector"]["app.kubernetes.io/component"] == "operator"

    (mon,) = only(
        render("metrics.serviceMonitor.enabled=true", "metrics.serviceMonitor.labels.release=prom"), "ServiceMonitor"
    )
    assert mon["apiVersion"] == "monitoring.coreos.com/v1"
    assert mon["metadata"]["labels"]["release"] == "prom"
    assert mon["spec"]["selector"]["matchLabels"] == svc["spec"]["selector"]
    assert mon["spec"]["endpoints"][0]["port"] == "metrics"


# ---- the catalog's extra models and an offline Hub (issue 14) -------------------------
TINY = {
    "id": "acme/tiny-llama",
    "revision": "main",
    "parameterCount": 1100048384,
    "config": {
        "model_type": "llama",
        "hidden_size": 2048,
        "intermediate_size": 5632,
        "num_attention_heads": 32,
        "num_hidden_layers": 22,
        "num_key_value_heads": 4,
        "vocab_size": 32000,
        "max_position_embeddings": 2048,
    },
}


def test_extra_catalog_models_reach_the_operator_through_a_configmap(render, helm, kube_version):
    plain = render()
    assert only(plain, "ConfigMap") == []
    (dep,) = only(plain, "Deployment")
    assert not any(a.startswith("--catalog-file") for a in dep["spec"]["template"]["spec"]["containers"][0]["args"])

    objs = render(extra=("--set-json", f"catalog.extraModels=[{json.dumps(TINY)}]"))
    (cm,) = only(objs, "ConfigMap")
    assert cm["metadata"]["name"] == "llm-operator-catalog"
    # What the operator reads is exactly the values' entries (and loads them without a problem).
    assert yaml.safe_load(cm["data"]["models.yaml"]) == [TINY]
    from llm_operator.facts import catalog

    assert catalog.parse_entries(yaml.safe_load(cm["data"]["models.yaml"]), "chart").problems == ()
    (dep,) = only(objs, "Deployment")
    pod = dep["spec"]["template"]["spec"]
    (c,) = pod["containers"]
    assert "--catalog-file=/etc/llm-operator/catalog/models.yaml" in c["args"]
    assert {"name": "catalog", "mountPath": "/etc/llm-operator/catalog", "readOnly": True} in c["volumeMounts"]
    assert {"name": "catalog", "configMap": {"name": "llm-operator-catalog"}} in pod["volumes"]
    # A change of the entries rolls the operator (it reads them at start).
    checksum = dep["spec"]["template"]["metadata"]["annotations"]["checksum/catalog"]
    changed = render(extra=("--set-json", f"catalog.extraModels=[{json.dumps({**TINY, 'parameterCount': 1})}]"))
    assert only(changed, "Deployment")[0]["spec"]["template"]["metadata"]["annotations"]["checksum/catalog"] != checksum


@pytest.mark.parametrize(
    "entry, complaint",
    [
        ({"config": TINY["config"]}, "missing property 'id'"),
        ({"id": "acme/tiny"}, "missing property 'config'"),
        ({"id": "no-slash", "config": TINY["config"]}, "/catalog/extraModels/0/id"),
        ({**TINY, "parameterCount": "1.1B"}, "/catalog/extraModels/0/parameterCount"),
        (
            {**TINY, "config": {**TINY["config"], "num_hidden_layers": "22 layers"}},
            "/catalog/extraModels/0/config/num_hidden_layers",
        ),
        ({**TINY, "gpus": 2}, "additional properties 'gpus' not allowed"),
    ],
)
def test_the_schema_checks_each_extra_catalog_entry(helm, kube_version, entry, complaint):
    proc = helm(
        "template",
        "x",
        str(CHART),
        f"--kube-version={kube_version}",
        "--set-json",
        f"catalog.extraModels=[{json.dumps(entry)}]",
        check=False,
    )
    assert proc.returncode != 0, f"{entry} was accepted"
    assert complaint in proc.stderr, proc.stderr


def test_an_offline_hub_is_said_to_the_operator(render):
    def env(objs):
        return only(objs, "Deployment")[0]["spec"]["template"]["spec"]["containers"][0]["env"]

    assert {"name": "HF_HUB_OFFLINE", "value": "1"} not in env(render())
    assert {"name": "HF_HUB_OFFLINE", "value": "1"} in env(render("hub.offline=true"))


def test_leaderworkersets_are_asked_for_in_the_operator_and_granted_only_when_enabled(render):
    def args(objs):
        return only(objs, "Deployment")[0]["spec"]["template"]["spec"]["containers"][0]["args"]

    lws = ("leaderworkerset.x-k8s.io", "leaderworkersets")
    off = render()
    assert "--leaderworkersets" not in args(off) and lws not in rules_of(only(off, "ClusterRole")[0])
    on = render("lws.enabled=true")
    assert "--leaderworkersets" in args(on)
    assert rules_of(only(on, "ClusterRole")[0]) == NAMESPACED_RULES | CLUSTER_RULES | {
        lws: {"get", "list", "watch", "create", "patch", "delete"}
    }
    # Namespaced scope: granted in each watched namespace's Role, not cluster-wide.
    namespaced = render(*NAMESPACED, "lws.enabled=true")
    assert lws not in rules_of(only(namespaced, "ClusterRole")[0])
    assert all(
        lws in rules_of(role)
        for role in only(namespaced, "Role")
        if not role["metadata"]["name"].endswith("-gateway-pods")
    )


# ---- RBAC ------------------------------------------------------------------------------
def test_cluster_scope_rbac_is_exactly_the_documented_rules(render):
    objs = render()
    (role,) = only(objs, "ClusterRole")
    assert rules_of(role) == NAMESPACED_RULES | CLUSTER_RULES
    assert only(objs, "Role") == []
    (binding,) = only(objs, "ClusterRoleBinding")
    assert binding["roleRef"]["name"] == role["metadata"]["name"]
    assert binding["subjects"] == [{"kind": "ServiceAccount", "name": "llm-operator", "namespace": "llm-system"}]


def test_namespaced_scope_rbac_is_a_role_per_namespace_and_a_small_cluster_role(render):
    objs = render(*NAMESPACED)
    (cluster_role,) = only(objs, "ClusterRole")
    assert rules_of(cluster_role) == CLUSTER_RULES | KOPF_NAMESPACES_RULE
    roles = only(objs, "Role")
    # The autoscaler lists the gateway's pods in the release's namespace (--gateway-pods).
    (gateway_pods,) = [r for r in roles if r["metadata"]["name"] == "llm-operator-gateway-pods"]
    assert gateway_pods["metadata"]["namespace"] == "llm-system"
    assert gateway_pods["rules"] == [{"apiGroups": [""], "resources": ["pods"], "verbs": ["list"]}]
    roles = [r for r in roles if r is not gateway_pods]
    assert sorted(r["metadata"]["namespace"] for r in roles) == ["models-a", "models-b"]
    for role in roles:
        assert rules_of(role) == NAMESPACED_RULES
    bindings = [b for b in only(objs, "RoleBinding") if b["metadata"]["name"] != "llm-operator-gateway-pods"]
    assert sorted(b["metadata"]["namespace"] for b in bindings) == ["models-a", "models-b"]
    for b in bindings:
        assert b["roleRef"] == {"apiGroup": "rbac.authorization.k8s.io", "kind": "Role", "name": "llm-operator"}
        assert b["subjects"] == [{"kind": "ServiceAccount", "name": "llm-operator", "namespace": "llm-system"}]


@pytest.mark.parametrize("values", [(), NAMESPACED], ids=["cluster", "namespaced"])
def test_no_rule_uses_a_wildcard_or_touches_secrets(render, values):
    roles = [o for o in render(*values) if o["kind"] in ("Role", "ClusterRole")]
    assert roles
    for role in roles:
        for rule in role["rules"]:
            for field in ("apiGroups", "resources", "verbs"):
                assert not any("*" in item for item in rule[field]), f"wildcard in {role['kind']}: {rule}"
            assert not any(r.split("/")[0] == "secrets" for r in rule["resources"]), f"secrets in {rule}"


def test_every_rule_is_explained_by_a_comment():
    """The rules live in _helpers.tpl; each starts after a comment saying why."""
    lines = (CHART / "templates" / "_helpers.tpl").read_text().splitlines()
    rule_starts = [i for i, line in enumerate(lines) if line.startswith("- apiGroups:")]
    assert len(rule_starts) >= 15
    for i in rule_starts:
        if lines[i - 1].strip().startswith("#"):
            continue
        # The one exception: the same resource in a second API group shares the comment
        # of the rule above it (Events, core and events.k8s.io).
        same = lines[i + 1].strip() == lines[i - 2].strip() and lines[i + 1].strip().startswith("resources:")
        assert same, f"_helpers.tpl line {i + 1}: a rule without a comment saying why"


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


# ---- Argo CD health ----------------------------------------------------------------------
def argocd_health(obj: dict) -> dict:
    """Run argocd-health.lua as Argo CD does: `obj` a global, the chunk returns a table.
    Argo CD embeds gopher-lua, a Lua 5.1: run it on Lua 5.1."""
    from lupa import lua51

    lua = lua51.LuaRuntime()
    lua.globals().obj = lua.table_from(obj, recursive=True)
    result = lua.execute((CHART / "argocd-health.lua").read_text())
    return dict(result.items())


def cond(ctype: str, status: str, message: str = "") -> dict:
    return {"type": ctype, "status": status, "reason": ctype, "message": message or f"{ctype} is {status}"}


def llmd_with(status: dict | None, generation: int = 2) -> dict:
    obj = {
        "apiVersion": "llm-operator.io/v1alpha1",
        "kind": "LLMDeployment",
        "metadata": {"name": "m", "namespace": "models", "generation": generation},
        "spec": {},
    }
    if status is not None:
        obj["status"] = status
    return obj


ARGO_CASES = [
    (None, "Progressing", "Waiting for the operator to report status"),
    # The CRD's default status: nothing judged yet.
    ({"observedGeneration": 0}, "Progressing", "Waiting for the operator to handle the latest spec"),
    (
        {"observedGeneration": 1, "conditions": [cond("Ready", "True")]},
        "Progressing",
        "Waiting for the operator to handle the latest spec",
    ),
    (
        {
            "observedGeneration": 2,
            "phase": "Ready",
            "conditions": [
                cond("Ready", "True", "1/1 replicas are ready"),
                cond("Reconciling", "False"),
                cond("Stalled", "False"),
            ],
        },
        "Healthy",
        "1/1 replicas are ready",
    ),
    (
        {
            "observedGeneration": 2,
            "phase": "Progressing",
            "conditions": [
                cond("Ready", "False"),
                cond("Reconciling", "True", "Rolling out"),
                cond("Stalled", "False"),
            ],
        },
        "Progressing",
        "Rolling out",
    ),
    (
        {
            "observedGeneration": 2,
            "phase": "Failed",
            "conditions": [
                cond("Ready", "False"),
                cond("Reconciling", "False"),
                cond("Stalled", "True", "Does not fit"),
            ],
        },
        "Degraded",
        "Does not fit",
    ),
    # 0 replicas is Healthy, as Argo CD's own Deployment check says; Suspended would hold later sync waves.
    (
        {
            "observedGeneration": 2,
            "phase": "ScaledToZero",
            "conditions": [
                cond("Ready", "True", "Scaled to zero: no pod serves"),
                cond("Reconciling", "False"),
                cond("Stalled", "False"),
            ],
        },
        "Healthy",
        "Scaled to zero: no pod serves",
    ),
    # 22 of 24 serve, 2 wait for GPUs a node could offer: under way, not Degraded.
    (
        {
            "observedGeneration": 2,
            "phase": "Unschedulable",
            "conditions": [
                cond("Ready", "False", "22 of 24 replicas serve"),
                cond("Reconciling", "True", "22 of 24 replicas serve; 2 wait for GPUs"),
                cond("Stalled", "False"),
            ],
        },
        "Progressing",
        "22 of 24 replicas serve; 2 wait for GPUs",
    ),
    # No node could ever hold the pod: Degraded.
    (
        {
            "observedGeneration": 2,
            "phase": "Failed",
            "conditions": [
                cond("Ready", "False"),
                cond("Reconciling", "False"),
                cond("Stalled", "True", "1 of 1 replicas cannot be scheduled, and no node could ever hold one"),
            ],
        },
        "Degraded",
        "1 of 1 replicas cannot be scheduled, and no node could ever hold one",
    ),
    ({"observedGeneration": 2, "conditions": []}, "Progressing", "Waiting for the operator to report Ready"),
]
ARGO_CASE_IDS = [
    "no-status",
    "default-status",
    "old-generation",
    "ready",
    "reconciling",
    "stalled",
    "scaled-to-zero",
    "waiting-for-gpus",
    "no-node-fits",
    "no-conditions",
]


@pytest.mark.parametrize("status, health, message", ARGO_CASES, ids=ARGO_CASE_IDS)
def test_argocd_health_check(status, health, message):
    assert argocd_health(llmd_with(status)) == {"status": health, "message": message}


def test_argocd_health_check_in_argo_cds_own_engine(client_verdicts):
    """The same cases under gopher-lua with only the libraries Argo CD opens (hack/statuscheck):
    the two engines agree, and the script needs nothing Argo CD withholds."""
    got = [v["argocd"] for v in client_verdicts([llmd_with(status) for status, _, _ in ARGO_CASES])]
    want = [{"status": health, "message": message} for _, health, message in ARGO_CASES]
    assert dict(zip(ARGO_CASE_IDS, got)) == dict(zip(ARGO_CASE_IDS, want))

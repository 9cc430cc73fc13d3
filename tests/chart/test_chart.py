"""The Helm chart (issue 3), rendered: the CRD and metadata, lint, the values' schema, the
refusal of an old Kubernetes, and the objects `helm template` makes (labels, names, the operator's
Deployment, its Service and ServiceMonitor, the catalog's extra models, an offline Hub). RBAC is
in test_chart_rbac.py, the dry runs and the real install in test_chart_install.py, Argo CD's
health check in test_chart_argocd.py."""

from __future__ import annotations

import json
import subprocess

import pytest
import yaml
from chartcheck import CHART_META, NAMESPACED, OLD_CLUSTER_REFUSAL, only

from support.paths import CHART, ROOT


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
        ("cache.downloaderImage=a b", "/cache/downloaderImage"),
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


def test_older_kubernetes_is_refused(helm):
    proc = helm("template", "x", str(CHART), "--kube-version=v1.28.9", check=False)
    assert proc.returncode != 0
    assert (
        f"{OLD_CLUSTER_REFUSAL} (the LLMDeployment CRD's validation rules use CEL of 1.29), and this is v1.28.9"
        in proc.stderr
    ), proc.stderr
    assert helm("template", "x", str(CHART), "--kube-version=v1.29.0", check=False).returncode == 0


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
        f"--downloader-image=ghcr.io/llm-operator/llm-operator:{CHART_META['appVersion']}",
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
        "--downloader-image=ghcr.io/llm-operator/llm-operator:dev",
        "--verbose",
        "--foo",
    ]
    assert {p["name"]: p["containerPort"] for p in c["ports"]} == {"health": 9000, "metrics": 9001}
    assert c["resources"]["limits"]["memory"] == "1Gi"
    assert {"name": "HTTPS_PROXY", "value": "http://proxy:3128"} in c["env"]


def test_download_jobs_run_the_operators_own_image_unless_a_value_names_another(render):
    """A chart packaged for another registry (hack/publish.py sets image.repository and
    image.tag) downloads weights with the image it runs, not ghcr.io's."""
    from llm_operator.cli import main as cli

    def operator(*values: str) -> tuple[str, str]:
        (dep,) = only(render(*values), "Deployment")
        (c,) = dep["spec"]["template"]["spec"]["containers"]
        return c["image"], cli.parser().parse_args(c["args"]).downloader_image

    ours = ("image.repository=registry.example.com/ml/llm-operator", "image.tag=1.2")
    assert operator(*ours) == ("registry.example.com/ml/llm-operator:1.2", "registry.example.com/ml/llm-operator:1.2")
    digest = "registry.example.com/ml/llm-operator@sha256:" + "0" * 64
    assert operator(*ours, f"cache.downloaderImage={digest}") == ("registry.example.com/ml/llm-operator:1.2", digest)


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

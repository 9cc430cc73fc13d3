"""The chart's gateway (`llm-operator gateway`): deployed by default next to the operator, with
its own ServiceAccount and only the rights it needs; gone with gateway.enabled=false. Rendered
with `helm template`; the real install is in test_chart_install.py's test_install_upgrade_uninstall."""

from __future__ import annotations

import pytest
import yaml
from chartcheck import CHART_META, NAMESPACED, only, rules_of

from support.paths import CHART

# What the gateway may do in a namespace it routes to, (apiGroup, resource) -> verbs: read
# models and their pods, wake a model from zero (scale, one annotation), post Events.
GATEWAY_RULES = {
    ("llm-operator.io", "llmdeployments"): {"get", "list", "watch", "patch"},
    ("llm-operator.io", "llmdeployments/scale"): {"get", "patch", "update"},
    ("", "pods"): {"list", "watch"},
    ("", "events"): {"create", "patch"},
    ("events.k8s.io", "events"): {"create", "patch"},
}
DEFAULT_ARGS = [
    "gateway",
    "--listen=0.0.0.0:8080",
    "--hold-timeout=900",
    "--max-held-per-model=1000",
    "--max-body-bytes=8388608",
    "--connect-timeout=5",
    "--retries=2",
]


def gateway_objects(objs: list[dict]) -> list[dict]:
    return [o for o in objs if o["metadata"]["labels"].get("app.kubernetes.io/component") == "gateway"]


def container(objs: list[dict]) -> dict:
    (dep,) = only(objs, "Deployment", "gateway")
    (c,) = dep["spec"]["template"]["spec"]["containers"]
    return c


def test_the_gateway_is_rendered_by_default(render):
    objs = render()
    names = {(o["kind"], o["metadata"]["name"]) for o in gateway_objects(objs)}
    assert names == {
        ("Deployment", "llm-operator-gateway"),
        ("Service", "llm-operator-gateway"),
        ("ServiceAccount", "llm-operator-gateway"),
        ("ClusterRole", "llm-operator-gateway"),
        ("ClusterRoleBinding", "llm-operator-gateway"),
    }
    assert all(o["metadata"].get("namespace", "llm-system") == "llm-system" for o in gateway_objects(objs))


def test_gateway_enabled_false_renders_none_of_it(render):
    def names(objs):
        return {(o["kind"], o["metadata"]["name"]) for o in objs}

    objs = render("gateway.enabled=false")
    assert gateway_objects(objs) == []
    assert not any("gateway" in o["metadata"]["name"] for o in objs)
    # The operator's objects are the same as with the gateway.
    everything = render()
    assert names(objs) == names(everything) - names(gateway_objects(everything))
    # Nor in namespaced scope.
    assert gateway_objects(render(*NAMESPACED, "gateway.enabled=false")) == []


def test_gateway_deployment(render):
    objs = render()
    (dep,) = only(objs, "Deployment", "gateway")
    (operator,) = only(objs, "Deployment")
    spec = dep["spec"]
    assert spec["replicas"] == 1
    assert spec["strategy"] == {"type": "RollingUpdate", "rollingUpdate": {"maxUnavailable": 0, "maxSurge": 1}}
    pod = spec["template"]["spec"]
    assert pod["serviceAccountName"] == "llm-operator-gateway"
    assert pod["securityContext"]["runAsNonRoot"] is True and pod["securityContext"]["runAsUser"] == 65532
    assert pod["securityContext"]["seccompProfile"] == {"type": "RuntimeDefault"}
    c = container(objs)
    # The same image as the operator, its console script, the `gateway` command.
    assert (
        c["image"]
        == operator["spec"]["template"]["spec"]["containers"][0]["image"]
        == f"ghcr.io/llm-operator/llm-operator:{CHART_META['appVersion']}"
    )
    assert c["command"] == ["llm-operator"]
    # Cluster scope: no --namespace (the gateway's default is every namespace).
    assert c["args"] == DEFAULT_ARGS
    assert c["ports"] == [{"name": "http", "containerPort": 8080, "protocol": "TCP"}]
    assert c["readinessProbe"]["httpGet"] == {"path": "/readyz", "port": "http"}
    assert c["livenessProbe"]["httpGet"] == {"path": "/healthz", "port": "http"}
    sc = c["securityContext"]
    assert sc["runAsNonRoot"] is True and sc["readOnlyRootFilesystem"] is True
    assert sc["allowPrivilegeEscalation"] is False and sc["capabilities"] == {"drop": ["ALL"]}
    assert {"name": "tmp", "mountPath": "/tmp"} in c["volumeMounts"]
    assert c["resources"]["requests"] and c["resources"]["limits"]["memory"]
    # No API keys asked for by default: nothing mounted.
    assert [v["name"] for v in pod["volumes"]] == ["tmp"]
    assert only(objs, "PodDisruptionBudget", "gateway") == []


def test_the_gateway_and_the_operator_select_only_their_own_pods(render):
    objs = render()

    def pod_labels(dep):
        return dep["spec"]["template"]["metadata"]["labels"]

    def selects(selector, labels):
        return all(labels.get(k) == v for k, v in selector.items())

    (gw,) = only(objs, "Deployment", "gateway")
    (op,) = only(objs, "Deployment")
    (gw_svc,) = only(objs, "Service", "gateway")
    (op_svc,) = only(objs, "Service")
    for selector in (gw["spec"]["selector"]["matchLabels"], gw_svc["spec"]["selector"]):
        assert selects(selector, pod_labels(gw)) and not selects(selector, pod_labels(op)), selector
    for selector in (op["spec"]["selector"]["matchLabels"], op_svc["spec"]["selector"]):
        assert selects(selector, pod_labels(op)) and not selects(selector, pod_labels(gw)), selector


def test_gateway_service(render):
    objs = render()
    (svc,) = only(objs, "Service", "gateway")
    (dep,) = only(objs, "Deployment", "gateway")
    assert svc["spec"]["type"] == "ClusterIP"
    assert svc["spec"]["ports"] == [{"name": "http", "port": 80, "targetPort": "http", "protocol": "TCP"}]
    assert svc["spec"]["selector"] == dep["spec"]["selector"]["matchLabels"]
    assert "annotations" not in svc["metadata"]

    (svc,) = only(
        render(
            "gateway.service.type=LoadBalancer",
            "gateway.service.port=8000",
            "gateway.service.annotations.example\\.com/lb=internal",
        ),
        "Service",
        "gateway",
    )
    assert svc["spec"]["type"] == "LoadBalancer" and svc["spec"]["ports"][0]["port"] == 8000
    assert svc["metadata"]["annotations"] == {"example.com/lb": "internal"}


def test_values_reach_the_gateway(render, tmp_path):
    values = tmp_path / "values.yaml"
    # From a file, as YAML numbers (which Helm reads as floats: 104857600 must not become 1.048576e+08).
    values.write_text(
        yaml.safe_dump(
            {
                "gateway": {
                    "holdTimeoutSeconds": 1800,
                    "maxHeldRequestsPerModel": 50,
                    "maxBodyBytes": 104857600,
                    "connectTimeoutSeconds": 10,
                    "retries": 0,
                    "verbose": True,
                    "extraArgs": ["--foo=bar"],
                    "env": [{"name": "HTTPS_PROXY", "value": "http://proxy:3128"}],
                    "resources": {"requests": {"cpu": "1", "memory": "2Gi"}, "limits": {"memory": "4Gi"}},
                    "podAnnotations": {"example.com/team": "ml"},
                    "nodeSelector": {"pool": "cpu"},
                    "tolerations": [
                        {"key": "dedicated", "operator": "Equal", "value": "gateway", "effect": "NoSchedule"}
                    ],
                    "affinity": {"podAntiAffinity": {"preferredDuringSchedulingIgnoredDuringExecution": []}},
                    "serviceAccount": {"name": "front-door", "annotations": {"example.com/role": "gw"}},
                }
            }
        )
    )
    objs = render("image.tag=dev", extra=("-f", str(values)))
    c = container(objs)
    assert c["image"].endswith(":dev")
    assert c["args"] == [
        "gateway",
        "--listen=0.0.0.0:8080",
        "--hold-timeout=1800",
        "--max-held-per-model=50",
        "--max-body-bytes=104857600",
        "--connect-timeout=10",
        "--retries=0",
        "-v",
        "--foo=bar",
    ]
    assert {"name": "HTTPS_PROXY", "value": "http://proxy:3128"} in c["env"]
    assert c["resources"] == {"requests": {"cpu": "1", "memory": "2Gi"}, "limits": {"memory": "4Gi"}}
    (dep,) = only(objs, "Deployment", "gateway")
    pod = dep["spec"]["template"]
    assert pod["metadata"]["annotations"] == {"example.com/team": "ml"}
    assert pod["spec"]["nodeSelector"] == {"pool": "cpu"}
    assert pod["spec"]["tolerations"] == [
        {"key": "dedicated", "operator": "Equal", "value": "gateway", "effect": "NoSchedule"}
    ]
    assert pod["spec"]["affinity"] == {"podAntiAffinity": {"preferredDuringSchedulingIgnoredDuringExecution": []}}
    assert pod["spec"]["serviceAccountName"] == "front-door"
    (sa,) = only(objs, "ServiceAccount", "gateway")
    assert sa["metadata"]["name"] == "front-door" and sa["metadata"]["annotations"] == {"example.com/role": "gw"}
    (binding,) = only(objs, "ClusterRoleBinding", "gateway")
    assert binding["subjects"] == [{"kind": "ServiceAccount", "name": "front-door", "namespace": "llm-system"}]
    # The operator's own pod placement and resources stay the operator's.
    (op,) = only(objs, "Deployment")
    assert "nodeSelector" not in op["spec"]["template"]["spec"]
    assert op["spec"]["template"]["spec"]["containers"][0]["resources"]["limits"]["memory"] == "512Mi"


def test_a_pod_disruption_budget_only_above_one_replica(render):
    assert only(render("gateway.replicas=1"), "PodDisruptionBudget", "gateway") == []
    objs = render("gateway.replicas=3")
    (dep,) = only(objs, "Deployment", "gateway")
    assert dep["spec"]["replicas"] == 3
    (pdb,) = only(objs, "PodDisruptionBudget", "gateway")
    assert pdb["spec"]["maxUnavailable"] == 1
    assert pdb["spec"]["selector"]["matchLabels"] == dep["spec"]["selector"]["matchLabels"]


def test_api_keys_are_mounted_by_the_kubelet_and_passed_as_a_file(render):
    objs = render("gateway.apiKeys.secretName=gateway-keys")
    c = container(objs)
    assert c["args"] == [*DEFAULT_ARGS, "--api-keys-file=/etc/llm-operator-gateway/keys/keys"]
    assert {"name": "api-keys", "mountPath": "/etc/llm-operator-gateway/keys", "readOnly": True} in c["volumeMounts"]
    (dep,) = only(objs, "Deployment", "gateway")
    pod = dep["spec"]["template"]["spec"]
    assert {"name": "api-keys", "secret": {"secretName": "gateway-keys", "defaultMode": 0o440}} in pod["volumes"]
    # 0440: readable by the pod's group, which owns the files (fsGroup), and the non-root user is in it.
    assert pod["securityContext"]["fsGroup"] == pod["securityContext"]["runAsGroup"]

    c = container(render("gateway.apiKeys.secretName=gateway-keys", "gateway.apiKeys.key=tokens.txt"))
    assert "--api-keys-file=/etc/llm-operator-gateway/keys/tokens.txt" in c["args"]


# ---- RBAC ------------------------------------------------------------------------------
def test_cluster_scope_gateway_rbac_is_exactly_its_rules(render):
    objs = render()
    (role,) = only(objs, "ClusterRole", "gateway")
    assert role["metadata"]["name"] == "llm-operator-gateway"
    assert rules_of(role) == GATEWAY_RULES
    assert only(objs, "Role", "gateway") == []
    (binding,) = only(objs, "ClusterRoleBinding", "gateway")
    assert binding["roleRef"] == {
        "apiGroup": "rbac.authorization.k8s.io",
        "kind": "ClusterRole",
        "name": "llm-operator-gateway",
    }
    # Its own ServiceAccount, not the operator's.
    assert binding["subjects"] == [
        {"kind": "ServiceAccount", "name": "llm-operator-gateway", "namespace": "llm-system"}
    ]


def test_namespaced_scope_gives_the_gateway_a_role_in_each_namespace(render):
    objs = render(*NAMESPACED)
    assert only(objs, "ClusterRole", "gateway") == [] and only(objs, "ClusterRoleBinding", "gateway") == []
    roles = only(objs, "Role", "gateway")
    assert sorted(r["metadata"]["namespace"] for r in roles) == ["models-a", "models-b"]
    for role in roles:
        assert role["metadata"]["name"] == "llm-operator-gateway"
        assert rules_of(role) == GATEWAY_RULES
    bindings = only(objs, "RoleBinding", "gateway")
    assert sorted(b["metadata"]["namespace"] for b in bindings) == ["models-a", "models-b"]
    for b in bindings:
        assert b["roleRef"] == {"apiGroup": "rbac.authorization.k8s.io", "kind": "Role", "name": "llm-operator-gateway"}
        assert b["subjects"] == [{"kind": "ServiceAccount", "name": "llm-operator-gateway", "namespace": "llm-system"}]
    assert container(objs)["args"] == [
        DEFAULT_ARGS[0],
        DEFAULT_ARGS[1],
        "--namespace=models-a",
        "--namespace=models-b",
        *DEFAULT_ARGS[2:],
    ]


@pytest.mark.parametrize("values", [(), NAMESPACED], ids=["cluster", "namespaced"])
def test_the_gateway_gets_no_secrets_and_no_wildcards(render, values):
    roles = [o for o in gateway_objects(render(*values)) if o["kind"] in ("Role", "ClusterRole")]
    assert roles
    for role in roles:
        for rule in role["rules"]:
            for field in ("apiGroups", "resources", "verbs"):
                assert not any("*" in item for item in rule[field]), f"wildcard in {role['kind']}: {rule}"
            assert not any(r.split("/")[0] == "secrets" for r in rule["resources"]), f"secrets in {rule}"


def test_no_gateway_rbac_without_rbac_create(render):
    objs = gateway_objects(render("rbac.create=false"))
    assert {o["kind"] for o in objs} == {"Deployment", "Service", "ServiceAccount"}


def test_a_gateway_service_account_brought_by_the_user_must_be_named(helm, kube_version):
    proc = helm(
        "template",
        "x",
        str(CHART),
        f"--kube-version={kube_version}",
        "--set",
        "gateway.serviceAccount.create=false",
        check=False,
    )
    assert proc.returncode != 0
    assert "gateway.serviceAccount.name must name an existing ServiceAccount" in proc.stderr, proc.stderr


# ---- monitoring and schema -------------------------------------------------------------
def test_gateway_service_monitor_is_optional(render):
    assert only(render(), "ServiceMonitor", "gateway") == []
    objs = render("gateway.serviceMonitor.enabled=true", "gateway.serviceMonitor.labels.release=prom")
    (mon,) = only(objs, "ServiceMonitor", "gateway")
    (svc,) = only(objs, "Service", "gateway")
    assert mon["metadata"]["name"] == "llm-operator-gateway"
    assert mon["metadata"]["labels"]["release"] == "prom"
    assert mon["spec"]["selector"]["matchLabels"] == svc["spec"]["selector"]
    assert mon["spec"]["endpoints"] == [{"port": "http", "path": "/metrics", "interval": "30s", "scrapeTimeout": "10s"}]
    # The operator's ServiceMonitor is its own switch.
    assert only(objs, "ServiceMonitor") == []


@pytest.mark.parametrize(
    "value, complaint",
    [
        ("gateway.replica=2", "additional properties 'replica' not allowed"),
        ("gateway.apiKeys.secret=x", "additional properties 'secret' not allowed"),
        ("gateway.service.nodePort=30080", "additional properties 'nodePort' not allowed"),
        ("gateway.serviceAccount.automount=false", "additional properties 'automount' not allowed"),
        ("gateway.serviceMonitor.scrape=x", "additional properties 'scrape' not allowed"),
        ("gateway.enabled=yes", "/gateway/enabled"),
        ("gateway.replicas=-1", "/gateway/replicas"),
        ("gateway.holdTimeoutSeconds=0", "/gateway/holdTimeoutSeconds"),
        ("gateway.maxBodyBytes=8MiB", "/gateway/maxBodyBytes"),
        ("gateway.retries=-1", "/gateway/retries"),
        ("gateway.service.type=ExternalName", "/gateway/service/type"),
        ("gateway.service.port=0", "/gateway/service/port"),
        ("gateway.apiKeys.secretName=Not_A_Name", "/gateway/apiKeys/secretName"),
        ("gateway.resources.limits.memory=lots", "/gateway/resources/limits/memory"),
        ("gateway.tolerations[0].operator=Maybe", "/gateway/tolerations/0/operator"),
    ],
)
def test_schema_rejects_bad_gateway_values(helm, kube_version, value, complaint):
    proc = helm("template", "x", str(CHART), f"--kube-version={kube_version}", "--set", value, check=False)
    assert proc.returncode != 0, f"--set {value} was accepted"
    assert complaint in proc.stderr, proc.stderr


def test_every_gateway_value_is_in_the_schema():
    """The values file's gateway keys and the schema's are the same, at every level of objects
    the schema closes (a key in one and not the other is a default nobody can set, or a
    setting the chart ignores)."""
    import json

    values = yaml.safe_load((CHART / "values.yaml").read_text())["gateway"]
    schema = json.loads((CHART / "values.schema.json").read_text())["properties"]["gateway"]

    def same_keys(v, s, path):
        assert s.get("additionalProperties") is False, f"{path}: the schema must refuse unknown keys"
        assert set(v) == set(s["properties"]), path

    same_keys(values, schema, "gateway")
    # The chart's own objects (resources, affinity and the like are Kubernetes' types).
    for key in ("apiKeys", "service", "serviceMonitor", "serviceAccount"):
        same_keys(values[key], schema["properties"][key], f"gateway.{key}")


def test_the_gateway_command_line_the_chart_renders_is_the_one_the_cli_accepts(render):
    from llm_operator.cli import main as cli

    c = container(
        render(
            *NAMESPACED,
            "gateway.apiKeys.secretName=keys",
            "gateway.verbose=true",
            "gateway.holdTimeoutSeconds=600",
            "gateway.retries=1",
        )
    )
    assert c["command"] == ["llm-operator"]
    args = cli.parser().parse_args(c["args"])
    assert args.func is cli.cmd_gateway
    assert (args.listen, args.hold_timeout, args.retries, args.verbose) == ("0.0.0.0:8080", 600, 1, True)
    assert args.api_keys_file.startswith("/etc/llm-operator-gateway/keys/")
    assert args.namespace and all(args.namespace)

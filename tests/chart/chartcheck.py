"""What the chart tier's test files share (tests/chart/test_chart*.py): the chart's metadata,
the values of its namespaced scope, the operator's documented RBAC rules, and helpers to pick
rendered objects, read a Role's rules and ask the apiserver what a ServiceAccount may do. The
helm fixtures are in conftest.py."""

from __future__ import annotations

import yaml

from support.cluster import Kubectl
from support.paths import CHART

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

# How the chart begins its refusal of a Kubernetes older than 1.29 (helm template and install alike).
OLD_CLUSTER_REFUSAL = "llm-operator needs Kubernetes 1.29 or newer"


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

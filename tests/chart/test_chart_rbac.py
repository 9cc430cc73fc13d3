"""The Helm chart's RBAC, rendered: exactly the documented rules in each scope, LeaderWorkerSets
only when enabled, no wildcard and no Secret, a comment on every rule. What the rules allow on a
real apiserver is checked in test_chart_install.py and test_rbac_is_enough.py."""

from __future__ import annotations

import pytest
from chartcheck import CLUSTER_RULES, KOPF_NAMESPACES_RULE, NAMESPACED, NAMESPACED_RULES, only, rules_of

from support.paths import CHART


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

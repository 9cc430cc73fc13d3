"""Restarting a settled operator writes nothing to children and duplicates nothing (issue 2)."""

from __future__ import annotations

import json

from support.cluster import apiserver_writes, settled, wait_for, wait_for_other_namespaces_to_go
from support.manifests import llmd

CHILD_RESOURCES = {"deployments", "services", "poddisruptionbudgets"}


def test_restart_causes_zero_writes_to_children(cluster, operator, kubectl):
    names = [f"quiet-{i}" for i in range(5)]
    for i, name in enumerate(names):
        kubectl.apply(json.dumps(llmd(name, gpus=1, replicas=1 + i % 2)))
    for name in names:
        kubectl.run("wait", "--for=condition=Ready", f"llmd/{name}", "--timeout=60s")
    # apiserver metrics are cluster-wide: let other tests' namespaces finish going first.
    wait_for_other_namespaces_to_go(kubectl, 90)
    watched = [(kind, n) for n in names for kind in ("llmd", "deployment", "service")]
    before_versions = settled(kubectl, watched)
    before = apiserver_writes(cluster, CHILD_RESOURCES | {"llmdeployments"})

    operator.stop()
    operator.start()
    # Every existing LLMDeployment is resumed (reconciled) once the operator is back.
    wait_for(
        "the restarted operator to reconcile all five",
        lambda: operator.metric("llm_operator_reconciles_total") >= len(names),
        30,
    )
    after_versions = settled(kubectl, watched)
    after = apiserver_writes(cluster, CHILD_RESOURCES | {"llmdeployments"})

    delta = {k: after.get(k, 0) - before.get(k, 0) for k in after if after.get(k, 0) != before.get(k, 0)}
    child_writes = {k: v for k, v in delta.items() if k[0] in CHILD_RESOURCES and k[1] == ""}
    print(f"\napiserver writes during restart: {delta or 'none'}")
    assert child_writes == {}, child_writes
    assert delta == {}, f"the LLMDeployments were written too: {delta}"
    assert after_versions == before_versions
    assert operator.metric("llm_operator_writes_total") == 0
    for name in names:
        assert len(kubectl.items("deployments", f"app.kubernetes.io/instance={name}")) == 1
        assert len(kubectl.items("services", f"app.kubernetes.io/instance={name}")) == 1

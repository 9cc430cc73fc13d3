"""The chart's Argo CD health check (charts/llm-operator/argocd-health.lua): its verdict on each
LLMDeployment status, under Lua 5.1 and under Argo CD's own engine (gopher-lua)."""

from __future__ import annotations

import pytest

from support.paths import CHART


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

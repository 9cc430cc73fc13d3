"""Pure status: observed children -> phase and conditions (issue 2)."""

from __future__ import annotations

from llm_operator.status import Observed, Verdict, desired_status, status_patch

NOW = "2026-01-01T00:00:00Z"


def deployment(replicas=1, ready=0, updated=1, generation=1, observed=1, conditions=()):
    return {"metadata": {"generation": generation}, "spec": {"replicas": replicas},
            "status": {"replicas": replicas, "readyReplicas": ready, "updatedReplicas": updated,
                       "observedGeneration": observed, "conditions": list(conditions)}}


def observed(**kw):
    base = dict(generation=3, desired_replicas=1, gpus=2, selector="llm-operator.io/name=m", url="http://m.ns.svc.cluster.local")
    return Observed(**{**base, **kw})


def conds(st):
    return {c["type"]: (c["status"], c["reason"]) for c in st["conditions"]}


def test_ready():
    st = desired_status(observed(deployment=deployment(ready=1)), {}, NOW)
    assert st["phase"] == "Ready" and st["ready"] == "1/1" and st["observedGeneration"] == 3
    assert conds(st) == {"Ready": ("True", "Ready"), "Reconciling": ("False", "Ready"), "Stalled": ("False", "Ready")}
    assert all(c["observedGeneration"] == 3 and c["lastTransitionTime"] == NOW for c in st["conditions"])


def test_pods_starting_is_reconciling_not_ready():
    st = desired_status(observed(deployment=deployment(ready=0)), {}, NOW)
    assert st["phase"] == "Progressing"
    assert conds(st)["Ready"] == ("False", "PodsNotReady") and conds(st)["Reconciling"][0] == "True"


def test_rollout_in_progress():
    st = desired_status(observed(deployment=deployment(ready=1, updated=0, generation=2, observed=1)), {}, NOW)
    assert conds(st)["Ready"] == ("False", "RollingOut")


def test_unschedulable_carries_the_schedulers_message():
    pod = {"metadata": {}, "status": {"conditions": [{"type": "PodScheduled", "status": "False", "reason": "Unschedulable",
                                                      "message": "0/3 nodes are available: 3 Insufficient nvidia.com/gpu."}]}}
    st = desired_status(observed(deployment=deployment(), pods=(pod,)), {}, NOW)
    assert st["phase"] == "Unschedulable"
    ready = next(c for c in st["conditions"] if c["type"] == "Ready")
    assert ready["message"] == "1 of 1 replicas cannot be scheduled: 0/3 nodes are available: 3 Insufficient nvidia.com/gpu."
    assert conds(st)["Stalled"] == ("True", "Unschedulable") and conds(st)["Reconciling"][0] == "False"


def test_blocked_is_stalled_and_says_the_old_version_serves():
    st = desired_status(observed(deployment=deployment(ready=1), blocked=Verdict("False", "DoesNotFit", "Too big.")), {}, NOW)
    assert st["phase"] == "Failed"
    ready = next(c for c in st["conditions"] if c["type"] == "Ready")
    assert ready["message"] == "Too big. The previous version keeps serving with 1 ready replica(s)."
    assert conds(st)["Stalled"] == ("True", "DoesNotFit")


def test_waiting_is_pending_and_reconciling():
    st = desired_status(observed(waiting=Verdict("False", "Planning", "Reading facts.")), {}, NOW)
    assert st["phase"] == "Pending" and conds(st)["Reconciling"] == ("True", "Planning")


def test_transition_time_kept_while_status_holds():
    first = desired_status(observed(deployment=deployment(ready=1)), {}, "2026-01-01T00:00:00Z")
    again = desired_status(observed(deployment=deployment(ready=1)), first, "2026-01-01T01:00:00Z")
    assert again == first and status_patch(first, again) is None


def test_patch_removes_what_is_gone_and_drops_nulls():
    current = {"phase": "Ready", "plan": {"known": False, "reason": "x"}}
    desired = {"phase": "Ready"}
    assert status_patch(current, desired) == {"plan": None}
    st = desired_status(observed(deployment=deployment(ready=1), extra={"plan": {"known": False, "fits": None}}), {}, NOW)
    assert st["plan"] == {"known": False}


def test_patch_removes_keys_gone_from_nested_objects():
    """A merge patch merges nested objects: a key left out is kept unless patched to null."""
    current = {"plan": {"known": False, "pending": True, "reason": "Reading"}, "phase": "Pending"}
    desired = {"plan": {"known": False, "reason": "Unknown"}, "phase": "Pending"}
    assert status_patch(current, desired) == {"plan": {"pending": None, "reason": "Unknown"}}
    assert status_patch(desired, desired) is None

"""A child's name taken by an object the operator does not own: one create and one read say
so, and no reconcile after tries again; the watch of that one name makes the child as soon
as the other object is gone. The apiserver's own request counts show it."""

from __future__ import annotations

import json

import pytest

from support.cluster import apiserver_requests, condition, events, wait_for, wait_for_other_namespaces_to_go
from support.manifests import llmd

pytestmark = pytest.mark.usefixtures("operator")


def test_a_taken_name_costs_one_create_and_one_read_and_its_child_is_made_once_the_object_is_gone(cluster, kubectl):
    # The apiserver counts requests cluster-wide: other tests' objects must be gone first.
    wait_for_other_namespaces_to_go(kubectl)
    # A PodDisruptionBudget of the name the LLMDeployment's will have, made by hand, selecting
    # other pods. (No controller reads PDBs but with its listers, so only the operator GETs one.)
    kubectl.run("create", "pdb", "held", "--selector=app=other", "--max-unavailable=1")
    theirs = kubectl.get("pdb", "held")
    before = apiserver_requests(cluster, "poddisruptionbudgets")
    kubectl.apply(json.dumps(llmd("held", gpus=1, replicas=2)))

    def stalled_for_generation():
        obj = kubectl.get("llmd", "held")
        stalled = condition(obj, "Stalled")
        return (
            stalled.get("reason") == "NameConflict"
            and stalled.get("observedGeneration") == obj["metadata"]["generation"]
            and obj
        )

    obj = wait_for("Stalled, NameConflict", stalled_for_generation, 30)
    assert condition(obj, "Ready")["message"].startswith(
        "PodDisruptionBudget/held already exists and is not this LLMDeployment's (owned by no controller"
    )
    # Each change of the spec is a reconcile (the conditions take the new generation); the
    # PDB is not written, so observedGeneration stays at the last generation fully written.
    done = obj["status"].get("observedGeneration")
    for n in range(1, 4):
        kubectl.run(
            "patch", "llmd", "held", "--type=merge", "-p", json.dumps({"spec": {"podAnnotations": {"n": str(n)}}})
        )
        obj = wait_for(f"generation {n + 1} reconciled, still NameConflict", stalled_for_generation, 30)
        assert obj["metadata"]["generation"] == n + 1 and obj["status"].get("observedGeneration") == done
    after = apiserver_requests(cluster, "poddisruptionbudgets")
    # One round trip: the create refused with 409, the read that says whose the PDB is.
    assert after.get("POST", 0) - before.get("POST", 0) == 1, (before, after)
    assert after.get("GET", 0) - before.get("GET", 0) == 1, (before, after)
    wait_for("a Warning Event NameConflict", lambda: events(kubectl, "held", "NameConflict"), 10)
    assert [e["type"] for e in events(kubectl, "held", "NameConflict")] == ["Warning"]
    untouched = kubectl.get("pdb", "held")
    assert untouched["metadata"]["uid"] == theirs["metadata"]["uid"] and "ownerReferences" not in untouched["metadata"]
    assert untouched["spec"] == theirs["spec"]

    # The other PDB goes: the watch of its name wakes the LLMDeployment, which makes its own at
    # once (no change of the spec, and long before the 5-minute resync).
    kubectl.run("delete", "pdb", "held")
    uid = obj["metadata"]["uid"]
    ours = wait_for(
        "the LLMDeployment's own PodDisruptionBudget",
        lambda: [
            p
            for p in kubectl.items("pdb", "app.kubernetes.io/instance=held")
            if any(r["uid"] == uid and r.get("controller") for r in p["metadata"].get("ownerReferences") or [])
        ],
        15,
    )
    assert ours[0]["metadata"]["name"] == "held" and ours[0]["spec"]["maxUnavailable"] == 1
    wait_for(
        "NameConflict gone, the last generation written",
        lambda: (
            (o := kubectl.get("llmd", "held"))
            and condition(o, "Stalled").get("reason") != "NameConflict"
            and o["status"].get("observedGeneration") == o["metadata"]["generation"]
        ),
        30,
    )

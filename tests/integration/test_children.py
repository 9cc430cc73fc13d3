"""Children the operator cannot simply apply (issue 11): immutable fields of the download
Job and the cache claim, a refused write that must not stop the others, and objects of the
wanted name that are not ours."""

from __future__ import annotations

import json

import pytest

from support.cluster import bound_volume, condition, events, make_storage_class, wait_for
from support.manifests import CACHE_STORAGE_CLASS, CACHED_FACTS, cached, llmd

pytestmark = pytest.mark.usefixtures("operator")


def patch(kubectl, name: str, spec: dict) -> None:
    kubectl.run("patch", "llmd", name, "--type=merge", "-p", json.dumps({"spec": spec}))


def current(kubectl, name: str) -> dict | None:
    obj = kubectl.get("llmd", name)
    return obj if (obj.get("status") or {}).get("observedGeneration") == obj["metadata"]["generation"] else None


def test_changes_that_do_not_touch_the_download_leave_the_done_job_and_reach_the_deployment(kubectl, volume):
    volume("calm-weights")
    kubectl.apply(cached("calm", model=CACHED_FACTS["modelId"]))
    kubectl.run("wait", "--for=condition=Ready", "llmd/calm", "--timeout=60s")
    (job,) = kubectl.items("jobs", "app.kubernetes.io/instance=calm")
    patch(kubectl, "calm", {"podAnnotations": {"team": "b"}, "replicas": 2, "cache": {"stallTimeoutSeconds": 60}})
    wait_for("the Deployment at 2 replicas", lambda: kubectl.get("deployment", "calm")["spec"]["replicas"] == 2, 30)
    obj = wait_for(
        "Ready 2/2 for the new generation",
        lambda: (
            (o := current(kubectl, "calm"))
            and condition(o, "Ready")["status"] == "True"
            and o["status"]["readyReplicas"] == 2
            and o
        ),
        60,
    )
    assert condition(obj, "Stalled")["status"] == "False"
    assert kubectl.get("deployment", "calm")["spec"]["template"]["metadata"]["annotations"] == {"team": "b"}
    (after,) = kubectl.items("jobs", "app.kubernetes.io/instance=calm")
    assert after["metadata"]["uid"] == job["metadata"]["uid"]
    assert events(kubectl, "calm", "ApplyRefused") == []
    # Created with POST, its fields were made ours as applied before that write: a field we stop setting goes.
    fields = json.loads(kubectl.run("get", "deployment", "calm", "-o", "json", "--show-managed-fields").stdout)
    assert {
        (f["operation"], f.get("subresource", ""))
        for f in fields["metadata"]["managedFields"]
        if f["manager"] == "llm-operator"
    } == {("Apply", "")}
    kubectl.run("patch", "llmd", "calm", "--type=json", "-p", '[{"op": "remove", "path": "/spec/podAnnotations"}]')
    wait_for(
        "the pod annotation gone from the Deployment",
        lambda: "annotations" not in kubectl.get("deployment", "calm")["spec"]["template"]["metadata"],
        30,
    )


def test_a_refused_child_is_said_and_the_others_still_change(kubectl, volume):
    """A claim of a StorageClass that cannot expand: growing it is refused by the API. That is
    in status (Stalled, the API's message, observedGeneration behind) and an Event, and the
    replicas change made at the same time reaches the Deployment."""
    volume("grow-weights")
    kubectl.apply(cached("grow", model=CACHED_FACTS["modelId"]))
    kubectl.run("wait", "--for=condition=Ready", "llmd/grow", "--timeout=60s")
    patch(kubectl, "grow", {"replicas": 2, "cache": {"size": "300Gi"}})

    def refused():
        obj = kubectl.get("llmd", "grow")
        return obj if condition(obj, "Ready").get("reason") == "ApplyRefused" else None

    obj = wait_for("Ready=False, ApplyRefused", refused, 30)
    message = condition(obj, "Ready")["message"]
    assert "The API refused a write of PersistentVolumeClaim/grow-weights (HTTP" in message
    assert condition(obj, "Stalled")["status"] == "True"
    assert obj["status"]["observedGeneration"] == 1 and obj["metadata"]["generation"] == 2
    wait_for("the Deployment at 2 replicas", lambda: kubectl.get("deployment", "grow")["spec"]["replicas"] == 2, 30)
    wait_for(
        "one Warning Event ApplyRefused",
        lambda: [e["type"] for e in events(kubectl, "grow", "ApplyRefused")] == ["Warning"],
        10,
    )


def test_a_storage_class_change_waits_while_served_and_replaces_the_claim_once_nothing_mounts_it(
    cluster, kubectl, volume
):
    volume("move-weights")
    kubectl.apply(cached("move", model=CACHED_FACTS["modelId"]))
    kubectl.run("wait", "--for=condition=Ready", "llmd/move", "--timeout=60s")
    old = kubectl.get("pvc", "move-weights")
    other = f"other-{kubectl.namespace}"
    make_storage_class(cluster, other)
    patch(kubectl, "move", {"cache": {"storageClassName": other}})

    def said():
        obj = kubectl.get("llmd", "move")
        return obj if condition(obj, "Ready").get("reason") == "ClaimImmutable" else None

    obj = wait_for("Ready=False, ClaimImmutable", said, 30)
    message = condition(obj, "Ready")["message"]
    assert message.startswith(
        f"The cache volume claim move-weights cannot change in place (spec.cache.storageClassName "
        f"{CACHE_STORAGE_CLASS} -> {other})"
    )
    assert "scale to zero (spec.replicas: 0)" in message and "HTTP 422" not in message
    assert condition(obj, "Stalled")["status"] == "True" and obj["status"]["observedGeneration"] == 1
    assert kubectl.get("pvc", "move-weights")["metadata"]["uid"] == old["metadata"]["uid"]
    assert kubectl.get("deployment", "move")["spec"]["replicas"] == 1
    assert len(events(kubectl, "move", "ClaimImmutable")) == 1

    bound_volume(cluster, kubectl.namespace, "move-weights", other, name=f"{kubectl.namespace}-move-weights-2")

    patch(kubectl, "move", {"replicas": 0})
    wait_for(
        "a new claim in the new StorageClass",
        lambda: (
            (c := kubectl.get("pvc", "move-weights"))
            and c["metadata"]["uid"] != old["metadata"]["uid"]
            and c["spec"]["storageClassName"] == other
        ),
        60,
    )
    obj = wait_for(
        "the cache filled again, the generation current",
        lambda: (o := current(kubectl, "move")) and condition(o, "WeightsCached")["status"] == "True" and o,
        60,
    )
    assert condition(obj, "Stalled")["status"] == "False"


def test_a_users_service_of_the_same_name_is_never_taken(kubectl):
    kubectl.run("create", "service", "clusterip", "mine", "--tcp=81:8081")
    before = kubectl.get("service", "mine")
    kubectl.apply(json.dumps(llmd("mine", gpus=1)))
    obj = wait_for(
        "Stalled, NameConflict",
        lambda: (o := kubectl.get("llmd", "mine")) and condition(o, "Stalled").get("reason") == "NameConflict" and o,
        30,
    )
    assert condition(obj, "Stalled")["status"] == "True"
    assert condition(obj, "Ready")["message"].startswith(
        "Service/mine already exists and is not this LLMDeployment's (owned by no controller"
    )
    wait_for(
        "a Warning Event NameConflict",
        lambda: [e["type"] for e in events(kubectl, "mine", "NameConflict")] == ["Warning"],
        10,
    )
    after = kubectl.get("service", "mine")
    assert after["spec"]["selector"] == before["spec"]["selector"] == {"app": "mine"}
    assert after["spec"]["ports"] == before["spec"]["ports"]
    assert "ownerReferences" not in after["metadata"]
    assert after["metadata"]["resourceVersion"] == before["metadata"]["resourceVersion"]
    kubectl.run("delete", "llmd", "mine", "--wait=true", "--timeout=30s")
    wait_for("our Deployment collected", lambda: kubectl.get("deployment", "mine") is None, 30)
    assert kubectl.get("service", "mine")["metadata"]["uid"] == before["metadata"]["uid"]


def test_a_users_deployment_of_the_same_name_is_never_taken(kubectl):
    kubectl.run("create", "deployment", "theirs", "--image=registry.example/app:1", "--replicas=0")
    before = kubectl.get("deployment", "theirs")
    kubectl.apply(json.dumps(llmd("theirs", gpus=1)))
    obj = wait_for(
        "Stalled, NameConflict",
        lambda: (o := kubectl.get("llmd", "theirs")) and condition(o, "Stalled").get("reason") == "NameConflict" and o,
        30,
    )
    assert condition(obj, "Ready")["message"].startswith(
        "Deployment/theirs already exists and is not this LLMDeployment's"
    )
    assert obj["status"]["phase"] == "Failed"
    wait_for("a Warning Event NameConflict", lambda: events(kubectl, "theirs", "NameConflict"), 10)
    after = kubectl.get("deployment", "theirs")
    assert after["metadata"]["resourceVersion"] == before["metadata"]["resourceVersion"]
    assert "ownerReferences" not in after["metadata"]
    assert kubectl.get("service", "theirs") is not None  # what is not taken is still made
    kubectl.run("delete", "llmd", "theirs", "--wait=true", "--timeout=30s")
    wait_for("our Service collected", lambda: kubectl.get("service", "theirs") is None, 30)
    assert kubectl.get("deployment", "theirs")["metadata"]["uid"] == before["metadata"]["uid"]

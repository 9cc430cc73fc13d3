"""The weight cache (issue 4): claim and download Job first, the Deployment only after the
Job succeeds, read-only and offline; failures and missing storage said in status."""

from __future__ import annotations

import json

import pytest

from support.cluster import Kubectl, condition, wait_for
from support.manifests import CACHED_FACTS, cached, llmd

pytestmark = pytest.mark.usefixtures("operator")


def test_claim_and_job_first_then_a_read_only_offline_deployment(kubectl, volume):
    volume("served-weights")
    # The download (simulated by kwok) takes 3 s and reports the model's facts as llm-runtime does.
    kubectl.apply(
        cached(
            "served",
            **{
                "pod-complete.stage.kwok.x-k8s.io/delay": "3s",
                "pod-complete.stage.kwok.x-k8s.io/message": json.dumps(CACHED_FACTS),
            },
        )
    )

    def downloading():
        obj = kubectl.get("llmd", "served")
        return obj if condition(obj, "WeightsCached").get("reason") == "Downloading" else None

    obj = wait_for("WeightsCached=False while downloading", downloading, 30, interval=0.1)
    assert condition(obj, "Ready")["status"] == "False" and condition(obj, "Reconciling")["status"] == "True"
    assert kubectl.get("pvc", "served-weights") is not None
    jobs = kubectl.items("jobs", "app.kubernetes.io/instance=served")
    assert len(jobs) == 1 and kubectl.get("deployment", "served") is None

    kubectl.run("wait", "--for=condition=Ready", "llmd/served", "--timeout=60s")
    job = kubectl.get("job", jobs[0]["metadata"]["name"])
    assert any(c["type"] == "Complete" and c["status"] == "True" for c in job["status"]["conditions"])
    deployment = kubectl.get("deployment", "served")
    assert deployment["metadata"]["creationTimestamp"] >= job["status"]["completionTime"]
    pod = deployment["spec"]["template"]["spec"]
    assert {"name": "data", "persistentVolumeClaim": {"claimName": "served-weights", "readOnly": True}} in pod[
        "volumes"
    ]
    mount = next(m for m in pod["containers"][0]["volumeMounts"] if m["name"] == "data")
    assert mount == {"name": "data", "mountPath": "/data", "readOnly": True}
    assert {"name": "HF_HUB_OFFLINE", "value": "1"} in pod["containers"][0]["env"]
    obj = kubectl.get("llmd", "served")
    assert condition(obj, "WeightsCached")["status"] == "True"
    # The facts came from the Job's termination message (the Hub stand-in does not have this model).
    assert obj["status"]["modelFacts"]["parameterCount"] == 7615616512
    assert obj["status"]["plan"]["known"] is True and obj["status"]["plan"]["fits"] is True


def test_a_failed_download_is_reported_with_its_message(kubectl, volume):
    volume("broken-weights")
    error = {
        "error": "test/cached-only is gated: give spec.model.tokenSecretRef",
        "reason": "Refused",
        "permanent": True,
    }
    kubectl.apply(
        cached(
            "broken",
            **{
                "pod-complete.stage.kwok.x-k8s.io/exit-code": "4",
                "pod-complete.stage.kwok.x-k8s.io/message": json.dumps(error),
            },
        )
    )
    obj = wait_for(
        "WeightsCached reason DownloadFailed",
        lambda: (
            (o := kubectl.get("llmd", "broken"))
            and condition(o, "WeightsCached").get("reason") == "DownloadFailed"
            and o
        ),
        60,
    )
    message = condition(obj, "WeightsCached")["message"]
    assert "is gated: give spec.model.tokenSecretRef" in message and "kubectl delete job" in message
    assert condition(obj, "Ready")["status"] == "False" and condition(obj, "Stalled")["status"] == "True"
    assert kubectl.get("deployment", "broken") is None


def test_a_missing_storage_class_makes_nothing_until_it_exists(cluster, kubectl):
    missing = f"made-later-{kubectl.namespace}"
    kubectl.apply(json.dumps(llmd("nostorage", gpus=1, cache={"enabled": True, "storageClassName": missing})))
    obj = wait_for(
        "WeightsCached reason StorageClassNotFound",
        lambda: (
            (o := kubectl.get("llmd", "nostorage"))
            and condition(o, "WeightsCached").get("reason") == "StorageClassNotFound"
            and o
        ),
        30,
    )
    assert f"StorageClass {missing} does not exist (the cluster has " in condition(obj, "Ready")["message"]
    assert condition(obj, "Stalled")["status"] == "True" and condition(obj, "Ready")["reason"] == "StorageClassNotFound"
    assert obj["status"]["observedGeneration"] == obj["metadata"]["generation"]
    events = [e for e in kubectl.items("events") if e["involvedObject"]["name"] == "nostorage"]
    assert [(e["type"], e["reason"]) for e in events] == [("Warning", "StorageClassNotFound")]
    # The status is written after the decision's writes: had a claim or a Job been made, they would be here.
    assert kubectl.get("pvc", "nostorage-weights") is None
    assert kubectl.items("jobs", "app.kubernetes.io/instance=nostorage") == []
    # Once it exists, the operator notices without any change to the LLMDeployment.
    Kubectl(cluster).apply(f"""
apiVersion: storage.k8s.io/v1
kind: StorageClass
metadata: {{name: {missing}}}
provisioner: kubernetes.io/no-provisioner
""")
    wait_for(
        "the cache to go on with the StorageClass",
        lambda: (
            condition(kubectl.get("llmd", "nostorage"), "WeightsCached").get("reason")
            not in (None, "StorageClassNotFound")
        ),
        30,
    )
    assert kubectl.get("pvc", "nostorage-weights")["spec"]["storageClassName"] == missing
    assert len(kubectl.items("jobs", "app.kubernetes.io/instance=nostorage")) == 1
    assert condition(kubectl.get("llmd", "nostorage"), "Stalled")["status"] == "False"


def test_a_new_revision_downloads_again(kubectl, volume):
    volume("rev-weights")
    kubectl.apply(cached("rev"))
    kubectl.run("wait", "--for=condition=Ready", "llmd/rev", "--timeout=60s")
    (first,) = [j["metadata"]["name"] for j in kubectl.items("jobs", "app.kubernetes.io/instance=rev")]
    kubectl.run("patch", "llmd", "rev", "--type=merge", "-p", '{"spec": {"model": {"revision": "v2"}}}')
    wait_for(
        "a new download Job, the old one pruned",
        lambda: (
            (
                names := [
                    j["metadata"]["name"]
                    for j in kubectl.items("jobs", "app.kubernetes.io/instance=rev")
                    if not j["metadata"].get("deletionTimestamp")
                ]
            )
            and first not in names
            and len(names) == 1
        ),
        30,
    )
    kubectl.run("wait", "--for=condition=Ready", "llmd/rev", "--timeout=60s")
    args = kubectl.get("deployment", "rev")["spec"]["template"]["spec"]["containers"][0]["args"]
    assert args[args.index("--revision") + 1] == "v2"

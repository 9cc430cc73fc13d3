"""Pure: the weight cache's objects -> WeightsCached (issue 4)."""

from __future__ import annotations

import datetime as dt
import json

from llm_operator.decide.cache import CacheObserved, judge_cache

NOW = dt.datetime(2026, 1, 1, 12, 0, 0, tzinfo=dt.UTC)
BOUND = {"metadata": {"creationTimestamp": "2026-01-01T11:00:00Z"}, "status": {"phase": "Bound"}}


def observed(**kw) -> CacheObserved:
    base = dict(
        claim_name="m-weights",
        job_name="m-download-1",
        storage_class="fast",
        storage_class_found=True,
        claim=BOUND,
        job=None,
        job_pods=(),
        now=NOW,
    )
    return CacheObserved(**{**base, **kw})


def job(kind=None, message="", failed=0):
    conditions = (
        [{"type": kind, "status": "True", "reason": "BackoffLimitExceeded", "message": message}] if kind else []
    )
    return {"status": {"conditions": conditions, "failed": failed}}


def pod(message: str, created="2026-01-01T11:30:00Z"):
    return {
        "metadata": {"creationTimestamp": created},
        "status": {"containerStatuses": [{"state": {"terminated": {"exitCode": 0, "message": message}}}]},
    }


def test_missing_storage_class_is_stalled_with_the_fix():
    v = judge_cache(observed(claim=None, storage_class_found=False, storage_classes=("slow", "standard")))
    assert (v.condition.reason, v.failed, v.complete) == ("StorageClassNotFound", True, False)
    assert v.condition.message.startswith(
        "StorageClass fast does not exist (the cluster has slow, standard): create it"
    )
    none = judge_cache(observed(claim=None, storage_class="", storage_class_found=False))
    assert (none.condition.reason, none.failed) == ("NoDefaultStorageClass", True)
    assert "(the cluster has none)" in none.condition.message


def test_a_claim_already_made_goes_on_without_its_storage_class():
    """The class is judged only before the claim exists: a Bound claim keeps serving the cache."""
    v = judge_cache(observed(storage_class_found=False, job=job("Complete")))
    assert (v.condition.reason, v.failed, v.complete) == ("Cached", False, True)


def test_claim_pending_is_reported_after_a_minute():
    young = {
        "metadata": {"creationTimestamp": "2026-01-01T11:59:30Z"},
        "status": {"phase": "Pending"},
        "spec": {
            "accessModes": ["ReadWriteMany"],
            "resources": {"requests": {"storage": "100Gi"}},
            "storageClassName": "fast",
        },
    }
    assert (
        judge_cache(observed(claim=young)).condition.message
        == "Waiting for the cache volume claim m-weights to be bound."
    )
    old = {**young, "metadata": {"creationTimestamp": "2026-01-01T11:50:00Z"}}
    assert judge_cache(observed(claim=old)).condition.message == (
        "The cache volume claim m-weights has been Pending for 600s: no volume or provisioner offers 100Gi "
        "ReadWriteMany in StorageClass fast (kubectl describe pvc m-weights)."
    )


def test_complete_job_gives_the_facts_from_the_newest_pod():
    facts = {"modelId": "org/m", "numLayers": 32}
    v = judge_cache(
        observed(job=job("Complete"), job_pods=(pod("not json", "2026-01-01T11:00:00Z"), pod(json.dumps(facts))))
    )
    assert v.complete and v.condition.status == "True" and v.facts == facts


def test_failed_job_says_why_and_how_to_retry():
    error = json.dumps({"error": "org/m is gated", "permanent": True})
    v = judge_cache(observed(job=job("Failed", "Job has reached the specified backoff limit"), job_pods=(pod(error),)))
    assert v.failed and v.condition.reason == "DownloadFailed"
    assert v.condition.message == (
        "The download Job m-download-1 failed (BackoffLimitExceeded: Job has reached the "
        "specified backoff limit). The download said: org/m is gated Fix the cause, then "
        "delete the Job to retry (kubectl delete job m-download-1)."
    )


def test_running_job_is_downloading_with_retries_counted():
    v = judge_cache(observed(job=job(failed=2)))
    assert (v.condition.reason, v.complete, v.failed) == ("Downloading", False, False)
    assert "after 2 failed attempts" in v.condition.message


def test_a_download_pod_the_scheduler_cannot_place_is_said_with_the_fields_that_place_it():
    unschedulable = {
        "metadata": {"name": "m-download-1-abcde"},
        "status": {
            "phase": "Pending",
            "conditions": [
                {
                    "type": "PodScheduled",
                    "status": "False",
                    "reason": "Unschedulable",
                    "message": "0/3 nodes are available: 3 node(s) had untolerated taint {storage: only}.",
                }
            ],
        },
    }
    v = judge_cache(observed(job=job(), job_pods=(unschedulable,)))
    assert (v.condition.reason, v.failed, v.complete) == ("DownloadUnschedulable", False, False)
    assert v.condition.message == (
        "The download Job m-download-1's pod m-download-1-abcde cannot be scheduled: 0/3 nodes are available: "
        "3 node(s) had untolerated taint {storage: only}. It runs where spec.cache.scheduling says, or where "
        "spec.scheduling puts the serving pods when that is not set, without a GPU request "
        "(kubectl describe pod m-download-1-abcde)."
    )


def test_a_download_image_that_cannot_be_pulled_names_the_image_and_where_it_is_set():
    pulling = {
        "metadata": {"name": "m-download-1-abcde"},
        "status": {
            "phase": "Pending",
            "containerStatuses": [
                {
                    "name": "download",
                    "image": "registry.example.com/ml/llm-operator:1.2",
                    "state": {
                        "waiting": {
                            "reason": "ImagePullBackOff",
                            "message": 'Back-off pulling image "registry.example.com/ml/llm-operator:1.2"',
                        }
                    },
                }
            ],
        },
    }
    v = judge_cache(observed(job=job(), job_pods=(pulling,)))
    # Waiting, not failed: a failed cache holds back every write, and the Job must still be made
    # again once spec.cache.downloaderImage is fixed.
    assert (v.condition.reason, v.failed, v.complete) == ("DownloadImagePull", False, False)
    assert v.condition.message == (
        "The download Job m-download-1's pod m-download-1-abcde cannot pull registry.example.com/ml/llm-operator:1.2 "
        '(ImagePullBackOff): Back-off pulling image "registry.example.com/ml/llm-operator:1.2" The image is '
        "spec.cache.downloaderImage, or the operator's --downloader-image (the chart's cache.downloaderImage) "
        "when that is empty: check the name, the registry's reachability and the pull secrets."
    )


def test_a_download_pod_that_runs_is_downloading():
    running = {
        "metadata": {"name": "m-download-1-abcde"},
        "status": {
            "phase": "Running",
            "conditions": [{"type": "PodScheduled", "status": "True"}],
            "containerStatuses": [{"name": "download", "state": {"running": {}}}],
        },
    }
    v = judge_cache(observed(job=job(), job_pods=(running,)))
    assert v.condition.reason == "Downloading"

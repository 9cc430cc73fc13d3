"""decide() with the weight cache on: the claim and the download Job first, the Deployment
once the weights are in; what serves goes on serving while a new revision downloads."""

from __future__ import annotations

import datetime as dt
import json

from decideobjects import (
    CACHE,
    FAST,
    KNOWN,
    NOW,
    OWNER,
    claim,
    cond,
    job,
    job_pod,
    kinds,
    live_deployment,
    live_service,
    observed,
    parsed_spec,
)

from llm_operator.api.conditions import Verdict
from llm_operator.decide import cache as weights
from llm_operator.decide import manifests as resources
from llm_operator.decide.decision import decide


def test_cache_first_the_claim_and_the_job_then_the_deployment():
    d = decide(observed(spec=CACHE, storage_classes=FAST), KNOWN, NOW)
    assert [k for k, _ in kinds(d.desired)] == ["Service", "PersistentVolumeClaim", "Job"]
    assert d.phase == "Pending" and cond(d, "WeightsCached")[1] == "Creating"


def test_a_claim_pending_is_looked_at_again_when_only_time_would_tell():
    d = decide(
        observed(spec=CACHE, storage_classes=FAST, children=[claim("Pending")]),
        KNOWN,
        dt.datetime(2025, 12, 31, 23, 58, 10, tzinfo=dt.UTC),
    )
    assert cond(d, "WeightsCached")[1] == "ClaimPending" and d.requeue_after == 61
    late = decide(observed(spec=CACHE, storage_classes=FAST, children=[claim("Pending")]), KNOWN, NOW)
    assert "has been Pending for 120s" in cond(late, "WeightsCached")[2] and late.requeue_after is None


def test_a_missing_storage_class_makes_no_claim_and_no_job():
    d = decide(observed(spec=CACHE, storage_classes=({"name": "slow", "default": True},)), KNOWN, NOW)
    assert d.phase == "Failed" and cond(d)[1] == "StorageClassNotFound" and d.desired == () and d.apply == ()
    assert "StorageClass fast does not exist (the cluster has slow)" in cond(d)[2]
    assert cond(d, "Stalled")[:2] == ("True", "StorageClassNotFound")
    assert [(e.type, e.reason) for e in d.events] == [("Warning", "StorageClassNotFound")]
    # Once it exists, the claim and the Job are made.
    later = decide(observed(spec=CACHE, storage_classes=FAST), KNOWN, NOW)
    assert [k for k, _ in kinds(later.apply)] == ["Service", "PersistentVolumeClaim", "Job"]


def test_no_default_storage_class_makes_no_claim():
    spec = {"cache": {"enabled": True, "size": "100Gi"}}
    d = decide(observed(spec=spec, storage_classes=FAST), KNOWN, NOW)
    assert cond(d)[1] == "NoDefaultStorageClass" and d.desired == ()
    default = decide(observed(spec=spec, storage_classes=({"name": "fast", "default": True},)), KNOWN, NOW)
    assert ("PersistentVolumeClaim", "m-weights") in kinds(default.apply)


def test_a_missing_storage_class_never_prunes_what_exists():
    """A Job made before (its claim deleted by hand): kept, and nothing new made."""
    d = decide(observed(spec=CACHE, storage_classes=(), children=[live_service(), job()]), KNOWN, NOW)
    assert cond(d)[1] == "StorageClassNotFound" and d.prune == () and d.apply == ()
    # A claim made before goes on with the class it has: the StorageClass is not judged again.
    kept = decide(observed(spec=CACHE, storage_classes=(), children=[live_service(), claim(), job()]), KNOWN, NOW)
    assert kept.prune == () and cond(kept, "WeightsCached")[1] == "Downloading"


def test_a_failed_download_is_stalled_with_the_jobs_own_message():
    pod = job_pod(message=json.dumps({"error": "401 gated repo", "reason": "Refused"}))
    d = decide(observed(spec=CACHE, storage_classes=FAST, children=[claim(), job("Failed")], pods=[pod]), KNOWN, NOW)
    assert d.phase == "Failed" and cond(d)[1] == "DownloadFailed" and "401 gated repo" in cond(d)[2]


def test_the_old_deployment_keeps_serving_while_a_new_revision_downloads():
    new = {**CACHE, "model": {"id": "org/mistral", "revision": "v2"}}
    old = live_deployment(CACHE)
    d = decide(
        observed(
            spec=new,
            storage_classes=FAST,
            children=[live_service(), claim(), old, job(spec=new)],
            meta={"generation": 2},
        ),
        KNOWN,
        NOW,
    )
    assert ("Deployment", "m") not in kinds(d.desired) and d.prune == ()
    assert cond(d, "WeightsCached")[1] == "Downloading" and d.phase == "Pending"


def test_the_old_revisions_job_is_pruned_and_the_new_one_made():
    new = {**CACHE, "model": {"id": "org/mistral", "revision": "v2"}}
    d = decide(
        observed(
            spec=new, storage_classes=FAST, children=[live_service(), claim(), job("Complete")], meta={"generation": 2}
        ),
        KNOWN,
        NOW,
    )
    assert kinds(d.prune) == [("Job", job()["metadata"]["name"])]
    assert ("Job", job(spec=new)["metadata"]["name"]) in kinds(d.apply)


def test_the_serving_pod_annotations_are_not_in_the_download_pod():
    j = resources.desired_download_job(OWNER, parsed_spec({**CACHE, "podAnnotations": {"team": "b"}}))
    assert "annotations" not in j["spec"]["template"]["metadata"]
    j = resources.desired_download_job(
        OWNER, parsed_spec({**CACHE, "cache": {**CACHE["cache"], "podAnnotations": {"p": "x"}}})
    )
    assert j["spec"]["template"]["metadata"]["annotations"] == {"p": "x"}


def cache(reason, message="", complete=False, failed=False, facts=None) -> weights.CacheVerdict:
    return weights.CacheVerdict(Verdict("True" if complete else "False", reason, message), complete, failed, facts)


def test_what_the_cache_holds_back_when_to_look_again_and_the_adapters_it_cached():
    done = cache("Cached", complete=True, facts={"adapters": {"support": "c1"}})
    assert weights.holds(None) == weights.holds(done) == (None, None)
    failed, downloading = cache("DownloadFailed", failed=True), cache("Downloading")
    assert weights.holds(failed) == (failed.condition, None) and weights.holds(downloading) == (
        None,
        downloading.condition,
    )
    assert (
        weights.recheck_after(cache("ClaimPending", "Waiting for the cache volume claim m-weights to be bound.")) == 61
    )
    assert (
        weights.recheck_after(cache("ClaimPending", "The cache volume claim m-weights has been Pending for 120s"))
        is None
    )
    assert weights.recheck_after(None) is None and weights.recheck_after(downloading) is None
    assert weights.adapter_commits(done) == {"support": "c1"}
    assert weights.adapter_commits(downloading) == weights.adapter_commits(None) == {}

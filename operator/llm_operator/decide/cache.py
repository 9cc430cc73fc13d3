"""Pure: the weight cache's claim, StorageClass and download Job -> the WeightsCached verdict.

The serving Deployment is made only once the download Job has succeeded. Everything that
would otherwise be silently waited on (a missing StorageClass, a claim that stays
Pending, a failed Job) is said in the condition, with what to do about it.
"""

from __future__ import annotations

import datetime as dt
from dataclasses import dataclass
from typing import Any

from llm_common import termination
from llm_common.words import plural
from llm_operator import api
from llm_operator.api.conditions import Verdict
from llm_operator.decide import manifests as resources
from llm_operator.decide.observed import Observed, live_child
from llm_operator.decide.pods import active_pods, pod_condition

# A claim Pending for longer than this is reported: no provisioner or volume is coming.
CLAIM_PENDING_REPORT_S = 60


@dataclass(frozen=True)
class CacheObserved:
    claim_name: str
    job_name: str
    storage_class: str  # asked for ("" = the default)
    storage_class_found: bool  # the named class exists, or a default exists when none is named
    claim: dict[str, Any] | None
    job: dict[str, Any] | None
    job_pods: tuple[dict[str, Any], ...]
    now: dt.datetime
    storage_classes: tuple[str, ...] = ()  # the names of those that exist


@dataclass(frozen=True)
class CacheVerdict:
    condition: Verdict  # WeightsCached
    complete: bool  # the Deployment may be made
    failed: bool  # cannot progress without a change (Stalled)
    facts: dict[str, Any] | None  # the model's facts, from the Job's termination message


def _age_s(obj: dict[str, Any], now: dt.datetime) -> float:
    created = obj.get("metadata", {}).get("creationTimestamp")
    if not created:
        return 0.0
    return (now - dt.datetime.fromisoformat(created.replace("Z", "+00:00"))).total_seconds()


def job_complete(job: dict[str, Any]) -> bool:
    return _job_condition(job, "Complete") is not None


def job_finished(job: dict[str, Any]) -> bool:
    """Complete or Failed: no pod of it runs any more."""
    return bool(_job_condition(job, "Complete") or _job_condition(job, "Failed"))


_UNITS = {
    "": 1,
    "m": 1e-3,
    "k": 1e3,
    "M": 1e6,
    "G": 1e9,
    "T": 1e12,
    "P": 1e15,
    "E": 1e18,
    "Ki": 2**10,
    "Mi": 2**20,
    "Gi": 2**30,
    "Ti": 2**40,
    "Pi": 2**50,
    "Ei": 2**60,
}


def quantity_bytes(q: str) -> float:
    """A Kubernetes quantity (100Gi, 1.5T, 500M, 1e9) in bytes."""
    q = str(q).strip()
    for unit in sorted(_UNITS, key=len, reverse=True):
        if unit and q.endswith(unit):
            return float(q[: -len(unit)]) * _UNITS[unit]
    return float(q)


def _storage_request(spec: dict[str, Any]) -> str | None:
    """A claim spec's requested size, as the quantity it names."""
    size: str | None = ((spec.get("resources") or {}).get("requests") or {}).get("storage")
    return size


def claim_changes(desired: dict[str, Any], live: dict[str, Any]) -> list[str]:
    """What a claim cannot change in place (storage class, access modes, a smaller size):
    each as the spec field and its values, for the condition's message."""
    want, have = desired.get("spec") or {}, live.get("spec") or {}
    out = []
    if want.get("storageClassName") and want["storageClassName"] != have.get("storageClassName"):
        out.append(
            f"spec.cache.storageClassName {have.get('storageClassName') or '(default)'} -> {want['storageClassName']}"
        )
    if want.get("accessModes") != have.get("accessModes"):
        out.append(
            f"spec.cache.accessMode {','.join(have.get('accessModes') or [])} -> {','.join(want.get('accessModes') or [])}"
        )
    want_size, have_size = _storage_request(want), _storage_request(have)
    if want_size and have_size and quantity_bytes(want_size) < quantity_bytes(have_size):
        out.append(f"spec.cache.size {have_size} -> {want_size} (a claim can grow, never shrink)")
    return out


def _job_condition(job: dict[str, Any], kind: str) -> dict[str, Any] | None:
    conditions: list[dict[str, Any]] = (job.get("status") or {}).get("conditions") or []
    for cond in conditions:
        if cond.get("type") == kind and cond.get("status") == "True":
            return cond
    return None


def storage_class_found(name: str, classes: tuple[dict[str, Any], ...]) -> bool:
    """The named StorageClass exists; with no name, the cluster has a default one."""
    if name:
        return any(sc["name"] == name for sc in classes)
    return any(sc["default"] for sc in classes)


def judge_cache(o: CacheObserved) -> CacheVerdict:
    def no(reason: str, msg: str, failed: bool = False) -> CacheVerdict:
        return CacheVerdict(Verdict("False", reason, msg), False, failed, None)

    claim = o.claim
    # Judged only before the claim exists: no claim (and so no download Job) is made for a
    # class that is not there, and a claim already made goes on with the class it has.
    if claim is None and not o.storage_class_found:
        existing = f"the cluster has {', '.join(o.storage_classes)}" if o.storage_classes else "the cluster has none"
        if o.storage_class:
            return no(
                "StorageClassNotFound",
                f"StorageClass {o.storage_class} does not exist ({existing}): create it "
                "or set spec.cache.storageClassName to one that does. No cache volume claim or download Job "
                "is made until it exists.",
                True,
            )
        return no(
            "NoDefaultStorageClass",
            f"spec.cache.storageClassName is empty and the cluster has no default "
            f"StorageClass ({existing}): name one in spec.cache.storageClassName. No cache volume claim or "
            "download Job is made until one exists.",
            True,
        )
    if claim is None:
        return no("Creating", f"Creating the cache volume claim {o.claim_name}.")
    if (claim.get("metadata") or {}).get("deletionTimestamp"):
        return no(
            "ClaimReplacing",
            f"The cache volume claim {o.claim_name} is being deleted, to be made again with the "
            "spec's storage settings; the weights are downloaded again once it is (kubectl describe pvc "
            f"{o.claim_name}).",
        )
    phase = (claim.get("status") or {}).get("phase")
    if phase == "Lost":
        return no(
            "ClaimLost", f"The cache volume claim {o.claim_name} lost its volume: delete the claim to start over.", True
        )
    if phase != "Bound":
        age = _age_s(claim, o.now)
        if age > CLAIM_PENDING_REPORT_S:
            spec = claim.get("spec") or {}
            return no(
                "ClaimPending",
                f"The cache volume claim {o.claim_name} has been Pending for {age:.0f}s: no volume "
                f"or provisioner offers {spec.get('resources', {}).get('requests', {}).get('storage')} "
                f"{', '.join(spec.get('accessModes', []))} in StorageClass "
                f"{spec.get('storageClassName') or '(default)'} (kubectl describe pvc {o.claim_name}).",
            )
        return no("ClaimPending", f"Waiting for the cache volume claim {o.claim_name} to be bound.")
    job = o.job
    if job is None:
        return no("Downloading", f"Starting the download Job {o.job_name}.")
    if (job.get("metadata") or {}).get("deletionTimestamp") and not _job_condition(job, "Complete"):
        return no(
            "Downloading",
            f"Re-creating the download Job {o.job_name} (its pod template changed): waiting for "
            "the old one's pod to go; files already complete in the cache are kept.",
        )
    messages = termination.termination_reports(o.job_pods)
    if _job_condition(job, "Complete"):
        return CacheVerdict(
            Verdict("True", "Cached", f"The weights are in {o.claim_name} (Job {o.job_name} succeeded)."),
            True,
            False,
            termination.job_report(messages),
        )
    failed = _job_condition(job, "Failed")
    if failed:
        error = next((m["error"] for m in messages if "error" in m), "")
        detail = f" The download said: {error}" if error else ""
        return no(
            "DownloadFailed",
            f"The download Job {o.job_name} failed ({failed.get('reason', '')}: "
            f"{failed.get('message', '')}).{detail} Fix the cause, then delete the Job to retry "
            f"(kubectl delete job {o.job_name}).",
            True,
        )
    st = job.get("status") or {}
    attempts = st.get("failed") or 0
    retry = f" after {plural(attempts, 'failed attempt')}" if attempts else ""
    trouble = download_pod_trouble(o.job_name, o.job_pods)
    if trouble is not None:
        return no(*trouble)
    return no(
        "Downloading",
        f"Downloading the weights into {o.claim_name} with Job {o.job_name}{retry} (kubectl logs job/{o.job_name}).",
    )


def download_pod_trouble(job_name: str, pods: tuple[dict[str, Any], ...]) -> tuple[str, str] | None:
    """Why the download Job's pod is not downloading, said so a person can act on it, as
    (reason, message): the scheduler cannot place it, or its image cannot be pulled. None while
    it runs (or before the Job controller has made it).

    Said as waiting, not as a failure: a failed cache holds back every write, and the fix for
    these (a new downloaderImage, scheduling or node) must still reach the Job, which is made
    again when its pod template changes."""
    for pod in active_pods(pods):
        name = (pod.get("metadata") or {}).get("name", "its pod")
        scheduled = pod_condition(pod, "PodScheduled")
        if scheduled.get("status") == "False" and scheduled.get("reason") == "Unschedulable":
            said = scheduled.get("message") or "no node fits it."
            return (
                "DownloadUnschedulable",
                f"The download Job {job_name}'s pod {name} cannot be scheduled: {said} It runs where "
                "spec.cache.scheduling says, or where spec.scheduling puts the serving pods when that is "
                f"not set, without a GPU request (kubectl describe pod {name}).",
            )
        for status in (pod.get("status") or {}).get("containerStatuses") or []:
            waiting = (status.get("state") or {}).get("waiting") or {}
            reason = waiting.get("reason", "")
            if reason in ("ErrImagePull", "ImagePullBackOff", "InvalidImageName", "ErrImageNeverPull"):
                image = status.get("image") or "its image"
                return (
                    "DownloadImagePull",
                    f"The download Job {job_name}'s pod {name} cannot pull {image} ({reason}): "
                    f"{waiting.get('message', '').strip() or 'the kubelet gave no detail.'} The image is "
                    "spec.cache.downloaderImage, or the operator's --downloader-image (the chart's "
                    "cache.downloaderImage) when that is empty: check the name, the registry's reachability "
                    "and the pull secrets.",
                )
    return None


# --- the step: the cache of one LLMDeployment, judged from what was observed ----------------


def job_pods(observed: Observed, job_name: str) -> tuple[dict[str, Any], ...]:
    """The pods of one Job (the Job controller labels them with its name)."""
    return observed.pods_labelled({"job-name": job_name})


def cache_verdict(
    observed: Observed, owner: resources.Owner, spec: api.LLMDeploymentSpec, now: dt.datetime
) -> CacheVerdict | None:
    """WeightsCached, from the claim, its StorageClass and this spec's download Job (None: the
    spec has no cache)."""
    if not spec.cache.enabled:
        return None
    claim_name = resources.cache_claim_name(owner)
    job_name = resources.download_job_name(owner, spec)
    job = observed.child("Job", job_name)
    return judge_cache(
        CacheObserved(
            claim_name=claim_name,
            job_name=job_name,
            storage_class=spec.cache.storage_class_name,
            storage_class_found=storage_class_found(spec.cache.storage_class_name, observed.storage_classes),
            storage_classes=tuple(sorted(sc["name"] for sc in observed.storage_classes)),
            claim=live_child(observed.child("PersistentVolumeClaim", claim_name)),
            job=live_child(job),
            job_pods=job_pods(observed, job_name) if job else (),
            now=now,
        )
    )


def recheck_after(cache: CacheVerdict | None) -> float | None:
    """When to decide again though no event will come: a claim Pending is said to be stuck
    only once CLAIM_PENDING_REPORT_S have passed."""
    if (
        cache is not None
        and cache.condition.reason == "ClaimPending"
        and "has been Pending" not in cache.condition.message
    ):
        return CLAIM_PENDING_REPORT_S + 1
    return None


def holds(cache: CacheVerdict | None) -> tuple[Verdict | None, Verdict | None]:
    """What the cache holds back while it is not complete, as (blocked, waiting): a failure
    only a change mends, or a claim or download under way."""
    if cache is None or cache.complete:
        return None, None
    return (cache.condition, None) if cache.failed else (None, cache.condition)


def adapter_commits(cache: CacheVerdict | None) -> dict[str, str]:
    """The commit of each adapter the download Job cached, once it has succeeded."""
    return ((cache.facts or {}).get("adapters") if cache is not None and cache.complete else None) or {}

"""Pure: what was observed -> the LLMDeployment's status (phase, conditions, replicas, url).

Conditions follow the standard shape and kstatus' conventions: `Ready` is the summary;
`Reconciling` is True while work is under way; `Stalled` is True when nothing will
improve without a change to the spec (or to the cluster's nodes).

kstatus (sigs.k8s.io/cli-utils, used by Flux) reads a custom resource by these generic
rules, in order: status.observedGeneration behind metadata.generation -> InProgress;
Reconciling=True -> InProgress; Stalled=True -> Failed; then a Ready condition decides:
False -> InProgress, True -> Current; no Ready condition -> Current. So every state
here sets Ready=True exactly when nothing is left to wait for (serving every wanted
replica of the current revision, or scaled to zero on purpose), Stalled=True only when
no wait can help, and Reconciling=True otherwise. Phases follow the same split: Ready and
ScaledToZero (Ready=True), Failed (Stalled=True), the others (Reconciling=True).
"""

from __future__ import annotations

import datetime as dt
from collections.abc import Mapping
from dataclasses import dataclass, field, replace
from typing import TYPE_CHECKING, Any, TypeVar

from llm_common.words import plural
from llm_operator import api
from llm_operator.api.conditions import Verdict
from llm_operator.decide.pods import (
    active_pods,
    container_trouble,
    deployment_condition,
    group_words,
    of_revision,
    pod_condition,
    ready_of_revision,
    template_revision,
    unschedulable_message,
    unschedulable_pods,
)

# Phases that are worth a Warning Event rather than a Normal one.
WARNING_PHASES = ("Failed", "Unschedulable")
# Reasons worth a Warning Event in any phase: a container the kubelet is failing to run, or a
# refusal retried by itself that may still need a person (the Service IP range full, a quota).
WARNING_REASONS = (
    "CrashLoopBackOff",
    "ErrImagePull",
    "ImagePullBackOff",
    "ErrImageNeverPull",
    "OOMKilled",
    "CreateContainerConfigError",
    "ApplyRefused",
)


@dataclass(frozen=True)
class Event:
    type: str  # Normal | Warning
    reason: str
    message: str


@dataclass(frozen=True)
class Observed:
    """What the reconcile saw, as plain values."""

    generation: int
    desired_replicas: int | None  # None while an autoscaler owns the count
    gpus: int
    selector: str
    url: str
    deployment: dict[str, Any] | None = None  # live workload (Deployment or LeaderWorkerSet), if any
    workload: str = "Deployment"  # its kind
    group_size: int = 1  # pods per replica (a LeaderWorkerSet group: one per node)
    pods: tuple[dict[str, Any], ...] = ()  # serving pods (trimmed)
    no_node_fits: str | None = None  # why no node could ever hold a serving pod (None: some node could)
    blocked: Verdict | None = None  # a spec that cannot work (DoesNotFit, InvalidSpec, ...)
    waiting: Verdict | None = None  # a prerequisite under way (planning, downloading weights)
    extra: dict[str, Any] = field(default_factory=dict)  # more status fields as they are (plan, modelFacts)
    extra_conditions: dict[str, Verdict] = field(default_factory=dict)
    # A child of this generation could not be written (refused, a name taken, an immutable
    # field): status.observedGeneration stays where it was, so no client reads the new spec as done.
    behind: bool = False
    sleeps_at_zero: bool = False  # autoscaling mode operator with minReplicas 0: a request wakes it
    woken_at: str | None = None  # when the gateway last woke it from zero (its annotation)


def judge(o: Observed) -> tuple[str, Verdict, Verdict, Verdict]:
    """phase, Ready, Reconciling, Stalled."""

    def no(reason: str, msg: str) -> Verdict:
        return Verdict("False", reason, msg)

    def yes(reason: str, msg: str) -> Verdict:
        return Verdict("True", reason, msg)

    serving = ((o.deployment or {}).get("status") or {}).get("readyReplicas") or 0
    still = f" The previous version keeps serving with {plural(serving, 'ready replica')}." if serving else ""
    if o.blocked is not None:
        b = o.blocked
        return (
            "Failed",
            no(b.reason, b.message + still),
            no(b.reason, "Nothing to do until the spec changes."),
            yes(b.reason, b.message),
        )
    if o.waiting is not None:
        w = o.waiting
        return "Pending", no(w.reason, w.message), yes(w.reason, w.message), no(w.reason, "Making progress.")
    d = o.deployment
    if d is None:
        return (
            "Pending",
            no("DeploymentMissing", f"The serving {o.workload} does not exist yet."),
            yes("Creating", f"Creating the serving {o.workload}."),
            no("Creating", "Making progress."),
        )
    st = d.get("status") or {}
    want = o.desired_replicas if o.desired_replicas is not None else (d.get("spec") or {}).get("replicas", 1)
    replicas = st.get("replicas", 0) or 0
    updated = st.get("updatedReplicas", 0) or 0
    current_gen = st.get("observedGeneration", 0) >= (d.get("metadata") or {}).get("generation", 0)
    if want == 0:
        # No replica counted and no pod of ours left: at zero, even before the Deployment
        # controller has observed a Deployment just made with 0 replicas (it never makes a pod).
        if replicas == 0 and not active_pods(o.pods):
            msg = (
                "Scaled to zero: spec.replicas and autoscaling.minReplicas are 0, so no pod serves the model until "
                "a request through the gateway wakes it (or scale up: spec.replicas, or kubectl scale --replicas=N)."
                if o.sleeps_at_zero
                else "Scaled to zero: spec.replicas is 0, so no pod serves the model; scale up to serve (spec.replicas, "
                "or kubectl scale --replicas=N)."
            )
            return (
                "ScaledToZero",
                yes("ScaledToZero", msg),
                no("ScaledToZero", "Nothing to do."),
                no("ScaledToZero", "Scaled to zero on purpose."),
            )
        msg = f"Scaling to zero: {plural(replicas, 'replica')} left."
        return (
            "Progressing",
            no("ScalingToZero", msg),
            yes("ScalingToZero", msg),
            no("ScalingToZero", "Making progress."),
        )
    # Ready pods of the current pod template only: an old pod still serving is not the rollout done.
    revision = template_revision(d)
    ready = ready_of_revision(o.pods, revision, o.group_size) if revision else (st.get("readyReplicas", 0) or 0)
    rolled_out = current_gen and updated >= want and replicas <= want
    groups = f" (each a group of {o.group_size} pods on {o.group_size} nodes)" if o.group_size > 1 else ""
    if ready >= want and rolled_out:
        msg = f"{ready}/{want} replicas{groups} are ready and serving at {o.url}."
        return "Ready", yes("Ready", msg), no("Ready", "Nothing to do."), no("Ready", "Ready.")
    waiting = unschedulable_pods(o.pods)
    if waiting:
        scheduler = unschedulable_message(o.pods)
        if o.no_node_fits:
            msg = f"{len(waiting)} of {want} replicas cannot be scheduled, and {o.no_node_fits} The scheduler says: {scheduler}"
            return (
                "Failed",
                no("NoNodeFits", msg + still),
                no("NoNodeFits", "Nothing to do until the spec or the cluster's nodes change."),
                yes("NoNodeFits", msg),
            )
        if o.group_size > 1:
            msg = (
                f"{serving} of {want} replicas{groups} serve; {group_words(waiting[0])} waits"
                + (f" with {plural(len(waiting) - 1, 'more pod')}" if len(waiting) > 1 else "")
                + f" for GPUs that no node has free now (nodes could hold the group once GPUs free up or nodes "
                f"are added). The scheduler says: {scheduler}"
            )
        else:
            msg = (
                f"{serving} of {want} replicas serve; {len(waiting)} wait for GPUs that no node has free now "
                f"(a node could hold them once GPUs free up or nodes are added). The scheduler says: {scheduler}"
            )
        return (
            "Unschedulable",
            no("WaitingForGPUs", msg),
            yes("WaitingForGPUs", msg),
            no("WaitingForGPUs", "Making progress: the pods are placed once GPUs are free."),
        )
    troubles = [
        t
        for t in (
            container_trouble(p, d)
            for p in of_revision(o.pods, revision)
            if pod_condition(p, "Ready").get("status") != "True"
        )
        if t
    ]
    if troubles:
        # The one that needs a person comes first; others of the same kind are counted.
        trouble = next((t for t in troubles if t.stalled), troubles[0])
        others = len(troubles) - 1
        old_ready = sum(1 for p in active_pods(o.pods) if pod_condition(p, "Ready").get("status") == "True") - ready
        msg = (
            f"{ready}/{want} replicas are ready. {trouble.message}"
            + (f" {plural(others, 'more pod')} of this version cannot start either." if others else "")
            + (
                f" The previous version keeps serving with {plural(old_ready, 'ready replica')}."
                if old_ready > 0
                else ""
            )
        )
        if trouble.stalled:
            return (
                "Failed",
                no(trouble.reason, msg),
                no(trouble.reason, "Nothing to do until the spec or what it names changes."),
                yes(trouble.reason, msg),
            )
        return (
            "Progressing",
            no(trouble.reason, msg),
            yes(trouble.reason, msg),
            no(trouble.reason, "The kubelet is retrying."),
        )
    progress = deployment_condition(d, "Progressing")
    if progress and progress.get("status") == "False" and progress.get("reason") == "ProgressDeadlineExceeded":
        msg = f"The rollout made no progress before its deadline: {progress.get('message', '')}"
        return (
            "Failed",
            no("ProgressDeadlineExceeded", msg),
            no("ProgressDeadlineExceeded", msg),
            yes("ProgressDeadlineExceeded", msg),
        )
    if not rolled_out:
        msg = f"Rolling out: {updated}/{want} replicas{groups} updated, {ready} ready."
        reason = "RollingOut"
    else:
        msg = f"{ready}/{want} replicas{groups} are ready; waiting for the model to load and answer /health."
        unready = [p for p in of_revision(o.pods, revision) if pod_condition(p, "Ready").get("status") != "True"]
        if o.group_size > 1 and unready:
            msg += f" Not ready yet: {', '.join(group_words(p) for p in unready[:3])}."
        reason = "PodsNotReady"
    return "Progressing", no(reason, msg), yes(reason, msg), no(reason, "Making progress.")


def instant(text: str | None) -> dt.datetime | None:
    """An RFC 3339 time as an aware datetime; None when it is not one."""
    try:
        when = dt.datetime.fromisoformat(text or "")
    except ValueError:
        return None
    return when if when.tzinfo is not None else None


def woken_at(meta: Mapping[str, Any]) -> str | None:
    """When the gateway last woke this model from zero, if its annotation (in the
    LLMDeployment's metadata) holds a time."""
    text = (meta.get("annotations") or {}).get(api.WOKEN_ANNOTATION)
    return text if instant(text) is not None else None


def woken_prefix(woken_at: str) -> str:
    return f"Woken from zero by a request at {woken_at}; "


def waking(o: Observed, previous: dict[str, Any], ready: Verdict) -> bool:
    """Whether the model is on its way up from a wake by a request: not ready, asked to run,
    and this wake either seen for the first time (the gateway wakes only a model at zero, and
    may write its annotation after the status already shows the pods starting) or already
    reported. A later rollout of a model that has been ready since is not blamed on it."""
    if o.woken_at is None or ready.status == "True" or ready.reason == "ScalingToZero":
        return False
    if previous.get("lastWokenByRequest") != o.woken_at:
        return True
    before: dict[str, Any] = next((c for c in previous.get("conditions") or [] if c.get("type") == "Ready"), {})
    return (before.get("message") or "").startswith(woken_prefix(o.woken_at))


def merge_condition(
    previous: list[dict[str, Any]], ctype: str, v: Verdict, generation: int, now: str
) -> dict[str, Any]:
    """The condition, keeping lastTransitionTime unless its status changed."""
    old = next((c for c in previous if c.get("type") == ctype), None)
    since = (
        old["lastTransitionTime"] if old and old.get("status") == v.status and old.get("lastTransitionTime") else now
    )
    return {
        "type": ctype,
        "status": v.status,
        "reason": v.reason,
        "message": v.message,
        "lastTransitionTime": since,
        "observedGeneration": generation,
    }


def desired_status(o: Observed, previous: dict[str, Any], now: str) -> dict[str, Any]:
    """The full status to write (compare with the current one before writing)."""
    phase, ready, reconciling, stalled = judge(o)
    if o.woken_at is not None and waking(o, previous, ready):
        # The reason and phase stay what the pods say; the message says why they start.
        ready = replace(ready, message=woken_prefix(o.woken_at) + ready.message)
        if reconciling.status == "True":
            reconciling = replace(reconciling, message=woken_prefix(o.woken_at) + reconciling.message)
    prev_conds = previous.get("conditions") or []
    conditions = [
        merge_condition(prev_conds, "Ready", ready, o.generation, now),
        merge_condition(prev_conds, "Reconciling", reconciling, o.generation, now),
        merge_condition(prev_conds, "Stalled", stalled, o.generation, now),
    ] + [merge_condition(prev_conds, t, v, o.generation, now) for t, v in sorted(o.extra_conditions.items())]
    st = (o.deployment or {}).get("status") or {}
    replicas = st.get("replicas", 0) or 0
    ready_replicas = st.get("readyReplicas", 0) or 0
    want = o.desired_replicas if o.desired_replicas is not None else replicas
    done = previous.get("observedGeneration") if o.behind else o.generation
    out: dict[str, Any] = {
        "observedGeneration": done,
        "phase": phase,
        "conditions": conditions,
        "gpus": o.gpus,
        "replicas": replicas,
        "readyReplicas": ready_replicas,
        "ready": f"{ready_replicas}/{want}",
        "selector": o.selector,
        "url": o.url,
        "lastWokenByRequest": o.woken_at,
    }
    out.update(o.extra)
    return without_nulls(out)


def without_nulls(value: dict[str, Any]) -> dict[str, Any]:
    """The value as the apiserver stores it after a merge patch, where null means 'remove'."""
    return {k: _without_nulls(v) for k, v in value.items() if v is not None}


def _without_nulls(value: object) -> object:
    if isinstance(value, dict):
        return without_nulls(value)
    if isinstance(value, list):
        return [_without_nulls(v) for v in value]
    return value


def status_patch(current: dict[str, Any], desired: dict[str, Any]) -> dict[str, Any] | None:
    """A JSON merge patch (RFC 7386) turning `current` into `desired`, or None when nothing
    would change. Nested objects are patched key by key, so a key gone from a nested
    object is removed (null) rather than left behind by the merge."""
    patch: dict[str, Any] = {}
    for key in current.keys() | desired.keys():
        if key not in desired:
            patch[key] = None
        elif isinstance(desired[key], dict) and isinstance(current.get(key), dict):
            sub = status_patch(current[key], desired[key])
            if sub is not None:
                patch[key] = sub
        elif current.get(key) != desired[key]:
            patch[key] = desired[key]
    return patch or None


if TYPE_CHECKING:
    from _typeshed import DataclassInstance

D = TypeVar("D", bound="DataclassInstance")


def with_status(decision: D, current: dict[str, Any], now: str, inputs: Observed) -> D:
    """The decision (any dataclass with phase, status, status_patch and events) with the status
    wanted, the patch to it, and one Event when the phase or Ready's reason changes."""
    wanted = desired_status(inputs, current, now)
    events: tuple[Event, ...] = ()
    ready = next(c for c in wanted["conditions"] if c["type"] == "Ready")
    was = next((c.get("reason") for c in current.get("conditions") or [] if c.get("type") == "Ready"), None)
    if current.get("phase") != wanted["phase"] or was != ready["reason"]:
        warning = wanted["phase"] in WARNING_PHASES or ready["reason"] in WARNING_REASONS
        events = (Event("Warning" if warning else "Normal", ready["reason"], ready["message"]),)
    return replace(
        decision, phase=wanted["phase"], status=wanted, status_patch=status_patch(current, wanted), events=events
    )

"""Pure: what was observed -> the LLMDeployment's status (phase, conditions, replicas, url).

Conditions follow the standard shape and kstatus' conventions: `Ready` is the summary;
`Reconciling` is True while work is under way; `Stalled` is True when nothing will
improve without a change to the spec (or to the cluster). Flux and other kstatus users
read only those two and observedGeneration on a custom resource.
"""

from __future__ import annotations

from dataclasses import dataclass, field


@dataclass(frozen=True)
class Verdict:
    """One condition's worth of judgement."""

    status: str         # "True" | "False" | "Unknown"
    reason: str
    message: str


@dataclass(frozen=True)
class Observed:
    """What the reconcile saw, as plain values."""

    generation: int
    desired_replicas: int | None        # None while an autoscaler owns the count
    gpus: int
    selector: str
    url: str
    deployment: dict | None = None      # live Deployment, if any
    pods: tuple[dict, ...] = ()
    blocked: Verdict | None = None      # a spec that cannot work (DoesNotFit, InvalidSpec, ...)
    waiting: Verdict | None = None      # a prerequisite under way (planning, downloading weights)
    extra: dict = field(default_factory=dict)   # more status fields as they are (plan, modelFacts)
    extra_conditions: dict[str, Verdict] = field(default_factory=dict)


def unschedulable_message(pods: tuple[dict, ...]) -> str | None:
    """The scheduler's own message for the first pod it could not place."""
    for pod in pods:
        if (pod.get("metadata") or {}).get("deletionTimestamp"):
            continue
        for cond in (pod.get("status") or {}).get("conditions") or []:
            if cond.get("type") == "PodScheduled" and cond.get("status") == "False" and cond.get("reason") == "Unschedulable":
                return cond.get("message") or "The scheduler could not place a pod."
    return None


def _deployment_condition(deployment: dict, kind: str) -> dict | None:
    for cond in (deployment.get("status") or {}).get("conditions") or []:
        if cond.get("type") == kind:
            return cond
    return None


def settled(deployment: dict) -> bool:
    """Every replica updated and ready, for the current generation: no pod to ask about."""
    st = deployment.get("status") or {}
    want = (deployment.get("spec") or {}).get("replicas", 1)
    return (st.get("observedGeneration", 0) >= (deployment.get("metadata") or {}).get("generation", 0)
            and (st.get("readyReplicas") or 0) == want == (st.get("updatedReplicas") or 0) == (st.get("replicas") or 0))


def judge(o: Observed) -> tuple[str, Verdict, Verdict, Verdict]:
    """phase, Ready, Reconciling, Stalled."""
    no = lambda reason, msg: Verdict("False", reason, msg)  # noqa: E731
    yes = lambda reason, msg: Verdict("True", reason, msg)  # noqa: E731
    serving = ((o.deployment or {}).get("status") or {}).get("readyReplicas") or 0
    still = f" The previous version keeps serving with {serving} ready replica(s)." if serving else ""
    if o.blocked is not None:
        b = o.blocked
        return "Failed", no(b.reason, b.message + still), no(b.reason, "Nothing to do until the spec changes."), yes(b.reason, b.message)
    if o.waiting is not None:
        w = o.waiting
        return "Pending", no(w.reason, w.message), yes(w.reason, w.message), no(w.reason, "Making progress.")
    d = o.deployment
    if d is None:
        return "Pending", no("DeploymentMissing", "The serving Deployment does not exist yet."), \
            yes("Creating", "Creating the serving Deployment."), no("Creating", "Making progress.")
    st = d.get("status") or {}
    want = o.desired_replicas if o.desired_replicas is not None else (d.get("spec") or {}).get("replicas", 1)
    ready = st.get("readyReplicas", 0) or 0
    updated = st.get("updatedReplicas", 0) or 0
    current_gen = st.get("observedGeneration", 0) >= (d.get("metadata") or {}).get("generation", 0)
    unschedulable = unschedulable_message(o.pods)
    progress = _deployment_condition(d, "Progressing")
    if unschedulable:
        msg = f"{want - ready} of {want} replicas cannot be scheduled: {unschedulable}"
        return "Unschedulable", no("Unschedulable", msg), no("Unschedulable", "Waiting for GPUs the cluster does not have free."), yes("Unschedulable", msg)
    if progress and progress.get("status") == "False" and progress.get("reason") == "ProgressDeadlineExceeded":
        msg = f"The rollout made no progress before its deadline: {progress.get('message', '')}"
        return "Failed", no("ProgressDeadlineExceeded", msg), no("ProgressDeadlineExceeded", msg), yes("ProgressDeadlineExceeded", msg)
    if want == 0:
        return "ScaledToZero", no("ScaledToZero", "Replicas is 0: no pod serves the model."), \
            no("ScaledToZero", "Nothing to do."), no("ScaledToZero", "Scaled to zero on purpose.")
    rolled_out = current_gen and updated >= want and (st.get("replicas", 0) or 0) <= want
    if ready >= want and rolled_out:
        msg = f"{ready}/{want} replicas are ready and serving at {o.url}."
        return "Ready", yes("Ready", msg), no("Ready", "Nothing to do."), no("Ready", "Ready.")
    if not rolled_out:
        msg = f"Rolling out: {updated}/{want} replicas updated, {ready} ready."
        reason = "RollingOut"
    else:
        msg = f"{ready}/{want} replicas are ready; waiting for the model to load and answer /health."
        reason = "PodsNotReady"
    return "Progressing", no(reason, msg), yes(reason, msg), no(reason, "Making progress.")


def merge_condition(previous: list[dict], ctype: str, v: Verdict, generation: int, now: str) -> dict:
    """The condition, keeping lastTransitionTime unless its status changed."""
    old = next((c for c in previous if c.get("type") == ctype), None)
    since = old["lastTransitionTime"] if old and old.get("status") == v.status and old.get("lastTransitionTime") else now
    return {"type": ctype, "status": v.status, "reason": v.reason, "message": v.message,
            "lastTransitionTime": since, "observedGeneration": generation}


def desired_status(o: Observed, previous: dict, now: str) -> dict:
    """The full status to write (compare with the current one before writing)."""
    phase, ready, reconciling, stalled = judge(o)
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
    out = {
        "observedGeneration": o.generation,
        "phase": phase,
        "conditions": conditions,
        "gpus": o.gpus,
        "replicas": replicas,
        "readyReplicas": ready_replicas,
        "ready": f"{ready_replicas}/{want}",
        "selector": o.selector,
        "url": o.url,
    }
    out.update(o.extra)
    return without_nulls(out)


def without_nulls(value):
    """The value as the apiserver stores it after a merge patch, where null means 'remove'."""
    if isinstance(value, dict):
        return {k: without_nulls(v) for k, v in value.items() if v is not None}
    if isinstance(value, list):
        return [without_nulls(v) for v in value]
    return value


def status_patch(current: dict, desired: dict) -> dict | None:
    """A JSON merge patch (RFC 7386) turning `current` into `desired`, or None when nothing
    would change. Nested objects are patched key by key, so a key gone from a nested
    object is removed (null) rather than left behind by the merge."""
    patch: dict = {}
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

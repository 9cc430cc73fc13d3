"""Pure status: observed children -> phase and conditions (issue 2)."""

from __future__ import annotations

from llm_operator.decide.manifests import TEMPLATE_HASH_LABEL
from llm_operator.decide.status import Observed, Verdict, desired_status, status_patch

NOW = "2026-01-01T00:00:00Z"


def deployment(replicas=1, ready=0, updated=1, generation=1, observed=1, conditions=()):
    return {
        "metadata": {"generation": generation},
        "spec": {"replicas": replicas},
        "status": {
            "replicas": replicas,
            "readyReplicas": ready,
            "updatedReplicas": updated,
            "observedGeneration": observed,
            "conditions": list(conditions),
        },
    }


def observed(**kw):
    base = dict(
        generation=3, desired_replicas=1, gpus=2, selector="llm-operator.io/name=m", url="http://m.ns.svc.cluster.local"
    )
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


SCHEDULER = "0/3 nodes are available: 3 Insufficient nvidia.com/gpu."


def pending_pod(revision="r2"):
    return {
        "metadata": {"labels": {TEMPLATE_HASH_LABEL: revision}},
        "status": {
            "conditions": [{"type": "PodScheduled", "status": "False", "reason": "Unschedulable", "message": SCHEDULER}]
        },
    }


def ready_pod(revision="r2", ready=True, **meta):
    return {
        "metadata": {"labels": {TEMPLATE_HASH_LABEL: revision}, **meta},
        "status": {
            "conditions": [
                {"type": "PodScheduled", "status": "True"},
                {"type": "Ready", "status": "True" if ready else "False"},
            ]
        },
    }


def revised(revision="r2", **kw):
    d = deployment(**kw)
    d["spec"]["template"] = {"metadata": {"labels": {TEMPLATE_HASH_LABEL: revision}}}
    return d


def test_no_node_could_ever_hold_the_pod_is_stalled():
    st = desired_status(
        observed(
            deployment=deployment(),
            pods=(pending_pod(),),
            no_node_fits="no node could ever hold one: each pod asks for 16 nvidia.com/gpu; "
            "the cluster has 2 nodes with 8 x H100.",
        ),
        {},
        NOW,
    )
    assert st["phase"] == "Failed"
    ready = next(c for c in st["conditions"] if c["type"] == "Ready")
    assert ready["message"] == (
        "1 of 1 replicas cannot be scheduled, and no node could ever hold one: each pod asks for "
        "16 nvidia.com/gpu; the cluster has 2 nodes with 8 x H100. The scheduler says: " + SCHEDULER
    )
    assert conds(st) == {
        "Ready": ("False", "NoNodeFits"),
        "Reconciling": ("False", "NoNodeFits"),
        "Stalled": ("True", "NoNodeFits"),
    }


def test_a_temporary_shortage_of_gpus_is_reconciling_not_stalled():
    """24 wanted, 22 scheduled and serving, 2 waiting for GPUs some node could offer."""
    pods = tuple(ready_pod() for _ in range(22)) + (pending_pod(), pending_pod())
    d = revised(replicas=24, ready=22, updated=24)
    st = desired_status(observed(desired_replicas=24, deployment=d, pods=pods), {}, NOW)
    assert st["phase"] == "Unschedulable" and st["ready"] == "22/24"
    assert conds(st) == {
        "Ready": ("False", "WaitingForGPUs"),
        "Reconciling": ("True", "WaitingForGPUs"),
        "Stalled": ("False", "WaitingForGPUs"),
    }
    ready = next(c for c in st["conditions"] if c["type"] == "Ready")
    assert ready["message"].startswith("22 of 24 replicas serve; 2 wait for GPUs that no node has free now")
    assert ready["message"].endswith("The scheduler says: " + SCHEDULER)


def test_scaled_to_zero_is_ready():
    st = desired_status(observed(desired_replicas=0, deployment=deployment(replicas=0, updated=0)), {}, NOW)
    assert st["phase"] == "ScaledToZero"
    assert conds(st) == {
        "Ready": ("True", "ScaledToZero"),
        "Reconciling": ("False", "ScaledToZero"),
        "Stalled": ("False", "ScaledToZero"),
    }
    ready = next(c for c in st["conditions"] if c["type"] == "Ready")
    assert "no pod serves the model; scale up to serve" in ready["message"]


def test_scaling_to_zero_is_reconciling_until_no_replica_is_left():
    d = deployment(replicas=0, updated=0)
    d["status"]["replicas"] = 2
    st = desired_status(observed(desired_replicas=0, deployment=d), {}, NOW)
    assert st["phase"] == "Progressing"
    assert conds(st) == {
        "Ready": ("False", "ScalingToZero"),
        "Reconciling": ("True", "ScalingToZero"),
        "Stalled": ("False", "ScalingToZero"),
    }
    # Not yet observed by the Deployment controller, one pod still there: not at zero yet.
    behind = deployment(replicas=0, updated=0, generation=2)
    behind["status"]["replicas"] = 1
    pod = {"metadata": {"name": "m-1", "labels": {}}, "status": {"conditions": [{"type": "Ready", "status": "True"}]}}
    assert conds(desired_status(observed(desired_replicas=0, deployment=behind, pods=(pod,)), {}, NOW))["Ready"] == (
        "False",
        "ScalingToZero",
    )


def test_a_deployment_just_made_with_zero_replicas_is_at_zero_at_once():
    """No status yet (the Deployment controller has not seen it) and no pod: nothing to wait for."""
    fresh = {"metadata": {"generation": 1}, "spec": {"replicas": 0}, "status": {}}
    st = desired_status(observed(desired_replicas=0, deployment=fresh), {}, NOW)
    assert st["phase"] == "ScaledToZero" and conds(st)["Ready"] == ("True", "ScaledToZero")


def test_a_ready_pod_of_the_old_revision_is_not_counted_as_rolled_out():
    """The Deployment counts the old pod as ready and the new one as updated; status does not."""
    d = revised(ready=1, updated=1)
    st = desired_status(observed(deployment=d, pods=(ready_pod("r1"), ready_pod("r2", ready=False))), {}, NOW)
    assert st["phase"] == "Progressing"
    ready = next(c for c in st["conditions"] if c["type"] == "Ready")
    assert (ready["status"], ready["reason"]) == ("False", "PodsNotReady")
    assert ready["message"] == "0/1 replicas are ready; waiting for the model to load and answer /health."
    rolling = revised(ready=1, updated=1)
    rolling["status"]["replicas"] = 2
    st = desired_status(observed(deployment=rolling, pods=(ready_pod("r1"), ready_pod("r2", ready=False))), {}, NOW)
    assert (
        next(c for c in st["conditions"] if c["type"] == "Ready")["message"]
        == "Rolling out: 1/1 replicas updated, 0 ready."
    )
    done = desired_status(observed(deployment=revised(ready=1, updated=1), pods=(ready_pod("r2"),)), {}, NOW)
    assert conds(done)["Ready"] == ("True", "Ready")
    going = desired_status(
        observed(
            deployment=revised(ready=1, updated=1), pods=(ready_pod("r2", deletionTimestamp="2026-01-01T00:00:00Z"),)
        ),
        {},
        NOW,
    )
    assert conds(going)["Ready"][0] == "False"


def test_blocked_is_stalled_and_says_the_old_version_serves():
    st = desired_status(
        observed(deployment=deployment(ready=1), blocked=Verdict("False", "DoesNotFit", "Too big.")), {}, NOW
    )
    assert st["phase"] == "Failed"
    ready = next(c for c in st["conditions"] if c["type"] == "Ready")
    assert ready["message"] == "Too big. The previous version keeps serving with 1 ready replica."
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
    st = desired_status(
        observed(deployment=deployment(ready=1), extra={"plan": {"known": False, "fits": None}}), {}, NOW
    )
    assert st["plan"] == {"known": False}


def test_patch_removes_keys_gone_from_nested_objects():
    """A merge patch merges nested objects: a key left out is kept unless patched to null."""
    current = {"plan": {"known": False, "pending": True, "reason": "Reading"}, "phase": "Pending"}
    desired = {"plan": {"known": False, "reason": "Unknown"}, "phase": "Pending"}
    assert status_patch(current, desired) == {"plan": {"pending": None, "reason": "Unknown"}}
    assert status_patch(desired, desired) is None


# ---- pods of the current revision that cannot start (issue 11) ----------------------------


def failing_pod(waiting=None, last=None, restarts=0, revision="r2", name="m-abc"):
    """A pod of `revision` whose engine container is waiting (reason, message) and last ended `last`."""
    cs = {"name": "engine", "restartCount": restarts}
    if waiting:
        cs["state"] = {"waiting": dict(zip(("reason", "message"), waiting, strict=True))}
    if last:
        cs["lastState"] = {"terminated": last}
    return {
        "metadata": {"name": name, "labels": {TEMPLATE_HASH_LABEL: revision}},
        "status": {
            "conditions": [{"type": "PodScheduled", "status": "True"}, {"type": "Ready", "status": "False"}],
            "containerStatuses": [cs],
        },
    }


def with_memory_limit(d, limit="64Gi"):
    d["spec"]["template"]["spec"] = {"containers": [{"name": "engine", "resources": {"limits": {"memory": limit}}}]}
    return d


def judged(pods, d=None, **kw):
    st = desired_status(observed(deployment=d or revised(), pods=tuple(pods), **kw), {}, NOW)
    return st["phase"], conds(st), next(c for c in st["conditions"] if c["type"] == "Ready")["message"]


def test_a_missing_secret_is_stalled_and_named():
    pod = failing_pod(("CreateContainerConfigError", 'secret "missing-secret" not found'))
    phase, c, msg = judged([pod])
    assert phase == "Failed"
    assert c == {
        "Ready": ("False", "CreateContainerConfigError"),
        "Reconciling": ("False", "CreateContainerConfigError"),
        "Stalled": ("True", "CreateContainerConfigError"),
    }
    assert msg == (
        "0/1 replicas are ready. Pod m-abc, container engine cannot be created (CreateContainerConfigError): "
        'secret "missing-secret" not found Secret missing-secret does not exist in this namespace: create it, '
        "or fix the reference to it (spec.model.tokenSecretRef, spec.engine.env)."
    )


def test_a_missing_key_in_a_secret_is_named():
    pod = failing_pod(("CreateContainerConfigError", "couldn't find key token in Secret ns/hf-token"))
    assert "Secret ns/hf-token has no key token" in judged([pod])[2]


def test_an_image_that_cannot_be_pulled_is_named_and_stalled_once_backing_off():
    message = 'Back-off pulling image "ghcr.io/acme/tgi:nope"'
    phase, c, msg = judged([failing_pod(("ImagePullBackOff", message))])
    assert phase == "Failed" and c["Stalled"] == ("True", "ImagePullBackOff")
    assert "cannot pull image ghcr.io/acme/tgi:nope (ImagePullBackOff)" in msg
    # The first failure is retried by the kubelet: not yet stalled.
    phase, c, msg = judged([failing_pod(("ErrImagePull", 'failed to pull image "ghcr.io/acme/tgi:nope": not found'))])
    assert phase == "Progressing" and c["Reconciling"] == ("True", "ErrImagePull") and c["Stalled"][0] == "False"


def test_an_image_absent_with_pull_policy_never_is_stalled_at_once():
    # The kubelet's own words (kubelet/images/image_manager.go).
    message = 'Container image "localhost/engine:missing" is not present with pull policy of Never'
    phase, c, msg = judged([failing_pod(("ErrImageNeverPull", message))])
    assert phase == "Failed" and c["Stalled"] == ("True", "ErrImageNeverPull")
    assert (
        "Pod m-abc, container engine cannot start (ErrImageNeverPull): image localhost/engine:missing is not on "
        "the node and spec.engine.imagePullPolicy is Never."
    ) in msg


def test_a_crash_loop_is_stalled_after_a_few_restarts_with_the_last_exit():
    last = {"reason": "Error", "exitCode": 1, "message": "RuntimeError: CUDA error: no kernel image"}
    phase, c, msg = judged(
        [failing_pod(("CrashLoopBackOff", "back-off 5m0s restarting failed container"), last, restarts=6)]
    )
    assert phase == "Failed" and c["Stalled"] == ("True", "CrashLoopBackOff")
    assert msg == (
        "0/1 replicas are ready. Pod m-abc, container engine keeps crashing (CrashLoopBackOff, 6 restarts). "
        "It last ended with exit code 1, saying: RuntimeError: CUDA error: no kernel image. It will not heal "
        "by itself: read its logs (kubectl logs --previous) and fix the spec."
    )
    phase, c, _ = judged([failing_pod(("CrashLoopBackOff", "back-off 10s"), last, restarts=1)])
    assert phase == "Progressing" and c["Reconciling"] == ("True", "CrashLoopBackOff") and c["Stalled"][0] == "False"


def test_out_of_memory_says_so_with_the_memory_limit():
    oom = {"reason": "OOMKilled", "exitCode": 137}
    phase, c, msg = judged(
        [failing_pod(("CrashLoopBackOff", "back-off 10s"), oom, restarts=1)], with_memory_limit(revised())
    )
    assert phase == "Failed" and c["Stalled"] == ("True", "OOMKilled")
    assert (
        "Pod m-abc, container engine ran out of memory and was killed (OOMKilled, exit code 137; 1 restart) "
        "with its memory limit of 64Gi"
    ) in msg
    assert "no memory limit, so the node itself ran out" in judged([failing_pod(None, oom, restarts=1)])[2]


def test_old_replicas_still_serving_are_said_and_old_pods_failing_do_not_count():
    d = revised(replicas=1, ready=1, updated=1)
    new = failing_pod(("CreateContainerConfigError", 'secret "s" not found'), name="m-new")
    old = ready_pod(revision="r1", name="m-old")
    phase, c, msg = judged([new, old], d)
    assert c["Stalled"] == ("True", "CreateContainerConfigError")
    assert msg.endswith("The previous version keeps serving with 1 ready replica.")
    # A pod of an older revision that cannot start is not this version's trouble.
    phase, c, _ = judged([failing_pod(("CrashLoopBackOff", "back-off"), restarts=9, revision="r1")], revised())
    assert c["Ready"] == ("False", "PodsNotReady") and c["Stalled"][0] == "False"


def test_a_ready_pod_that_once_ran_out_of_memory_is_not_a_trouble():
    pod = failing_pod(None, {"reason": "OOMKilled", "exitCode": 137}, restarts=1)
    pod["status"]["conditions"][1]["status"] = "True"
    phase, c, _ = judged([pod], revised(ready=1))
    assert phase == "Ready"

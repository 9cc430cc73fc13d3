"""What is written of the desired children: ownership, refusals, a download Job or a cache
claim that cannot change in place; through decide(), then each case of writes.py on its own
with literal inputs."""

from __future__ import annotations

from dataclasses import replace

from decideobjects import (
    CACHE,
    FAST,
    KNOWN,
    NOW,
    OWNER,
    claim,
    cond,
    job,
    kinds,
    live_deployment,
    live_service,
    observed,
    parsed_spec,
    served,
)

from llm_operator.api.conditions import Verdict
from llm_operator.decide import manifests as resources
from llm_operator.decide import writes
from llm_operator.decide.decision import decide
from llm_operator.decide.observed import Observed, Refusal
from llm_operator.decide.placement import LWS_INSTALL


def test_a_child_we_do_not_own_is_never_pruned():
    foreign = live_deployment({"replicas": 2})
    pdb = resources.desired_pdb(OWNER, parsed_spec({"replicas": 2}))
    pdb["metadata"]["ownerReferences"] = [{**pdb["metadata"]["ownerReferences"][0], "uid": "someone-else"}]
    d = decide(observed(children=[live_service(), foreign, pdb]), KNOWN, NOW)
    assert d.prune == ()
    ours = resources.desired_pdb(OWNER, parsed_spec({"replicas": 2}))
    d = decide(observed(children=[live_service(), live_deployment(), ours]), KNOWN, NOW)
    assert kinds(d.prune) == [("PodDisruptionBudget", "m")]


def test_a_write_the_api_refuses_is_said_in_status_and_an_event_and_the_generation_is_not_claimed():
    refused = {("Deployment", "m"): Refusal(422, 'Deployment.apps "m" is invalid: spec.template: field is immutable')}
    d = decide(replace(observed(status={"observedGeneration": 1}, meta={"generation": 2}), refused=refused), KNOWN, NOW)
    assert d.phase == "Failed" and cond(d)[:2] == ("False", "ApplyRefused")
    assert cond(d)[2] == (
        'The API refused a write of Deployment/m (HTTP 422): Deployment.apps "m" is invalid: '
        "spec.template: field is immutable"
    )
    assert cond(d, "Stalled")[0] == "True"
    assert d.status["observedGeneration"] == 1
    assert [(e.type, e.reason) for e in d.events] == [("Warning", "ApplyRefused")]
    # The other children are still written.
    assert ("Service", "m") in kinds(d.apply)
    busy = decide(
        replace(observed(), refused={("Service", "m"): Refusal(500, "failed to allocate a serviceIP")}), KNOWN, NOW
    )
    assert busy.phase == "Pending" and cond(busy, "Reconciling")[:2] == ("True", "ApplyRefused")
    assert cond(busy, "Stalled")[0] == "False" and "observedGeneration" not in busy.status
    # Retried by itself, but someone may have to act (free Service IPs, a quota): a Warning too.
    assert [(e.type, e.reason) for e in busy.events] == [("Warning", "ApplyRefused")]


def test_a_name_taken_by_someone_else_is_stalled_naming_the_object_and_its_owner():
    taken = {
        ("Service", "m"): Refusal(
            409, "Service m already exists", "owned by no controller (made by hand or by another tool)"
        )
    }
    d = decide(replace(observed(), refused=taken), KNOWN, NOW)
    assert d.phase == "Failed" and cond(d)[:2] == ("False", "NameConflict")
    assert cond(d)[2].startswith("Service/m already exists and is not this LLMDeployment's (owned by no controller")
    assert cond(d, "Stalled")[:2] == ("True", "NameConflict") and "observedGeneration" not in d.status
    assert [(e.type, e.reason) for e in d.events] == [("Warning", "NameConflict")]
    assert ("Deployment", "m") in kinds(d.apply)


def test_a_child_held_with_another_controller_is_not_applied():
    svc = live_service({"service": {"port": 8080}})
    svc["metadata"]["ownerReferences"] = [
        {"apiVersion": "apps/v1", "kind": "Deployment", "name": "other", "uid": "u2", "controller": True}
    ]
    d = decide(observed(children=[svc]), KNOWN, NOW)
    assert ("Service", "m") not in kinds(d.apply) and ("Deployment", "m") in kinds(d.apply)
    assert cond(d)[1] == "NameConflict" and "(owned by Deployment other)" in cond(d)[2]
    # A deleted LLMDeployment of the same name: waited for, not a conflict.
    svc["metadata"]["ownerReferences"][0].update(kind="LLMDeployment", name="m")
    gc = decide(observed(children=[svc]), KNOWN, NOW)
    assert cond(gc, "Reconciling")[0] == "True" and "garbage collector" in cond(gc)[2] and gc.blocked is None


def test_a_done_download_job_is_left_alone_when_fields_that_do_not_change_what_it_downloads_change():
    children, pods = served(CACHE)
    spec = {
        **CACHE,
        "cache": {**CACHE["cache"], "stallTimeoutSeconds": 60},
        "podAnnotations": {"team": "b"},
        "replicas": 2,
    }
    d = decide(
        observed(spec=spec, storage_classes=FAST, children=children, pods=pods, meta={"generation": 2}), KNOWN, NOW
    )
    assert kinds(d.apply) == [("Deployment", "m"), ("PodDisruptionBudget", "m")] and d.prune == ()
    assert d.apply[0]["spec"]["replicas"] == 2 and d.blocked is None


def test_a_running_download_job_whose_template_changes_is_recreated():
    running = job()
    spec = {**CACHE, "cache": {**CACHE["cache"], "stallTimeoutSeconds": 60}}
    d = decide(observed(spec=spec, storage_classes=FAST, children=[live_service(), claim(), running]), KNOWN, NOW)
    name = running["metadata"]["name"]
    assert ("Job", name) not in kinds(d.apply)
    assert d.prune == (
        {
            "apiVersion": "batch/v1",
            "kind": "Job",
            "metadata": {"name": name, "namespace": "ns"},
            "propagationPolicy": "Foreground",
        },
    )
    # Being deleted: nothing written to it, the cache says so.
    running["metadata"]["deletionTimestamp"] = "2026-01-01T00:00:00Z"
    later = decide(observed(spec=spec, storage_classes=FAST, children=[live_service(), claim(), running]), KNOWN, NOW)
    assert later.apply == () and later.prune == () and "Re-creating the download Job" in cond(later, "WeightsCached")[2]
    # Only mutable fields changed (backoffLimit): applied, not re-created.
    same = decide(
        observed(
            spec={**CACHE, "cache": {**CACHE["cache"], "backoffLimit": 9}},
            storage_classes=FAST,
            children=[live_service(), claim(), job()],
        ),
        KNOWN,
        NOW,
    )
    assert kinds(same.apply) == [("Job", name)] and same.prune == ()


def test_a_claim_whose_storage_class_changes_while_served_says_what_to_do():
    children, pods = served(CACHE)
    spec = {**CACHE, "cache": {**CACHE["cache"], "storageClassName": "other"}, "replicas": 2}
    classes = FAST + ({"name": "other", "default": False},)
    d = decide(
        observed(
            spec=spec,
            storage_classes=classes,
            children=children,
            pods=pods,
            status={"observedGeneration": 1},
            meta={"generation": 2},
        ),
        KNOWN,
        NOW,
    )
    assert ("PersistentVolumeClaim", "m-weights") not in kinds(d.apply) and d.prune == ()
    assert ("Deployment", "m") in kinds(d.apply)  # the replicas change still goes through
    assert cond(d)[1] == "ClaimImmutable" and cond(d, "Stalled")[0] == "True"
    assert cond(d)[2].startswith(
        "The cache volume claim m-weights cannot change in place (spec.cache.storageClassName "
        "fast -> other): it must be deleted and made again"
    )
    assert "1 serving pod and 0 download pods" in cond(d)[2] and "scale to zero (spec.replicas: 0)" in cond(d)[2]
    assert d.status["observedGeneration"] == 1
    # Scaled to zero, no pod left: the claim and the Job are deleted, to be made again.
    zero = {**spec, "replicas": 0}
    live = live_deployment(CACHE, ready=0, replicas=0)
    live["spec"]["replicas"] = 0
    z = decide(
        observed(spec=zero, storage_classes=classes, children=[live_service(), claim(), job("Complete"), live]),
        KNOWN,
        NOW,
    )
    assert sorted(kinds(z.prune)) == [("Job", job()["metadata"]["name"]), ("PersistentVolumeClaim", "m-weights")]
    assert not [k for k, _ in kinds(z.apply) if k in ("PersistentVolumeClaim", "Job")]
    # While it is deleted: no Job mounts it, the cache says so.
    gone = claim()
    gone["metadata"]["deletionTimestamp"] = "2026-01-01T00:00:00Z"
    w = decide(observed(spec=zero, storage_classes=classes, children=[live_service(), gone, live]), KNOWN, NOW)
    assert not [k for k, _ in kinds(w.apply) if k in ("PersistentVolumeClaim", "Job")]
    assert cond(w, "WeightsCached")[1] == "ClaimReplacing"


def test_a_claim_that_only_grows_is_applied_and_one_that_shrinks_is_not():
    children, pods = served(CACHE)
    grow = {**CACHE, "cache": {**CACHE["cache"], "size": "200Gi"}}
    assert ("PersistentVolumeClaim", "m-weights") in kinds(
        decide(observed(spec=grow, storage_classes=FAST, children=children, pods=pods), KNOWN, NOW).apply
    )
    shrink = {**CACHE, "cache": {**CACHE["cache"], "size": "50Gi"}}
    d = decide(observed(spec=shrink, storage_classes=FAST, children=children, pods=pods), KNOWN, NOW)
    assert "spec.cache.size 100Gi -> 50Gi (a claim can grow, never shrink)" in cond(d)[2]


def test_a_claim_not_ours_is_never_mounted():
    user = claim()
    user["metadata"]["ownerReferences"] = []
    d = decide(observed(spec=CACHE, storage_classes=FAST, children=[live_service(), user]), KNOWN, NOW)
    assert kinds(d.apply) == [] and cond(d)[1] == "NameConflict"
    assert cond(d)[2].startswith("PersistentVolumeClaim/m-weights already exists and is not this LLMDeployment's")


def test_a_missing_leaderworkerset_api_is_retried_other_4xx_wait_for_a_change():
    from llm_operator.decide.writes import retried

    missing = Refusal(404, "the server could not find the requested resource")
    assert retried("LeaderWorkerSet", missing) and not retried("Deployment", missing)
    assert retried("Deployment", Refusal(409, "conflict")) and retried("Service", Refusal(500, "etcd"))
    assert not retried("Service", Refusal(422, "invalid")) and not retried("LeaderWorkerSet", Refusal(403, "forbidden"))
    assert not retried("Service", Refusal(409, "taken", taken_by="owned by no controller"))


# --- each case of writes.py on its own, with literal children --------------------------------

OURS = [
    {"apiVersion": "llm-operator.io/v1alpha1", "kind": "LLMDeployment", "name": "m", "uid": "uid-1", "controller": True}
]
EARLIER = [{**OURS[0], "uid": "uid-0"}]
THEIRS = [{"apiVersion": "apps/v1", "kind": "Deployment", "name": "x", "uid": "u2", "controller": True}]


def want(kind="Service", name="m", desired_hash="h1", template=None, spec=None) -> dict:
    """A desired child as manifests.py makes it: its hash (and a Job's template hash) in annotations."""
    annotations = {resources.HASH_ANNOTATION: desired_hash}
    if template is not None:
        annotations[resources.TEMPLATE_HASH_ANNOTATION] = template
    api_version = {"Job": "batch/v1", "Deployment": "apps/v1"}.get(kind, "v1")
    return {
        "apiVersion": api_version,
        "kind": kind,
        "metadata": {"name": name, "namespace": "ns", "annotations": annotations},
        "spec": spec or {"x": 1},
    }


def live(child: dict, refs=OURS, status=None, **meta) -> dict:
    """The child as live_child gives it: what was written, our (or another's) references, a status."""
    return {**child, "metadata": {**child["metadata"], "ownerReferences": refs, **meta}, "status": status or {}}


def claimants_never_asked():
    raise AssertionError("the claimants are asked only of a claim that changed")


def test_owned_is_our_uid_as_controller_and_owner_words_name_the_holder():
    assert writes.owned(live(want()), "uid-1")
    assert not writes.owned(live(want(), refs=[{**OURS[0], "controller": False}]), "uid-1")
    assert not writes.owned(live(want(), refs=EARLIER), "uid-1") and not writes.owned(live(want(), refs=[]), "uid-1")
    assert writes.owner_words(live(want(), refs=THEIRS)) == "owned by Deployment x"
    assert writes.owner_words(live(want(), refs=[{**THEIRS[0], "controller": False}])) == "owned by Deployment x"
    assert writes.owner_words(live(want(), refs=[])) == "owned by no controller (made by hand or by another tool)"


def test_a_foreign_owner_is_a_conflict_and_an_earlier_llmdeployment_of_the_name_is_waited_for():
    conflict = writes.foreign_owner(want(), live(want(), refs=THEIRS), OWNER)
    verdict, permanent = conflict.problem
    assert (verdict.reason, permanent) == ("NameConflict", True) and "(owned by Deployment x)" in verdict.message
    assert not conflict.apply and conflict.replace == () and not conflict.unmountable
    earlier = writes.foreign_owner(want(), live(want(), refs=EARLIER), OWNER)
    assert earlier.problem == (
        Verdict(
            "False",
            "Creating",
            "Waiting for the garbage collector to remove Service/m of an earlier LLMDeployment of this name.",
        ),
        False,
    )
    # A claim not ours: nothing may mount it.
    pvc = want("PersistentVolumeClaim", "m-weights")
    assert writes.foreign_owner(pvc, live(pvc, refs=[]), OWNER).unmountable


def test_a_child_being_deleted_is_left_and_a_claim_being_deleted_is_not_mounted():
    assert writes.being_deleted(want()) == writes.LEAVE
    assert writes.being_deleted(want("PersistentVolumeClaim", "m-weights")) == writes.Outcome(unmountable=True)


def test_a_changed_claim_is_kept_while_mounted_and_replaced_with_its_jobs_when_not():
    pvc = want("PersistentVolumeClaim", "m-weights")
    changes = ["spec.cache.size 100Gi -> 50Gi (a claim can grow, never shrink)"]
    held = writes.claim_changed(pvc, changes, writes.Claimants(pods=2, downloads=1))
    verdict, permanent = held.problem
    assert (verdict.reason, permanent) == ("ClaimImmutable", True) and held.replace == () and not held.unmountable
    assert verdict.message.startswith(
        "The cache volume claim m-weights cannot change in place (spec.cache.size 100Gi "
        "-> 50Gi (a claim can grow, never shrink)): it must be deleted and made again"
    )
    assert "2 serving pods and 1 download pod of this LLMDeployment mount it" in verdict.message
    job_ref = {"apiVersion": "batch/v1", "kind": "Job", "metadata": {"name": "m-download-1", "namespace": "ns"}}
    free = writes.claim_changed(pvc, changes, writes.Claimants(pods=0, downloads=0, jobs=(job_ref,)))
    assert free == writes.Outcome(
        replace=(
            {"apiVersion": "v1", "kind": "PersistentVolumeClaim", "metadata": {"name": "m-weights", "namespace": "ns"}},
            job_ref,
        ),
        unmountable=True,
    )


def test_a_download_job_done_is_left_one_whose_template_changed_is_recreated_else_applied_if_changed():
    job_want = want("Job", "m-download-1", template="t2")
    complete = {"conditions": [{"type": "Complete", "status": "True"}]}
    assert (
        writes.download_job(job_want, live(want("Job", "m-download-1", "h0", template="t1"), status=complete))
        == writes.LEAVE
    )
    recreated = writes.download_job(job_want, live(want("Job", "m-download-1", template="t1")))
    assert recreated == writes.Outcome(
        replace=(
            {
                "apiVersion": "batch/v1",
                "kind": "Job",
                "metadata": {"name": "m-download-1", "namespace": "ns"},
                "propagationPolicy": "Foreground",
            },
        )
    )
    assert writes.download_job(job_want, live(job_want)) == writes.LEAVE
    assert writes.download_job(job_want, live(want("Job", "m-download-1", "h0", template="t2"))) == writes.APPLY


def test_apply_if_changed_writes_what_is_missing_or_differs():
    assert writes.apply_if_changed(want(), None) == writes.APPLY
    assert writes.apply_if_changed(want(), live(want())) == writes.LEAVE
    assert writes.apply_if_changed(want(), live(want(desired_hash="h0"))) == writes.APPLY
    assert writes.apply_if_changed(want(), live(want(spec={"x": 2}))) == writes.APPLY  # edited by hand


def test_judge_child_takes_the_first_case_that_holds():
    def judge(child, current, mountable=True, claimants=claimants_never_asked):
        return writes.judge_child(child, current, OWNER, mountable, claimants)

    # Not ours comes before being deleted; being deleted before anything else.
    assert judge(want(), live(want(), refs=THEIRS, deletionTimestamp="t")).problem[0].reason == "NameConflict"
    assert judge(want(desired_hash="h2"), live(want(), deletionTimestamp="t")) == writes.LEAVE
    # Whatever mounts the claim is left while the claim is not there; the rest goes on.
    for kind in ("Job", "Deployment", "LeaderWorkerSet"):
        assert judge(want(kind), None, mountable=False) == writes.LEAVE
    assert judge(want(), None, mountable=False) == writes.APPLY
    # A claim that only grows is applied: the claimants are not asked.
    small = want("PersistentVolumeClaim", "m-weights", spec={"resources": {"requests": {"storage": "100Gi"}}})
    big = want("PersistentVolumeClaim", "m-weights", "h2", spec={"resources": {"requests": {"storage": "200Gi"}}})
    assert judge(big, live(small)) == writes.APPLY
    shrunk = judge(small, live(big), claimants=lambda: writes.Claimants(pods=0, downloads=0))
    assert shrunk.unmountable and [r["kind"] for r in shrunk.replace] == ["PersistentVolumeClaim"]
    # A download Job that exists goes by its own case; one that does not is made.
    assert (
        judge(want("Job", template="t"), live(want("Job", template="t0"))).replace[0]["propagationPolicy"]
        == "Foreground"
    )
    assert judge(want("Job", template="t"), None) == writes.APPLY


def test_the_claim_is_judged_first_and_what_mounts_it_follows():
    pvc, job_want, deployment, service = (
        want("PersistentVolumeClaim", "m-weights"),
        want("Job", "m-download-1", template="t"),
        want("Deployment"),
        want(),
    )
    theirs = Observed(
        llmd={"metadata": {"name": "m", "namespace": "ns", "uid": "uid-1"}},
        children={"PersistentVolumeClaim": (live(pvc, refs=[]),)},
    )
    outcomes = writes.judge_children(theirs, OWNER, [service, pvc, job_want, deployment], (), None)
    assert [o.apply for o in outcomes] == [True, False, False, False]
    assert outcomes[1].problem[0].reason == "NameConflict"
    # The order of the desired children does not matter: the claim is judged first all the same.
    assert (
        writes.judge_children(theirs, OWNER, [deployment, job_want, pvc, service], (), None)[:2] == [writes.LEAVE] * 2
    )


def test_claimants_count_serving_pods_or_replicas_asked_running_downloads_and_our_jobs():
    running, done = (
        live(want("Job", "m-download-1")),
        live(want("Job", "m-download-0"), status={"conditions": [{"type": "Complete", "status": "True"}]}),
    )
    gone = live(want("Job", "m-download-2"), deletionTimestamp="t")
    pods = tuple({"metadata": {"name": f"{j}-p", "labels": {"job-name": j}}} for j in ("m-download-1", "m-download-0"))
    obs = Observed(
        llmd={"metadata": {"name": "m", "namespace": "ns", "uid": "uid-1"}},
        children={"Job": (running, done, gone)},
        pods=pods,
    )
    counted = writes.claimants_of(obs, OWNER, ({"metadata": {"name": "m-1"}},), {"spec": {"replicas": 3}})
    assert (counted.pods, counted.downloads) == (3, 1)
    assert [j["metadata"]["name"] for j in counted.jobs] == ["m-download-1", "m-download-0"]
    assert writes.claimants_of(obs, OWNER, ({"metadata": {"name": "m-1"}},), None).pods == 1


def test_writes_join_problems_permanent_ones_stall_the_others_hold():
    refused = Verdict("False", "ApplyRefused", "The API refused a write of Service/m (HTTP 500): etcd")
    taken = Verdict("False", "NameConflict", "Deployment/m already exists.")
    w = writes.Writes(problems=((refused, False), (taken, True), (Verdict("False", "ClaimImmutable", "Cannot."), True)))
    assert w.stalled == Verdict("False", "NameConflict", "Deployment/m already exists. Cannot.")
    assert w.held == refused and writes.Writes().stalled is None and writes.Writes().held is None


def test_writes_for_says_every_refusal_and_prunes_what_is_replaced():
    pvc = want("PersistentVolumeClaim", "m-weights", "h2", spec={"resources": {"requests": {"storage": "50Gi"}}})
    old_pvc = live(want("PersistentVolumeClaim", "m-weights", spec={"resources": {"requests": {"storage": "100Gi"}}}))
    old_job = live(want("Job", "m-download-1", template="t"))
    refused = {("Service", "m"): Refusal(500, "etcd"), ("HorizontalPodAutoscaler", "m"): Refusal(422, "invalid")}
    obs = Observed(
        llmd={"metadata": {"name": "m", "namespace": "ns", "uid": "uid-1"}},
        refused=refused,
        children={"PersistentVolumeClaim": (old_pvc,), "Job": (old_job,)},
    )
    w = writes.writes_for(obs, OWNER, [want(), pvc, want("Job", "m-download-1", template="t")], (), None, serve=False)
    assert kinds(w.apply) == [("Service", "m")]
    assert kinds(w.replace) == kinds(w.prune) == [("PersistentVolumeClaim", "m-weights"), ("Job", "m-download-1")]
    # The refusal of a desired child first, with it; one of a child no longer wanted after all.
    assert [(v.reason, permanent) for v, permanent in w.problems] == [("ApplyRefused", False), ("ApplyRefused", True)]
    assert "HorizontalPodAutoscaler/m (HTTP 422)" in w.problems[1][0].message


def test_refusals_say_who_took_the_name_that_leaderworkerset_is_missing_or_what_the_api_said():
    assert (
        writes.refusal_verdict("Service", "m", Refusal(409, "x", taken_by="owned by Deployment x"))[0].reason
        == "NameConflict"
    )
    lws, permanent = writes.refusal_verdict("LeaderWorkerSet", "m", Refusal(404, "not found "))
    assert lws.reason == "LeaderWorkerSetMissing" and permanent and "; HTTP 404: not found)." in lws.message
    assert LWS_INSTALL in lws.message
    assert writes.refusal_verdict("Service", "m", Refusal(500, "etcd"))[1] is False
    assert writes.refusal_verdict("Service", "m", Refusal(422, "invalid"))[1] is True

"""decide(): observed + look-ups -> children, prunes, status, Events. Literal inputs, one
test per branch the reconcile has."""

from __future__ import annotations

import datetime as dt
import json
from dataclasses import replace

from llm_operator.facts import lookup as facts
from llm_operator.decide import manifests as resources
from llm_operator.decide.decision import Lookups, decide, facts_query, with_applied
from llm_operator.facts.hub import ModelFacts
from llm_operator.decide.observed import Observed, Refusal, trim_child

NOW = dt.datetime(2026, 1, 1, tzinfo=dt.timezone.utc)
UID = "uid-1"
OWNER = resources.Owner("m", "ns", UID)
H100 = {"metadata": {"name": "gpu-1", "labels": {"nvidia.com/gpu.product": "NVIDIA-H100-80GB-HBM3",
                                                  "nvidia.com/gpu.memory": "81559"}},
        "status": {"allocatable": {"nvidia.com/gpu": "8"}}}
MISTRAL = {"modelId": "org/mistral", "revision": "main", "numLayers": 32, "hiddenSize": 4096,
           "numAttentionHeads": 32, "numKeyValueHeads": 8, "headDim": 128, "vocabSize": 32000,
           "maxPositionEmbeddings": 32768, "torchDtype": "bfloat16", "intermediateSize": 14336,
           "parameterCount": 7241732096, "modelType": "mistral"}
LLAMA_70B = {**MISTRAL, "modelId": "org/llama-70b", "numLayers": 80, "hiddenSize": 8192, "numAttentionHeads": 64,
             "intermediateSize": 28672, "vocabSize": 128256, "parameterCount": 70553706496, "modelType": "llama"}
KNOWN = Lookups(facts=facts.FactsAnswer(ModelFacts.from_dict(MISTRAL), facts.HUB))
UNKNOWN = Lookups(facts=facts.FactsAnswer(None, facts.UNAVAILABLE, "The Hub cannot be reached."))
PENDING = Lookups(facts=facts.FactsAnswer(None, facts.PENDING, "Reading the facts of org/mistral@main from the Hub."))


def llmd(spec: dict | None = None, status: dict | None = None, generation: int = 1, **meta) -> dict:
    return {"metadata": {"name": "m", "namespace": "ns", "uid": UID, "generation": generation, **meta},
            "spec": {"model": {"id": "org/mistral"}, "gpus": 1, **(spec or {})}, "status": status or {}}


def observed(spec=None, status=None, children=(), pods=(), **kw) -> Observed:
    by_kind: dict = {}
    for c in children:
        by_kind.setdefault(c["kind"], []).append(trim_child(c))
    return Observed(llmd=llmd(spec, status, **kw.pop("meta", {})), children={k: tuple(v) for k, v in by_kind.items()},
                    pods=tuple(pods), nodes=(H100,), **kw)


def live_deployment(spec=None, ready=1, replicas=1):
    d = resources.desired_deployment(OWNER, _spec(spec), resources.Decisions(gpus=1))
    d["metadata"]["generation"] = 1
    d["status"] = {"replicas": replicas, "readyReplicas": ready, "updatedReplicas": replicas, "observedGeneration": 1}
    return d


def serving_pod(deployment, ready=True, name="m-1"):
    """A pod of the live Deployment's current pod template."""
    labels = deployment["spec"]["template"]["metadata"]["labels"]
    return {"metadata": {"name": name, "labels": dict(labels)},
            "status": {"conditions": [{"type": "PodScheduled", "status": "True"},
                                      {"type": "Ready", "status": "True" if ready else "False"}]}}


def live_service(spec=None, nodes=1):
    return resources.desired_children(OWNER, _spec(spec), resources.Decisions(gpus=1, nodes=nodes))[0]


def _spec(spec=None):
    from llm_operator import api

    return api.parse_spec({"model": {"id": "org/mistral"}, "gpus": 1, **(spec or {})})


def kinds(objs) -> list[tuple[str, str]]:
    return [(o["kind"], o["metadata"]["name"]) for o in objs]


def cond(decision, ctype="Ready"):
    c = next(c for c in decision.status["conditions"] if c["type"] == ctype)
    return c["status"], c["reason"], c["message"]


def test_a_new_object_gets_its_service_and_deployment_and_a_pending_status():
    d = decide(observed(), KNOWN, NOW)
    assert kinds(d.apply) == [("Service", "m"), ("Deployment", "m")]
    assert d.prune == () and d.blocked is None
    assert d.phase == "Pending" and cond(d)[1] == "DeploymentMissing"
    assert d.status["plan"]["known"] is True and d.status["modelFacts"]["modelId"] == "org/mistral"
    assert [(e.type, e.reason) for e in d.events] == [("Normal", "DeploymentMissing")]


def test_after_the_apply_the_status_reports_what_was_made():
    first = decide(observed(), KNOWN, NOW)
    answers = [{**o, "metadata": {**o["metadata"], "uid": "x", "resourceVersion": "5"}} for o in first.apply]
    d = decide(with_applied(observed(), answers, []), KNOWN, NOW)
    assert d.apply == ()
    assert d.phase == "Progressing" and cond(d)[1] == "RollingOut"


def test_serving_and_nothing_changed_writes_nothing():
    live = live_deployment()
    obs = observed(children=[live_service(), live], pods=[serving_pod(live)])
    ready = decide(obs, KNOWN, NOW)
    assert ready.apply == () and ready.prune == () and ready.phase == "Ready"
    assert cond(ready) == ("True", "Ready", "1/1 replicas are ready and serving at http://m.ns.svc.cluster.local.")
    again = decide(observed(status=ready.status, children=[live_service(), live], pods=[serving_pod(live)]), KNOWN, NOW)
    assert again.status_patch is None and again.events == () and again.apply == ()


def test_a_hand_edited_child_is_applied_again():
    service = live_service()
    service["spec"]["ports"][0]["port"] = 9999
    d = decide(observed(children=[service, live_deployment()]), KNOWN, NOW)
    assert kinds(d.apply) == [("Service", "m")]


def test_an_invalid_spec_is_failed_and_touches_nothing():
    d = decide(observed(spec={"gpus": 0}), KNOWN, NOW)
    assert d.apply == () and d.desired == () and d.prune == ()
    assert d.phase == "Failed" and cond(d)[1] == "InvalidSpec" and "spec.gpus" in cond(d)[2]
    assert cond(d, "Stalled")[0] == "True"
    assert [(e.type, e.reason) for e in d.events] == [("Warning", "InvalidSpec")]


def test_a_model_that_cannot_fit_is_blocked_before_a_gpu_is_spent():
    big = Lookups(facts=facts.FactsAnswer(ModelFacts.from_dict(LLAMA_70B), facts.HUB))
    d = decide(observed(spec={"model": {"id": "org/llama-70b"}, "gpus": 1}), big, NOW)
    assert d.apply == () and d.desired == ()
    assert d.phase == "Failed" and cond(d)[1] == "DoesNotFit" and "use 2 GPUs" in cond(d)[2]
    assert d.blocked is not None and d.requeue_after is None


def test_gpus_left_out_are_picked_by_the_planner():
    big = Lookups(facts=facts.FactsAnswer(ModelFacts.from_dict(LLAMA_70B), facts.HUB))
    d = decide(observed(spec={"model": {"id": "org/llama-70b"}, "gpus": None}), big, NOW)
    deployment = next(o for o in d.apply if o["kind"] == "Deployment")
    assert deployment["spec"]["template"]["spec"]["containers"][0]["resources"]["limits"]["nvidia.com/gpu"] == "2"
    assert d.status["gpus"] == 2


def test_waiting_for_facts_serves_nothing_new_and_keeps_what_serves():
    old = live_deployment()
    d = decide(observed(children=[live_service(), old], meta={"generation": 2}), PENDING, NOW)
    assert kinds(d.desired) == [("Service", "m")] and d.prune == ()
    assert d.phase == "Pending" and cond(d)[1] == "Planning"
    assert cond(d, "Reconciling")[0] == "True"


def test_unknown_facts_go_on_with_the_users_gpus_and_say_so():
    d = decide(observed(spec={"gpus": 3}), UNKNOWN, NOW)
    assert d.status["plan"] == {"known": False, "reason": "The plan is unknown: The Hub cannot be reached. "
                                "Going on with 3 GPU(s) per replica."}
    assert ("Deployment", "m") in kinds(d.apply)


def test_waiting_for_adapter_configs():
    lookups = Lookups(facts=KNOWN.facts, adapters_pending=("support",))
    d = decide(observed(spec={"adapters": [{"name": "support", "id": "org/support-lora"}]}), lookups, NOW)
    assert kinds(d.desired) == [("Service", "m")]
    assert cond(d)[1:] == ("Planning", "Reading adapter_config.json of support to check their base model.")


def test_an_adapter_for_another_base_model_is_not_served():
    lookups = Lookups(facts=KNOWN.facts, adapter_configs={"x": {"base_model_name_or_path": "org/llama", "r": 8}})
    d = decide(observed(spec={"adapters": [{"name": "x", "id": "org/x-lora"}]}), lookups, NOW)
    assert cond(d, "AdaptersReady")[:2] == ("False", "BaseModelMismatch")
    deployment = next(o for o in d.apply if o["kind"] == "Deployment")
    assert "--lora-adapters" not in deployment["spec"]["template"]["spec"]["containers"][0]["args"]


CACHE = {"cache": {"enabled": True, "size": "100Gi", "storageClassName": "fast"}}
FAST = ({"name": "fast", "default": False},)


def claim(phase="Bound"):
    c = resources.desired_cache_claim(OWNER, _spec(CACHE))
    c["status"] = {"phase": phase}
    c["metadata"]["creationTimestamp"] = "2025-12-31T23:58:00Z"
    return c


def job(condition=None, spec=CACHE):
    j = resources.desired_download_job(OWNER, _spec(spec))
    j["status"] = {"conditions": [{"type": condition, "status": "True", "reason": "X", "message": "y"}]} if condition else {}
    return j


def job_pod(spec=CACHE, message=None):
    name = resources.download_job_name(OWNER, _spec(spec))
    return {"metadata": {"name": f"{name}-abc", "labels": {"job-name": name}, "creationTimestamp": "2026-01-01T00:00:00Z"},
            "status": {"containerStatuses": [{"state": {"terminated": {"message": message}}}]} if message else {}}


def test_cache_first_the_claim_and_the_job_then_the_deployment():
    d = decide(observed(spec=CACHE, storage_classes=FAST), KNOWN, NOW)
    assert [k for k, _ in kinds(d.desired)] == ["Service", "PersistentVolumeClaim", "Job"]
    assert d.phase == "Pending" and cond(d, "WeightsCached")[1] == "Creating"


def test_a_claim_pending_is_looked_at_again_when_only_time_would_tell():
    d = decide(observed(spec=CACHE, storage_classes=FAST, children=[claim("Pending")]), KNOWN,
               dt.datetime(2025, 12, 31, 23, 58, 10, tzinfo=dt.timezone.utc))
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
    d = decide(observed(spec=new, storage_classes=FAST, children=[live_service(), claim(), old, job(spec=new)],
                        meta={"generation": 2}), KNOWN, NOW)
    assert ("Deployment", "m") not in kinds(d.desired) and d.prune == ()
    assert cond(d, "WeightsCached")[1] == "Downloading" and d.phase == "Pending"


def test_the_old_revisions_job_is_pruned_and_the_new_one_made():
    new = {**CACHE, "model": {"id": "org/mistral", "revision": "v2"}}
    d = decide(observed(spec=new, storage_classes=FAST, children=[live_service(), claim(), job("Complete")],
                        meta={"generation": 2}), KNOWN, NOW)
    assert kinds(d.prune) == [("Job", job()["metadata"]["name"])]
    assert ("Job", job(spec=new)["metadata"]["name"]) in kinds(d.apply)


def test_a_child_we_do_not_own_is_never_pruned():
    foreign = live_deployment({"replicas": 2})
    pdb = resources.desired_pdb(OWNER, _spec({"replicas": 2}))
    pdb["metadata"]["ownerReferences"] = [{**pdb["metadata"]["ownerReferences"][0], "uid": "someone-else"}]
    d = decide(observed(children=[live_service(), foreign, pdb]), KNOWN, NOW)
    assert d.prune == ()
    ours = resources.desired_pdb(OWNER, _spec({"replicas": 2}))
    d = decide(observed(children=[live_service(), live_deployment(), ours]), KNOWN, NOW)
    assert kinds(d.prune) == [("PodDisruptionBudget", "m")]


def test_a_terminating_object_or_namespace_is_left_to_the_garbage_collector():
    assert decide(observed(meta={"deletionTimestamp": "2026-01-01T00:00:00Z"}), KNOWN, NOW).phase == "Terminating"
    d = decide(observed(namespace_terminating=True), KNOWN, NOW)
    assert d.phase == "Terminating" and d.apply == () and d.status_patch is None and d.events == ()


def unschedulable_pod(name="m-2"):
    return {"metadata": {"name": name, "labels": {"llm-operator.io/name": "m"}},
            "status": {"conditions": [{"type": "PodScheduled", "status": "False", "reason": "Unschedulable",
                                       "message": "0/5 nodes are available: 5 Insufficient nvidia.com/gpu."}]}}


def test_pods_waiting_for_gpus_a_node_could_offer_are_reconciling():
    live = live_deployment({"replicas": 3}, ready=2, replicas=3)
    pods = [serving_pod(live, name="m-1"), serving_pod(live, name="m-2"), unschedulable_pod("m-3")]
    d = decide(observed(spec={"replicas": 3}, children=[live_service(), live], pods=pods), KNOWN, NOW)
    assert d.phase == "Unschedulable"
    assert cond(d)[:2] == ("False", "WaitingForGPUs")
    assert cond(d)[2].startswith("2 of 3 replicas serve; 1 wait for GPUs that no node has free now")
    assert cond(d, "Reconciling")[:2] == ("True", "WaitingForGPUs") and cond(d, "Stalled")[0] == "False"
    assert [(e.type, e.reason) for e in d.events] == [("Warning", "WaitingForGPUs")]


def test_a_pod_no_node_could_ever_hold_is_stalled_naming_what_is_asked_and_what_exists():
    l4 = {"metadata": {"name": "l4-1", "labels": {"nvidia.com/gpu.product": "NVIDIA-L4"}},
          "status": {"allocatable": {"nvidia.com/gpu": "4"}}}
    cpu = {"metadata": {"name": "cpu-1", "labels": {}}, "status": {"allocatable": {}}}
    big = {"gpus": 16}
    d = decide(replace(observed(spec=big, children=[live_service(big), live_deployment(big, ready=0)],
                                pods=[unschedulable_pod()]), nodes=(H100, l4, cpu)), UNKNOWN, NOW)
    assert d.phase == "Failed" and cond(d)[:2] == ("False", "NoNodeFits")
    assert cond(d)[2] == ("1 of 1 replicas cannot be scheduled, and no node could ever hold one: each pod asks for "
                          "16 nvidia.com/gpu; the cluster has 1 node(s) with 4 x NVIDIA-L4, 1 node(s) with "
                          "8 x NVIDIA-H100-80GB-HBM3, 1 node(s) with no nvidia.com/gpu. The scheduler says: "
                          "0/5 nodes are available: 5 Insufficient nvidia.com/gpu.")
    assert cond(d, "Stalled")[:2] == ("True", "NoNodeFits") and cond(d, "Reconciling")[0] == "False"
    assert [(e.type, e.reason) for e in d.events] == [("Warning", "NoNodeFits")]


def test_a_gpu_product_no_node_has_is_stalled():
    spec = {"gpu": {"product": "NVIDIA-A100-SXM4-80GB"}}
    d = decide(observed(spec=spec, children=[live_service(spec), live_deployment(spec, ready=0)],
                        pods=[unschedulable_pod()]), KNOWN, NOW)
    assert cond(d)[1] == "NoNodeFits" and "asks for 1 nvidia.com/gpu of product NVIDIA-A100-SXM4-80GB" in cond(d)[2]


def test_a_node_selector_no_node_matches_is_stalled_one_that_matches_waits():
    spec = {"scheduling": {"nodeSelector": {"pool": "inference"}}}
    args = dict(spec=spec, children=[live_service(spec), live_deployment(spec, ready=0)], pods=[unschedulable_pod()])
    d = decide(observed(**args), KNOWN, NOW)
    assert cond(d)[1] == "NoNodeFits"
    assert ("on a node labelled pool=inference; the cluster has 1 node(s) with 8 x NVIDIA-H100-80GB-HBM3 "
            "(0 of them match the nodeSelector)") in cond(d)[2]
    pooled = {**H100, "metadata": {**H100["metadata"], "labels": {**H100["metadata"]["labels"], "pool": "inference"}}}
    assert cond(decide(replace(observed(**args), nodes=(pooled,)), KNOWN, NOW))[1] == "WaitingForGPUs"


def test_scaled_to_zero_is_ready_and_says_how_to_serve():
    spec = {"replicas": 0}
    live = live_deployment(spec, ready=0, replicas=0)
    d = decide(observed(spec=spec, children=[live_service(spec), live]), KNOWN, NOW)
    assert d.phase == "ScaledToZero" and d.apply == ()
    assert cond(d)[:2] == ("True", "ScaledToZero") and "scale up to serve" in cond(d)[2]
    assert cond(d, "Reconciling")[0] == cond(d, "Stalled")[0] == "False"


SLEEPY = {"replicas": 0, "autoscaling": {"mode": "operator", "minReplicas": 0, "maxReplicas": 2}}
WOKEN = {"annotations": {"llm-operator.io/woken-by-request-at": "2026-01-01T00:00:00Z"}}
AT_ZERO = {"conditions": [{"type": "Ready", "status": "True", "reason": "ScaledToZero", "message": "Scaled to zero.",
                           "lastTransitionTime": "2025-12-31T23:00:00Z"}]}


def test_min_replicas_0_at_zero_is_ready_and_says_a_request_wakes_it():
    live = live_deployment(SLEEPY, ready=0, replicas=0)
    d = decide(observed(spec=SLEEPY, children=[live_service(SLEEPY), live]), KNOWN, NOW)
    assert d.phase == "ScaledToZero" and d.apply == ()
    assert cond(d) == ("True", "ScaledToZero", "Scaled to zero: spec.replicas and autoscaling.minReplicas are 0, so no "
                       "pod serves the model until a request through the gateway wakes it (or scale up: spec.replicas, "
                       "or kubectl scale --replicas=N).")
    assert cond(d, "Reconciling")[0] == cond(d, "Stalled")[0] == "False"
    assert "lastWokenByRequest" not in d.status


def _woken(status, ready=0):
    spec = {**SLEEPY, "replicas": 1}
    live = live_deployment(spec, ready=ready, replicas=1)
    return decide(observed(spec=spec, status=status, children=[live_service(spec), live],
                           pods=[serving_pod(live, ready=bool(ready))], meta=WOKEN), KNOWN, NOW)


def test_a_model_woken_by_a_request_says_so_while_it_starts():
    d = _woken(AT_ZERO)
    assert d.phase == "Progressing"
    assert cond(d) == ("False", "PodsNotReady", "Woken from zero by a request at 2026-01-01T00:00:00Z; 0/1 replicas "
                       "are ready; waiting for the model to load and answer /health.")
    assert cond(d, "Reconciling") == ("True", "PodsNotReady", cond(d)[2])
    assert d.status["lastWokenByRequest"] == "2026-01-01T00:00:00Z"
    assert [(e.reason, e.message) for e in d.events] == [("PodsNotReady", cond(d)[2])]
    # the next reconcile, from the status just written, still says so
    again = _woken(d.status)
    assert cond(again) == cond(d) and again.status_patch is None


def test_once_ready_the_wake_is_in_status_only():
    d = _woken(_woken(AT_ZERO).status, ready=1)
    assert d.phase == "Ready" and cond(d)[:2] == ("True", "Ready") and not cond(d)[2].startswith("Woken")
    assert d.status["lastWokenByRequest"] == "2026-01-01T00:00:00Z"


def test_a_wake_first_seen_after_the_pods_started_is_said_all_the_same():
    # the operator saw the scale to 1 before the annotation: Ready is already PodsNotReady
    starting = {"conditions": [{"type": "Ready", "status": "False", "reason": "PodsNotReady",
                                "message": "0/1 replicas are ready; waiting for the model to load and answer /health.",
                                "lastTransitionTime": "2026-01-01T00:00:00Z"}]}
    assert cond(_woken(starting))[2].startswith("Woken from zero by a request at 2026-01-01T00:00:00Z; 0/1 replicas")


def test_an_old_wake_is_not_blamed_for_a_later_start():
    serving = {"lastWokenByRequest": "2026-01-01T00:00:00Z",
               "conditions": [{"type": "Ready", "status": "True", "reason": "Ready", "message": "1/1 replicas are ready.",
                               "lastTransitionTime": "2026-01-01T00:05:00Z"}]}
    d = _woken(serving)
    assert cond(d)[2] == "0/1 replicas are ready; waiting for the model to load and answer /health."
    assert not cond(_woken(d.status))[2].startswith("Woken")


def test_an_annotation_that_is_not_a_time_is_ignored():
    spec = {**SLEEPY, "replicas": 1}
    live = live_deployment(spec, ready=0, replicas=1)
    d = decide(observed(spec=spec, status=AT_ZERO, children=[live_service(spec), live], pods=[serving_pod(live, ready=False)],
                        meta={"annotations": {"llm-operator.io/woken-by-request-at": "just now"}}), KNOWN, NOW)
    assert "lastWokenByRequest" not in d.status and not cond(d)[2].startswith("Woken")


def test_the_facts_query_takes_the_report_of_this_revisions_job():
    new = {**CACHE, "model": {"id": "org/mistral", "revision": "v2"}}
    report = {**MISTRAL, "revision": "v2", "commit": "abc"}
    old_status = {"modelFacts": {**MISTRAL, "revision": "main"}}
    q = facts_query(observed(spec=new, status=old_status, pods=[job_pod(spec=new, message=json.dumps(report)),
                                                                 job_pod(message=json.dumps(MISTRAL))]), _spec(new))
    assert q.job_report["revision"] == "v2" and q.status_facts["revision"] == "main"


def test_a_write_the_api_refuses_is_said_in_status_and_an_event_and_the_generation_is_not_claimed():
    refused = {("Deployment", "m"): Refusal(422, 'Deployment.apps "m" is invalid: spec.template: field is immutable')}
    d = decide(replace(observed(status={"observedGeneration": 1}, meta={"generation": 2}), refused=refused), KNOWN, NOW)
    assert d.phase == "Failed" and cond(d)[:2] == ("False", "ApplyRefused")
    assert cond(d)[2] == ('The API refused a write of Deployment/m (HTTP 422): Deployment.apps "m" is invalid: '
                          'spec.template: field is immutable')
    assert cond(d, "Stalled")[0] == "True"
    assert d.status["observedGeneration"] == 1
    assert [(e.type, e.reason) for e in d.events] == [("Warning", "ApplyRefused")]
    # The other children are still written.
    assert ("Service", "m") in kinds(d.apply)
    busy = decide(replace(observed(), refused={("Service", "m"): Refusal(500, "failed to allocate a serviceIP")}), KNOWN, NOW)
    assert busy.phase == "Pending" and cond(busy, "Reconciling")[:2] == ("True", "ApplyRefused")
    assert cond(busy, "Stalled")[0] == "False" and "observedGeneration" not in busy.status
    # Retried by itself, but someone may have to act (free Service IPs, a quota): a Warning too.
    assert [(e.type, e.reason) for e in busy.events] == [("Warning", "ApplyRefused")]


def test_a_name_taken_by_someone_else_is_stalled_naming_the_object_and_its_owner():
    taken = {("Service", "m"): Refusal(409, "Service m already exists", "owned by no controller (made by hand or by another tool)")}
    d = decide(replace(observed(), refused=taken), KNOWN, NOW)
    assert d.phase == "Failed" and cond(d)[:2] == ("False", "NameConflict")
    assert cond(d)[2].startswith("Service/m already exists and is not this LLMDeployment's (owned by no controller")
    assert cond(d, "Stalled")[:2] == ("True", "NameConflict") and "observedGeneration" not in d.status
    assert [(e.type, e.reason) for e in d.events] == [("Warning", "NameConflict")]
    assert ("Deployment", "m") in kinds(d.apply)


def test_a_child_held_with_another_controller_is_not_applied():
    svc = live_service({"service": {"port": 8080}})
    svc["metadata"]["ownerReferences"] = [{"apiVersion": "apps/v1", "kind": "Deployment", "name": "other", "uid": "u2",
                                           "controller": True}]
    d = decide(observed(children=[svc]), KNOWN, NOW)
    assert ("Service", "m") not in kinds(d.apply) and ("Deployment", "m") in kinds(d.apply)
    assert cond(d)[1] == "NameConflict" and "(owned by Deployment other)" in cond(d)[2]
    # A deleted LLMDeployment of the same name: waited for, not a conflict.
    svc["metadata"]["ownerReferences"][0].update(kind="LLMDeployment", name="m")
    gc = decide(observed(children=[svc]), KNOWN, NOW)
    assert cond(gc, "Reconciling")[0] == "True" and "garbage collector" in cond(gc)[2] and gc.blocked is None


MISTRAL_AWQ = {**MISTRAL, "modelId": "org/mistral-awq", "parameterCount": 7241732096,
               "quantizationConfig": {"quant_method": "awq", "bits": 4, "group_size": 128}}


def test_a_dtype_with_an_awq_checkpoint_is_blocked_naming_the_field():
    awq = Lookups(facts=facts.FactsAnswer(ModelFacts.from_dict(MISTRAL_AWQ), facts.HUB))
    d = decide(observed(spec={"model": {"id": "org/mistral-awq"}, "dtype": "float16"}), awq, NOW)
    assert d.apply == () and d.desired == ()
    assert d.phase == "Failed" and cond(d)[:2] == ("False", "EngineWouldRefuse")
    assert cond(d)[2] == ("TGI would refuse to start with this spec: spec.dtype cannot be set: the checkpoint is "
                          "awq-quantized (quantization_config in its config.json), and TGI refuses a dtype with awq; "
                          "leave spec.dtype unset (auto).")
    assert cond(d, "Stalled")[0] == "True"
    assert [(e.type, e.reason) for e in d.events] == [("Warning", "EngineWouldRefuse")]
    # The nearest good spec: the same checkpoint with dtype auto serves.
    ok = decide(observed(spec={"model": {"id": "org/mistral-awq"}}), awq, NOW)
    assert ok.blocked is None and ("Deployment", "m") in kinds(ok.apply)


def test_an_exl2_checkpoint_on_two_gpus_is_blocked():
    exl2 = Lookups(facts=facts.FactsAnswer(ModelFacts.from_dict(
        {**MISTRAL, "quantizationConfig": {"quant_method": "exl2", "bits": 4.0}}), facts.HUB))
    d = decide(observed(spec={"gpus": 2}), exl2, NOW)
    assert d.desired == () and cond(d)[1] == "InvalidSharding" and "TGI cannot shard exl2" in cond(d)[2]
    assert decide(observed(spec={"gpus": 1}), exl2, NOW).blocked is None


def test_input_tokens_alone_must_stay_below_the_models_context():
    d = decide(observed(spec={"limits": {"maxInputTokens": 32768}}), KNOWN, NOW)
    assert d.desired == () and cond(d)[1] == "EngineWouldRefuse"
    assert "spec.limits.maxInputTokens (32768) must be less than the model's context of 32768 tokens" in cond(d)[2]
    assert "set spec.limits.maxInputTokens to at most 32767, or set spec.limits.maxTotalTokens above it" in cond(d)[2]
    assert decide(observed(spec={"limits": {"maxInputTokens": 32767}}), KNOWN, NOW).blocked is None


def test_an_engine_arg_contradicting_a_limit_is_blocked():
    spec = {"limits": {"maxTotalTokens": 8192}, "engine": {"args": ["--max-batch-total-tokens", "4096"]}}
    d = decide(observed(spec=spec), KNOWN, NOW)
    assert d.desired == () and cond(d)[1] == "EngineWouldRefuse"
    assert cond(d)[2] == ("TGI would refuse to start with this spec: --max-batch-total-tokens in spec.engine.args (4096) "
                          "must be at least spec.limits.maxTotalTokens (8192): one request may use the whole total.")
    spec["engine"]["args"][1] = "8192"
    assert decide(observed(spec=spec), KNOWN, NOW).blocked is None


def test_an_engine_arg_value_the_launcher_cannot_parse_is_blocked_even_without_facts():
    d = decide(observed(spec={"engine": {"args": ["--cuda-graphs", "1,two"]}}), UNKNOWN, NOW)
    assert d.desired == () and cond(d)[1] == "EngineWouldRefuse"
    assert "--cuda-graphs in spec.engine.args: '1,two' is not a value TGI's launcher accepts" in cond(d)[2]


def _served(spec):
    """Cache on, the Job done, serving one ready pod."""
    live = live_deployment(spec)
    return [live_service(spec), claim(), job("Complete"), live], [serving_pod(live)]


def test_a_done_download_job_is_left_alone_when_fields_that_do_not_change_what_it_downloads_change():
    children, pods = _served(CACHE)
    spec = {**CACHE, "cache": {**CACHE["cache"], "stallTimeoutSeconds": 60}, "podAnnotations": {"team": "b"},
            "replicas": 2}
    d = decide(observed(spec=spec, storage_classes=FAST, children=children, pods=pods, meta={"generation": 2}),
               KNOWN, NOW)
    assert kinds(d.apply) == [("Deployment", "m"), ("PodDisruptionBudget", "m")] and d.prune == ()
    assert d.apply[0]["spec"]["replicas"] == 2 and d.blocked is None


def test_the_serving_pod_annotations_are_not_in_the_download_pod():
    j = resources.desired_download_job(OWNER, _spec({**CACHE, "podAnnotations": {"team": "b"}}))
    assert "annotations" not in j["spec"]["template"]["metadata"]
    j = resources.desired_download_job(OWNER, _spec({**CACHE, "cache": {**CACHE["cache"], "podAnnotations": {"p": "x"}}}))
    assert j["spec"]["template"]["metadata"]["annotations"] == {"p": "x"}


def test_a_running_download_job_whose_template_changes_is_recreated():
    running = job()
    spec = {**CACHE, "cache": {**CACHE["cache"], "stallTimeoutSeconds": 60}}
    d = decide(observed(spec=spec, storage_classes=FAST, children=[live_service(), claim(), running]), KNOWN, NOW)
    name = running["metadata"]["name"]
    assert ("Job", name) not in kinds(d.apply)
    assert d.prune == ({"apiVersion": "batch/v1", "kind": "Job", "metadata": {"name": name, "namespace": "ns"},
                        "propagationPolicy": "Foreground"},)
    # Being deleted: nothing written to it, the cache says so.
    running["metadata"]["deletionTimestamp"] = "2026-01-01T00:00:00Z"
    later = decide(observed(spec=spec, storage_classes=FAST, children=[live_service(), claim(), running]), KNOWN, NOW)
    assert later.apply == () and later.prune == () and "Re-creating the download Job" in cond(later, "WeightsCached")[2]
    # Only mutable fields changed (backoffLimit): applied, not re-created.
    same = decide(observed(spec={**CACHE, "cache": {**CACHE["cache"], "backoffLimit": 9}}, storage_classes=FAST,
                           children=[live_service(), claim(), job()]), KNOWN, NOW)
    assert kinds(same.apply) == [("Job", name)] and same.prune == ()


def test_a_claim_whose_storage_class_changes_while_served_says_what_to_do():
    children, pods = _served(CACHE)
    spec = {**CACHE, "cache": {**CACHE["cache"], "storageClassName": "other"}, "replicas": 2}
    classes = FAST + ({"name": "other", "default": False},)
    d = decide(observed(spec=spec, storage_classes=classes, children=children, pods=pods,
                        status={"observedGeneration": 1}, meta={"generation": 2}), KNOWN, NOW)
    assert ("PersistentVolumeClaim", "m-weights") not in kinds(d.apply) and d.prune == ()
    assert ("Deployment", "m") in kinds(d.apply)      # the replicas change still goes through
    assert cond(d)[1] == "ClaimImmutable" and cond(d, "Stalled")[0] == "True"
    assert cond(d)[2].startswith("The cache volume claim m-weights cannot change in place (spec.cache.storageClassName "
                                 "fast -> other): it must be deleted and made again")
    assert "1 serving and 0 download pod(s)" in cond(d)[2] and "scale to zero (spec.replicas: 0)" in cond(d)[2]
    assert d.status["observedGeneration"] == 1
    # Scaled to zero, no pod left: the claim and the Job are deleted, to be made again.
    zero = {**spec, "replicas": 0}
    live = live_deployment(CACHE, ready=0, replicas=0)
    live["spec"]["replicas"] = 0
    z = decide(observed(spec=zero, storage_classes=classes, children=[live_service(), claim(), job("Complete"), live]),
               KNOWN, NOW)
    assert sorted(kinds(z.prune)) == [("Job", job()["metadata"]["name"]), ("PersistentVolumeClaim", "m-weights")]
    assert not [k for k, _ in kinds(z.apply) if k in ("PersistentVolumeClaim", "Job")]
    # While it is deleted: no Job mounts it, the cache says so.
    gone = claim()
    gone["metadata"]["deletionTimestamp"] = "2026-01-01T00:00:00Z"
    w = decide(observed(spec=zero, storage_classes=classes, children=[live_service(), gone, live]), KNOWN, NOW)
    assert not [k for k, _ in kinds(w.apply) if k in ("PersistentVolumeClaim", "Job")]
    assert cond(w, "WeightsCached")[1] == "ClaimReplacing"


def test_a_claim_that_only_grows_is_applied_and_one_that_shrinks_is_not():
    children, pods = _served(CACHE)
    grow = {**CACHE, "cache": {**CACHE["cache"], "size": "200Gi"}}
    assert ("PersistentVolumeClaim", "m-weights") in kinds(decide(observed(spec=grow, storage_classes=FAST,
                                                                          children=children, pods=pods), KNOWN, NOW).apply)
    shrink = {**CACHE, "cache": {**CACHE["cache"], "size": "50Gi"}}
    d = decide(observed(spec=shrink, storage_classes=FAST, children=children, pods=pods), KNOWN, NOW)
    assert "spec.cache.size 100Gi -> 50Gi (a claim can grow, never shrink)" in cond(d)[2]


def test_a_claim_not_ours_is_never_mounted():
    user = claim()
    user["metadata"]["ownerReferences"] = []
    d = decide(observed(spec=CACHE, storage_classes=FAST, children=[live_service(), user]), KNOWN, NOW)
    assert kinds(d.apply) == [] and cond(d)[1] == "NameConflict"
    assert cond(d)[2].startswith("PersistentVolumeClaim/m-weights already exists and is not this LLMDeployment's")


def test_a_new_reason_in_the_same_phase_posts_an_event():
    """PodsNotReady -> CrashLoopBackOff (still Progressing: one restart) is news worth a Warning."""
    live = live_deployment(ready=0)
    pod = serving_pod(live, ready=False)
    before = decide(observed(children=[live_service(), live], pods=[pod]), KNOWN, NOW)
    assert before.phase == "Progressing" and cond(before)[1] == "PodsNotReady"
    pod["status"]["containerStatuses"] = [{"name": "engine", "restartCount": 1,
                                           "state": {"waiting": {"reason": "CrashLoopBackOff", "message": "back-off 10s"}}}]
    after = decide(observed(status=before.status, children=[live_service(), live], pods=[pod]), KNOWN, NOW)
    assert after.phase == "Progressing" and cond(after)[1] == "CrashLoopBackOff"
    assert [(e.type, e.reason) for e in after.events] == [("Warning", "CrashLoopBackOff")]
    again = decide(observed(status=after.status, children=[live_service(), live], pods=[pod]), KNOWN, NOW)
    assert again.events == () and again.status_patch is None


# --- multi-node replicas (LeaderWorkerSet groups) ------------------------------------------------

H100_B = {**H100, "metadata": {**H100["metadata"], "name": "gpu-2"}}
MULTI = {"engine": {"name": "vllm"}, "gpus": 8, "nodes": 2}


def live_lws(spec=None, ready=1, replicas=1):
    s = _spec({**MULTI, **(spec or {})})
    lws = next(c for c in resources.desired_children(OWNER, s, resources.Decisions(gpus=8, nodes=2))
               if c["kind"] == "LeaderWorkerSet")
    lws["metadata"]["generation"] = 1
    lws["status"] = {"replicas": replicas, "readyReplicas": ready, "updatedReplicas": replicas, "observedGeneration": 1}
    return lws


def group_pod(lws, group: int, worker: int, ready=True, scheduled=True):
    """A pod of a live LeaderWorkerSet's group, labelled as LWS's webhook labels it."""
    role = "workerTemplate" if worker else "leaderTemplate"
    labels = {**lws["spec"]["leaderWorkerTemplate"][role]["metadata"]["labels"],
              "leaderworkerset.sigs.k8s.io/group-index": str(group),
              "leaderworkerset.sigs.k8s.io/worker-index": str(worker)}
    name = f"m-{group}" + (f"-{worker}" if worker else "")
    conditions = [{"type": "PodScheduled", "status": "True"}, {"type": "Ready", "status": "True" if ready else "False"}]
    if not scheduled:
        conditions = [{"type": "PodScheduled", "status": "False", "reason": "Unschedulable",
                       "message": "0/5 nodes are available: 2 Insufficient nvidia.com/gpu."}]
    return {"metadata": {"name": name, "labels": labels}, "status": {"conditions": conditions}}


def multi(spec=None, children=(), pods=(), nodes=(H100, H100_B), multi_node=True) -> Observed:
    return replace(observed(spec={**MULTI, **(spec or {})}, children=children, pods=pods), nodes=nodes,
                   multi_node=multi_node)


def test_a_replica_on_two_nodes_becomes_a_leaderworkerset_and_says_so():
    d = decide(multi(), UNKNOWN, NOW)
    assert kinds(d.apply) == [("Service", "m"), ("LeaderWorkerSet", "m")]
    assert cond(d)[:2] == ("False", "DeploymentMissing") and "LeaderWorkerSet does not exist yet" in cond(d)[2]
    assert d.status["nodes"] == 2 and d.status["gpus"] == 8
    assert d.status["selector"] == "llm-operator.io/name=m,llm-operator.io/role=leader"


def test_an_operator_without_leaderworkersets_says_how_to_turn_them_on():
    d = decide(multi(multi_node=False), UNKNOWN, NOW)
    assert d.apply == () and d.phase == "Failed"
    status, reason, message = cond(d, "Stalled")
    assert (status, reason) == ("True", "MultiNodeOff")
    assert "kubectl apply --server-side -f https://github.com/kubernetes-sigs/lws/releases/download/" in message
    assert "lws.enabled=true" in message and "spec.nodes: 1" in message


def test_too_few_nodes_for_a_group_is_stalled_before_anything_is_made():
    d = decide(multi(nodes=(H100,)), UNKNOWN, NOW)
    assert d.apply == () and cond(d, "Stalled")[:2] == ("True", "NoNodeFits")
    assert cond(d)[2].startswith("Cannot run a replica on 2 nodes: too few nodes could ever hold the group: a replica "
                                 "is 2 pods on 2 different nodes, each asking for 8 nvidia.com/gpu; 1 node(s) could "
                                 "hold one")


def test_a_group_is_ready_when_every_pod_of_it_is():
    lws = live_lws()
    both = [group_pod(lws, 0, 0), group_pod(lws, 0, 1)]
    d = decide(multi(children=[live_service(MULTI, nodes=2), lws], pods=both), UNKNOWN, NOW)
    assert d.phase == "Ready" and d.apply == ()
    assert cond(d)[2].startswith("1/1 replicas (each a group of 2 pods on 2 nodes) are ready and serving at")

    waiting = [group_pod(lws, 0, 0), group_pod(lws, 0, 1, ready=False)]
    d = decide(multi(children=[live_service(MULTI, nodes=2), lws], pods=waiting), UNKNOWN, NOW)
    assert d.phase == "Progressing" and cond(d)[1] == "PodsNotReady"
    assert cond(d)[2] == ("0/1 replicas (each a group of 2 pods on 2 nodes) are ready; waiting for the model to load "
                          "and answer /health. Not ready yet: pod m-0-1 (a worker of group 0).")


def test_a_second_group_that_waits_for_gpus_names_its_pod_and_the_schedulers_message():
    lws = live_lws({"replicas": 2}, ready=1, replicas=2)
    pods = [group_pod(lws, 0, 0), group_pod(lws, 0, 1), group_pod(lws, 1, 0, ready=False, scheduled=False)]
    d = decide(multi({"replicas": 2}, children=[live_service(MULTI, nodes=2), lws], pods=pods), UNKNOWN, NOW)
    assert d.phase == "Unschedulable" and cond(d, "Stalled")[0] == "False"
    assert cond(d)[2] == ("1 of 2 replicas (each a group of 2 pods on 2 nodes) serve; pod m-1 (the leader of group 1) "
                          "waits for GPUs that no node has free now (nodes could hold the group once GPUs free up or "
                          "nodes are added). The scheduler says: 0/5 nodes are available: 2 Insufficient nvidia.com/gpu.")


def test_a_cluster_without_the_leaderworkerset_api_is_stalled_with_the_install_line():
    refused = {("LeaderWorkerSet", "m"): Refusal(404, "the server could not find the requested resource")}
    d = decide(replace(multi(children=[live_service(MULTI, nodes=2)]), refused=refused), UNKNOWN, NOW)
    status, reason, message = cond(d, "Stalled")
    assert (status, reason) == ("True", "LeaderWorkerSetMissing")
    assert message.startswith("LeaderWorkerSet/m cannot be made: this cluster has no LeaderWorkerSet API "
                              "(leaderworkerset.x-k8s.io/v1; HTTP 404: the server could not find the requested resource).")


def test_moving_from_one_node_to_two_replaces_the_deployment_with_a_leaderworkerset():
    one = {**MULTI, "nodes": 1}
    d = decide(multi(children=[live_service(one), live_deployment(one)]), UNKNOWN, NOW)
    assert ("LeaderWorkerSet", "m") in kinds(d.apply) and kinds(d.prune) == [("Deployment", "m")]


def test_a_missing_leaderworkerset_api_is_retried_other_4xx_wait_for_a_change():
    from llm_operator.decide.decision import retried

    missing = Refusal(404, "the server could not find the requested resource")
    assert retried("LeaderWorkerSet", missing) and not retried("Deployment", missing)
    assert retried("Deployment", Refusal(409, "conflict")) and retried("Service", Refusal(500, "etcd"))
    assert not retried("Service", Refusal(422, "invalid")) and not retried("LeaderWorkerSet", Refusal(403, "forbidden"))
    assert not retried("Service", Refusal(409, "taken", taken_by="owned by no controller"))


def test_the_autoscaler_reads_the_leaders_of_groups_only(monkeypatch):
    """Workers run headless (no HTTP): the load of a group is its leader's /metrics."""
    from types import SimpleNamespace

    from llm_operator.autoscale import policy as autoscaler
    from llm_operator.autoscale import loop as scaling

    lws = live_lws({"replicas": 2}, ready=2, replicas=2)
    pods = [group_pod(lws, g, w) for g in (0, 1) for w in (0, 1)]
    scraped = []

    def scrape(pod, metric, url, engine):
        scraped.append(pod["metadata"]["name"])
        return autoscaler.PodSample(pod["metadata"]["name"], 1.0)

    monkeypatch.setattr(scaling, "scrape", scrape)
    spec = {"replicas": 2, "autoscaling": {"mode": "operator", "minReplicas": 2, "maxReplicas": 2}}
    tick = scaling.tick(multi(spec, children=[lws], pods=pods), SimpleNamespace(pod_metrics_url="http://x/{pod}"),
                        None, now=1000.0)
    assert sorted(scraped) == ["m-0", "m-1"]        # not m-0-1, m-1-1
    assert tick.scale_to is None and tick.report["lastDecision"]["desiredReplicas"] == 2


def test_the_lws_install_line_names_the_version_the_local_plane_runs():
    from pathlib import Path

    from llm_operator.decide.decision import LWS_INSTALL

    pinned = dict(line.split("=", 1) for line in (Path(__file__).parents[3] / "hack" / "versions.env").read_text().split()
                  if "=" in line and not line.startswith("#"))["LWS_VERSION"]
    assert f"/download/{pinned}/manifests.yaml" in LWS_INSTALL
    for doc in ("README.md", "docs/install.md", "docs/multi-node.md", "charts/llm-operator/values.yaml"):
        assert LWS_INSTALL in (Path(__file__).parents[3] / doc).read_text(), doc

"""decide(): observed + look-ups -> children, prunes, status, Events. Literal inputs, one
test per branch the reconcile has. The steps of one concern each: test_cache_step.py (the
weight cache), test_writes.py (what is written of the children), test_placement.py (where
the pods can run)."""

from __future__ import annotations

import json

from decideobjects import (
    CACHE,
    KNOWN,
    LLAMA_70B,
    MISTRAL,
    NOW,
    PENDING,
    UNKNOWN,
    cond,
    job_pod,
    kinds,
    live_deployment,
    live_service,
    observed,
    parsed_spec,
    serving_pod,
)

from llm_operator.decide.decision import Lookups, decide, facts_query, with_applied
from llm_operator.facts import lookup as facts
from llm_operator.facts.hub import ModelFacts


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
    assert d.status["plan"] == {
        "known": False,
        "reason": "The plan is unknown: The Hub cannot be reached. Going on with 3 GPUs per replica.",
    }
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


def test_a_terminating_object_or_namespace_is_left_to_the_garbage_collector():
    assert decide(observed(meta={"deletionTimestamp": "2026-01-01T00:00:00Z"}), KNOWN, NOW).phase == "Terminating"
    d = decide(observed(namespace_terminating=True), KNOWN, NOW)
    assert d.phase == "Terminating" and d.apply == () and d.status_patch is None and d.events == ()


def test_scaled_to_zero_is_ready_and_says_how_to_serve():
    spec = {"replicas": 0}
    live = live_deployment(spec, ready=0, replicas=0)
    d = decide(observed(spec=spec, children=[live_service(spec), live]), KNOWN, NOW)
    assert d.phase == "ScaledToZero" and d.apply == ()
    assert cond(d)[:2] == ("True", "ScaledToZero") and "scale up to serve" in cond(d)[2]
    assert cond(d, "Reconciling")[0] == cond(d, "Stalled")[0] == "False"


SLEEPY = {"replicas": 0, "autoscaling": {"mode": "operator", "minReplicas": 0, "maxReplicas": 2}}


WOKEN = {"annotations": {"llm-operator.io/woken-by-request-at": "2026-01-01T00:00:00Z"}}


AT_ZERO = {
    "conditions": [
        {
            "type": "Ready",
            "status": "True",
            "reason": "ScaledToZero",
            "message": "Scaled to zero.",
            "lastTransitionTime": "2025-12-31T23:00:00Z",
        }
    ]
}


def test_min_replicas_0_at_zero_is_ready_and_says_a_request_wakes_it():
    live = live_deployment(SLEEPY, ready=0, replicas=0)
    d = decide(observed(spec=SLEEPY, children=[live_service(SLEEPY), live]), KNOWN, NOW)
    assert d.phase == "ScaledToZero" and d.apply == ()
    assert cond(d) == (
        "True",
        "ScaledToZero",
        "Scaled to zero: spec.replicas and autoscaling.minReplicas are 0, so no "
        "pod serves the model until a request through the gateway wakes it (or scale up: spec.replicas, "
        "or kubectl scale --replicas=N).",
    )
    assert cond(d, "Reconciling")[0] == cond(d, "Stalled")[0] == "False"
    assert "lastWokenByRequest" not in d.status


def _woken(status, ready=0):
    spec = {**SLEEPY, "replicas": 1}
    live = live_deployment(spec, ready=ready, replicas=1)
    return decide(
        observed(
            spec=spec,
            status=status,
            children=[live_service(spec), live],
            pods=[serving_pod(live, ready=bool(ready))],
            meta=WOKEN,
        ),
        KNOWN,
        NOW,
    )


def test_a_model_woken_by_a_request_says_so_while_it_starts():
    d = _woken(AT_ZERO)
    assert d.phase == "Progressing"
    assert cond(d) == (
        "False",
        "PodsNotReady",
        "Woken from zero by a request at 2026-01-01T00:00:00Z; 0/1 replicas "
        "are ready; waiting for the model to load and answer /health.",
    )
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
    starting = {
        "conditions": [
            {
                "type": "Ready",
                "status": "False",
                "reason": "PodsNotReady",
                "message": "0/1 replicas are ready; waiting for the model to load and answer /health.",
                "lastTransitionTime": "2026-01-01T00:00:00Z",
            }
        ]
    }
    assert cond(_woken(starting))[2].startswith("Woken from zero by a request at 2026-01-01T00:00:00Z; 0/1 replicas")


def test_an_old_wake_is_not_blamed_for_a_later_start():
    serving = {
        "lastWokenByRequest": "2026-01-01T00:00:00Z",
        "conditions": [
            {
                "type": "Ready",
                "status": "True",
                "reason": "Ready",
                "message": "1/1 replicas are ready.",
                "lastTransitionTime": "2026-01-01T00:05:00Z",
            }
        ],
    }
    d = _woken(serving)
    assert cond(d)[2] == "0/1 replicas are ready; waiting for the model to load and answer /health."
    assert not cond(_woken(d.status))[2].startswith("Woken")


def test_an_annotation_that_is_not_a_time_is_ignored():
    spec = {**SLEEPY, "replicas": 1}
    live = live_deployment(spec, ready=0, replicas=1)
    d = decide(
        observed(
            spec=spec,
            status=AT_ZERO,
            children=[live_service(spec), live],
            pods=[serving_pod(live, ready=False)],
            meta={"annotations": {"llm-operator.io/woken-by-request-at": "just now"}},
        ),
        KNOWN,
        NOW,
    )
    assert "lastWokenByRequest" not in d.status and not cond(d)[2].startswith("Woken")


def test_the_facts_query_takes_the_report_of_this_revisions_job():
    new = {**CACHE, "model": {"id": "org/mistral", "revision": "v2"}}
    report = {**MISTRAL, "revision": "v2", "commit": "abc"}
    old_status = {"modelFacts": {**MISTRAL, "revision": "main"}}
    q = facts_query(
        observed(
            spec=new,
            status=old_status,
            pods=[job_pod(spec=new, message=json.dumps(report)), job_pod(message=json.dumps(MISTRAL))],
        ),
        parsed_spec(new),
    )
    assert q.job_report["revision"] == "v2" and q.status_facts["revision"] == "main"


MISTRAL_AWQ = {
    **MISTRAL,
    "modelId": "org/mistral-awq",
    "parameterCount": 7241732096,
    "quantizationConfig": {"quant_method": "awq", "bits": 4, "group_size": 128},
}


def test_a_dtype_with_an_awq_checkpoint_is_blocked_naming_the_field():
    awq = Lookups(facts=facts.FactsAnswer(ModelFacts.from_dict(MISTRAL_AWQ), facts.HUB))
    d = decide(observed(spec={"model": {"id": "org/mistral-awq"}, "dtype": "float16"}), awq, NOW)
    assert d.apply == () and d.desired == ()
    assert d.phase == "Failed" and cond(d)[:2] == ("False", "EngineWouldRefuse")
    assert cond(d)[2] == (
        "TGI would refuse to start with this spec: spec.dtype cannot be set: the checkpoint is "
        "awq-quantized (quantization_config in its config.json), and TGI refuses a dtype with awq; "
        "leave spec.dtype unset (auto)."
    )
    assert cond(d, "Stalled")[0] == "True"
    assert [(e.type, e.reason) for e in d.events] == [("Warning", "EngineWouldRefuse")]
    # The nearest good spec: the same checkpoint with dtype auto serves.
    ok = decide(observed(spec={"model": {"id": "org/mistral-awq"}}), awq, NOW)
    assert ok.blocked is None and ("Deployment", "m") in kinds(ok.apply)


def test_an_exl2_checkpoint_on_two_gpus_is_blocked():
    exl2 = Lookups(
        facts=facts.FactsAnswer(
            ModelFacts.from_dict({**MISTRAL, "quantizationConfig": {"quant_method": "exl2", "bits": 4.0}}), facts.HUB
        )
    )
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
    assert cond(d)[2] == (
        "TGI would refuse to start with this spec: --max-batch-total-tokens in spec.engine.args (4096) "
        "must be at least spec.limits.maxTotalTokens (8192): one request may use the whole total."
    )
    spec["engine"]["args"][1] = "8192"
    assert decide(observed(spec=spec), KNOWN, NOW).blocked is None


def test_an_engine_arg_value_the_launcher_cannot_parse_is_blocked_even_without_facts():
    d = decide(observed(spec={"engine": {"args": ["--cuda-graphs", "1,two"]}}), UNKNOWN, NOW)
    assert d.desired == () and cond(d)[1] == "EngineWouldRefuse"
    assert "--cuda-graphs in spec.engine.args: '1,two' is not a value TGI's launcher accepts" in cond(d)[2]


def test_a_new_reason_in_the_same_phase_posts_an_event():
    """PodsNotReady -> CrashLoopBackOff (still Progressing: one restart) is news worth a Warning."""
    live = live_deployment(ready=0)
    pod = serving_pod(live, ready=False)
    before = decide(observed(children=[live_service(), live], pods=[pod]), KNOWN, NOW)
    assert before.phase == "Progressing" and cond(before)[1] == "PodsNotReady"
    pod["status"]["containerStatuses"] = [
        {
            "name": "engine",
            "restartCount": 1,
            "state": {"waiting": {"reason": "CrashLoopBackOff", "message": "back-off 10s"}},
        }
    ]
    after = decide(observed(status=before.status, children=[live_service(), live], pods=[pod]), KNOWN, NOW)
    assert after.phase == "Progressing" and cond(after)[1] == "CrashLoopBackOff"
    assert [(e.type, e.reason) for e in after.events] == [("Warning", "CrashLoopBackOff")]
    again = decide(observed(status=after.status, children=[live_service(), live], pods=[pod]), KNOWN, NOW)
    assert again.events == () and again.status_patch is None

"""Autoscaler: recorded-style TGI /metrics texts in, literal replica decisions out. `now` is
always passed in, so no test sleeps."""

import json
from pathlib import Path

import pytest

from llm_operator.api import Autoscaling
from llm_operator.autoscale.policy import Observation, PodSample, ScalerState, decide, load_of, parse_tgi_metrics

TEXTS = {
    name: (Path(__file__).parents[2] / "data" / "tgi-metrics" / f"{name}.txt").read_text()
    for name in ("idle", "busy", "burst", "saturated")
}


def spec(**kw) -> Autoscaling:
    return Autoscaling(
        mode="operator",
        **{"min_replicas": 1, "max_replicas": 4, "metric": "queue", "target": 8, "scale_down_delay_seconds": 300, **kw},
    )


def pods(*names: str | None, metric: str = "queue") -> list[PodSample]:
    """One PodSample per recorded text name; None is a pod whose scrape failed."""
    return [
        PodSample(f"pod-{i}", None if n is None else load_of(parse_tgi_metrics(TEXTS[n]), metric))
        for i, n in enumerate(names)
    ]


# -- parsing --------------------------------------------------------------------------


def test_parse_recorded_text_keeps_gauges_and_counters_and_drops_histograms():
    m = parse_tgi_metrics(TEXTS["busy"])
    assert (m["tgi_queue_size"], m["tgi_batch_current_size"]) == (20.0, 24.0)
    assert (m["tgi_batch_current_max_tokens"], m["tgi_batch_max_total_tokens"]) == (41216.0, 129264.0)
    assert m["tgi_batch_inference_count"] == 1402113 + 9880  # summed over method="decode|prefill"
    assert m["tgi_request_failure"] == 17.0
    assert not [k for k in m if k.startswith(("tgi_request_duration", "tgi_batch_next", "tgi_request_skipped"))]


def test_parse_sums_label_sets_and_survives_odd_lines():
    m = parse_tgi_metrics(
        "# HELP tgi_queue_size Current queue size\n"
        "# TYPE tgi_queue_size gauge\n"
        'tgi_queue_size{adapter="a } b",note="say \\"hi\\""} 3 1712000000000\n'
        'tgi_queue_size{adapter="base"} 4.5\n'
        "tgi_batch_current_size NaN\n"
        "tgi_batch_current_max_tokens +Inf\n"
        "this line is not a sample\n"
        'tgi_broken{le="1" 2\n'
        "# TYPE tgi_x histogram\n"
        'tgi_x_bucket{le="+Inf"} 9\ntgi_x_sum 4\ntgi_x_count 9\n'
    )
    assert m["tgi_queue_size"] == 7.5
    assert sorted(m) == ["tgi_batch_current_max_tokens", "tgi_batch_current_size", "tgi_queue_size"]
    assert m["tgi_batch_current_max_tokens"] == float("inf")


def test_load_of_missing_gauge_non_tgi_text_and_nan():
    # a fresh TGI pod sets tgi_batch_max_total_tokens at warmup, the queue gauge only later
    assert load_of(parse_tgi_metrics("tgi_batch_max_total_tokens 129264\n"), "queue") == 0.0
    assert load_of(parse_tgi_metrics("<html>502 Bad Gateway</html>\n"), "queue") is None
    assert load_of(parse_tgi_metrics("tgi_queue_size NaN\n"), "queue") is None
    assert load_of(parse_tgi_metrics("tgi_queue_size 2\ntgi_batch_current_size +Inf\n"), "concurrency") is None
    assert load_of(parse_tgi_metrics(TEXTS["burst"]), "queue") == 60.0
    assert load_of(parse_tgi_metrics(TEXTS["burst"]), "concurrency") == 92.0  # batch 32 + queue 60
    with pytest.raises(ValueError, match="unknown autoscaling metric 'rps'"):
        load_of({"tgi_queue_size": 1.0}, "rps")


# -- decisions ------------------------------------------------------------------------


def test_idle_stays_at_min():
    d, state = decide(ScalerState(), pods("idle"), 1, spec(), now=1000.0)
    assert (d.action, d.desired_replicas) == ("hold", 1)
    assert (
        d.reason
        == "queue 0 across 1 of 1 pods, target 8 per replica -> 0 replicas (raised to minReplicas 1); holding at 1."
    )
    assert state.low_since is None


def test_burst_scales_up_at_once_capped_at_max():
    d, state = decide(ScalerState(), pods("burst"), 1, spec(), now=1000.0)
    assert (d.action, d.desired_replicas) == ("scale-up", 4)
    assert d.reason == (
        "queue 60 across 1 of 1 pods, target 8 per replica -> 8 replicas "
        "(capped at maxReplicas 4); scaling up from 1 to 4."
    )
    assert state.last_scale_time == 1000.0
    d, _ = decide(ScalerState(), pods("burst"), 1, spec(max_replicas=10), now=1000.0)
    assert (d.action, d.desired_replicas) == ("scale-up", 8)


def test_burst_after_quiet_window_is_not_averaged_away():
    quiet = ScalerState(
        window=(Observation(955.0, 0.0, 1, 1), Observation(970.0, 0.0, 1, 1), Observation(985.0, 0.0, 1, 1))
    )
    d, state = decide(quiet, pods("burst"), 1, spec(max_replicas=10), now=1000.0)
    assert (d.action, d.desired_replicas) == ("scale-up", 8)  # newest 60, not the mean 15
    assert d.inputs["windowMean"] == 15.0 and len(state.window) == 4


def test_saturated_pods():
    d, _ = decide(ScalerState(), pods("saturated", "saturated"), 2, spec(max_replicas=40), now=1000.0)
    assert (d.action, d.desired_replicas) == ("scale-up", 36)  # ceil(284 / 8)


def test_unreachable_pod_is_estimated_from_the_others_not_zero():
    d, _ = decide(ScalerState(), pods("busy", "busy", "busy", None), 4, spec(max_replicas=16), now=1000.0)
    assert (d.action, d.desired_replicas) == ("scale-up", 10)  # (60 + 20) / 8; as zero it would be 8
    assert d.reason == (
        "queue 60 across 3 of 4 pods (1 unreachable, estimated 20 more), "
        "target 8 per replica -> 10 replicas; scaling up from 4 to 10."
    )
    assert (d.inputs["knownPods"], d.inputs["pods"], d.inputs["load"]) == (3, 4, 80.0)


def test_all_unreachable_holds_and_restarts_the_scale_down_timer():
    state = ScalerState(window=(Observation(990.0, 0.0, 2, 2),), low_since=700.0, low_peak=1)
    d, after = decide(state, pods(None, None, None), 3, spec(), now=1000.0)
    assert (d.action, d.desired_replicas) == ("hold", 3)  # 300 s of low load, but no data now
    assert d.reason == "no queue data: none of 3 ready pods answered; holding at 3; never scaling down without data."
    assert (after.window, after.low_since) == (state.window, None)


def test_scale_down_waits_for_the_delay():
    s, t = spec(), 1000.0
    d, state = decide(ScalerState(), pods("idle", "idle", "idle", "idle"), 4, s, now=t)
    assert (d.action, d.desired_replicas, state.low_since) == ("hold", 4, t)
    d, state = decide(state, pods("idle", "idle", "idle", "idle"), 4, s, now=t + 299)
    assert (d.action, d.desired_replicas) == ("hold", 4)
    assert d.reason.endswith("below 4 for 299 of 300 s; holding at 4.")
    d, state = decide(state, pods("idle", "idle", "idle", "idle"), 4, s, now=t + 300)
    assert (d.action, d.desired_replicas) == ("scale-down", 1)
    assert d.reason.endswith("below 4 for 300 s (delay 300 s); scaling down to 1.")
    assert (state.low_since, state.low_peak, state.last_scale_time) == (None, None, t + 300)


def test_scale_down_goes_to_the_highest_need_seen_during_the_delay():
    s = spec()
    _, state = decide(ScalerState(), pods("idle", "idle", "idle", "idle"), 4, s, now=1000.0)
    _, state = decide(state, pods("busy", "idle", "idle", "idle"), 4, s, now=1100.0)  # 20 -> 3 < 4
    assert (state.low_since, state.low_peak) == (1000.0, 3)
    d, _ = decide(state, pods("idle", "idle", "idle", "idle"), 4, s, now=1300.0)
    assert (d.action, d.desired_replicas) == ("scale-down", 3)


def test_load_back_at_current_restarts_the_delay():
    s = spec()
    _, state = decide(ScalerState(), pods("idle", "idle", "idle", "idle"), 4, s, now=1000.0)
    _, state = decide(state, pods("burst", "idle", "idle", "idle"), 4, s, now=1100.0)  # 60 -> 8, capped 4
    assert state.low_since is None
    d, state = decide(state, pods("idle", "idle", "idle", "idle"), 4, s, now=1300.0)
    assert (d.action, state.low_since) == ("hold", 1300.0)


def test_one_quiet_scrape_between_busy_ones_does_not_start_the_timer():
    s, state = spec(), ScalerState()
    for t in (0.0, 15.0, 30.0):
        d, state = decide(state, pods("busy", "busy", "busy", "busy"), 4, s, now=t)
    d, state = decide(state, pods("idle", "idle", "idle", "idle"), 4, s, now=45.0)
    assert (d.action, d.inputs["load"], d.inputs["windowMean"], state.low_since) == ("hold", 0.0, 60.0, None)


def test_bounds():
    d, _ = decide(ScalerState(), pods("busy"), 6, spec(), now=1000.0)
    assert (d.action, d.desired_replicas) == ("scale-down", 4)  # above max: no delay
    d, _ = decide(ScalerState(), [], 0, spec(min_replicas=2), now=1000.0)
    assert (d.action, d.desired_replicas) == ("scale-up", 2)
    assert (
        d.reason == "no queue data: none of 0 ready pods answered; 0 replicas is below minReplicas 2; scaling up to 2."
    )
    d, _ = decide(
        ScalerState(), pods("idle", "idle", "idle"), 3, spec(min_replicas=2, scale_down_delay_seconds=0), now=1000.0
    )
    assert (d.action, d.desired_replicas) == ("scale-down", 2)  # never below min


def test_concurrency_adds_batch_and_queue():
    d, _ = decide(
        ScalerState(),
        pods("burst", metric="concurrency"),
        1,
        spec(metric="concurrency", target=16, max_replicas=10),
        now=1.0,
    )
    assert (d.desired_replicas, d.inputs["load"]) == (6, 92.0)  # ceil((32 + 60) / 16)
    d, _ = decide(ScalerState(), pods("burst"), 1, spec(target=16, max_replicas=10), now=1.0)
    assert d.desired_replicas == 4  # queue alone: ceil(60 / 16)


def test_state_survives_a_restart_mid_delay():
    s, idle = spec(), pods("idle", "idle", "idle", "idle")
    _, state = decide(ScalerState(), idle, 4, s, now=1000.0)
    _, state = decide(state, idle, 4, s, now=1030.0)
    stored = json.loads(json.dumps(state.to_dict()))
    assert {k: v for k, v in stored.items() if k != "lastDecision"} == {
        "window": [[1000.0, 0.0, 4, 4], [1030.0, 0.0, 4, 4]],
        "lowSince": 1000.0,
        "lowPeak": 1,
        "lastScaleTime": None,
        "idleSince": None,
        "requestsSeen": None,
    }
    assert stored["lastDecision"]["action"] == "hold" and stored["lastDecision"]["time"] == 1030.0
    restored = ScalerState.from_dict(stored)
    assert restored == state
    d, restored = decide(restored, idle, 4, s, now=1299.0)
    assert d.action == "hold"
    d, _ = decide(restored, idle, 4, s, now=1300.0)
    assert (d.action, d.desired_replicas) == ("scale-down", 1)
    # without the stored timer the delay would start over: the restore is what keeps it
    d, _ = decide(ScalerState.from_dict(None), idle, 4, s, now=1300.0)
    assert d.action == "hold"


def test_fresh_state_dict_has_every_key():
    assert ScalerState().to_dict() == {
        "window": [],
        "lowSince": None,
        "lowPeak": None,
        "lastScaleTime": None,
        "lastDecision": None,
        "idleSince": None,
        "requestsSeen": None,
    }
    assert ScalerState.from_dict({}) == ScalerState()


def test_window_is_bounded_in_age_and_length():
    s, state = spec(), ScalerState()
    for t in range(0, 100, 2):
        _, state = decide(state, pods("idle"), 1, s, now=float(t))
    assert [o.time for o in state.window] == [float(t) for t in range(60, 100, 2)]  # 20 entries, last 60 s


# -- vLLM 0.33.0's metric names (issue 15) ---------------------------------------------

VLLM_TEXTS = {
    name: (Path(__file__).parents[2] / "data" / "vllm-metrics" / f"{name}.txt").read_text() for name in ("idle", "busy")
}


def test_both_autoscaler_modes_read_vllms_gauges():
    from llm_operator import api
    from llm_operator.decide import manifests as resources
    from llm_operator.engines.tgi import TGI
    from llm_operator.engines.vllm import ENGINE as VLLM

    busy = parse_tgi_metrics(VLLM_TEXTS["busy"])
    # Summed over label sets: engine="0", model_name=...
    assert (busy["vllm:num_requests_waiting"], busy["vllm:num_requests_running"]) == (5.0, 12.0)
    assert load_of(busy, "queue", VLLM.load_metrics) == 5.0
    assert load_of(busy, "concurrency", VLLM.load_metrics) == 17.0
    assert load_of(parse_tgi_metrics(VLLM_TEXTS["idle"]), "concurrency", VLLM.load_metrics) == 0.0
    # Each engine reads only its own page: the other's is "unknown", never "idle".
    assert load_of(busy, "queue", TGI.load_metrics) is None
    assert load_of(parse_tgi_metrics(TEXTS["busy"]), "queue", VLLM.load_metrics) is None
    # HPA mode: the per-pod metric the custom-metrics adapter serves (README's rules).
    spec = api.parse_spec(
        {
            "model": {"id": "org/m"},
            "engine": {"name": "vllm"},
            "autoscaling": {"mode": "hpa", "metric": "queue", "target": 4},
        }
    )
    hpa = next(
        o
        for o in resources.desired_children(resources.Owner("m", "ns", "u"), spec, resources.Decisions(gpus=1))
        if o["kind"] == "HorizontalPodAutoscaler"
    )
    assert hpa["spec"]["metrics"][0]["pods"]["metric"]["name"] == "vllm_num_requests_waiting"


# -- minReplicas 0: a model may sleep at zero; only a request wakes it ---------------------


def test_min_replicas_0_at_zero_stays_at_zero():
    d, state = decide(ScalerState(), [], 0, spec(min_replicas=0), now=1000.0)
    assert (d.action, d.desired_replicas) == ("hold", 0)
    assert d.reason == (
        "no queue data: none of 0 ready pods answered; holding at 0 (minReplicas 0): "
        "a request through the gateway wakes the model."
    )
    assert state.last_scale_time is None
    # even a pod still answering while it shuts down does not wake it
    d, _ = decide(ScalerState(), pods("busy"), 0, spec(min_replicas=0), now=1000.0)
    assert (d.action, d.desired_replicas) == ("hold", 0)


def test_a_model_just_woken_is_kept_at_1():
    # replicas 1 from the gateway, the pod not ready yet: no sample at all
    d, state = decide(ScalerState(), [], 1, spec(min_replicas=0, scale_down_delay_seconds=0), now=1000.0)
    assert (d.action, d.desired_replicas) == ("hold", 1)
    # ready and idle: the floor while running is 1, so no timer starts toward zero
    d, state = decide(state, pods("idle"), 1, spec(min_replicas=0, scale_down_delay_seconds=0), now=1015.0)
    assert (d.action, d.desired_replicas, state.low_since) == ("hold", 1, None)
    assert d.reason == (
        "queue 0 across 1 of 1 pods, target 8 per replica -> 0 replicas (raised to 1 while running); holding at 1."
    )


def test_min_replicas_0_scales_down_to_1_never_to_0():
    idle = pods("idle", "idle", "idle")
    d, state = decide(ScalerState(), idle, 3, spec(min_replicas=0, scale_down_delay_seconds=0), now=1000.0)
    assert (d.action, d.desired_replicas) == ("scale-down", 1)
    d, _ = decide(state, pods("idle"), 1, spec(min_replicas=0, scale_down_delay_seconds=0), now=2000.0)
    assert (d.action, d.desired_replicas) == ("hold", 1)


def test_min_replicas_0_scales_up_with_load_as_ever():
    d, _ = decide(ScalerState(), pods("busy"), 1, spec(min_replicas=0), now=1000.0)
    assert (d.action, d.desired_replicas) == ("scale-up", 3)  # ceil(20 / 8)

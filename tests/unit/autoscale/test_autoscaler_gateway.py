"""Autoscaling from the gateway's own counts, and scale to zero after a time with no request:
literal /metrics texts of the gateway in, literal decisions out; `now` is passed in."""

import json

import pytest
from pydantic import ValidationError

from llm_operator.api import Autoscaling
from llm_operator.autoscale.policy import (
    GatewayCounts,
    PodSample,
    ScalerState,
    decide,
    gateway_counts,
    sum_gateway_counts,
)

# As prometheus_client writes the gateway's registry (gateway/metrics.py), trimmed.
GATEWAY_A = """# HELP llm_gateway_requests_in_flight Requests for the model the gateway has taken and not yet answered.
# TYPE llm_gateway_requests_in_flight gauge
llm_gateway_requests_in_flight{model="team-a/mistral"} 5.0
llm_gateway_requests_in_flight{model="team-a/qwen"} 0.0
# TYPE llm_gateway_requests_held gauge
llm_gateway_requests_held{model="team-a/mistral"} 2.0
# TYPE llm_gateway_requests_total counter
llm_gateway_requests_total{code="200",model="team-a/mistral"} 40.0
llm_gateway_requests_total{code="503",model="team-a/mistral"} 2.0
llm_gateway_requests_total{code="200",model="team-a/qwen"} 7.0
llm_gateway_requests_created{code="200",model="team-a/qwen"} 1.7e+09
# TYPE llm_gateway_time_to_first_byte_seconds histogram
llm_gateway_time_to_first_byte_seconds_bucket{le="0.001",model="team-a/mistral"} 3.0
llm_gateway_requests_in_flight{model="team-a/broken"} NaN
"""
GATEWAY_B = """llm_gateway_requests_in_flight{model="team-a/mistral"} 3.0
llm_gateway_requests_total{code="200",model="team-a/mistral"} 10.0
"""


def spec(**kw) -> Autoscaling:
    return Autoscaling(
        mode="operator",
        **{
            "min_replicas": 0,
            "max_replicas": 4,
            "metric": "concurrency",
            "target": 4,
            "scale_down_delay_seconds": 60,
            "scale_to_zero_after_seconds": 120,
            **kw,
        },
    )


def test_gateway_counts_by_model_summing_codes_and_skipping_histograms_and_nan():
    counts = gateway_counts(GATEWAY_A)
    assert counts["team-a/mistral"] == GatewayCounts(in_flight=5.0, held=2.0, requests=42.0)
    assert counts["team-a/qwen"] == GatewayCounts(in_flight=0.0, held=0.0, requests=7.0)
    assert "team-a/broken" not in counts
    assert gateway_counts("not metrics at all\n{}\n") == {}


def test_counts_sum_over_gateway_replicas_and_one_that_did_not_answer_is_unknown():
    readings = [gateway_counts(GATEWAY_A), None, gateway_counts(GATEWAY_B)]
    samples, total = sum_gateway_counts(readings, "team-a/mistral")
    assert samples == [PodSample("gateway-0", 5.0), PodSample("gateway-1", None), PodSample("gateway-2", 3.0)]
    assert total == GatewayCounts(in_flight=8.0, held=2.0, requests=52.0)
    # a model no replica has seen a request for reads as zero, not unknown
    samples, total = sum_gateway_counts(readings, "team-b/new")
    assert [x.load for x in samples] == [0.0, None, 0.0] and total == GatewayCounts()
    assert sum_gateway_counts([None, None], "team-a/mistral") == (
        [PodSample("gateway-0", None), PodSample("gateway-1", None)],
        None,
    )


def test_scales_up_from_the_gateways_in_flight_with_the_estimate_for_a_silent_replica():
    samples, total = sum_gateway_counts([gateway_counts(GATEWAY_A), None, gateway_counts(GATEWAY_B)], "team-a/mistral")
    d, _ = decide(ScalerState(), samples, 1, spec(), now=100.0, source="gateway", gateway=total)
    # 8 known + the silent replica estimated at the mean (4) = 12, target 4 -> 3
    assert (d.action, d.desired_replicas) == ("scale-up", 3)
    assert d.reason.startswith(
        "concurrency 8 through the gateway (2 of 3 gateway replicas answered) "
        "(1 unreachable, estimated 4 more), target 4 per replica -> 3 replicas; "
        "scaling up from 1 to 3"
    )


def quiet(requests: float) -> tuple[list[PodSample], GatewayCounts]:
    return [PodSample("gateway-0", 0.0)], GatewayCounts(requests=requests)


def test_scales_to_zero_after_the_idle_time_and_a_request_in_between_restarts_it():
    s, state = spec(), ScalerState()
    d, state = decide(state, quiet(42)[0], 1, s, now=0.0, source="gateway", gateway=quiet(42)[1])
    assert state.idle_since is None and state.requests_seen == 42  # first reading: nothing to compare
    d, state = decide(state, quiet(42)[0], 1, s, now=10.0, source="gateway", gateway=quiet(42)[1])
    assert state.idle_since == 10.0 and d.action == "hold"
    assert d.reason.endswith("holding at 1; no request for 0 of 120 s before scaling to 0.")
    d, state = decide(state, quiet(43)[0], 1, s, now=100.0, source="gateway", gateway=quiet(43)[1])
    assert state.idle_since is None  # a request came: the clock restarts
    d, state = decide(state, quiet(43)[0], 1, s, now=110.0, source="gateway", gateway=quiet(43)[1])
    d, state = decide(state, quiet(43)[0], 1, s, now=229.0, source="gateway", gateway=quiet(43)[1])
    assert (d.action, state.idle_since) == ("hold", 110.0)
    d, state = decide(state, quiet(43)[0], 1, s, now=230.0, source="gateway", gateway=quiet(43)[1])
    assert (d.action, d.desired_replicas) == ("scale-down", 0)
    assert d.reason == (
        "concurrency 0 through the gateway (1 of 1 gateway replicas answered), target 4 per replica -> "
        "0 replicas (raised to 1 while running); no request through the gateway for 120 s "
        "(scaleToZeroAfterSeconds 120); scaling to 0, the next request wakes the model."
    )
    # at zero it sleeps until the gateway wakes it
    d, state = decide(state, quiet(43)[0], 0, s, now=240.0, source="gateway", gateway=quiet(43)[1])
    assert (d.action, d.desired_replicas, state.idle_since) == ("hold", 0, None)


def test_requests_in_flight_or_held_are_not_idle_even_with_the_counter_still():
    s = spec()
    held = GatewayCounts(in_flight=3.0, held=3.0, requests=42.0)
    _, state = decide(
        ScalerState(requests_seen=42.0, idle_since=0.0),
        [PodSample("gateway-0", 3.0)],
        1,
        s,
        now=500.0,
        source="gateway",
        gateway=held,
    )
    assert state.idle_since is None


def test_the_idle_clock_survives_a_restart_through_status():
    s, state = spec(), ScalerState()
    for now in (0.0, 10.0, 60.0):
        _, state = decide(state, quiet(42)[0], 2, s, now=now, source="gateway", gateway=quiet(42)[1])
    stored = json.loads(json.dumps(state.to_dict()))
    assert (stored["idleSince"], stored["requestsSeen"]) == (10.0, 42.0)
    d, _ = decide(ScalerState.from_dict(stored), quiet(42)[0], 2, s, now=130.0, source="gateway", gateway=quiet(42)[1])
    assert (d.action, d.desired_replicas) == ("scale-down", 0)
    d, _ = decide(ScalerState.from_dict(None), quiet(42)[0], 2, s, now=130.0, source="gateway", gateway=quiet(42)[1])
    assert d.action != "scale-down" or d.desired_replicas != 0


def test_without_the_gateways_counts_it_never_sleeps_and_says_why():
    d, state = decide(
        ScalerState(idle_since=0.0, requests_seen=1.0), [PodSample("pod-0", 0.0)], 1, spec(), now=10_000.0
    )
    assert (d.desired_replicas, state.idle_since) == (1, None)
    assert "not scaling to zero: scaleToZeroAfterSeconds needs the gateway's request counts" in d.reason


def test_unset_never_scales_a_running_model_to_zero():
    s, state = spec(scale_to_zero_after_seconds=None), ScalerState()
    for now in (0.0, 10.0, 100_000.0):
        d, state = decide(state, quiet(42)[0], 1, s, now=now, source="gateway", gateway=quiet(42)[1])
    assert (d.desired_replicas, state.idle_since) == (1, None)


def test_scale_to_zero_after_needs_min_replicas_0():
    with pytest.raises(ValidationError, match="scaleToZeroAfterSeconds needs minReplicas 0"):
        spec(min_replicas=1)
    with pytest.raises(ValidationError):
        spec(scale_to_zero_after_seconds=0)


def test_gateway_urls_are_the_fixed_ones_and_the_ready_gateway_pods():
    from types import SimpleNamespace

    from llm_operator.autoscale import loop as scaling
    from llm_operator.controller.context import Settings

    def pod(name, ip, ready):
        return {
            "metadata": {"name": name},
            "status": {"podIP": ip, "conditions": [{"type": "Ready", "status": "True" if ready else "False"}]},
        }

    asked = []

    class Kube:
        def request(self, method, path, query=None, **kw):
            asked.append((method, path, query))
            return {"items": [pod("gw-a", "127.0.0.5", True), pod("gw-b", "127.0.0.6", False), pod("gw-c", "", True)]}

    ctx = SimpleNamespace(
        kube=Kube(),
        settings=Settings(
            gateway_metrics_urls=("http://127.0.0.1:18090/metrics",),
            gateway_pods="llm-system/app.kubernetes.io/component=gateway",
            gateway_port=8080,
        ),
    )
    assert scaling.gateway_urls(ctx) == ["http://127.0.0.1:18090/metrics", "http://127.0.0.5:8080/metrics"]
    assert asked == [
        ("GET", "/api/v1/namespaces/llm-system/pods", {"labelSelector": "app.kubernetes.io/component=gateway"})
    ]
    assert scaling.read_gateways(SimpleNamespace(settings=Settings())) is None

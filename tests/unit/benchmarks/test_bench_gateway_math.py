"""benchmarks/gateway's figures: percentiles, pooled rounds, added latency, noise, verdicts; the
routing scenario's load and prompts; Prometheus text; vllm bench's results."""

from __future__ import annotations

import importlib.util
import math
from pathlib import Path

import pytest

# The entry point, loaded by path: it puts benchmarks/ on sys.path, where the package gateway is.
_spec = importlib.util.spec_from_file_location(
    "bench_gateway", Path(__file__).resolve().parents[3] / "benchmarks" / "bench_gateway.py"
)
bench_gateway = importlib.util.module_from_spec(_spec)
_spec.loader.exec_module(bench_gateway)

from gateway import clients, figures, metrics, prompts  # noqa: E402


def test_nearest_rank_percentiles():
    values = [float(v) for v in range(1, 101)]  # 1..100
    assert figures.percentile(values, 50) == 50.0
    assert figures.percentile(values, 99) == 99.0
    assert figures.percentile(values, 100) == 100.0
    assert figures.percentile([7.0], 99) == 7.0
    assert figures.percentile([3.0, 1.0, 2.0], 50) == 2.0  # order of arrival does not matter
    assert math.isnan(figures.percentile([], 50))


def test_rounds_pool_their_answers_errors_and_seconds():
    merged = figures.merge_rounds([([0.001, 0.002], 1, 2.0), ([0.003, 0.004], 0, 2.0)])
    assert merged["requests"] == 4 and merged["errors"] == 1
    assert merged["rps"] == 1.0  # 4 answers in 4 s
    assert merged["ttfb_p50_ms"] == pytest.approx(2.0)
    assert merged["ttfb_p99_ms"] == pytest.approx(4.0)


def test_added_latency_is_gateway_minus_direct_and_throughput_a_ratio():
    direct = {"rps": 100.0, "ttfb_p50_ms": 2.0, "ttfb_p99_ms": 10.0}
    gateway = {"rps": 90.0, "ttfb_p50_ms": 3.5, "ttfb_p99_ms": 14.0}
    c = figures.compare(direct, gateway)
    assert c == {"added_p50_ms": 1.5, "added_p99_ms": 4.0, "rps_ratio": 0.9}


def test_noise_is_the_spread_of_the_direct_rounds():
    n = figures.noise([([0.001] * 99 + [0.010], 0, 1.0), ([0.002] * 99 + [0.004], 0, 1.0)])
    assert n["p50_ms"] == pytest.approx(1.0) and n["p99_ms"] == pytest.approx(1.0)
    assert math.isnan(figures.noise([([0.001], 0, 1.0)])["p99_ms"])


def test_verdicts_say_met_and_not_met_against_the_targets():
    results = {
        "1": {"compare": {"added_p99_ms": 9.0, "rps_ratio": 0.95}},
        "64": {"compare": {"added_p99_ms": 6.0, "rps_ratio": 0.79}},
    }
    lines = figures.verdicts(results)
    assert lines[0].startswith("added p99 TTFB at 64 streams: 6.00 ms") and lines[0].endswith("not met")
    assert lines[1].startswith("throughput through the gateway at 1 streams: 0.95x") and lines[1].endswith(": met")
    assert lines[2].endswith("not met")
    ok = figures.verdicts({"64": {"compare": {"added_p99_ms": 4.9, "rps_ratio": 0.8}}})
    assert ok[0].endswith(": met") and ok[1].endswith(": met")


# -- the routing scenario ------------------------------------------------------------------


def test_prefixes_are_long_distinct_from_the_first_word_and_the_same_every_run():
    texts = prompts.routing_prompts(3, 800)
    assert [len(p.split()) for p in texts] == [800, 800, 800]
    assert [p.split()[0] for p in texts] == ["doc0", "doc1", "doc2"]
    assert texts == prompts.routing_prompts(3, 800)


def test_arrivals_are_poisson_at_the_rate_with_each_user_bound_to_one_prefix():
    plan = clients.arrivals(rate=100.0, seconds=50.0, users=2000, prefixes=32)
    assert 4700 < len(plan) < 5300  # 5000 expected; sd ~71
    assert all(0 <= t < 50.0 for t, _, _ in plan) and plan == sorted(plan)
    assert all(prefix == user % 32 for _, user, prefix in plan)
    assert plan == clients.arrivals(rate=100.0, seconds=50.0, users=2000, prefixes=32)


def test_round_robin_capacity_counts_a_miss_share_of_prefill():
    # 4 replicas x 8 slots; 2/3 of requests prefill 0.2 s, every one decodes 0.08 s
    assert figures.round_robin_capacity(4, 8, 0.2, 0.08, 1 / 3) == pytest.approx(32 / (0.2 * 2 / 3 + 0.08))
    assert figures.round_robin_capacity(4, 8, 0.2, 0.08, 1.0) == pytest.approx(400.0)


def test_load_spread_counts_a_replica_that_got_nothing():
    assert figures.load_spread({"a": 10, "b": 10, "c": 10, "d": 10}, 4) == 1.0
    assert figures.load_spread({"a": 20, "b": 10, "c": 10}, 4) == 2.0  # mean 10, d got 0
    assert math.isnan(figures.load_spread({}, 4))


def test_hit_rate_is_cached_over_prompt_tokens_between_two_readings():
    before = {"e1": (100.0, 1000.0), "e2": (0.0, 0.0)}
    after = {"e1": (1000.0, 2000.0), "e2": (800.0, 1000.0)}
    assert figures.hit_rate(before, after) == pytest.approx(1700 / 2000)
    assert math.isnan(figures.hit_rate(after, after))


def test_routing_verdicts_against_the_issue_targets():
    rr = {"hit_rate": 0.3, "ttft_mean_ms": 150.0, "load_max_over_mean": 1.0}
    good = {"hit_rate": 0.95, "ttft_mean_ms": 25.0, "load_max_over_mean": 1.1}
    lines = figures.routing_verdicts({"round-robin": rr, "prefix": good})
    assert [line.rsplit(": ", 1)[1] for line in lines] == ["met", "met", "met"]
    assert "6.0x (target >= 5x)" in lines[1]
    bad = {"hit_rate": 0.75, "ttft_mean_ms": 50.0, "load_max_over_mean": 1.3}
    assert [line.rsplit(": ", 1)[1] for line in figures.routing_verdicts({"round-robin": rr, "prefix": bad})] == [
        "not met",
        "not met",
        "not met",
    ]


# -- real engines (--real-engines) ---------------------------------------------------------

VLLM_METRICS = """# HELP vllm:prefix_cache_hits_total Prefix cache hits, in terms of number of cached tokens.
# TYPE vllm:prefix_cache_hits_total counter
vllm:prefix_cache_hits_total{engine="0",model_name="bench"} 5632.0
vllm:prefix_cache_hits_created{engine="0",model_name="bench"} 1.79e+09
vllm:prefix_cache_queries_total{engine="0",model_name="bench"} 9309.0
vllm:request_success_total{engine="0",finished_reason="stop",model_name="bench"} 3.0
vllm:request_success_total{engine="0",finished_reason="length",model_name="bench"} 6.0
vllm:cache_config_info{block_size="128",enable_prefix_caching="True",num_gpu_blocks="208"} 1.0
fake_engine_prefix_cache_hits_tokens 12
"""


def test_prometheus_sums_every_label_set_of_one_metric_and_no_other():
    assert metrics.prometheus_sum(VLLM_METRICS, "vllm:prefix_cache_hits_total") == 5632.0
    assert metrics.prometheus_sum(VLLM_METRICS, "vllm:request_success_total") == 9.0  # stop + length
    assert metrics.prometheus_sum(VLLM_METRICS, "fake_engine_prefix_cache_hits_tokens") == 12.0
    assert metrics.prometheus_sum(VLLM_METRICS, "vllm:prefix_cache_hits") == 0.0  # a prefix of a name is not it
    assert metrics.prometheus_labels(VLLM_METRICS, "vllm:cache_config_info") == {
        "block_size": "128",
        "enable_prefix_caching": "True",
        "num_gpu_blocks": "208",
    }
    assert metrics.prometheus_labels(VLLM_METRICS, "vllm:missing_info") == {}


def test_sized_prompts_are_the_longest_run_of_words_within_the_token_count():
    def count(text):  # a tokenizer of 2 tokens a word
        return 2 * len(text.split())

    texts = prompts.sized_prompts(3, 101, count, ["alpha", "beta", "gamma"])
    assert [count(p) for p in texts] == [100, 100, 100]
    assert [p.split()[0] for p in texts] == ["doc0", "doc1", "doc2"]
    assert texts == prompts.sized_prompts(3, 101, count, ["alpha", "beta", "gamma"])
    assert len(set(texts)) == 3


def test_engine_cache_blocks_hold_a_share_of_the_prefixes_and_the_running_tails():
    # 32 prefixes of 12 full 128-token blocks: half of them is 192 blocks, + 16 running requests' tails
    assert figures.engine_cache_blocks(32, 1536, 128, 0.5, 16, 2048) == 208
    assert figures.engine_cache_blocks(1, 200, 128, 0.5, 1, 2048) == 16  # one full-length request fits


def test_a_vllm_bench_result_is_a_round_of_successful_ttfts_failures_and_duration():
    result = {"ttfts": [0.1, 0.0, 0.3], "errors": ["", "Bad Gateway", ""], "failed": 1, "duration": 2.0}
    assert figures.vllm_bench_round(result) == ([0.1, 0.3], 1, 2.0)
    merged = figures.as_ttft(figures.merge_rounds([figures.vllm_bench_round(result)]))
    assert merged["requests"] == 2 and merged["errors"] == 1 and merged["rps"] == 1.0
    assert merged["ttft_p50_ms"] == pytest.approx(100.0) and merged["ttft_p99_ms"] == pytest.approx(300.0)

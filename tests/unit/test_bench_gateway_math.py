"""benchmarks/bench_gateway.py's figures: percentiles, pooled rounds, added latency, noise, verdicts."""

from __future__ import annotations

import importlib.util
import math
from pathlib import Path

import pytest

_spec = importlib.util.spec_from_file_location(
    "bench_gateway", Path(__file__).resolve().parents[2] / "benchmarks" / "bench_gateway.py")
bench = importlib.util.module_from_spec(_spec)
_spec.loader.exec_module(bench)


def test_nearest_rank_percentiles():
    values = [float(v) for v in range(1, 101)]          # 1..100
    assert bench.percentile(values, 50) == 50.0
    assert bench.percentile(values, 99) == 99.0
    assert bench.percentile(values, 100) == 100.0
    assert bench.percentile([7.0], 99) == 7.0
    assert bench.percentile([3.0, 1.0, 2.0], 50) == 2.0  # order of arrival does not matter
    assert math.isnan(bench.percentile([], 50))


def test_rounds_pool_their_answers_errors_and_seconds():
    merged = bench.merge_rounds([([0.001, 0.002], 1, 2.0), ([0.003, 0.004], 0, 2.0)])
    assert merged["requests"] == 4 and merged["errors"] == 1
    assert merged["rps"] == 1.0                          # 4 answers in 4 s
    assert merged["ttfb_p50_ms"] == pytest.approx(2.0)
    assert merged["ttfb_p99_ms"] == pytest.approx(4.0)


def test_added_latency_is_gateway_minus_direct_and_throughput_a_ratio():
    direct = {"rps": 100.0, "ttfb_p50_ms": 2.0, "ttfb_p99_ms": 10.0}
    gateway = {"rps": 90.0, "ttfb_p50_ms": 3.5, "ttfb_p99_ms": 14.0}
    c = bench.compare(direct, gateway)
    assert c == {"added_p50_ms": 1.5, "added_p99_ms": 4.0, "rps_ratio": 0.9}


def test_noise_is_the_spread_of_the_direct_rounds():
    n = bench.noise([([0.001] * 99 + [0.010], 0, 1.0), ([0.002] * 99 + [0.004], 0, 1.0)])
    assert n["p50_ms"] == pytest.approx(1.0) and n["p99_ms"] == pytest.approx(1.0)
    assert math.isnan(bench.noise([([0.001], 0, 1.0)])["p99_ms"])


def test_verdicts_say_met_and_not_met_against_the_targets():
    results = {"1": {"compare": {"added_p99_ms": 9.0, "rps_ratio": 0.95}},
               "64": {"compare": {"added_p99_ms": 6.0, "rps_ratio": 0.79}}}
    lines = bench.verdicts(results)
    assert lines[0].startswith("added p99 TTFB at 64 streams: 6.00 ms") and lines[0].endswith("not met")
    assert lines[1].startswith("throughput through the gateway at 1 streams: 0.95x") and lines[1].endswith(": met")
    assert lines[2].endswith("not met")
    ok = bench.verdicts({"64": {"compare": {"added_p99_ms": 4.9, "rps_ratio": 0.8}}})
    assert ok[0].endswith(": met") and ok[1].endswith(": met")

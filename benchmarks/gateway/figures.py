"""The figures, pure (tests/unit/benchmarks/test_bench_gateway_math.py): percentiles, pooled
rounds, added latency and noise, the routing scenario's capacity, spread and hit rate, vllm
bench's results as rounds, and the verdicts against the targets (issues 15 and 16)."""

from __future__ import annotations

import math


def percentile(values: list[float], q: float) -> float:
    """Nearest-rank percentile (q in 0..100) of values; nan when there are none."""
    if not values:
        return math.nan
    ordered = sorted(values)
    rank = max(1, math.ceil(q / 100 * len(ordered)))
    return ordered[min(rank, len(ordered)) - 1]


def summarize(ttfb_s: list[float], errors: int, seconds: float) -> dict:
    """One path at one level: completed requests per second and TTFB percentiles in ms."""
    return {
        "requests": len(ttfb_s),
        "errors": errors,
        "rps": len(ttfb_s) / seconds if seconds > 0 else math.nan,
        "ttfb_p50_ms": percentile(ttfb_s, 50) * 1000,
        "ttfb_p99_ms": percentile(ttfb_s, 99) * 1000,
    }


def compare(direct: dict, gateway: dict) -> dict:
    """Added latency (gateway minus direct) and the throughput ratio at one level."""
    return {
        "added_p50_ms": gateway["ttfb_p50_ms"] - direct["ttfb_p50_ms"],
        "added_p99_ms": gateway["ttfb_p99_ms"] - direct["ttfb_p99_ms"],
        "rps_ratio": gateway["rps"] / direct["rps"] if direct["rps"] else math.nan,
    }


def merge_rounds(rounds: list[tuple[list[float], int, float]]) -> dict:
    """Rounds of one path at one level pooled: all TTFBs, all errors, all seconds."""
    ttfb = [t for r in rounds for t in r[0]]
    return summarize(ttfb, sum(r[1] for r in rounds), sum(r[2] for r in rounds))


def noise(rounds: list[tuple[list[float], int, float]]) -> dict:
    """How far the direct path's own rounds differ (max minus min of their p50s and p99s, in ms):
    the floor under which an added latency cannot be told from the machine's noise."""
    if len(rounds) < 2:
        return {"p50_ms": math.nan, "p99_ms": math.nan}
    p50 = [percentile(r[0], 50) * 1000 for r in rounds]
    p99 = [percentile(r[0], 99) * 1000 for r in rounds]
    return {"p50_ms": max(p50) - min(p50), "p99_ms": max(p99) - min(p99)}


def verdicts(results: dict) -> list[str]:
    """The targets, said against what was measured."""
    out = []
    at64 = results.get("64")
    if at64:
        c = at64["compare"]
        out.append(
            f"added p99 TTFB at 64 streams: {c['added_p99_ms']:.2f} ms (target <= 5 ms): "
            + ("met" if c["added_p99_ms"] <= 5 else "not met")
        )
    for level, r in results.items():
        ratio = r["compare"]["rps_ratio"]
        out.append(
            f"throughput through the gateway at {level} streams: {ratio:.2f}x direct (target >= 0.8x): "
            + ("met" if ratio >= 0.8 else "not met")
        )
    return out


def round_robin_capacity(replicas: int, batch: int, prefill_s: float, decode_s: float, cache_share: float) -> float:
    """Requests/s the replicas finish when a request finds its prefix cached with probability
    cache_share (round-robin over LRU caches that each hold that share of the prefixes)."""
    return replicas * batch / ((1 - cache_share) * prefill_s + decode_s)


def load_spread(counts: dict[str, int], replicas: int) -> float:
    """max / mean requests over the replicas (a replica that got none counts as 0)."""
    values = list(counts.values()) + [0] * (replicas - len(counts))
    mean = sum(values) / replicas if replicas else 0
    return max(values) / mean if mean else math.nan


def hit_rate(before: dict[str, tuple[float, float]], after: dict[str, tuple[float, float]]) -> float:
    """Cached prompt tokens / prompt tokens over all engines between two readings of
    {engine: (hits, queries)}."""
    hits = sum(after[e][0] - before.get(e, (0, 0))[0] for e in after)
    queries = sum(after[e][1] - before.get(e, (0, 0))[1] for e in after)
    return hits / queries if queries else math.nan


def engine_cache_blocks(
    prefixes: int, prefix_tokens: int, block_tokens: int, cache_share: float, running: int, max_model_len: int
) -> int:
    """KV blocks for one engine: cache_share of the prefixes' full blocks (the only blocks two
    requests share), plus one for each of `running` requests' own tail; never fewer than one
    request of max_model_len needs."""
    full = prefixes * (prefix_tokens // block_tokens)
    return max(math.ceil(cache_share * full) + running, math.ceil(max_model_len / block_tokens))


def routing_verdicts(r: dict) -> list[str]:
    rr, px = r["round-robin"], r["prefix"]
    speedup = rr["ttft_mean_ms"] / px["ttft_mean_ms"] if px["ttft_mean_ms"] else math.nan
    return [
        f"prefix routing's hit rate: {px['hit_rate'] * 100:.1f}% (target >= 90%; round-robin's "
        f"{rr['hit_rate'] * 100:.1f}%): " + ("met" if px["hit_rate"] >= 0.9 else "not met"),
        f"mean TTFT, round-robin / prefix: {speedup:.1f}x (target >= 5x): " + ("met" if speedup >= 5 else "not met"),
        f"prefix routing's max/mean replica load: {px['load_max_over_mean']:.2f} (target <= 1.25): "
        + ("met" if px["load_max_over_mean"] <= 1.25 else "not met"),
    ]


def vllm_bench_round(result: dict) -> tuple[list[float], int, float]:
    """One `vllm bench serve --save-result` JSON as a round of merge_rounds: (TTFTs in s of the
    requests that succeeded, failed requests, the benchmark's duration in s)."""
    ttfts = result.get("ttfts") or []
    errors = result.get("errors") or [""] * len(ttfts)
    return [t for t, e in zip(ttfts, errors) if not e], int(result.get("failed", 0)), float(result["duration"])


def as_ttft(summary: dict) -> dict:
    """summarize()'s keys for vllm bench's figure: its TTFT is what the other scenarios call TTFB."""
    return {k.replace("ttfb", "ttft"): v for k, v in summary.items()}

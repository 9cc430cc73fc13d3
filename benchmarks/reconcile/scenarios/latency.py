"""2. The latency burst: n at once, each object's time to children applied and status
current, against the three baselines of its size."""

from __future__ import annotations

from ..config import log
from ..figures import _ratio, cluster_clock_lags, percentile
from ..harness import Bench
from ..objects import child_kinds, spec_of


# -- 2. latency burst
def latency(bench: Bench) -> None:
    n = bench.args.n_latency
    spec = spec_of(1, bench.args.replicas)
    log(f"latency: {n} LLMDeployments created at once -> children applied and observedGeneration current")
    before = bench.operator.metrics()
    r = bench.run_burst("bench-latency", n, spec, "reconciled", apply_children=False, label=f"operator, {n} at once")
    bench.objects += n
    r.update(bench.operator_work(before, n))
    lags = cluster_clock_lags(bench.kube, "bench-latency", child_kinds(spec))
    r["cluster_clock_p50_s"] = percentile(lags, 50)
    r["cluster_clock_p99_s"] = percentile(lags, 99)
    base = bench.figures.get("baseline_latency", {})
    r["p99_ratio_to_baseline"] = _ratio(r["p99_ms"], base.get("p99_ms"))
    r["children_p99_ratio_to_baseline"] = _ratio(r["children_p99_ms"], base.get("p99_ms"))
    queued = bench.figures.get("baseline_queued", {})
    r["p99_ratio_to_queued_baseline"] = _ratio(r["p99_ms"], queued.get("p99_ms"))
    r["children_p99_ratio_to_queued_baseline"] = _ratio(r["children_p99_ms"], queued.get("p99_ms"))
    queued_writes = bench.figures.get("baseline_queued_same_writes", {})
    r["p99_ratio_to_queued_same_writes_baseline"] = _ratio(r["p99_ms"], queued_writes.get("p99_ms"))
    bench.figures["latency"] = r
    log(
        f"  p50 {r['p50_ms']} ms, p99 {r['p99_ms']} ms, max {r['max_ms']} ms; burst wall {r['wall_s']}s; "
        f"cluster clock (1 s resolution) p50 {r['cluster_clock_p50_s']}s p99 {r['cluster_clock_p99_s']}s"
    )
    log(
        f"  p99 vs the baseline's {base.get('p99_ms')} ms: {r['p99_ratio_to_baseline']}x "
        f"(children only: p99 {r['children_p99_ms']} ms, {r['children_p99_ratio_to_baseline']}x)"
    )
    log(
        f"  p99 vs the queued baseline's {queued.get('p99_ms')} ms: {r['p99_ratio_to_queued_baseline']}x "
        f"(children only: {r['children_p99_ratio_to_queued_baseline']}x)"
    )
    log(
        f"  p99 vs the queued same-writes baseline's {queued_writes.get('p99_ms')} ms: "
        f"{r['p99_ratio_to_queued_same_writes_baseline']}x"
    )
    log(
        f"  operator: {r['reconciles_per_object']} reconciles and {r['operator_writes_per_object']} writes per object, "
        f"mean reconcile {r['mean_reconcile_ms']} ms"
    )

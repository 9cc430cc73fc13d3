"""5. Apply -> Ready: one replica and one GPU each, kwok's pods ready at once."""

from __future__ import annotations

from ..config import log
from ..harness import Bench
from ..objects import spec_of


# -- 5. apply -> Ready
def ready(bench: Bench) -> None:
    n = bench.args.n_ready
    spec = spec_of(1, 1)
    log(f"ready: {n} LLMDeployments (1 replica, 1 GPU each) created at once -> Ready (kwok pods ready at once)")
    r = bench.run_burst("bench-ready", n, spec, "ready", apply_children=False, label=f"ready, {n} at once")
    bench.objects += n
    bench.figures["ready"] = r
    log(f"  apply -> Ready p50 {r['p50_ms']} ms, p99 {r['p99_ms']} ms, all {r['completed']}/{n} in {r['wall_s']}s")

"""The operator starts (from --code's checkout, or this one), and one warm-up object."""

from __future__ import annotations

import os
import time

from llm_operator.decide import manifests

from .. import ROOT
from ..baselines import burst
from ..config import OPERATOR_NAMESPACES, BenchError, log
from ..figures import ms
from ..harness import Bench
from ..objects import spec_of
from ..operator_process import Operator, git_commit


# -- operator start
def start_operator(bench: Bench) -> None:
    bench.operator = Operator(bench.cluster, bench.work, OPERATOR_NAMESPACES, bench.code)
    code = bench.figures["operator_code"] = {**bench.operator.code(), "benchmark_imports": manifests.__file__}
    if bench.code != ROOT:
        # --code: the operator runs another checkout; the harness (baselines, builders) is this one.
        code["benchmark_checkout"] = str(ROOT)
        code["benchmark_commit"] = git_commit(ROOT)
    log(
        f"operator code: {code['module']} (checkout {code['checkout']} at {code['commit']}"
        f"{', operator/ or runtime/ modified' if code['operator_code_modified'] else ''})"
    )
    if bench.code != ROOT:
        log(f"  the harness (baselines, builders, same-writes decide()): {ROOT} at {code['benchmark_commit']}")
    for what, root in (("module", bench.code), ("benchmark_imports", ROOT)):
        if not code[what].startswith(str(root) + os.sep):
            whose = "this checkout" if root == ROOT else "the --code checkout"
            raise BenchError(f"{what}: llm_operator from {code[what]}, not from {whose} ({root})")
    secs = bench.operator.start()
    log(f"operator up in {secs:.1f}s (pid {bench.operator.pid}, HF_HUB_OFFLINE=1)")
    # One object first, so that the measured bursts find a warm operator (imports done,
    # the offline facts lookup failed once and remembered, as in a cluster that runs).
    spec = spec_of(1, bench.args.replicas)
    w = bench.watch("bench-latency", spec, ["warmup"], "reconciled")
    t0 = time.monotonic()
    burst(bench.kube, "bench-latency", ["warmup"], spec, apply_children=False)
    if not w.wait_done(120):
        raise BenchError(f"the warm-up LLMDeployment was not reconciled within 120s:\n{bench.operator.log_tail()}")
    rec = w.results()
    bench.watchers.remove(w)
    bench.objects += 1
    cold = rec["done"]["warmup"] - t0
    bench.figures["warmup_first_object_ms"] = ms(cold)
    log(f"  warm-up object reconciled in {cold * 1000:.0f} ms (includes the offline facts lookup)")
    bench.operator.wait_quiet(1, 60)

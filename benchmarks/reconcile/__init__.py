"""The reconcile benchmark's harness (benchmarks/bench_reconcile.py is its entry point).

    config            sizes, namespaces, the resources counted, BenchError, log
    apiserver         raw HTTPS to the apiserver; its request counters (/metrics)
    cluster           the local control plane and its setup (CRD, ServiceCIDR, nodes, GC probe)
    operator_process  `python -m llm_operator.cli run` as a process, from this or another checkout
    watch             the watcher process (arrival times), the event log of a resync
    objects           the LLMDeployments and what the operator writes for them (pure builders)
    baselines         the plain clients: raw apply, same writes, queued
    figures           percentiles, CPU seconds, ratios, the profile's summary
    harness           Bench: one run's state, a burst measured, the report
    results           the latency plot; side by side figures of two checkouts
    scenarios/        the phases, in the order cli runs them
    cli               the flags and the run(s)

Importing it puts this checkout's hack/, common/, operator/ and runtime/ first on sys.path:
the harness's own imports (the pure builders, the plain client) come from this checkout,
whichever code the operator process runs (--code).
"""

from __future__ import annotations

import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
for _p in (ROOT / "hack", ROOT / "common", ROOT / "operator", ROOT / "runtime"):
    if str(_p) not in sys.path:
        sys.path.insert(0, str(_p))

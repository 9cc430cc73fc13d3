#!/usr/bin/env python3
"""Reconcile latency, throughput, resync writes and memory of llm-operator, measured on
the local control plane against a raw-apply baseline (shared/reference/performance.md).

    python benchmarks/bench_reconcile.py [--quick] [--n-latency 200] [--n 1000] [--out benchmarks/out]
    python benchmarks/bench_reconcile.py --quick --code /tmp/before --code .   # old and new, side by side

It starts its own control plane (hack/localcluster.py) in a temporary directory, runs the
operator as a real process against it, prints what it measured, and writes one JSON line
of figures to OUT/results.json (and OUT/latency.png when matplotlib is importable). It
never asserts a time: the figures are for reading, and comparing with the targets.
Everything it starts is stopped on the way out, Ctrl-C and failures included.
"""

from __future__ import annotations

import sys
from pathlib import Path

if str(Path(__file__).resolve().parent) not in sys.path:
    sys.path.insert(0, str(Path(__file__).resolve().parent))

# The harness is the package benchmarks/reconcile/ (its __init__ says which module holds
# what); the names below are what bench_write_costs.py imports from here.
from reconcile import ROOT  # noqa: E402, F401
from reconcile.cli import main  # noqa: E402
from reconcile.cluster import BenchCluster  # noqa: E402, F401
from reconcile.config import CONCURRENCY, EXTRA_SERVICE_CIDR  # noqa: E402, F401
from reconcile.figures import process_cpu_s  # noqa: E402, F401
from reconcile.objects import desired_for, manifest, operator_report, spec_of  # noqa: E402, F401

if __name__ == "__main__":
    sys.exit(main(description=__doc__))

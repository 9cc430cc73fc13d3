"""The gateway benchmark's harness (benchmarks/bench_gateway.py is its entry point).

    config        the addresses, the model's name, the levels, each mode's defaults; emit
    figures       percentiles, pooled rounds, added latency, noise, the routing math, verdicts (pure)
    metrics       Prometheus text: sums, labels, the engines' and the gateway's counters
    processes     ports, the fake-engine fleet (one process), the gateway (`gateway --static`)
    real_engines  RealEngines: N `vllm serve` of the tiny model (--real-engines)
    clients       the load generator: closed-loop streams, open-loop Poisson arrivals
    prompts       the routing scenario's shared prefixes, for fake engines and real ones
    machine       what else ran: CPU seconds sampled from /proc, the load, the CPU model
    scenarios/    overhead (direct vs the gateway), routing (three strategies), vllm-bench
    cli           the flags and the run

Importing it puts this checkout's tests/, operator/, common/ and runtime/ first on sys.path:
tests/support holds the fake engine and the real engines' settings, operator/ the gateway.
"""

from __future__ import annotations

import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
sys.path[:0] = [str(ROOT / "tests"), str(ROOT / "operator"), str(ROOT / "common"), str(ROOT / "runtime")]

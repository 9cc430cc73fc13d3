"""The benchmark's constants (the addresses, the model's name, the levels, each mode's
defaults) and emit, its JSON lines."""

from __future__ import annotations

import json

from . import ROOT

HOST = "127.0.0.1"
MODEL = "bench"
LEVELS = (1, 64, 256)
STRATEGIES = ("round-robin", "least-load", "prefix")
SCENARIOS = ("overhead", "routing", "vllm-bench")

# The entry point (the fake engines run as `bench_gateway.py --serve-engines`) and the --asgi proxy.
ENTRY = ROOT / "benchmarks" / "bench_gateway.py"
ASGI_PROXY = ROOT / "benchmarks" / "asgi_proxy.py"


# Defaults that differ between fake engines and real ones (sizes a CPU engine serves in seconds).
MODE_DEFAULTS = {
    "fake": {
        "levels": ",".join(map(str, LEVELS)),
        "tokens": 32,
        "prefixes": 32,
        "cache_share": 1 / 3,
        "warmup": 5.0,
        "routing_seconds": 20.0,
        "scenarios": "overhead,routing",
    },
    "real": {
        "levels": "1,4,16",
        "tokens": 16,
        "prefixes": 32,
        "cache_share": 0.5,
        "warmup": 15.0,
        "routing_seconds": 30.0,
        "scenarios": "overhead,routing,vllm-bench",
    },
}


def emit(record: dict) -> None:
    """One JSON line of figures on stdout, beside the human-readable table."""
    print(json.dumps(record, default=str), flush=True)

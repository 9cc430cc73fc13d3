"""The scenarios, each one function of (args, the run's temporary directory, the real engines or
None), in the order cli runs them:

    overhead    the gateway's cost: the same streams direct and through it, at each level
    routing     round-robin (direct), least load and prefix through the gateway (issue 16)
    vllm-bench  vLLM's own load generator, direct and through the gateway (real engines only)
"""

from __future__ import annotations

from .overhead import run_overhead
from .routing import run_routing
from .vllm_bench import run_vllm_bench

__all__ = ["run_overhead", "run_routing", "run_vllm_bench"]

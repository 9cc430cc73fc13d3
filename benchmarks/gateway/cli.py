"""The command line: the flags, each mode's defaults filled in, and one run: the real engines
(if any) started, the scenarios in order, the machine's load around them, the JSON written."""

from __future__ import annotations

import argparse
import contextlib
import json
import os
import platform
import signal
import tempfile
import time
from pathlib import Path

from . import machine
from .config import MODE_DEFAULTS, SCENARIOS, STRATEGIES, emit
from .figures import engine_cache_blocks
from .machine import CpuSampler, cpu_model, load_now
from .processes import engines_main
from .real_engines import REAL_BLOCK_TOKENS, REAL_MAX_MODEL_LEN, RealEngines
from .scenarios import run_overhead, run_routing, run_vllm_bench


def parser(description: str | None = None) -> argparse.ArgumentParser:
    """Every flag, as bench_gateway.py --help lists them."""
    p = argparse.ArgumentParser(description=description, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--engines", type=int, default=4, help="fake engines (default 4)")
    p.add_argument(
        "--levels",
        default=None,
        help="concurrent streams, comma-separated (default 1,64,256; 1,4,16 with --real-engines)",
    )
    p.add_argument("--seconds", type=float, default=8.0, help="per level, path and round (default 8)")
    p.add_argument("--rounds", type=int, default=2, help="direct/gateway alternations per level (default 2)")
    p.add_argument(
        "--tokens",
        type=int,
        default=None,
        help="mean tokens per answer, each drawn in [N/2, 3N/2] (default 32; 16 with --real-engines)",
    )
    p.add_argument(
        "--decode-tokens-per-s",
        type=float,
        default=50.0,
        help="per request (default 50, a GPU's usual decode speed for one stream)",
    )
    p.add_argument("--max-batch", type=int, default=512, help="per engine (default 512)")
    p.add_argument("--quick", action="store_true", help="2 s per level and path, 1 round")
    p.add_argument("--out", default=None, help="write the results as JSON here")
    p.add_argument(
        "--asgi",
        action="store_true",
        help="also measure the same hot path on uvicorn + Starlette + httpx (benchmarks/asgi_proxy.py; "
        "pip install -e '.[bench]')",
    )
    p.add_argument(
        "--scenarios",
        default=None,
        help="overhead (the gateway's cost), routing (round-robin, least load and prefix), vllm-bench "
        "(real engines only): default overhead,routing; all three with --real-engines",
    )
    real = p.add_argument_group("real engines")
    real.add_argument(
        "--real-engines",
        type=int,
        default=0,
        metavar="N",
        help="run the scenarios against N real vLLM engines (CPU build, the tiny model) instead of "
        "fake ones (default 0: fake engines)",
    )
    real.add_argument("--max-num-seqs", type=int, default=16, help="each engine's --max-num-seqs (default 16)")
    real.add_argument("--vllm-bench", action="store_true", help="add the vllm-bench scenario to --scenarios")
    real.add_argument("--bench-prompts", type=int, default=120, help="vllm bench's --num-prompts (default 120)")
    real.add_argument("--bench-concurrency", type=int, default=16, help="its --max-concurrency (default 16)")
    real.add_argument("--bench-input-len", type=int, default=200, help="its --random-input-len (default 200)")
    real.add_argument("--bench-output-len", type=int, default=16, help="its --random-output-len (default 16)")
    real.add_argument("--bench-rounds", type=int, default=2, help="direct/gateway alternations (default 2)")
    r = p.add_argument_group("routing scenario")
    r.add_argument("--strategies", default=",".join(STRATEGIES), help="(default all three)")
    r.add_argument("--prefixes", type=int, default=None, help="shared prompt prefixes (default 32)")
    r.add_argument("--prefix-words", type=int, default=800, help="tokens per prefix, fake engines (default 800)")
    r.add_argument(
        "--prefix-tokens",
        type=int,
        default=1536,
        help="tokens per prefix (the tiny model's tokenizer), real engines (default 1536)",
    )
    r.add_argument(
        "--real-rate", type=float, default=6.0, help="requests/s offered (Poisson) to the real engines (default 6)"
    )
    r.add_argument("--users", type=int, default=2000, help="users, each bound to one prefix (default 2000)")
    r.add_argument(
        "--prefill-tokens-per-s", type=float, default=4000.0, help="uncached prompt tokens per second (default 4000)"
    )
    r.add_argument("--routing-decode-tokens-per-s", type=float, default=100.0, help="(default 100)")
    r.add_argument("--routing-tokens", type=int, default=8, help="tokens per answer (default 8)")
    r.add_argument("--routing-batch", type=int, default=8, help="requests an engine runs at once (default 8)")
    r.add_argument(
        "--offered", type=float, default=0.9, help="arrival rate as a fraction of round-robin's capacity (default 0.9)"
    )
    r.add_argument(
        "--warmup",
        type=float,
        default=None,
        help="seconds of load before measuring (default 5; 15 with --real-engines)",
    )
    r.add_argument(
        "--routing-seconds",
        type=float,
        default=None,
        help="seconds measured per strategy (default 20; 30 with --real-engines)",
    )
    r.add_argument(
        "--cache-share",
        type=float,
        default=None,
        help="the share of all prefixes one engine's prefix cache holds (default 1/3; 1/2 with "
        "--real-engines, where it sizes vLLM's KV cache: --num-gpu-blocks-override)",
    )
    r.add_argument("--prefix-chars", type=int, default=2000, help="the prefix strategy's prefixChars (default 2000)")
    r.add_argument("--load-factor-percent", type=int, default=125, help="its loadFactorPercent (default 125)")
    p.add_argument("--serve-engines", default=None, help=argparse.SUPPRESS)
    p.add_argument("--engine-options", default="{}", help=argparse.SUPPRESS)
    return p


def main(argv: list[str] | None = None, description: str | None = None) -> int:
    p = parser(description)
    args = p.parse_args(argv)
    if args.serve_engines:
        engines_main([int(x) for x in args.serve_engines.split(",")], json.loads(args.engine_options))
        return 0
    for key, value in MODE_DEFAULTS["real" if args.real_engines else "fake"].items():
        if getattr(args, key) is None:
            setattr(args, key, value)
    if args.quick:
        args.seconds, args.rounds = 2.0, 1
        args.warmup, args.routing_seconds = 3.0, 8.0
    levels = [int(x) for x in args.levels.split(",")]

    scenarios = [x for x in args.scenarios.split(",") if x]
    if args.vllm_bench and "vllm-bench" not in scenarios:
        scenarios.append("vllm-bench")
    unknown = set(scenarios) - set(SCENARIOS)
    if unknown:
        p.error(f"--scenarios: {', '.join(sorted(unknown))} unknown; choose from {', '.join(SCENARIOS)}")
    if "vllm-bench" in scenarios and not args.real_engines:
        p.error("the vllm-bench scenario needs real engines: --real-engines N")
    out: dict = {
        "when": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()),
        "machine": {"cpus": os.cpu_count(), "cpu": cpu_model(), "python": platform.python_version()},
        "settings": {
            k: getattr(args, k)
            for k in ("engines", "seconds", "rounds", "tokens", "decode_tokens_per_s", "max_batch", "asgi")
        },
    }
    if args.real_engines:
        out["settings"] = {k: getattr(args, k) for k in ("real_engines", "seconds", "rounds", "tokens", "asgi")}
        out["settings"]["levels"] = levels
    out["load"] = {"start": load_now()}
    sampler = machine.SAMPLER = CpuSampler().start()
    print(f"load at start: {out['load']['start']}", flush=True)

    def terminated(signum, frame):
        raise KeyboardInterrupt(f"signal {signum}")

    # SIGTERM and SIGHUP unwind like Ctrl-C, through every `finally` that stops a process.
    signal.signal(signal.SIGTERM, terminated)
    signal.signal(signal.SIGHUP, terminated)
    started = time.monotonic()
    with tempfile.TemporaryDirectory(prefix="bench-gateway-") as tmp, contextlib.ExitStack() as stack:
        engines = None
        if args.real_engines:
            blocks = engine_cache_blocks(
                args.prefixes,
                args.prefix_tokens,
                REAL_BLOCK_TOKENS,
                args.cache_share,
                args.max_num_seqs,
                REAL_MAX_MODEL_LEN,
            )
            engines = stack.enter_context(RealEngines(args.real_engines, Path(tmp), args.max_num_seqs, blocks))
            out["engines"] = engines.info
            out["load"]["engines_ready"] = load_now()
        if "overhead" in scenarios:
            out["results"] = run_overhead(args, levels, Path(tmp), engines)
            out["load"]["after_overhead"] = load_now()
        if "routing" in scenarios:
            out["routing"] = run_routing(args, Path(tmp), engines)
            out["load"]["after_routing"] = load_now()
        if "vllm-bench" in scenarios:
            out["vllm_bench"] = run_vllm_bench(args, Path(tmp), engines)
            out["load"]["after_vllm_bench"] = load_now()
    sampler.stop()
    out["load"]["end"] = load_now()
    out["wall_s"] = round(time.monotonic() - started, 1)
    ours, others = sampler.totals()
    out["cpu"] = {
        "this_run_s": round(ours, 1),
        "everything_else_s": round(others, 1),
        "everything_else_cpus_busy": round(others / out["wall_s"], 2),
        "cpus": os.cpu_count(),
    }
    print(
        f"load at end: {out['load']['end']}; {out['wall_s']:.0f} s in all; CPU time: this run {ours:.0f} s, "
        f"everything else on the machine {others:.0f} s (on average {others / out['wall_s']:.2f} of "
        f"{os.cpu_count()} CPUs)",
        flush=True,
    )
    emit({"load": out["load"], "cpu": out["cpu"], "wall_s": out["wall_s"]})
    if args.out:
        Path(args.out).write_text(json.dumps(out, indent=2) + "\n")
    return 0

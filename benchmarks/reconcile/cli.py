"""The command line: the flags, one run of the scenarios (setup, scenarios, teardown,
report), and with --code given more than once, one run per checkout and the comparison."""

from __future__ import annotations

import argparse
import json
import signal
import sys
import time
import traceback
from pathlib import Path

from llm_operator.kube.client import KubeError

from . import ROOT
from .config import BenchError, log
from .harness import Bench
from .results import compare, plot_curves
from .scenarios import SCENARIOS, profile


def parse_args(argv: list[str] | None, description: str | None = None) -> argparse.Namespace:
    p = argparse.ArgumentParser(
        prog="bench_reconcile.py", description=description, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    p.add_argument(
        "--quick",
        action="store_true",
        help="small sizes (latency 50, throughput 200, ready 20, 400 others), for a smoke run",
    )
    p.add_argument(
        "--n", type=int, default=None, help="LLMDeployments in the throughput burst and the baseline (default 1000)"
    )
    p.add_argument("--n-latency", type=int, default=None, help="LLMDeployments in the latency burst (default 200)")
    p.add_argument("--n-ready", type=int, default=None, help="LLMDeployments in the apply -> Ready burst (default 50)")
    p.add_argument(
        "--n-others",
        type=int,
        default=None,
        help="objects in the populated namespace before its burst (default 2000: half LLMDeployments, "
        "half ConfigMaps, Services and Deployments the operator does not manage)",
    )
    p.add_argument(
        "--n-populated",
        type=int,
        default=None,
        help="LLMDeployments in the populated namespace's burst and its empty-namespace reference "
        "(default: --n-latency)",
    )
    p.add_argument(
        "--replicas",
        type=int,
        default=0,
        help="replicas of the latency/throughput objects (default 0: the Deployment is made, no pods, "
        "so the scheduler and kwok do not compete for the 2 CPUs; the Ready burst always uses 1)",
    )
    p.add_argument("--out", default=str(ROOT / "benchmarks" / "out"), help="where results.json (and latency.png) go")
    p.add_argument("--timeout", type=float, default=600, help="seconds any one wait may take (default 600)")
    p.add_argument("--profile", action="store_true", help="run py-spy on the operator during one extra burst")
    p.add_argument("--py-spy", default="", help="path to py-spy when it is not on PATH")
    p.add_argument("--keep", action="store_true", help="keep the temporary directory (cluster logs, operator log)")
    p.add_argument("--replot", action="store_true", help="only draw OUT/latency.png again from OUT/curves.json")
    p.add_argument(
        "--code",
        action="append",
        default=[],
        metavar="DIR",
        help="run the operator from the checkout DIR (DIR/common, DIR/operator, DIR/runtime on its "
        "PYTHONPATH instead of this checkout's); the harness and its baselines stay this checkout's. "
        "Given more than once, the whole run is made for each DIR in turn (figures in OUT/code-1, "
        "OUT/code-2, ...), then printed side by side with each later run's ratio to the first, "
        "in OUT/comparison.json",
    )
    args = p.parse_args(argv)
    codes = []
    for d in args.code:
        path = Path(d).resolve()
        if not (path / "operator" / "llm_operator").is_dir():
            p.error(f"--code {d}: {path}/operator/llm_operator is not there (not a checkout of llm-operator?)")
        codes.append(path)
    args.code = codes
    quick = args.quick
    args.n = args.n or (200 if quick else 1000)
    args.n_latency = args.n_latency or (50 if quick else 200)
    args.n_ready = args.n_ready or (20 if quick else 50)
    args.n_others = args.n_others if args.n_others is not None else (400 if quick else 2000)
    args.n_populated = args.n_populated or args.n_latency
    return args


def run(args: argparse.Namespace, code: Path = ROOT) -> tuple[int, dict]:
    """One run: a fresh control plane, every scenario, the report in args.out. Returns the
    exit code (0, 1 on a failure, 130 when interrupted) and the figures."""
    bench = Bench(args, code)
    Path(args.out).mkdir(parents=True, exist_ok=True)
    started = time.monotonic()
    rc = 0
    try:
        bench.setup()
        for scenario in SCENARIOS:
            scenario(bench)
        if args.profile:
            profile(bench)
    except KeyboardInterrupt:
        print("\nbench: interrupted; cleaning up", file=sys.stderr)
        rc = 130
    except (BenchError, KubeError) as err:
        print(f"bench: {err}", file=sys.stderr)
        rc = 1
    except Exception:  # noqa: BLE001 - print it, then still clean up and report what was measured
        traceback.print_exc()
        rc = 1
    finally:
        bench.figures["bench_wall_s"] = round(time.monotonic() - started, 1)
        try:
            bench.teardown()
        finally:
            if rc != 130:
                bench.report()
    return rc, bench.figures


def main(argv: list[str] | None = None, description: str | None = None) -> int:
    args = parse_args(argv, description)
    if args.replot:
        plot_curves(json.loads((Path(args.out) / "curves.json").read_text()), Path(args.out))
        return 0

    def on_term(signum, frame):
        raise KeyboardInterrupt(f"signal {signum}")

    signal.signal(signal.SIGTERM, on_term)
    if len(args.code) <= 1:
        return run(args, args.code[0] if args.code else ROOT)[0]
    runs, worst = [], 0
    for i, code in enumerate(args.code, 1):
        out = str(Path(args.out) / f"code-{i}")
        log(f"run {i} of {len(args.code)}: the operator from {code}; figures in {out}")
        rc, figures = run(argparse.Namespace(**{**vars(args), "out": out}), code)
        if rc == 130:
            return rc
        worst = worst or rc
        runs.append((out, figures))
    compare(runs, Path(args.out))
    return worst

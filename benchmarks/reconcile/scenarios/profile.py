"""Optional (--profile): py-spy on the operator during one extra burst, not part of the
figures."""

from __future__ import annotations

import shutil
import signal
import subprocess
import time
from pathlib import Path

from ..config import log
from ..figures import summarize_profile
from ..harness import Bench
from ..objects import spec_of


# -- optional: where the operator's time goes
def profile(bench: Bench) -> None:
    py_spy = shutil.which("py-spy") or (
        bench.args.py_spy if bench.args.py_spy and Path(bench.args.py_spy).exists() else None
    )
    if not py_spy:
        log("profile: py-spy not found (pip install py-spy, or --py-spy PATH): skipped")
        return
    n = bench.args.n_latency
    spec = spec_of(1, bench.args.replicas)
    dest = bench.out / "operator-profile.txt"
    log(f"profile: py-spy on the operator during a burst of {n} (not part of the figures above)")
    prof = subprocess.Popen(
        [
            py_spy,
            "record",
            "--pid",
            str(bench.operator.pid),
            "--format",
            "raw",
            "--rate",
            "200",
            "--gil",
            "--output",
            str(dest),
            "--nonblocking",
        ],
        stdout=subprocess.DEVNULL,
        stderr=open(bench.work / "py-spy.log", "ab"),
    )
    try:
        time.sleep(1.0)
        bench.run_burst("bench-profile", n, spec, "reconciled", apply_children=False, label="_profile")
        bench.objects += n
    finally:
        prof.send_signal(signal.SIGINT)
        try:
            prof.wait(30)
        except subprocess.TimeoutExpired:
            prof.kill()
    bench.curves.pop("_profile", None)
    if dest.exists():
        bench.figures["profile"] = summarize_profile(dest)
        log(f"  collapsed stacks in {dest}; top bench time: {bench.figures['profile']['top_self'][:6]}")
    else:
        log(f"  py-spy wrote nothing: {(bench.work / 'py-spy.log').read_text(errors='replace')[-500:]}")

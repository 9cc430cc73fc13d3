"""The latency plot; and, with --code given more than once, the runs' figures side by side."""

from __future__ import annotations

import json
import os
from pathlib import Path

from .config import log


def plot_curves(curves: dict[str, list], out: Path) -> None:
    """OUT/latency.png: each object's latency against how many models the burst had made."""
    try:
        import matplotlib

        matplotlib.use("Agg")
        import matplotlib.pyplot as plt
    except ImportError:
        log("plot: matplotlib is not importable: no latency.png (install it, then run with --replot)")
        return
    fig, ax = plt.subplots(figsize=(8, 5))
    for label, points in curves.items():
        if points:
            xs, ys = zip(*points)
            ax.plot(xs, [y * 1000 for y in ys], ".", markersize=3, label=label)
    ax.set_xlabel("models created so far in the burst")
    ax.set_ylabel("latency per object, ms (created -> reconciled, or -> Ready)")
    ax.set_yscale("log")
    ax.grid(True, which="both", alpha=0.3)
    ax.legend()
    ax.set_title(f"llm-operator reconcile latency ({os.cpu_count()} CPUs, local control plane)")
    path = out / "latency.png"
    fig.savefig(path, dpi=110, bbox_inches="tight")
    plt.close(fig)
    log(f"plot: {path}")


# What the side-by-side table shows: (what, section of the figures, key). Each run's ratios
# are to its own baselines, measured in that run with the same harness.
COMPARED = [
    ("operator CPU ms per object, latency burst", "latency", "operator_cpu_ms_per_object"),
    ("operator CPU ms per object, throughput burst", "throughput", "operator_cpu_ms_per_object"),
    ("throughput: wall / baseline's", "throughput", "ratio_to_baseline"),
    ("throughput: wall / same-writes baseline's", "throughput", "ratio_to_same_writes_baseline"),
    ("throughput: API requests per object / baseline's", "throughput", "api_requests_ratio_to_baseline"),
    ("latency: p99 / baseline's", "latency", "p99_ratio_to_baseline"),
    ("latency: p99 / queued baseline's", "latency", "p99_ratio_to_queued_baseline"),
    ("latency: p99 / queued same-writes baseline's", "latency", "p99_ratio_to_queued_same_writes_baseline"),
    ("populated: requests per object / empty namespace's", "populated", "api_requests_ratio_to_reference"),
    ("latency: p99 ms", "latency", "p99_ms"),
    ("throughput: wall s", "throughput", "wall_s"),
    ("throughput: API requests per object", "throughput", "api_requests_per_object"),
    ("throughput: reconciles per object", "throughput", "reconciles_per_object"),
    ("throughput: operator writes per object", "throughput", "operator_writes_per_object"),
    ("throughput: mean reconcile ms", "throughput", "mean_reconcile_ms"),
    ("throughput: machine busy share", "throughput", "machine_busy_share"),
    ("memory: VmHWM MiB in the throughput burst", "memory", "burst_VmHWM_mib"),
    ("memory: VmRSS MiB settled", "memory", "settled_VmRSS_mib"),
    ("resync: writes per LLMDeployment", "resync", "writes_per_llmdeployment"),
    ("ready: apply -> Ready p50 ms", "ready", "p50_ms"),
]


def compare(runs: list[tuple[str, dict]], out: Path) -> dict:
    """Print the runs' figures side by side (`runs`: (the run's OUT, its figures), the first
    being A), with each later run's ratio to A; write OUT/comparison.json."""
    codes = [
        {
            **{
                k: f.get("operator_code", {}).get(k) for k in ("checkout", "commit", "module", "operator_code_modified")
            },
            "out": o,
        }
        for o, f in runs
    ]
    names = [f"{chr(ord('A') + i)} {c['commit'] or Path(c['checkout'] or '?').name}" for i, c in enumerate(codes)]
    rows = {}
    for what, section, key in COMPARED:
        values = [(f.get(section) or {}).get(key) for _, f in runs]
        a = values[0]
        rows[what] = {
            "values": values,
            "ratio_to_A": [round(v / a, 2) if v is not None and a else None for v in values[1:]],
        }
    print()
    print("side by side (each ratio to a baseline is to that run's own; the ratio column is the later run / A):")
    for name, c in zip(names, codes):
        print(
            f"  {name}: {c['checkout']} ({c['module']}{', modified' if c['operator_code_modified'] else ''}); "
            f"figures in {c['out']}"
        )
    ratio_heads = [f"{n.split()[0]}/A" for n in names[1:]]
    width = max(len(w) for w, _, _ in COMPARED)
    print(
        f"  {'':<{width}}  "
        + "  ".join(f"{n.split()[0]:>9}" for n in names)
        + "  "
        + "  ".join(f"{h:>7}" for h in ratio_heads)
    )
    for what, row in rows.items():
        cells = "  ".join(f"{'-' if v is None else v:>9}" for v in row["values"])
        ratios = "  ".join(f"{'-' if r is None else r:>7}" for r in row["ratio_to_A"])
        print(f"  {what:<{width}}  {cells}  {ratios}")
    result = {"codes": [{**c, "name": n} for n, c in zip(names, codes)], "figures": rows}
    out.mkdir(parents=True, exist_ok=True)
    line = json.dumps(result, sort_keys=True)
    (out / "comparison.json").write_text(line + "\n")
    print(line, flush=True)
    return result

"""1. The baselines, no operator running: the latency burst's size (raw apply, queued, queued
with the same writes), then the throughput burst's (raw apply, same writes)."""

from __future__ import annotations

from ..harness import Bench


def baseline_latency(bench: Bench) -> None:
    bench.run_baseline(
        "baseline_latency",
        "baseline",
        "bench-base-latency",
        bench.args.n_latency,
        "created and their children applied by a plain client",
        "children",
        apply_children=True,
    )


def baseline_queued(bench: Bench) -> None:
    """The latency burst's size again, the children applied by a plain watch-driven client
    as the objects arrive: the same queue the operator meets (creations come faster than
    children can be applied), none of its other work."""
    bench.run_baseline(
        "baseline_queued",
        "queued baseline",
        "bench-base-queued",
        bench.args.n_latency,
        "created at once; a plain client watches them and applies their children as they come",
        "children",
        apply_children=False,
        queued=True,
    )


def baseline_queued_same_writes(bench: Bench) -> None:
    """The queued baseline again, its client also making the operator's status patch and
    Event for each object after its children: the queue and the writes the operator meets,
    none of its watching or deciding. Not a target of performance.md."""
    bench.run_baseline(
        "baseline_queued_same_writes",
        "queued same-writes baseline",
        "bench-base-queued-writes",
        bench.args.n_latency,
        "created at once; a plain client watches them and makes the "
        "operator's writes (children, status, Event) as they come",
        "reconciled",
        apply_children=False,
        queued=True,
        report=True,
    )


def baseline(bench: Bench) -> None:
    bench.run_baseline(
        "baseline",
        "baseline",
        "bench-base",
        bench.args.n,
        "created and their children applied by a plain client",
        "children",
        apply_children=True,
    )


def baseline_same_writes(bench: Bench) -> None:
    """The throughput burst's size, each object followed by exactly the operator's writes
    from a plain client (its children, then the status patch and the Event that the
    operator's own decide() gives): what the operator's extra writes cost the apiserver,
    apart from the operator's own work. Not a target of performance.md."""
    bench.run_baseline(
        "baseline_same_writes",
        "same-writes baseline",
        "bench-base-writes",
        bench.args.n,
        "each followed by the operator's writes (children, status, Event) from a plain client",
        "reconciled",
        apply_children=True,
        report=True,
    )

"""The phases of one run, in order: each a function of the Bench (setup done).

Baselines first, no operator running; then the operator starts and the measured bursts
follow; the resync restarts it; the populated namespace comes after the restart, when the
operator's periodic resync (every 5 minutes from its start) is the furthest away. The
profile (--profile) is an extra burst at the end, outside the figures.
"""

from __future__ import annotations

from .baselines import baseline, baseline_latency, baseline_queued, baseline_queued_same_writes, baseline_same_writes
from .latency import latency
from .populated import populated
from .profile import profile
from .ready import ready
from .resync import resync
from .start import start_operator
from .throughput import throughput

SCENARIOS = [
    baseline_latency,
    baseline_queued,
    baseline_queued_same_writes,
    baseline,
    baseline_same_writes,
    start_operator,
    latency,
    throughput,
    ready,
    resync,
    populated,
]

__all__ = ["SCENARIOS", "profile"]

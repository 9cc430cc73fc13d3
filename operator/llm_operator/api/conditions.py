"""The shape of one condition's judgement, shared by planning (verdicts on a plan) and
decide (the conditions written to status)."""

from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True)
class Verdict:
    """One condition's worth of judgement."""

    status: str  # "True" | "False" | "Unknown"
    reason: str
    message: str

"""Counts in sentences: "1 GPU", "2 GPUs". The operator, its gateway and the runtime all
write sentences for people, so the rule lives in the leaf every one of them may import."""

from __future__ import annotations


def noun(n: int, one: str, many: str | None = None) -> str:
    """The noun that agrees with n: `one` for exactly 1, else `many` (by default `one` + "s")."""
    if n == 1:
        return one
    return many if many is not None else one + "s"


def plural(n: int, one: str, many: str | None = None) -> str:
    """n and its noun: plural(1, "GPU") is "1 GPU", plural(2, "GPU") is "2 GPUs"; give `many`
    for a noun that does not just take an s (plural(2, "index", "indices"))."""
    return f"{n} {noun(n, one, many)}"

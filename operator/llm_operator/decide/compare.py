"""Pure: whether a live child is what we want, so that a reconcile that changes nothing
writes nothing; and the JSON-patch that puts back fields edited by hand."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from llm_operator.decide.manifests import HASH_ANNOTATION


def is_subset(desired: object, live: object) -> bool:
    """True when every value in `desired` is in `live` (which may carry defaults and more)."""
    if isinstance(desired, dict):
        return isinstance(live, dict) and all(k in live and is_subset(v, live[k]) for k, v in desired.items())
    if isinstance(desired, list):
        return (
            isinstance(live, list)
            and len(desired) == len(live)
            and all(is_subset(d, have) for d, have in zip(desired, live, strict=True))
        )
    return desired == live


def up_to_date(desired: Mapping[str, Any], live: Mapping[str, Any] | None) -> bool:
    """The live child is what we want: same desired-hash (nothing changed on our side)
    and every field we set still holds (nothing changed by hand)."""
    if live is None:
        return False
    want = desired["metadata"]["annotations"][HASH_ANNOTATION]
    have = (live.get("metadata", {}).get("annotations") or {}).get(HASH_ANNOTATION)
    return (
        want == have
        and is_subset(desired.get("spec", {}), live.get("spec", {}))
        and is_subset(
            {k: v for k, v in desired["metadata"].items() if k in ("labels", "annotations")}, live["metadata"]
        )
    )


def replace_ops(desired: Mapping[str, Any], live: Mapping[str, Any]) -> list[dict[str, Any]]:
    """JSON-patch operations that put back each top-level spec field that differs."""
    have = live.get("spec") or {}
    return [
        {"op": "replace" if key in have else "add", "path": f"/spec/{key}", "value": value}
        for key, value in desired.get("spec", {}).items()
        if not is_subset(value, have.get(key))
    ]

"""The download Job's termination message: how it tells the operator what it fetched (or why
it failed) without the operator ever reading the token secret or the volume. The runtime
writes it (`termination_message`, `failure_message`); the operator reads it back from the
pod's container status (`termination_reports`, `job_report`). One module, both sides."""

from __future__ import annotations

import json
import os
from collections.abc import Iterable, Mapping
from pathlib import Path
from typing import Any

from llm_common.modelfacts import ModelFacts

# Kubernetes keeps at most 4096 bytes of a container's termination message.
TERMINATION_MESSAGE_LIMIT = 4096
DEFAULT_TERMINATION_MESSAGE_PATH = "/dev/termination-log"


# --- written by the download Job -------------------------------------------------------------


def _fits(payload: dict[str, Any]) -> str | None:
    text = json.dumps(payload, separators=(",", ":"), sort_keys=True)
    return text if len(text.encode()) <= TERMINATION_MESSAGE_LIMIT else None


def termination_message(facts: ModelFacts, commit: str, adapters: Mapping[str, str] | None = None) -> str:
    """Compact JSON of the facts (ModelFacts.to_dict keys) plus "commit" and "adapters"
    (name -> commit), at most 4096 bytes: a long quantization_config is cut down to its
    scalar entries, then to its method."""
    payload = {**facts.to_dict(), "commit": commit}
    if adapters:
        payload["adapters"] = dict(adapters)
    quantization = payload.get("quantizationConfig") or {}
    for attempt in (
        quantization,
        {k: v for k, v in quantization.items() if isinstance(v, (str, int, float, bool)) or v is None},
        {k: v for k, v in quantization.items() if k == "quant_method"},
    ):
        text = _fits({**payload, "quantizationConfig": attempt or None})
        if text is not None:
            return text
    text = _fits({k: v for k, v in payload.items() if k != "adapters"} | {"quantizationConfig": None})
    if text is None:
        raise ValueError("the model facts do not fit in a 4096-byte termination message")
    return text


def failure_message(error: str, reason: str, permanent: bool) -> str:
    """What a failed download leaves: the sentence, a CamelCase reason, and whether only a
    change to the spec can help (the operator then stops retrying)."""
    text = json.dumps({"error": error, "reason": reason, "permanent": permanent}, separators=(",", ":"))
    return (
        text
        if len(text.encode()) <= TERMINATION_MESSAGE_LIMIT
        else json.dumps({"error": error[:3500], "reason": reason, "permanent": permanent}, separators=(",", ":"))
    )


def write_termination_message(text: str, path: str | None = None) -> Path:
    """Write to $TERMINATION_MESSAGE_PATH, else /dev/termination-log (Kubernetes' default path)."""
    target = Path(path or os.environ.get("TERMINATION_MESSAGE_PATH") or DEFAULT_TERMINATION_MESSAGE_PATH)
    target.write_text(text)
    return target


# --- read by the operator ----------------------------------------------------------------------


def termination_reports(pods: Iterable[Mapping[str, Any]]) -> list[dict[str, Any]]:
    """JSON termination messages of the pods' containers, newest pod first (a message that
    is not JSON is kept as {"error": text})."""
    out: list[dict[str, Any]] = []
    for pod in sorted(pods, key=lambda p: (p.get("metadata") or {}).get("creationTimestamp", ""), reverse=True):
        for cs in (pod.get("status") or {}).get("containerStatuses") or []:
            message = ((cs.get("state") or {}).get("terminated") or {}).get("message")
            if not message:
                continue
            try:
                parsed = json.loads(message)
            except json.JSONDecodeError:
                parsed = {"error": message.strip()}
            if isinstance(parsed, dict):
                out.append(parsed)
    return out


def job_report(reports: Iterable[Mapping[str, Any]]) -> dict[str, Any] | None:
    """The download Job's report of the facts (the first report that has them)."""
    return next((dict(m) for m in reports if "error" not in m and "numLayers" in m), None)

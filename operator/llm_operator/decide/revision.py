"""Pure: which pod template a serving workload (Deployment, LeaderWorkerSet) is written with.

A model can take minutes to load, so its pods restart for a change of what they are rendered
from (the spec and the plan's decisions), not because a newer operator renders the same inputs
differently (an argument reordered, a label added, a new default image). The workload records
what its template was rendered from and the template as written (manifests.template_inputs and
the annotations beside it); while those inputs are unchanged, the recorded template is written
again in place of the new rendering, which applies at the next change of the inputs.

Hand edits are repaired as before: the recorded template is the one wanted, so a field edited
by hand differs from it and is applied back. Status counts the ready pods of the live
template's revision label, which a kept template keeps with its pods.
"""

from __future__ import annotations

import copy
import json
from typing import Any

from llm_operator.decide.compare import is_subset
from llm_operator.decide.manifests import (
    HASH_ANNOTATION,
    TEMPLATE_HASH_LABEL,
    TEMPLATE_INPUTS_ANNOTATION,
    WORKLOAD_TEMPLATE_FIELD,
    WRITTEN_TEMPLATE_ANNOTATION,
    with_hash,
    written_json,
)


def _annotations(obj: dict[str, Any]) -> dict[str, Any]:
    return (obj.get("metadata") or {}).get("annotations") or {}


def _pod_templates(kind: str, part: dict[str, Any]) -> list[dict[str, Any]]:
    """The pod templates in a workload's template field: the Deployment's, or the leader's and worker's."""
    found = [part] if kind == "Deployment" else [part.get("leaderTemplate"), part.get("workerTemplate")]
    return [t for t in found if isinstance(t, dict)]


def recorded_template(live: dict[str, Any]) -> dict[str, Any] | None:
    """The template the workload records as written (None: no record, or not one we can read)."""
    raw = _annotations(live).get(WRITTEN_TEMPLATE_ANNOTATION)
    try:
        parsed = json.loads(raw) if isinstance(raw, str) else None
    except ValueError:
        return None
    return parsed if isinstance(parsed, dict) else None


def _without_revision_label(kind: str, part: dict[str, Any]) -> dict[str, Any]:
    bare = copy.deepcopy(part)
    for template in _pod_templates(kind, bare):
        ((template.get("metadata") or {}).get("labels") or {}).pop(TEMPLATE_HASH_LABEL, None)
    return bare


def kept_template(want: dict[str, Any], live: dict[str, Any]) -> dict[str, Any] | None:
    """The template to write instead of `want`'s new rendering, or None to write the rendering.

    Recorded inputs equal to ours: the recorded template. No record (written by an operator
    that made none): the live template when it is ours less the revision label, which operators
    before that label did not set (writing the label would restart every pod for nothing); a
    live template with the label was labelled with a digest of itself, so the rendering is
    ours only if it is unchanged, and then there is nothing to keep."""
    kind = want["kind"]
    inputs = _annotations(live).get(TEMPLATE_INPUTS_ANNOTATION)
    if inputs is not None:
        return recorded_template(live) if inputs == _annotations(want).get(TEMPLATE_INPUTS_ANNOTATION) else None
    live_part = (live.get("spec") or {}).get(WORKLOAD_TEMPLATE_FIELD[kind]) or {}
    if any(
        TEMPLATE_HASH_LABEL in ((t.get("metadata") or {}).get("labels") or {}) for t in _pod_templates(kind, live_part)
    ):
        return None
    bare = _without_revision_label(kind, want["spec"][WORKLOAD_TEMPLATE_FIELD[kind]])
    return bare if is_subset(bare, live_part) else None


def settled_workload(want: dict[str, Any], live: dict[str, Any] | None) -> dict[str, Any]:
    """`want` as it is to be written: with the kept template in place of the new rendering
    (`kept_template`), re-stamped; unchanged where nothing is kept or `want` is no serving
    workload. `live`: our live workload of that name (None: there is none, or not ours)."""
    field = WORKLOAD_TEMPLATE_FIELD.get(want["kind"])
    if field is None or live is None:
        return want
    kept = kept_template(want, live)
    if kept is None or kept == want["spec"][field]:
        return want
    out = copy.deepcopy(want)
    out["spec"][field] = kept
    annotations = out["metadata"]["annotations"]
    # The record as it is, when it is what is kept: in whatever JSON the operator that wrote it wrote.
    recorded = _annotations(live).get(WRITTEN_TEMPLATE_ANNOTATION)
    annotations[WRITTEN_TEMPLATE_ANNOTATION] = recorded if recorded_template(live) == kept else written_json(kept)
    del annotations[HASH_ANNOTATION]
    return with_hash(out)

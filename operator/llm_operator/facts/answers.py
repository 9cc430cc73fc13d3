"""Pure: an answer to "what are this model's facts?", where it came from, and how status and
the plan's sentence say so. The lookup that produces it (lookup.py) reads the Hub; this
module reads nothing, so decide and planning can import it."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, replace
from typing import Any, TypeGuard

from llm_common.modelfacts import ModelFacts
from llm_operator.facts.catalog import UNPINNED, Catalog, short_revision

JOB = "job"
STATUS = "status"
HUB = "hub"
CATALOG = "catalog"
CONFIG = "config"  # a local config.json and parameter count (`render`, `plan`)
PENDING = "pending"  # being read from the Hub; the reconcile is woken when done
UNAVAILABLE = "unavailable"


@dataclass(frozen=True)
class FactsAnswer:
    facts: ModelFacts | None
    source: str  # one of the names above
    message: str = ""  # why there are none (pending or unavailable)
    missing: str = ""  # ModelNotFound | RevisionNotFound: the Hub said it does not exist
    note: str = ""  # said beside a plan made from these facts (a catalog for another revision)
    source_revision: str = ""  # the revision the catalog's facts were read from

    @property
    def known(self) -> bool:
        return self.facts is not None


def _for(data: Mapping[str, Any] | None, model_id: str, revision: str) -> TypeGuard[Mapping[str, Any]]:
    if not data:
        return False
    return bool(data.get("modelId") == model_id and data.get("revision") == revision)


def from_catalog(catalog: Catalog | None, model_id: str, revision: str, otherwise: FactsAnswer) -> FactsAnswer:
    match = catalog.match(model_id, revision) if catalog is not None else None
    if match is None:
        problem = catalog.problem_for(model_id) if catalog is not None else ""
        return replace(otherwise, message=f"{otherwise.message} {problem}".strip()) if problem else otherwise
    return FactsAnswer(match.facts, CATALOG, note=match.note, source_revision=match.entry.revision)


def status_facts_of(answer: FactsAnswer) -> dict[str, Any] | None:
    """What status.modelFacts keeps of an answer: the facts, where they came from, and the
    note beside them, so that after a restart the plan reads the same."""
    if answer.facts is None:
        return None
    kept = {**answer.facts.to_dict(), "source": answer.source}
    if answer.source_revision:
        kept["sourceRevision"] = answer.source_revision
    return {**kept, "note": answer.note} if answer.note else kept


def source_phrase(answer: FactsAnswer) -> str:
    """Where the facts came from, as the end of a plan's sentence."""
    phrase = {
        JOB: "the download Job, which read them from the weights",
        HUB: "the Hugging Face Hub",
        CATALOG: "the catalog",
        CONFIG: "the given config.json",
        STATUS: "status.modelFacts",
    }.get(answer.source, answer.source)
    if answer.source_revision and answer.source_revision != UNPINNED:
        phrase += f" (revision {short_revision(answer.source_revision)})"
    return f"Model facts from {phrase}." + (f" {answer.note}" if answer.note else "")

"""Model facts, from one ordered lookup, matched on model id and revision.

The order, most trusted first:
1. the download Job's report for this revision (its termination message: read from the
   weights themselves, with the user's token, which the operator never sees);
2. `status.modelFacts`, when it is for the same id@revision (kept so that a restart or a
   Hub outage does not forget what was read once);
3. the Hub, read in the background (no reconcile waits on it), failures remembered for a
   while;
4. the catalog shipped with the operator (plus a platform team's entries), when the Hub
   cannot answer: an air-gapped cluster, or a gated model (the operator never reads the
   token). Its facts are tied to one revision; a spec pinning another one is told so.

A source whose facts are for another id or revision is skipped, never used: after a
revision change the old revision's status.modelFacts must not win over the new Job's.
"""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Callable, Mapping
from typing import Any, Generic, TypeVar, overload

from llm_operator.facts.answers import (
    CATALOG,
    CONFIG,
    HUB,
    JOB,
    PENDING,
    STATUS,
    UNAVAILABLE,  # noqa: F401
    FactsAnswer,
    _for,
    from_catalog,
    source_phrase,
    status_facts_of,
)
from llm_operator.facts.catalog import Catalog
from llm_operator.facts.hub import ModelFacts, ModelFactsUnavailable, ModelMissing, facts_from_hub

__all__ = [
    "CATALOG",
    "CONFIG",
    "FACTS_RETRY_S",
    "HUB",
    "JOB",
    "PENDING",
    "STATUS",
    "UNAVAILABLE",
    "FactsAnswer",
    "FactsPending",
    "FactsSource",
    "from_catalog",
    "lookup",
    "source_phrase",
    "status_facts_of",
]

log = logging.getLogger(__name__)

# A failed fetch is not retried for this long: a reconcile must not wait on the Hub each time.
FACTS_RETRY_S = 600


class FactsPending(Exception):
    """The facts are being read in the background; the caller is called back when done."""


T = TypeVar("T")


class FactsSource(Generic[T]):
    """Anything by (id, revision) read from the Hub in the background, once, with failures
    remembered for `retry_s`. Used for model facts and for adapter_config.json."""

    @overload
    def __init__(self: FactsSource[ModelFacts], *, retry_s: float = FACTS_RETRY_S) -> None: ...
    @overload
    def __init__(self, fetch: Callable[[str, str], T], retry_s: float = FACTS_RETRY_S) -> None: ...

    def __init__(self, fetch: Callable[[str, str], Any] = facts_from_hub, retry_s: float = FACTS_RETRY_S):
        self._fetch: Callable[[str, str], T] = fetch
        self._retry_s = retry_s
        self._values: dict[tuple[str, str], T] = {}
        self._failures: dict[tuple[str, str], tuple[float, ModelFactsUnavailable]] = {}
        self._waiters: dict[tuple[str, str], list[Callable[[], None]]] = {}
        self._lock = threading.Lock()

    def get(self, model_id: str, revision: str, when_ready: Callable[[], None] | None = None) -> T:
        """The value, or ModelFactsUnavailable, or FactsPending (then `when_ready()` is
        called once the outcome is known)."""
        key = (model_id, revision)
        with self._lock:
            if key in self._values:
                return self._values[key]
            failed = self._failures.get(key)
            if failed and time.monotonic() - failed[0] < self._retry_s:
                raise _fresh(failed[1])
            first = key not in self._waiters
            waiters = self._waiters.setdefault(key, [])
            if when_ready is not None:
                waiters.append(when_ready)
        if first:
            threading.Thread(target=self._read, args=(key,), name=f"hub-{model_id}", daemon=True).start()
        raise FactsPending()

    def _read(self, key: tuple[str, str]) -> None:
        try:
            value = self._fetch(*key)
        except ModelFactsUnavailable as err:
            with self._lock:
                self._failures[key] = (time.monotonic(), err.with_traceback(None))
        except Exception as err:  # noqa: BLE001 - any failure of the Hub client means "unknown", logged
            log.warning("reading %s@%s from the Hub failed: %r", *key, err)
            with self._lock:
                self._failures[key] = (time.monotonic(), ModelFactsUnavailable(f"Reading from the Hub failed: {err}."))
        else:
            with self._lock:
                self._values[key] = value
                self._failures.pop(key, None)
        with self._lock:
            waiters = self._waiters.pop(key, [])
        for callback in waiters:
            callback()


def _fresh(err: ModelFactsUnavailable) -> ModelFactsUnavailable:
    """A new exception saying what `err` says. Raising the remembered one again and again
    would grow its traceback by every caller's frames and keep them, and all they hold,
    alive: memory growing with each reconcile of a model whose facts cannot be had."""
    if isinstance(err, ModelMissing):
        return ModelMissing(str(err), err.reason)
    return ModelFactsUnavailable(str(err))


def lookup(
    model_id: str,
    revision: str,
    *,
    job_report: Mapping[str, Any] | None = None,
    status_facts: Mapping[str, Any] | None = None,
    hub: FactsSource[ModelFacts] | None = None,
    when_ready: Callable[[], None] | None = None,
    offline_reason: str = "",
    catalog: Catalog | None = None,
) -> FactsAnswer:
    """The facts of model_id@revision from the first source that has them (see the module's
    docstring for the order). With no `hub`, an unknown model is unavailable for
    `offline_reason`, unless the catalog has it."""
    if _for(job_report, model_id, revision):
        return FactsAnswer(ModelFacts.from_dict(job_report), JOB)
    if _for(status_facts, model_id, revision):
        # Kept with the source they were first read from, so a restart says the same.
        return FactsAnswer(
            ModelFacts.from_dict(status_facts),
            status_facts.get("source") or STATUS,
            note=status_facts.get("note") or "",
            source_revision=status_facts.get("sourceRevision") or "",
        )
    if hub is None:
        return from_catalog(
            catalog,
            model_id,
            revision,
            FactsAnswer(None, UNAVAILABLE, offline_reason or "The model's facts are not known offline."),
        )
    try:
        return FactsAnswer(hub.get(model_id, revision, when_ready), HUB)
    except FactsPending:
        return FactsAnswer(
            None, PENDING, f"Reading the facts of {model_id}@{revision} from the Hub to plan GPU memory."
        )
    except ModelMissing as err:
        # A model the catalog knows is hidden, not missing (the Hub answers a gated or private
        # repository so to a reader without a token); a revision it does not know is missing.
        if err.reason == "RevisionNotFound":
            return FactsAnswer(None, UNAVAILABLE, str(err), missing=err.reason)
        return from_catalog(catalog, model_id, revision, FactsAnswer(None, UNAVAILABLE, str(err), missing=err.reason))
    except ModelFactsUnavailable as err:
        return from_catalog(catalog, model_id, revision, FactsAnswer(None, UNAVAILABLE, str(err)))

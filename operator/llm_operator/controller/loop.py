"""One reconcile of one LLMDeployment: observe -> decide -> act.

Observe is a snapshot of the read model (taken on the event loop); the look-ups outside
the cluster (model facts, adapter configs) never wait: what is not known yet is being
read in the background and wakes the owner when it is. Decide is pure. Act writes only
what differs; after writing children it decides again on the API's answers, so the status
it reports is the state it made.
"""

from __future__ import annotations

import asyncio
import datetime as dt
import functools
import logging
from dataclasses import replace
from typing import Any

from llm_operator import api
from llm_operator.controller import act, metrics
from llm_operator.controller.context import OperatorContext
from llm_operator.controller.workqueue import Retry
from llm_operator.decide import writes
from llm_operator.decide.decision import Decision, Lookups, decide, facts_query, with_applied
from llm_operator.decide.observed import Key, Observed, spec_of
from llm_operator.facts.hub import ModelFactsUnavailable
from llm_operator.facts.lookup import UNAVAILABLE, FactsAnswer, FactsPending, lookup

log = logging.getLogger(__name__)


def look_up(ctx: OperatorContext, key: Key, observed: Observed) -> Lookups:
    """Model facts and adapter configs, in the order facts.lookup states."""
    spec = spec_of(observed)
    if isinstance(spec, api.InvalidSpec):
        return Lookups(facts=FactsAnswer(None, UNAVAILABLE, "The spec is invalid."))

    def wake() -> None:
        assert ctx.queue is not None  # made before the first reconcile (OperatorContext.start)
        ctx.queue.add_threadsafe(key)

    q = facts_query(observed, spec)
    answer = lookup(
        q.model_id,
        q.revision,
        job_report=q.job_report,
        status_facts=q.status_facts,
        hub=ctx.facts,
        when_ready=wake,
        catalog=ctx.catalog,
    )
    configs: dict[str, dict[str, Any] | None] = {}
    pending = []
    for a in spec.adapters:
        try:
            configs[a.name] = ctx.adapter_configs.get(a.id, a.revision, wake)
        except FactsPending:
            pending.append(a.name)
        except ModelFactsUnavailable:
            configs[a.name] = None
    return Lookups(
        facts=answer, adapter_configs=configs, adapters_pending=tuple(pending), autoscaler=ctx.scaler_reports.get(key)
    )


def start(ctx: OperatorContext) -> None:
    """The work queue runs `process` for each owner put on it (kopf's event loop)."""
    ctx.start(functools.partial(process, ctx))


async def process(ctx: OperatorContext, key: Key) -> float | None:
    """One owner off the work queue: its snapshot (on the event loop), then the reconcile in
    a worker thread; the seconds after which to look again, if time alone changes something."""
    observed = ctx.read_model.snapshot(key, ctx.clock())
    if observed is None:
        ctx.forget(key)
        return None
    try:
        decision = await asyncio.get_running_loop().run_in_executor(ctx.pool, reconcile, ctx, key, observed)
    finally:
        ctx.judge_meanwhile(key)
        ctx.watch_taken(key)
    return decision.requeue_after


def reconcile(ctx: OperatorContext, key: Key, observed: Observed) -> Decision:
    """Runs in a worker thread; `observed` was taken on the event loop."""
    now = dt.datetime.now(dt.UTC)
    with metrics.RECONCILE_SECONDS.time():
        lookups = look_up(ctx, key, observed)
        decision = decide(observed, lookups, now)
        written: list[str] = []
        if decision.apply or decision.prune:
            try:
                done = act.children(ctx.kube, ctx.read_model, observed, decision)
            except act.NamespaceTerminating:
                ctx.read_model.namespace_terminating(key[0], ctx.clock())
                metrics.RECONCILES.labels("Terminating").inc()
                return Decision(phase="Terminating")
            written = done.names()
            # The status reports what was just made, and what the API refused: decide again on its answers.
            observed = with_applied(observed, done.applied, done.pruned)
            if done.refused:
                observed = replace(observed, refused=done.refused)
            decision = decide(observed, lookups, now)
        _report(ctx, key, observed, decision, now)
        if written:
            log.info("%s/%s: wrote %s", key[0], key[1], ", ".join(written))
        retried = [
            f"{k}/{n}: HTTP {r.status}: {r.message}" for (k, n), r in observed.refused.items() if writes.retried(k, r)
        ]
        if retried:
            # Said in status and an Event, then retried with the queue's backoff. A refusal only
            # a change can help waits for that change (or the resync), not a retry loop.
            metrics.RECONCILES.labels(decision.phase).inc()
            raise Retry("the API refused " + "; ".join(retried))
    metrics.RECONCILES.labels(decision.phase).inc()
    return decision


def _report(ctx: OperatorContext, key: Key, observed: Observed, decision: Decision, now: dt.datetime) -> None:
    """The status patch and the Event of a decision."""
    if decision.status_patch is not None:
        act.status(ctx.kube, ctx.read_model, observed, decision.status_patch)
    if decision.events:
        assert decision.status is not None  # events come with the status they report (decide/status.py)
        ready = next(c for c in decision.status["conditions"] if c["type"] == "Ready")
        log.info(
            "%s/%s: %s -> %s: %s",
            key[0],
            key[1],
            (observed.llmd.get("status") or {}).get("phase"),
            decision.phase,
            ready["message"],
        )
        ctx.post_events(observed, decision.events, now)

"""The operator-native autoscaler wired to the controller: each tick's decision is written
through act (replicas through the scale subresource, an Event), and its state goes to the
reconcile, which writes status.autoscaler with the rest of status: one status writer."""

from __future__ import annotations

import datetime as dt
import logging

from llm_operator import api
from llm_operator.autoscale import loop
from llm_operator.autoscale.policy import Decision, GatewayCounts
from llm_operator.controller import act
from llm_operator.controller.context import OperatorContext
from llm_operator.decide.observed import Observed, spec_of
from llm_operator.decide.status import Event

log = logging.getLogger(__name__)


def autoscale(
    ctx: OperatorContext,
    observed: Observed,
    now: float | None = None,
    gateways: list[dict[str, GatewayCounts] | None] | None = None,
) -> Decision | None:
    """One tick for one LLMDeployment (in a worker thread)."""
    meta = observed.meta
    key = (meta["namespace"], meta["name"])
    tick = loop.tick(observed, ctx.settings, ctx.scaler_states.get(key), now, gateways)
    if tick is None:
        return None
    ctx.scaler_states[key] = tick.state
    if tick.scale_to is not None:
        act.scale(ctx.kube, observed, tick.scale_to)
        spec = spec_of(observed)
        assert isinstance(spec, api.LLMDeploymentSpec)  # tick() is None for an invalid spec
        reason = "ScaledUp" if tick.scale_to > spec.replicas else "ScaledDown"
        ctx.post_events(observed, (Event("Normal", reason, tick.decision.reason),), dt.datetime.now(dt.UTC))
        log.info("%s/%s: %s", key[0], key[1], tick.decision.reason)
    if tick.report is not None:
        ctx.scaler_reports[key] = tick.report
        if ctx.queue is not None:
            ctx.queue.add_threadsafe(key)
    return tick.decision

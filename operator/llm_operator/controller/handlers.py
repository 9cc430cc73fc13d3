"""kopf wiring only: LLMDeployments, nodes and StorageClasses are watched by kopf (indexes
feeding the read model, and every LLMDeployment event puts it on the work queue); the
children and their pods by the operator's own informers (informers.py), which wake their
owners. No change handler (on.create/update/resume): those store a diff base on the
object, one more write per change that a level-triggered reconcile does not need.

No reconcile starts before kopf's indexes and the informers have all listed their kinds,
so the first reconcile after a start already sees every child: a restart writes nothing.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Iterable
from typing import Any

import kopf

from llm_operator import api
from llm_operator.autoscale.loop import read_gateways
from llm_operator.controller import autoscaling, loop
from llm_operator.controller.context import OperatorContext
from llm_operator.controller.informers import Informers, TakenNames
from llm_operator.controller.readmodel import ReadModel
from llm_operator.decide.manifests import MANAGED_BY
from llm_operator.decide.observed import SINGLE_NODE_KINDS, Key, trim_llmdeployment, trim_node, trim_storage_class
from llm_operator.kube.asyncclient import AsyncKube

log = logging.getLogger(__name__)


class NoDiffBase(kopf.DiffBaseStorage):
    """No diff base: no handler here reads one (there is no change handler), and kopf
    would otherwise deep-copy every event's whole body to build it, a tenth of the
    operator's CPU in a burst (profiled). Nothing is stored on the objects either."""

    def build(  # type: ignore[override]  # kopf's base says BodyEssence, yet kopf takes None (processing.py)
        self, *, body: kopf.Body, extra_fields: Iterable[kopf.FieldSpec] | None = None
    ) -> kopf.BodyEssence | None:
        return None

    def fetch(self, *, body: kopf.Body) -> kopf.BodyEssence | None:
        return None

    def store(self, *, body: kopf.Body, patch: kopf.Patch, essence: kopf.BodyEssence) -> None:
        return None


def context(memo: kopf.Memo) -> OperatorContext:
    """The operator's one state object (`llm-operator run` puts it in memo)."""
    ctx = getattr(memo, "ctx", None)
    if ctx is None:
        ctx = memo.ctx = OperatorContext()
    return ctx


@kopf.on.startup()
async def configure(settings: kopf.OperatorSettings, memo: kopf.Memo, **indexes: Any) -> None:
    # Everything kopf stores on our objects lives under our own prefix.
    settings.persistence.finalizer = f"{api.GROUP}/finalizer"
    settings.persistence.progress_storage = kopf.AnnotationsProgressStorage(prefix=api.GROUP, v1=False)
    settings.persistence.diffbase_storage = NoDiffBase()
    settings.posting.reporting_component = "llm-operator"
    # kopf would post an Event for every handler run; only problems are worth one.
    settings.posting.level = logging.WARNING
    # A half-open watch connection must not hang the operator.
    settings.watching.server_timeout = 300
    settings.watching.client_timeout = 330
    settings.watching.connect_timeout = 30
    # One line per handled event is noise; failures still log as warnings and errors.
    logging.getLogger("kopf.objects").setLevel(logging.WARNING)

    ctx = context(memo)
    kinds = (*SINGLE_NODE_KINDS, "LeaderWorkerSet") if ctx.settings.multi_node else SINGLE_NODE_KINDS
    ctx.informers = Informers(
        AsyncKube.load(connections=0),
        kinds,
        list(ctx.settings.namespaces),
        f"app.kubernetes.io/managed-by={MANAGED_BY}",
        ctx.wake,
    )
    ctx.read_model.bind(
        {**{k: v for k, v in indexes.items() if k.endswith("_index")}, **ctx.informers.indexes},
        multi_node=ctx.settings.multi_node,
        downloader_image=ctx.settings.downloader_image,
    )
    ctx.taken_names = TakenNames(ctx.informers.kube, ctx.read_model, ctx.wake)
    loop.start(ctx)
    await ctx.informers.start()
    ctx.tasks.append(asyncio.create_task(_informers_synced(ctx), name="informers-synced"))
    ctx.tasks.append(asyncio.create_task(_resync(ctx), name="resync"))
    ctx.tasks.append(asyncio.create_task(_autoscale(ctx), name="autoscale"))


@kopf.on.cleanup()
async def stop(memo: kopf.Memo, **_: Any) -> None:
    await context(memo).stop()


# --- the read model ---------------------------------------------------------------------------


# Index handlers are coroutines: kopf runs a plain function in a thread, a hop per event.


@kopf.index(api.GROUP, api.VERSION, api.PLURAL, id=ReadModel.LLMD_INDEX)
async def _llmdeployments(body: kopf.Body, namespace: str | None, name: str, **_: Any) -> dict[Key, dict[str, Any]]:
    assert namespace is not None  # LLMDeployments are namespaced
    return {(namespace, name): trim_llmdeployment(body)}


async def _informers_synced(ctx: OperatorContext) -> None:
    assert ctx.informers is not None  # bound by configure before this task starts
    await ctx.informers.wait_synced()
    ctx.mark_ready(informers=True)


@kopf.index("", "v1", "nodes", id=ReadModel.NODE_INDEX)
async def _nodes(body: kopf.Body, memo: kopf.Memo, **_: Any) -> dict[str, dict[str, Any]]:
    # A node added or changed in labels, taints or GPUs may decide whether a pending pod could ever
    # be placed (status says Stalled or waiting); heartbeats change nothing trimmed: no wake.
    ctx = context(memo)
    trimmed = trim_node(body)
    before = ctx.read_model.watched(ReadModel.NODE_INDEX, "nodes", trimmed["metadata"]["name"])
    if before != trimmed:
        for key in ctx.read_model.keys():
            ctx.wake(key)
    return {"nodes": trimmed}


@kopf.index("storage.k8s.io", "v1", "storageclasses", id=ReadModel.STORAGE_CLASS_INDEX)
async def _storage_classes(body: kopf.Body, memo: kopf.Memo, **_: Any) -> dict[str, dict[str, Any]]:
    # A StorageClass made (or made the default) may be what a weight cache waits for.
    ctx = context(memo)
    for key in ctx.read_model.keys():
        ctx.wake(key)
    return {"storageclasses": trim_storage_class(body)}


# --- events -> the work queue ------------------------------------------------------------------


@kopf.on.event(api.GROUP, api.VERSION, api.PLURAL)
async def _llmdeployment_event(body: kopf.Body, namespace: str | None, name: str, memo: kopf.Memo, **_: Any) -> None:
    # kopf calls no such handler before every index of its own has listed its kind; once
    # the informers have listed theirs too, the read model is whole and reconciles begin.
    assert namespace is not None  # LLMDeployments are namespaced
    ctx = context(memo)
    ctx.mark_ready(kopf=True)
    ctx.wake((namespace, name), body)


# --- periodic work, on the event loop (kopf timers would put a finalizer on every object) -----


async def _resync(ctx: OperatorContext) -> None:
    """A safety net behind the events: every object again, reading only the read model."""
    while True:
        await asyncio.sleep(ctx.settings.resync_s)
        assert ctx.queue is not None  # made by loop.start before this task starts
        for key in ctx.read_model.keys():
            ctx.queue.add(key)


async def _autoscale(ctx: OperatorContext) -> None:
    """Autoscaling mode operator: one tick per interval for each object that asks for it."""
    running = asyncio.get_running_loop()
    while True:
        await asyncio.sleep(ctx.settings.autoscale_interval_s)
        keys = [key for key in ctx.read_model.keys() if _autoscaled(ctx.read_model.parsed_spec(key))]
        if not keys:
            continue
        # The gateway's counts, read once for every model of this tick.
        try:
            gateways = await running.run_in_executor(ctx.pool, read_gateways, ctx)
        except Exception:  # noqa: BLE001 - logged; the pods are scraped instead
            log.exception("reading the gateway's counts failed")
            gateways = None
        for key in keys:
            # Only the objects that ask for it are snapshot.
            observed = ctx.read_model.snapshot(key, ctx.clock())
            if observed is None:
                continue
            try:
                await running.run_in_executor(ctx.pool, autoscaling.autoscale, ctx, observed, None, gateways)
            except Exception:  # noqa: BLE001 - one object's failure must not stop the loop; it is logged
                log.exception("autoscaling %s/%s failed", *key)


def _autoscaled(spec: api.LLMDeploymentSpec | api.InvalidSpec | None) -> bool:
    return isinstance(spec, api.LLMDeploymentSpec) and spec.autoscaling.mode == "operator"

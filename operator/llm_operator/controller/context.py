"""The operator's state, in one object passed explicitly (kopf keeps it in `memo`).

Settings come in as arguments of `llm-operator run`, never through environment
variables set at run time.
"""

from __future__ import annotations

import asyncio
import datetime as dt
import logging
import time
from collections.abc import Awaitable, Callable, Mapping
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

from llm_common.modelfacts import ModelFacts
from llm_operator.autoscale.policy import ScalerState
from llm_operator.controller import act
from llm_operator.controller.readmodel import ReadModel
from llm_operator.controller.workqueue import WorkQueue
from llm_operator.decide.observed import Key, Observed
from llm_operator.decide.status import Event
from llm_operator.facts.catalog import Catalog, builtin
from llm_operator.facts.hub import adapter_config_from_hub
from llm_operator.facts.lookup import FactsSource
from llm_operator.kube.client import Kube, load_config

if TYPE_CHECKING:
    from llm_operator.controller.informers import Informers, TakenNames

log = logging.getLogger(__name__)

EVENT_THREADS = 4  # Events posted at once, beside the reconciles


@dataclass(frozen=True)
class Settings:
    workers: int = 16  # reconciles at once (threads doing API requests)
    coalesce_s: float = 0.05  # events for one owner within this become one reconcile
    resync_s: float = 300.0  # a reconcile of every object, in case an event was missed
    autoscale_interval_s: float = 15.0  # scrapes of the pods' /metrics, autoscaling mode operator
    # Where a pod's metrics are read; outside the cluster, through the apiserver's pod proxy.
    pod_metrics_url: str = "http://{pod_ip}:{port}/metrics"
    # The gateway's /metrics, read once per autoscaler tick: fixed URLs, and/or the ready pods of
    # "namespace/label-selector" on gateway_port (each replica's counts are summed).
    gateway_metrics_urls: tuple[str, ...] = ()
    gateway_pods: str | None = None
    gateway_port: int = 8080
    # Replicas spanning nodes run as LeaderWorkerSets (an optional CRD): watched and made only when on.
    multi_node: bool = False
    # The download Job's image where a spec names none (the chart: the operator's own); empty: the default.
    downloader_image: str = ""
    # The namespaces watched (the same as kopf's); empty: the whole cluster.
    namespaces: tuple[str, ...] = ()


@dataclass
class OperatorContext:
    settings: Settings = field(default_factory=Settings)
    read_model: ReadModel = field(default_factory=ReadModel)
    facts: FactsSource[ModelFacts] = field(default_factory=FactsSource)
    # Model facts for when the Hub cannot answer: the shipped entries plus the chart's.
    catalog: Catalog = field(default_factory=builtin)
    adapter_configs: FactsSource[dict[str, Any]] = field(
        default_factory=lambda: FactsSource(fetch=adapter_config_from_hub)
    )
    clock = staticmethod(time.monotonic)
    _kube: Kube | None = None
    queue: WorkQueue[Key] | None = None
    pool: ThreadPoolExecutor | None = None
    event_pool: ThreadPoolExecutor | None = None
    scaler_states: dict[Key, ScalerState] = field(default_factory=dict)  # owner -> the autoscaler's between ticks
    # owner -> status.autoscaler as the autoscaler last reported it: the reconcile writes it (one status writer).
    scaler_reports: dict[Key, dict[str, Any]] = field(default_factory=dict)
    tasks: list[asyncio.Task[None]] = field(default_factory=list)
    informers: Informers | None = None  # the children and pods (bound at startup)
    taken_names: TakenNames | None = None  # the watches of names taken by objects not ours (bound at startup)
    # Whether kopf's indexes and the informers have listed every watched kind: before both,
    # no reconcile may start (it would miss children and write them again); once both
    # have, every object is reconciled.
    kopf_listed: bool = False
    informers_listed: bool = False

    # Objects that changed while their owner's reconcile was running: owner -> watched bodies.
    changed_meanwhile: dict[Key, list[Mapping[str, Any]]] = field(default_factory=dict)

    def wake(self, key: Key, body: Mapping[str, Any] | None = None) -> None:
        """Something of `key` changed (on the event loop). With the changed object's `body`,
        the echo of our own write wakes nothing: while the owner's reconcile runs (its write
        may still be on its way back to us), the body is kept and judged when it ends."""
        if not self.ready:
            return
        if body is not None:
            if self._queue().active(key):
                self.changed_meanwhile.setdefault(key, []).append(body)
                return
            if self.read_model.is_echo(key, body):
                return
        self._queue().add(key)

    @property
    def ready(self) -> bool:
        return self.kopf_listed and self.informers_listed and self.queue is not None

    def _queue(self) -> WorkQueue[Key]:
        """The work queue, where it must have been made already (ready, or a reconcile running)."""
        assert self.queue is not None, "OperatorContext.start() makes the work queue"
        return self.queue

    def mark_ready(self, kopf: bool = False, informers: bool = False) -> None:
        """kopf's indexes (its first LLMDeployment event) or the informers have listed
        everything; when that makes both, every object is reconciled."""
        was = self.ready
        self.kopf_listed = self.kopf_listed or kopf
        self.informers_listed = self.informers_listed or informers
        if self.ready and not was:
            for key in self.read_model.keys():
                self._queue().add(key)

    def judge_meanwhile(self, key: Key) -> None:
        """At the end of a reconcile: again, unless all that came meanwhile was our own echo."""
        bodies = self.changed_meanwhile.pop(key, ())
        if any(not self.read_model.is_echo(key, b) for b in bodies):
            self._queue().add(key)

    @property
    def kube(self) -> Kube:
        if self._kube is None:
            self._kube = Kube(load_config(pool_size=self.settings.workers * 2))
        return self._kube

    def post_events(self, observed: Observed, events: tuple[Event, ...], now: dt.datetime) -> None:
        """Events go out beside the reconciles, as client-go's recorder does: a reconcile
        never waits on one (the status already says the same), and losing one is logged."""
        if self.event_pool is not None and events:
            self.event_pool.submit(act.events, self.kube, observed, events, now)

    def start(self, process: Callable[[Key], Awaitable[float | None]]) -> None:
        """On kopf's event loop, once the indexes are bound: the pools, and the work queue
        that runs `process` (controller/loop.py) for each owner put on it."""
        self.pool = ThreadPoolExecutor(max_workers=self.settings.workers, thread_name_prefix="reconcile")
        self.event_pool = ThreadPoolExecutor(max_workers=EVENT_THREADS, thread_name_prefix="events")
        self.queue = WorkQueue(process, self.settings.workers, self.settings.coalesce_s)
        self.queue.start()

    def watch_taken(self, key: Key) -> None:
        """After a reconcile: watch the names it found taken by objects not ours (on the event loop)."""
        if self.taken_names is not None:
            self.taken_names.sync(key)

    def forget(self, key: Key) -> None:
        """An owner is gone: nothing of it is kept."""
        self.read_model.forget(key)
        if self.taken_names is not None:
            self.taken_names.forget(key)
        self.scaler_states.pop(key, None)
        self.scaler_reports.pop(key, None)

    async def stop(self) -> None:
        for task in self.tasks:
            task.cancel()
        await asyncio.gather(*self.tasks, return_exceptions=True)
        if self.queue is not None:
            await self.queue.stop()
        if self.taken_names is not None:
            await self.taken_names.stop()
        if self.informers is not None:
            await self.informers.stop()
        for pool in (self.pool, self.event_pool):
            if pool is not None:
                pool.shutdown(wait=False, cancel_futures=True)

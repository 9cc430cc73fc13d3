"""The baselines' plain clients: create and apply (raw apply), create, apply and the
operator's status patch and Event (same writes), and a watch-driven client that applies
as the objects arrive (queued)."""

from __future__ import annotations

import http.client
import json
import queue
import socket
import threading
import time
from concurrent.futures import ThreadPoolExecutor

from llm_operator import api
from llm_operator.kube.client import Kube

from .apiserver import Raw
from .config import CONCURRENCY, BenchError
from .objects import desired_for, manifest, with_retry, write_report


class PlainController:
    """The queued baselines' client: it watches the namespace's LLMDeployments and applies
    each new one's children from CONCURRENCY threads, first come first served, with nothing
    else (no read model; with `report`, the operator's status patch and Event after the
    children, else none). What an operator's latency can be compared with when the objects
    arrive faster than they can be worked off."""

    def __init__(self, raw: Raw, kube: Kube, namespace: str, names: list[str], spec: dict, report: bool = False):
        self.raw, self.kube, self.namespace, self.spec, self.report = raw, kube, namespace, spec, report
        self.wanted = set(names)
        self.queue: queue.Queue[tuple[str, str] | None] = queue.Queue()
        self.done = threading.Event()
        self.applied = 0
        self.last = 0.0
        self.error: BaseException | None = None
        self.lock = threading.Lock()
        self.path = Kube.path(api.API_VERSION, api.KIND, namespace)
        self.rv = json.loads(raw.get(f"{self.path}?limit=1"))["metadata"]["resourceVersion"]
        self.conn = None
        threading.Thread(target=self._watch, daemon=True).start()
        self.workers = [threading.Thread(target=self._work, daemon=True) for _ in range(CONCURRENCY)]
        for t in self.workers:
            t.start()

    def _watch(self) -> None:
        try:
            self.conn, resp = self.raw.open(f"{self.path}?watch=1&resourceVersion={self.rv}", timeout=None)
            for line in resp:
                ev = json.loads(line)
                meta = ev["object"]["metadata"]
                if ev["type"] == "ADDED" and meta["name"] in self.wanted:
                    self.queue.put(ev["object"])
        except (OSError, ValueError, http.client.HTTPException):
            return  # shut down by stop()

    def _work(self) -> None:
        while (created := self.queue.get()) is not None:
            name, uid = created["metadata"]["name"], created["metadata"]["uid"]
            try:
                answers = [
                    with_retry(lambda child=child: self.kube.apply(child), f"applying {child['kind']}/{name}")
                    for child in desired_for(name, self.namespace, uid, self.spec)
                ]
                if self.report:
                    write_report(self.kube, created, answers)
            except BaseException as err:  # noqa: BLE001 - handed to wait(), which raises it
                self.error = err
                self.done.set()
                return
            with self.lock:
                self.applied += 1
                self.last = time.monotonic()
                if self.applied >= len(self.wanted):
                    self.done.set()

    def wait(self, timeout: float) -> float:
        """Until every wanted object's children are applied; the monotonic time of the last apply."""
        finished = self.done.wait(timeout)
        if self.conn is not None and self.conn.sock is not None:
            try:
                self.conn.sock.shutdown(socket.SHUT_RDWR)
            except OSError:
                pass
        for _ in self.workers:
            self.queue.put(None)
        if self.error is not None:
            raise BenchError(f"queued baseline: {self.error}")
        if not finished:
            raise BenchError(f"queued baseline: {self.applied}/{len(self.wanted)} applied within {timeout:.0f}s")
        return self.last


def burst(
    kube: Kube,
    namespace: str,
    names: list[str],
    spec: dict,
    apply_children: bool,
    controller: PlainController | None = None,
    timeout: float = 600,
    report: bool = False,
) -> tuple[float, float]:
    """Create every LLMDeployment from CONCURRENCY threads (and, for the baseline, apply its
    children right after; for the queued baseline, `controller` applies them as they come).
    With `report` (the same-writes baseline), each object's status patch and Event follow its
    children, as the operator writes them. Returns (monotonic start, monotonic end of the last call)."""
    collection = Kube.path(api.API_VERSION, api.KIND, namespace)

    def one(name: str) -> float:
        created = with_retry(
            lambda: kube.request("POST", collection, body=manifest(name, namespace, spec)),
            f"creating {namespace}/{name}",
        )
        if apply_children:
            answers = [
                with_retry(lambda child=child: kube.apply(child), f"applying {child['kind']}/{name}")
                for child in desired_for(name, namespace, created["metadata"]["uid"], spec)
            ]
            if report:
                write_report(kube, created, answers)
        return time.monotonic()

    start = time.monotonic()
    with ThreadPoolExecutor(CONCURRENCY) as pool:
        ends = list(pool.map(one, names))
    if controller is not None:
        ends.append(controller.wait(timeout))
    return start, max(ends)

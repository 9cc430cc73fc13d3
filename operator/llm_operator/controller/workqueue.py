"""A coalescing work queue of LLMDeployment keys, on kopf's event loop.

Many events name the same owner within moments of each other (its own ADDED, then its
Service's and Deployment's, then the controller manager's status updates). A key added
while it is already waiting is not added twice, and a key added while it is being
reconciled is reconciled once more afterwards (the event may carry news the running
reconcile did not see). A short delay before the first reconcile lets a burst of events
for one owner become one reconcile. Failures are retried with a per-key backoff.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Awaitable, Callable, Hashable
from typing import Generic, TypeVar

log = logging.getLogger(__name__)

BACKOFF_FIRST_S = 0.5
BACKOFF_MAX_S = 60.0


class Retry(Exception):
    """An expected failure (the API refused a write, already said in status): retried with
    the backoff, logged in one line."""


K = TypeVar("K", bound=Hashable)


class WorkQueue(Generic[K]):
    def __init__(self, process: Callable[[K], Awaitable[float | None]], workers: int, coalesce_s: float) -> None:
        """`process(key)` reconciles one key and returns seconds after which to do it again
        (None: only when an event says so)."""
        self._process = process
        self._workers = workers
        self._coalesce_s = coalesce_s
        self._waiting: set[K] = set()  # added, not yet taken by a worker
        self._active: set[K] = set()  # being reconciled now
        self._again: set[K] = set()  # added while being reconciled
        self._later: dict[K, asyncio.TimerHandle] = {}  # key -> TimerHandle of a delayed add
        self._failures: dict[K, int] = {}  # key -> consecutive failures
        self._queue: asyncio.Queue[K] | None = None
        self._loop: asyncio.AbstractEventLoop | None = None
        self._tasks: list[asyncio.Task[None]] = []

    def start(self) -> None:
        self._loop = asyncio.get_running_loop()
        self._queue = asyncio.Queue()
        self._tasks = [asyncio.create_task(self._work(), name=f"reconcile-worker-{i}") for i in range(self._workers)]

    async def stop(self) -> None:
        for handle in self._later.values():
            handle.cancel()
        for task in self._tasks:
            task.cancel()
        await asyncio.gather(*self._tasks, return_exceptions=True)
        self._tasks = []

    def add(self, key: K) -> None:
        """Reconcile `key` soon (on the event loop's thread)."""
        if key in self._active:
            self._again.add(key)
            return
        if key in self._waiting:
            return
        self._waiting.add(key)
        assert self._loop is not None and self._queue is not None
        self._loop.call_later(self._coalesce_s, self._queue.put_nowait, key)

    def add_threadsafe(self, key: K) -> None:
        """`add` from another thread (the Hub reader calls back from its own)."""
        if self._loop is not None and not self._loop.is_closed():
            self._loop.call_soon_threadsafe(self.add, key)

    def add_after(self, key: K, delay_s: float) -> None:
        """Reconcile `key` after `delay_s`, once (an earlier pending delay wins)."""
        assert self._loop is not None
        handle = self._later.get(key)
        when = self._loop.time() + delay_s
        if handle is not None and handle.when() <= when:
            return
        if handle is not None:
            handle.cancel()

        def fire() -> None:
            self._later.pop(key, None)
            self.add(key)

        self._later[key] = self._loop.call_later(delay_s, fire)

    def active(self, key: K) -> bool:
        """Being reconciled now."""
        return key in self._active

    def __len__(self) -> int:
        return len(self._waiting) + len(self._active)

    async def _work(self) -> None:
        assert self._queue is not None
        while True:
            key = await self._queue.get()
            self._waiting.discard(key)
            self._active.add(key)
            again_after: float | None = None
            try:
                again_after = await self._process(key)
                self._failures.pop(key, None)
            except asyncio.CancelledError:
                raise
            except Exception as err:  # noqa: BLE001 - one owner's failure must not stop the worker; retried with backoff
                n = self._failures.get(key, 0) + 1
                self._failures[key] = n
                again_after = min(BACKOFF_MAX_S, BACKOFF_FIRST_S * 2 ** (n - 1))
                if isinstance(err, Retry):
                    log.warning("reconciling %s: %s (attempt %d); again in %.1fs", key, err, n, again_after)
                else:
                    log.exception("reconciling %s failed (attempt %d); again in %.1fs", key, n, again_after)
            finally:
                self._active.discard(key)
            if key in self._again:
                self._again.discard(key)
                self.add(key)
            if again_after is not None:
                self.add_after(key, again_after)

"""The fake engine's batch: `max_batch` slots, handed out first come, first served."""

from __future__ import annotations

import asyncio
from collections import deque


class BatchSlots:
    """At most `size` requests generate at once; the others wait first come, first served."""

    def __init__(self, size: int):
        if size < 1:
            raise ValueError(f"max_batch must be at least 1, not {size}")
        self.size, self.free = size, size
        self.waiters: deque[asyncio.Future] = deque()

    @property
    def running(self) -> int:
        return self.size - self.free

    @property
    def waiting(self) -> int:
        return len(self.waiters)

    async def acquire(self) -> None:
        if self.free and not self.waiters:
            self.free -= 1
            return
        waiter = asyncio.get_running_loop().create_future()
        self.waiters.append(waiter)
        try:
            await waiter
        except asyncio.CancelledError:
            if waiter.done() and not waiter.cancelled():
                self.release()  # granted a slot just as its client went away: pass it on
            elif waiter in self.waiters:  # release() may have dropped it already, skipping it as cancelled
                self.waiters.remove(waiter)
            raise

    def release(self) -> None:
        while self.waiters:
            waiter = self.waiters.popleft()
            if not waiter.done():
                waiter.set_result(None)  # the slot goes straight to the next in line
                return
        self.free += 1

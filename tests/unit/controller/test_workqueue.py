"""The coalescing work queue: a burst of events for one owner is one reconcile; an event
during a reconcile is one more; failures come back with a backoff."""

from __future__ import annotations

import asyncio

from llm_operator.controller.workqueue import WorkQueue


def run(coro):
    return asyncio.run(asyncio.wait_for(coro, timeout=10))


def test_a_burst_for_one_key_is_one_reconcile():
    async def main():
        done = []

        async def process(key):
            done.append(key)

        q = WorkQueue(process, workers=2, coalesce_s=0.05)
        q.start()
        for _ in range(50):
            q.add("a")
        q.add("b")
        await asyncio.sleep(0.3)
        await q.stop()
        return done

    assert sorted(run(main())) == ["a", "b"]


def test_an_event_during_a_reconcile_means_one_more_afterwards():
    async def main():
        done, started, release = [], asyncio.Event(), asyncio.Event()

        async def process(key):
            done.append(key)
            if len(done) == 1:
                started.set()
                await release.wait()

        q = WorkQueue(process, workers=4, coalesce_s=0.01)
        q.start()
        q.add("a")
        await started.wait()
        for _ in range(10):
            q.add("a")  # never two reconciles of one key at once
        await asyncio.sleep(0.1)
        assert done == ["a"]
        release.set()
        await asyncio.sleep(0.2)
        await q.stop()
        return done

    assert run(main()) == ["a", "a"]


def test_a_failure_is_retried_with_backoff_and_a_requeue_after_is_honoured():
    async def main():
        times = []
        loop = asyncio.get_running_loop()

        async def process(key):
            times.append(loop.time())
            if len(times) == 1:
                raise RuntimeError("apiserver said no")
            if len(times) == 2:
                return 0.1  # time alone will change something
            return None

        q = WorkQueue(process, workers=1, coalesce_s=0.0)
        q.start()
        q.add("a")
        await asyncio.sleep(1.2)
        await q.stop()
        return times

    times = run(main())
    assert len(times) == 3
    assert times[1] - times[0] >= 0.5 and times[2] - times[1] >= 0.1

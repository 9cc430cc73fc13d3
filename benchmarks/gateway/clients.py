"""The load generator, in this process: closed-loop streams sent back to back (the overhead
scenario), open-loop Poisson arrivals (routing), and each request's time to first byte."""

from __future__ import annotations

import asyncio
import json
import random
import time
import urllib.request

from support.loopback import require_loopback  # tests/support/loopback.py: the one address gate


async def one_stream(session, url: str, body: bytes) -> float | None:
    """One streaming request; its TTFB in seconds, or None when it failed."""
    started = time.perf_counter()
    try:
        async with session.post(url, data=body, headers={"Content-Type": "application/json"}) as r:
            if r.status != 200:
                await r.read()
                return None
            first = None
            async for line in r.content:
                if first is None and line.startswith(b"data: "):
                    first = time.perf_counter() - started
            return first
    except Exception:  # noqa: BLE001 (counted as an error, the load goes on)
        return None


async def run_level(
    urls: list[str], streams: int, seconds: float, bodies: list[bytes], stagger_s: float = 0.0
) -> tuple[list[float], int, float]:
    """`streams` workers each sending requests back to back for `seconds`, spread over urls
    round-robin (the direct path: what a client that knows every engine would do).

    Worker i starts stagger_s * i / streams after the first and takes the bodies in its own
    order: answers of different lengths and spread starts keep the streams from moving in
    lockstep (all finishing, then all starting at once), which no real crowd of users does."""
    import aiohttp

    ttfb: list[float] = []
    errors = 0
    connector = aiohttp.TCPConnector(limit=0)
    async with aiohttp.ClientSession(connector=connector, timeout=aiohttp.ClientTimeout(total=60)) as session:
        deadline = time.perf_counter() + seconds
        started = time.perf_counter()

        async def worker(i: int) -> None:
            nonlocal errors
            await asyncio.sleep(stagger_s * i / streams)
            n = i * 7
            while time.perf_counter() < deadline:
                t = await one_stream(session, urls[n % len(urls)], bodies[n % len(bodies)])
                n += 1
                if t is None:
                    errors += 1
                else:
                    ttfb.append(t)

        await asyncio.gather(*(worker(i) for i in range(streams)))
        elapsed = time.perf_counter() - started
    return ttfb, errors, elapsed


def answer_lengths(tokens: int, count: int = 61, seed: int = 15) -> list[int]:
    """max_tokens per request: uniform in [tokens/2, 3*tokens/2], the same list on both paths."""
    rng = random.Random(seed)
    low, high = max(1, tokens // 2), max(1, tokens + tokens // 2)
    return [rng.randint(low, high) for _ in range(count)]


def answer_seconds(url: str, body: bytes) -> float:
    """How long one whole streamed answer takes (the real engines' stagger: one mean answer's time)."""
    require_loopback(url.split("//")[1].split(":")[0])
    started = time.perf_counter()
    request = urllib.request.Request(url, data=body, headers={"Content-Type": "application/json"})
    with urllib.request.urlopen(request, timeout=60) as r:
        r.read()
    return time.perf_counter() - started


def arrivals(rate: float, seconds: float, users: int, prefixes: int, seed: int = 17) -> list[tuple[float, int, int]]:
    """Open-loop Poisson arrivals: (time, user, prefix), each user bound to one prefix."""
    rng = random.Random(seed)
    out, t = [], 0.0
    while True:
        t += rng.expovariate(rate)
        if t >= seconds:
            return out
        user = rng.randrange(users)
        out.append((t, user, user % prefixes))


async def open_loop(
    urls: list[str],
    model: str,
    plan: list[tuple[float, int, int]],
    prompts: list[str],
    tokens: int,
    measure_from: float,
    extra: dict | None = None,
) -> tuple[list[float], dict[str, int], int]:
    """Send `plan` at its times (round-robin over urls); TTFT of requests sent from
    measure_from on, requests per engine (x-fake-engine) over the same window, errors."""
    import aiohttp

    ttft: list[float] = []
    per_engine: dict[str, int] = {}
    errors = 0

    async def one(session, i: int, user: int, prefix: int, measured: bool) -> None:
        nonlocal errors
        body = json.dumps(
            {
                "model": model,
                "stream": True,
                "max_tokens": tokens,
                **(extra or {}),
                "messages": [
                    {"role": "system", "content": prompts[prefix]},
                    {"role": "user", "content": f"user {user} asks question {i}"},
                ],
            }
        ).encode()
        started = time.perf_counter()
        try:
            async with session.post(urls[i % len(urls)], data=body, headers={"Content-Type": "application/json"}) as r:
                engine = r.headers.get("x-fake-engine", "?")
                first = None
                async for line in r.content:
                    if first is None and line.startswith(b"data: "):
                        first = time.perf_counter() - started
                if r.status != 200 or first is None:
                    errors += 1
                    return
        except Exception:  # noqa: BLE001 (counted, the load goes on)
            errors += 1
            return
        if measured:
            ttft.append(first)
            per_engine[engine] = per_engine.get(engine, 0) + 1

    connector = aiohttp.TCPConnector(limit=0)
    async with aiohttp.ClientSession(connector=connector, timeout=aiohttp.ClientTimeout(total=300)) as session:
        origin = time.perf_counter()
        tasks = []
        for i, (at, user, prefix) in enumerate(plan):
            delay = origin + at - time.perf_counter()
            if delay > 0:
                await asyncio.sleep(delay)
            tasks.append(asyncio.create_task(one(session, i, user, prefix, at >= measure_from)))
        await asyncio.gather(*tasks)
    return ttft, per_engine, errors

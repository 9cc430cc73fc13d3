"""The gateway's cost: the same streaming load sent straight to fake engines and through
`llm-operator gateway`, in one run, at 1, 64 and 256 concurrent streams.

For each level it prints requests/s and the time to first byte (TTFB: request sent until the
first SSE `data:` line arrives) direct and through the gateway, and the added latency
(gateway minus direct, at p50 and p99). Targets (issue 15): added p99 <= 5 ms at 64 streams,
throughput through the gateway >= 0.8x direct. The benchmark never asserts a time: it prints
figures and writes them down (--out).

Processes: the fake engines (tests/fakeengine.py, one process holding all of them), the
gateway (`python -m llm_operator.cli gateway --static FILE`: a fixed table of the engines'
addresses, no cluster), and this process, the load generator. All on 127.0.0.1.

    .venv/bin/python benchmarks/bench_gateway.py            # 8 s per level and path, 2 rounds
    .venv/bin/python benchmarks/bench_gateway.py --quick    # 2 s per level and path, 1 round
    .venv/bin/python benchmarks/bench_gateway.py --tokens 8 --decode-tokens-per-s 400   # CPU-bound
"""

from __future__ import annotations

import argparse
import asyncio
import json
import math
import os
import platform
import random
import signal
import socket
import subprocess
import sys
import tempfile
import time
import urllib.request
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path[:0] = [str(ROOT / "tests"), str(ROOT / "operator"), str(ROOT / "common"), str(ROOT / "runtime")]

from loopback import require_loopback  # noqa: E402  (tests/loopback.py: the one address gate)

HOST = "127.0.0.1"
MODEL = "bench"
LEVELS = (1, 64, 256)


# ---- figures (pure; tests/unit/test_bench_gateway_math.py) --------------------------------

def percentile(values: list[float], q: float) -> float:
    """Nearest-rank percentile (q in 0..100) of values; nan when there are none."""
    if not values:
        return math.nan
    ordered = sorted(values)
    rank = max(1, math.ceil(q / 100 * len(ordered)))
    return ordered[min(rank, len(ordered)) - 1]


def summarize(ttfb_s: list[float], errors: int, seconds: float) -> dict:
    """One path at one level: completed requests per second and TTFB percentiles in ms."""
    return {"requests": len(ttfb_s), "errors": errors,
            "rps": len(ttfb_s) / seconds if seconds > 0 else math.nan,
            "ttfb_p50_ms": percentile(ttfb_s, 50) * 1000, "ttfb_p99_ms": percentile(ttfb_s, 99) * 1000}


def compare(direct: dict, gateway: dict) -> dict:
    """Added latency (gateway minus direct) and the throughput ratio at one level."""
    return {"added_p50_ms": gateway["ttfb_p50_ms"] - direct["ttfb_p50_ms"],
            "added_p99_ms": gateway["ttfb_p99_ms"] - direct["ttfb_p99_ms"],
            "rps_ratio": gateway["rps"] / direct["rps"] if direct["rps"] else math.nan}


def merge_rounds(rounds: list[tuple[list[float], int, float]]) -> dict:
    """Rounds of one path at one level pooled: all TTFBs, all errors, all seconds."""
    ttfb = [t for r in rounds for t in r[0]]
    return summarize(ttfb, sum(r[1] for r in rounds), sum(r[2] for r in rounds))


def noise(rounds: list[tuple[list[float], int, float]]) -> dict:
    """How far the direct path's own rounds differ (max minus min of their p50s and p99s, in ms):
    the floor under which an added latency cannot be told from the machine's noise."""
    if len(rounds) < 2:
        return {"p50_ms": math.nan, "p99_ms": math.nan}
    p50 = [percentile(r[0], 50) * 1000 for r in rounds]
    p99 = [percentile(r[0], 99) * 1000 for r in rounds]
    return {"p50_ms": max(p50) - min(p50), "p99_ms": max(p99) - min(p99)}


def verdicts(results: dict) -> list[str]:
    """The targets, said against what was measured."""
    out = []
    at64 = results.get("64")
    if at64:
        c = at64["compare"]
        out.append(f"added p99 TTFB at 64 streams: {c['added_p99_ms']:.2f} ms (target <= 5 ms): "
                   + ("met" if c["added_p99_ms"] <= 5 else "not met"))
    for level, r in results.items():
        ratio = r["compare"]["rps_ratio"]
        out.append(f"throughput through the gateway at {level} streams: {ratio:.2f}x direct (target >= 0.8x): "
                   + ("met" if ratio >= 0.8 else "not met"))
    return out


# ---- processes -----------------------------------------------------------------------

def free_port() -> int:
    with socket.socket() as s:
        s.bind((HOST, 0))
        return s.getsockname()[1]


def engines_main(ports: list[int], options: dict) -> None:
    """--serve-engines: every fake engine in this one process, until SIGTERM."""
    from fakeengine import FakeEngine

    async def serve() -> None:
        engines = [FakeEngine(HOST, port, max_concurrent_requests=100_000, **options) for port in ports]
        for engine in engines:
            await engine.start()
        print("ready", flush=True)
        stop = asyncio.Event()
        asyncio.get_running_loop().add_signal_handler(signal.SIGTERM, stop.set)
        await stop.wait()
        for engine in engines:
            await engine.close()

    asyncio.run(serve())


def start_engines(ports: list[int], options: dict) -> subprocess.Popen:
    proc = subprocess.Popen([sys.executable, __file__, "--serve-engines", ",".join(map(str, ports)),
                             "--engine-options", json.dumps(options)], stdout=subprocess.PIPE, text=True, env=env())
    if proc.stdout.readline().strip() != "ready":
        proc.kill()
        raise SystemExit("bench: the fake engines did not start")
    return proc


def stop(procs: list[subprocess.Popen]) -> None:
    for proc in reversed(procs):
        if proc.poll() is None:
            proc.terminate()
            try:
                proc.wait(10)
            except subprocess.TimeoutExpired:
                proc.kill()
                proc.wait()


def wait_http(url: str, timeout: float, proc: subprocess.Popen, what: str) -> None:
    require_loopback(url.split("//")[1].split(":")[0])
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            raise SystemExit(f"bench: {what} exited with {proc.returncode}")
        try:
            with urllib.request.urlopen(url, timeout=2) as r:
                if r.status == 200:
                    return
        except OSError:
            pass
        time.sleep(0.1)
    raise SystemExit(f"bench: {what} did not answer {url} within {timeout} s")


def env() -> dict:
    e = dict(os.environ)
    e["PYTHONPATH"] = os.pathsep.join([str(ROOT / "operator"), str(ROOT / "common"), str(ROOT / "runtime"),
                                       e.get("PYTHONPATH", "")]).rstrip(os.pathsep)
    return e


# ---- load ----------------------------------------------------------------------------

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
    except Exception:  # noqa: BLE001: counted as an error, the load goes on
        return None


async def run_level(urls: list[str], streams: int, seconds: float, bodies: list[bytes],
                    stagger_s: float = 0.0) -> tuple[list[float], int, float]:
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



# ---- routing (issue 16): round-robin, least load and prefix over prefix-caching engines -----

STRATEGIES = ("round-robin", "least-load", "prefix")


def routing_prompts(prefixes: int, prefix_words: int, seed: int = 16) -> list[str]:
    """`prefixes` long system prompts (a product manual, a RAG context...), distinct from the first word."""
    rng = random.Random(seed)
    vocabulary = [f"w{i}" for i in range(5000)]
    return [" ".join([f"doc{p}"] + rng.choices(vocabulary, k=prefix_words - 1)) for p in range(prefixes)]


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


def round_robin_capacity(replicas: int, batch: int, prefill_s: float, decode_s: float, cache_share: float) -> float:
    """Requests/s the replicas finish when a request finds its prefix cached with probability
    cache_share (round-robin over LRU caches that each hold that share of the prefixes)."""
    return replicas * batch / ((1 - cache_share) * prefill_s + decode_s)


def load_spread(counts: dict[str, int], replicas: int) -> float:
    """max / mean requests over the replicas (a replica that got none counts as 0)."""
    values = list(counts.values()) + [0] * (replicas - len(counts))
    mean = sum(values) / replicas if replicas else 0
    return max(values) / mean if mean else math.nan


def hit_rate(before: dict[str, tuple[float, float]], after: dict[str, tuple[float, float]]) -> float:
    """Cached prompt tokens / prompt tokens over all engines between two readings of
    {engine: (hits, queries)}."""
    hits = sum(after[e][0] - before.get(e, (0, 0))[0] for e in after)
    queries = sum(after[e][1] - before.get(e, (0, 0))[1] for e in after)
    return hits / queries if queries else math.nan


def spilled_counts(port: int) -> tuple[float, float]:
    """(home, spilled) from the gateway's llm_gateway_prefix_routed_total."""
    require_loopback(HOST)
    with urllib.request.urlopen(f"http://{HOST}:{port}/metrics", timeout=5) as r:
        text = r.read().decode()
    home = spilled = 0.0
    for line in text.splitlines():
        if line.startswith("llm_gateway_prefix_routed_total{"):
            value = float(line.rsplit(" ", 1)[1])
            if 'outcome="spilled"' in line:
                spilled += value
            else:
                home += value
    return home, spilled


def engine_cache_counters(ports: list[int]) -> dict[str, tuple[float, float]]:
    out = {}
    for port in ports:
        require_loopback(HOST)
        with urllib.request.urlopen(f"http://{HOST}:{port}/metrics", timeout=5) as r:
            text = r.read().decode()
        values = {}
        for line in text.splitlines():
            name, _, value = line.partition(" ")
            if name in ("fake_engine_prefix_cache_hits_tokens", "fake_engine_prefix_cache_queries_tokens"):
                values[name] = float(value)
        out[f"{HOST}:{port}"] = (values.get("fake_engine_prefix_cache_hits_tokens", 0.0),
                                 values.get("fake_engine_prefix_cache_queries_tokens", 0.0))
    return out


async def open_loop(urls: list[str], model: str, plan: list[tuple[float, int, int]], prompts: list[str],
                    tokens: int, measure_from: float) -> tuple[list[float], dict[str, int], int]:
    """Send `plan` at its times (round-robin over urls); TTFT of requests sent from
    measure_from on, requests per engine (x-fake-engine) over the same window, errors."""
    import aiohttp

    ttft: list[float] = []
    per_engine: dict[str, int] = {}
    errors = 0

    async def one(session, i: int, user: int, prefix: int, measured: bool) -> None:
        nonlocal errors
        body = json.dumps({"model": model, "stream": True, "max_tokens": tokens, "messages": [
            {"role": "system", "content": prompts[prefix]},
            {"role": "user", "content": f"user {user} asks question {i}"}]}).encode()
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
        except Exception:  # noqa: BLE001: counted, the load goes on
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


def run_routing(args, tmp: Path) -> dict:
    replicas, prefix_words = 4, args.prefix_words
    prompts = routing_prompts(args.prefixes, prefix_words)
    prefill_s = prefix_words / args.prefill_tokens_per_s
    decode_s = args.routing_tokens / args.routing_decode_tokens_per_s
    # What a Service gives today: round-robin finds a prefix cached about as often as an
    # engine's cache holds it (cache_share), so its replicas serve replicas * batch requests
    # per (a miss's prefill share + decode) seconds. The load is offered near that capacity.
    capacity_rr = round_robin_capacity(replicas, args.routing_batch, prefill_s, decode_s, args.cache_share)
    rate = args.offered * capacity_rr
    blocks_per_prefix = prefix_words // 16 + 1
    cache_blocks = max(1, int(blocks_per_prefix * args.prefixes * args.cache_share))
    options = {"prefill_tokens_per_s": args.prefill_tokens_per_s,
               "decode_tokens_per_s": args.routing_decode_tokens_per_s, "max_batch": args.routing_batch,
               "block_tokens": 16, "cache_blocks": cache_blocks, "max_input_tokens": 100_000,
               "max_total_tokens": 200_000}
    plan = arrivals(rate, args.warmup + args.routing_seconds, args.users, args.prefixes)
    print(f"\nrouting: {replicas} fake engines, {args.prefixes} prefixes of {prefix_words} tokens, "
          f"{args.users} users, prefill {args.prefill_tokens_per_s:g} tokens/s (a whole prefix: {prefill_s * 1000:.0f} ms), "
          f"batch {args.routing_batch}, {args.routing_tokens} tokens per answer at {args.routing_decode_tokens_per_s:g}/s, "
          f"cache {cache_blocks} blocks per engine ({args.cache_share:.2f} of the prefixes); "
          f"offered {rate:.1f} req/s = {args.offered:.2f} x round-robin's capacity ({capacity_rr:.1f} req/s); "
          f"{args.warmup:g} s warm-up, {args.routing_seconds:g} s measured", flush=True)
    print(f"{'strategy':<12} {'hit rate':>8} {'TTFT mean':>10} {'TTFT p99':>9} {'max/mean load':>13} {'errors':>6}")
    out = {"settings": {"replicas": replicas, "prefixes": args.prefixes, "prefix_tokens": prefix_words,
                        "users": args.users, "rate": rate, "capacity_round_robin": capacity_rr,
                        "cache_blocks": cache_blocks, **{k: getattr(args, k) for k in (
                            "prefill_tokens_per_s", "routing_decode_tokens_per_s", "routing_batch", "routing_tokens",
                            "warmup", "routing_seconds", "offered")}}}
    for strategy in args.strategies.split(","):
        ports = [free_port() for _ in range(replicas)]
        gw_port = free_port()
        procs: list[subprocess.Popen] = []
        log = open(tmp / f"gateway-{strategy}.log", "w")
        try:
            procs.append(start_engines(ports, options))
            for port in ports:
                wait_http(f"http://{HOST}:{port}/health", 10, procs[0], "the fake engines")
            if strategy == "round-robin":
                urls, model = [f"http://{HOST}:{p}/v1/chat/completions" for p in ports], "tgi"
            else:
                table = tmp / f"routing-{strategy}.json"
                routing = ({"strategy": "prefix", "prefixChars": args.prefix_chars,
                            "loadFactorPercent": args.load_factor_percent}
                           if strategy == "prefix" else {"strategy": "leastLoad"})
                table.write_text(json.dumps([{"name": MODEL, "namespace": "bench", "engine": "tgi", "routing": routing,
                                              "endpoints": [f"{HOST}:{p}" for p in ports]}]))
                gateway = subprocess.Popen([sys.executable, "-m", "llm_operator.cli", "gateway",
                                            f"--listen={HOST}:{gw_port}", f"--static={table}"],
                                           stdout=log, stderr=subprocess.STDOUT, env=env())
                procs.append(gateway)
                wait_http(f"http://{HOST}:{gw_port}/readyz", 30, gateway, "the gateway")
                urls, model = [f"http://{HOST}:{gw_port}/v1/chat/completions"], MODEL
            # The hit rate counts from the end of the warm-up: engine counters read then.
            readings = {}

            async def scenario():
                async def mark():
                    await asyncio.sleep(args.warmup)
                    readings["before"] = await asyncio.to_thread(engine_cache_counters, ports)
                    if strategy == "prefix":
                        readings["routed"] = await asyncio.to_thread(spilled_counts, gw_port)
                marker = asyncio.create_task(mark())
                result = await open_loop(urls, model, plan, prompts, args.routing_tokens, args.warmup)
                await marker
                return result
            ttft, per_engine, errors = asyncio.run(scenario())
            after = engine_cache_counters(ports)
            row = {"hit_rate": hit_rate(readings["before"], after),
                   "ttft_mean_ms": (sum(ttft) / len(ttft) * 1000) if ttft else math.nan,
                   "ttft_p99_ms": percentile(ttft, 99) * 1000, "load_max_over_mean": load_spread(per_engine, replicas),
                   "requests": len(ttft), "errors": errors, "per_engine": per_engine}
            if strategy == "prefix":
                home, spilled = (a - b for a, b in zip(spilled_counts(gw_port), readings["routed"]))
                row["spilled"] = spilled / (home + spilled) if home + spilled else math.nan
            out[strategy] = row
            print(f"{strategy:<12} {row['hit_rate'] * 100:>7.1f}% {row['ttft_mean_ms']:>8.1f}ms "
                  f"{row['ttft_p99_ms']:>7.1f}ms {row['load_max_over_mean']:>13.2f} {errors:>6}", flush=True)
        finally:
            stop(procs)
            log.close()
    if "prefix" in out:
        print(f"prefix routing spilled {out['prefix']['spilled'] * 100:.1f}% of its requests past their home replica")
    if all(s in out for s in STRATEGIES):
        out["verdicts"] = routing_verdicts(out)
    for line in out.get("verdicts", []):
        print(line)
    return out


def routing_verdicts(r: dict) -> list[str]:
    rr, px = r["round-robin"], r["prefix"]
    speedup = rr["ttft_mean_ms"] / px["ttft_mean_ms"] if px["ttft_mean_ms"] else math.nan
    return [
        f"prefix routing's hit rate: {px['hit_rate'] * 100:.1f}% (target >= 90%; round-robin's "
        f"{rr['hit_rate'] * 100:.1f}%): " + ("met" if px["hit_rate"] >= 0.9 else "not met"),
        f"mean TTFT, round-robin / prefix: {speedup:.1f}x (target >= 5x): " + ("met" if speedup >= 5 else "not met"),
        f"prefix routing's max/mean replica load: {px['load_max_over_mean']:.2f} (target <= 1.25): "
        + ("met" if px["load_max_over_mean"] <= 1.25 else "not met"),
    ]


def run_overhead(args, levels: list[int], tmp: Path) -> dict:
    """The gateway's cost: the same load direct and through the gateway at each level."""
    ports = [free_port() for _ in range(args.engines)]
    gw_port = free_port()
    procs: list[subprocess.Popen] = []
    table = Path(tmp, "static.json")
    table.write_text(json.dumps([{"name": MODEL, "namespace": "bench", "engine": "tgi",
                                  "endpoints": [f"{HOST}:{p}" for p in ports]}]))
    gw_log = open(Path(tmp, "gateway.log"), "w")
    try:
        engines = start_engines(ports, {"prefill_tokens_per_s": float("inf"),
                                        "decode_tokens_per_s": args.decode_tokens_per_s,
                                        "max_batch": args.max_batch})
        procs.append(engines)
        gateway = subprocess.Popen([sys.executable, "-m", "llm_operator.cli", "gateway",
                                    f"--listen={HOST}:{gw_port}", f"--static={table}"],
                                   stdout=gw_log, stderr=subprocess.STDOUT, env=env())
        procs.append(gateway)
        wait_http(f"http://{HOST}:{gw_port}/readyz", 30, gateway, "the gateway")
        for port in ports:
            require_loopback(HOST)
            wait_http(f"http://{HOST}:{port}/health", 10, engines, "the fake engines")
        paths = ["direct", "gateway"]
        if args.asgi:
            asgi_port = free_port()
            asgi = subprocess.Popen([sys.executable, str(Path(__file__).with_name("asgi_proxy.py")),
                                     f"--listen={HOST}:{asgi_port}"]
                                    + [f"--endpoint={HOST}:{p}" for p in ports],
                                    stdout=gw_log, stderr=subprocess.STDOUT, env=env())
            procs.append(asgi)
            wait_http(f"http://{HOST}:{asgi_port}/readyz", 30, asgi, "the ASGI proxy")
            paths.append("asgi")

        lengths = answer_lengths(args.tokens)

        def bodies_for(model: str) -> list[bytes]:
            return [json.dumps({"model": model, "stream": True, "max_tokens": n,
                                "messages": [{"role": "user", "content": "hello"}]}).encode() for n in lengths]
        # Direct, the body names the model as TGI knows it ("tgi"); through the gateway, by the
        # LLMDeployment's name, which the gateway rewrites to "tgi" (README: upstream model).
        direct_body, gateway_body = bodies_for("tgi"), bodies_for(MODEL)
        stagger = args.tokens / args.decode_tokens_per_s       # one mean answer's time
        direct_urls = [f"http://{HOST}:{port}/v1/chat/completions" for port in ports]
        gateway_urls = [f"http://{HOST}:{gw_port}/v1/chat/completions"]
        targets = {"direct": (direct_urls, direct_body), "gateway": (gateway_urls, gateway_body)}
        if args.asgi:
            targets["asgi"] = ([f"http://{HOST}:{asgi_port}/v1/chat/completions"], gateway_body)
        # Warm every path (connections, first-request costs) before measuring.
        for urls, body in targets.values():
            warm = asyncio.run(run_level(urls, 8, 0.5, body))
            if warm[1] or not warm[0]:
                raise SystemExit(f"bench: warm-up against {urls[0]} failed ({warm[1]} errors, "
                                 f"{len(warm[0])} answers); the gateway's log: {gw_log.name}")

        results: dict[str, dict] = {}
        print(f"{'streams':>7}  {'path':<8} {'req/s':>8} {'TTFB p50':>9} {'TTFB p99':>9} {'errors':>6}")
        for level in levels:
            rounds = {name: [] for name in paths}
            for _ in range(args.rounds):
                for name in paths:
                    urls, body = targets[name]
                    rounds[name].append(asyncio.run(run_level(urls, level, args.seconds, body, stagger)))
            merged = {name: merge_rounds(rounds[name]) for name in paths}
            d, g = merged["direct"], merged["gateway"]
            c = compare(d, g)
            c["direct_noise"] = noise(rounds["direct"])
            results[str(level)] = {**merged, "compare": c}
            if args.asgi:
                results[str(level)]["compare_asgi"] = compare(d, merged["asgi"])
            for name, r in merged.items():
                print(f"{level:>7}  {name:<8} {r['rps']:>8.1f} {r['ttfb_p50_ms']:>7.2f}ms {r['ttfb_p99_ms']:>7.2f}ms"
                      f" {r['errors']:>6}")
            print(f"{level:>7}  {'added':<8} {c['rps_ratio']:>7.2f}x {c['added_p50_ms']:>+7.2f}ms"
                  f" {c['added_p99_ms']:>+7.2f}ms", flush=True)
            if args.asgi:
                a = results[str(level)]["compare_asgi"]
                print(f"{level:>7}  {'+asgi':<8} {a['rps_ratio']:>7.2f}x {a['added_p50_ms']:>+7.2f}ms"
                      f" {a['added_p99_ms']:>+7.2f}ms", flush=True)
            if args.rounds > 1:
                n = c["direct_noise"]
                print(f"{level:>7}  {'noise':<8} {'':>8} {n['p50_ms']:>7.2f}ms {n['p99_ms']:>7.2f}ms"
                      "  (spread of the direct path's own rounds)", flush=True)
        for line in verdicts(results):
            print(line)
        return results
    finally:
        stop(procs)
        gw_log.close()


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--engines", type=int, default=4, help="fake engines (default 4)")
    p.add_argument("--levels", default=",".join(map(str, LEVELS)), help="concurrent streams, comma-separated")
    p.add_argument("--seconds", type=float, default=8.0, help="per level, path and round (default 8)")
    p.add_argument("--rounds", type=int, default=2, help="direct/gateway alternations per level (default 2)")
    p.add_argument("--tokens", type=int, default=32, help="mean tokens per answer, each drawn in [N/2, 3N/2] (default 32)")
    p.add_argument("--decode-tokens-per-s", type=float, default=50.0,
                   help="per request (default 50, a GPU's usual decode speed for one stream)")
    p.add_argument("--max-batch", type=int, default=512, help="per engine (default 512)")
    p.add_argument("--quick", action="store_true", help="2 s per level and path, 1 round")
    p.add_argument("--out", default=None, help="write the results as JSON here")
    p.add_argument("--asgi", action="store_true",
                   help="also measure the same hot path on uvicorn + Starlette + httpx (benchmarks/asgi_proxy.py; "
                        "pip install -e '.[bench]')")
    p.add_argument("--scenarios", default="overhead,routing",
                   help="overhead (the gateway's cost), routing (round-robin, least load and prefix): default both")
    r = p.add_argument_group("routing scenario")
    r.add_argument("--strategies", default=",".join(STRATEGIES), help="(default all three)")
    r.add_argument("--prefixes", type=int, default=32, help="shared prompt prefixes (default 32)")
    r.add_argument("--prefix-words", type=int, default=800, help="tokens per prefix (default 800)")
    r.add_argument("--users", type=int, default=2000, help="users, each bound to one prefix (default 2000)")
    r.add_argument("--prefill-tokens-per-s", type=float, default=4000.0, help="uncached prompt tokens per second (default 4000)")
    r.add_argument("--routing-decode-tokens-per-s", type=float, default=100.0, help="(default 100)")
    r.add_argument("--routing-tokens", type=int, default=8, help="tokens per answer (default 8)")
    r.add_argument("--routing-batch", type=int, default=8, help="requests an engine runs at once (default 8)")
    r.add_argument("--offered", type=float, default=0.9,
                   help="arrival rate as a fraction of round-robin's capacity (default 0.9)")
    r.add_argument("--warmup", type=float, default=5.0, help="seconds of load before measuring (default 5)")
    r.add_argument("--routing-seconds", type=float, default=20.0, help="seconds measured per strategy (default 20)")
    r.add_argument("--cache-share", type=float, default=1 / 3,
                   help="the share of all prefixes one engine's prefix cache holds (default 1/3)")
    r.add_argument("--prefix-chars", type=int, default=2000, help="the prefix strategy's prefixChars (default 2000)")
    r.add_argument("--load-factor-percent", type=int, default=125, help="its loadFactorPercent (default 125)")
    p.add_argument("--serve-engines", default=None, help=argparse.SUPPRESS)
    p.add_argument("--engine-options", default="{}", help=argparse.SUPPRESS)
    args = p.parse_args(argv)
    if args.serve_engines:
        engines_main([int(x) for x in args.serve_engines.split(",")], json.loads(args.engine_options))
        return 0
    if args.quick:
        args.seconds, args.rounds = 2.0, 1
        args.warmup, args.routing_seconds = 3.0, 8.0
    levels = [int(x) for x in args.levels.split(",")]

    scenarios = [x for x in args.scenarios.split(",") if x]
    unknown = set(scenarios) - {"overhead", "routing"}
    if unknown:
        p.error(f"--scenarios: {', '.join(sorted(unknown))} unknown; choose from overhead, routing")
    out: dict = {"when": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()),
                 "machine": {"cpus": os.cpu_count(), "python": platform.python_version()},
                 "settings": {k: getattr(args, k) for k in ("engines", "seconds", "rounds", "tokens",
                                                            "decode_tokens_per_s", "max_batch", "asgi")}}
    with tempfile.TemporaryDirectory(prefix="bench-gateway-") as tmp:
        if "overhead" in scenarios:
            out["results"] = run_overhead(args, levels, Path(tmp))
        if "routing" in scenarios:
            out["routing"] = run_routing(args, Path(tmp))
    if args.out:
        Path(args.out).write_text(json.dumps(out, indent=2) + "\n")
    return 0


if __name__ == "__main__":
    sys.exit(main())

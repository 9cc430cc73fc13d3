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


def engines_main(ports: list[int], decode: float, max_batch: int) -> None:
    """--serve-engines: every fake engine in this one process, until SIGTERM."""
    from fakeengine import FakeEngine

    async def serve() -> None:
        engines = [FakeEngine(HOST, port, prefill_tokens_per_s=float("inf"), decode_tokens_per_s=decode,
                              max_batch=max_batch, max_concurrent_requests=100_000) for port in ports]
        for engine in engines:
            await engine.start()
        print("ready", flush=True)
        stop = asyncio.Event()
        asyncio.get_running_loop().add_signal_handler(signal.SIGTERM, stop.set)
        await stop.wait()
        for engine in engines:
            await engine.close()

    asyncio.run(serve())


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
    p.add_argument("--serve-engines", default=None, help=argparse.SUPPRESS)
    args = p.parse_args(argv)
    if args.serve_engines:
        engines_main([int(x) for x in args.serve_engines.split(",")], args.decode_tokens_per_s, args.max_batch)
        return 0
    if args.quick:
        args.seconds, args.rounds = 2.0, 1
    levels = [int(x) for x in args.levels.split(",")]

    ports = [free_port() for _ in range(args.engines)]
    gw_port = free_port()
    procs: list[subprocess.Popen] = []
    with tempfile.TemporaryDirectory(prefix="bench-gateway-") as tmp:
        table = Path(tmp, "static.json")
        table.write_text(json.dumps([{"name": MODEL, "namespace": "bench", "engine": "tgi",
                                      "endpoints": [f"{HOST}:{p}" for p in ports]}]))
        gw_log = open(Path(tmp, "gateway.log"), "w")
        try:
            engines = subprocess.Popen([sys.executable, __file__, "--serve-engines", ",".join(map(str, ports)),
                                        "--decode-tokens-per-s", str(args.decode_tokens_per_s),
                                        "--max-batch", str(args.max_batch)],
                                       stdout=subprocess.PIPE, text=True, env=env())
            procs.append(engines)
            if engines.stdout.readline().strip() != "ready":
                raise SystemExit("bench: the fake engines did not start")
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
            if args.out:
                Path(args.out).write_text(json.dumps({
                    "when": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()),
                    "machine": {"cpus": os.cpu_count(), "python": platform.python_version()},
                    "settings": {k: getattr(args, k) for k in ("engines", "seconds", "rounds", "tokens",
                                                               "decode_tokens_per_s", "max_batch", "asgi")},
                    "results": results}, indent=2) + "\n")
        finally:
            for proc in reversed(procs):
                if proc.poll() is None:
                    proc.terminate()
                    try:
                        proc.wait(10)
                    except subprocess.TimeoutExpired:
                        proc.kill()
                        proc.wait()
            gw_log.close()
    return 0


if __name__ == "__main__":
    sys.exit(main())

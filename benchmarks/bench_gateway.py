"""The gateway's cost: the same streaming load sent straight to fake engines and through
`llm-operator gateway`, in one run, at 1, 64 and 256 concurrent streams.

For each level it prints requests/s and the time to first byte (TTFB: request sent until the
first SSE `data:` line arrives) direct and through the gateway, and the added latency
(gateway minus direct, at p50 and p99). Targets (issue 15): added p99 <= 5 ms at 64 streams,
throughput through the gateway >= 0.8x direct. The benchmark never asserts a time: it prints
figures and writes them down (--out).

Processes: the fake engines (tests/support/fakeengine.py, one process holding all of them), the
gateway (`python -m llm_operator.cli gateway --static FILE`: a fixed table of the engines'
addresses, no cluster), and this process, the load generator. All on 127.0.0.1.

    .venv/bin/python benchmarks/bench_gateway.py            # 8 s per level and path, 2 rounds
    .venv/bin/python benchmarks/bench_gateway.py --quick    # 2 s per level and path, 1 round
    .venv/bin/python benchmarks/bench_gateway.py --tokens 8 --decode-tokens-per-s 400   # CPU-bound

With --real-engines N the same scenarios run against N real vLLM engines (the CPU build of
hack/vllm_cpu serving hack/tinymodel.py's tiny Llama, each `vllm serve` on its own loopback
address 127.0.0.201...), started once for the whole run and stopped at its end, and a third
scenario, vllm-bench, lets vLLM's own load generator (`vllm bench serve`) drive the load
direct and through the gateway:

    .venv/bin/python benchmarks/bench_gateway.py --real-engines 2 --out benchmarks/gateway-real.json
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import json
import math
import os
import platform
import random
import re
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import threading
import time
import urllib.request
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path[:0] = [str(ROOT / "tests"), str(ROOT / "operator"), str(ROOT / "common"), str(ROOT / "runtime")]

from support import realengine  # noqa: E402  (tests/support/realengine.py: the real engines' venv and settings)
from support.loopback import require_loopback  # noqa: E402  (tests/support/loopback.py: the one address gate)

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
    return {
        "requests": len(ttfb_s),
        "errors": errors,
        "rps": len(ttfb_s) / seconds if seconds > 0 else math.nan,
        "ttfb_p50_ms": percentile(ttfb_s, 50) * 1000,
        "ttfb_p99_ms": percentile(ttfb_s, 99) * 1000,
    }


def compare(direct: dict, gateway: dict) -> dict:
    """Added latency (gateway minus direct) and the throughput ratio at one level."""
    return {
        "added_p50_ms": gateway["ttfb_p50_ms"] - direct["ttfb_p50_ms"],
        "added_p99_ms": gateway["ttfb_p99_ms"] - direct["ttfb_p99_ms"],
        "rps_ratio": gateway["rps"] / direct["rps"] if direct["rps"] else math.nan,
    }


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
        out.append(
            f"added p99 TTFB at 64 streams: {c['added_p99_ms']:.2f} ms (target <= 5 ms): "
            + ("met" if c["added_p99_ms"] <= 5 else "not met")
        )
    for level, r in results.items():
        ratio = r["compare"]["rps_ratio"]
        out.append(
            f"throughput through the gateway at {level} streams: {ratio:.2f}x direct (target >= 0.8x): "
            + ("met" if ratio >= 0.8 else "not met")
        )
    return out


# ---- processes -----------------------------------------------------------------------


def free_port(host: str = HOST) -> int:
    with socket.socket() as s:
        s.bind((require_loopback(host), 0))
        return s.getsockname()[1]


def engines_main(ports: list[int], options: dict) -> None:
    """--serve-engines: every fake engine in this one process, until SIGTERM."""
    from support.fakeengine import FakeEngine

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
    proc = subprocess.Popen(
        [
            sys.executable,
            __file__,
            "--serve-engines",
            ",".join(map(str, ports)),
            "--engine-options",
            json.dumps(options),
        ],
        stdout=subprocess.PIPE,
        text=True,
        env=env(),
    )
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
    e["PYTHONPATH"] = os.pathsep.join(
        [str(ROOT / "operator"), str(ROOT / "common"), str(ROOT / "runtime"), e.get("PYTHONPATH", "")]
    ).rstrip(os.pathsep)
    return e


# ---- real engines (--real-engines) ------------------------------------------------------

REAL_FIRST_HOST = 201  # engine i listens on 127.0.0.(201 + i): clear of 127.0.0.1 and the kwok pods' 127.10/16
REAL_MAX_MODEL_LEN = 2048  # the tiny model's context
REAL_BLOCK_TOKENS = 128  # vLLM's CPU block size unless --block-size says otherwise (vllm/platforms/cpu.py)
REAL_PORT = 8000


def port_free(host: str, port: int) -> bool:
    with socket.socket() as s:
        # As a server binds (uvicorn in vLLM too): a closed connection's TIME_WAIT does not hold the port.
        s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        try:
            s.bind((require_loopback(host), port))
        except OSError:
            return False
        return True


def offline_env() -> dict[str, str]:
    """What keeps vLLM's processes on this machine: no Hub lookups, no usage reports."""
    return {"HF_HUB_OFFLINE": "1", "TRANSFORMERS_OFFLINE": "1", "VLLM_NO_USAGE_STATS": "1", "DO_NOT_TRACK": "1"}


def signal_group(proc: subprocess.Popen, sig: int) -> None:
    try:
        os.killpg(proc.pid, sig)
    except ProcessLookupError:
        pass


class RealEngines:
    """`count` `vllm serve` processes of the tiny model, each on its own loopback address and in
    its own process group (vLLM forks an engine core and a worker), all stopped on exit: errors,
    Ctrl-C and SIGTERM included (main turns SIGTERM into KeyboardInterrupt)."""

    def __init__(self, count: int, workdir: Path, max_num_seqs: int, num_blocks: int):
        self.count, self.workdir, self.max_num_seqs, self.num_blocks = count, workdir, max_num_seqs, num_blocks
        self.procs: list[subprocess.Popen] = []
        self.addresses: list[str] = []
        self.logs: list[Path] = []
        self.argv: list[list[str]] = []
        self.short_tmp: Path | None = None
        self.info: dict = {}

    def __enter__(self) -> RealEngines:
        try:
            self.start()
        except BaseException:
            self.stop()
            raise
        return self

    def __exit__(self, *exc) -> None:
        self.stop()

    def start(self, timeout: float = 400) -> None:
        sys.path.insert(0, str(ROOT / "hack"))
        import tinymodel

        self.venv = realengine.vllm_venv()
        self.model_dir = tinymodel.make(self.workdir / "model")["model"]
        self.training_text = tinymodel.TRAINING_TEXT
        # vLLM's zmq ipc sockets live under TMPDIR and their paths must stay under 107 bytes.
        self.short_tmp = Path(tempfile.mkdtemp(prefix="llmop-", dir="/tmp" if os.path.isdir("/tmp") else None))
        started = time.monotonic()
        for i in range(self.count):
            ip = require_loopback(f"127.0.0.{REAL_FIRST_HOST + i}")
            # Port 8000 on every address, as every pod of a model: the same names on the prefix ring each run.
            port = REAL_PORT if port_free(ip, REAL_PORT) else free_port(ip)
            tmp = self.short_tmp / f"e{i}"
            tmp.mkdir()
            argv = [
                str(self.venv / "bin" / "vllm"),
                "serve",
                str(self.model_dir),
                "--served-model-name",
                MODEL,
                "--host",
                ip,
                "--port",
                str(port),
                "--enforce-eager",
                "--enable-prefix-caching",
                "--max-model-len",
                str(REAL_MAX_MODEL_LEN),
                "--max-num-seqs",
                str(self.max_num_seqs),
                "--num-gpu-blocks-override",
                str(self.num_blocks),
            ]
            # The tier's engine env (tests/support/realengine.py: engines share 2 CPUs), and dev mode for POST /reset_prefix_cache.
            engine_env = {
                **os.environ,
                **offline_env(),
                "TMPDIR": str(tmp),
                **realengine.engine_env(ip),
                "VLLM_SERVER_DEV_MODE": "1",
            }
            log_path = self.workdir / f"engine-{i}.log"
            with open(log_path, "w") as log:
                self.procs.append(
                    subprocess.Popen(
                        argv, stdout=log, stderr=subprocess.STDOUT, env=engine_env, cwd=tmp, start_new_session=True
                    )
                )
            self.addresses.append(f"{ip}:{port}")
            if SAMPLER is not None:
                SAMPLER.sessions.add(self.procs[-1].pid)  # its own session: start_new_session
            self.logs.append(log_path)
            self.argv.append(argv)
        print(
            f"real engines: starting {self.count} x `vllm serve` of the tiny model at "
            f"{', '.join(self.addresses)} ({self.num_blocks} KV blocks, --max-num-seqs {self.max_num_seqs})",
            flush=True,
        )
        for i, (proc, hostport) in enumerate(zip(self.procs, self.addresses)):
            try:
                wait_http(
                    f"http://{hostport}/health",
                    max(1.0, started + timeout - time.monotonic()),
                    proc,
                    f"vLLM engine {i}",
                )
            except SystemExit:
                print(
                    f"--- the end of engine {i}'s log ({self.logs[i]}):\n{self.logs[i].read_text()[-4000:]}",
                    file=sys.stderr,
                )
                raise
        startup_s = time.monotonic() - started
        metrics = scrape(self.addresses[0])
        config = prometheus_labels(metrics, "vllm:cache_config_info")
        with urllib.request.urlopen(f"http://{self.addresses[0]}/version", timeout=10) as r:
            version = json.loads(r.read()).get("version")
        self.block_tokens = int(config.get("block_size", 0))
        self.info = {
            "count": self.count,
            "addresses": self.addresses,
            "vllm_version": version,
            "model": "hack/tinymodel.py: random-weight Llama, 2 layers, hidden 256, vocab 1024, context 2048, BF16",
            "argv": [
                "<vllm venv>/bin/vllm",
                *(a if a != str(self.model_dir) else "<tiny model dir>" for a in self.argv[0][1:]),
            ],
            "env": {**realengine.engine_env("<its address>"), "VLLM_SERVER_DEV_MODE": "1", **offline_env()},
            "block_tokens": self.block_tokens,
            "num_gpu_blocks": int(config.get("num_gpu_blocks", 0)),
            "prefix_caching": config.get("enable_prefix_caching"),
            "startup_s": round(startup_s, 1),
        }
        print(
            f"real engines: ready after {startup_s:.0f} s: vLLM {version}, blocks of {self.block_tokens} tokens, "
            f"{self.info['num_gpu_blocks']} blocks each",
            flush=True,
        )
        if self.block_tokens != REAL_BLOCK_TOKENS:
            raise SystemExit(
                f"bench: the engines cache in blocks of {self.block_tokens} tokens, not "
                f"{REAL_BLOCK_TOKENS}: the cache was sized for {REAL_BLOCK_TOKENS}"
            )

    def reset_prefix_caches(self, attempts: int = 20) -> None:
        """Empty every engine's prefix cache (vLLM refuses while a request holds blocks: retried)."""
        for hostport in self.addresses:
            require_loopback(hostport.rpartition(":")[0])
            for _ in range(attempts):
                request = urllib.request.Request(f"http://{hostport}/reset_prefix_cache", method="POST", data=b"")
                with urllib.request.urlopen(request, timeout=10) as r:
                    if json.loads(r.read() or b"{}").get("success", True):
                        break
                time.sleep(0.5)
            else:
                raise SystemExit(f"bench: {hostport} did not reset its prefix cache")

    def stop(self) -> None:
        for proc in self.procs:
            if proc.poll() is None:
                signal_group(proc, signal.SIGTERM)
        deadline = time.monotonic() + 20
        for proc in self.procs:
            try:
                proc.wait(max(0.1, deadline - time.monotonic()))
            except subprocess.TimeoutExpired:
                pass
            # The engine core and its worker share the group: whatever outlived the server goes too.
            signal_group(proc, signal.SIGKILL)
            proc.wait()
        self.procs = []
        if self.short_tmp:
            shutil.rmtree(self.short_tmp, ignore_errors=True)
            self.short_tmp = None


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
    text = scrape(f"{HOST}:{port}")
    home = spilled = 0.0
    for line in text.splitlines():
        if line.startswith("llm_gateway_prefix_routed_total{"):
            value = float(line.rsplit(" ", 1)[1])
            if 'outcome="spilled"' in line:
                spilled += value
            else:
                home += value
    return home, spilled


def prometheus_sum(text: str, name: str) -> float:
    """The sum of every sample of the metric `name`, whatever its labels, in Prometheus' text format."""
    total = 0.0
    for line in text.splitlines():
        if line.startswith(name) and line[len(name) : len(name) + 1] in ("{", " "):
            total += float(line.rsplit(" ", 1)[1])
    return total


def prometheus_labels(text: str, name: str) -> dict[str, str]:
    """The labels of the first sample of `name` (an info metric such as vllm:cache_config_info)."""
    for line in text.splitlines():
        if line.startswith(name + "{"):
            return dict(re.findall(r'(\w+)="([^"]*)"', line[len(name) : line.rindex("}") + 1]))
    return {}


# (cached prompt tokens, prompt tokens[, requests finished]) as each kind of engine counts them.
FAKE_COUNTERS = ("fake_engine_prefix_cache_hits_tokens", "fake_engine_prefix_cache_queries_tokens")
VLLM_COUNTERS = ("vllm:prefix_cache_hits_total", "vllm:prefix_cache_queries_total", "vllm:request_success_total")


def scrape(hostport: str) -> str:
    require_loopback(hostport.rpartition(":")[0])
    with urllib.request.urlopen(f"http://{hostport}/metrics", timeout=10) as r:
        return r.read().decode()


def engine_counters(endpoints: list[str], names: tuple[str, ...]) -> dict[str, tuple[float, ...]]:
    """{HOST:PORT: (the sum of each of `names`)} read from each engine's /metrics."""
    out = {}
    for hostport in endpoints:
        text = scrape(hostport)
        out[hostport] = tuple(prometheus_sum(text, name) for name in names)
    return out


def sized_prompts(prefixes: int, tokens: int, count_tokens, vocabulary: list[str], seed: int = 16) -> list[str]:
    """`prefixes` documents as routing_prompts makes them ("doc{p}", then random words), each the
    longest run of words that count_tokens (a real engine's tokenizer) finds no longer than `tokens`."""
    rng = random.Random(seed)
    out = []
    for p in range(prefixes):
        words = [f"doc{p}"]
        while count_tokens(" ".join(words)) <= tokens:
            words += rng.choices(vocabulary, k=64)
        low, high = 1, len(words) - 1  # words[:low] fits, words[:high + 1] does not
        while low < high:
            middle = (low + high + 1) // 2
            if count_tokens(" ".join(words[:middle])) <= tokens:
                low = middle
            else:
                high = middle - 1
        out.append(" ".join(words[:low]))
    return out


def engine_cache_blocks(
    prefixes: int, prefix_tokens: int, block_tokens: int, cache_share: float, running: int, max_model_len: int
) -> int:
    """KV blocks for one engine: cache_share of the prefixes' full blocks (the only blocks two
    requests share), plus one for each of `running` requests' own tail; never fewer than one
    request of max_model_len needs."""
    full = prefixes * (prefix_tokens // block_tokens)
    return max(math.ceil(cache_share * full) + running, math.ceil(max_model_len / block_tokens))


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


def run_routing(args, tmp: Path, real: RealEngines | None = None) -> dict:
    if real is None:
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
        options = {
            "prefill_tokens_per_s": args.prefill_tokens_per_s,
            "decode_tokens_per_s": args.routing_decode_tokens_per_s,
            "max_batch": args.routing_batch,
            "block_tokens": 16,
            "cache_blocks": cache_blocks,
            "max_input_tokens": 100_000,
            "max_total_tokens": 200_000,
        }
        print(
            f"\nrouting: {replicas} fake engines, {args.prefixes} prefixes of {prefix_words} tokens, "
            f"{args.users} users, prefill {args.prefill_tokens_per_s:g} tokens/s (a whole prefix: {prefill_s * 1000:.0f} ms), "
            f"batch {args.routing_batch}, {args.routing_tokens} tokens per answer at {args.routing_decode_tokens_per_s:g}/s, "
            f"cache {cache_blocks} blocks per engine ({args.cache_share:.2f} of the prefixes); "
            f"offered {rate:.1f} req/s = {args.offered:.2f} x round-robin's capacity ({capacity_rr:.1f} req/s); "
            f"{args.warmup:g} s warm-up, {args.routing_seconds:g} s measured",
            flush=True,
        )
        settings = {
            "replicas": replicas,
            "prefixes": args.prefixes,
            "prefix_tokens": prefix_words,
            "users": args.users,
            "rate": rate,
            "capacity_round_robin": capacity_rr,
            "cache_blocks": cache_blocks,
            **{
                k: getattr(args, k)
                for k in (
                    "prefill_tokens_per_s",
                    "routing_decode_tokens_per_s",
                    "routing_batch",
                    "routing_tokens",
                    "warmup",
                    "routing_seconds",
                    "offered",
                )
            },
        }
        engine, direct_model, counters, extra = "tgi", "tgi", FAKE_COUNTERS, {}
    else:
        replicas, rate = len(real.addresses), args.real_rate
        prompts = real_prompts(real, args.prefixes, args.prefix_tokens)
        shortest = min(len(p) for p in prompts)
        if shortest <= args.prefix_chars:
            raise SystemExit(
                f"bench: the shortest prefix has {shortest} characters, not more than --prefix-chars "
                f"{args.prefix_chars}: the prefix strategy would hash the users' questions too"
            )
        per_prefix = args.prefix_tokens // real.block_tokens
        share = (real.num_blocks - real.max_num_seqs) / (args.prefixes * per_prefix)
        homes = prefix_homes(prompts, real.addresses, args.prefix_chars)
        print(
            f"\nrouting: {replicas} vLLM engines (the tiny model, --max-num-seqs {real.max_num_seqs}), "
            f"{args.prefixes} prefixes of {args.prefix_tokens} tokens ({per_prefix} blocks of {real.block_tokens}), "
            f"{args.users} users, {args.routing_tokens} tokens per answer; each engine's KV cache {real.num_blocks} "
            f"blocks ({share:.2f} of the prefixes' blocks, and one per running request); prefixes homed on the "
            f"prefix ring: {list(homes.values())}; offered {rate:g} req/s (Poisson); prefix caches emptied "
            f"before each strategy (POST /reset_prefix_cache); {args.warmup:g} s warm-up, "
            f"{args.routing_seconds:g} s measured",
            flush=True,
        )
        settings = {
            "replicas": replicas,
            "engine": "vLLM",
            "prefixes": args.prefixes,
            "prefix_tokens": args.prefix_tokens,
            "prefix_chars_shortest": shortest,
            "block_tokens": real.block_tokens,
            "cache_blocks": real.num_blocks,
            "cache_share_of_prefix_blocks": share,
            "prefixes_homed_per_engine": homes,
            "users": args.users,
            "rate": rate,
            "max_num_seqs": real.max_num_seqs,
            "caches_reset_between_strategies": True,
            **{
                k: getattr(args, k)
                for k in ("routing_tokens", "warmup", "routing_seconds", "prefix_chars", "load_factor_percent")
            },
        }
        # ignore_eos: every answer routing_tokens long, whatever the random weights say.
        engine, direct_model, counters, extra = "vllm", MODEL, VLLM_COUNTERS, {"ignore_eos": True}
    plan = arrivals(rate, args.warmup + args.routing_seconds, args.users, args.prefixes)
    print(f"{'strategy':<12} {'hit rate':>8} {'TTFT mean':>10} {'TTFT p99':>9} {'max/mean load':>13} {'errors':>6}")
    out = {"settings": settings}
    for strategy in args.strategies.split(","):
        procs: list[subprocess.Popen] = []
        log = open(tmp / f"gateway-{strategy}.log", "w")
        try:
            if real is None:
                ports = [free_port() for _ in range(replicas)]
                endpoints = [f"{HOST}:{p}" for p in ports]
                procs.append(start_engines(ports, options))
                for hostport in endpoints:
                    wait_http(f"http://{hostport}/health", 10, procs[0], "the fake engines")
            else:
                endpoints = real.addresses
                real.reset_prefix_caches()
            gw_port = None
            if strategy == "round-robin":
                urls, model = [f"http://{e}/v1/chat/completions" for e in endpoints], direct_model
            else:
                routing = (
                    {
                        "strategy": "prefix",
                        "prefixChars": args.prefix_chars,
                        "loadFactorPercent": args.load_factor_percent,
                    }
                    if strategy == "prefix"
                    else {"strategy": "leastLoad"}
                )
                gateway, gw_port = start_gateway(
                    [
                        {
                            "name": MODEL,
                            "namespace": "bench",
                            "engine": engine,
                            "routing": routing,
                            "endpoints": endpoints,
                        }
                    ],
                    tmp,
                    f"routing-{strategy}",
                    log,
                )
                procs.append(gateway)
                urls, model = [f"http://{HOST}:{gw_port}/v1/chat/completions"], MODEL
            # The hit rate counts from the end of the warm-up: engine counters read then.
            readings = {}

            async def scenario():
                async def mark():
                    await asyncio.sleep(args.warmup)
                    readings["before"] = await asyncio.to_thread(engine_counters, endpoints, counters)
                    if strategy == "prefix":
                        readings["routed"] = await asyncio.to_thread(spilled_counts, gw_port)

                marker = asyncio.create_task(mark())
                result = await open_loop(urls, model, plan, prompts, args.routing_tokens, args.warmup, extra)
                await marker
                return result

            ttft, per_engine, errors = asyncio.run(scenario())
            after = engine_counters(endpoints, counters)
            if real is not None:
                # vLLM names no engine in its answers: requests each finished over the same window.
                per_engine = {e: int(after[e][2] - readings["before"][e][2]) for e in endpoints}
            row = {
                "hit_rate": hit_rate(readings["before"], after),
                "hit_rate_per_engine": {e: hit_rate({e: readings["before"][e]}, {e: after[e]}) for e in endpoints},
                "ttft_mean_ms": (sum(ttft) / len(ttft) * 1000) if ttft else math.nan,
                "ttft_p50_ms": percentile(ttft, 50) * 1000,
                "ttft_p99_ms": percentile(ttft, 99) * 1000,
                "load_max_over_mean": load_spread(per_engine, replicas),
                "requests": len(ttft),
                "errors": errors,
                "per_engine": per_engine,
            }
            if strategy == "prefix":
                home, spilled = (a - b for a, b in zip(spilled_counts(gw_port), readings["routed"]))
                row["spilled"] = spilled / (home + spilled) if home + spilled else math.nan
            out[strategy] = row
            print(
                f"{strategy:<12} {row['hit_rate'] * 100:>7.1f}% {row['ttft_mean_ms']:>8.1f}ms "
                f"{row['ttft_p99_ms']:>7.1f}ms {row['load_max_over_mean']:>13.2f} {errors:>6}",
                flush=True,
            )
            emit({"scenario": "routing", "strategy": strategy, **row})
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


def prefix_homes(prompts: list[str], endpoints: list[str], prefix_chars: int) -> dict[str, int]:
    """How many of the prompts' prefixes the gateway's prefix ring homes on each endpoint."""
    from llm_operator.gateway import prefix

    ring = prefix.Ring(endpoints)
    homes = {e: 0 for e in endpoints}
    for text in prompts:
        key = prefix.prefix_key({"messages": [{"role": "system", "content": text}]}, None, prefix_chars)
        homes[ring.home(key)] += 1
    return homes


def real_prompts(real: RealEngines, prefixes: int, tokens: int) -> list[str]:
    """Prefixes of `tokens` tokens of the engines' own tokenizer, in words of the text it was trained on."""
    from tokenizers import Tokenizer

    tokenizer = Tokenizer.from_file(str(real.model_dir / "tokenizer.json"))
    # Words the tokenizer was trained on take few tokens each, so a prefix outruns the prefix strategy's prefixChars.
    vocabulary = sorted({w for w in re.findall(r"[a-z]+", real.training_text.read_text().lower()) if len(w) > 2})
    return sized_prompts(
        prefixes, tokens, lambda text: len(tokenizer.encode(text, add_special_tokens=False).ids), vocabulary
    )


# ---- vllm-bench: vLLM's own load generator, direct and through the gateway -----------------


def vllm_bench_round(result: dict) -> tuple[list[float], int, float]:
    """One `vllm bench serve --save-result` JSON as a round of merge_rounds: (TTFTs in s of the
    requests that succeeded, failed requests, the benchmark's duration in s)."""
    ttfts = result.get("ttfts") or []
    errors = result.get("errors") or [""] * len(ttfts)
    return [t for t, e in zip(ttfts, errors) if not e], int(result.get("failed", 0)), float(result["duration"])


def as_ttft(summary: dict) -> dict:
    """summarize()'s keys for vllm bench's figure: its TTFT is what the other scenarios call TTFB."""
    return {k.replace("ttfb", "ttft"): v for k, v in summary.items()}


def run_vllm_bench(args, tmp: Path, real: RealEngines) -> dict:
    """`vllm bench serve` (random prompts, a fixed concurrency) straight to one engine and through the
    gateway in front of that engine alone, alternating; with several engines, also through a
    gateway in front of all of them (what a client of the model gets, not a like-for-like figure)."""
    procs: list[subprocess.Popen] = []
    log = open(tmp / "gateway-vllm-bench.log", "w")
    results_dir = tmp / "vllm-bench"
    results_dir.mkdir()
    try:
        one = real.addresses[0]
        gateway, gw_port = start_gateway(
            [{"name": MODEL, "namespace": "bench", "engine": "vllm", "endpoints": [one]}], tmp, "vllm-bench", log
        )
        procs.append(gateway)
        paths = {"direct": f"http://{one}", "gateway": f"http://{HOST}:{gw_port}"}
        if len(real.addresses) > 1:
            gateway_all, all_port = start_gateway(
                [{"name": MODEL, "namespace": "bench", "engine": "vllm", "endpoints": real.addresses}],
                tmp,
                "vllm-bench-all",
                log,
            )
            procs.append(gateway_all)
            paths[f"gateway-{len(real.addresses)}"] = f"http://{HOST}:{all_port}"
        command = [
            str(real.venv / "bin" / "vllm"),
            "bench",
            "serve",
            "--backend",
            "openai",
            "--endpoint",
            "/v1/completions",
            "--model",
            MODEL,
            "--tokenizer",
            "<tiny model dir>",
            "--dataset-name",
            "random",
            "--random-input-len",
            str(args.bench_input_len),
            "--random-output-len",
            str(args.bench_output_len),
            "--num-prompts",
            str(args.bench_prompts),
            "--max-concurrency",
            str(args.bench_concurrency),
            "--ignore-eos",
            "--temperature",
            "0",
            "--percentile-metrics",
            "ttft,e2el",
            "--metric-percentiles",
            "50,99",
            "--disable-tqdm",
            "--save-result",
            "--save-detailed",
            "--result-dir",
            str(results_dir),
        ]
        print(
            f"\nvllm-bench: `vllm bench serve` ({args.bench_prompts} random prompts of {args.bench_input_len} "
            f"tokens, {args.bench_output_len} tokens out, ignore_eos, concurrency {args.bench_concurrency}), "
            f"{args.bench_rounds} rounds of {', '.join(paths)}; prefix caches emptied before each run; "
            f"direct and gateway: engine {one}",
            flush=True,
        )
        print(f"{'round':>5}  {'path':<10} {'req/s':>7} {'TTFT p50':>9} {'TTFT p99':>9} {'failed':>6} {'wall':>6}")
        rounds: dict[str, list] = {name: [] for name in paths}
        reported: dict[str, list] = {name: [] for name in paths}
        for r in range(args.bench_rounds):
            for name, base in paths.items():
                real.reset_prefix_caches()
                filename = f"round{r}-{name}.json"
                # The same seed on every path of a round: the same prompts, to a cold cache each time.
                argv = [a if a != "<tiny model dir>" else str(real.model_dir) for a in command] + [
                    "--base-url",
                    base,
                    "--seed",
                    str(1000 + r),
                    "--result-filename",
                    filename,
                ]
                require_loopback(base.split("//")[1].rpartition(":")[0])
                started = time.monotonic()
                proc = subprocess.run(
                    argv,
                    capture_output=True,
                    text=True,
                    timeout=600,
                    cwd=tmp,
                    env={**os.environ, **offline_env(), "OMP_NUM_THREADS": "1"},
                )
                wall = time.monotonic() - started
                (results_dir / f"round{r}-{name}.log").write_text(proc.stdout + proc.stderr)
                if proc.returncode != 0 or not (results_dir / filename).exists():
                    raise SystemExit(
                        f"bench: vllm bench serve against {base} failed ({proc.returncode}):\n"
                        f"{(proc.stdout + proc.stderr)[-3000:]}"
                    )
                result = json.loads((results_dir / filename).read_text())
                rounds[name].append(vllm_bench_round(result))
                reported[name].append(
                    {
                        k: result.get(k)
                        for k in (
                            "completed",
                            "failed",
                            "duration",
                            "request_throughput",
                            "p50_ttft_ms",
                            "p99_ttft_ms",
                            "mean_ttft_ms",
                            "p50_e2el_ms",
                            "p99_e2el_ms",
                            "total_input_tokens",
                            "total_output_tokens",
                        )
                    }
                    | {"wall_s": round(wall, 1), "aligned_prompts_to_server": "re-aligning prompts" in proc.stdout}
                )
                one_round = as_ttft(summarize(*rounds[name][-1]))
                print(
                    f"{r + 1:>5}  {name:<10} {result['request_throughput']:>7.1f} {one_round['ttft_p50_ms']:>7.1f}ms "
                    f"{one_round['ttft_p99_ms']:>7.1f}ms {result.get('failed', 0):>6} {wall:>5.0f}s",
                    flush=True,
                )
        merged = {name: merge_rounds(rounds[name]) for name in paths}
        c = compare(merged["direct"], merged["gateway"])
        c["direct_noise"] = noise(rounds["direct"])
        shown = ["<vllm venv>/bin/vllm", *(a if a != str(results_dir) else "<result dir>" for a in command[1:])]
        out = {
            "settings": {
                "command": shown + ["--base-url", "URL", "--seed", "1000 + round"],
                "direct": paths["direct"],
                "gateway_endpoints": [one],
                "rounds": args.bench_rounds,
            },
            **{name: {**as_ttft(m), "rounds": reported[name]} for name, m in merged.items()},
            "compare": {
                "rps_ratio": c["rps_ratio"],
                "added_ttft_p50_ms": c["added_p50_ms"],
                "added_ttft_p99_ms": c["added_p99_ms"],
                "direct_noise_ttft_ms": c["direct_noise"],
            },
        }
        for name in paths:
            m = out[name]
            print(
                f"{'all':>5}  {name:<10} {m['rps']:>7.1f} {m['ttft_p50_ms']:>7.1f}ms {m['ttft_p99_ms']:>7.1f}ms "
                f"{m['errors']:>6}"
            )
            emit({"scenario": "vllm-bench", "path": name, **{k: v for k, v in m.items() if k != "rounds"}})
        cc = out["compare"]
        print(
            f"gateway vs direct, same engine, same run: {cc['rps_ratio']:.2f}x req/s, TTFT "
            f"{cc['added_ttft_p50_ms']:+.1f} ms at p50, {cc['added_ttft_p99_ms']:+.1f} ms at p99 (the direct "
            f"rounds' own spread: {cc['direct_noise_ttft_ms']['p50_ms']:.1f} / "
            f"{cc['direct_noise_ttft_ms']['p99_ms']:.1f} ms)",
            flush=True,
        )
        emit({"scenario": "vllm-bench", "compare": cc})
        return out
    finally:
        stop(procs)
        log.close()


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


def start_gateway(table: list[dict], tmp: Path, name: str, log) -> tuple[subprocess.Popen, int]:
    """`llm-operator gateway --static` over `table`, ready (its /readyz answers)."""
    path = tmp / f"static-{name}.json"
    path.write_text(json.dumps(table))
    port = free_port()
    gateway = subprocess.Popen(
        [sys.executable, "-m", "llm_operator.cli", "gateway", f"--listen={HOST}:{port}", f"--static={path}"],
        stdout=log,
        stderr=subprocess.STDOUT,
        env=env(),
    )
    try:
        wait_http(f"http://{HOST}:{port}/readyz", 30, gateway, "the gateway")
    except BaseException:
        stop([gateway])
        raise
    return gateway, port


def answer_seconds(url: str, body: bytes) -> float:
    """How long one whole streamed answer takes (the real engines' stagger: one mean answer's time)."""
    require_loopback(url.split("//")[1].split(":")[0])
    started = time.perf_counter()
    request = urllib.request.Request(url, data=body, headers={"Content-Type": "application/json"})
    with urllib.request.urlopen(request, timeout=60) as r:
        r.read()
    return time.perf_counter() - started


def run_overhead(args, levels: list[int], tmp: Path, real: RealEngines | None = None) -> dict:
    """The gateway's cost: the same load direct and through the gateway at each level."""
    procs: list[subprocess.Popen] = []
    gw_log = open(Path(tmp, "gateway.log"), "w")
    try:
        if real is None:
            ports = [free_port() for _ in range(args.engines)]
            endpoints = [f"{HOST}:{p}" for p in ports]
            engines = start_engines(
                ports,
                {
                    "prefill_tokens_per_s": float("inf"),
                    "decode_tokens_per_s": args.decode_tokens_per_s,
                    "max_batch": args.max_batch,
                },
            )
            procs.append(engines)
            for hostport in endpoints:
                wait_http(f"http://{hostport}/health", 10, engines, "the fake engines")
            engine, direct_model, extra = "tgi", "tgi", {}
        else:
            # vLLM serves MODEL, the name the gateway sends upstream; ignore_eos: answers as long as the fake engines'.
            endpoints, engine, direct_model, extra = real.addresses, "vllm", MODEL, {"ignore_eos": True}
        gateway, gw_port = start_gateway(
            [{"name": MODEL, "namespace": "bench", "engine": engine, "endpoints": endpoints}], tmp, "overhead", gw_log
        )
        procs.append(gateway)
        paths = ["direct", "gateway"]
        if args.asgi:
            asgi_port = free_port()
            asgi = subprocess.Popen(
                [sys.executable, str(Path(__file__).with_name("asgi_proxy.py")), f"--listen={HOST}:{asgi_port}"]
                + [f"--endpoint={e}" for e in endpoints],
                stdout=gw_log,
                stderr=subprocess.STDOUT,
                env=env(),
            )
            procs.append(asgi)
            wait_http(f"http://{HOST}:{asgi_port}/readyz", 30, asgi, "the ASGI proxy")
            paths.append("asgi")

        lengths = answer_lengths(args.tokens)

        def bodies_for(model: str) -> list[bytes]:
            return [
                json.dumps(
                    {
                        "model": model,
                        "stream": True,
                        "max_tokens": n,
                        **extra,
                        "messages": [{"role": "user", "content": "hello"}],
                    }
                ).encode()
                for n in lengths
            ]

        # Direct, the body names the model as TGI knows it ("tgi"); through the gateway, by the
        # LLMDeployment's name, which the gateway rewrites to "tgi" (README: upstream model).
        direct_body, gateway_body = bodies_for(direct_model), bodies_for(MODEL)
        direct_urls = [f"http://{e}/v1/chat/completions" for e in endpoints]
        gateway_urls = [f"http://{HOST}:{gw_port}/v1/chat/completions"]
        if real is None:
            stagger = args.tokens / args.decode_tokens_per_s  # one mean answer's time
        else:
            mean_body = json.dumps(
                {
                    "model": MODEL,
                    "stream": True,
                    "max_tokens": args.tokens,
                    **extra,
                    "messages": [{"role": "user", "content": "hello"}],
                }
            ).encode()
            stagger = min(answer_seconds(direct_urls[0], mean_body) for _ in range(3))
        targets = {"direct": (direct_urls, direct_body), "gateway": (gateway_urls, gateway_body)}
        if args.asgi:
            targets["asgi"] = ([f"http://{HOST}:{asgi_port}/v1/chat/completions"], gateway_body)
        # Warm every path (connections, first-request costs) before measuring.
        for urls, body in targets.values():
            warm = asyncio.run(run_level(urls, 8, 0.5, body))
            if warm[1] or not warm[0]:
                raise SystemExit(
                    f"bench: warm-up against {urls[0]} failed ({warm[1]} errors, "
                    f"{len(warm[0])} answers); the gateway's log: {gw_log.name}"
                )

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
                print(
                    f"{level:>7}  {name:<8} {r['rps']:>8.1f} {r['ttfb_p50_ms']:>7.2f}ms {r['ttfb_p99_ms']:>7.2f}ms"
                    f" {r['errors']:>6}"
                )
            print(
                f"{level:>7}  {'added':<8} {c['rps_ratio']:>7.2f}x {c['added_p50_ms']:>+7.2f}ms"
                f" {c['added_p99_ms']:>+7.2f}ms",
                flush=True,
            )
            if args.asgi:
                a = results[str(level)]["compare_asgi"]
                print(
                    f"{level:>7}  {'+asgi':<8} {a['rps_ratio']:>7.2f}x {a['added_p50_ms']:>+7.2f}ms"
                    f" {a['added_p99_ms']:>+7.2f}ms",
                    flush=True,
                )
            if args.rounds > 1:
                n = c["direct_noise"]
                print(
                    f"{level:>7}  {'noise':<8} {'':>8} {n['p50_ms']:>7.2f}ms {n['p99_ms']:>7.2f}ms"
                    "  (spread of the direct path's own rounds)",
                    flush=True,
                )
            emit({"scenario": "overhead", "streams": level, **results[str(level)]})
        for line in verdicts(results):
            print(line)
        if real is not None:
            results["settings"] = {
                "engines": len(endpoints),
                "stagger_s": round(stagger, 4),
                "answer_tokens": f"uniform in [{min(lengths)}, {max(lengths)}], ignore_eos",
                "prompt": "one user message, 'hello'",
            }
        return results
    finally:
        stop(procs)
        gw_log.close()


def emit(record: dict) -> None:
    """One JSON line of figures on stdout, beside the human-readable table."""
    print(json.dumps(record, default=str), flush=True)


# Defaults that differ between fake engines and real ones (sizes a CPU engine serves in seconds).
MODE_DEFAULTS = {
    "fake": {
        "levels": ",".join(map(str, LEVELS)),
        "tokens": 32,
        "prefixes": 32,
        "cache_share": 1 / 3,
        "warmup": 5.0,
        "routing_seconds": 20.0,
        "scenarios": "overhead,routing",
    },
    "real": {
        "levels": "1,4,16",
        "tokens": 16,
        "prefixes": 32,
        "cache_share": 0.5,
        "warmup": 15.0,
        "routing_seconds": 30.0,
        "scenarios": "overhead,routing,vllm-bench",
    },
}
SCENARIOS = ("overhead", "routing", "vllm-bench")


def other_vllm_servers() -> int:
    """`vllm serve` processes on this machine (their forked children not counted): competition for the CPUs."""
    found: dict[int, int] = {}
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit():
            continue
        try:
            argv = (entry / "cmdline").read_bytes().split(b"\0")
            ppid = int((entry / "stat").read_text().rsplit(")", 1)[1].split()[1])
        except (OSError, ValueError, IndexError):
            continue
        if len(argv) > 2 and argv[1].endswith(b"/vllm") and argv[2] == b"serve":
            found[int(entry.name)] = ppid
    return sum(1 for ppid in found.values() if ppid not in found)


class CpuSampler:
    """CPU seconds used by this run's processes (this one, its descendants, the engines' own
    sessions) and by everything else on the machine, from /proc every `interval` s: the load
    average counts the run's own threads too, so it cannot say alone what competed with the run."""

    def __init__(self, interval: float = 2.0):
        self.interval, self.sessions = interval, set()
        self.tick = os.sysconf("SC_CLK_TCK")
        self.ours = self.others = 0.0
        self.last: dict[int, int] = {}
        self.lock = threading.Lock()
        self.done = threading.Event()
        self.sample(first=True)
        self.thread = threading.Thread(target=self.run, name="cpu-sampler", daemon=True)

    def sample(self, first: bool = False) -> None:
        stats: dict[int, tuple[int, int, int]] = {}  # pid: (ppid, session, utime + stime)
        for entry in Path("/proc").iterdir():
            if not entry.name.isdigit():
                continue
            try:
                fields = (entry / "stat").read_text().rsplit(")", 1)[1].split()
            except (OSError, IndexError):
                continue
            stats[int(entry.name)] = (int(fields[1]), int(fields[3]), int(fields[11]) + int(fields[12]))
        me = os.getpid()

        def is_ours(pid: int) -> bool:
            for _ in range(64):
                if pid == me or (pid in stats and stats[pid][1] in self.sessions):
                    return True
                if pid not in stats or pid <= 1:
                    return False
                pid = stats[pid][0]
            return False

        seen: dict[int, int] = {}
        ours = others = 0
        for pid, (_, _, ticks) in stats.items():
            seen[pid] = ticks
            # A process first seen now (or a reused pid) started since the last sample: all its time is new.
            before = self.last.get(pid, 0)
            delta = ticks - before if ticks >= before else ticks
            if is_ours(pid):
                ours += delta
            else:
                others += delta
        with self.lock:
            if not first:
                self.ours += ours / self.tick
                self.others += others / self.tick
            self.last = seen

    def run(self) -> None:
        while not self.done.wait(self.interval):
            self.sample()

    def start(self) -> CpuSampler:
        self.thread.start()
        return self

    def stop(self) -> None:
        self.done.set()
        self.thread.join()
        self.sample()

    def totals(self) -> tuple[float, float]:
        with self.lock:
            return self.ours, self.others


SAMPLER: CpuSampler | None = None


def load_now() -> dict:
    now = {
        "loadavg_1_5_15": [round(x, 2) for x in os.getloadavg()],
        "vllm_servers_running": other_vllm_servers(),
        "at": time.strftime("%H:%M:%SZ", time.gmtime()),
    }
    if SAMPLER is not None:
        ours, others = SAMPLER.totals()
        now["cpu_s_since_start"] = {"this_run": round(ours, 1), "everything_else": round(others, 1)}
    return now


def cpu_model() -> str:
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor()


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--engines", type=int, default=4, help="fake engines (default 4)")
    p.add_argument(
        "--levels",
        default=None,
        help="concurrent streams, comma-separated (default 1,64,256; 1,4,16 with --real-engines)",
    )
    p.add_argument("--seconds", type=float, default=8.0, help="per level, path and round (default 8)")
    p.add_argument("--rounds", type=int, default=2, help="direct/gateway alternations per level (default 2)")
    p.add_argument(
        "--tokens",
        type=int,
        default=None,
        help="mean tokens per answer, each drawn in [N/2, 3N/2] (default 32; 16 with --real-engines)",
    )
    p.add_argument(
        "--decode-tokens-per-s",
        type=float,
        default=50.0,
        help="per request (default 50, a GPU's usual decode speed for one stream)",
    )
    p.add_argument("--max-batch", type=int, default=512, help="per engine (default 512)")
    p.add_argument("--quick", action="store_true", help="2 s per level and path, 1 round")
    p.add_argument("--out", default=None, help="write the results as JSON here")
    p.add_argument(
        "--asgi",
        action="store_true",
        help="also measure the same hot path on uvicorn + Starlette + httpx (benchmarks/asgi_proxy.py; "
        "pip install -e '.[bench]')",
    )
    p.add_argument(
        "--scenarios",
        default=None,
        help="overhead (the gateway's cost), routing (round-robin, least load and prefix), vllm-bench "
        "(real engines only): default overhead,routing; all three with --real-engines",
    )
    real = p.add_argument_group("real engines")
    real.add_argument(
        "--real-engines",
        type=int,
        default=0,
        metavar="N",
        help="run the scenarios against N real vLLM engines (CPU build, the tiny model) instead of "
        "fake ones (default 0: fake engines)",
    )
    real.add_argument("--max-num-seqs", type=int, default=16, help="each engine's --max-num-seqs (default 16)")
    real.add_argument("--vllm-bench", action="store_true", help="add the vllm-bench scenario to --scenarios")
    real.add_argument("--bench-prompts", type=int, default=120, help="vllm bench's --num-prompts (default 120)")
    real.add_argument("--bench-concurrency", type=int, default=16, help="its --max-concurrency (default 16)")
    real.add_argument("--bench-input-len", type=int, default=200, help="its --random-input-len (default 200)")
    real.add_argument("--bench-output-len", type=int, default=16, help="its --random-output-len (default 16)")
    real.add_argument("--bench-rounds", type=int, default=2, help="direct/gateway alternations (default 2)")
    r = p.add_argument_group("routing scenario")
    r.add_argument("--strategies", default=",".join(STRATEGIES), help="(default all three)")
    r.add_argument("--prefixes", type=int, default=None, help="shared prompt prefixes (default 32)")
    r.add_argument("--prefix-words", type=int, default=800, help="tokens per prefix, fake engines (default 800)")
    r.add_argument(
        "--prefix-tokens",
        type=int,
        default=1536,
        help="tokens per prefix (the tiny model's tokenizer), real engines (default 1536)",
    )
    r.add_argument(
        "--real-rate", type=float, default=6.0, help="requests/s offered (Poisson) to the real engines (default 6)"
    )
    r.add_argument("--users", type=int, default=2000, help="users, each bound to one prefix (default 2000)")
    r.add_argument(
        "--prefill-tokens-per-s", type=float, default=4000.0, help="uncached prompt tokens per second (default 4000)"
    )
    r.add_argument("--routing-decode-tokens-per-s", type=float, default=100.0, help="(default 100)")
    r.add_argument("--routing-tokens", type=int, default=8, help="tokens per answer (default 8)")
    r.add_argument("--routing-batch", type=int, default=8, help="requests an engine runs at once (default 8)")
    r.add_argument(
        "--offered", type=float, default=0.9, help="arrival rate as a fraction of round-robin's capacity (default 0.9)"
    )
    r.add_argument(
        "--warmup",
        type=float,
        default=None,
        help="seconds of load before measuring (default 5; 15 with --real-engines)",
    )
    r.add_argument(
        "--routing-seconds",
        type=float,
        default=None,
        help="seconds measured per strategy (default 20; 30 with --real-engines)",
    )
    r.add_argument(
        "--cache-share",
        type=float,
        default=None,
        help="the share of all prefixes one engine's prefix cache holds (default 1/3; 1/2 with "
        "--real-engines, where it sizes vLLM's KV cache: --num-gpu-blocks-override)",
    )
    r.add_argument("--prefix-chars", type=int, default=2000, help="the prefix strategy's prefixChars (default 2000)")
    r.add_argument("--load-factor-percent", type=int, default=125, help="its loadFactorPercent (default 125)")
    p.add_argument("--serve-engines", default=None, help=argparse.SUPPRESS)
    p.add_argument("--engine-options", default="{}", help=argparse.SUPPRESS)
    args = p.parse_args(argv)
    if args.serve_engines:
        engines_main([int(x) for x in args.serve_engines.split(",")], json.loads(args.engine_options))
        return 0
    for key, value in MODE_DEFAULTS["real" if args.real_engines else "fake"].items():
        if getattr(args, key) is None:
            setattr(args, key, value)
    if args.quick:
        args.seconds, args.rounds = 2.0, 1
        args.warmup, args.routing_seconds = 3.0, 8.0
    levels = [int(x) for x in args.levels.split(",")]

    scenarios = [x for x in args.scenarios.split(",") if x]
    if args.vllm_bench and "vllm-bench" not in scenarios:
        scenarios.append("vllm-bench")
    unknown = set(scenarios) - set(SCENARIOS)
    if unknown:
        p.error(f"--scenarios: {', '.join(sorted(unknown))} unknown; choose from {', '.join(SCENARIOS)}")
    if "vllm-bench" in scenarios and not args.real_engines:
        p.error("the vllm-bench scenario needs real engines: --real-engines N")
    out: dict = {
        "when": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()),
        "machine": {"cpus": os.cpu_count(), "cpu": cpu_model(), "python": platform.python_version()},
        "settings": {
            k: getattr(args, k)
            for k in ("engines", "seconds", "rounds", "tokens", "decode_tokens_per_s", "max_batch", "asgi")
        },
    }
    if args.real_engines:
        out["settings"] = {k: getattr(args, k) for k in ("real_engines", "seconds", "rounds", "tokens", "asgi")}
        out["settings"]["levels"] = levels
    global SAMPLER
    out["load"] = {"start": load_now()}
    SAMPLER = CpuSampler().start()
    print(f"load at start: {out['load']['start']}", flush=True)

    def terminated(signum, frame):
        raise KeyboardInterrupt(f"signal {signum}")

    # SIGTERM and SIGHUP unwind like Ctrl-C, through every `finally` that stops a process.
    signal.signal(signal.SIGTERM, terminated)
    signal.signal(signal.SIGHUP, terminated)
    started = time.monotonic()
    with tempfile.TemporaryDirectory(prefix="bench-gateway-") as tmp, contextlib.ExitStack() as stack:
        engines = None
        if args.real_engines:
            blocks = engine_cache_blocks(
                args.prefixes,
                args.prefix_tokens,
                REAL_BLOCK_TOKENS,
                args.cache_share,
                args.max_num_seqs,
                REAL_MAX_MODEL_LEN,
            )
            engines = stack.enter_context(RealEngines(args.real_engines, Path(tmp), args.max_num_seqs, blocks))
            out["engines"] = engines.info
            out["load"]["engines_ready"] = load_now()
        if "overhead" in scenarios:
            out["results"] = run_overhead(args, levels, Path(tmp), engines)
            out["load"]["after_overhead"] = load_now()
        if "routing" in scenarios:
            out["routing"] = run_routing(args, Path(tmp), engines)
            out["load"]["after_routing"] = load_now()
        if "vllm-bench" in scenarios:
            out["vllm_bench"] = run_vllm_bench(args, Path(tmp), engines)
            out["load"]["after_vllm_bench"] = load_now()
    SAMPLER.stop()
    out["load"]["end"] = load_now()
    out["wall_s"] = round(time.monotonic() - started, 1)
    ours, others = SAMPLER.totals()
    out["cpu"] = {
        "this_run_s": round(ours, 1),
        "everything_else_s": round(others, 1),
        "everything_else_cpus_busy": round(others / out["wall_s"], 2),
        "cpus": os.cpu_count(),
    }
    print(
        f"load at end: {out['load']['end']}; {out['wall_s']:.0f} s in all; CPU time: this run {ours:.0f} s, "
        f"everything else on the machine {others:.0f} s (on average {others / out['wall_s']:.2f} of "
        f"{os.cpu_count()} CPUs)",
        flush=True,
    )
    emit({"load": out["load"], "cpu": out["cpu"], "wall_s": out["wall_s"]})
    if args.out:
        Path(args.out).write_text(json.dumps(out, indent=2) + "\n")
    return 0


if __name__ == "__main__":
    try:
        sys.exit(main())
    except KeyboardInterrupt as stopped:
        # Every process the run started is stopped by now: the `finally`s and `with`s ran on the way out.
        print(
            f"bench: interrupted ({stopped or 'Ctrl-C'}); every engine and gateway it started is stopped",
            file=sys.stderr,
        )
        sys.exit(130)

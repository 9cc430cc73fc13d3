"""The processes the benchmark starts, all on loopback: the fake engines (tests/support/fakeengine.py,
one process holding all of them: `bench_gateway.py --serve-engines`) and the gateway
(`python -m llm_operator.cli gateway --static FILE`); ports, readiness, stopping."""

from __future__ import annotations

import asyncio
import json
import os
import signal
import socket
import subprocess
import sys
import time
import urllib.request
from pathlib import Path

from support.loopback import require_loopback  # tests/support/loopback.py: the one address gate

from . import ROOT
from .config import ENTRY, HOST


def free_port(host: str = HOST) -> int:
    with socket.socket() as s:
        s.bind((require_loopback(host), 0))
        return s.getsockname()[1]


def port_free(host: str, port: int) -> bool:
    with socket.socket() as s:
        # As a server binds (uvicorn in vLLM too): a closed connection's TIME_WAIT does not hold the port.
        s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        try:
            s.bind((require_loopback(host), port))
        except OSError:
            return False
        return True


def env() -> dict:
    e = dict(os.environ)
    e["PYTHONPATH"] = os.pathsep.join(
        [str(ROOT / "operator"), str(ROOT / "common"), str(ROOT / "runtime"), e.get("PYTHONPATH", "")]
    ).rstrip(os.pathsep)
    return e


def offline_env() -> dict[str, str]:
    """What keeps vLLM's processes on this machine: no Hub lookups, no usage reports."""
    return {"HF_HUB_OFFLINE": "1", "TRANSFORMERS_OFFLINE": "1", "VLLM_NO_USAGE_STATS": "1", "DO_NOT_TRACK": "1"}


def signal_group(proc: subprocess.Popen, sig: int) -> None:
    try:
        os.killpg(proc.pid, sig)
    except ProcessLookupError:
        pass


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


def stop(procs: list[subprocess.Popen]) -> None:
    for proc in reversed(procs):
        if proc.poll() is None:
            proc.terminate()
            try:
                proc.wait(10)
            except subprocess.TimeoutExpired:
                proc.kill()
                proc.wait()


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
            str(ENTRY),
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

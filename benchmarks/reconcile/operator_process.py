"""The operator as a process: `python -m llm_operator.cli run` from this checkout's source
roots, or another checkout's (--code), against the benchmark's cluster."""

from __future__ import annotations

import os
import re
import subprocess
import sys
import time
import urllib.request
from pathlib import Path

from localcluster import LocalCluster, free_port

from . import ROOT
from .config import QUIET_S, BenchError


class Operator:
    """`llm-operator run` against the benchmark's cluster, offline from the Hub, from the
    source roots of `code` (a checkout: this one, or another one's given with --code)."""

    def __init__(self, cluster: LocalCluster, work: Path, namespaces: list[str], code: Path = ROOT):
        self.cluster = cluster
        self.code_root = code
        self.work = work
        self.namespaces = namespaces
        self.log_path = work / "operator.log"
        self.proc: subprocess.Popen | None = None
        self.started_at = 0.0

    def env(self) -> dict[str, str]:
        """The operator's environment: ours (PATH, PYTHONPATH...), offline from the Hub, and
        the code checkout's common/, operator/ and runtime/ first on the path, ahead of any
        installed copy (an editable install of another checkout included)."""
        # No Hub: the facts read fails at once and the plan is "unknown", the user's gpus are used.
        env = {
            **os.environ,
            "KUBECONFIG": str(self.cluster.kubeconfig),
            "HF_HUB_OFFLINE": "1",
            "HF_HOME": str(self.work / "hf"),
            "PYTHONUNBUFFERED": "1",
        }
        code = self.code_root
        env["PYTHONPATH"] = os.pathsep.join(
            p
            for p in [str(code / "common"), str(code / "operator"), str(code / "runtime"), env.get("PYTHONPATH", "")]
            if p
        )
        return env

    def code(self) -> dict:
        """Which llm_operator the operator process imports (with its environment), and the
        commit of the code checkout: what the figures are figures of."""
        where = subprocess.run(
            [sys.executable, "-c", "import llm_operator; print(llm_operator.__file__)"],
            env=self.env(),
            cwd=self.code_root,
            capture_output=True,
            text=True,
            timeout=60,
        )
        module = where.stdout.strip() or f"import failed: {where.stderr.strip()[-300:]}"

        def git(*a: str) -> str:
            r = subprocess.run(["git", *a], cwd=self.code_root, capture_output=True, text=True, timeout=30)
            return r.stdout.strip()

        dirty = git("status", "--porcelain", "--", "common", "operator", "runtime")
        return {
            "module": module,
            "checkout": str(self.code_root),
            "commit": git("rev-parse", "--short", "HEAD"),
            "operator_code_modified": bool(dirty),
        }

    def uptime(self) -> float:
        return round(time.monotonic() - self.started_at, 1)

    def start(self, timeout: float = 60) -> float:
        env = self.env()
        self.liveness = f"http://127.0.0.1:{free_port()}/healthz"
        self.metrics_port = free_port()
        started = self.started_at = time.monotonic()
        self.proc = subprocess.Popen(
            [
                sys.executable,
                "-m",
                "llm_operator.cli",
                "run",
                "--namespace",
                ",".join(self.namespaces),
                f"--liveness={self.liveness}",
                f"--metrics-port={self.metrics_port}",
            ],
            env=env,
            stdout=open(self.log_path, "ab"),
            stderr=subprocess.STDOUT,
            cwd=self.code_root,
        )
        deadline = started + timeout
        while time.monotonic() < deadline:
            if self.proc.poll() is not None:
                raise BenchError(f"the operator exited with {self.proc.returncode}:\n{self.log_tail()}")
            try:
                with urllib.request.urlopen(self.liveness, timeout=1) as resp:
                    if resp.status == 200:
                        return time.monotonic() - started
            except OSError:
                pass
            time.sleep(0.2)
        raise BenchError(f"the operator's liveness endpoint did not answer within {timeout:.0f}s:\n{self.log_tail()}")

    def stop(self) -> None:
        if self.proc and self.proc.poll() is None:
            self.proc.terminate()
            try:
                self.proc.wait(timeout=20)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait(timeout=10)

    @property
    def pid(self) -> int:
        assert self.proc is not None
        return self.proc.pid

    def log_tail(self, chars: int = 3000) -> str:
        return self.log_path.read_text(errors="replace")[-chars:] if self.log_path.exists() else ""

    def metrics(self) -> dict[str, float]:
        """Sums of the operator's own metrics by sample name (labels summed over)."""
        with urllib.request.urlopen(f"http://127.0.0.1:{self.metrics_port}/metrics", timeout=10) as resp:
            text = resp.read().decode()
        out: dict[str, float] = {}
        for line in text.splitlines():
            if line.startswith(("llm_operator_", "process_cpu_seconds_total")) and not line.startswith("#"):
                name = line.split("{", 1)[0].split(" ", 1)[0]
                out[name] = out.get(name, 0) + float(line.rsplit(" ", 1)[1])
        return out

    def memory_mib(self) -> dict[str, float]:
        status = Path(f"/proc/{self.pid}/status").read_text()
        out = {}
        for key in ("VmRSS", "VmHWM"):
            m = re.search(rf"^{key}:\s+(\d+) kB", status, re.M)
            out[key] = round(int(m.group(1)) / 1024, 1) if m else None
        return out

    def wait_quiet(self, at_least: float, timeout: float) -> float:
        """Wait until llm_operator_reconciles_total is >= at_least and has not moved for
        QUIET_S seconds. Returns the seconds until it last moved."""
        started = time.monotonic()
        last, last_change = -1.0, started
        while time.monotonic() - started < timeout:
            if self.proc.poll() is not None:
                raise BenchError(f"the operator exited with {self.proc.returncode}:\n{self.log_tail()}")
            n = self.metrics().get("llm_operator_reconciles_total", 0)
            now = time.monotonic()
            if n != last:
                last, last_change = n, now
            elif n >= at_least and now - last_change >= QUIET_S:
                return last_change - started
            time.sleep(0.5)
        raise BenchError(
            f"the operator did not go quiet within {timeout:.0f}s (reconciles: {last:.0f}, wanted >= {at_least:.0f})"
        )


def git_commit(checkout: Path) -> str:
    """The short commit a checkout is at ('' when git cannot say)."""
    r = subprocess.run(
        ["git", "rev-parse", "--short", "HEAD"], cwd=checkout, capture_output=True, text=True, timeout=30
    )
    return r.stdout.strip()

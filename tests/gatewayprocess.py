"""`llm-operator gateway` as a process beside the local plane, for the integration tests
(the session's gateway fixture in conftest.py; the operator reads its counts)."""

from __future__ import annotations

import os
import subprocess
import sys
import urllib.request
from pathlib import Path

from localcluster import free_port

ROOT = Path(__file__).resolve().parent.parent
HOLD_TIMEOUT_S = 120


class GatewayProcess:
    def __init__(self, kubeconfig, log_path, extra_args=()):
        self.kubeconfig, self.log_path, self.extra_args = kubeconfig, log_path, extra_args
        self.port = free_port()
        self.url = f"http://127.0.0.1:{self.port}"
        self.proc = None

    def start(self):
        from conftest import wait_for

        env = {**os.environ, "KUBECONFIG": str(self.kubeconfig)}
        self.proc = subprocess.Popen(
            [sys.executable, "-m", "llm_operator.cli", "gateway", f"--listen=127.0.0.1:{self.port}",
             f"--hold-timeout={HOLD_TIMEOUT_S}", *self.extra_args],
            env=env, stdout=open(self.log_path, "ab"), stderr=subprocess.STDOUT, cwd=ROOT)

        def ready():
            if self.proc.poll() is not None:
                raise AssertionError(f"the gateway exited with {self.proc.returncode}:\n{self.log()[-3000:]}")
            try:
                with urllib.request.urlopen(self.url + "/readyz", timeout=1) as resp:
                    return resp.status == 200
            except OSError:
                return False
        wait_for("the gateway's /readyz", ready, 30)

    def stop(self):
        if self.proc and self.proc.poll() is None:
            self.proc.terminate()
            self.proc.wait(timeout=20)

    def log(self):
        return self.log_path.read_text(errors="replace")

    def metrics(self) -> str:
        with urllib.request.urlopen(self.url + "/metrics", timeout=5) as resp:
            return resp.read().decode()

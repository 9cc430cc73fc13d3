"""`llm-operator run` as a child process beside the local plane, with its log in a file (the
session's operator fixture in conftest.py; tests that need an operator of their own start one)."""

from __future__ import annotations

import os
import subprocess
import sys
import urllib.request
from pathlib import Path

from localcluster import LocalCluster, free_port
from support.cluster import wait_for
from support.paths import ROOT
from support.processlog import ProcessLog


class OperatorProcess(ProcessLog):
    """`llm-operator run` as a child process, with its log in a file."""

    def __init__(
        self,
        cluster: LocalCluster,
        log_path: Path,
        extra_env: dict | None = None,
        kubeconfig: Path | None = None,
        scope: tuple[str, ...] = ("--all-namespaces",),
        extra_args: tuple[str, ...] = (),
    ):
        self.extra_args = extra_args
        self.cluster = cluster
        self.kubeconfig = kubeconfig or cluster.kubeconfig
        self.scope = scope
        super().__init__(log_path)
        self.extra_env = extra_env or {}
        self.proc: subprocess.Popen | None = None

    def start(self) -> None:
        env = {**os.environ, "KUBECONFIG": str(self.kubeconfig), **self.extra_env}
        log = open(self.log_path, "ab")
        self.liveness = f"http://127.0.0.1:{free_port()}/healthz"
        self.metrics_port = free_port()
        self.proc = subprocess.Popen(
            [
                sys.executable,
                "-m",
                "llm_operator.cli",
                "run",
                *self.scope,
                f"--liveness={self.liveness}",
                f"--metrics-port={self.metrics_port}",
                *self.extra_args,
            ],
            env=env,
            stdout=log,
            stderr=subprocess.STDOUT,
            cwd=ROOT,
        )

        def alive() -> bool:
            if self.proc.poll() is not None:
                raise AssertionError(f"the operator exited with {self.proc.returncode}:\n{self.log()[-3000:]}")
            try:
                with urllib.request.urlopen(self.liveness, timeout=1) as resp:
                    return resp.status == 200
            except OSError:
                return False

        wait_for("the operator's liveness endpoint", alive, 30)

    def stop(self) -> None:
        if self.proc and self.proc.poll() is None:
            self.proc.terminate()
            try:
                self.proc.wait(timeout=20)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait(timeout=10)

    def refusals(self) -> list[str]:
        """Log lines where the API refused the operator: the apiserver's 403s ("Forbidden",
        "... is forbidden: User ...") and kopf's "Not enough permissions"; not a write into
        a namespace being deleted, which every cleanup causes, nor an admission refusal that
        says "forbidden" about the object itself (a claim that cannot grow); nor what a test
        excused (an apiserver restarting answers 403 until its caches fill)."""
        return [
            line
            for line in self.unexcused_lines()
            if any(sign in line for sign in ("Forbidden", "forbidden: User", "Not enough permissions"))
            and "being terminated" not in line
        ]

    def metric(self, name: str) -> float:
        """Sum of one metric's samples on the operator's /metrics."""
        with urllib.request.urlopen(f"http://127.0.0.1:{self.metrics_port}/metrics", timeout=5) as resp:
            text = resp.read().decode()
        return sum(
            float(line.rsplit(" ", 1)[1])
            for line in text.splitlines()
            if line.startswith(name) and not line.startswith("#")
        )

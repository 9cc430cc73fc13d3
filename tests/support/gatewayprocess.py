"""`llm-operator gateway` as a process beside the local plane, for the integration tests
(the session's gateway fixture in conftest.py; the operator reads its counts)."""

from __future__ import annotations

import os
import re
import subprocess
import sys
import urllib.request

from localcluster import free_port
from support.cluster import wait_for
from support.paths import ROOT
from support.processlog import ProcessLog

HOLD_TIMEOUT_S = 120
# The ServiceAccount the session's gateway runs as (serviceaccount.install_gateway_rbac, release llm-operator-gw).
GATEWAY_USER = "system:serviceaccount:llm-system:llm-operator-gw-gateway"


def wait_gateway_authorized(kubectl, timeout: float = 120) -> None:
    """After an apiserver restart: until the gateway's ServiceAccount is authorized again
    (the RBAC caches filled), so that a 403 logged before then can be excused, none after."""
    wait_for(
        "the gateway's ServiceAccount to be authorized again",
        lambda: all(
            kubectl.run("auth", "can-i", verb, what, "--all-namespaces", as_user=GATEWAY_USER, check=False).returncode
            == 0
            for verb, what in (("watch", "pods"), ("watch", "llmdeployments.llm-operator.io"))
        ),
        timeout,
    )


class GatewayProcess(ProcessLog):
    def __init__(self, kubeconfig, log_path, extra_args=()):
        super().__init__(log_path)
        self.kubeconfig, self.extra_args = kubeconfig, extra_args
        self.port = free_port()
        self.url = f"http://127.0.0.1:{self.port}"
        self.proc = None

    def start(self):
        env = {**os.environ, "KUBECONFIG": str(self.kubeconfig)}
        self.proc = subprocess.Popen(
            [
                sys.executable,
                "-m",
                "llm_operator.cli",
                "gateway",
                f"--listen=127.0.0.1:{self.port}",
                f"--hold-timeout={HOLD_TIMEOUT_S}",
                *self.extra_args,
            ],
            env=env,
            stdout=open(self.log_path, "ab"),
            stderr=subprocess.STDOUT,
            cwd=ROOT,
        )

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

    def refusals(self) -> list[str]:
        """Log lines where the API refused the gateway (a 403 as a status, not digits inside a
        test namespace's name such as t-41924403, nor a log time's milliseconds such as ,403),
        outside what a test excused."""
        return [
            line
            for line in self.unexcused_lines()
            if re.search(r"(?<![,.])\b403\b", line) or "forbidden" in line.lower()
        ]

    def metrics(self) -> str:
        with urllib.request.urlopen(self.url + "/metrics", timeout=5) as resp:
            return resp.read().decode()

"""Fixtures of the chart tier: helm against the session's control plane, and the chart
rendered with --set values."""

from __future__ import annotations

import os
import subprocess

import pytest
import yaml

from support import serviceaccount
from support.paths import CHART


@pytest.fixture(scope="module")
def helm_env(tmp_path_factory) -> dict:
    """Helm's cache and config in a temporary directory, not the user's home."""
    home = tmp_path_factory.mktemp("helm")
    return {
        **os.environ,
        "HELM_CACHE_HOME": str(home / "cache"),
        "HELM_CONFIG_HOME": str(home / "config"),
        "HELM_DATA_HOME": str(home / "data"),
    }


@pytest.fixture(scope="module")
def helm(cluster, helm_env):
    def run(*args: str, check: bool = True) -> subprocess.CompletedProcess:
        proc = subprocess.run(
            [cluster.binary("helm"), f"--kubeconfig={cluster.kubeconfig}", *args],
            text=True,
            capture_output=True,
            timeout=180,
            env=helm_env,
        )
        if check and proc.returncode != 0:
            raise AssertionError(f"helm {' '.join(args)} failed ({proc.returncode}):\n{proc.stdout}\n{proc.stderr}")
        return proc

    return run


@pytest.fixture(scope="module")
def kube_version(cluster) -> str:
    return serviceaccount.kube_version(cluster)


@pytest.fixture(scope="module")
def render(helm, kube_version):
    """`helm template` of the chart with --set values, as a list of objects."""

    def run(
        *values: str, release: str = "llm-operator", namespace: str = "llm-system", extra: tuple[str, ...] = ()
    ) -> list[dict]:
        args = ["template", release, str(CHART), f"--namespace={namespace}", f"--kube-version={kube_version}", *extra]
        for v in values:
            args += ["--set", v]
        return [d for d in yaml.safe_load_all(helm(*args).stdout) if d]

    return run

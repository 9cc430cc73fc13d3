"""hack/tools.sh fails with one clear sentence when it cannot build (issue 1)."""

from __future__ import annotations

import os
import shutil
import subprocess
from pathlib import Path

ROOT = Path(__file__).resolve().parents[3]


def run_tools(tmp_path: Path, **env) -> subprocess.CompletedProcess:
    base = {"HOME": str(tmp_path), "LLMOP_CACHE_DIR": str(tmp_path / "cache"), "PATH": os.environ["PATH"]}
    return subprocess.run(
        ["bash", str(ROOT / "hack" / "tools.sh")], env={**base, **env}, capture_output=True, text=True, timeout=120
    )


def test_missing_go_toolchain_is_named(tmp_path):
    go = shutil.which("go")
    assert go, "these tests need the Go toolchain on PATH to take it away"
    path = ":".join(d for d in os.environ["PATH"].split(":") if not (Path(d) / "go").exists())
    proc = run_tools(tmp_path, PATH=path)
    assert proc.returncode != 0
    assert "the Go toolchain is not installed" in proc.stderr


def test_unreachable_module_proxy_is_named(tmp_path):
    proc = run_tools(tmp_path, GOPROXY="http://127.0.0.1:9", GOFLAGS="")
    assert proc.returncode != 0
    assert "the Go module proxy http://127.0.0.1:9 cannot be reached" in proc.stderr


def test_binaries_the_user_already_has_are_used_instead_of_building(tmp_path):
    """LLMOP_BIN_DIR (ours) and KUBEBUILDER_ASSETS (envtest's) name directories of binaries."""
    mine, envtest = tmp_path / "mine", tmp_path / "envtest"
    for d, names in (
        (mine, ("kube-controller-manager", "kube-scheduler", "kwok", "helm", "statuscheck")),
        (envtest, ("etcd", "kube-apiserver", "kubectl")),
    ):
        d.mkdir()
        for name in names:
            (d / name).write_text("#!/bin/sh\n")
            (d / name).chmod(0o755)
    (mine / "lws-manager").write_text("#!/bin/sh\n")
    (mine / "lws-manager").chmod(0o755)
    for sub in ("crd", "webhook"):  # LWS's CRDs and webhook manifests, a directory
        (mine / "lws-manifests" / sub).mkdir(parents=True)
    # No Go on PATH: building anything would fail, so success means nothing was built.
    path = ":".join(p for p in os.environ["PATH"].split(":") if not (Path(p) / "go").exists())
    proc = run_tools(tmp_path, PATH=path, LLMOP_BIN_DIR=str(mine), KUBEBUILDER_ASSETS=str(envtest))
    assert proc.returncode == 0, proc.stderr
    links = Path(proc.stdout.strip())
    assert (links / "kwok").resolve() == mine / "kwok"
    assert (links / "kube-apiserver").resolve() == envtest / "kube-apiserver"
    assert (links / "etcd").resolve() == envtest / "etcd"
    assert (links / "lws-manager").resolve() == mine / "lws-manager"
    assert (links / "lws-manifests" / "crd").resolve() == mine / "lws-manifests" / "crd"

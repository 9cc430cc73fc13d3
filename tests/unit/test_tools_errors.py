"""hack/tools.sh fails with one clear sentence when it cannot build (issue 1)."""

from __future__ import annotations

import os
import shutil
import subprocess
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]


def run_tools(tmp_path: Path, **env) -> subprocess.CompletedProcess:
    base = {"HOME": str(tmp_path), "LLMOP_CACHE_DIR": str(tmp_path / "cache"), "PATH": os.environ["PATH"]}
    return subprocess.run(["bash", str(ROOT / "hack" / "tools.sh")], env={**base, **env},
                          capture_output=True, text=True, timeout=120)


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

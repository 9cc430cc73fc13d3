"""vLLM 0.33.0's own `vllm serve` parser (hack/vllm_parser, set up from PyPI by its ensure.sh,
without torch, once per vLLM version) against what the operator renders for vLLM and against our table of its flags:
the tier that plays for vLLM what hack/statuscheck plays for kstatus and Argo CD."""

from __future__ import annotations

import json
import os
import subprocess
import sys

import pytest

from support.paths import ROOT


@pytest.fixture(scope="module")
def parser_home() -> str:
    """Only the tests need vLLM's parser: set up here, not with the demo's tools."""
    proc = subprocess.run(
        ["bash", str(ROOT / "hack" / "vllm_parser" / "ensure.sh")], capture_output=True, text=True, timeout=900
    )
    assert proc.returncode == 0, proc.stderr
    return proc.stdout.strip()


def run(parser_home: str, *argv: str, stdin: str | None = None) -> subprocess.CompletedProcess:
    env = {**os.environ, "VLLM_PARSER_HOME": parser_home}
    return subprocess.run(
        [sys.executable, *argv], input=stdin, capture_output=True, text=True, env=env, cwd=ROOT, timeout=300
    )


def test_vllms_parser_takes_every_argv_the_operator_renders(parser_home):
    proc = run(parser_home, "hack/check_vllm_args.py")
    print(proc.stdout[-3000:])
    assert proc.returncode == 0, proc.stdout + proc.stderr
    assert proc.stdout.rstrip().endswith("vLLM 0.33.0's parser refused 0")


def test_vllms_parser_refuses_what_it_should_so_the_tier_can_fail(parser_home):
    argvs = [
        ["Qwen/Qwen3-8B", "--tensor-parallel-size", "2"],
        ["Qwen/Qwen3-8B", "--no-such-flag"],
        ["Qwen/Qwen3-8B", "--dtype", "float8"],
    ]
    proc = run(parser_home, "hack/vllm_parser/check_argv.py", stdin=json.dumps(argvs))
    results = [json.loads(line) for line in proc.stdout.splitlines()]
    assert proc.returncode == 1
    assert [r["ok"] for r in results] == [True, False, False]
    assert "unrecognized arguments: --no-such-flag" in results[1]["error"]
    assert "invalid choice: 'float8'" in results[2]["error"]


def test_our_table_of_vllms_flags_agrees_with_its_parser(parser_home):
    proc = run(parser_home, "hack/vllm_parser/check_table.py")
    assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-2000:]

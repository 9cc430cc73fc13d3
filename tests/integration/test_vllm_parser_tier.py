"""vLLM 0.33.0's own `vllm serve` parser (hack/vllm_parser, set up by hack/tools.sh from PyPI,
without torch) against what the operator renders for vLLM and against our table of its flags:
the tier that plays for vLLM what hack/statuscheck plays for kstatus and Argo CD."""

from __future__ import annotations

import json
import os
import subprocess
import sys

from conftest import ROOT


def run(cluster, *argv: str, stdin: str | None = None) -> subprocess.CompletedProcess:
    env = {**os.environ, "VLLM_PARSER_HOME": cluster.binary("vllm-parser")}
    return subprocess.run([sys.executable, *argv], input=stdin, capture_output=True, text=True, env=env,
                          cwd=ROOT, timeout=300)


def test_vllms_parser_takes_every_argv_the_operator_renders(cluster):
    proc = run(cluster, "hack/check_vllm_args.py")
    print(proc.stdout[-3000:])
    assert proc.returncode == 0, proc.stdout + proc.stderr
    assert proc.stdout.rstrip().endswith("vLLM 0.33.0's parser refused 0")


def test_vllms_parser_refuses_what_it_should_so_the_tier_can_fail(cluster):
    argvs = [["Qwen/Qwen3-8B", "--tensor-parallel-size", "2"], ["Qwen/Qwen3-8B", "--no-such-flag"],
             ["Qwen/Qwen3-8B", "--dtype", "float8"]]
    proc = run(cluster, "hack/vllm_parser/check_argv.py", stdin=json.dumps(argvs))
    results = [json.loads(line) for line in proc.stdout.splitlines()]
    assert proc.returncode == 1
    assert [r["ok"] for r in results] == [True, False, False]
    assert "unrecognized arguments: --no-such-flag" in results[1]["error"]
    assert "invalid choice: 'float8'" in results[2]["error"]


def test_our_table_of_vllms_flags_agrees_with_its_parser(cluster):
    proc = run(cluster, "hack/vllm_parser/check_table.py")
    assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-2000:]

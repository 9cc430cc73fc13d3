"""The three packages' import boundaries: llm_runtime runs with its own dependencies only,
llm_operator never imports llm_runtime, and llm_common is a leaf (standard library only).

Each check runs a fresh interpreter whose first meta-path finder refuses the forbidden
modules, as if they were not installed (the virtualenv has them all, and an editable
install would find llm_operator and llm_runtime however PYTHONPATH is set).
"""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[3]

# What the operator needs and the runtime image (TGI's, installed with --no-deps) lacks.
# huggingface_hub is the runtime's one third-party dependency; nvidia-ml-py is optional.
OPERATOR_ONLY = ("llm_operator", "kopf", "kubernetes", "pydantic", "prometheus_client", "yaml")

BLOCKER = """
import importlib, json, pkgutil, sys

class Refuse:
    def __init__(self, refused, allowed=None):
        self.refused, self.allowed = set(refused), allowed
    def find_spec(self, name, path=None, target=None):
        top = name.partition(".")[0]
        if top in self.refused or (self.allowed is not None and top not in self.allowed):
            raise ModuleNotFoundError(f"No module named {name!r} (refused by the test)", name=name)
        return None

refused, allowed = json.loads(sys.argv[1]), json.loads(sys.argv[2])
sys.meta_path.insert(0, Refuse(refused, None if allowed is None else set(allowed) | set(sys.stdlib_module_names)))

def import_all(package_name):
    package = importlib.import_module(package_name)
    for module in pkgutil.walk_packages(package.__path__, package_name + "."):
        importlib.import_module(module.name)
"""


def run_isolated(
    program: str, refused: tuple[str, ...], allowed: tuple[str, ...] | None = None, env: dict[str, str] | None = None
) -> subprocess.CompletedProcess:
    source_roots = ":".join(str(ROOT / root) for root in ("common", "operator", "runtime"))
    return subprocess.run(
        [sys.executable, "-c", BLOCKER + program, json.dumps(refused), json.dumps(allowed)],
        env={"PATH": "/usr/bin:/bin", "PYTHONPATH": source_roots, "HOME": "/nonexistent", **(env or {})},
        capture_output=True,
        text=True,
        timeout=120,
        cwd=ROOT,
    )


SERVE_ENV = {
    "LLM_MODEL_ID": "acme/tiny",
    "LLM_REVISION": "main",
    "LLM_NUM_SHARD": "1",
    "LLM_MAX_TOTAL_TOKENS": "2048",
    "LLM_ADAPTERS": "support=acme/support-lora@main",
}


def test_the_runtime_works_without_the_operator_or_its_dependencies():
    program = """
import_all("llm_common")
import_all("llm_runtime")
from llm_runtime.cli import main
status = main(["serve", "--dry-run"])
print("status", status)
"""
    # Without nvidia-ml-py (optional) the GPU check says "not checked" instead of asking NVML.
    proc = run_isolated(program, OPERATOR_ONLY + ("pynvml",), env=SERVE_ENV)
    assert proc.returncode == 0, proc.stderr
    lines = proc.stdout.splitlines()
    assert lines[-1] == "status 0", proc.stdout + proc.stderr
    assert lines[-2] == (
        "text-generation-launcher --model-id acme/tiny --revision main --num-shard 1 "
        "--max-total-tokens 2048 --lora-adapters acme/support-lora@main "
        "--hostname 0.0.0.0 --port 8080 --json-output"
    )


def test_the_operator_never_imports_the_runtime():
    proc = run_isolated('import_all("llm_operator")\nprint("imported")', ("llm_runtime",))
    assert proc.returncode == 0, proc.stderr
    assert proc.stdout == "imported\n"


def test_the_leaf_needs_the_standard_library_only():
    # huggingface_hub is imported inside the functions that classify Hub errors, never at import.
    proc = run_isolated(
        'import_all("llm_common")\nprint("imported")', ("llm_operator", "llm_runtime"), allowed=("llm_common",)
    )
    assert proc.returncode == 0, proc.stderr
    assert proc.stdout == "imported\n"


@pytest.mark.parametrize(
    "program, refused, allowed",
    [
        ("import yaml", OPERATOR_ONLY, None),
        ("import llm_runtime.download", ("llm_runtime",), None),
        ("import llm_common, json, huggingface_hub", (), ("llm_common",)),
    ],
)
def test_the_blocker_refuses(program, refused, allowed):
    # Proves the checks above can fail: the same interpreter set-up refuses these imports.
    proc = run_isolated(program, refused, allowed)
    assert proc.returncode == 1
    assert "refused by the test" in proc.stderr

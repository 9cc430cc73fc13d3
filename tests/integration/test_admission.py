"""The apiserver refuses bad LLMDeployments at `kubectl apply`, naming the field (issue 2)."""

from __future__ import annotations

import json
import subprocess
import sys

import pytest

from llm_operator import api
from support.manifests import invalid_cases, manifest_for

CASES = invalid_cases()


def test_there_are_at_least_25_cases():
    assert len(CASES) >= 25


@pytest.mark.usefixtures("crd_installed")
def test_every_invalid_manifest_is_rejected_naming_its_field(kubectl):
    failures = []
    for case in CASES:
        proc = kubectl.run("apply", "-f", "-", input=json.dumps(manifest_for(case)), check=False)
        if proc.returncode == 0:
            failures.append(f"{case['case']}: accepted")
        elif case["field"] not in proc.stderr:
            failures.append(f"{case['case']}: message does not name {case['field']}: {proc.stderr.strip()}")
    assert kubectl.items("llmdeployments") == []
    assert not failures, "\n".join(failures)


# What TGI 3.3.7's launcher would crash on, refused at apply with the field and what to do instead.
CRASHES = [
    ({"engine": {"args": ["--port", "9000"]}}, "spec.engine.args", "must not give --hostname, --port or --json-output"),
    (
        {"gpus": 2, "engine": {"args": ["--num-shard", "2"]}},
        "spec.engine.args",
        "the operator sets them from spec.gpus",
    ),
    (
        {"limits": {"maxInputTokens": 4096}, "engine": {"args": ["--max-input-length", "2048"]}},
        "spec.engine.args",
        "the operator sets them from spec.limits.maxInputTokens",
    ),
    (
        {"engine": {"args": ["--max-model-len", "4096"]}},
        "spec.engine.args",
        "a flag TGI 3.3.7's launcher does not have; engine.args may use --validation-workers",
    ),
    (
        {"engine": {"args": ["--cuda-graphs", "1", "--cuda-graphs", "2"]}},
        "spec.engine.args",
        "must give each flag once",
    ),
    (
        {"gpus": 1, "engine": {"env": [{"name": "SHARDED", "value": "true"}]}},
        "spec.engine.env",
        "must not set TGI's launcher variables",
    ),
    (
        {"engine": {"env": [{"name": "QUANTIZE", "value": "int8"}]}},
        "spec.engine.env",
        "must not set TGI's launcher variables",
    ),
    (
        {"engine": {"env": [{"name": "MAX_INPUT_LENGTH", "value": "2048"}]}},
        "spec.engine.env",
        "set the spec field that owns the setting, or give the flag in engine.args",
    ),
]


@pytest.mark.usefixtures("crd_installed")
def test_what_tgi_would_crash_on_is_refused_at_apply_saying_what_to_do(kubectl):
    failures = []
    for spec, field, message in CRASHES:
        manifest = {
            "apiVersion": "llm-operator.io/v1alpha1",
            "kind": "LLMDeployment",
            "metadata": {"name": "crash"},
            "spec": {"model": {"id": "org/m"}, **spec},
        }
        proc = kubectl.run("apply", "-f", "-", input=json.dumps(manifest), check=False)
        if proc.returncode == 0 or field not in proc.stderr or message not in proc.stderr:
            failures.append(f"{spec}: {proc.returncode} {proc.stderr.strip()}")
    # The nearest good ones: flags nobody owns, each once; variables the launcher does not read; either alone.
    for engine in (
        {
            "args": ["--cuda-graphs", "1,2", "--otlp-service-name", "my model"],
            "env": [{"name": "LOG_LEVEL", "value": "debug"}],
        },
        {"args": ["--cors-allow-origin", "a", "--cors-allow-origin", "b"]},
        {"env": [{"name": "NCCL_DEBUG", "value": "INFO"}]},
        {"image": "ghcr.io/huggingface/text-generation-inference:3.3.7"},
    ):
        good = {
            "apiVersion": "llm-operator.io/v1alpha1",
            "kind": "LLMDeployment",
            "metadata": {"name": "fine"},
            "spec": {"model": {"id": "org/m"}, "engine": engine},
        }
        proc = kubectl.run("apply", "--dry-run=server", "-f", "-", input=json.dumps(good), check=False)
        if proc.returncode != 0:
            failures.append(f"{engine}: refused: {proc.stderr.strip()}")
    assert not failures, "\n".join(failures)


@pytest.mark.usefixtures("crd_installed")
@pytest.mark.parametrize("name", ["a" * 64, "9-lives", "trailing-"], ids=["64-characters", "digit-first", "dash-last"])
def test_a_bad_name_is_refused_naming_metadata_name_as_render_does(kubectl, name, tmp_path):
    """The apiserver's refusal names the field and says what is valid (not `<nil>: Invalid
    value`), and `llm-operator render` says the same words."""
    manifest = json.dumps(
        {
            "apiVersion": "llm-operator.io/v1alpha1",
            "kind": "LLMDeployment",
            "metadata": {"name": name},
            "spec": {"model": {"id": "org/m"}},
        }
    )
    proc = kubectl.run("apply", "-f", "-", input=manifest, check=False)
    print(f"\nkubectl: {proc.stderr.strip()}")
    assert proc.returncode != 0
    assert "<nil>" not in proc.stderr
    refusal = f'metadata.name: Invalid value: "{name}": must be at most 63 characters of lower-case letters'
    assert refusal in proc.stderr, proc.stderr
    path = tmp_path / "bad.json"
    path.write_text(manifest)
    render = subprocess.run(
        [sys.executable, "-m", "llm_operator.cli", "render", "-f", str(path)],
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert render.returncode == 2, render
    assert refusal in render.stderr and api.NAME_RULE.message in render.stderr and api.NAME_RULE.message in proc.stderr

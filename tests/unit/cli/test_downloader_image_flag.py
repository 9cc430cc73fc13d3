"""`llm-operator run --downloader-image` reaches the operator's settings, and `render` with the
same flag prints the download Job the operator would make."""

from __future__ import annotations

import datetime as dt

from llm_operator import api
from llm_operator.cli import main as cli
from llm_operator.cli.render import render_one

MIRROR = "registry.example.com/ml/llm-operator:1.2"
NOW = dt.datetime(2026, 1, 1, tzinfo=dt.UTC)
MANIFEST = {
    "apiVersion": "llm-operator.io/v1alpha1",
    "kind": "LLMDeployment",
    "metadata": {"name": "m", "namespace": "ns"},
    "spec": {"model": {"id": "org/m"}, "gpus": 1, "cache": {"enabled": True, "size": "10Gi"}},
}


def test_run_downloader_image_reaches_the_settings():
    args = cli.parser().parse_args(["run", "-A", f"--downloader-image={MIRROR}"])
    assert cli.run_settings(args, []).downloader_image == MIRROR
    default = cli.parser().parse_args(["run", "-A"])
    assert cli.run_settings(default, []).downloader_image == ""


def test_run_downloader_image_defaults_to_its_environment_variable(monkeypatch):
    monkeypatch.setenv("LLM_OPERATOR_DOWNLOADER_IMAGE", MIRROR)
    assert cli.parser().parse_args(["run", "-A"]).downloader_image == MIRROR
    assert cli.parser().parse_args(["run", "-A", "--downloader-image=x/y:1"]).downloader_image == "x/y:1"


def job_image(*flags: str, manifest: dict = MANIFEST) -> str:
    args = cli.parser().parse_args(["render", "-f", "-", *flags])
    decision, _ = render_one(manifest, args, NOW)
    (job,) = [c for c in decision.desired if c["kind"] == "Job"]
    image: str = job["spec"]["template"]["spec"]["containers"][0]["image"]
    return image


def test_render_downloader_image_is_the_jobs_image_unless_the_spec_names_one():
    assert job_image(f"--downloader-image={MIRROR}") == MIRROR
    assert job_image() == api.DEFAULT_DOWNLOADER_IMAGE
    spec = {**MANIFEST["spec"], "cache": {**MANIFEST["spec"]["cache"], "downloaderImage": "team.example.com/dl:3"}}
    assert job_image(f"--downloader-image={MIRROR}", manifest={**MANIFEST, "spec": spec}) == "team.example.com/dl:3"

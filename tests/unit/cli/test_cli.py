"""`llm-operator render` and `crd` need no cluster; the operator never touches Secrets."""

from __future__ import annotations

import re
import subprocess
import sys
from pathlib import Path

import yaml

from llm_operator.kube.kinds import KINDS

ROOT = Path(__file__).resolve().parents[3]


def llm_operator(*args: str, input: str | None = None) -> subprocess.CompletedProcess:
    return subprocess.run(
        [sys.executable, "-m", "llm_operator.cli", *args], input=input, capture_output=True, text=True, timeout=60
    )


def test_render_prints_the_children_of_each_example():
    proc = llm_operator("render", "-f", str(ROOT / "examples" / "llama-3.3-70b-h100.yaml"), "--namespace", "models")
    assert proc.returncode == 0, proc.stderr
    docs = list(yaml.safe_load_all(proc.stdout))
    assert [(d["kind"], d["metadata"]["name"], d["metadata"]["namespace"]) for d in docs] == [
        ("Service", "llama-3-3-70b", "models"),
        ("Deployment", "llama-3-3-70b", "models"),
        ("PodDisruptionBudget", "llama-3-3-70b", "models"),
    ]
    container = docs[1]["spec"]["template"]["spec"]["containers"][0]
    assert container["args"][:6] == [
        "--model-id",
        "meta-llama/Llama-3.3-70B-Instruct",
        "--revision",
        "6f6073b423013f6a7d4d9f39144961bfbfbc386b",
        "--num-shard",
        "2",
    ]
    assert container["resources"]["limits"]["nvidia.com/gpu"] == "2"
    # Offline, the plan comes from the catalog, as in the operator.
    assert "source: catalog" in proc.stdout and "unknown offline" not in proc.stdout


def test_render_offline_plans_a_catalog_model_as_the_operator_would():
    """Without --gpu the nodes are unknown; with it the planner picks gpus from the catalog's facts."""
    proc = llm_operator("render", "-f", str(ROOT / "examples" / "mistral-7b.yaml"), "--gpu", "l4")
    assert proc.returncode == 0, proc.stderr
    deployment = [d for d in yaml.safe_load_all(proc.stdout) if d["kind"] == "Deployment"][0]
    assert deployment["spec"]["template"]["spec"]["containers"][0]["resources"]["limits"]["nvidia.com/gpu"] == "1"
    assert "Model facts from the catalog (revision e0bc86c)." in proc.stdout


def test_render_with_the_hub_unreachable_names_the_flags_that_give_the_facts(monkeypatch):
    import socket

    with socket.socket() as probe:  # bound, then released: nothing listens there
        probe.bind(("127.0.0.1", 0))
        endpoint = f"http://127.0.0.1:{probe.getsockname()[1]}"
    monkeypatch.setenv("HF_ENDPOINT", endpoint)
    unknown = "apiVersion: llm-operator.io/v1alpha1\nkind: LLMDeployment\nmetadata: {name: m}\nspec: {model: {id: acme/unknown-7b}, gpus: 1}\n"
    proc = llm_operator("render", "-f", "-", "--hub", input=unknown)
    assert proc.returncode == 0, proc.stderr
    assert (
        "# unknown offline: The plan is unknown: Could not reach the Hugging Face Hub at "
        f"{endpoint} to read acme/unknown-7b@main: check network access or HF_ENDPOINT. Or give the model's "
        "config.json and exact parameter count (--config and --params). Going on with 1 GPU per replica.\n"
    ) in proc.stdout


def test_render_refuses_a_bad_manifest_naming_the_field():
    bad = "apiVersion: llm-operator.io/v1alpha1\nkind: LLMDeployment\nmetadata: {name: x}\nspec: {model: {id: o/m}, gpus: 0}\n"
    proc = llm_operator("render", "-f", "-", input=bad)
    assert proc.returncode == 2
    assert "x: spec.gpus: Input should be greater than or equal to 1" in proc.stderr


def test_the_operator_never_reads_secrets():
    """Tokens reach pods by secretKeyRef; no code path of the operator asks for a Secret."""
    assert "Secret" not in KINDS
    files = sorted((ROOT / "operator" / "llm_operator").rglob("*.py"))
    assert len(files) > 30, files
    source = "\n".join(p.read_text() for p in files)
    assert not re.search(r"""["'](secrets|Secret)["']""", source)
    assert "read_namespaced_secret" not in source and "/secrets" not in source


def test_render_with_another_engine_renders_what_the_operator_would_run_for_it():
    proc = llm_operator("render", "-f", str(ROOT / "examples" / "mistral-7b.yaml"), "--gpu", "l4", "--engine", "vllm")
    assert proc.returncode == 0, proc.stderr
    deployment = [d for d in yaml.safe_load_all(proc.stdout) if d["kind"] == "Deployment"][0]
    container = deployment["spec"]["template"]["spec"]["containers"][0]
    assert (container["image"], container["command"]) == ("vllm/vllm-openai:v0.33.0", ["vllm", "serve"])
    assert container["args"][:5] == [
        "mistralai/Mistral-7B-Instruct-v0.3",
        "--revision",
        "e0bc86c23ce5aae1db576c8cca6f06f1f73af2db",
        "--tensor-parallel-size",
        "1",
    ]
    assert "to vLLM (0.92 of the GPU" in proc.stdout

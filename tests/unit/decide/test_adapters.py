"""LoRA adapters: launcher flags, memory in the plan, base-model checks, and a base model with
two adapters downloaded, verified and served offline from the Hub stand-in."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest

from llm_operator import api
from llm_operator.decide import adapters as lora
from llm_operator.facts.hub import facts_from_local
from llm_operator.planning.planner import PlanRequest, plan
from llm_runtime.launcher import LauncherSettings, launcher_args
from support.hub import HubServer

MODELS = Path(__file__).resolve().parents[2] / "data" / "models"
MISTRAL = facts_from_local(MODELS / "mistral-7b" / "config.json", 7241732096, model_id="mistralai/Mistral-7B-v0.1")
# As PEFT writes adapter_config.json for a QLoRA fine-tune of Mistral 7B.
PEFT_CONFIG = {
    "alpha_pattern": {},
    "auto_mapping": None,
    "base_model_name_or_path": "mistralai/Mistral-7B-v0.1",
    "bias": "none",
    "fan_in_fan_out": False,
    "inference_mode": True,
    "init_lora_weights": True,
    "layers_pattern": None,
    "layers_to_transform": None,
    "lora_alpha": 16,
    "lora_dropout": 0.1,
    "modules_to_save": None,
    "peft_type": "LORA",
    "r": 64,
    "rank_pattern": {},
    "revision": None,
    "target_modules": ["q_proj", "k_proj", "v_proj", "o_proj", "gate_proj", "up_proj", "down_proj"],
    "task_type": "CAUSAL_LM",
}


def adapter(name="support", id="acme/support-lora", revision="main") -> api.Adapter:
    return api.Adapter(name=name, id=id, revision=revision)


@pytest.mark.parametrize(
    "entries,flag",
    [
        ((), None),
        (("acme/a@main",), "acme/a@main"),
        (
            ("a=/data/hub/models--acme--a/snapshots/c1", "acme/b@v2"),
            "a=/data/hub/models--acme--a/snapshots/c1,acme/b@v2",
        ),
    ],
)
def test_launcher_flags_for_zero_one_and_several_adapters(entries, flag):
    args = launcher_args(LauncherSettings(model_id="org/m", lora_adapters=entries))
    assert (args[args.index("--lora-adapters") + 1] if "--lora-adapters" in args else None) == flag


def test_entries_cached_by_path_and_uncached_by_id_at_revision_mismatches_left_out():
    checks = [
        lora.check_adapter(adapter("a", "acme/a"), PEFT_CONFIG, "mistralai/Mistral-7B-v0.1", MISTRAL),
        lora.check_adapter(adapter("b", "acme/b", "v2"), PEFT_CONFIG, "mistralai/Mistral-7B-v0.1", MISTRAL),
        lora.check_adapter(
            adapter("c", "acme/c"),
            {**PEFT_CONFIG, "base_model_name_or_path": "meta-llama/Llama-2-7b-hf"},
            "mistralai/Mistral-7B-v0.1",
            MISTRAL,
        ),
    ]
    assert lora.lora_entries(checks, {"a": "c1"}) == ("a=/data/hub/models--acme--a/snapshots/c1", "acme/b@v2")
    assert lora.lora_entries(checks, None) == ("acme/a@main", "acme/b@v2")


def test_adapter_memory_is_rank_times_features_modules_layers_and_dtype():
    # Mistral 7B: hidden 4096, 32 heads x 128, 8 kv heads x 128, intermediate 14336, 32 layers, bf16.
    per_layer = (4096 + 4096) + (4096 + 1024) * 2 + (4096 + 4096) + (4096 + 14336) * 3
    assert lora.adapter_memory_bytes(MISTRAL, PEFT_CONFIG) == 64 * per_layer * 32 * 2 == 335544320
    assert (
        lora.adapter_memory_bytes(MISTRAL, {"r": 8, "target_modules": ["q_proj", "v_proj"]})
        == 8 * (8192 + 5120) * 32 * 2
    )


def test_adapter_memory_goes_into_the_plan():
    without = plan(PlanRequest(facts=MISTRAL, gpu_type="l4", gpus=1))
    with_adapters = plan(PlanRequest(facts=MISTRAL, gpu_type="l4", gpus=1, adapter_bytes=4 * 335544320))
    assert round(with_adapters.overhead_gib_per_gpu - without.overhead_gib_per_gpu, 2) == 1.25


def test_base_model_mismatch_is_detected_and_names_both():
    check = lora.check_adapter(
        adapter(),
        {**PEFT_CONFIG, "base_model_name_or_path": "meta-llama/Llama-2-7b-hf"},
        "mistralai/Mistral-7B-v0.1",
        MISTRAL,
    )
    assert check.problem == (
        "adapter support (acme/support-lora) was trained on meta-llama/Llama-2-7b-hf, "
        "not on mistralai/Mistral-7B-v0.1: it is not served."
    )
    assert lora.base_model_matches(PEFT_CONFIG, "mistralai/Mistral-7B-v0.1")
    assert lora.base_model_matches(PEFT_CONFIG, "some-mirror/mistral-7b-v0.1")
    assert not lora.base_model_matches(PEFT_CONFIG, "mistralai/Mistral-7B-Instruct-v0.2")


def test_adapter_names_are_unique_and_url_safe():
    with pytest.raises(api.InvalidSpec, match="spec.adapters: adapters: names must be unique"):
        api.parse_spec({"model": {"id": "o/m"}, "adapters": [{"name": "a", "id": "o/x"}, {"name": "a", "id": "o/y"}]})
    with pytest.raises(api.InvalidSpec, match=r"spec.adapters.0.name"):
        api.parse_spec({"model": {"id": "o/m"}, "adapters": [{"name": "Has Space", "id": "o/x"}]})


def test_a_base_model_and_two_adapters_downloaded_verified_and_served_offline(tmp_path):
    """What the download Job and then the serving container do, against the Hub stand-in."""

    def tensors():
        header = json.dumps({"w": {"dtype": "BF16", "shape": [4, 4], "data_offsets": [0, 32]}}).encode()
        return len(header).to_bytes(8, "little") + header + bytes(32)

    config = json.loads((MODELS / "mistral-7b" / "config.json").read_text())
    hub = HubServer(
        {
            "acme/base": {
                "config.json": json.dumps(config).encode(),
                "model.safetensors": tensors(),
                "tokenizer.json": b"{}",
            },
            "acme/support-lora": {
                "adapter_config.json": json.dumps(PEFT_CONFIG).encode(),
                "adapter_model.safetensors": tensors(),
            },
            "acme/sql-lora": {
                "adapter_config.json": json.dumps(PEFT_CONFIG).encode(),
                "adapter_model.safetensors": tensors(),
            },
        }
    )
    cache = tmp_path / "data"
    termination = tmp_path / "termination-log"
    env = {
        "PATH": str(Path(sys.executable).parent) + ":/usr/bin:/bin",
        "HOME": str(tmp_path),
        "MODEL_ID": "acme/base",
        "REVISION": "main",
        "CACHE_DIR": str(cache),
        "HF_ENDPOINT": hub.endpoint,
        "ADAPTERS": "support=acme/support-lora@main,sql=acme/sql-lora@main",
        "TERMINATION_MESSAGE_PATH": str(termination),
    }
    try:
        download = subprocess.run(["llm-runtime", "download"], env=env, capture_output=True, text=True, timeout=120)
        assert download.returncode == 0, download.stderr + download.stdout
        reported = json.loads(termination.read_text())
        commits = reported["adapters"]
        assert set(commits) == {"support", "sql"} and reported["numLayers"] == 32
        serve_env = {
            "PATH": env["PATH"],
            "HOME": str(tmp_path),
            "LLM_MODEL_ID": "acme/base",
            "LLM_NUM_SHARD": "1",
            "LLM_CACHE_DIR": str(cache),
            "LLM_ADAPTERS": env["ADAPTERS"],
        }
        served = subprocess.run(
            ["llm-runtime", "serve", "--dry-run", "--skip-checks"],
            env=serve_env,
            capture_output=True,
            text=True,
            timeout=60,
        )
    finally:
        hub.close()
    assert served.returncode == 0, served.stderr
    snap = lambda repo: cache / "hub" / f"models--acme--{repo}" / "snapshots" / commits[repo.split("-")[0]]  # noqa: E731
    assert "export HF_HUB_OFFLINE=1" in served.stdout
    assert (f"--lora-adapters support={snap('support-lora')},sql={snap('sql-lora')}") in served.stdout
    assert (
        served.stdout.rstrip()
        .splitlines()[-1]
        .startswith("text-generation-launcher --model-id acme/base --revision main")
    )

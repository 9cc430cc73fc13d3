"""launcher.py: settings -> text-generation-launcher argv, and the LLM_* environment both ways."""

from __future__ import annotations

import itertools

import pydantic
import pytest

from llm_operator import api
from llm_runtime.launcher import (
    AdapterRef,
    LauncherSettings,
    SettingsError,
    adapter_entry,
    launcher_args,
    launcher_env,
    parse_adapters,
    serving_env,
    settings_from_env,
)


def api_allows(quantization: str, dtype: str) -> bool:
    """Ask the API itself (its pydantic rule mirrors the CRD's CEL rule)."""
    try:
        api.LLMDeploymentSpec.model_validate(
            {"model": {"id": "org/model"}, "quantization": quantization, "dtype": dtype}
        )
    except pydantic.ValidationError:
        return False
    return True


ALL_PAIRS = [(q.value, d.value) for q in api.Quantization for d in api.DType]
ALLOWED = [pair for pair in ALL_PAIRS if api_allows(*pair)]

LIMITS = {  # field: (flag, a value the API accepts)
    "max_input_tokens": ("--max-input-tokens", 4096),
    "max_total_tokens": ("--max-total-tokens", 8192),
    "max_batch_prefill_tokens": ("--max-batch-prefill-tokens", 16384),
    "max_concurrent_requests": ("--max-concurrent-requests", 64),
}
LIMIT_SUBSETS = [combo for n in range(len(LIMITS) + 1) for combo in itertools.combinations(LIMITS, n)]


def test_the_api_allows_nineteen_quantization_dtype_pairs():
    # auto with all 11 quantizations, float16 and bfloat16 with none and the three bitsandbytes.
    assert len(ALL_PAIRS) == 33
    assert len(ALLOWED) == 19
    assert sorted(q for q, d in ALLOWED if d == "float16") == [
        "bitsandbytes",
        "bitsandbytes-fp4",
        "bitsandbytes-nf4",
        "none",
    ]
    assert len(LIMIT_SUBSETS) == 16


@pytest.mark.parametrize("limits", LIMIT_SUBSETS, ids=lambda c: "+".join(c) or "no-limits")
@pytest.mark.parametrize("quantization,dtype", ALLOWED, ids=lambda v: v)
def test_each_flag_appears_exactly_when_set(quantization, dtype, limits):
    settings = LauncherSettings(
        model_id="org/model",
        revision="abc123",
        num_shard=2,
        quantize=quantization,
        dtype=dtype,
        **{name: LIMITS[name][1] for name in limits},
    )
    args = launcher_args(settings)

    expected = ["--model-id", "org/model", "--revision", "abc123", "--num-shard", "2"]
    if quantization != "none":
        expected += ["--quantize", quantization]
    if dtype != "auto":
        expected += ["--dtype", dtype]
    for name in LIMITS:  # in launcher_args' fixed order, whatever order the subset has
        if name in limits:
            expected += [LIMITS[name][0], str(LIMITS[name][1])]
    expected += ["--hostname", "0.0.0.0", "--port", "8080", "--json-output"]
    assert args == expected
    # Never both --quantize and --dtype unless TGI takes them together (tgi.md).
    if "--quantize" in args and "--dtype" in args:
        assert quantization.startswith("bitsandbytes")
    assert "--trust-remote-code" not in args and "--lora-adapters" not in args


def test_a_full_command_line_as_a_tgi_user_writes_it():
    settings = LauncherSettings(
        model_id="mistralai/Mistral-7B-Instruct-v0.2",
        revision="main",
        num_shard=2,
        quantize="bitsandbytes-nf4",
        dtype="bfloat16",
        trust_remote_code=True,
        max_input_tokens=4096,
        max_total_tokens=8192,
        extra_args=("--cuda-graphs", "1,2,4"),
        lora_adapters=("support=/data/hub/x/snapshots/abc", "acme/other"),
    )
    assert launcher_args(settings) == [
        "--model-id",
        "mistralai/Mistral-7B-Instruct-v0.2",
        "--revision",
        "main",
        "--num-shard",
        "2",
        "--quantize",
        "bitsandbytes-nf4",
        "--dtype",
        "bfloat16",
        "--trust-remote-code",
        "--max-input-tokens",
        "4096",
        "--max-total-tokens",
        "8192",
        "--lora-adapters",
        "support=/data/hub/x/snapshots/abc,acme/other",
        "--hostname",
        "0.0.0.0",
        "--port",
        "8080",
        "--json-output",
        "--cuda-graphs",
        "1,2,4",
    ]


def test_launcher_env_online_and_offline():
    settings = LauncherSettings(model_id="org/model")
    assert launcher_env(settings) == {"HF_HOME": "/data", "USAGE_STATS": "off"}
    assert launcher_env(settings, offline=True) == {"HF_HOME": "/data", "USAGE_STATS": "off", "HF_HUB_OFFLINE": "1"}


@pytest.mark.parametrize("limits", LIMIT_SUBSETS, ids=lambda c: "+".join(c) or "no-limits")
@pytest.mark.parametrize("quantization,dtype", ALLOWED, ids=lambda v: v)
def test_serving_env_round_trips(quantization, dtype, limits):
    settings = LauncherSettings(
        model_id="org/model",
        revision="v1",
        num_shard=4,
        quantize=None if quantization == "none" else quantization,
        dtype=None if dtype == "auto" else dtype,
        **{name: LIMITS[name][1] for name in limits},
    )
    assert settings_from_env(serving_env(settings)) == settings


def test_serving_env_as_the_operator_writes_it():
    settings = LauncherSettings(
        model_id="org/model",
        revision="v1",
        num_shard=2,
        quantize="awq",
        dtype="auto",
        trust_remote_code=True,
        max_total_tokens=8192,
        extra_args=("--cuda-graphs", "1"),
    )
    adapters = (AdapterRef("support", "acme/support-lora", "v2"),)
    assert serving_env(settings, cache_dir="/data", adapters=adapters) == {
        "LLM_MODEL_ID": "org/model",
        "LLM_REVISION": "v1",
        "LLM_NUM_SHARD": "2",
        "LLM_QUANTIZE": "awq",
        "LLM_TRUST_REMOTE_CODE": "true",
        "LLM_MAX_TOTAL_TOKENS": "8192",
        "LLM_EXTRA_ARGS": '["--cuda-graphs", "1"]',
        "LLM_CACHE_DIR": "/data",
        "LLM_ADAPTERS": "support=acme/support-lora@v2",
    }


def test_settings_from_env_defaults():
    assert settings_from_env({"LLM_MODEL_ID": "org/model"}) == LauncherSettings(model_id="org/model")


def test_settings_from_env_with_adapters_by_path_or_id():
    env = {"LLM_MODEL_ID": "org/model", "LLM_ADAPTERS": "support=acme/support-lora@v2, sql=acme/sql-lora"}
    settings = settings_from_env(env, adapter_dirs={"support": "/data/hub/models--acme--support-lora/snapshots/c0ffee"})
    assert settings.lora_adapters == (
        "support=/data/hub/models--acme--support-lora/snapshots/c0ffee",
        "acme/sql-lora@main",
    )


@pytest.mark.parametrize(
    "env,message",
    [
        ({}, "LLM_MODEL_ID is not set: the serving container needs the model's Hub id"),
        ({"LLM_MODEL_ID": "m", "LLM_NUM_SHARD": "two"}, "LLM_NUM_SHARD='two' is not a whole number"),
        (
            {"LLM_MODEL_ID": "m", "LLM_TRUST_REMOTE_CODE": "maybe"},
            "LLM_TRUST_REMOTE_CODE='maybe' is neither true nor false",
        ),
        (
            {"LLM_MODEL_ID": "m", "LLM_EXTRA_ARGS": "--cuda-graphs 1"},
            'LLM_EXTRA_ARGS must be a JSON list of strings, like ["--cuda-graphs", "1,2,4"]',
        ),
        (
            {"LLM_MODEL_ID": "m", "LLM_EXTRA_ARGS": "[1, 2]"},
            'LLM_EXTRA_ARGS must be a JSON list of strings, like ["--cuda-graphs", "1,2,4"]',
        ),
        (
            {"LLM_MODEL_ID": "m", "LLM_ADAPTERS": "acme/lora"},
            "adapter 'acme/lora' is not of the form name=org/repo@revision",
        ),
    ],
)
def test_bad_settings_name_the_variable(env, message):
    with pytest.raises(SettingsError) as raised:
        settings_from_env(env)
    assert str(raised.value) == message


def test_parse_adapters():
    assert parse_adapters("") == ()
    assert parse_adapters("a=org/x@v1,b=org/y") == (AdapterRef("a", "org/x", "v1"), AdapterRef("b", "org/y", "main"))
    assert str(AdapterRef("a", "org/x", "v1")) == "a=org/x@v1"


def test_adapter_entry():
    assert (
        adapter_entry(AdapterRef("a", "org/x", "v1"), "/data/hub/models--org--x/snapshots/c1")
        == "a=/data/hub/models--org--x/snapshots/c1"
    )
    assert adapter_entry(AdapterRef("a", "org/x", "v1"), None) == "org/x@v1"

"""TGI 3.3.7's launcher table and rules (llm_common/data): each rule refuses its bad case and
accepts the nearest good one; the argv builder emits only flags of the table, and every
flag it emits is marked as owned."""

from __future__ import annotations

import tomllib

import pytest

from llm_common import tgi_rules
from llm_common.tgi import LauncherSettings, launcher_args, settings_problems
from llm_common.tgi_rules import TABLE, Checkpoint, argv_problems, parse
from support.paths import ROOT

BASE = ["--model-id", "org/m", "--num-shard", "1"]
AWQ = Checkpoint(quantization="awq", context=32768)
CONTEXT_4K = Checkpoint(context=4096)

# rule id -> (argv that breaks it, the nearest argv that does not, the checkpoint both run with)
RULE_CASES = {
    "num-shard-at-least-one": (["--num-shard", "0"], ["--num-shard", "1"], None),
    "sharded-needs-two-shards": (
        ["--sharded", "true", "--num-shard", "1"],
        ["--sharded", "true", "--num-shard", "2"],
        None,
    ),
    "exl2-cannot-shard": (["--quantize", "exl2", "--num-shard", "2"], ["--quantize", "exl2", "--num-shard", "1"], None),
    "input-tokens-given-once": (
        ["--max-input-tokens", "10", "--max-input-length", "10"],
        ["--max-input-tokens", "10"],
        None,
    ),
    "input-below-total": (
        ["--max-input-tokens", "4096", "--max-total-tokens", "4096"],
        ["--max-input-tokens", "4095", "--max-total-tokens", "4096"],
        None,
    ),
    "total-within-batch-total": (
        ["--max-total-tokens", "8192", "--max-batch-total-tokens", "4096"],
        ["--max-total-tokens", "8192", "--max-batch-total-tokens", "8192"],
        None,
    ),
    "prefill-within-batch-total": (
        ["--max-batch-prefill-tokens", "8192", "--max-batch-total-tokens", "4096"],
        ["--max-batch-prefill-tokens", "4096", "--max-batch-total-tokens", "4096"],
        None,
    ),
    "input-within-prefill": (
        ["--max-input-tokens", "4096", "--max-batch-prefill-tokens", "2048"],
        ["--max-input-tokens", "2048", "--max-batch-prefill-tokens", "2048"],
        None,
    ),
    "dtype-only-with-bitsandbytes": (
        ["--quantize", "awq", "--dtype", "float16"],
        ["--quantize", "bitsandbytes-nf4", "--dtype", "float16"],
        None,
    ),
    "validation-workers-positive": (["--validation-workers", "0"], ["--validation-workers", "1"], None),
    "max-batch-size-positive": (["--max-batch-size", "0"], ["--max-batch-size", "1"], None),
    "ngrok-needs-authtoken": (
        ["--ngrok", "--ngrok-edge", "e"],
        ["--ngrok", "--ngrok-edge", "e", "--ngrok-authtoken", "t"],
        None,
    ),
    "ngrok-needs-edge": (
        ["--ngrok", "--ngrok-authtoken", "t"],
        ["--ngrok", "--ngrok-authtoken", "t", "--ngrok-edge", "e"],
        None,
    ),
}


def test_the_table_says_where_it_comes_from():
    assert TABLE.source["tag"] == "v3.3.7"
    assert TABLE.source["commit"] == "dfb3fbe78e0d1d69251bd33065591c61bafdfaa8"
    assert "launcher/src/main.rs" in TABLE.source["flags_from"]
    assert all("/" in r.source and r.message for r in TABLE.rules)


def test_the_table_is_installed_as_package_data():
    pyproject = tomllib.loads((ROOT / "pyproject.toml").read_text())
    assert "data/*.json" in pyproject["tool"]["setuptools"]["package-data"]["llm_common"]


def test_every_rule_has_a_case_here():
    assert sorted(RULE_CASES) == sorted(r.id for r in TABLE.rules)


@pytest.mark.parametrize("rule_id", sorted(RULE_CASES))
def test_each_rule_refuses_its_bad_case_and_accepts_the_nearest_good_one(rule_id):
    bad, good, checkpoint = RULE_CASES[rule_id]
    rule = next(r for r in TABLE.rules if r.id == rule_id)
    refused = argv_problems([*BASE[:2], *bad] if "--num-shard" in bad else [*BASE, *bad], checkpoint)
    assert len(refused) == 1, refused
    assert f"--{rule.flag}" in refused[0]
    assert argv_problems([*BASE[:2], *good] if "--num-shard" in good else [*BASE, *good], checkpoint) == []


def test_the_checkpoints_quantization_refuses_a_dtype():
    assert argv_problems([*BASE, "--dtype", "float16"], AWQ) == [
        "--dtype cannot be set: the checkpoint is awq-quantized (quantization_config in its config.json), and TGI "
        "refuses a dtype with awq; leave --dtype unset (auto)."
    ]
    assert argv_problems(BASE, AWQ) == []
    # An explicit --quantize wins over the checkpoint's, as in the launcher (args.quantize.or(config)).
    assert argv_problems([*BASE, "--quantize", "bitsandbytes", "--dtype", "float16"], AWQ) == []


def test_an_exl2_checkpoint_cannot_shard():
    exl2 = Checkpoint(quantization="exl2")
    assert argv_problems(["--model-id", "m", "--num-shard", "2"], exl2) == [
        "The checkpoint is exl2-quantized (quantization_config in its config.json), which TGI cannot shard: "
        "--num-shard must be 1, not 2."
    ]
    assert argv_problems(["--model-id", "m", "--num-shard", "1"], exl2) == []


def test_input_tokens_alone_must_stay_below_the_models_context():
    assert argv_problems([*BASE, "--max-input-tokens", "4096"], CONTEXT_4K) == [
        "--max-input-tokens (4096) must be less than the model's context of 4096 tokens, which TGI takes as the "
        "total when --max-total-tokens is unset: set --max-input-tokens to at most 4095, or set --max-total-tokens above it."
    ]
    assert argv_problems([*BASE, "--max-input-tokens", "4095"], CONTEXT_4K) == []
    assert argv_problems([*BASE, "--max-input-tokens", "4096", "--max-total-tokens", "8192"], CONTEXT_4K) == []


def test_checkpoint_quantization_is_what_the_launchers_enum_reads():
    assert Checkpoint.from_config({"quant_method": "awq", "bits": 4}, 4096) == Checkpoint("awq", 4096)
    # quant_method values the launcher's enum lacks make it read no config at all: no --quantize.
    assert Checkpoint.from_config({"quant_method": "fbgemm_fp8"}, 4096) == Checkpoint(None, 4096)
    assert Checkpoint.from_config(None, None) == Checkpoint()


@pytest.mark.parametrize(
    "argv, problem",
    [
        (["--port", "1", "--port", "2"], "--port is given twice: TGI's launcher takes it once."),
        (["--max-model-len", "4"], "--max-model-len is not a flag of TGI's launcher"),
        (["--cuda-graphs"], "--cuda-graphs needs a value."),
        (["--json-output=true"], "--json-output takes no value, but was given 'true'."),
        (["stray"], "'stray' is not an option TGI's launcher knows, nor the value of one."),
        (["--quantize", "int8"], "--quantize: 'int8' is not a value TGI's launcher accepts: use one of awq,"),
        (
            ["--dtype", "float32"],
            "--dtype: 'float32' is not a value TGI's launcher accepts: use one of float16, bfloat16.",
        ),
        (
            ["--port", "70000"],
            "--port: '70000' is not a value TGI's launcher accepts: use a whole number from 0 to 65535.",
        ),
        (["--cuda-graphs", "1,x"], "--cuda-graphs: '1,x' is not a value TGI's launcher accepts"),
        (["--sharded", "yes"], "--sharded: 'yes' is not a value TGI's launcher accepts: use true or false."),
        (["--rope-factor", "big"], "--rope-factor: 'big' is not a value TGI's launcher accepts: use a number."),
    ],
)
def test_the_parser_refuses_what_clap_refuses(argv, problem):
    problems = parse(argv).problems
    assert len(problems) == 1 and problems[0].startswith(problem), problems


def test_the_parser_takes_what_clap_takes():
    parsed = parse(
        [
            "--cors-allow-origin",
            "a",
            "--cors-allow-origin=b",
            "--cuda-graphs",
            "1,2,4",
            "-p",
            "80",
            "--json-output",
            "--rope-factor=2.5",
            "-e",
        ]
    )
    assert parsed.problems == []
    assert parsed.values == {
        "cors-allow-origin": ["a", "b"],
        "cuda-graphs": ["1,2,4"],
        "port": ["80"],
        "json-output": [None],
        "rope-factor": ["2.5"],
        "env": [None],
    }


EVERYTHING = LauncherSettings(
    model_id="org/m",
    revision="v1",
    num_shard=2,
    quantize="bitsandbytes-nf4",
    dtype="bfloat16",
    trust_remote_code=True,
    max_input_tokens=1000,
    max_total_tokens=2000,
    max_batch_prefill_tokens=1000,
    max_concurrent_requests=8,
    lora_adapters=("a=/data/a",),
)


def test_the_argv_builder_emits_only_flags_of_the_table_and_each_is_owned():
    argv = launcher_args(EVERYTHING)
    parsed = parse(argv)
    assert parsed.problems == []
    emitted = [tgi_rules.flag_of(w) for w in argv if w.startswith("--")]
    assert None not in emitted
    assert [f.option for f in emitted if not f.owner] == []
    # and every owned flag but the legacy/alternative spellings is emitted by it
    owned = {f.name for f in TABLE.flags if f.owner}
    assert owned - {f.name for f in emitted} == {"sharded", "max-input-length"}


def test_the_env_names_are_the_flags_upper_snake_case_names():
    for f in TABLE.flags:
        assert f.env == (None if f.name == "env" else f.name.upper().replace("-", "_")), f
    assert tgi_rules.launcher_env_names(["SHARDED", "LOG_LEVEL", "QUANTIZE", "HF_TOKEN"]) == ["SHARDED", "QUANTIZE"]


def test_extra_arguments_may_not_give_an_owned_or_unknown_flag():
    s = LauncherSettings(model_id="org/m", extra_args=("--num-shard", "4", "--port=9", "--max-model-len", "8"))

    def name(flag):  # settings own --num-shard; nothing can change --port
        return "SHARDS" if flag.name == "num-shard" else flag.option

    assert settings_problems(s, name=name, fixed="it is fixed") == [
        "the extra arguments must not give --num-shard: it is set from SHARDS; set that instead.",
        "the extra arguments must not give --port: it is fixed.",
        "the extra arguments: --max-model-len is not a flag of TGI 3.3.7's launcher; " + tgi_rules.known_list() + ".",
    ]


def test_settings_that_would_start_have_no_problems():
    assert settings_problems(EVERYTHING) == []
    assert (
        settings_problems(
            LauncherSettings(model_id="org/m", extra_args=("--cuda-graphs", "1,2", "--otlp-service-name", "my model"))
        )
        == []
    )

"""engines/: the seam that knows an engine's argv, env, probes, port, metrics and quantizations."""

from __future__ import annotations

import pytest

from llm_common.tgi import LauncherSettings, launcher_args
from llm_operator import api
from llm_operator.decide import manifests as resources
from llm_operator.engines import engine_for, engine_named
from llm_operator.engines.tgi import TGI
from llm_operator.engines.vllm import ENGINE as VLLM


def spec(**fields) -> api.LLMDeploymentSpec:
    return api.parse_spec({"model": {"id": "org/model"}, **fields})


def test_the_default_spec_gets_tgi():
    assert engine_for(spec()) is TGI
    assert engine_named("tgi") is TGI
    assert engine_for(spec(engine={"name": "vllm"})) is VLLM
    with pytest.raises(ValueError, match="unknown engine 'sglang': expected one of tgi, vllm"):
        engine_named("sglang")


def test_args_are_the_runtimes_argv():
    s = spec(quantization="awq", limits={"maxTotalTokens": 4096}, engine={"args": ["--cuda-graphs", "1"]})
    assert TGI.args(s, 2, ("a=/data/x",)) == launcher_args(
        LauncherSettings(
            "org/model",
            num_shard=2,
            quantize="awq",
            max_total_tokens=4096,
            extra_args=("--cuda-graphs", "1"),
            lora_adapters=("a=/data/x",),
        )
    )


def test_the_deployment_takes_image_port_probes_and_env_from_the_engine():
    s = spec(cache={"enabled": True})
    container = resources.desired_deployment(resources.Owner("m", "ns", "u"), s, resources.Decisions(gpus=1))["spec"][
        "template"
    ]["spec"]["containers"][0]
    assert container["image"] == TGI.default_image
    assert container["ports"][0]["containerPort"] == TGI.port
    assert {k: container[k] for k in TGI.probes()} == TGI.probes()
    assert (
        {e["name"]: e["value"] for e in container["env"]}
        == TGI.env(s)
        == {"HF_HOME": "/data", "USAGE_STATS": "off", "HF_HUB_OFFLINE": "1"}
    )


def test_hpa_metric_names_come_from_the_engine():
    for metric in ("queue", "concurrency"):
        hpa = resources.desired_hpa(
            resources.Owner("m", "ns", "u"), spec(autoscaling={"mode": "hpa", "metric": metric})
        )
        assert hpa["spec"]["metrics"][0]["pods"]["metric"]["name"] == TGI.load_metrics.per_pod[metric]


def test_load_metrics():
    m = TGI.load_metrics
    assert m.load({"tgi_queue_size": 3.0, "tgi_batch_current_size": 5.0}, "queue") == 3.0
    assert m.load({"tgi_queue_size": 3.0, "tgi_batch_current_size": 5.0}, api.ScalingMetric.concurrency) == 8.0
    assert m.load({"tgi_batch_max_total_tokens": 1.0}, "queue") == 0.0  # the engine's, gauge not set yet
    assert m.load({"process_cpu_seconds_total": 1.0}, "queue") is None  # not the engine's metrics
    with pytest.raises(ValueError, match="unknown autoscaling metric"):
        m.load({}, "rps")


def test_the_api_offers_the_engines_quantizations():
    assert tuple(q.value for q in api.Quantization) == TGI.quantizations
    assert api.DEFAULT_TGI_IMAGE == TGI.default_image


# ---- vLLM 0.33.0 (issue 15) -----------------------------------------------------------------


def vllm_spec(**fields) -> api.LLMDeploymentSpec:
    return spec(engine={"name": "vllm", **fields.pop("engine", {})}, **fields)


def test_vllm_argv_from_the_spec():
    s = vllm_spec(
        model={"id": "Qwen/Qwen3-8B", "revision": "abc", "trustRemoteCode": True},
        quantization="awq",
        dtype="float16",
        limits={"maxTotalTokens": 8192, "maxBatchPrefillTokens": 4096, "maxConcurrentRequests": 128},
        engine={"args": ["--enable-prefix-caching"]},
    )
    assert VLLM.args(s, 2, (), name="qwen") == [
        "Qwen/Qwen3-8B",
        "--revision",
        "abc",
        "--tensor-parallel-size",
        "2",
        "--quantization",
        "awq",
        "--dtype",
        "float16",
        "--trust-remote-code",
        "--max-model-len",
        "8192",
        "--max-num-batched-tokens",
        "4096",
        "--max-num-seqs",
        "128",
        "--served-model-name",
        "qwen",
        "Qwen/Qwen3-8B",
        "--host",
        "0.0.0.0",
        "--port",
        "8000",
        "--enable-prefix-caching",
    ]


@pytest.mark.parametrize(
    "ours, theirs",
    [
        ("awq", "awq"),
        ("gptq", "gptq"),
        ("marlin", "gptq_marlin"),
        ("fp8", "fp8"),
        ("compressed-tensors", "compressed-tensors"),
    ],
)
def test_every_quantization_vllm_has_is_mapped(ours, theirs):
    args = VLLM.args(vllm_spec(quantization=ours), 1)
    assert args[args.index("--quantization") + 1] == theirs
    assert "--quantization" not in VLLM.args(vllm_spec(), 1)


def test_every_quantization_of_our_enum_is_mapped_for_vllm_or_refused_at_admission_naming_tgi():
    for q in api.Quantization:
        if q.value in VLLM.quantizations:
            vllm_spec(quantization=q.value)
            continue
        with pytest.raises(api.InvalidSpec) as refused:
            vllm_spec(quantization=q.value)
        assert f"quantization {q.value} is not in vLLM 0.33.0: engine.name tgi has it" in str(refused.value)


def test_vllm_adapters_are_lora_modules_with_a_rank_vllm_accepts():
    args = VLLM.args(
        vllm_spec(),
        1,
        ("support=/data/hub/models--acme--support/snapshots/c0ffee", "acme/sql@main"),
        name="m",
        lora_rank=24,
    )
    tail = args[args.index("--enable-lora") : args.index("--host")]
    assert tail == [
        "--enable-lora",
        "--lora-modules",
        "support=/data/hub/models--acme--support/snapshots/c0ffee",
        "acme/sql=acme/sql",
        "--max-loras",
        "2",
        "--max-lora-rank",
        "32",
    ]


def test_vllm_refuses_what_admission_cannot_know():
    from llm_operator.facts.hub import facts_from_config

    facts = facts_from_config(
        {
            "model_type": "llama",
            "hidden_size": 4096,
            "num_attention_heads": 32,
            "num_hidden_layers": 32,
            "vocab_size": 32000,
            "max_position_embeddings": 8192,
            "quantization_config": {"quant_method": "gptq", "bits": 4},
        },
        1,
        model_id="org/m",
    )
    s = vllm_spec(
        quantization="awq", limits={"maxTotalTokens": 16384, "maxBatchPrefillTokens": 64, "maxConcurrentRequests": 128}
    )
    assert VLLM.refusals(s, 1, ("acme/sql@v2",), facts) == [
        "spec.limits.maxTotalTokens (16384) is above m's context (8192 tokens): vLLM refuses a longer --max-model-len.",
        "spec.limits.maxBatchPrefillTokens (64) is below spec.limits.maxConcurrentRequests (128): vLLM needs at "
        "least one token per sequence in a batch.",
        "spec.quantization awq differs from the checkpoint's own (gptq): vLLM refuses the mismatch; set "
        "spec.quantization to none or to the checkpoint's method.",
        "vLLM fetches an adapter from the Hub at its main revision only: acme/sql@v2 pins another; turn spec.cache "
        "on (the download Job fetches the pinned revision) or pin main.",
    ]
    assert VLLM.refusals(vllm_spec(quantization="marlin"), 1, (), facts) == []
    # With the cache on, the Job fetches the pinned revision: no refusal while it has not yet run.
    assert VLLM.refusals(vllm_spec(cache={"enabled": True}), 1, ("acme/sql@v2",), facts) == []


def test_the_vllm_deployment_takes_image_port_probes_and_env_from_the_engine():
    s = vllm_spec(cache={"enabled": True})
    container = resources.desired_deployment(resources.Owner("m", "ns", "u"), s, resources.Decisions(gpus=1))["spec"][
        "template"
    ]["spec"]["containers"][0]
    assert container["image"] == "vllm/vllm-openai:v0.33.0"
    assert container["command"] == ["vllm", "serve"]
    assert container["ports"][0] == {"name": "http", "containerPort": 8000, "protocol": "TCP"}
    assert container["startupProbe"]["httpGet"] == {"path": "/health", "port": "http", "scheme": "HTTP"}
    assert {e["name"]: e["value"] for e in container["env"]} == {
        "HF_HOME": "/data",
        "VLLM_NO_USAGE_STATS": "1",
        "DO_NOT_TRACK": "1",
        "HF_HUB_OFFLINE": "1",
    }
    assert container["args"][container["args"].index("--served-model-name") + 1] == "m"


def test_a_dtype_with_a_quantization_is_tgis_rule_only():
    with pytest.raises(api.InvalidSpec):
        spec(quantization="awq", dtype="float16")
    assert vllm_spec(quantization="awq", dtype="float16").dtype == "float16"


def test_the_vllm_plan_and_argv_agree_on_tokens_and_the_gpus_share():
    from decideobjects import LLAMA_70B, NOW, observed

    from llm_operator.decide.decision import Lookups, decide
    from llm_operator.facts import lookup as facts
    from llm_operator.facts.hub import ModelFacts

    known = Lookups(facts=facts.FactsAnswer(ModelFacts.from_dict(LLAMA_70B), facts.HUB))
    spec_ = {
        "model": {"id": "org/llama-70b"},
        "engine": {"name": "vllm"},
        "gpus": None,
        "gpu": {"product": "NVIDIA-H100-80GB-HBM3"},
    }
    d = decide(observed(spec=spec_), known, NOW)
    plan = d.status["plan"]
    assert (plan["numShard"], plan["fits"]) == (2, True)
    assert "2 x H100 80GB gives 72.8 GiB each to vLLM (0.92 of each GPU, --gpu-memory-utilization)" in plan["reason"]
    args = next(o for o in d.apply if o["kind"] == "Deployment")["spec"]["template"]["spec"]["containers"][0]["args"]
    # The plan counted min(context, 4096) tokens; vLLM is told so, or it would take all 32768.
    assert args[args.index("--max-model-len") + 1] == "4096"
    assert args[args.index("--tensor-parallel-size") + 1] == "2"
    # A share given in engine.args is the one planned for.
    tight = {**spec_, "gpus": 2, "engine": {"name": "vllm", "args": ["--gpu-memory-utilization=0.8"]}}
    d = decide(observed(spec=tight), known, NOW)
    assert d.status["plan"]["fits"] is False and d.blocked.reason == "DoesNotFit"
    assert "gives 63.3 GiB each to vLLM (0.8 of each GPU" in d.status["plan"]["reason"]


def test_fp8_on_16_bit_weights_is_vllms_online_fp8_and_on_an_fp8_checkpoint_its_own():
    s = vllm_spec(quantization="fp8")

    def method(checkpoint):
        args = VLLM.args(s, 1, checkpoint_quantization=checkpoint)
        return args[args.index("--quantization") + 1]

    assert (method(""), method("fp8"), method(None)) == ("fp8_per_tensor", "fp8", "fp8")


@pytest.mark.parametrize(
    "args, message",
    [
        (["-tp", "2"], "engine.args must not give -tp: the operator sets it from spec.gpus; set that instead."),
        (
            ["--max_model_len=4096"],
            "engine.args must not give --max_model_len: the operator sets it from "
            "spec.limits.maxTotalTokens; set that instead.",
        ),
        (
            ["--port", "80"],
            "engine.args must not give --port: the operator sets it (the pods' port, names and protocol "
            "are what the Service, the probes and clients rely on).",
        ),
        (
            ["--lora-modules", "a=/x"],
            "engine.args must not give --lora-modules: the operator sets it from spec.adapters",
        ),
    ],
)
def test_admission_refuses_vllm_flags_a_spec_field_or_the_operator_sets(args, message):
    with pytest.raises(api.InvalidSpec) as refused:
        vllm_spec(engine={"args": args})
    assert message in str(refused.value)
    # The same words are TGI's business only when the engine is TGI.
    assert vllm_spec(engine={"args": ["--enable-prefix-caching", "--gpu-memory-utilization", "0.95"]})


def test_what_vllm_would_refuse_in_engine_args_is_said_before_a_pod_starts():
    s = vllm_spec(
        engine={
            "args": [
                "--no-such-flag",
                "--gpu-memory-utilization",
                "high",
                "--enable-prefix-caching",
                "--enable-prefix-caching",
            ]
        }
    )
    assert VLLM.refusals(s, 1) == [
        "spec.engine.args: --no-such-flag is not an option of `vllm serve` 0.33.0.",
        "spec.engine.args gives --enable-prefix-caching more than once: vLLM would keep the last; give each once.",
        "spec.engine.args: --gpu-memory-utilization: 'high' is not a value vLLM 0.33.0 accepts: use a number.",
    ]


def test_vllm_refuses_a_pre_quantized_format_on_unquantized_weights():
    from llm_operator.facts.hub import facts_from_config

    plain = facts_from_config(
        {
            "model_type": "qwen3",
            "hidden_size": 4096,
            "num_attention_heads": 32,
            "num_hidden_layers": 36,
            "vocab_size": 151936,
            "max_position_embeddings": 40960,
        },
        None,
        model_id="Qwen/Qwen3-8B",
    )
    assert VLLM.refusals(vllm_spec(quantization="awq"), 1, (), plain) == [
        "spec.quantization awq needs a checkpoint published in that format, and Qwen3-8B's weights are stored "
        "unquantized: use fp8 (quantized at load), or a build of the model published in awq."
    ]
    assert VLLM.refusals(vllm_spec(quantization="fp8"), 1, (), plain) == []

"""The planner in the operator (issue 3): no Deployment for a model that cannot fit, the
planned GPU count when spec.gpus is left out, and an unknown plan when facts cannot be had."""

from __future__ import annotations

import json

import pytest

from support.cluster import arg, condition, engine_args, wait_for, wait_reason
from support.manifests import llmd

pytestmark = pytest.mark.usefixtures("operator")


def test_a_model_that_cannot_fit_gets_no_deployment_and_says_why(kubectl):
    kubectl.apply(
        json.dumps(llmd("too-big", model={"id": "test/llama-3-70b"}, gpus=1, gpu={"product": "NVIDIA-H100-80GB-HBM3"}))
    )
    obj = wait_reason(kubectl, "too-big", "DoesNotFit")
    ready = condition(obj, "Ready")
    assert ready["status"] == "False"
    assert "131.4 GiB of weights" in ready["message"] and "2 GPUs" in ready["message"]
    assert condition(obj, "Stalled")["status"] == "True"
    assert obj["status"]["phase"] == "Failed"
    assert obj["status"]["plan"]["fits"] is False and obj["status"]["plan"]["minGpus"] == 2
    assert kubectl.get("deployment", "too-big") is None


def test_gpus_left_out_gets_the_planned_count(kubectl):
    kubectl.apply(
        json.dumps(llmd("planned", model={"id": "test/llama-3-70b"}, gpu={"product": "NVIDIA-H100-80GB-HBM3"}))
    )
    kubectl.run("wait", "--for=condition=Ready", "llmd/planned", "--timeout=60s")
    obj = kubectl.get("llmd", "planned")
    assert obj["status"]["gpus"] == 2
    assert obj["status"]["plan"]["numShard"] == 2 and obj["status"]["plan"]["fits"] is True
    assert obj["status"]["modelFacts"]["parameterCount"] == 70553706496
    d = kubectl.get("deployment", "planned")
    assert arg(engine_args(d), "--num-shard") == "2"
    assert d["spec"]["template"]["spec"]["containers"][0]["resources"]["limits"]["nvidia.com/gpu"] == "2"


def test_a_shard_count_that_does_not_divide_the_heads_is_refused(kubectl):
    kubectl.apply(json.dumps(llmd("eight-ways", model={"id": "test/qwen2.5-7b"}, gpus=8)))
    obj = wait_reason(kubectl, "eight-ways", "InvalidSharding")
    assert "28" in condition(obj, "Ready")["message"]
    assert kubectl.get("deployment", "eight-ways") is None


def test_a_fix_to_the_spec_brings_the_deployment(kubectl):
    kubectl.apply(json.dumps(llmd("fixed", model={"id": "test/llama-3-70b"}, gpus=1)))
    wait_reason(kubectl, "fixed", "DoesNotFit")
    kubectl.run("patch", "llmd", "fixed", "--type=merge", "-p", '{"spec": {"quantization": "awq"}}')
    kubectl.run("wait", "--for=condition=Ready", "llmd/fixed", "--timeout=60s")
    assert kubectl.get("llmd", "fixed")["status"]["plan"]["fits"] is True


def test_without_facts_the_plan_is_unknown_and_the_users_gpus_are_used(kubectl):
    kubectl.apply(json.dumps(llmd("gated", model={"id": "test/gated"}, gpus=2)))
    kubectl.run("wait", "--for=condition=Ready", "llmd/gated", "--timeout=60s")
    obj = kubectl.get("llmd", "gated")
    assert obj["status"]["plan"]["known"] is False
    assert "The plan is unknown" in obj["status"]["plan"]["reason"]
    assert obj["status"]["gpus"] == 2


def warning_events(kubectl, name: str, reason: str) -> list[dict]:
    return [
        e
        for e in kubectl.items("events")
        if e["involvedObject"]["name"] == name and e["reason"] == reason and e["type"] == "Warning"
    ]


def test_a_dtype_with_an_awq_checkpoint_is_stalled_with_a_sentence_not_a_crashing_pod(kubectl):
    # TGI takes --quantize awq from the checkpoint's config.json and then refuses --dtype (server cli.py).
    kubectl.apply(json.dumps(llmd("awq-dtype", model={"id": "test/mistral-7b-awq"}, gpus=1, dtype="float16")))
    obj = wait_reason(kubectl, "awq-dtype", "EngineWouldRefuse")
    assert condition(obj, "Ready")["message"] == (
        "TGI would refuse to start with this spec: spec.dtype cannot be set: the checkpoint is awq-quantized "
        "(quantization_config in its config.json), and TGI refuses a dtype with awq; leave spec.dtype unset (auto)."
    )
    assert condition(obj, "Stalled")["status"] == "True" and obj["status"]["phase"] == "Failed"
    assert kubectl.get("deployment", "awq-dtype") is None
    wait_for("a Warning Event", lambda: warning_events(kubectl, "awq-dtype", "EngineWouldRefuse"), 30)
    kubectl.run("patch", "llmd", "awq-dtype", "--type=json", "-p", '[{"op": "remove", "path": "/spec/dtype"}]')
    kubectl.run("wait", "--for=condition=Ready", "llmd/awq-dtype", "--timeout=60s")
    assert arg(engine_args(kubectl.get("deployment", "awq-dtype")), "--dtype") is None


def test_an_exl2_checkpoint_on_two_gpus_gets_no_deployment(kubectl):
    kubectl.apply(json.dumps(llmd("exl2-two", model={"id": "test/mistral-7b-exl2"}, gpus=2)))
    obj = wait_reason(kubectl, "exl2-two", "InvalidSharding")
    assert "TGI cannot shard exl2" in condition(obj, "Ready")["message"]
    assert kubectl.get("deployment", "exl2-two") is None


def test_input_tokens_alone_at_the_models_context_are_stalled(kubectl):
    kubectl.apply(
        json.dumps(llmd("whole-context", model={"id": "test/mistral-7b"}, gpus=1, limits={"maxInputTokens": 32768}))
    )
    obj = wait_reason(kubectl, "whole-context", "EngineWouldRefuse")
    assert (
        "spec.limits.maxInputTokens (32768) must be less than the model's context of 32768 tokens"
        in condition(obj, "Ready")["message"]
    )
    assert kubectl.get("deployment", "whole-context") is None


def test_an_engine_arg_below_a_limit_is_stalled(kubectl):
    kubectl.apply(
        json.dumps(
            llmd(
                "small-batch",
                model={"id": "test/mistral-7b"},
                gpus=1,
                limits={"maxTotalTokens": 8192},
                engine={"args": ["--max-batch-total-tokens", "4096"]},
            )
        )
    )
    obj = wait_reason(kubectl, "small-batch", "EngineWouldRefuse")
    assert condition(obj, "Ready")["message"] == (
        "TGI would refuse to start with this spec: --max-batch-total-tokens in spec.engine.args (4096) must be at "
        "least spec.limits.maxTotalTokens (8192): one request may use the whole total."
    )
    assert kubectl.get("deployment", "small-batch") is None


def test_an_engine_arg_below_the_specs_total_is_stalled_even_without_facts(kubectl):
    # The launcher refuses max_total_tokens > max_batch_total_tokens (launcher/src/main.rs).
    kubectl.apply(
        json.dumps(
            llmd(
                "small-batch",
                model={"id": "test/not-on-the-hub"},
                gpus=1,
                limits={"maxTotalTokens": 8192},
                engine={"args": ["--max-batch-total-tokens", "4096"]},
            )
        )
    )
    obj = wait_reason(kubectl, "small-batch", "EngineWouldRefuse")
    assert (
        "--max-batch-total-tokens in spec.engine.args (4096) must be at least spec.limits.maxTotalTokens (8192)"
        in condition(obj, "Ready")["message"]
    )
    assert condition(obj, "Stalled")["status"] == "True"
    assert kubectl.get("deployment", "small-batch") is None

"""The planner in the operator (issue 3): no Deployment for a model that cannot fit, the
planned GPU count when spec.gpus is left out, and an unknown plan when facts cannot be had."""

from __future__ import annotations

import json

import pytest

from conftest import wait_for
from manifests import llmd
from test_operator import arg, condition, engine_args

pytestmark = pytest.mark.usefixtures("operator")


def wait_reason(kubectl, name: str, reason: str) -> dict:
    return wait_for(f"Ready reason {reason}", lambda: (o := kubectl.get("llmd", name))
                    and condition(o, "Ready").get("reason") == reason and o, 30)


def test_a_model_that_cannot_fit_gets_no_deployment_and_says_why(kubectl):
    kubectl.apply(json.dumps(llmd("too-big", model={"id": "test/llama-3-70b"}, gpus=1,
                                  gpu={"product": "NVIDIA-H100-80GB-HBM3"})))
    obj = wait_reason(kubectl, "too-big", "DoesNotFit")
    ready = condition(obj, "Ready")
    assert ready["status"] == "False"
    assert "131.4 GiB of weights" in ready["message"] and "2 GPUs" in ready["message"]
    assert condition(obj, "Stalled")["status"] == "True"
    assert obj["status"]["phase"] == "Failed"
    assert obj["status"]["plan"]["fits"] is False and obj["status"]["plan"]["minGpus"] == 2
    assert kubectl.get("deployment", "too-big") is None


def test_gpus_left_out_gets_the_planned_count(kubectl):
    kubectl.apply(json.dumps(llmd("planned", model={"id": "test/llama-3-70b"}, gpu={"product": "NVIDIA-H100-80GB-HBM3"})))
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

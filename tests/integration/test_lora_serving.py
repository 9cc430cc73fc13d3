"""LoRA adapters beside the base model (issue 7 of the adapters): served, listed, rolled,
and a mismatched one reported and left out."""

from __future__ import annotations

import json

import pytest

from support.cluster import arg, condition, engine_args, wait_for
from support.manifests import llmd

pytestmark = pytest.mark.usefixtures("operator")

SUPPORT = {"name": "support", "id": "test/support-lora"}
SQL = {"name": "sql", "id": "test/sql-lora", "revision": "v1"}


def test_two_adapters_ready_a_third_rolls_and_a_mismatch_is_not_served(kubectl):
    kubectl.apply(json.dumps(llmd("lora", model={"id": "test/mistral-7b"}, gpus=1, adapters=[SUPPORT, SQL])))
    kubectl.run("wait", "--for=condition=Ready", "llmd/lora", "--timeout=60s")
    obj = kubectl.get("llmd", "lora")
    listed = {a["name"]: a for a in obj["status"]["adapters"]}
    assert set(listed) == {"support", "sql"} and all(a["served"] for a in listed.values())
    assert listed["sql"]["servedAs"] == "test/sql-lora" and listed["sql"]["cached"] is False
    assert condition(obj, "AdaptersReady")["status"] == "True"
    args = engine_args(kubectl.get("deployment", "lora"))
    assert arg(args, "--lora-adapters") == "test/support-lora@main,test/sql-lora@v1"
    first_template = kubectl.get("deployment", "lora")["metadata"]["generation"]

    # A third (trained on the same weights under another owner) and a fourth for another model.
    kubectl.run(
        "patch",
        "llmd",
        "lora",
        "--type=merge",
        "-p",
        json.dumps(
            {
                "spec": {
                    "adapters": [
                        SUPPORT,
                        SQL,
                        {"name": "summary", "id": "test/summary-lora"},
                        {"name": "llama", "id": "test/llama-lora"},
                    ]
                }
            }
        ),
    )
    wait_for(
        "the Deployment to roll with the third adapter",
        lambda: (
            arg(engine_args(kubectl.get("deployment", "lora")), "--lora-adapters")
            == "test/support-lora@main,test/sql-lora@v1,test/summary-lora@main"
        ),
        30,
    )
    assert kubectl.get("deployment", "lora")["metadata"]["generation"] > first_template
    kubectl.run("rollout", "status", "deployment/lora", "--timeout=60s")
    obj = wait_for(
        "AdaptersReady=False naming both models",
        lambda: (
            (o := kubectl.get("llmd", "lora"))
            and condition(o, "AdaptersReady").get("reason") == "BaseModelMismatch"
            and o
        ),
        30,
    )
    message = condition(obj, "AdaptersReady")["message"]
    assert "meta-llama/Llama-2-7b-hf" in message and "test/mistral-7b" in message
    llama = next(a for a in obj["status"]["adapters"] if a["name"] == "llama")
    assert llama["served"] is False and llama["servedAs"] == ""
    kubectl.run("wait", "--for=condition=Ready", "llmd/lora", "--timeout=60s")

"""Planning without the Hub (issue 14): a model the Hub will not describe (gated here: the
stand-in answers every repository it does not hold as gated, as huggingface.co answers a
reader without a token) is planned from the catalog; a platform team's catalog file adds
models, and a bad entry in it is reported with its name and field while the others work."""

from __future__ import annotations

import json

import pytest
import yaml

from support.cluster import condition, wait_reason
from support.manifests import llmd

pytestmark = pytest.mark.usefixtures("operator")

LLAMA_70B = "meta-llama/Llama-3.1-70B-Instruct"  # in the shipped catalog, at revision 1605565


def gpu_limit(kubectl, name: str) -> str:
    deployment = kubectl.get("deployment", name)
    return deployment["spec"]["template"]["spec"]["containers"][0]["resources"]["limits"]["nvidia.com/gpu"]


def test_a_gated_model_is_planned_from_the_catalog_and_the_planner_picks_its_gpus(kubectl):
    kubectl.apply(json.dumps(llmd("llama-70b", model={"id": LLAMA_70B})))
    obj = wait_reason(kubectl, "llama-70b", "Ready")
    plan = obj["status"]["plan"]
    assert (plan["known"], plan["source"], plan["numShard"], obj["status"]["gpus"]) == (True, "catalog", 2, 2)
    assert plan["reason"].endswith("fits with 11.4 GiB to spare. Model facts from the catalog (revision 1605565).")
    assert obj["status"]["modelFacts"]["source"] == "catalog"
    assert gpu_limit(kubectl, "llama-70b") == "2"


def test_a_model_the_catalog_says_does_not_fit_gets_no_deployment(kubectl):
    """The demo's llama-70b-on-one-l4: the remedies are what the plane's nodes (2 with 8 H100, 2 with
    4 L4; LeaderWorkerSets on) can carry out, not the 8 L4 GPUs that no node has."""
    kubectl.apply(json.dumps(llmd("on-one-l4", model={"id": LLAMA_70B}, gpus=1, gpu={"product": "NVIDIA-L4"})))
    obj = wait_reason(kubectl, "on-one-l4", "DoesNotFit")
    assert condition(obj, "Stalled")["status"] == "True"
    assert condition(obj, "Ready")["message"] == (
        "Llama-3.1-70B-Instruct at 16-bit needs 131.4 GiB of weights; 1 x L4 24GB gives 22.5 GiB: use engine "
        "vllm on 2 nodes of 4 GPUs (spec.engine.name: vllm, spec.nodes: 2, spec.gpus: 4), an 8-bit quantization "
        "(fp8 or eetq) on 4 GPUs (spec.gpus: 4), or 2 x H100 80GB (spec.gpu.product: NVIDIA-H100-80GB-HBM3, "
        "spec.gpus: 2) (the nodes the pods may use: 2 with 8 x NVIDIA-H100-80GB-HBM3, 2 with 4 x NVIDIA-L4). "
        "Model facts from the catalog (revision 1605565)."
    )
    assert kubectl.get("deployment", "on-one-l4") is None
    # The refusal shows in `kubectl get` without `describe`.
    table = kubectl.run("get", "llmd", "on-one-l4").stdout
    assert "DoesNotFit" in table.splitlines()[1]


def test_a_pinned_revision_the_catalog_does_not_have_is_planned_and_says_so(kubectl):
    kubectl.apply(
        json.dumps(
            llmd("llama-v2", model={"id": LLAMA_70B, "revision": "v2"}, gpu={"product": "NVIDIA-H100-80GB-HBM3"})
        )
    )
    obj = wait_reason(kubectl, "llama-v2", "Ready")
    assert obj["status"]["plan"]["source"] == "catalog" and obj["status"]["gpus"] == 2
    assert obj["status"]["plan"]["reason"].endswith(
        "Model facts from the catalog (revision 1605565). The catalog's facts are for revision 1605565, not v2 "
        "(spec.model.revision); the plan uses them until the download Job reads the pinned revision's own."
    )


TINY = {
    "model_type": "llama",
    "hidden_size": 2048,
    "intermediate_size": 5632,
    "num_attention_heads": 32,
    "num_hidden_layers": 22,
    "num_key_value_heads": 4,
    "vocab_size": 32000,
    "max_position_embeddings": 2048,
    "torch_dtype": "bfloat16",
}


def test_a_catalog_file_adds_models_and_a_bad_entry_is_reported_once_by_name_and_field(operator, kubectl, tmp_path):
    # What the chart's ConfigMap holds (catalog.extraModels), one entry edited to a wrong type.
    models = tmp_path / "models.yaml"
    models.write_text(
        yaml.safe_dump(
            [
                {"id": "acme/tiny-llama", "revision": "main", "parameterCount": 1_100_048_384, "config": TINY},
                {"id": "acme/broken", "config": {**TINY, "num_hidden_layers": "22 layers"}},
            ]
        )
    )
    problem = (
        f"Catalog {models}, entry 2 (acme/broken): config.num_hidden_layers must be an integer, "
        "got '22 layers'; the entry is left out."
    )
    started_at = operator.log_size()
    operator.stop()
    operator.extra_args = (*operator.extra_args, f"--catalog-file={models}")
    try:
        operator.start()
        kubectl.apply(
            yaml.safe_dump_all(
                [llmd("tiny", model={"id": "acme/tiny-llama"}), llmd("broken", model={"id": "acme/broken"}, gpus=1)]
            )
        )
        tiny = wait_reason(kubectl, "tiny", "Ready")
        assert (tiny["status"]["plan"]["source"], tiny["status"]["gpus"]) == ("catalog", 1)
        assert tiny["status"]["modelFacts"]["parameterCount"] == 1_100_048_384
        # The bad entry's model is served on the spec's GPUs, its status saying why it has no plan.
        broken = wait_reason(kubectl, "broken", "Ready")
        assert broken["status"]["plan"]["known"] is False
        assert broken["status"]["plan"]["reason"].startswith("The plan is unknown: ")
        assert problem in broken["status"]["plan"]["reason"]
        log = operator.log_path.read_bytes()[started_at:].decode(errors="replace")
        assert log.count(problem) == 1, log[-3000:]
    finally:
        operator.stop()
        operator.extra_args = tuple(a for a in operator.extra_args if not a.startswith("--catalog-file="))
        operator.start()

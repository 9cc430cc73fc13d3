"""`llm-operator catalog`: what fits where, and a manifest the planner says fits."""

from __future__ import annotations

import io

import pytest
import yaml

from llm_operator import api
from llm_operator.cli.catalog import run_catalog
from llm_operator.cli.main import parser
from llm_operator.facts import catalog
from llm_operator.planning import planner


def run(*argv):
    """`llm-operator catalog ...` as the CLI parses it: (status, stdout, stderr)."""
    args = parser().parse_args(["catalog", *argv])
    out, err = io.StringIO(), io.StringIO()
    status = run_catalog(args, out=out, err=err)
    return status, out.getvalue(), err.getvalue()


def test_the_overview_lists_every_model_with_the_fewest_gpus_of_each_type():
    status, out, err = run()
    assert (status, err) == (0, "")
    lines = out.splitlines()
    assert lines[0].split() == [
        "MODEL",
        "PARAMS",
        "WEIGHTS",
        "CONTEXT",
        "L4",
        "A10G",
        "L40S",
        "A100-40GB",
        "A100-80GB",
        "H100-80GB",
        "H200",
        "B200",
    ]
    rows = {line.split()[0]: line.split()[1:] for line in lines[1:] if line and not line.startswith("Each")}
    assert set(rows) == {e.model_id for e in catalog.builtin().entries()}
    # 70B at 16-bit: 8 L4, 2 H100, 1 H200; 405B fits only 8 H200 or B200.
    assert rows["meta-llama/Llama-3.1-70B-Instruct"] == [
        "70.6B",
        "bfloat16",
        "131072",
        "8",
        "8",
        "4",
        "4",
        "2",
        "2",
        "1",
        "1",
    ]
    assert rows["meta-llama/Meta-Llama-3.1-405B"][3:] == ["-", "-", "-", "-", "-", "-", "8", "8"]
    # An estimated count is marked.
    assert rows["Qwen/Qwen3-8B"][0] == "8.2B~"


def test_on_one_gpu_type_each_quantization_that_applies():
    status, out, _ = run("--gpu", "l4")
    assert status == 0
    header, *rows = [line.split() for line in out.splitlines() if line and not line.startswith("Fewest")]
    assert header == [
        "MODEL",
        "PARAMS",
        "WEIGHTS",
        "AS",
        "PUBLISHED",
        "FP8",
        "EETQ",
        "BITSANDBYTES",
        "BITSANDBYTES-NF4",
    ]
    by_model = {row[0]: row[3:] for row in rows}
    assert by_model["meta-llama/Llama-3.1-70B-Instruct"] == ["8", "4", "4", "4", "2"]
    # A checkpoint quantized already runs as published only.
    assert by_model["Qwen/Qwen3-32B-FP8"] == ["2", "n/a", "n/a", "n/a", "n/a"]


def test_the_json_forms_carry_the_same_numbers():
    status, out, _ = run("--json")
    import json

    rows = {r["model"]: r for r in json.loads(out)}
    assert rows["meta-llama/Llama-3.1-70B-Instruct"]["fewestGpus"]["h100-80gb"] == 2
    assert rows["meta-llama/Meta-Llama-3.1-405B"]["fewestGpus"]["l4"] is None
    status, out, _ = run("--gpu", "h100-80gb", "--json")
    rows = {r["model"]: r for r in json.loads(out)}
    assert rows["meta-llama/Llama-3.1-70B-Instruct"]["fewestGpus"] == {
        "none": 2,
        "fp8": 1,
        "eetq": 1,
        "bitsandbytes": 1,
        "bitsandbytes-nf4": 1,
    }


def test_a_model_and_a_gpu_give_an_llmdeployment_the_planner_says_fits():
    status, out, err = run("meta-llama/Llama-3.1-70B-Instruct", "--gpu", "h100-80gb")
    assert (status, err) == (0, "")
    comments = [line for line in out.splitlines() if line.startswith("#")]
    assert (
        comments[0] == "# meta-llama/Llama-3.1-70B-Instruct on H100 80GB, planned from the catalog's facts for revision"
    )
    assert "fits with" in " ".join(comments)
    doc = yaml.safe_load(out)
    assert doc["metadata"]["name"] == "llama-3-1-70b-instruct"
    spec = api.parse_spec(doc["spec"])  # what admission accepts
    assert (spec.model.id, spec.model.revision, spec.gpus, spec.gpu.product, spec.quantization) == (
        "meta-llama/Llama-3.1-70B-Instruct",
        "1605565b47bb9346c5515c34102e054115b4f98b",
        2,
        "NVIDIA-H100-80GB-HBM3",
        "none",
    )
    facts = catalog.builtin().entry(spec.model.id).facts
    again = planner.plan(
        planner.PlanRequest(facts=facts, quantization=spec.quantization, gpu_type="h100-80gb", gpus=spec.gpus)
    )
    assert again.fits


def test_when_as_published_fits_nowhere_the_least_lossy_quantization_that_fits_is_chosen():
    status, out, _ = run("meta-llama/Meta-Llama-3.1-405B", "--gpu", "h100-80gb", "--name", "llama-405b")
    assert status == 0
    doc = yaml.safe_load(out)
    assert (doc["spec"]["quantization"], doc["spec"]["gpus"], doc["metadata"]["name"]) == ("fp8", 8, "llama-405b")
    assert "# With more loss, bitsandbytes-nf4 fits on 4 GPUs (see `llm-operator catalog --gpu h100-80gb`)." in out


def test_a_model_that_fits_on_no_count_of_that_gpu_exits_one_and_says_what_to_do():
    status, out, _ = run("meta-llama/Meta-Llama-3.1-405B", "--gpu", "l4")
    assert status == 1
    assert "# Nothing fits up to 8 GPUs of this type: pick a larger GPU" in out


@pytest.mark.parametrize(
    "argv, message",
    [
        (["acme/nothing", "--gpu", "l4"], "acme/nothing is not in the catalog; it has: "),
        (["Qwen/Qwen3-8B"], "argument --gpu: required with MODEL"),
        (["Qwen/Qwen3-8B", "--gpu", "k80"], "argument --gpu: "),
        (["Qwen/Qwen3-8B", "--gpu", "l4", "--name", "Bad_Name"], "argument --name: must be at most 63 characters"),
    ],
)
def test_bad_input_exits_two_naming_what_is_wrong(argv, message):
    status, out, err = run(*argv)
    assert (status, out) == (2, "")
    assert message in err


def test_extra_entries_are_listed_and_their_problems_said(tmp_path):
    extra = tmp_path / "models.yaml"
    extra.write_text(
        yaml.safe_dump(
            [
                {
                    "id": "acme/tiny-llama",
                    "config": {
                        "model_type": "llama",
                        "hidden_size": 2048,
                        "intermediate_size": 5632,
                        "num_attention_heads": 32,
                        "num_hidden_layers": 22,
                        "num_key_value_heads": 4,
                        "vocab_size": 32000,
                        "max_position_embeddings": 2048,
                    },
                },
                {"id": "acme/broken", "config": {"hidden_size": "2k"}},
            ]
        )
    )
    status, out, err = run("--catalog-file", str(extra))
    assert status == 0 and "acme/tiny-llama" in out and "acme/broken" not in out
    assert err == (
        f"llm-operator catalog: Catalog {extra}, entry 2 (acme/broken): config.hidden_size must be an "
        "integer, got '2k'; the entry is left out.\n"
    )


def test_with_engine_vllm_the_catalog_plans_vllms_share_and_quantizations():
    status, out, _ = run("--gpu", "l4", "--engine", "vllm")
    header = out.splitlines()[0].split()
    assert header == ["MODEL", "PARAMS", "WEIGHTS", "AS", "PUBLISHED", "FP8"]  # vLLM 0.33.0 has no eetq or bitsandbytes
    status, out, _ = run("Qwen/Qwen3-8B", "--gpu", "l4", "--engine", "vllm")
    assert status == 0
    doc = yaml.safe_load(out)
    assert doc["spec"]["engine"] == {"name": "vllm"} and doc["spec"]["gpus"] == 1
    assert "gives 20.2 GiB to vLLM (0.92 of the GPU, --gpu-memory-utilization)" in out.replace("\n# ", " ")
    api.parse_spec(doc["spec"])

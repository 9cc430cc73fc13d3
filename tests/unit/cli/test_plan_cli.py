"""`llm-operator plan`, driven through a small argparse main as the real CLI will."""

import argparse
import io
import json
import os
import re
import subprocess
import sys
import time
from pathlib import Path

import pytest

from llm_operator.cli.plan import add_plan_arguments, run_plan

REPO = Path(__file__).parents[3]
LLAMA_3_70B = [
    "meta-llama/Meta-Llama-3-70B",
    "--config",
    str(REPO / "tests/data/models/llama-3-70b/config.json"),
    "--params",
    "70553706496",
]


def plan_main(argv):
    """What the main CLI does for `llm-operator plan ...`: returns (status, stdout, stderr)."""
    parser = argparse.ArgumentParser(prog="llm-operator plan")
    add_plan_arguments(parser)
    out, err = io.StringIO(), io.StringIO()
    status = run_plan(parser.parse_args(argv), out=out, err=err)
    return status, out.getvalue(), err.getvalue()


def test_table_for_llama_3_70b_on_h100():
    status, out, err = plan_main(LLAMA_3_70B + ["--gpu", "h100-80gb"])
    assert (status, err) == (0, "")
    assert out == (
        "model             meta-llama/Meta-Llama-3-70B (70,553,706,496 parameters)\n"
        "engine            tgi\n"
        "quantization      none (16.00 bits per weight)\n"
        "gpus              2 x H100 80GB (79.6 GiB each)\n"
        "max total tokens  4096\n"
        "weights           131.42 GiB in all, 65.71 GiB per GPU\n"
        "kv cache          0.62 GiB per GPU\n"
        "runtime overhead  1.90 GiB per GPU\n"
        "needed            68.23 GiB per GPU\n"
        "verdict           Fits\n"
        "min gpus          2\n"
        "reason            Meta-Llama-3-70B at 16-bit needs 68.2 GiB per GPU (65.7 weights, 0.6 KV cache, "
        "1.9 runtime); 2 x H100 80GB gives 79.6 GiB each: fits with 11.4 GiB to spare.\n"
        "facts             Model facts from the given config.json.\n"
    )


def test_table_for_llama_3_70b_on_h100_with_vllm():
    status, out, err = plan_main(LLAMA_3_70B + ["--gpu", "h100-80gb", "--engine", "vllm"])
    assert (status, err) == (0, "")
    assert out == (
        "model             meta-llama/Meta-Llama-3-70B (70,553,706,496 parameters)\n"
        "engine            vllm (reserves 72.8 GiB per GPU, --gpu-memory-utilization)\n"
        "quantization      none (16.00 bits per weight)\n"
        "gpus              2 x H100 80GB (79.6 GiB each)\n"
        "max total tokens  4096\n"
        "weights           131.42 GiB in all, 65.71 GiB per GPU\n"
        "kv cache          0.62 GiB per GPU\n"
        "runtime overhead  1.91 GiB per GPU\n"
        "needed            68.24 GiB per GPU\n"
        "verdict           Fits\n"
        "min gpus          2\n"
        "reason            Meta-Llama-3-70B at 16-bit needs 68.2 GiB per GPU (65.7 weights, 0.6 KV cache, "
        "1.9 runtime); 2 x H100 80GB gives 72.8 GiB each to vLLM (0.92 of each GPU, --gpu-memory-utilization): "
        "fits with 4.6 GiB to spare.\n"
        "facts             Model facts from the given config.json.\n"
    )


def test_vllm_json_gives_the_engine_and_its_reservation():
    status, out, _ = plan_main(
        LLAMA_3_70B + ["--gpu", "h100-80gb", "--engine", "vllm", "--gpu-memory-utilization", "0.95", "--json"]
    )
    report = json.loads(out)
    assert status == 0
    assert (report["engine"], report["usableGiBPerGpu"], report["gpuMemoryGiB"]) == ("vllm", 75.19, 79.65)
    assert "gives 75.2 GiB each to vLLM (0.95 of each GPU, --gpu-memory-utilization)" in report["reason"]


def test_tgi_json_gives_the_engine_and_the_whole_gpu():
    _, out, _ = plan_main(LLAMA_3_70B + ["--gpu", "h100-80gb", "--json"])
    assert (json.loads(out)["engine"], json.loads(out)["usableGiBPerGpu"]) == ("tgi", 79.65)


LLAMA_31_405B = [
    "meta-llama/Llama-3.1-405B",
    "--config",
    str(REPO / "tests/data/models/llama-3.1-405b/config.json"),
    "--params",
    "405853388800",
]


def test_vllm_picks_two_nodes_for_405b_and_prints_them():
    status, out, err = plan_main(LLAMA_31_405B + ["--gpu", "h100-80gb", "--engine", "vllm"])
    assert (status, err) == (0, "")
    assert out == (
        "model             meta-llama/Llama-3.1-405B (405,853,388,800 parameters)\n"
        "engine            vllm (reserves 72.8 GiB per GPU, --gpu-memory-utilization)\n"
        "quantization      none (16.00 bits per weight)\n"
        "gpus              8 x H100 80GB per node (79.6 GiB each)\n"
        "nodes             2 (pipeline parallel: up to 63 of 126 layers per node)\n"
        "max total tokens  4096\n"
        "weights           755.96 GiB in all, 47.25 GiB per GPU\n"
        "kv cache          0.12 GiB per GPU\n"
        "runtime overhead  2.55 GiB per GPU\n"
        "needed            49.93 GiB per GPU\n"
        "verdict           Fits\n"
        "min gpus          8 per node\n"
        "min nodes         2 at 8 GPUs per node\n"
        "reason            Llama-3.1-405B at 16-bit needs 49.9 GiB per GPU (47.2 weights, 0.1 KV cache, 2.6 runtime); "
        "2 nodes x 8 x H100 80GB gives 72.8 GiB each to vLLM (0.92 of each GPU, --gpu-memory-utilization): "
        "fits with 22.9 GiB to spare.\n"
        "facts             Model facts from the given config.json.\n"
    )


def test_vllm_on_one_node_names_the_nodes_it_would_need():
    status, out, _ = plan_main(
        LLAMA_31_405B + ["--gpu", "h100-80gb", "--engine", "vllm", "--gpus", "8", "--nodes", "1"]
    )
    assert status == 1
    rows = dict(re.split(r"  +", line, maxsplit=1) for line in out.splitlines())  # key, then the aligned value
    assert "nodes" not in rows
    assert (rows["gpus"], rows["min gpus"], rows["min nodes"]) == (
        "8 x H100 80GB (79.6 GiB each)",
        "none up to 8",
        "2 at 8 GPUs per node",
    )
    assert rows["reason"].endswith("use 2 nodes (spec.nodes: 2) or an 8-bit quantization (fp8).")


def test_nodes_in_json():
    status, out, _ = plan_main(LLAMA_31_405B + ["--gpu", "h100-80gb", "--engine", "vllm", "--gpus", "4", "--json"])
    report = json.loads(out)
    assert status == 0
    assert (report["numShard"], report["nodes"], report["minNodes"], report["layersPerNode"]) == (4, 3, 3, 42)


def test_tgi_stays_on_one_node_and_json_says_so():
    status, out, _ = plan_main(LLAMA_31_405B + ["--gpu", "h100-80gb", "--gpus", "8", "--json"])
    report = json.loads(out)
    assert status == 1
    assert (report["nodes"], report["minNodes"], report["layersPerNode"]) == (1, None, 126)
    assert "use engine vllm on 2 nodes (spec.engine.name: vllm, spec.nodes: 2)" in report["reason"]


def test_nodes_beyond_one_without_vllm_exits_two_naming_the_flag():
    status, out, err = plan_main(LLAMA_31_405B + ["--gpu", "h100-80gb", "--nodes", "2"])
    assert (status, out) == (2, "")
    assert err == (
        "llm-operator plan: error: argument --nodes: only 1 with --engine tgi (TGI serves within one node; "
        "multi-node serving needs --engine vllm)\n"
    )


def test_nodes_one_is_accepted_for_tgi():
    status, out, _ = plan_main(LLAMA_3_70B + ["--gpu", "h100-80gb", "--nodes", "1", "--json"])
    assert (status, json.loads(out)["nodes"]) == (0, 1)


def test_gpu_memory_utilization_without_vllm_exits_two_naming_the_flag():
    status, out, err = plan_main(LLAMA_3_70B + ["--gpu", "h100-80gb", "--gpu-memory-utilization", "0.95"])
    assert (status, out) == (2, "")
    assert err == (
        "llm-operator plan: error: argument --gpu-memory-utilization: only with --engine vllm "
        "(TGI plans with the whole GPU)\n"
    )


def test_vllm_with_a_quantization_only_tgi_has_exits_two():
    status, out, err = plan_main(LLAMA_3_70B + ["--gpu", "h100-80gb", "--engine", "vllm", "--quantization", "eetq"])
    assert (status, out) == (2, "")
    assert err.startswith("llm-operator plan: error: vLLM 0.33.0 has no eetq quantization; TGI has it")


def test_json_output_keys_and_values():
    status, out, _ = plan_main(LLAMA_3_70B + ["--gpu", "h100-80gb", "--gpus", "1", "--json"])
    report = json.loads(out)
    assert status == 1
    assert {
        "numShard",
        "weightsGiB",
        "kvCacheGiBPerGpu",
        "gpuMemoryGiB",
        "fits",
        "reason",
        "minGpus",
        "model",
        "gpu",
        "status",
    } <= set(report)
    assert (report["numShard"], report["weightsGiB"], report["fits"], report["minGpus"]) == (1, 131.42, False, 2)
    assert (report["model"], report["gpu"], report["status"]) == (
        "meta-llama/Meta-Llama-3-70B",
        "H100 80GB",
        "DoesNotFit",
    )
    assert out.count("\n") == 1  # one JSON object on one line


def test_four_bit_fits_one_gpu_and_exits_zero():
    status, out, _ = plan_main(
        LLAMA_3_70B + ["--gpu", "NVIDIA-H100-80GB-HBM3", "--gpus", "1", "--quantization", "awq", "--json"]
    )
    assert status == 0
    assert json.loads(out)["numShard"] == 1


def test_invalid_sharding_exits_one():
    qwen = ["Qwen/Qwen2.5-7B", "--config", str(REPO / "tests/data/models/qwen2.5-7b/config.json")]
    status, out, _ = plan_main(qwen + ["--gpu", "l4", "--gpus", "8", "--json"])
    assert status == 1
    assert json.loads(out)["status"] == "InvalidSharding"
    assert "28 attention heads" in json.loads(out)["reason"]


def test_list_gpus_lists_h100():
    status, out, _ = plan_main(["--list-gpus"])
    assert status == 0
    assert out.splitlines()[0].split() == ["NAME", "GPU", "MEMORY", "nvidia.com/gpu.product"]
    h100 = next(line for line in out.splitlines() if line.startswith("h100-80gb "))
    assert h100.split() == ["h100-80gb", "H100", "80GB", "79.6", "GiB", "NVIDIA-H100-80GB-HBM3,", "NVIDIA-H100-PCIe"]


@pytest.mark.parametrize(
    "argv, message",
    [
        (["acme/x", "--params", "5", "--gpu", "l4"], "llm-operator plan: error: argument --params: needs --config\n"),
        (
            LLAMA_3_70B + ["--safetensors-index", "index.json", "--gpu", "l4"],
            "llm-operator plan: error: argument --params: not allowed with --safetensors-index (give one parameter source)\n",
        ),
        (
            LLAMA_3_70B,
            "llm-operator plan: error: argument --gpu: required (a GPU type such as h100-80gb; see --list-gpus)\n",
        ),
        (
            ["acme/x", "--config", "/nonexistent/config.json", "--gpu", "l4"],
            "llm-operator plan: error: argument --config: cannot read /nonexistent/config.json: No such file or directory\n",
        ),
        (
            [],
            "llm-operator plan: error: the following arguments are required: MODEL_ID (or --config, or --list-gpus)\n",
        ),
    ],
)
def test_bad_input_exits_two_naming_the_flag(argv, message):
    status, out, err = plan_main(argv)
    assert (status, out, err) == (2, "", message)


def test_unknown_gpu_exits_two():
    status, _, err = plan_main(LLAMA_3_70B + ["--gpu", "h900"])
    assert status == 2
    assert err.startswith("llm-operator plan: error: argument --gpu: Unknown GPU type 'h900'")


def test_argparse_rejects_bad_numbers_and_quantizations(capsys):
    for argv in (
        LLAMA_3_70B + ["--gpu", "l4", "--gpus", "0"],
        LLAMA_3_70B + ["--gpu", "l4", "--quantization", "int3"],
        LLAMA_3_70B + ["--gpu", "l4", "--engine", "sglang"],
        LLAMA_3_70B + ["--gpu", "l4", "--engine", "vllm", "--nodes", "0"],
        LLAMA_3_70B + ["--gpu", "l4", "--engine", "vllm", "--gpu-memory-utilization", "1.5"],
    ):
        with pytest.raises(SystemExit) as exited:
            plan_main(argv)
        assert exited.value.code == 2
    errors = capsys.readouterr().err
    assert "argument --quantization: invalid choice: 'int3'" in errors
    assert "argument --engine: invalid choice: 'sglang'" in errors
    assert "argument --gpu-memory-utilization: must be at most 1, got 1.5" in errors
    assert "argument --nodes: must be at least 1, got 0" in errors


def test_answers_offline_without_importing_the_hub_or_kubernetes():
    # A fresh interpreter, a Hub endpoint that cannot answer and offline mode on: the
    # plan must come from the local config alone.
    program = (
        "import sys\n"
        "from llm_operator.cli.plan import main\n"
        f"status = main({LLAMA_3_70B + ['--gpu', 'h100-80gb', '--json']!r})\n"
        "loaded = sorted(m for m in sys.modules if m.split('.')[0] in ('huggingface_hub', 'kubernetes', 'kopf'))\n"
        "print(status, loaded, file=sys.stderr)\n"
    )
    env = {
        **os.environ,
        "PYTHONPATH": f"{REPO / 'common'}:{REPO / 'operator'}",
        "HF_HUB_OFFLINE": "1",
        "HF_ENDPOINT": "http://127.0.0.1:9",
    }
    started = time.perf_counter()
    finished = subprocess.run([sys.executable, "-c", program], capture_output=True, text=True, env=env, timeout=60)
    print(f"offline plan took {time.perf_counter() - started:.3f} s including interpreter start")
    assert finished.stderr == "0 []\n"
    assert json.loads(finished.stdout)["fits"] is True


# ---- the catalog when the Hub cannot answer (issue 14) -------------------------------------


def _closed_port() -> int:
    import socket

    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]  # closed again on return: a connection is refused at once


def _plan_process(args, **env):
    program = "import sys\nfrom llm_operator.cli.main import main\nsys.exit(main(sys.argv[1:]))\n"
    return subprocess.run(
        [sys.executable, "-c", program, "plan", *args],
        capture_output=True,
        text=True,
        timeout=60,
        env={**os.environ, "PYTHONPATH": f"{REPO / 'common'}:{REPO / 'operator'}", **env},
    )


LLAMA_31_70B_CONFIG = [
    "--config",
    str(REPO / "tests/data/models/llama-3.1-70b-instruct/config.json"),
    "--params",
    "70553706496",
]


def test_with_the_hub_unreachable_plan_answers_from_the_catalog_as_from_the_config():
    endpoint = f"http://127.0.0.1:{_closed_port()}"
    started = time.perf_counter()
    from_catalog = _plan_process(
        ["meta-llama/Llama-3.1-70B-Instruct", "--gpu", "h100-80gb", "--json"], HF_ENDPOINT=endpoint
    )
    print(f"plan from the catalog, Hub refused: {time.perf_counter() - started:.2f} s including interpreter start")
    assert from_catalog.returncode == 0, from_catalog.stderr
    got = json.loads(from_catalog.stdout)
    assert got["factsSource"] == "catalog"
    assert got["factsFrom"].startswith(
        "Model facts from the catalog (revision 1605565). The Hub did not answer: "
        "Could not reach the "
        f"Hugging Face Hub at {endpoint}"
    )
    # The Hub's client retries a refused connection for about 23 s; one probe answers at once.
    assert "Retrying" not in from_catalog.stderr
    from_config = _plan_process(
        ["meta-llama/Llama-3.1-70B-Instruct", *LLAMA_31_70B_CONFIG, "--gpu", "h100-80gb", "--json"]
    )
    want = json.loads(from_config.stdout)
    assert want["factsSource"] == "config"
    differ = {"factsSource", "factsFrom", "revision"}
    assert {k: v for k, v in got.items() if k not in differ} == {k: v for k, v in want.items() if k not in differ}
    assert (got["numShard"], got["fits"], got["parameterCountEstimated"]) == (2, True, False)


def test_the_table_says_the_facts_came_from_the_catalog_and_why(monkeypatch):
    import huggingface_hub.constants

    endpoint = f"http://127.0.0.1:{_closed_port()}"
    monkeypatch.setattr(huggingface_hub.constants, "ENDPOINT", endpoint)
    status, out, err = plan_main(["Qwen/Qwen3-8B", "--gpu", "l4"])
    assert (status, err) == (0, "")
    facts_line = next(line for line in out.splitlines() if line.startswith("facts"))
    # The plan came from the catalog: what is left to do is about the Hub, not another source.
    assert facts_line == (
        "facts             Model facts from the catalog. The Hub did not answer: Could not reach the Hugging "
        f"Face Hub at {endpoint} to read Qwen/Qwen3-8B@main: check network access or HF_ENDPOINT."
    )
    assert "8,190,735,360 parameters, estimated" in out


def test_a_model_neither_the_hub_nor_the_catalog_has_is_an_error_naming_the_hub(monkeypatch):
    import huggingface_hub.constants

    monkeypatch.setattr(huggingface_hub.constants, "ENDPOINT", f"http://127.0.0.1:{_closed_port()}")
    status, out, err = plan_main(["acme/unknown-7b", "--gpu", "l4"])
    assert (status, out) == (2, "")
    assert err.startswith("llm-operator plan: error: Could not reach the Hugging Face Hub")
    # With neither the Hub nor the catalog, the facts can still be given by hand, with the flags that do it.
    assert err.endswith(
        ": check network access or HF_ENDPOINT. To plan without the Hub, give the model's config.json "
        "and exact parameter count (--config PATH --params N).\n"
    )

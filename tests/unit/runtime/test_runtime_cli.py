"""`llm-runtime serve`: the checks, and the launcher command it runs, from the env the operator sets."""

from __future__ import annotations

import io
import json
import os
import subprocess
import sys
import types
from pathlib import Path

import pytest

from llm_runtime import checks
from llm_runtime.checks import CheckResult, GpuInfo, cache_check, gpu_verdict, shm_verdict, visible_to_cuda
from llm_runtime.cli import Measured, run_serve, serve_checks
from llm_runtime.download import download, download_adapter
from support.hub import HubServer

VENV_BIN = Path(sys.executable).parent
GiB, MiB = 1024**3, 1024**2
H100 = GpuInfo("NVIDIA H100 80GB HBM3", 80 * GiB)

# What the operator sets on a runtime-image container for a Mistral AWQ model on 2 GPUs.
OPERATOR_ENV = {
    "LLM_MODEL_ID": "TheBloke/Mistral-7B-Instruct-v0.2-AWQ",
    "LLM_REVISION": "main",
    "LLM_NUM_SHARD": "2",
    "LLM_QUANTIZE": "awq",
    "LLM_MAX_INPUT_TOKENS": "4096",
    "LLM_MAX_TOTAL_TOKENS": "8192",
    "LLM_MAX_CONCURRENT_REQUESTS": "64",
    "LLM_EXTRA_ARGS": '["--cuda-graphs", "1,2,4"]',
}
EXPECTED_COMMAND = (
    "text-generation-launcher --model-id TheBloke/Mistral-7B-Instruct-v0.2-AWQ --revision main --num-shard 2 "
    "--quantize awq --max-input-tokens 4096 --max-total-tokens 8192 --max-concurrent-requests 64 "
    "--hostname 0.0.0.0 --port 8080 --json-output --cuda-graphs 1,2,4"
)
GOOD = Measured(gpus=[H100, H100], gpu_error=None, shm_bytes=2 * GiB)


def serve(env, measured=GOOD, dry_run=True, skip_checks=False):
    out, err = io.StringIO(), io.StringIO()
    code = run_serve(env, dry_run=dry_run, skip_checks=skip_checks, measured=measured, out=out, err=err)
    return code, out.getvalue(), err.getvalue()


# --- the command line ------------------------------------------------------------------------


def test_console_script_dry_run_prints_a_launcher_command():
    proc = subprocess.run(
        [str(VENV_BIN / "llm-runtime"), "serve", "--dry-run", "--skip-checks"],
        env={"PATH": os.environ["PATH"], **OPERATOR_ENV},
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert proc.returncode == 0, proc.stderr
    assert proc.stdout == f"export HF_HOME=/data\nexport USAGE_STATS=off\n{EXPECTED_COMMAND}\n"


def test_dry_run_with_passing_checks():
    code, out, err = serve(OPERATOR_ENV)
    assert code == 0
    assert out.splitlines()[-1] == EXPECTED_COMMAND
    assert err.splitlines() == [
        "check ok: 2 GPUs visible for --num-shard 2: NVIDIA H100 80GB HBM3 (80 GiB), NVIDIA H100 80GB HBM3 (80 GiB).",
        "check ok: /dev/shm is 2.0 GiB, enough for 2 shards.",
    ]


def test_values_with_spaces_are_shell_quoted():
    code, out, _ = serve({**OPERATOR_ENV, "LLM_EXTRA_ARGS": '["--otlp-service-name", "my model"]'}, skip_checks=True)
    assert code == 0
    assert out.splitlines()[-1].endswith("--json-output --otlp-service-name 'my model'")


def test_bad_settings_exit_2_naming_the_variable():
    code, out, err = serve({"LLM_NUM_SHARD": "2"})
    assert (code, out) == (2, "")
    assert err == "llm-runtime serve: LLM_MODEL_ID is not set: the serving container needs the model's Hub id\n"


# --- checks decide whether TGI starts ------------------------------------------------------


def fake_launcher(tmp_path: Path) -> Path:
    """A text-generation-launcher that records how it was started."""
    bin_dir = tmp_path / "bin"
    bin_dir.mkdir()
    script = bin_dir / "text-generation-launcher"
    script.write_text('#!/bin/sh\necho "argv: $*"\necho "offline=$HF_HUB_OFFLINE home=$HF_HOME stats=$USAGE_STATS"\n')
    script.chmod(0o755)
    return bin_dir


def test_serve_execs_the_launcher(tmp_path):
    bin_dir = fake_launcher(tmp_path)
    proc = subprocess.run(
        [str(VENV_BIN / "llm-runtime"), "serve", "--skip-checks"],
        env={"PATH": f"{bin_dir}:{os.environ['PATH']}", **OPERATOR_ENV},
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert proc.returncode == 0, proc.stderr
    assert proc.stdout == (
        f"argv: {EXPECTED_COMMAND.removeprefix('text-generation-launcher ')}\noffline= home=/data stats=off\n"
    )


def test_failed_checks_do_not_start_tgi(tmp_path):
    bin_dir = fake_launcher(tmp_path)
    env = {"PATH": str(bin_dir), **OPERATOR_ENV}
    code, out, err = serve(env, Measured(gpus=[H100], gpu_error=None, shm_bytes=64 * MiB), dry_run=False)
    assert (code, out) == (3, "")
    assert err.splitlines() == [
        "check FAILED: 2 GPUs needed for --num-shard 2, but 1 visible: NVIDIA H100 80GB HBM3 (80 GiB). "
        "Request nvidia.com/gpu: 2 or lower the shard count.",
        "check FAILED: /dev/shm is 64 MiB, too small for NCCL between 2 shards (about 2.0 GiB wanted): mount an "
        "emptyDir with medium: Memory at /dev/shm (sizeLimit about 1Gi per GPU), or set NCCL_SHM_DISABLE=1 (slower).",
        "llm-runtime serve: not starting TGI; fix the failed checks above, or pass --skip-checks.",
    ]


def test_dry_run_with_failing_checks_still_prints_but_fails():
    code, out, _ = serve(OPERATOR_ENV, Measured(gpus=[], gpu_error=None, shm_bytes=2 * GiB))
    assert code == 3
    assert out.splitlines()[-1] == EXPECTED_COMMAND


def test_missing_launcher_exits_127(tmp_path):
    code, _, err = serve({"PATH": str(tmp_path), **OPERATOR_ENV}, dry_run=False, skip_checks=True)
    assert code == 127
    assert err == (
        "llm-runtime serve: text-generation-launcher is not on PATH: run this in the runtime image "
        "(built FROM TGI's).\n"
    )


# --- serving from the cache ----------------------------------------------------------------


@pytest.fixture
def cache(tmp_path):
    """A cache holding a tiny model and a LoRA adapter, as the download Job leaves it."""
    hub = HubServer(
        {
            "acme/tiny": {
                "config.json": json.dumps(
                    {
                        "model_type": "llama",
                        "hidden_size": 64,
                        "num_attention_heads": 4,
                        "num_hidden_layers": 2,
                        "vocab_size": 100,
                    }
                ).encode(),
                "model.safetensors": b"\x02\x00\x00\x00\x00\x00\x00\x00{}",
            },
            "acme/lora": {
                "adapter_config.json": b'{"peft_type": "LORA"}',
                "adapter_model.safetensors": b"\x02\x00\x00\x00\x00\x00\x00\x00{}",
            },
        }
    )
    cache_dir = tmp_path / "cache"
    download("acme/tiny", "main", cache_dir, endpoint=hub.endpoint, progress=lambda _: None)
    download_adapter("acme/lora", "main", cache_dir, endpoint=hub.endpoint, progress=lambda _: None)
    yield cache_dir, hub.commit("acme/lora")
    hub.close()


def test_serving_from_the_cache_goes_offline_and_passes_adapters_by_path(cache):
    cache_dir, lora_commit = cache
    env = {
        "LLM_MODEL_ID": "acme/tiny",
        "LLM_NUM_SHARD": "1",
        "LLM_CACHE_DIR": str(cache_dir),
        "LLM_ADAPTERS": "support=acme/lora@main",
    }
    code, out, err = serve(env, Measured(gpus=[H100], gpu_error=None, shm_bytes=64 * MiB))
    assert code == 0, err
    snapshot = cache_dir / "hub" / "models--acme--lora" / "snapshots" / lora_commit
    assert out == (
        f"export HF_HOME={cache_dir}\nexport HF_HUB_OFFLINE=1\nexport USAGE_STATS=off\n"
        "text-generation-launcher --model-id acme/tiny --revision main --num-shard 1 "
        f"--lora-adapters support={snapshot} --hostname 0.0.0.0 --port 8080 --json-output\n"
    )
    assert err.splitlines()[2:] == [
        f"check ok: acme/tiny@main is complete in the cache at {cache_dir}.",
        f"check ok: acme/lora@main is complete in the cache at {cache_dir}.",
    ]


def test_an_incomplete_cache_fails_the_check(tmp_path):
    env = {"LLM_MODEL_ID": "acme/tiny", "LLM_CACHE_DIR": str(tmp_path)}
    code, _, err = serve(env, Measured(gpus=[H100], gpu_error=None, shm_bytes=None))
    assert code == 3
    assert err.splitlines()[2] == (
        f"check FAILED: acme/tiny@main is not ready in the cache at {tmp_path} (has no completion marker, "
        f"{tmp_path}/llm-operator/acme--tiny/main/COMPLETE): run `llm-runtime download` for it first "
        "(the operator's download Job does), or serve without the cache."
    )


def test_serve_checks_without_a_cache_are_gpus_and_shm():
    assert serve_checks(1, Measured(None, None, 64 * MiB)) == [
        CheckResult(True, "GPUs not checked: nvidia-ml-py (pynvml) is not installed in this image."),
        CheckResult(True, "/dev/shm not needed: one shard uses no NCCL."),
    ]


# --- the verdicts, on measured numbers -----------------------------------------------------


def test_gpu_verdicts():
    assert gpu_verdict(2, None) == CheckResult(
        True, "GPUs not checked: nvidia-ml-py (pynvml) is not installed in this image."
    )
    assert gpu_verdict(1, [H100]) == CheckResult(
        True, "1 GPU visible for --num-shard 1: NVIDIA H100 80GB HBM3 (80 GiB)."
    )
    assert gpu_verdict(1, [H100, H100]).message == (
        "2 GPUs visible for --num-shard 1 (1 more visible than used): NVIDIA H100 80GB HBM3 (80 GiB), "
        "NVIDIA H100 80GB HBM3 (80 GiB)."
    )
    assert gpu_verdict(4, [H100, H100]).ok is False
    assert gpu_verdict(2, None, "NVML Shared Library Not Found") == CheckResult(
        False,
        (
            "No GPU is visible (NVML Shared Library Not Found): the pod asked for 2 GPUs but NVML could not start. "
            "Check that the node has the NVIDIA driver and device plugin and that the container requests nvidia.com/gpu."
        ),
    )


def test_cuda_visible_devices_hides_gpus():
    a100 = GpuInfo("NVIDIA A100-SXM4-80GB", 80 * GiB)
    assert visible_to_cuda([H100, a100], "1") == [a100]
    assert visible_to_cuda([H100, a100], "") == []
    assert visible_to_cuda([H100, a100], "GPU-aaaa") == [H100]
    assert visible_to_cuda([H100, a100], None) == [H100, a100]
    assert gpu_verdict(2, [H100, a100], cuda_visible_devices="0").message == (
        "2 GPUs needed for --num-shard 2, but 1 visible: NVIDIA H100 80GB HBM3 (80 GiB); CUDA_VISIBLE_DEVICES='0'. "
        "Request nvidia.com/gpu: 2 or lower the shard count."
    )


@pytest.mark.parametrize(
    "num_shard,size,ok,message",
    [
        (1, 64 * MiB, True, "/dev/shm not needed: one shard uses no NCCL."),
        (2, 2 * GiB, True, "/dev/shm is 2.0 GiB, enough for 2 shards."),
        (
            4,
            1 * GiB,
            True,
            "warning: /dev/shm is 1.0 GiB, less than the 4.0 GiB usually given to 4 shards; if NCCL fails, "
            "mount an emptyDir with medium: Memory at /dev/shm (sizeLimit about 1Gi per GPU), or set "
            "NCCL_SHM_DISABLE=1 (slower).",
        ),
        (
            2,
            64 * MiB,
            False,
            "/dev/shm is 64 MiB, too small for NCCL between 2 shards (about 2.0 GiB wanted): mount an "
            "emptyDir with medium: Memory at /dev/shm (sizeLimit about 1Gi per GPU), or set "
            "NCCL_SHM_DISABLE=1 (slower).",
        ),
        (
            8,
            None,
            False,
            "/dev/shm is missing, and 8 shards talk through it (NCCL): mount an emptyDir with medium: Memory "
            "at /dev/shm (sizeLimit about 1Gi per GPU), or set NCCL_SHM_DISABLE=1 (slower).",
        ),
    ],
)
def test_shm_verdicts(num_shard, size, ok, message):
    assert shm_verdict(num_shard, size) == CheckResult(ok, message)


def test_shm_check_measures_the_filesystem(tmp_path):
    stats = os.statvfs(tmp_path)
    assert checks.measure_shm(str(tmp_path)) == stats.f_frsize * stats.f_blocks
    assert checks.measure_shm(str(tmp_path / "absent")) is None


def test_cache_check_without_a_marker(tmp_path):
    result = cache_check(tmp_path, "org/model", "v1")
    assert result.ok is False and "has no completion marker" in result.message


# --- NVML, through a stand-in module (a GPU is an edge no unit test reaches) ---------------


def fake_pynvml(names, fail_init=None):
    module = types.ModuleType("pynvml")

    class NVMLError(Exception):
        pass

    def init():
        if fail_init:
            raise NVMLError(fail_init)

    module.NVMLError = NVMLError
    module.nvmlInit = init
    module.nvmlShutdown = lambda: None
    module.nvmlDeviceGetCount = lambda: len(names)
    module.nvmlDeviceGetHandleByIndex = lambda i: i
    module.nvmlDeviceGetName = lambda i: names[i]
    module.nvmlDeviceGetMemoryInfo = lambda i: types.SimpleNamespace(total=80 * GiB)
    return module


def test_measure_gpus_through_nvml(monkeypatch):
    monkeypatch.setitem(sys.modules, "pynvml", fake_pynvml([b"NVIDIA H100 80GB HBM3", "NVIDIA H100 80GB HBM3"]))
    assert checks.measure_gpus() == ([H100, H100], None)
    monkeypatch.setitem(sys.modules, "pynvml", fake_pynvml([], fail_init="Driver Not Loaded"))
    assert checks.measure_gpus() == (None, "Driver Not Loaded")
    assert checks.gpu_check(1).ok is False


def test_measure_gpus_without_nvidia_ml_py(monkeypatch):
    monkeypatch.setitem(sys.modules, "pynvml", None)  # import pynvml raises ImportError
    assert checks.measure_gpus() == (None, None)
    assert checks.gpu_check(8).ok is True


@pytest.mark.parametrize(
    "env, sentence",
    [
        (
            {"LLM_QUANTIZE": "int8"},
            "LLM_QUANTIZE: 'int8' is not a value TGI's launcher accepts: use one of awq, "
            "compressed-tensors, eetq, exl2, gptq, marlin, bitsandbytes, bitsandbytes-nf4, "
            "bitsandbytes-fp4, fp8.",
        ),
        (
            {"LLM_QUANTIZE": "", "LLM_DTYPE": "float32"},
            "LLM_DTYPE: 'float32' is not a value TGI's launcher accepts: use one of float16, bfloat16.",
        ),
        ({"LLM_QUANTIZE": "exl2"}, "LLM_QUANTIZE is exl2, which TGI cannot shard: LLM_NUM_SHARD must be 1, not 2."),
        (
            {"LLM_MAX_INPUT_TOKENS": "8192"},
            "LLM_MAX_INPUT_TOKENS (8192) must be less than LLM_MAX_TOTAL_TOKENS (8192): the total counts the prompt and "
            "the generated tokens.",
        ),
        (
            {"LLM_EXTRA_ARGS": '["--cuda-graphs", "1", "--cuda-graphs", "2"]'},
            "--cuda-graphs in LLM_EXTRA_ARGS is given twice: TGI's launcher takes it once.",
        ),
        (
            {"LLM_EXTRA_ARGS": '["--num-shard", "4"]'},
            "LLM_EXTRA_ARGS must not give --num-shard: it is set from LLM_NUM_SHARD; set that instead.",
        ),
        (
            {"LLM_DTYPE": "float16"},
            "LLM_DTYPE cannot be set with LLM_QUANTIZE awq: TGI takes a dtype only with bitsandbytes, bitsandbytes-nf4 or "
            "bitsandbytes-fp4; leave LLM_DTYPE unset (auto).",
        ),
    ],
)
@pytest.mark.parametrize("dry_run", [True, False])
def test_settings_tgi_would_refuse_exit_2_with_a_sentence(env, sentence, dry_run):
    code, out, err = serve({**OPERATOR_ENV, **env}, dry_run=dry_run)
    assert (code, out) == (2, "")
    assert err == f"llm-runtime serve: TGI would refuse these settings: {sentence}\n"


def test_console_script_dry_run_refuses_int8():
    proc = subprocess.run(
        [str(VENV_BIN / "llm-runtime"), "serve", "--dry-run", "--skip-checks"],
        env={"PATH": os.environ["PATH"], **OPERATOR_ENV, "LLM_QUANTIZE": "int8"},
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert (proc.returncode, proc.stdout) == (2, "")
    assert "LLM_QUANTIZE: 'int8' is not a value TGI's launcher accepts" in proc.stderr


def test_from_the_cache_input_tokens_alone_are_judged_against_the_cached_models_context(cache):
    cache_dir, _ = cache
    env = {"LLM_MODEL_ID": "acme/tiny", "LLM_NUM_SHARD": "1", "LLM_CACHE_DIR": str(cache_dir)}
    code, out, err = serve({**env, "LLM_MAX_INPUT_TOKENS": "2048"}, skip_checks=True)
    assert (code, out) == (2, "")
    assert err == (
        "llm-runtime serve: TGI would refuse these settings: LLM_MAX_INPUT_TOKENS (2048) must be less than "
        "the model's context of 2048 tokens, which TGI takes as the total when LLM_MAX_TOTAL_TOKENS is unset: "
        "set LLM_MAX_INPUT_TOKENS to at most 2047, or set LLM_MAX_TOTAL_TOKENS above it.\n"
    )
    assert serve({**env, "LLM_MAX_INPUT_TOKENS": "2047"}, skip_checks=True)[0] == 0


# --- vLLM (issue 15): the same variables, the same checks, another engine ---------------------

VLLM_ENV = {
    **OPERATOR_ENV,
    "LLM_ENGINE": "vllm",
    "LLM_SERVED_NAME": "mistral",
    "LLM_EXTRA_ARGS": '["--enable-prefix-caching"]',
}


def test_vllm_dry_run_prints_a_vllm_command_after_the_same_checks():
    code, out, err = serve(VLLM_ENV)
    assert code == 0
    assert out.splitlines()[-1] == (
        "vllm serve TheBloke/Mistral-7B-Instruct-v0.2-AWQ --revision main --tensor-parallel-size 2 --quantization awq "
        "--max-model-len 8192 --max-num-seqs 64 --served-model-name mistral TheBloke/Mistral-7B-Instruct-v0.2-AWQ "
        "--host 0.0.0.0 --port 8000 --enable-prefix-caching"
    )
    assert "export VLLM_NO_USAGE_STATS=1" in out and "export DO_NOT_TRACK=1" in out
    assert err.splitlines() == [
        "check ok: 2 GPUs visible for --num-shard 2: NVIDIA H100 80GB HBM3 (80 GiB), NVIDIA H100 80GB HBM3 (80 GiB).",
        "check ok: /dev/shm is 2.0 GiB, enough for 2 shards.",
    ]


def test_vllm_is_not_started_with_what_it_lacks_or_a_failed_check(tmp_path):
    code, out, err = serve({**VLLM_ENV, "LLM_QUANTIZE": "eetq"})
    assert (code, out) == (2, "")
    assert (
        err
        == "llm-runtime serve: vLLM would refuse these settings: LLM_QUANTIZE=eetq is not in vLLM 0.33.0 (TGI has it).\n"
    )
    code, out, err = serve(VLLM_ENV, Measured(gpus=[H100], gpu_error=None, shm_bytes=2 * GiB), dry_run=False)
    assert (code, out) == (3, "")
    assert (
        err.splitlines()[-1]
        == "llm-runtime serve: not starting vLLM; fix the failed checks above, or pass --skip-checks."
    )
    code, _, err = serve({"PATH": str(tmp_path), **VLLM_ENV}, dry_run=False, skip_checks=True)
    assert code == 127
    assert err == (
        "llm-runtime serve: vllm is not on PATH: run this in an image built FROM vLLM's (vllm/vllm-openai).\n"
    )


def test_an_unknown_engine_is_named():
    code, _, err = serve({**OPERATOR_ENV, "LLM_ENGINE": "sglang"})
    assert code == 2 and err == "llm-runtime serve: LLM_ENGINE='sglang' is not an engine: use tgi or vllm\n"

"""The engines' memory models: what vLLM 0.33.0 reserves and profiles on each GPU."""

import pytest

from llm_operator.engines.vllm import GPU_MEMORY_UTILIZATION, default_max_num_batched_tokens
from llm_operator.planning.gpus import GPU_TYPES, gpu_type_for


def test_vllm_default_utilization_is_the_pinned_release():
    assert GPU_MEMORY_UTILIZATION == 0.92


@pytest.mark.parametrize(
    "gpu, tokens",
    [
        ("b200", 16384),  # 178.6 GiB of CUDA memory: at least 160
        ("h200", 8192),
        ("h100-nvl", 8192),
        ("h100-80gb", 8192),  # 79.1 GiB: at least 70
        ("a100-80gb", 2048),  # as much memory, but A100s keep the small default
        ("l40s", 2048),
        ("l4", 2048),
        ("t4", 2048),
    ],
)
def test_vllm_default_max_num_batched_tokens(gpu, tokens):
    assert default_max_num_batched_tokens(GPU_TYPES[gpu]) == tokens


def test_vllm_default_batch_for_an_unknown_gpu_goes_by_memory():
    assert default_max_num_batched_tokens(gpu_type_for("NVIDIA-RTX-PRO-6000", memory_mib=97887)) == 8192
    assert default_max_num_batched_tokens(gpu_type_for("NVIDIA-RTX-PRO-6000", memory_mib=49152)) == 2048

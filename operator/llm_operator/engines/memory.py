"""How a serving engine spends a GPU's memory, as the planner sizes it.

Each engine builds its MemoryModel for a GPU (Engine.memory_model in tgi.py and vllm.py):
what it may fill and what it spends there besides the model's weights and KV cache, which
planning/memory.py works out from the model's facts. Here: that shape, and what every
CUDA process pays whatever the engine.

Pure. Engines do not import planning, so the GPU is duck-typed (GpuLike).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Protocol

# Memory nvidia-smi (and GFD's nvidia.com/gpu.memory label) counts but CUDA never hands
# out: measured on an H100 80GB HBM3 (driver 580), NVML total 81559 MiB, cudaMemGetInfo
# total 81079 MiB.
DRIVER_RESERVED_GIB = 0.5

# Per-process CUDA context plus cuBLAS workspaces: measured 0.67 GiB on that H100 with
# torch 2.11 after one bf16 matmul and one attention call; rounded up for NCCL's
# communicator buffers when sharded.
CUDA_CONTEXT_GIB = 0.75


class GpuLike(Protocol):
    """What an engine reads of planning.gpus.GpuType (duck-typed: engines do not import planning)."""

    @property
    def name(self) -> str: ...

    @property
    def display_name(self) -> str: ...

    @property
    def products(self) -> tuple[str, ...]: ...

    @property
    def memory_gib(self) -> float: ...  # as nvidia-smi reports it


@dataclass(frozen=True)
class MemoryModel:
    """What one engine may fill on a GPU and what it spends besides weights and KV cache."""

    engine: str  # the engine's name: "tgi", "vllm"
    display_name: str  # "TGI" or "vLLM", for sentences
    utilization: float | None  # the engine's share of the CUDA memory (vLLM); None: the whole GPU (TGI)
    fixed_overhead_gib: float  # per GPU, whatever the model
    kv_headroom: float  # memory kept out of the KV cache, as a fraction of it
    max_prefill_tokens: int  # tokens in the largest batch the activation estimate assumes
    prefill_follows_context: bool  # True: the prefill is one sequence, at most max total tokens
    # True: the engine refuses to start when one sequence of max total tokens finds no room for
    # its KV cache (vLLM); False: it starts and runs out of memory later (TGI).
    checks_kv_cache_at_startup: bool = False
    utilization_flag: str = ""  # the engine's flag that sets `utilization`, for sentences

    def capacity_gib(self, gpu: GpuLike) -> float:
        """GiB per GPU the engine may fill."""
        if self.utilization is None:
            return gpu.memory_gib
        # cudaMemGetInfo's total, not nvidia-smi's, is what vLLM takes its share of.
        return (gpu.memory_gib - DRIVER_RESERVED_GIB) * self.utilization

    def prefill_tokens(self, max_total_tokens: int) -> int:
        if self.prefill_follows_context:
            return min(max_total_tokens, self.max_prefill_tokens)
        return self.max_prefill_tokens

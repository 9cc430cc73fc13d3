"""The GPU types the planner knows: names, memory and the node labels that say which a node
has. Pure."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass

# TGI shards with NCCL inside one node only (vLLM's tensor parallelism too): at most this
# many GPUs one node holds.
MAX_GPUS_PER_NODE = 8


@dataclass(frozen=True)
class GpuType:
    """A GPU model: short name, display name, memory as nvidia-smi reports it, and the
    nvidia.com/gpu.product label values NVIDIA GPU feature discovery sets for it."""

    name: str
    display_name: str
    memory_mib: int
    products: tuple[str, ...] = ()

    @property
    def memory_gib(self) -> float:
        return self.memory_mib / 1024


# Memory is the total nvidia-smi reports (also GFD's nvidia.com/gpu.memory label, MiB),
# which is a little under the marketing size: an "80GB" H100 has 81559 MiB = 79.6 GiB.
GPU_TYPES: dict[str, GpuType] = {
    gpu.name: gpu
    for gpu in (
        GpuType("b200", "B200", 183359, ("NVIDIA-B200",)),
        GpuType("h200", "H200 141GB", 143771, ("NVIDIA-H200", "NVIDIA-H200-141GB-HBM3e")),
        GpuType("h100-nvl", "H100 NVL 94GB", 95830, ("NVIDIA-H100-NVL",)),
        GpuType("h100-80gb", "H100 80GB", 81559, ("NVIDIA-H100-80GB-HBM3", "NVIDIA-H100-PCIe")),
        GpuType("a100-80gb", "A100 80GB", 81920, ("NVIDIA-A100-SXM4-80GB", "NVIDIA-A100-80GB-PCIe")),
        GpuType("a100-40gb", "A100 40GB", 40960, ("NVIDIA-A100-SXM4-40GB", "NVIDIA-A100-PCIE-40GB")),
        GpuType("l40s", "L40S 48GB", 46068, ("NVIDIA-L40S",)),
        GpuType("l40", "L40 48GB", 46068, ("NVIDIA-L40",)),
        GpuType("rtx-a6000", "RTX A6000 48GB", 49140, ("NVIDIA-RTX-A6000",)),
        GpuType("a10g", "A10G 24GB", 23028, ("NVIDIA-A10G",)),
        GpuType("a10", "A10 24GB", 23028, ("NVIDIA-A10",)),
        GpuType("l4", "L4 24GB", 23034, ("NVIDIA-L4",)),
        GpuType("v100-32gb", "V100 32GB", 32768, ("Tesla-V100-SXM2-32GB", "Tesla-V100-PCIE-32GB")),
        GpuType("v100-16gb", "V100 16GB", 16384, ("Tesla-V100-SXM2-16GB", "Tesla-V100-PCIE-16GB")),
        GpuType("t4", "T4 16GB", 15360, ("Tesla-T4",)),
    )
}


# Node labels NVIDIA GPU feature discovery sets (the product name, and memory in MiB).
GPU_PRODUCT_LABEL = "nvidia.com/gpu.product"
GPU_MEMORY_LABEL = "nvidia.com/gpu.memory"


class UnknownGpuType(ValueError):
    """The GPU name is neither a short name nor a known product label."""


def gpu_type_for(name_or_product: str, memory_mib: int | str | None = None) -> GpuType:
    """The GPU type for a short name ('h100-80gb') or a GFD product label
    ('NVIDIA-H100-80GB-HBM3'), case-insensitive. `memory_mib` (a node's
    nvidia.com/gpu.memory label) overrides the table and makes unknown products usable."""
    wanted = name_or_product.strip().lower()
    # GFD appends "-SHARED" to the product when time-slicing is on; the memory is the same.
    wanted = wanted.removesuffix("-shared")
    for gpu in GPU_TYPES.values():
        if wanted == gpu.name or wanted in (product.lower() for product in gpu.products):
            return _with_memory(gpu, memory_mib)
    if memory_mib is not None:
        return GpuType(name_or_product, name_or_product, int(memory_mib), (name_or_product,))
    known = ", ".join(GPU_TYPES)
    raise UnknownGpuType(
        f"Unknown GPU type {name_or_product!r}: use one of {known}, a nvidia.com/gpu.product "
        "label value, or give the GPU memory explicitly."
    )


def gpu_type_from_node_labels(labels: Mapping[str, str]) -> GpuType | None:
    """The GPU type of a node from its GFD labels; None when the node has no product label."""
    product = labels.get(GPU_PRODUCT_LABEL)
    if not product:
        return None
    return gpu_type_for(product, memory_mib=labels.get(GPU_MEMORY_LABEL))


def _with_memory(gpu: GpuType, memory_mib: int | str | None) -> GpuType:
    if memory_mib is None:
        return gpu
    return GpuType(gpu.name, gpu.display_name, int(memory_mib), gpu.products)


def gpu_to_plan_for(gpu_type: str | None, memory_gib: float | None) -> GpuType:
    """The GPU a plan is for: the type named (with `memory_gib` instead of the table's when
    given), else a GPU of `memory_gib` known by its memory alone."""
    if gpu_type:
        gpu = gpu_type_for(gpu_type)
        if memory_gib is not None:
            return GpuType(gpu.name, gpu.display_name, round(memory_gib * 1024), gpu.products)
        return gpu
    if memory_gib is not None:
        label = f"{memory_gib:g} GiB GPU"
        return GpuType(label, label, round(memory_gib * 1024))
    raise UnknownGpuType("No GPU type or GPU memory given: name a GPU type (for example h100-80gb) or its memory.")

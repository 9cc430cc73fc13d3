"""The GPU table: short names, GFD product labels and memory as nvidia-smi reports it."""

import pytest

from llm_operator.planning.gpus import GPU_TYPES, UnknownGpuType, gpu_type_for, gpu_type_from_node_labels


@pytest.mark.parametrize(
    "label, name",
    [
        ("NVIDIA-H100-80GB-HBM3", "h100-80gb"),
        ("NVIDIA-A100-SXM4-80GB", "a100-80gb"),
        ("NVIDIA-A100-SXM4-40GB", "a100-40gb"),
        ("NVIDIA-A100-PCIE-40GB", "a100-40gb"),
        ("NVIDIA-L4", "l4"),
        ("NVIDIA-A10G", "a10g"),
        ("Tesla-T4", "t4"),
        ("NVIDIA-L40S", "l40s"),
        ("NVIDIA-H200", "h200"),
        ("nvidia-h100-80gb-hbm3", "h100-80gb"),
        ("NVIDIA-A100-SXM4-40GB-SHARED", "a100-40gb"),
        ("h100-80gb", "h100-80gb"),
    ],
)
def test_gpu_type_for_accepts_product_labels_and_short_names(label, name):
    assert gpu_type_for(label).name == name


def test_gpu_memory_label_overrides_the_table():
    assert gpu_type_for("NVIDIA-L4", memory_mib="23034").memory_mib == 23034
    assert gpu_type_for("NVIDIA-A100-SXM4-40GB", memory_mib=40000).memory_gib == 40000 / 1024
    assert gpu_type_for("NVIDIA-RTX-PRO-6000", memory_mib=97887).memory_mib == 97887


def test_gpu_type_from_node_labels():
    labels = {
        "nvidia.com/gpu.product": "NVIDIA-A100-SXM4-80GB",
        "nvidia.com/gpu.memory": "81920",
        "nvidia.com/gpu.count": "8",
    }
    gpu = gpu_type_from_node_labels(labels)
    assert (gpu.name, gpu.memory_mib) == ("a100-80gb", 81920)
    assert gpu_type_from_node_labels({"kubernetes.io/os": "linux"}) is None


def test_unknown_gpu_type_names_the_known_ones():
    with pytest.raises(UnknownGpuType, match="Unknown GPU type 'h900'.*h100-80gb"):
        gpu_type_for("h900")


def test_h100_memory_is_what_nvidia_smi_reports():
    assert GPU_TYPES["h100-80gb"].memory_mib == 81559
    assert round(GPU_TYPES["h100-80gb"].memory_gib, 1) == 79.6

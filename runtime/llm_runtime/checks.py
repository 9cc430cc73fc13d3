"""Pre-flight checks of a serving pod, run before TGI is started.

Each check is a pure verdict on measured numbers (`*_verdict`, what the tests call) and a
thin function that measures and asks it (`gpu_check`, `shm_check`, `cache_check`). A failed
check says what was seen and what to change, instead of TGI failing minutes later with an
NCCL error or "Waiting for shard to be ready".
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path

from llm_common.cache import marker_path
from llm_common.words import plural
from llm_runtime.download import human_bytes, is_complete

GiB, MiB = 1024**3, 1024**2

# NCCL falls back to shared memory between shards; TGI's docs give the pod 1 GiB of /dev/shm,
# and more for more shards. Below this, NCCL fails outright (Docker's default is 64 MiB).
SHM_PER_SHARD = 1 * GiB
SHM_MINIMUM = 256 * MiB

SHM_FIX = (
    "mount an emptyDir with medium: Memory at /dev/shm (sizeLimit about 1Gi per GPU), "
    "or set NCCL_SHM_DISABLE=1 (slower)"
)


@dataclass(frozen=True)
class CheckResult:
    ok: bool
    message: str


@dataclass(frozen=True)
class GpuInfo:
    name: str
    memory_bytes: int


def visible_to_cuda(gpus: list[GpuInfo], cuda_visible_devices: str | None) -> list[GpuInfo]:
    """The GPUs CUDA will use: NVML lists every GPU the container got, CUDA_VISIBLE_DEVICES may hide some."""
    if cuda_visible_devices is None:
        return gpus
    entries = [e.strip() for e in cuda_visible_devices.split(",") if e.strip()]
    if all(e.isdigit() for e in entries):
        return [gpus[int(e)] for e in entries if int(e) < len(gpus)]
    return gpus[: len(entries)]  # UUIDs or MIG ids: count them, we cannot map them without NVML


def gpu_verdict(
    expected: int, gpus: list[GpuInfo] | None, error: str | None = None, cuda_visible_devices: str | None = None
) -> CheckResult:
    """expected: --num-shard. gpus: what NVML listed, or None when nvidia-ml-py is not installed.
    error: NVML's own error when it could not start."""
    if gpus is None and error is None:
        return CheckResult(True, "GPUs not checked: nvidia-ml-py (pynvml) is not installed in this image.")
    if error is not None:
        return CheckResult(
            False,
            f"No GPU is visible ({error}): the pod asked for {plural(expected, 'GPU')} but "
            "NVML could not start. Check that the node has the NVIDIA driver and device plugin "
            "and that the container requests nvidia.com/gpu.",
        )
    assert gpus is not None  # NVML started (no error), so it listed them
    usable = visible_to_cuda(gpus, cuda_visible_devices)
    seen = ", ".join(f"{g.name} ({human_bytes(g.memory_bytes)})" for g in usable) or "none"
    hidden = f"; CUDA_VISIBLE_DEVICES={cuda_visible_devices!r}" if cuda_visible_devices is not None else ""
    if len(usable) < expected:
        return CheckResult(
            False,
            f"{plural(expected, 'GPU')} needed for --num-shard {expected}, but "
            f"{len(usable)} visible: {seen}{hidden}. Request nvidia.com/gpu: {expected} "
            "or lower the shard count.",
        )
    extra = f" ({len(usable) - expected} more visible than used)" if len(usable) > expected else ""
    return CheckResult(True, f"{plural(len(usable), 'GPU')} visible for --num-shard {expected}{extra}: {seen}{hidden}.")


def measure_gpus() -> tuple[list[GpuInfo] | None, str | None]:
    """(GPUs NVML lists, None), (None, NVML's error), or (None, None) without nvidia-ml-py."""
    try:
        import pynvml
    except ImportError:
        return None, None
    try:
        pynvml.nvmlInit()
    except pynvml.NVMLError as err:
        return None, str(err)
    try:
        gpus = []
        for i in range(pynvml.nvmlDeviceGetCount()):
            handle = pynvml.nvmlDeviceGetHandleByIndex(i)
            name = pynvml.nvmlDeviceGetName(handle)
            name = name.decode() if isinstance(name, bytes) else name  # older bindings return bytes
            gpus.append(GpuInfo(name, int(pynvml.nvmlDeviceGetMemoryInfo(handle).total)))
        return gpus, None
    finally:
        pynvml.nvmlShutdown()


def gpu_check(expected: int) -> CheckResult:
    gpus, error = measure_gpus()
    return gpu_verdict(expected, gpus, error, os.environ.get("CUDA_VISIBLE_DEVICES"))


def shm_verdict(num_shard: int, size_bytes: int | None, path: str = "/dev/shm") -> CheckResult:
    """size_bytes: the filesystem's size at `path`, or None when it is missing."""
    if num_shard <= 1:
        return CheckResult(True, f"{path} not needed: one shard uses no NCCL.")
    needed = num_shard * SHM_PER_SHARD
    if size_bytes is None:
        return CheckResult(False, f"{path} is missing, and {num_shard} shards talk through it (NCCL): {SHM_FIX}.")
    if size_bytes < SHM_MINIMUM:
        return CheckResult(
            False,
            f"{path} is {human_bytes(size_bytes)}, too small for NCCL between {num_shard} "
            f"shards (about {human_bytes(needed)} wanted): {SHM_FIX}.",
        )
    if size_bytes < needed:
        return CheckResult(
            True,
            f"warning: {path} is {human_bytes(size_bytes)}, less than the {human_bytes(needed)} "
            f"usually given to {num_shard} shards; if NCCL fails, {SHM_FIX}.",
        )
    return CheckResult(True, f"{path} is {human_bytes(size_bytes)}, enough for {num_shard} shards.")


def measure_shm(path: str = "/dev/shm") -> int | None:
    try:
        stats = os.statvfs(path)
    except FileNotFoundError:
        return None
    return stats.f_frsize * stats.f_blocks


def shm_check(num_shard: int, path: str = "/dev/shm") -> CheckResult:
    return shm_verdict(num_shard, measure_shm(path), path)


def cache_check(cache_dir: str | Path, model_id: str, revision: str) -> CheckResult:
    """The download Job's completion marker is there and every file it lists is in place."""
    if is_complete(cache_dir, model_id, revision):
        return CheckResult(True, f"{model_id}@{revision} is complete in the cache at {cache_dir}.")
    where = marker_path(cache_dir, model_id, revision)
    state = "lists files that are missing" if where.exists() else "has no completion marker"
    return CheckResult(
        False,
        f"{model_id}@{revision} is not ready in the cache at {cache_dir} ({state}, {where}): "
        "run `llm-runtime download` for it first (the operator's download Job does), "
        "or serve without the cache.",
    )

"""Pure: serving settings -> `vllm serve` argv and environment (vLLM 0.33.0).

The operator (llm_operator.engines.vllm) writes the serving container's arguments with it;
`llm-runtime serve` execs vLLM with it. One function, so the two can never disagree.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass, field

VERSION = "0.33.0"
# vLLM's own default port (vllm/entrypoints/common/cli_args.py, FrontendArgs.port).
DEFAULT_PORT = 8000

# Our quantization names -> vLLM 0.33.0's --quantization values. Absent: vLLM 0.33.0 has no
# such method (vllm/model_executor/layers/quantization/__init__.py, QUANTIZATION_METHODS):
# eetq and exl2 were never in vLLM, bitsandbytes was removed (vllm-project/vllm#39583).
QUANTIZATION = {
    "awq": "awq",
    "gptq": "gptq",
    # Marlin kernels for GPTQ checkpoints; vLLM picks them itself for a GPTQ model on a
    # GPU that has them, and names the method gptq_marlin.
    "marlin": "gptq_marlin",
    "fp8": "fp8",
    "compressed-tensors": "compressed-tensors",
}
# vLLM 0.33.0's fp8 is for checkpoints stored in FP8 only; weights stored in 16 bits are
# quantized at load by fp8_per_tensor ("The `fp8` quantization method no longer supports
# online quantization", vllm/model_executor/layers/quantization/fp8.py).
ONLINE_FP8 = "fp8_per_tensor"
# The engine that has what vLLM lacks, for the sentence that refuses it.
ONLY_IN_TGI = ("eetq", "exl2", "bitsandbytes", "bitsandbytes-nf4", "bitsandbytes-fp4")

# --max-lora-rank's choices (vllm/config/lora.py, LoRAConfig.max_lora_rank).
LORA_RANKS = (1, 8, 16, 32, 64, 128, 256, 320, 512)


@dataclass(frozen=True)
class ServeSettings:
    model_id: str
    revision: str = "main"
    tensor_parallel_size: int = 1
    quantization: str | None = None  # ours (QUANTIZATION's keys); None or "none": as the checkpoint says
    # The checkpoint's own quant_method ("" stored in 16 bits; None: not known).
    checkpoint_quantization: str | None = None
    dtype: str | None = None  # None or "auto": vLLM chooses
    trust_remote_code: bool = False
    max_model_len: int | None = None
    max_num_batched_tokens: int | None = None
    max_num_seqs: int | None = None
    served_model_names: tuple[str, ...] = ()
    # --lora-modules entries, "name=path" (a local directory or a Hub id).
    lora_modules: tuple[str, ...] = ()
    max_lora_rank: int | None = None
    port: int = DEFAULT_PORT
    extra_args: tuple[str, ...] = field(default_factory=tuple)
    # Multi-node (vLLM's own mode, no Ray): one `vllm serve` per node, pipeline stages across
    # them. The leader (rank 0) serves HTTP; the others run --headless and join it.
    nodes: int = 1
    node_rank: str = "0"  # a number, or "$(VAR)" for the kubelet to expand
    master_addr: str = ""  # the leader's address, or "$(VAR)"


def lora_modules(entries: Iterable[str]) -> tuple[str, ...]:
    """--lora-modules entries from the adapters' entries (llm_common.lora.adapter_entry):
    "name=/cache/path" stays; "org/repo@revision" (from the Hub) becomes "org/repo=org/repo",
    served under its id as TGI serves it. vLLM fetches such an adapter at its main revision
    only (a pinned one is refused before: see the engine's refusals)."""
    out = []
    for entry in entries:
        if "=" in entry:
            out.append(entry)
        else:
            repo = entry.partition("@")[0]
            out.append(f"{repo}={repo}")
    return tuple(out)


def pinned_hub_adapters(entries: Iterable[str]) -> list[str]:
    """Adapters to fetch from the Hub at a revision other than main: vLLM cannot."""
    return [e for e in entries if "=" not in e and not e.endswith("@main")]


def lora_rank_for(ranks: Iterable[int]) -> int | None:
    """The smallest --max-lora-rank vLLM accepts that covers every adapter's rank."""
    highest = max((int(r) for r in ranks), default=0)
    if not highest:
        return None
    return next((r for r in LORA_RANKS if r >= highest), LORA_RANKS[-1])


def serve_args(s: ServeSettings) -> list[str]:
    """Arguments of `vllm serve`, in a stable order: the model first (positional; --model
    is deprecated in 0.33.0), then the settings, then the extra arguments."""
    args = [s.model_id, "--revision", s.revision, "--tensor-parallel-size", str(s.tensor_parallel_size)]
    if s.nodes > 1:
        args += [
            "--pipeline-parallel-size",
            str(s.nodes),
            "--nnodes",
            str(s.nodes),
            "--node-rank",
            s.node_rank,
            "--master-addr",
            s.master_addr,
        ]
    if s.quantization and s.quantization != "none":
        method = QUANTIZATION.get(s.quantization, s.quantization)
        if method == "fp8" and s.checkpoint_quantization == "":
            method = ONLINE_FP8
        args += ["--quantization", method]
    if s.dtype and s.dtype != "auto":
        args += ["--dtype", s.dtype]
    if s.trust_remote_code:
        args.append("--trust-remote-code")
    for flag, value in (
        ("--max-model-len", s.max_model_len),
        ("--max-num-batched-tokens", s.max_num_batched_tokens),
        ("--max-num-seqs", s.max_num_seqs),
    ):
        if value is not None:
            args += [flag, str(value)]
    if s.served_model_names:
        args += ["--served-model-name", *s.served_model_names]
    if s.lora_modules:
        args += ["--enable-lora", "--lora-modules", *s.lora_modules, "--max-loras", str(len(s.lora_modules))]
        if s.max_lora_rank:
            args += ["--max-lora-rank", str(s.max_lora_rank)]
    if s.nodes > 1 and s.node_rank != "0":
        # A worker serves no API: the leader's server drives every stage.
        args.append("--headless")
    else:
        args += ["--host", "0.0.0.0", "--port", str(s.port)]
    return args + list(s.extra_args)


def serve_env(offline: bool = False) -> dict[str, str]:
    """Environment vLLM needs beyond what its image sets."""
    env = {
        # Weights, config and tokenizer under the pod's data volume (the cache when on).
        "HF_HOME": "/data",
        # vLLM reports usage to its authors unless told not to (vllm/usage/usage_lib.py).
        "VLLM_NO_USAGE_STATS": "1",
        "DO_NOT_TRACK": "1",
    }
    if offline:
        # The weights are in the cache: resolve the model to its local snapshot, never the Hub.
        env["HF_HUB_OFFLINE"] = "1"
    return env

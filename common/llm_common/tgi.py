"""Pure: serving settings -> text-generation-launcher argv and environment.

The operator (llm_operator.engines.tgi) writes the serving container's arguments with it;
`llm-runtime serve` execs the launcher with it. One function, so the two can never disagree.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field

from . import tgi_rules

# TGI's launcher listens on $PORT (80 in its image); we pin a port that needs no root.
DEFAULT_PORT = 8080


@dataclass(frozen=True)
class LauncherSettings:
    model_id: str
    revision: str = "main"
    num_shard: int = 1
    quantize: str | None = None  # None or "none": weights as they are
    dtype: str | None = None  # None or "auto": TGI chooses
    trust_remote_code: bool = False
    max_input_tokens: int | None = None
    max_total_tokens: int | None = None
    max_batch_prefill_tokens: int | None = None
    max_concurrent_requests: int | None = None
    port: int = DEFAULT_PORT
    extra_args: tuple[str, ...] = field(default_factory=tuple)
    # TGI's --lora-adapters entries: "name=/local/dir" or a bare Hub id (see lora.adapter_entry).
    lora_adapters: tuple[str, ...] = field(default_factory=tuple)


def launcher_args(s: LauncherSettings) -> list[str]:
    """Arguments of text-generation-launcher, in a stable order."""
    args = [
        "--model-id",
        s.model_id,
        "--revision",
        s.revision,
        # Explicit, or TGI counts devices from CUDA_VISIBLE_DEVICES (tgi.md).
        "--num-shard",
        str(s.num_shard),
    ]
    if s.quantize and s.quantize != "none":
        args += ["--quantize", s.quantize]
    if s.dtype and s.dtype != "auto":
        args += ["--dtype", s.dtype]
    if s.trust_remote_code:
        args.append("--trust-remote-code")
    for flag, value in (
        ("--max-input-tokens", s.max_input_tokens),
        ("--max-total-tokens", s.max_total_tokens),
        ("--max-batch-prefill-tokens", s.max_batch_prefill_tokens),
        ("--max-concurrent-requests", s.max_concurrent_requests),
    ):
        if value is not None:
            args += [flag, str(value)]
    if s.lora_adapters:
        args += ["--lora-adapters", ",".join(s.lora_adapters)]
    # Kubernetes sets HOSTNAME to the pod name, which TGI cannot bind: say where to listen.
    args += ["--hostname", "0.0.0.0", "--port", str(s.port), "--json-output"]
    return args + list(s.extra_args)


def launcher_env(s: LauncherSettings, offline: bool = False) -> dict[str, str]:
    """Environment the launcher needs beyond what the image sets."""
    env = {
        "HF_HOME": "/data",
        # Usage telemetry is on by default in containers; clusters do not want it.
        "USAGE_STATS": "off",
    }
    if offline:
        # The router accepts exactly "1" (tgi.md).
        env["HF_HUB_OFFLINE"] = "1"
    return env


def settings_problems(
    s: LauncherSettings,
    checkpoint: tgi_rules.Checkpoint | None = None,
    name: Callable[[tgi_rules.Flag], str] = tgi_rules.launcher_namer,
    where: str = "the extra arguments",
    fixed: str = "it is set for you",
) -> list[str]:
    """Why TGI 3.3.7 would refuse to start with these settings, as sentences naming each
    setting by `name` (empty: it would start). The extra arguments may not give a flag the
    settings own, nor one the launcher lacks; then the whole argv meets the launcher's rules."""
    problems = tgi_rules.extra_args_problems(s.extra_args, name, where, fixed)
    if problems:
        return problems
    return tgi_rules.argv_problems(launcher_args(s), checkpoint, name)

"""Pure: the LLM_* variables of a serving container -> text-generation-launcher settings.

The argv and environment themselves come from llm_common.tgi, the one function the
operator uses too, so the two can never disagree.
"""

from __future__ import annotations

import json
from collections.abc import Mapping

from llm_common import tgi_rules

# The pure argv builder and the adapter entries live in the shared leaf, so that the
# operator writes the same argv without importing the runtime. Re-exported for the CLI.
from llm_common.lora import AdapterRef, SettingsError, adapter_entry, parse_adapters  # noqa: F401
from llm_common.tgi import DEFAULT_PORT, LauncherSettings, launcher_args, launcher_env, settings_problems  # noqa: F401

# --- the serving container's environment: how the operator hands settings to `llm-runtime serve`

ENV_MODEL_ID = "LLM_MODEL_ID"
ENV_REVISION = "LLM_REVISION"
ENV_NUM_SHARD = "LLM_NUM_SHARD"
ENV_QUANTIZE = "LLM_QUANTIZE"
ENV_DTYPE = "LLM_DTYPE"
ENV_TRUST_REMOTE_CODE = "LLM_TRUST_REMOTE_CODE"
ENV_MAX_INPUT_TOKENS = "LLM_MAX_INPUT_TOKENS"
ENV_MAX_TOTAL_TOKENS = "LLM_MAX_TOTAL_TOKENS"
ENV_MAX_BATCH_PREFILL_TOKENS = "LLM_MAX_BATCH_PREFILL_TOKENS"
ENV_MAX_CONCURRENT_REQUESTS = "LLM_MAX_CONCURRENT_REQUESTS"
ENV_PORT = "LLM_PORT"
ENV_EXTRA_ARGS = "LLM_EXTRA_ARGS"  # a JSON list of strings
ENV_CACHE_DIR = "LLM_CACHE_DIR"  # set when the weights come from the download Job's cache
ENV_ADAPTERS = "LLM_ADAPTERS"  # "name=org/repo@revision,..."
ENV_ENGINE = "LLM_ENGINE"  # tgi (default) or vllm
ENV_SERVED_NAME = "LLM_SERVED_NAME"  # vllm: a name clients may use besides the model id

_LIMIT_ENV = (
    (ENV_MAX_INPUT_TOKENS, "max_input_tokens"),
    (ENV_MAX_TOTAL_TOKENS, "max_total_tokens"),
    (ENV_MAX_BATCH_PREFILL_TOKENS, "max_batch_prefill_tokens"),
    (ENV_MAX_CONCURRENT_REQUESTS, "max_concurrent_requests"),
)


def _int(env: Mapping[str, str], name: str) -> int | None:
    raw = env.get(name, "").strip()
    if not raw:
        return None
    try:
        return int(raw)
    except ValueError:
        raise SettingsError(f"{name}={raw!r} is not a whole number") from None


def _bool(env: Mapping[str, str], name: str) -> bool:
    raw = env.get(name, "").strip().lower()
    if raw in ("", "0", "false", "no"):
        return False
    if raw in ("1", "true", "yes"):
        return True
    raise SettingsError(f"{name}={raw!r} is neither true nor false")


def _extra_args(env: Mapping[str, str]) -> tuple[str, ...]:
    raw = env.get(ENV_EXTRA_ARGS, "").strip()
    if not raw:
        return ()
    try:
        value = json.loads(raw)
    except json.JSONDecodeError:
        value = None
    if not isinstance(value, list) or not all(isinstance(v, str) for v in value):
        raise SettingsError(f'{ENV_EXTRA_ARGS} must be a JSON list of strings, like ["--cuda-graphs", "1,2,4"]')
    return tuple(value)


def settings_from_env(env: Mapping[str, str], adapter_dirs: Mapping[str, str] | None = None) -> LauncherSettings:
    """Settings from the LLM_* variables the operator sets on the serving container.

    `adapter_dirs` maps adapter names to their local directories (from the cache); adapters
    not in it are passed to TGI by Hub id."""
    model_id = env.get(ENV_MODEL_ID, "").strip()
    if not model_id:
        raise SettingsError(f"{ENV_MODEL_ID} is not set: the serving container needs the model's Hub id")
    num_shard = _int(env, ENV_NUM_SHARD) or 1
    dirs = adapter_dirs or {}
    return LauncherSettings(
        model_id=model_id,
        revision=env.get(ENV_REVISION, "").strip() or "main",
        num_shard=num_shard,
        quantize=env.get(ENV_QUANTIZE, "").strip() or None,
        dtype=env.get(ENV_DTYPE, "").strip() or None,
        trust_remote_code=_bool(env, ENV_TRUST_REMOTE_CODE),
        **{field_name: _int(env, name) for name, field_name in _LIMIT_ENV},
        port=_int(env, ENV_PORT) or DEFAULT_PORT,
        extra_args=_extra_args(env),
        lora_adapters=tuple(
            adapter_entry(ref, dirs.get(ref.name)) for ref in parse_adapters(env.get(ENV_ADAPTERS, ""))
        ),
    )


def serving_env(
    s: LauncherSettings, cache_dir: str | None = None, adapters: tuple[AdapterRef, ...] = ()
) -> dict[str, str]:
    """The inverse of settings_from_env: the LLM_* variables the operator writes into the pod
    spec of a runtime-image container. `s.lora_adapters` is ignored; `adapters` says which."""
    env = {ENV_MODEL_ID: s.model_id, ENV_REVISION: s.revision, ENV_NUM_SHARD: str(s.num_shard)}
    if s.quantize and s.quantize != "none":
        env[ENV_QUANTIZE] = s.quantize
    if s.dtype and s.dtype != "auto":
        env[ENV_DTYPE] = s.dtype
    if s.trust_remote_code:
        env[ENV_TRUST_REMOTE_CODE] = "true"
    for name, field_name in _LIMIT_ENV:
        if getattr(s, field_name) is not None:
            env[name] = str(getattr(s, field_name))
    if s.port != DEFAULT_PORT:
        env[ENV_PORT] = str(s.port)
    if s.extra_args:
        env[ENV_EXTRA_ARGS] = json.dumps(list(s.extra_args))
    if cache_dir:
        env[ENV_CACHE_DIR] = cache_dir
    if adapters:
        env[ENV_ADAPTERS] = ",".join(str(a) for a in adapters)
    return env


# The variable each flag `llm-runtime serve` sets comes from, to name it in a refusal.
_ENV_OF_FLAG = {
    "model-id": ENV_MODEL_ID,
    "revision": ENV_REVISION,
    "num-shard": ENV_NUM_SHARD,
    "sharded": ENV_NUM_SHARD,
    "quantize": ENV_QUANTIZE,
    "dtype": ENV_DTYPE,
    "trust-remote-code": ENV_TRUST_REMOTE_CODE,
    "max-input-tokens": ENV_MAX_INPUT_TOKENS,
    "max-input-length": ENV_MAX_INPUT_TOKENS,
    "max-total-tokens": ENV_MAX_TOTAL_TOKENS,
    "max-batch-prefill-tokens": ENV_MAX_BATCH_PREFILL_TOKENS,
    "max-concurrent-requests": ENV_MAX_CONCURRENT_REQUESTS,
    "port": ENV_PORT,
    "lora-adapters": ENV_ADAPTERS,
}


def env_name(flag: tgi_rules.Flag) -> str:
    """How a launcher flag is named to whoever set the LLM_* variables."""
    if flag.name in _ENV_OF_FLAG:
        return _ENV_OF_FLAG[flag.name]
    if flag.owner:
        return f"{flag.option} (set by llm-runtime)"
    return f"{flag.option} in {ENV_EXTRA_ARGS}"


def refusals(s: LauncherSettings, checkpoint: tgi_rules.Checkpoint | None = None) -> list[str]:
    """Why TGI 3.3.7 would refuse these settings (the rules the operator checks too), naming
    the LLM_* variables; empty: it would start."""
    return settings_problems(
        s, checkpoint, env_name, ENV_EXTRA_ARGS, fixed="llm-runtime sets it (listening on every address, logging JSON)"
    )

"""LoRA adapters beside the base model: checks that save a GPU, and how the engine is told.

Pure (the Hub read of an adapter's config is facts/hub.py's adapter_config_from_hub). An adapter whose adapter_config.json names another
base model is reported and left out (TGI would fail to load it, or serve nonsense); the
memory of the rest goes into the plan.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import Any

from llm_common.lora import AdapterRef, adapter_entry, snapshot_dir
from llm_common.modelfacts import ModelFacts
from llm_common.words import plural
from llm_operator import api
from llm_operator.api.conditions import Verdict


# PEFT's short names for the projections of Llama-style blocks, as (in, out) features.
def module_shapes(facts: ModelFacts) -> dict[str, tuple[int, int]]:
    q = facts.num_attention_heads * facts.head_dim
    kv = facts.num_key_value_heads * facts.head_dim
    h, i = facts.hidden_size, facts.intermediate_size
    return {
        "q_proj": (h, q),
        "k_proj": (h, kv),
        "v_proj": (h, kv),
        "o_proj": (q, h),
        "gate_proj": (h, i),
        "up_proj": (h, i),
        "down_proj": (i, h),
    }


_DTYPE_BYTES = {"float32": 4, "bfloat16": 2, "float16": 2}


def adapter_memory_bytes(facts: ModelFacts, config: dict[str, Any]) -> int:
    """rank x (in + out features) x dtype bytes, summed over target modules and layers.
    Unknown module names count as hidden -> hidden; 'all-linear' as every projection."""
    rank = int(config.get("r") or 8)
    targets = config.get("target_modules") or ["q_proj", "v_proj"]
    shapes = module_shapes(facts)
    if targets == "all-linear" or targets == ["all-linear"]:
        targets = list(shapes)
    if isinstance(targets, str):
        targets = [targets]
    per_layer = sum(sum(shapes.get(t, (facts.hidden_size, facts.hidden_size))) for t in targets)
    dtype = _DTYPE_BYTES.get(str(facts.torch_dtype), 2)
    return rank * per_layer * facts.num_layers * dtype


def _repo_name(model_id: str) -> str:
    return model_id.rstrip("/").rsplit("/", 1)[-1].lower()


def base_model_matches(config: dict[str, Any], model_id: str) -> bool:
    """Whether the adapter was trained on this model: the same repo, or the same repo name
    under another owner (a mirror or a re-upload of the same weights)."""
    base = str(config.get("base_model_name_or_path") or "")
    if not base:
        return True  # PEFT leaves it empty for adapters saved from local paths: nothing to check
    return base.lower() == model_id.lower() or _repo_name(base) == _repo_name(model_id)


@dataclass(frozen=True)
class AdapterCheck:
    adapter: api.Adapter
    config: dict[str, Any] | None  # adapter_config.json, None when it could not be read
    problem: str = ""  # why it is not served ("" = served)
    memory_bytes: int = 0


def check_adapter(
    adapter: api.Adapter, config: dict[str, Any] | None, model_id: str, facts: ModelFacts | None
) -> AdapterCheck:
    if config is None:
        return AdapterCheck(adapter, None)
    if not base_model_matches(config, model_id):
        return AdapterCheck(
            adapter,
            config,
            problem=(
                f"adapter {adapter.name} ({adapter.id}) was trained on {config.get('base_model_name_or_path')}, "
                f"not on {model_id}: it is not served."
            ),
        )
    memory = adapter_memory_bytes(facts, config) if facts is not None else 0
    return AdapterCheck(adapter, config, memory_bytes=memory)


def lora_entries(checks: list[AdapterCheck], commits: dict[str, str] | None) -> tuple[str, ...]:
    """The engine's adapter entries (llm_common.lora) of the adapters served: name=path when
    the download Job cached them (the commit it reported), id@revision from the Hub otherwise."""
    out = []
    for c in checks:
        if c.problem:
            continue
        a = c.adapter
        commit = (commits or {}).get(a.name)
        out.append(adapter_entry(AdapterRef(a.name, a.id, a.revision), snapshot_dir(a.id, commit) if commit else None))
    return tuple(out)


def adapters_env(adapters: list[api.Adapter]) -> str:
    """The download Job's ADAPTERS: name=id@revision,..."""
    return ",".join(f"{a.name}={a.id}@{a.revision}" for a in adapters)


# --- the step: the spec's adapters judged against the model's facts ---------------------------


def adapters_memory(
    spec: api.LLMDeploymentSpec, configs: Mapping[str, dict[str, Any] | None]
) -> Callable[[ModelFacts], float]:
    """The memory of the adapters, for the plan: facts -> bytes (an unread config counts 0)."""

    def adapter_bytes(facts: ModelFacts) -> float:
        return sum(check_adapter(a, configs.get(a.name), spec.model.id, facts).memory_bytes for a in spec.adapters)

    return adapter_bytes


def adapters_verdict(checks: list[AdapterCheck]) -> Verdict:
    problems = [c.problem for c in checks if c.problem]
    if problems:
        return Verdict("False", "BaseModelMismatch", " ".join(problems))
    unknown = [c.adapter.name for c in checks if c.config is None]
    note = f" (not checked: adapter_config.json of {', '.join(unknown)} could not be read)" if unknown else ""
    return Verdict("True", "Served", f"Serving {plural(len(checks), 'adapter')}{note}.")


def adapters_status(checks: list[AdapterCheck], commits: Mapping[str, str], cached: bool) -> list[dict[str, Any]]:
    out = []
    for c in checks:
        a = c.adapter
        entry = {
            "name": a.name,
            "id": a.id,
            "revision": a.revision,
            "cached": bool(cached and a.name in commits),
            "served": not c.problem,
            "servedAs": (a.name if cached and a.name in commits else a.id) if not c.problem else "",
        }
        if c.problem:
            entry["message"] = c.problem
        if c.memory_bytes:
            entry["memoryMiB"] = round(c.memory_bytes / 2**20, 1)
        out.append(entry)
    return out


def lora_rank(checks: list[AdapterCheck]) -> int | None:
    """The highest rank among the adapters served; None unless every one of them is known (an
    unread config leaves vLLM its default)."""
    served = [c for c in checks if not c.problem]
    return (
        max(int((c.config or {}).get("r") or 8) for c in served)
        if served and all(c.config is not None for c in served)
        else None
    )


@dataclass(frozen=True)
class Adapters:
    """The spec's adapters as judged: what the engine serves and what status says of them."""

    checks: list[AdapterCheck]
    entries: tuple[str, ...]  # the engine's adapter entries (lora_entries)
    condition: Verdict | None  # AdaptersReady (None: the spec has no adapters)
    status: list[dict[str, Any]]  # status.adapters


def judge_adapters(
    spec: api.LLMDeploymentSpec,
    configs: Mapping[str, dict[str, Any] | None],
    facts: ModelFacts | None,
    commits: dict[str, str],
) -> Adapters:
    """Each adapter checked against the model; `commits`: those the download Job cached."""
    checks = [check_adapter(a, configs.get(a.name), spec.model.id, facts) for a in spec.adapters]
    return Adapters(
        checks=checks,
        entries=lora_entries(checks, commits if spec.cache.enabled else None),
        condition=adapters_verdict(checks) if spec.adapters else None,
        status=adapters_status(checks, commits, spec.cache.enabled),
    )

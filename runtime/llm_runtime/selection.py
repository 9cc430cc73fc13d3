"""Which files of a repository revision the download fetches: pure, from the names the Hub lists."""

from __future__ import annotations

import fnmatch
from collections.abc import Iterable, Mapping
from typing import Any

CONFIG_FILES = ("config.json", "generation_config.json")
TOKENIZER_FILES = (
    "tokenizer.json",
    "tokenizer_config.json",
    "tokenizer.model",
    "special_tokens_map.json",
    "vocab.json",
    "merges.txt",
    "added_tokens.json",
    # Recent transformers keep the chat template beside the tokenizer; /v1/chat/completions needs it.
    "chat_template.json",
    "chat_template.jinja",
    # Vision-language models: TGI builds their processor from these.
    "preprocessor_config.json",
    "processor_config.json",
)
ADAPTER_CONFIG = "adapter_config.json"
ADAPTER_WEIGHTS = "adapter_model.safetensors"
SAFETENSORS_INDEX = "model.safetensors.index.json"
BIN_INDEX = "pytorch_model.bin.index.json"

# TGI skips weight files whose names contain these (training_args.bin and the like), and
# "adapter" for the base model (text_generation_server/utils/hub.py, _weight_files_from_dir).
_NOT_WEIGHTS = ("arguments", "args", "training", "adapter")


def is_weight_name(name: str) -> bool:
    """False for the files TGI skips when it looks for a base model's weights."""
    return not any(word in name for word in _NOT_WEIGHTS)


def _matching(names: Iterable[str], patterns: Iterable[str]) -> list[str]:
    patterns = list(patterns)
    return sorted(n for n in names if any(fnmatch.fnmatch(n, p) for p in patterns))


def select_model_files(
    names: Iterable[str], index: Mapping[str, Any] | None = None, allow_patterns: Iterable[str] | None = None
) -> list[str]:
    """The files of a model repository TGI needs, sorted.

    safetensors when the repository has any (the shards its index names, when it has an
    index), else .bin/.pt; config, generation config and tokenizer files; an adapter's
    files if present. Only top-level files: TGI never reads subfolders (original/ holds
    the same weights in another format). `allow_patterns` replaces these rules."""
    names = list(names)
    if allow_patterns:
        return _matching(names, allow_patterns)
    top = [n for n in names if "/" not in n]
    small = [n for n in top if n in CONFIG_FILES + TOKENIZER_FILES + (ADAPTER_CONFIG, ADAPTER_WEIGHTS)]
    safetensors = [n for n in top if n.endswith(".safetensors") and is_weight_name(n)]
    if safetensors and index is not None:
        listed = set((index.get("weight_map") or {}).values())
        weights = [n for n in safetensors if n in listed] + [SAFETENSORS_INDEX]
    elif safetensors:
        # Mistral repositories ship consolidated.safetensors (for mistral-inference) beside
        # the model-*.safetensors shards: the same weights twice.
        sharded = [n for n in safetensors if n.startswith("model")]
        weights = sharded or safetensors
    else:
        weights = [n for n in top if n.endswith((".bin", ".pt")) and is_weight_name(n)]
        weights += [BIN_INDEX] if BIN_INDEX in top else []
    return sorted(set(small + weights))


def select_adapter_files(names: Iterable[str], allow_patterns: Iterable[str] | None = None) -> list[str]:
    """A LoRA adapter's config and safetensors weights, plus its tokenizer files if it has any."""
    names = list(names)
    if allow_patterns:
        return _matching(names, allow_patterns)
    top = [n for n in names if "/" not in n]
    weights = [n for n in top if n.startswith("adapter_model") and n.endswith(".safetensors")]
    small = [n for n in top if n in (ADAPTER_CONFIG,) + TOKENIZER_FILES]
    return sorted(set(small + weights))

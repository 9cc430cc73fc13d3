"""Model facts: the handful of numbers a memory plan needs, read from a model's config.json.

Pure and stdlib-only, shared by the operator (planning) and the runtime (the download Job
reads facts from what it fetched): config parsing, the parameter count from safetensors
metadata or an index, and an estimate from the architecture when no count is available
(flagged as estimated).
"""

from __future__ import annotations

import dataclasses
import json
from collections.abc import Mapping
from dataclasses import dataclass, field, fields
from pathlib import Path
from typing import Any

# Bytes per element of the dtypes that appear in config.json's torch_dtype, used to turn
# a safetensors index's total_size (bytes) back into a parameter count.
DTYPE_BYTES = {
    "float32": 4,
    "float": 4,
    "bfloat16": 2,
    "float16": 2,
    "half": 2,
    "float8_e4m3fn": 1,
    "float8_e5m2": 1,
    "int8": 1,
    "uint8": 1,
}

# Model types whose attention has q/k/v biases even though config.json does not say so
# (Qwen2's modelling code hard-codes bias=True on q_proj, k_proj and v_proj).
_QKV_BIAS_MODEL_TYPES = {"qwen2", "qwen2_moe", "qwen2_vl"}

# Model types with a plain two-matrix MLP (up, down) instead of a gated one (gate, up, down).
_NON_GATED_MLP_MODEL_TYPES = {
    "falcon",
    "RefinedWeb",
    "RefinedWebModel",
    "gpt_neox",
    "gpt_bigcode",
    "gpt2",
    "starcoder2",
    "bloom",
    "phi",
}

_FALCON_MODEL_TYPES = {"falcon", "RefinedWeb", "RefinedWebModel"}

# Gemma's config classes default tie_word_embeddings to True and their config.json
# files omit it. Falcon's class also defaults to tied, but its checkpoints store
# lm_head separately and TGI loads it, so for memory it counts as untied.
_TIED_BY_DEFAULT_MODEL_TYPES = {"gemma", "gemma2", "gemma3", "gemma3_text"}

# Gemma 2/3 put four RMSNorms in each layer (pre/post attention, pre/post MLP).
_FOUR_NORM_MODEL_TYPES = {"gemma2", "gemma3", "gemma3_text"}

# Qwen3 and Gemma 3 normalise queries and keys per head (q_norm, k_norm: head_dim each).
_QK_NORM_MODEL_TYPES = {"qwen3", "qwen3_moe", "gemma3", "gemma3_text"}

# safetensors dtypes that hold packed quantized weights (GPTQ/AWQ int32, bitsandbytes
# uint8): their element count is not the model's parameter count.
_PACKED_SAFETENSORS_DTYPES = {"I32", "U32", "I16", "U16", "I8", "U8", "I4", "U4"}

# Falcon's config class default when config.json has no max_position_embeddings.
_DEFAULT_MAX_POSITION_EMBEDDINGS = 2048


@dataclass(frozen=True)
class ModelFacts:
    """Architecture numbers of one model revision, as the planner uses them."""

    model_id: str
    revision: str
    num_layers: int
    hidden_size: int
    num_attention_heads: int
    num_key_value_heads: int
    head_dim: int
    vocab_size: int
    max_position_embeddings: int
    torch_dtype: str
    intermediate_size: int
    num_experts: int = 0
    num_experts_per_tok: int = 0
    parameter_count: int | None = None
    parameter_count_estimated: bool = False
    tie_word_embeddings: bool = False
    model_type: str = ""
    # A dict is unhashable: keep it out of the generated __hash__.
    quantization_config: dict[str, Any] | None = field(default=None, hash=False)

    @property
    def short_name(self) -> str:
        """The repository name without its owner, as people say it: 'Meta-Llama-3-70B'."""
        return self.model_id.rsplit("/", 1)[-1] if self.model_id else "the model"

    @property
    def quant_method(self) -> str:
        """The checkpoint's own quantization (quantization_config.quant_method, lower case);
        "" for weights stored unquantized."""
        return str((self.quantization_config or {}).get("quant_method", "")).lower()

    @property
    def embedding_parameters(self) -> int:
        """Parameters in the token embedding plus lm_head (once when they are tied)."""
        return self.vocab_size * self.hidden_size * (1 if self.tie_word_embeddings else 2)

    def to_dict(self) -> dict[str, Any]:
        """JSON-able dict with camelCase keys (what the download Job reports back)."""
        return {_camel(f.name): getattr(self, f.name) for f in fields(self)}

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> ModelFacts:
        """Inverse of to_dict; unknown keys are ignored so older readers accept newer data."""
        by_camel = {_camel(f.name): f.name for f in fields(cls)}
        kwargs = {by_camel[key]: value for key, value in data.items() if key in by_camel}
        return cls(**kwargs)


def _camel(snake: str) -> str:
    head, *rest = snake.split("_")
    return head + "".join(part.capitalize() for part in rest)


@dataclass(frozen=True)
class _Architecture:
    """The structural numbers read from config.json, before any parameter count."""

    model_type: str
    num_layers: int
    hidden_size: int
    num_attention_heads: int
    num_key_value_heads: int
    head_dim: int
    vocab_size: int
    max_position_embeddings: int
    intermediate_size: int
    num_experts: int
    num_experts_per_tok: int
    tie_word_embeddings: bool


def _first(config: Mapping[str, Any], *keys: str, default: Any = None) -> Any:
    """The value of the first key present and not null: configs name things differently."""
    for key in keys:
        if config.get(key) is not None:
            return config[key]
    return default


def _required(config: Mapping[str, Any], *keys: str) -> Any:
    value = _first(config, *keys)
    if value is None:
        raise ValueError(f"config.json has none of {', '.join(keys)}: cannot plan this model")
    return value


def _key_value_heads(config: Mapping[str, Any], model_type: str, heads: int) -> int:
    """KV heads, including Falcon's two historical spellings of multi-query attention."""
    explicit = _first(config, "num_key_value_heads", "num_kv_heads", "n_head_kv")
    if model_type in _FALCON_MODEL_TYPES:
        if config.get("new_decoder_architecture"):
            return int(explicit or heads)
        # Old Falcon (7B): multi_query (the config class default) means one shared KV head.
        return 1 if config.get("multi_query", True) else heads
    return int(explicit or heads)


def _architecture(config: Mapping[str, Any]) -> _Architecture:
    model_type = str(config.get("model_type", ""))
    # Multimodal configs (e.g. Gemma 3) nest the language model under text_config.
    if "text_config" in config and "hidden_size" not in config:
        return _architecture({"model_type": model_type, **config["text_config"]})
    hidden = int(_required(config, "hidden_size", "n_embd", "n_embed", "d_model"))
    heads = int(_required(config, "num_attention_heads", "n_head", "num_heads"))
    num_experts = int(_first(config, "num_local_experts", "num_experts", "n_routed_experts", default=0))
    return _Architecture(
        model_type=model_type,
        num_layers=int(_required(config, "num_hidden_layers", "n_layer", "num_layers")),
        hidden_size=hidden,
        num_attention_heads=heads,
        num_key_value_heads=_key_value_heads(config, model_type, heads),
        head_dim=int(_first(config, "head_dim", default=hidden // heads)),
        vocab_size=int(_required(config, "vocab_size")),
        max_position_embeddings=int(
            _first(
                config,
                "max_position_embeddings",
                "n_positions",
                "max_sequence_length",
                "seq_length",
                default=_DEFAULT_MAX_POSITION_EMBEDDINGS,
            )
        ),
        intermediate_size=int(_first(config, "intermediate_size", "ffn_hidden_size", "n_inner", default=4 * hidden)),
        num_experts=num_experts,
        num_experts_per_tok=int(_first(config, "num_experts_per_tok", "num_experts_per_token", "moe_top_k", default=0))
        if num_experts
        else 0,
        tie_word_embeddings=bool(config.get("tie_word_embeddings", model_type in _TIED_BY_DEFAULT_MODEL_TYPES)),
    )


def _attention_parameters(config: Mapping[str, Any], arch: _Architecture) -> int:
    q_width = arch.num_attention_heads * arch.head_dim
    kv_width = arch.num_key_value_heads * arch.head_dim
    weights = arch.hidden_size * (q_width + 2 * kv_width) + q_width * arch.hidden_size
    has_bias = bool(config.get("attention_bias") or config.get("bias"))
    qkv_bias = has_bias or arch.model_type in _QKV_BIAS_MODEL_TYPES
    biases = (q_width + 2 * kv_width if qkv_bias else 0) + (arch.hidden_size if has_bias else 0)
    return weights + biases


def _mlp_parameters(config: Mapping[str, Any], arch: _Architecture) -> int:
    hidden = arch.hidden_size
    matrices = 2 if arch.model_type in _NON_GATED_MLP_MODEL_TYPES else 3
    if not arch.num_experts:
        return matrices * hidden * arch.intermediate_size
    expert_size = int(_first(config, "moe_intermediate_size", default=arch.intermediate_size))
    router = hidden * arch.num_experts
    experts = arch.num_experts * matrices * hidden * expert_size
    shared_size = int(_first(config, "shared_expert_intermediate_size", default=0))
    # Qwen2-MoE: one always-on shared expert plus a scalar gate for it.
    shared = matrices * hidden * shared_size + hidden if shared_size else 0
    return router + experts + shared


def _norm_parameters_per_layer(config: Mapping[str, Any], arch: _Architecture) -> int:
    if arch.model_type in _FALCON_MODEL_TYPES:
        # LayerNorm has weight and bias; the new decoder has one before attention and one before the MLP.
        norms = 2 if config.get("new_decoder_architecture") else 1
        return norms * 2 * arch.hidden_size
    norms = 4 if arch.model_type in _FOUR_NORM_MODEL_TYPES else 2
    qk_norms = 2 * arch.head_dim if arch.model_type in _QK_NORM_MODEL_TYPES else 0
    return norms * arch.hidden_size + qk_norms


def estimate_parameter_count(config: Mapping[str, Any]) -> int:
    """Parameters from the architecture: embeddings, per-layer attention, MLP or experts,
    norms, final norm, and lm_head unless tied. Exact for the common decoder families
    (Llama, Mistral, Mixtral, Qwen2, Qwen3, Falcon, Phi-3, Gemma 2, Gemma 3 text); an estimate
    for others."""
    arch = _architecture(config)
    per_layer = (
        _attention_parameters(config, arch) + _mlp_parameters(config, arch) + _norm_parameters_per_layer(config, arch)
    )
    final_norm = 2 * arch.hidden_size if arch.model_type in _FALCON_MODEL_TYPES else arch.hidden_size
    embeddings = arch.vocab_size * arch.hidden_size * (1 if arch.tie_word_embeddings else 2)
    return embeddings + arch.num_layers * per_layer + final_norm


def facts_from_config(
    config: Mapping[str, Any],
    parameter_count: int | None,
    model_id: str = "",
    revision: str = "main",
) -> ModelFacts:
    """Facts from a parsed config.json; estimates the parameter count when none is given."""
    arch = _architecture(config)
    estimated = parameter_count is None
    return ModelFacts(
        # Every structural number as _architecture read it (the same field names).
        **dataclasses.asdict(arch),
        model_id=model_id,
        revision=revision,
        # transformers 5 writes "dtype" where older versions wrote "torch_dtype".
        torch_dtype=str(_first(config, "torch_dtype", "dtype", default="float16")),
        parameter_count=estimate_parameter_count(config) if parameter_count is None else int(parameter_count),
        parameter_count_estimated=estimated,
        quantization_config=dict(config["quantization_config"]) if config.get("quantization_config") else None,
    )


def parameter_count_from_safetensors_index(index: Mapping[str, Any], torch_dtype: str = "bfloat16") -> int:
    """Parameters from model.safetensors.index.json: metadata.total_size is in bytes.

    Only meaningful for unquantized checkpoints stored in one dtype (the usual case);
    a few float32 norms in a bfloat16 checkpoint shift the count by a few thousand."""
    total_size = index.get("metadata", {}).get("total_size")
    if total_size is None:
        raise ValueError("safetensors index has no metadata.total_size")
    if torch_dtype not in DTYPE_BYTES:
        raise ValueError(f"unknown torch_dtype {torch_dtype!r}: expected one of {', '.join(DTYPE_BYTES)}")
    return int(total_size) // DTYPE_BYTES[torch_dtype]


def parameter_count_from_safetensors_metadata(metadata: Any) -> int | None:
    """Parameters from what huggingface_hub's get_safetensors_metadata returns (an object
    with a `parameter_count` dict by dtype) or a dict with the same key.

    None when the checkpoint holds packed quantized weights (GPTQ/AWQ int32, bitsandbytes
    uint8): those element counts are not parameters, so the caller should estimate."""
    counts = metadata.get("parameter_count") if isinstance(metadata, Mapping) else metadata.parameter_count
    if not counts or _PACKED_SAFETENSORS_DTYPES & set(counts):
        return None
    return int(sum(counts.values()))


def facts_from_local(
    config_path: str | Path,
    params: int | None = None,
    safetensors_index_path: str | Path | None = None,
    model_id: str | None = None,
) -> ModelFacts:
    """Facts from files on disk. Without a model id, the config's directory name stands in
    (config.json's _name_or_path is often a training machine's path, so it is not used)."""
    config_path = Path(config_path)
    config = json.loads(config_path.read_text())
    if params is None and safetensors_index_path is not None:
        index = json.loads(Path(safetensors_index_path).read_text())
        dtype = str(_first(config, "torch_dtype", "dtype", default="float16"))
        params = parameter_count_from_safetensors_index(index, dtype)
    return facts_from_config(config, params, model_id=model_id or config_path.resolve().parent.name, revision="local")

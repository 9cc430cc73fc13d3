#!/usr/bin/env python3
"""A tiny random-weight Llama model and one LoRA adapter for it, in Hugging Face format, for
serving tests with a real engine: small enough that vLLM's CPU build loads and answers with it
on 2 CPUs in seconds, and real enough that it serves the adapter too.

    python hack/tinymodel.py OUTDIR [--base REPO]

writes

  OUTDIR/tiny-llama/       config.json, model.safetensors (BF16), tokenizer.json (byte-level
                           BPE trained on Debian's GPL-3 text), tokenizer_config.json (with a
                           chat template), special_tokens_map.json, generation_config.json
  OUTDIR/tiny-llama-lora/  adapter_config.json and adapter_model.safetensors as PEFT saves
                           them (rank 8 on q_proj and v_proj, base_model_name_or_path REPO)

head_dim is 64, not smaller: vLLM's CPU attention kernel refuses head_dim 16. The adapter's B
matrices are nonzero (PEFT starts them at zero), so the adapter really changes the outputs.
Every byte is deterministic: weights come from a seeded generator and the safetensors files are
written here by hand. Needs only numpy and tokenizers (no torch, transformers or peft).
"""

from __future__ import annotations

import argparse
import json
import struct
import sys
from pathlib import Path

import numpy as np

TRAINING_TEXT = Path("/usr/share/common-licenses/GPL-3")
SEED = 20240611
WEIGHT_STD = 0.02

NUM_HIDDEN_LAYERS = 2
HIDDEN_SIZE = 256
NUM_ATTENTION_HEADS = 4
NUM_KEY_VALUE_HEADS = 2
HEAD_DIM = 64
INTERMEDIATE_SIZE = 512
VOCAB_SIZE = 1024
MAX_POSITION_EMBEDDINGS = 2048
RMS_NORM_EPS = 1e-5
ROPE_THETA = 10000.0

SPECIAL_TOKENS = ("<s>", "</s>", "<pad>")  # ids 0, 1, 2: trained in first, in this order
BOS_TOKEN, EOS_TOKEN, PAD_TOKEN = SPECIAL_TOKENS
BOS_TOKEN_ID, EOS_TOKEN_ID, PAD_TOKEN_ID = range(len(SPECIAL_TOKENS))

LORA_RANK = 8
LORA_ALPHA = 16
LORA_TARGET_MODULES = ("q_proj", "v_proj")
# Large enough that B @ A * alpha / r is of the order of the base weights.
LORA_STD = 0.05
DEFAULT_BASE_REPO = "test/tiny-llama"

MODEL_DIR = "tiny-llama"
LORA_DIR = "tiny-llama-lora"

CHAT_TEMPLATE = (
    "{{ bos_token }}"
    "{% for message in messages %}"
    "{{ '<|' + message['role'] + '|>\\n' + message['content'] + eos_token + '\\n' }}"
    "{% endfor %}"
    "{% if add_generation_prompt %}{{ '<|assistant|>\\n' }}{% endif %}"
)


def model_config() -> dict:
    return {
        "architectures": ["LlamaForCausalLM"],
        "model_type": "llama",
        "num_hidden_layers": NUM_HIDDEN_LAYERS,
        "hidden_size": HIDDEN_SIZE,
        "num_attention_heads": NUM_ATTENTION_HEADS,
        "num_key_value_heads": NUM_KEY_VALUE_HEADS,
        "head_dim": HEAD_DIM,
        "intermediate_size": INTERMEDIATE_SIZE,
        "vocab_size": VOCAB_SIZE,
        "max_position_embeddings": MAX_POSITION_EMBEDDINGS,
        "rms_norm_eps": RMS_NORM_EPS,
        "rope_theta": ROPE_THETA,
        "rope_scaling": None,
        "hidden_act": "silu",
        "attention_bias": False,
        "mlp_bias": False,
        "initializer_range": WEIGHT_STD,
        "tie_word_embeddings": False,
        "torch_dtype": "bfloat16",
        "use_cache": True,
        "bos_token_id": BOS_TOKEN_ID,
        "eos_token_id": EOS_TOKEN_ID,
        "pad_token_id": PAD_TOKEN_ID,
    }


def model_shapes() -> dict[str, tuple[int, ...]]:
    """Tensor name -> shape, named as transformers' LlamaForCausalLM names them, in the order
    the generator draws them (so each tensor's values depend only on that order)."""
    q_out, kv_out = NUM_ATTENTION_HEADS * HEAD_DIM, NUM_KEY_VALUE_HEADS * HEAD_DIM
    shapes = {"model.embed_tokens.weight": (VOCAB_SIZE, HIDDEN_SIZE)}
    for n in range(NUM_HIDDEN_LAYERS):
        layer = f"model.layers.{n}"
        shapes.update(
            {
                f"{layer}.self_attn.q_proj.weight": (q_out, HIDDEN_SIZE),
                f"{layer}.self_attn.k_proj.weight": (kv_out, HIDDEN_SIZE),
                f"{layer}.self_attn.v_proj.weight": (kv_out, HIDDEN_SIZE),
                f"{layer}.self_attn.o_proj.weight": (HIDDEN_SIZE, q_out),
                f"{layer}.mlp.gate_proj.weight": (INTERMEDIATE_SIZE, HIDDEN_SIZE),
                f"{layer}.mlp.up_proj.weight": (INTERMEDIATE_SIZE, HIDDEN_SIZE),
                f"{layer}.mlp.down_proj.weight": (HIDDEN_SIZE, INTERMEDIATE_SIZE),
                f"{layer}.input_layernorm.weight": (HIDDEN_SIZE,),
                f"{layer}.post_attention_layernorm.weight": (HIDDEN_SIZE,),
            }
        )
    shapes["model.norm.weight"] = (HIDDEN_SIZE,)
    shapes["lm_head.weight"] = (VOCAB_SIZE, HIDDEN_SIZE)
    return shapes


def lora_shapes() -> dict[str, tuple[int, ...]]:
    """Adapter tensor name -> shape, as PEFT saves a LoRA on LlamaForCausalLM."""
    out = {"q_proj": NUM_ATTENTION_HEADS * HEAD_DIM, "v_proj": NUM_KEY_VALUE_HEADS * HEAD_DIM}
    shapes = {}
    for n in range(NUM_HIDDEN_LAYERS):
        for module in LORA_TARGET_MODULES:
            prefix = f"base_model.model.model.layers.{n}.self_attn.{module}"
            shapes[f"{prefix}.lora_A.weight"] = (LORA_RANK, HIDDEN_SIZE)
            shapes[f"{prefix}.lora_B.weight"] = (out[module], LORA_RANK)
    return shapes


def to_bf16_bytes(values: np.ndarray) -> bytes:
    """float32 -> bfloat16 (the upper 16 bits), rounded to nearest even, little-endian."""
    bits = np.ascontiguousarray(values, dtype="<f4").view("<u4").astype(np.uint64)
    rounded = (bits + 0x7FFF + ((bits >> 16) & 1)) >> 16
    return rounded.astype("<u2").tobytes()


DTYPE_BYTES = {"BF16": to_bf16_bytes, "F32": lambda values: np.ascontiguousarray(values, dtype="<f4").tobytes()}


def write_safetensors(path: Path, tensors: dict[str, np.ndarray], dtype: str) -> None:
    """The safetensors layout: u64 LE header length, JSON header (names sorted, with dtype, shape
    and data_offsets), then the tensors' bytes in header order."""
    header: dict = {"__metadata__": {"format": "pt"}}
    blobs, offset = [], 0
    for name in sorted(tensors):
        blob = DTYPE_BYTES[dtype](tensors[name])
        header[name] = {
            "dtype": dtype,
            "shape": list(tensors[name].shape),
            "data_offsets": [offset, offset + len(blob)],
        }
        blobs.append(blob)
        offset += len(blob)
    text = json.dumps(header, sort_keys=True, separators=(",", ":")).encode()
    # Padded with spaces to 8 bytes, as the safetensors library does, so the data stays aligned.
    text += b" " * (-len(text) % 8)
    with path.open("wb") as f:
        f.write(struct.pack("<Q", len(text)))
        f.write(text)
        for blob in blobs:
            f.write(blob)


def read_safetensors_header(path: Path) -> dict:
    with path.open("rb") as f:
        (length,) = struct.unpack("<Q", f.read(8))
        return json.loads(f.read(length))


def model_weights(rng: np.random.Generator) -> dict[str, np.ndarray]:
    weights = {}
    for name, shape in model_shapes().items():
        if name.endswith("norm.weight"):
            weights[name] = np.ones(shape, dtype=np.float32)
        else:
            weights[name] = (rng.standard_normal(shape, dtype=np.float32) * WEIGHT_STD).astype(np.float32)
    return weights


def lora_weights(rng: np.random.Generator) -> dict[str, np.ndarray]:
    return {
        name: (rng.standard_normal(shape, dtype=np.float32) * LORA_STD).astype(np.float32)
        for name, shape in lora_shapes().items()
    }


def train_tokenizer(path: Path) -> None:
    """A byte-level BPE of VOCAB_SIZE tokens, trained on TRAINING_TEXT, saved as tokenizer.json.
    The trainer breaks ties between equally frequent pairs by the pair itself, so the result does
    not depend on thread count (checked with RAYON_NUM_THREADS 1 to 4)."""
    from tokenizers import Tokenizer, decoders, models, pre_tokenizers, processors, trainers

    if not TRAINING_TEXT.is_file():
        raise SystemExit(
            f"{TRAINING_TEXT} is missing: the tokenizer is trained on it (Debian's base-files package ships it)"
        )
    tokenizer = Tokenizer(models.BPE())
    tokenizer.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False)
    tokenizer.decoder = decoders.ByteLevel()
    trainer = trainers.BpeTrainer(
        vocab_size=VOCAB_SIZE,
        special_tokens=list(SPECIAL_TOKENS),
        show_progress=False,
        initial_alphabet=pre_tokenizers.ByteLevel.alphabet(),
    )
    tokenizer.train([str(TRAINING_TEXT)], trainer)
    if tokenizer.get_vocab_size() != VOCAB_SIZE:
        raise SystemExit(f"the tokenizer trained to {tokenizer.get_vocab_size()} tokens, not {VOCAB_SIZE}")
    # A leading <s> on every encoding, as Llama's tokenizers add it.
    tokenizer.post_processor = processors.TemplateProcessing(
        single=f"{BOS_TOKEN} $A", pair=f"{BOS_TOKEN} $A {BOS_TOKEN} $B:1", special_tokens=[(BOS_TOKEN, BOS_TOKEN_ID)]
    )
    tokenizer.save(str(path))


def write_json(path: Path, data: dict) -> None:
    path.write_text(json.dumps(data, indent=2, sort_keys=True) + "\n")


def make(outdir: Path, base_repo: str = DEFAULT_BASE_REPO) -> dict[str, Path]:
    """Write the model and the adapter under `outdir`; return their directories."""
    model_dir, lora_dir = Path(outdir) / MODEL_DIR, Path(outdir) / LORA_DIR
    model_dir.mkdir(parents=True, exist_ok=True)
    lora_dir.mkdir(parents=True, exist_ok=True)

    rng = np.random.default_rng(SEED)
    write_safetensors(model_dir / "model.safetensors", model_weights(rng), "BF16")
    write_json(model_dir / "config.json", model_config())
    train_tokenizer(model_dir / "tokenizer.json")
    specials = {"bos_token": BOS_TOKEN, "eos_token": EOS_TOKEN, "pad_token": PAD_TOKEN}
    write_json(
        model_dir / "tokenizer_config.json",
        {
            "tokenizer_class": "PreTrainedTokenizerFast",
            **specials,
            "model_max_length": MAX_POSITION_EMBEDDINGS,
            "clean_up_tokenization_spaces": False,
            "chat_template": CHAT_TEMPLATE,
        },
    )
    write_json(model_dir / "special_tokens_map.json", specials)
    write_json(
        model_dir / "generation_config.json",
        {"bos_token_id": BOS_TOKEN_ID, "eos_token_id": EOS_TOKEN_ID, "pad_token_id": PAD_TOKEN_ID, "do_sample": False},
    )

    # F32: vLLM's LoRA loader casts adapter tensors to its LoRA dtype whatever they are stored as.
    write_safetensors(lora_dir / "adapter_model.safetensors", lora_weights(rng), "F32")
    write_json(
        lora_dir / "adapter_config.json",
        {
            "peft_type": "LORA",
            "task_type": "CAUSAL_LM",
            "r": LORA_RANK,
            "lora_alpha": LORA_ALPHA,
            "lora_dropout": 0.0,
            "target_modules": list(LORA_TARGET_MODULES),
            "bias": "none",
            "base_model_name_or_path": base_repo,
            "fan_in_fan_out": False,
            "inference_mode": True,
        },
    )
    return {"model": model_dir, "lora": lora_dir}


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("outdir", type=Path)
    parser.add_argument("--base", default=DEFAULT_BASE_REPO, help="the adapter's base_model_name_or_path")
    args = parser.parse_args(argv)
    for kind, path in make(args.outdir, args.base).items():
        print(f"{kind}: {path}")
    return 0


if __name__ == "__main__":
    sys.exit(main())

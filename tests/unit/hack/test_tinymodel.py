"""hack/tinymodel.py: the tiny Llama and its LoRA adapter, checked by reading back what it wrote."""

from __future__ import annotations

import hashlib
import json
import struct
from pathlib import Path

import numpy as np
import pytest
import tokenizers

import tinymodel


@pytest.fixture(scope="module")
def made(tmp_path_factory) -> dict[str, Path]:
    return tinymodel.make(tmp_path_factory.mktemp("tiny"))


def digests(root: Path) -> dict[str, str]:
    return {
        str(p.relative_to(root)): hashlib.sha256(p.read_bytes()).hexdigest()
        for p in sorted(root.rglob("*"))
        if p.is_file()
    }


def tensors(path: Path) -> tuple[dict, bytes]:
    """The header (less __metadata__) and the data section of a safetensors file."""
    raw = path.read_bytes()
    (length,) = struct.unpack("<Q", raw[:8])
    header = json.loads(raw[8 : 8 + length])
    header.pop("__metadata__", None)
    return header, raw[8 + length :]


def bf16_values(data: bytes, entry: dict) -> np.ndarray:
    start, end = entry["data_offsets"]
    upper = np.frombuffer(data[start:end], dtype="<u2").astype(np.uint32) << 16
    return upper.view(np.float32).reshape(entry["shape"])


def test_two_runs_write_identical_bytes(tmp_path):
    first, second = tinymodel.make(tmp_path / "a"), tinymodel.make(tmp_path / "b")
    a, b = digests(tmp_path / "a"), digests(tmp_path / "b")
    assert a == b
    assert {
        "tiny-llama/model.safetensors",
        "tiny-llama/tokenizer.json",
        "tiny-llama/config.json",
        "tiny-llama/tokenizer_config.json",
        "tiny-llama/special_tokens_map.json",
        "tiny-llama/generation_config.json",
        "tiny-llama-lora/adapter_config.json",
        "tiny-llama-lora/adapter_model.safetensors",
    } == set(a)
    assert first == {"model": tmp_path / "a" / "tiny-llama", "lora": tmp_path / "a" / "tiny-llama-lora"}
    assert second["model"] == tmp_path / "b" / "tiny-llama"


def test_config_describes_a_small_llama(made):
    config = json.loads((made["model"] / "config.json").read_text())
    assert config["architectures"] == ["LlamaForCausalLM"] and config["model_type"] == "llama"
    assert config["head_dim"] * config["num_attention_heads"] == config["hidden_size"]
    assert config["head_dim"] == 64
    assert config["max_position_embeddings"] == tinymodel.MAX_POSITION_EMBEDDINGS == 2048
    assert config["torch_dtype"] == "bfloat16" and config["tie_word_embeddings"] is False
    assert (config["bos_token_id"], config["eos_token_id"]) == (0, 1)


def test_weights_match_the_config(made):
    config = json.loads((made["model"] / "config.json").read_text())
    header, data = tensors(made["model"] / "model.safetensors")
    hidden, inter, vocab = config["hidden_size"], config["intermediate_size"], config["vocab_size"]
    q_out = config["num_attention_heads"] * config["head_dim"]
    kv_out = config["num_key_value_heads"] * config["head_dim"]
    want = {
        "model.embed_tokens.weight": [vocab, hidden],
        "model.norm.weight": [hidden],
        "lm_head.weight": [vocab, hidden],
    }
    for n in range(config["num_hidden_layers"]):
        want |= {
            f"model.layers.{n}.self_attn.q_proj.weight": [q_out, hidden],
            f"model.layers.{n}.self_attn.k_proj.weight": [kv_out, hidden],
            f"model.layers.{n}.self_attn.v_proj.weight": [kv_out, hidden],
            f"model.layers.{n}.self_attn.o_proj.weight": [hidden, q_out],
            f"model.layers.{n}.mlp.gate_proj.weight": [inter, hidden],
            f"model.layers.{n}.mlp.up_proj.weight": [inter, hidden],
            f"model.layers.{n}.mlp.down_proj.weight": [hidden, inter],
            f"model.layers.{n}.input_layernorm.weight": [hidden],
            f"model.layers.{n}.post_attention_layernorm.weight": [hidden],
        }
    assert {name: entry["shape"] for name, entry in header.items()} == want
    assert {entry["dtype"] for entry in header.values()} == {"BF16"}
    # Offsets tile the data section in name order, with nothing left over.
    spans = [header[name]["data_offsets"] for name in sorted(header)]
    assert spans[0][0] == 0 and spans[-1][1] == len(data)
    assert all(prev[1] == nxt[0] for prev, nxt in zip(spans, spans[1:]))
    assert all(
        end - start == 2 * int(np.prod(header[name]["shape"])) for name, (start, end) in zip(sorted(header), spans)
    )
    assert (bf16_values(data, header["model.norm.weight"]) == 1.0).all()
    q = bf16_values(data, header["model.layers.0.self_attn.q_proj.weight"])
    assert 0.015 < float(q.std()) < 0.025 and abs(float(q.mean())) < 0.002


def test_bf16_rounds_to_nearest_even():
    values = np.array([1.0, -2.0, 1 + 2**-8, 1 + 3 * 2**-8, 1 + 2**-8 + 2**-20], dtype=np.float32)
    halves = np.frombuffer(tinymodel.to_bf16_bytes(values), dtype="<u2")
    # Ties go to the even neighbour (0x3F80 down, 0x3F82 up); past a tie rounds up.
    assert halves.tolist() == [0x3F80, 0xC000, 0x3F80, 0x3F82, 0x3F81]


def test_tokenizer_round_trips_a_sentence(made):
    tok = tokenizers.Tokenizer.from_file(str(made["model"] / "tokenizer.json"))
    assert tok.get_vocab_size() == json.loads((made["model"] / "config.json").read_text())["vocab_size"]
    assert [tok.token_to_id(t) for t in ("<s>", "</s>", "<pad>")] == [0, 1, 2]
    sentence = "The quick brown fox, naïve as ever, copies free software — 42 times!"
    ids = tok.encode(sentence).ids
    assert ids[0] == 0 and len(ids) < len(sentence.encode())
    assert tok.decode(ids) == sentence


def test_tokenizer_config_names_the_special_tokens(made):
    config = json.loads((made["model"] / "tokenizer_config.json").read_text())
    assert config["tokenizer_class"] == "PreTrainedTokenizerFast"
    assert (config["bos_token"], config["eos_token"], config["pad_token"]) == ("<s>", "</s>", "<pad>")
    assert config["model_max_length"] == 2048
    assert "add_generation_prompt" in config["chat_template"]


def test_chat_template_renders_roles_and_generation_prompt(made):
    # The engines render it with jinja2, which the operator's own environment does not carry.
    import jinja2

    config = json.loads((made["model"] / "tokenizer_config.json").read_text())
    template = jinja2.Environment().from_string(config["chat_template"])
    messages = [{"role": "system", "content": "Be brief."}, {"role": "user", "content": "Hi"}]
    text = template.render(messages=messages, bos_token="<s>", eos_token="</s>", add_generation_prompt=True)
    assert text == "<s><|system|>\nBe brief.</s>\n<|user|>\nHi</s>\n<|assistant|>\n"
    assert not template.render(messages=messages, bos_token="<s>", eos_token="</s>").endswith("<|assistant|>\n")


def test_adapter_is_a_nonzero_peft_lora(made, tmp_path):
    adapter = json.loads((made["lora"] / "adapter_config.json").read_text())
    assert adapter["base_model_name_or_path"] == "test/tiny-llama"
    assert (adapter["peft_type"], adapter["task_type"], adapter["r"], adapter["lora_alpha"]) == (
        "LORA",
        "CAUSAL_LM",
        8,
        16,
    )
    assert adapter["target_modules"] == ["q_proj", "v_proj"]
    header, data = tensors(made["lora"] / "adapter_model.safetensors")
    want = {}
    for n in range(tinymodel.NUM_HIDDEN_LAYERS):
        for module, out in (("q_proj", 256), ("v_proj", 128)):
            prefix = f"base_model.model.model.layers.{n}.self_attn.{module}"
            want |= {f"{prefix}.lora_A.weight": [8, 256], f"{prefix}.lora_B.weight": [out, 8]}
    assert {name: entry["shape"] for name, entry in header.items()} == want
    assert {entry["dtype"] for entry in header.values()} == {"F32"}
    for name, entry in header.items():
        start, end = entry["data_offsets"]
        assert end - start == 4 * int(np.prod(entry["shape"]))
        assert np.abs(np.frombuffer(data[start:end], dtype="<f4")).min() > 0, f"{name} has zeros"
    other = json.loads((tinymodel.make(tmp_path, base_repo="acme/other")["lora"] / "adapter_config.json").read_text())
    assert other["base_model_name_or_path"] == "acme/other"


def test_cli_writes_both_directories(tmp_path, capsys):
    assert tinymodel.main([str(tmp_path), "--base", "acme/base"]) == 0
    assert f"model: {tmp_path / 'tiny-llama'}" in capsys.readouterr().out
    assert (
        json.loads((tmp_path / "tiny-llama-lora" / "adapter_config.json").read_text())["base_model_name_or_path"]
        == "acme/base"
    )

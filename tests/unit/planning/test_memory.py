"""Memory arithmetic: literal model facts in, literal bytes, bits and shard counts out."""

import json

import pytest
from data_models import MODEL_IDS, MODELS, PARAMS, facts, llama_405b

from llm_operator.facts.hub import facts_from_config
from llm_operator.planning.memory import (
    bits_per_weight,
    effective_quantization,
    kv_cache_bytes_per_token,
    layers_per_node,
    pipeline_buffer_bytes,
    stage_weights_bytes,
    valid_shard_counts,
    weights_bytes,
)


def test_every_model_in_the_data_has_a_parameter_count():
    assert sorted(PARAMS) == sorted(MODEL_IDS)


def test_four_bit_formats_keep_embeddings_and_lm_head_in_16_bit():
    model = facts("llama-3-8b")
    embeddings = 2 * 128256 * 4096
    assert weights_bytes(model, "awq") == (8030261248 - embeddings) * 4.15625 / 8 + embeddings * 2


@pytest.mark.parametrize(
    "short_name, bytes_per_token",
    [
        ("llama-3-70b", 80 * 2 * 8 * 128 * 2),  # 327680
        ("llama-2-7b", 32 * 2 * 32 * 128 * 2),  # no GQA: 524288
        ("qwen2.5-7b", 28 * 2 * 4 * 128 * 2),  # 57344
        ("gemma-2-9b", 42 * 2 * 8 * 256 * 2),  # explicit head_dim 256
        ("phi-3-mini-4k", 32 * 2 * 32 * 96 * 2),
    ],
)
def test_kv_cache_bytes_per_token(short_name, bytes_per_token):
    assert kv_cache_bytes_per_token(facts(short_name)) == bytes_per_token


def test_kv_cache_splits_across_shards_and_halves_at_fp8():
    model = facts("llama-3-70b")
    assert kv_cache_bytes_per_token(model, None, num_shard=2) == 163840
    assert kv_cache_bytes_per_token(model, "fp8_e4m3fn", num_shard=2) == 81920


def test_multi_query_kv_head_is_replicated_not_split():
    falcon_7b = facts_from_config(
        {
            "model_type": "falcon",
            "hidden_size": 4544,
            "num_attention_heads": 71,
            "num_hidden_layers": 32,
            "multi_query": True,
            "vocab_size": 65024,
        },
        7_000_000_000,
    )
    assert kv_cache_bytes_per_token(falcon_7b, None, num_shard=1) == 32 * 2 * 1 * 64 * 2
    assert kv_cache_bytes_per_token(falcon_7b, None, num_shard=71) == 32 * 2 * 1 * 64 * 2


@pytest.mark.parametrize(
    "short_name, counts",
    [
        ("qwen2.5-7b", (1, 2, 4)),
        ("falcon-40b", (1, 2, 4, 8)),
        ("gemma-2-9b", (1, 2, 4, 8)),
    ],
)
def test_valid_shard_counts_divide_heads_and_kv_heads(short_name, counts):
    assert valid_shard_counts(facts(short_name), "none") == counts


def test_odd_divisors_up_to_eight_are_valid_shard_counts():
    model = facts_from_config(
        {"hidden_size": 768, "num_attention_heads": 12, "num_hidden_layers": 12, "vocab_size": 50000}, 100_000_000
    )
    assert valid_shard_counts(model, "none") == (1, 2, 3, 4, 6)


@pytest.mark.parametrize(
    "quantization_config, expected",
    [
        ({"quant_method": "gptq", "bits": 4, "group_size": 128}, "gptq"),
        ({"quant_method": "awq", "bits": 4, "group_size": 128}, "awq"),
        ({"quant_method": "fp8", "activation_scheme": "dynamic"}, "fp8"),
        ({"quant_method": "compressed-tensors"}, "compressed-tensors"),
        ({"quant_method": "bitsandbytes", "load_in_4bit": True, "bnb_4bit_quant_type": "nf4"}, "bitsandbytes-nf4"),
        ({"quant_method": "bitsandbytes", "load_in_8bit": True}, "bitsandbytes"),
    ],
)
def test_pre_quantized_checkpoint_uses_its_own_method(quantization_config, expected):
    config = {
        **json.loads((MODELS / "mistral-7b" / "config.json").read_text()),
        "quantization_config": quantization_config,
    }
    model = facts_from_config(config, 7241732096)
    assert effective_quantization(model, "none") == expected
    assert effective_quantization(model, "eetq") == "eetq"  # an explicit choice wins


@pytest.mark.parametrize(
    "quantization, bits",
    [
        ("none", 16.0),
        ("gptq", 4.15625),
        ("awq", 4.15625),
        ("marlin", 4.125),
        ("eetq", 8.0),
        ("fp8", 8.0),
        ("bitsandbytes", 8.0),
        ("bitsandbytes-nf4", 4.126953125),
        ("bitsandbytes-fp4", 4.126953125),
        ("exl2", 4.0),
        ("compressed-tensors", 8.0),
    ],
)
def test_bits_per_weight_table(quantization, bits):
    assert bits_per_weight(facts("mistral-7b"), quantization) == bits


def test_bits_per_weight_read_from_quantization_config():
    base = json.loads((MODELS / "mistral-7b" / "config.json").read_text())
    gptq_8bit = facts_from_config(
        {**base, "quantization_config": {"quant_method": "gptq", "bits": 8, "group_size": 32}}, 1
    )
    exl2 = facts_from_config({**base, "quantization_config": {"quant_method": "exl2", "bits": 6.5}}, 1)
    w4a16 = facts_from_config(
        {
            **base,
            "quantization_config": {
                "quant_method": "compressed-tensors",
                "config_groups": {"group_0": {"weights": {"num_bits": 4, "group_size": 128}, "targets": ["Linear"]}},
            },
        },
        1,
    )
    assert bits_per_weight(gptq_8bit, "gptq") == 8 + 24 / 32
    assert bits_per_weight(exl2, "exl2") == 6.5
    assert bits_per_weight(w4a16, "compressed-tensors") == 4.125


# A small model with tied embeddings and an odd layer count, to see the uneven split.
TIED_5_LAYERS = {
    "model_type": "qwen2",
    "hidden_size": 1024,
    "intermediate_size": 2816,
    "num_attention_heads": 16,
    "num_key_value_heads": 2,
    "num_hidden_layers": 5,
    "vocab_size": 1000,
    "tie_word_embeddings": True,
    "max_position_embeddings": 4096,
}


@pytest.mark.parametrize("nodes, layers", [(1, 5), (2, 3), (3, 2), (4, 2), (5, 1)])
def test_the_heaviest_stage_holds_the_rounded_up_share_of_layers(nodes, layers):
    assert layers_per_node(facts_from_config(TIED_5_LAYERS, 100_000_000), nodes) == layers


def test_stage_weights_hold_their_layers_and_one_embedding_matrix():
    tied = facts_from_config(TIED_5_LAYERS, 100_000_000)
    untied = facts_from_config({**TIED_5_LAYERS, "tie_word_embeddings": False}, 100_000_000)
    # Tied: 1000 x 1024 embedding parameters, 98,976,000 in the decoder; 3 of its 5 layers on the
    # heaviest stage, plus the one matrix (each end stage keeps its own copy).
    assert stage_weights_bytes(tied, "none", 2) == 98_976_000 * 2 * 3 / 5 + 1_024_000 * 2
    # Quantized, the decoder shrinks and the matrix stays 16-bit: 98,976,000 x 4.15625 / 8 x 3/5 + 2,048,000.
    assert stage_weights_bytes(tied, "awq", 2) == 32_900_675
    # Untied: embed_tokens on the first stage, lm_head on the last, one matrix on either.
    assert stage_weights_bytes(untied, "none", 2) == 97_952_000 * 2 * 3 / 5 + 1_024_000 * 2
    # One node holds everything, as weights_bytes counts it.
    assert stage_weights_bytes(untied, "awq", 1) == weights_bytes(untied, "awq")


def test_kv_cache_counts_the_stage_layers_only():
    model = llama_405b()
    assert kv_cache_bytes_per_token(model, None, num_shard=8) == 126 * 2 * 1 * 128 * 2
    assert kv_cache_bytes_per_token(model, None, num_shard=8, layers=63) == 63 * 2 * 1 * 128 * 2  # 32256
    assert kv_cache_bytes_per_token(model, "fp8_e5m2", num_shard=4, layers=42) == 42 * 2 * 2 * 128 * 1


def test_pipeline_buffers_only_across_nodes():
    model = llama_405b()
    assert pipeline_buffer_bytes(model, 8192, 1) == 0
    assert pipeline_buffer_bytes(model, 8192, 2) == 8192 * 2 * 16384 * 2  # hidden states and residual, 16-bit

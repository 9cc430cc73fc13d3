"""Model facts from config.json, safetensors metadata and a (local, fake) Hugging Face Hub."""

import json
import socket
from pathlib import Path
from types import SimpleNamespace

import pytest

from llm_operator.facts.hub import (
    ModelFacts,
    ModelFactsUnavailable,
    ModelMissing,
    estimate_parameter_count,
    facts_from_config,
    facts_from_hub,
    facts_from_local,
    parameter_count_from_safetensors_index,
    parameter_count_from_safetensors_metadata,
)
from support.hub import HubServer, safetensors_header_only

MODELS = Path(__file__).parents[2] / "data" / "models"
PARAMS = json.loads((MODELS / "params.json").read_text())


def config_of(short_name):
    return json.loads((MODELS / short_name / "config.json").read_text())


# short name: layers, hidden, heads, kv heads, head_dim, vocab, context, dtype, intermediate, experts, experts/token, tied
EXPECTED_FACTS = {
    "llama-2-7b": (32, 4096, 32, 32, 128, 32000, 4096, "float16", 11008, 0, 0, False),
    "llama-2-70b": (80, 8192, 64, 8, 128, 32000, 4096, "float16", 28672, 0, 0, False),
    "llama-3-8b": (32, 4096, 32, 8, 128, 128256, 8192, "bfloat16", 14336, 0, 0, False),
    "llama-3-70b": (80, 8192, 64, 8, 128, 128256, 8192, "bfloat16", 28672, 0, 0, False),
    "llama-3.1-405b": (126, 16384, 128, 8, 128, 128256, 131072, "bfloat16", 53248, 0, 0, False),
    "mistral-7b": (32, 4096, 32, 8, 128, 32000, 32768, "bfloat16", 14336, 0, 0, False),
    "mixtral-8x7b": (32, 4096, 32, 8, 128, 32000, 32768, "bfloat16", 14336, 8, 2, False),
    "qwen2.5-7b": (28, 3584, 28, 4, 128, 152064, 131072, "bfloat16", 18944, 0, 0, False),
    "qwen2.5-72b": (80, 8192, 64, 8, 128, 152064, 131072, "bfloat16", 29568, 0, 0, False),
    "falcon-40b": (60, 8192, 128, 8, 64, 65024, 2048, "bfloat16", 32768, 0, 0, False),
    "phi-3-mini-4k": (32, 3072, 32, 32, 96, 32064, 4096, "bfloat16", 8192, 0, 0, False),
    "gemma-2-9b": (42, 3584, 16, 8, 256, 256000, 8192, "float32", 14336, 0, 0, True),
}


@pytest.mark.parametrize("short_name", sorted(EXPECTED_FACTS))
def test_facts_from_config(short_name):
    facts = facts_from_config(config_of(short_name), PARAMS[short_name])
    assert (
        facts.num_layers,
        facts.hidden_size,
        facts.num_attention_heads,
        facts.num_key_value_heads,
        facts.head_dim,
        facts.vocab_size,
        facts.max_position_embeddings,
        facts.torch_dtype,
        facts.intermediate_size,
        facts.num_experts,
        facts.num_experts_per_tok,
        facts.tie_word_embeddings,
    ) == EXPECTED_FACTS[short_name]
    assert facts.parameter_count == PARAMS[short_name]
    assert facts.parameter_count_estimated is False


@pytest.mark.parametrize("short_name", sorted(PARAMS))
def test_architecture_estimate_matches_the_published_count(short_name):
    # Exact for these families: embeddings, attention (+Qwen2 qkv bias), MLP or experts and
    # router, norms (Gemma 2 has four per layer, Falcon LayerNorms carry a bias), lm_head
    # unless tied. falcon-40b's checkpoint stores lm_head separately: 41,835,970,560.
    assert estimate_parameter_count(config_of(short_name)) == PARAMS[short_name]


def test_missing_count_is_estimated_and_says_so():
    facts = facts_from_config(config_of("mixtral-8x7b"), None, model_id="mistralai/Mixtral-8x7B-v0.1")
    assert facts.parameter_count == 46_702_792_704  # "8x7B" is 46.7B: attention and embeddings are shared
    assert facts.parameter_count_estimated is True


def test_old_falcon_names_give_the_same_facts():
    # tiiuae/falcon-40b's config.json before the in-library Falcon port (RefinedWeb names).
    refined_web = {
        "alibi": False,
        "apply_residual_connection_post_layernorm": False,
        "architectures": ["RWForCausalLM"],
        "bias": False,
        "bos_token_id": 1,
        "eos_token_id": 2,
        "hidden_dropout": 0.0,
        "hidden_size": 8192,
        "initializer_range": 0.02,
        "layer_norm_epsilon": 1e-05,
        "model_type": "RefinedWeb",
        "n_head": 128,
        "n_head_kv": 8,
        "n_layer": 60,
        "parallel_attn": True,
        "torch_dtype": "bfloat16",
        "transformers_version": "4.27.4",
        "use_cache": True,
        "vocab_size": 65024,
    }
    # RefinedWeb always used the new decoder for 40B; the later config says so explicitly.
    old = facts_from_config({**refined_web, "new_decoder_architecture": True}, None)
    new = facts_from_config(config_of("falcon-40b"), None)
    assert (old.num_layers, old.num_attention_heads, old.num_key_value_heads, old.head_dim) == (60, 128, 8, 64)
    assert old.parameter_count == new.parameter_count == 41_835_970_560


def test_falcon_7b_multi_query_has_one_kv_head():
    falcon_7b = {
        "model_type": "falcon",
        "hidden_size": 4544,
        "num_attention_heads": 71,
        "num_hidden_layers": 32,
        "multi_query": True,
        "new_decoder_architecture": False,
        "vocab_size": 65024,
        "parallel_attn": True,
    }
    facts = facts_from_config(falcon_7b, None)
    assert (facts.num_key_value_heads, facts.head_dim, facts.intermediate_size) == (1, 64, 18176)
    # tiiuae/falcon-7b's checkpoint count (7.22B, lm_head stored separately).
    assert facts.parameter_count == 7_217_189_760


def test_head_dim_defaults_to_hidden_over_heads_unless_explicit():
    assert facts_from_config(config_of("phi-3-mini-4k"), 1).head_dim == 3072 // 32
    assert facts_from_config(config_of("gemma-2-9b"), 1).head_dim == 256  # not 3584 // 16 = 224


def test_quantization_config_is_kept():
    config = {**config_of("mistral-7b"), "quantization_config": {"quant_method": "awq", "bits": 4, "group_size": 128}}
    assert facts_from_config(config, 1).quantization_config == {"quant_method": "awq", "bits": 4, "group_size": 128}
    assert facts_from_config(config_of("mistral-7b"), 1).quantization_config is None


def test_to_dict_is_camel_case_and_round_trips():
    facts = facts_from_config(config_of("llama-3-8b"), 8030261248, model_id="meta-llama/Meta-Llama-3-8B")
    data = facts.to_dict()
    assert data == {
        "modelId": "meta-llama/Meta-Llama-3-8B",
        "revision": "main",
        "numLayers": 32,
        "hiddenSize": 4096,
        "numAttentionHeads": 32,
        "numKeyValueHeads": 8,
        "headDim": 128,
        "vocabSize": 128256,
        "maxPositionEmbeddings": 8192,
        "torchDtype": "bfloat16",
        "intermediateSize": 14336,
        "numExperts": 0,
        "numExpertsPerTok": 0,
        "parameterCount": 8030261248,
        "parameterCountEstimated": False,
        "tieWordEmbeddings": False,
        "modelType": "llama",
        "quantizationConfig": None,
    }
    assert ModelFacts.from_dict(json.loads(json.dumps(data))) == facts
    assert ModelFacts.from_dict({**data, "someFutureField": 1}) == facts


def test_facts_are_hashable_even_with_a_quantization_config():
    config = {**config_of("mistral-7b"), "quantization_config": {"quant_method": "gptq"}}
    assert len({facts_from_config(config, 1), facts_from_config(config, 1)}) == 1


def test_parameter_count_from_safetensors_index():
    assert parameter_count_from_safetensors_index({"metadata": {"total_size": 16060522496}}, "bfloat16") == 8030261248
    # gemma-2-9b ships float32 weights: 4 bytes a parameter.
    assert parameter_count_from_safetensors_index({"metadata": {"total_size": 36966823936}}, "float32") == 9241705984


def test_parameter_count_from_safetensors_index_without_total_size():
    with pytest.raises(ValueError, match="no metadata.total_size"):
        parameter_count_from_safetensors_index({"weight_map": {}}, "bfloat16")


def test_parameter_count_from_safetensors_metadata():
    assert parameter_count_from_safetensors_metadata({"parameter_count": {"BF16": 8030261248}}) == 8030261248
    as_returned = SimpleNamespace(parameter_count={"BF16": 9241700000, "F32": 5984})
    assert parameter_count_from_safetensors_metadata(as_returned) == 9241705984
    # A GPTQ checkpoint: int32 words each hold eight 4-bit weights, so counts are not parameters.
    assert parameter_count_from_safetensors_metadata({"parameter_count": {"I32": 880000000, "F16": 300000000}}) is None


def test_facts_from_local_with_a_safetensors_index(tmp_path):
    index = tmp_path / "model.safetensors.index.json"
    index.write_text(json.dumps({"metadata": {"total_size": 141107412992}, "weight_map": {}}))
    facts = facts_from_local(MODELS / "llama-3-70b" / "config.json", safetensors_index_path=index)
    assert facts.parameter_count == 70553706496
    assert facts.parameter_count_estimated is False
    assert facts.model_id == "llama-3-70b"  # the directory name, when no id is given


def test_facts_from_local_given_params_and_id():
    facts = facts_from_local(MODELS / "qwen2.5-7b" / "config.json", 7615616512, model_id="Qwen/Qwen2.5-7B")
    assert (facts.model_id, facts.parameter_count, facts.short_name) == ("Qwen/Qwen2.5-7B", 7615616512, "Qwen2.5-7B")


# --- the Hub path, against a local server that speaks the Hub's file protocol ----------------


def llama_3_8b_repo():
    """Meta-Llama-3-8B as two shards whose tensor shapes add up to its 8,030,261,248 parameters."""
    shard_1 = "model-00001-of-00002.safetensors"
    shard_2 = "model-00002-of-00002.safetensors"
    index = {
        "metadata": {"total_size": 16060522496},
        "weight_map": {
            "model.embed_tokens.weight": shard_1,
            "lm_head.weight": shard_2,
            "model.layers.all": shard_2,
            "model.norm.weight": shard_2,
        },
    }
    return {
        "config.json": (MODELS / "llama-3-8b" / "config.json").read_bytes(),
        "model.safetensors.index.json": json.dumps(index).encode(),
        shard_1: safetensors_header_only({"model.embed_tokens.weight": ("BF16", [128256, 4096])}),
        shard_2: safetensors_header_only(
            {
                "lm_head.weight": ("BF16", [128256, 4096]),
                "model.layers.all": ("BF16", [32, 218112000]),  # 32 layers of 218,112,000 parameters
                "model.norm.weight": ("BF16", [4096]),
            }
        ),
    }


@pytest.fixture
def hub():
    server = HubServer(
        {
            "meta-llama/Meta-Llama-3-8B": llama_3_8b_repo(),
            "acme/bin-only": {"config.json": (MODELS / "mistral-7b" / "config.json").read_bytes()},
        },
        gated={"meta-llama/Llama-3.1-405B"},
    )
    yield server
    server.close()


def test_facts_from_hub_reads_config_and_exact_count(hub, tmp_path):
    facts = facts_from_hub("meta-llama/Meta-Llama-3-8B", token=None, cache_dir=tmp_path, endpoint=hub.endpoint)
    assert facts.model_id == "meta-llama/Meta-Llama-3-8B"
    assert facts.revision == "main"
    assert (facts.num_layers, facts.num_key_value_heads, facts.vocab_size) == (32, 8, 128256)
    assert facts.parameter_count == 8030261248
    assert facts.parameter_count_estimated is False
    assert ("HEAD", "/meta-llama/Meta-Llama-3-8B/resolve/main/config.json", None) in hub.requests


def test_facts_from_hub_caches_on_disk(hub, tmp_path):
    first = facts_from_hub("meta-llama/Meta-Llama-3-8B", cache_dir=tmp_path, endpoint=hub.endpoint)
    requests_after_first = len(hub.requests)
    assert facts_from_hub("meta-llama/Meta-Llama-3-8B", cache_dir=tmp_path, endpoint=hub.endpoint) == first
    cached = tmp_path / "model-facts" / "meta-llama--Meta-Llama-3-8B@main.json"
    assert json.loads(cached.read_text())["parameterCount"] == 8030261248
    assert facts_from_hub("meta-llama/Meta-Llama-3-8B", cache_dir=tmp_path, endpoint=hub.endpoint) == first
    assert len(hub.requests) == requests_after_first


def test_facts_from_hub_without_safetensors_estimates(hub, tmp_path):
    facts = facts_from_hub("acme/bin-only", cache_dir=tmp_path, endpoint=hub.endpoint)
    assert facts.parameter_count == 7241732096
    assert facts.parameter_count_estimated is True


def test_gated_model_without_token(hub, tmp_path):
    with pytest.raises(ModelFactsUnavailable) as raised:
        facts_from_hub("meta-llama/Llama-3.1-405B", cache_dir=tmp_path, endpoint=hub.endpoint)
    assert str(raised.value) == (
        "meta-llama/Llama-3.1-405B is gated on the Hugging Face Hub: accept its licence on the model page "
        "and give a token of an account that has access."
    )


def test_unknown_model(hub, tmp_path):
    with pytest.raises(ModelMissing, match=r"^acme/nothing was not found on the Hugging Face Hub") as raised:
        facts_from_hub("acme/nothing", cache_dir=tmp_path, endpoint=hub.endpoint)
    assert raised.value.reason == "ModelNotFound"


def test_unknown_revision(tmp_path):
    server = HubServer({"meta-llama/Meta-Llama-3-8B": llama_3_8b_repo()}, missing_revisions={"v9"})
    try:
        with pytest.raises(
            ModelMissing, match=r"^Revision 'v9' of meta-llama/Meta-Llama-3-8B does not exist"
        ) as raised:
            facts_from_hub("meta-llama/Meta-Llama-3-8B", revision="v9", cache_dir=tmp_path, endpoint=server.endpoint)
    finally:
        server.close()
    assert raised.value.reason == "RevisionNotFound"


def test_gated_and_unreachable_are_not_missing(hub, tmp_path):
    with pytest.raises(ModelFactsUnavailable) as raised:
        facts_from_hub("meta-llama/Llama-3.1-405B", cache_dir=tmp_path, endpoint=hub.endpoint)
    assert not isinstance(raised.value, ModelMissing)


def closed_port_endpoint():
    with socket.socket() as probe:  # bound, then released: nothing listens there
        probe.bind(("127.0.0.1", 0))
        return f"http://127.0.0.1:{probe.getsockname()[1]}"


def test_hub_unreachable(hub, tmp_path):
    # config.json is already in the Hub file cache, so huggingface_hub serves it from there
    # without its retry-with-backoff (which takes ~20 s when nothing is cached); reading
    # the safetensors headers then meets the closed port.
    facts_from_hub("meta-llama/Meta-Llama-3-8B", cache_dir=tmp_path, endpoint=hub.endpoint)
    (tmp_path / "model-facts" / "meta-llama--Meta-Llama-3-8B@main.json").unlink()
    unreachable = closed_port_endpoint()
    with pytest.raises(ModelFactsUnavailable) as raised:
        facts_from_hub("meta-llama/Meta-Llama-3-8B", cache_dir=tmp_path, endpoint=unreachable)
    assert not isinstance(raised.value, ModelMissing)
    assert str(raised.value) == (
        f"Could not reach the Hugging Face Hub at {unreachable} to read meta-llama/Meta-Llama-3-8B@main: "
        "check network access or HF_ENDPOINT."
    )


def test_hub_offline_mode_with_nothing_cached(monkeypatch, tmp_path):
    import huggingface_hub.constants

    # HF_HUB_OFFLINE is read once at import; set the constant the library consults.
    monkeypatch.setattr(huggingface_hub.constants, "HF_HUB_OFFLINE", True)
    with pytest.raises(ModelFactsUnavailable) as raised:
        facts_from_hub("meta-llama/Meta-Llama-3-8B", cache_dir=tmp_path, endpoint=closed_port_endpoint())
    assert str(raised.value) == (
        "HF_HUB_OFFLINE is set and meta-llama/Meta-Llama-3-8B@main is not in the local Hub cache: unset HF_HUB_OFFLINE."
    )

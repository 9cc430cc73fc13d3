"""Planner: literal model facts in, literal shard counts, sizes and sentences out."""

import json
from dataclasses import replace

import pytest
from data_models import MODELS, PARAMS, facts, llama_405b

from llm_operator.facts.hub import facts_from_config
from llm_operator.planning.gpus import UnknownGpuType
from llm_operator.planning.memory import GIB, valid_shard_counts, weights_bytes
from llm_operator.planning.planner import MAX_NODES, PlanRequest, plan
from llm_operator.planning.verdicts import sharding_problem


# parameter count x 2 bytes / 2^30, worked out by hand from params.json.
@pytest.mark.parametrize(
    "short_name, weights_gib",
    [
        ("llama-2-7b", 12.55),
        ("llama-2-70b", 128.48),
        ("llama-3-8b", 14.96),
        ("llama-3-70b", 131.42),
        ("llama-3.1-405b", 755.96),
        ("mistral-7b", 13.49),
        ("mixtral-8x7b", 86.99),
        ("qwen2.5-7b", 14.19),
        ("qwen2.5-72b", 135.43),
        ("falcon-40b", 77.93),
        ("phi-3-mini-4k", 7.12),
        ("gemma-2-9b", 17.21),  # stored as float32, served in 16 bits
    ],
)
def test_unquantized_weights_are_two_bytes_per_parameter(short_name, weights_gib):
    model = facts(short_name)
    assert weights_bytes(model, "none") == PARAMS[short_name] * 2
    assert plan(PlanRequest(model, "none", "h100-80gb", gpus=1)).to_status()["weightsGiB"] == weights_gib


def test_70b_at_16_bit_does_not_fit_one_h100():
    result = plan(PlanRequest(facts("llama-3-70b"), "none", "h100-80gb", gpus=1))
    assert result.status == "DoesNotFit"
    assert result.fits is False
    assert result.min_gpus == 2
    assert result.reason == (
        "Meta-Llama-3-70B at 16-bit needs 131.4 GiB of weights; 1 x H100 80GB gives 79.6 GiB: "
        "use 2 GPUs or an 8-bit quantization (fp8 or eetq)."
    )


def test_70b_at_16_bit_fits_two_h100():
    result = plan(PlanRequest(facts("llama-3-70b"), "none", "h100-80gb", gpus=2))
    assert result.status == "Fits"
    assert result.num_shard == 2
    assert round(result.weights_gib_per_gpu, 2) == 65.71
    assert result.reason == (
        "Meta-Llama-3-70B at 16-bit needs 68.2 GiB per GPU (65.7 weights, 0.6 KV cache, 1.9 runtime); "
        "2 x H100 80GB gives 79.6 GiB each: fits with 11.4 GiB to spare."
    )


@pytest.mark.parametrize("quantization", ["awq", "gptq"])
def test_70b_at_4_bit_fits_one_h100(quantization):
    result = plan(PlanRequest(facts("llama-3-70b"), quantization, "h100-80gb", gpus=1))
    assert result.status == "Fits"
    assert result.num_shard == 1
    # 68.45e9 decoder weights at 4 + 20/128 bits, embeddings and lm_head (2.10e9) at 16 bits.
    assert round(result.weights_gib, 2) == 37.03


def test_qwen_7b_cannot_shard_eight_ways():
    result = plan(PlanRequest(facts("qwen2.5-7b"), "none", "h100-80gb", gpus=8))
    assert result.status == "InvalidSharding"
    assert result.fits is False
    assert result.min_gpus == 1
    assert result.reason == (
        "Qwen2.5-7B has 28 attention heads and 4 key-value heads; TGI needs the GPU count to divide "
        "both, and 8 does not: use 1, 2 or 4 GPUs."
    )


def test_405b_on_eight_h100_fits_at_fp8_only():
    fp8 = plan(PlanRequest(facts("llama-3.1-405b"), "fp8", "h100-80gb", gpus=8))
    unquantized = plan(PlanRequest(facts("llama-3.1-405b"), "none", "h100-80gb", gpus=8))
    assert (fp8.status, fp8.fits) == ("Fits", True)
    assert (unquantized.status, unquantized.fits) == ("DoesNotFit", False)
    assert unquantized.min_gpus is None
    assert unquantized.reason == (
        "Llama-3.1-405B at 16-bit needs 756.0 GiB of weights; 8 x H100 80GB gives 79.6 GiB each: "
        "use engine vllm on 2 nodes (spec.engine.name: vllm, spec.nodes: 2) or an 8-bit quantization (fp8 or eetq)."
    )


def test_exl2_cannot_shard():
    result = plan(PlanRequest(facts("mistral-7b"), "exl2", "l4", gpus=2))
    assert result.status == "InvalidSharding"
    assert result.reason == "TGI cannot shard exl2 models: use 1 GPU, or a gptq/awq build of the model to use more."
    assert valid_shard_counts(facts("mistral-7b"), "exl2") == (1,)


@pytest.mark.parametrize(
    "short_name, gpu, expected_gpus",
    [
        ("llama-3-70b", "h100-80gb", 2),
        ("llama-3-8b", "l4", 1),
        ("llama-3-8b", "t4", 2),
        ("mixtral-8x7b", "a100-40gb", 4),
        ("mixtral-8x7b", "l4", 8),
        ("qwen2.5-72b", "h200", 1),
    ],
)
def test_auto_pick_uses_the_smallest_gpu_count_that_fits(short_name, gpu, expected_gpus):
    result = plan(PlanRequest(facts(short_name), "none", gpu, gpus=None))
    assert result.num_shard == expected_gpus
    assert result.min_gpus == expected_gpus
    assert result.fits is True


def test_auto_pick_when_nothing_fits_takes_the_largest_valid_count():
    result = plan(PlanRequest(facts("llama-3.1-405b"), "none", "l4", gpus=None))
    assert (result.num_shard, result.min_gpus, result.status) == (8, None, "DoesNotFit")
    # No TGI count fits one node; vLLM would fit 6 nodes of 8 L4s (21 of 126 layers each).
    assert result.reason.endswith("use engine vllm on 6 nodes (spec.engine.name: vllm, spec.nodes: 6).")


def test_kv_cache_too_big_suggests_fewer_tokens():
    result = plan(PlanRequest(facts("llama-3-8b"), "none", "l4", gpus=1, max_total_tokens=100000))
    assert result.status == "DoesNotFit"
    assert result.reason == (
        "Meta-Llama-3-8B at 16-bit needs 30.7 GiB per GPU (15.0 weights, 12.2 KV cache for 100000 tokens, "
        "3.5 runtime); 1 x L4 24GB gives 22.5 GiB: use 2 GPUs, a 4-bit quantization (awq or gptq), "
        "or at most 39668 max total tokens."
    )


def test_runtime_overhead_is_reserve_context_activations_and_kv_headroom():
    result = plan(PlanRequest(facts("llama-3-70b"), "none", "h100-80gb", gpus=2))
    driver_and_context = 0.5 + 0.75
    prefill = 4096 * (4 * 8192 + 3 * 28672 / 2) * 2 / GIB  # residual + MLP per token, one shard's half
    kv_headroom = 0.625 * (1 / 0.9 - 1)  # TGI keeps 10% of the free memory out of the KV cache
    assert result.overhead_gib_per_gpu == pytest.approx(driver_and_context + prefill + kv_headroom)
    weights_per_gpu = 70553706496 * 2 / 2 / GIB
    assert result.required_gib_per_gpu == pytest.approx(weights_per_gpu + 0.625 + result.overhead_gib_per_gpu)


def test_kv_cache_in_plan_uses_default_of_4096_tokens():
    result = plan(PlanRequest(facts("llama-3-70b"), "none", "h100-80gb", gpus=2))
    assert result.max_total_tokens == 4096
    assert result.kv_cache_gib_per_gpu == 163840 * 4096 / GIB  # 0.625


def test_default_tokens_are_capped_by_the_model_context():
    falcon = plan(PlanRequest(facts("falcon-40b"), "none", "h100-80gb", gpus=2))
    assert falcon.max_total_tokens == 2048


def test_unknown_quantization_is_refused():
    with pytest.raises(ValueError, match="Unknown quantization 'int3'"):
        plan(PlanRequest(facts("mistral-7b"), "int3", "l4"))


def test_gpu_memory_override_without_type():
    result = plan(PlanRequest(facts("llama-3-8b"), "none", gpu_memory_gib=16.0, gpus=1))
    assert result.gpu_memory_gib == 16.0
    assert result.status == "DoesNotFit"


def test_plan_without_any_gpu_is_refused():
    with pytest.raises(UnknownGpuType, match="No GPU type or GPU memory given"):
        plan(PlanRequest(facts("llama-3-8b"), "none"))


def test_to_status_is_camel_case_and_rounded():
    result = plan(PlanRequest(facts("llama-3-70b"), "none", "h100-80gb", gpus=1))
    assert result.to_status() == {
        "numShard": 1,
        "weightsGiB": 131.42,
        "kvCacheGiBPerGpu": 1.25,
        "gpuMemoryGiB": 79.65,
        "fits": False,
        "reason": "Meta-Llama-3-70B at 16-bit needs 131.4 GiB of weights; 1 x H100 80GB gives 79.6 GiB: "
        "use 2 GPUs or an 8-bit quantization (fp8 or eetq).",
        "minGpus": 2,
    }


def test_to_dict_names_the_engine_and_what_it_may_fill():
    result = plan(PlanRequest(facts("llama-3-70b"), "none", "h100-80gb", gpus=2)).to_dict()
    assert (result["engine"], result["usableGiBPerGpu"], result["gpuMemoryGiB"]) == ("tgi", 79.65, 79.65)


# ---- vLLM 0.33.0 ---------------------------------------------------------------------------

# A Qwen2.5-3B-shaped model: 16 attention heads, 2 key-value heads.
QWEN_3B = {
    "model_type": "qwen2",
    "hidden_size": 2048,
    "intermediate_size": 11008,
    "num_attention_heads": 16,
    "num_key_value_heads": 2,
    "num_hidden_layers": 36,
    "vocab_size": 151936,
    "max_position_embeddings": 32768,
}


def test_vllm_fills_its_share_of_cuda_memory():
    result = plan(PlanRequest(facts("llama-3-70b"), "none", "h100-80gb", gpus=2, engine="vllm"))
    assert (result.status, result.engine) == ("Fits", "vllm")
    assert result.usable_gib_per_gpu == pytest.approx((81559 / 1024 - 0.5) * 0.92)  # 72.82
    assert result.gpu_memory_gib == 81559 / 1024
    assert result.reason == (
        "Meta-Llama-3-70B at 16-bit needs 68.2 GiB per GPU (65.7 weights, 0.6 KV cache, 1.9 runtime); "
        "2 x H100 80GB gives 72.8 GiB each to vLLM (0.92 of each GPU, --gpu-memory-utilization): "
        "fits with 4.6 GiB to spare."
    )
    assert (result.to_dict()["engine"], result.to_dict()["usableGiBPerGpu"]) == ("vllm", 72.82)


def test_vllm_overhead_is_context_and_one_batch_without_kv_headroom():
    result = plan(PlanRequest(facts("llama-3-70b"), "none", "h100-80gb", gpus=2, engine="vllm"))
    # No driver reserve (it is outside the reservation) and no 10% KV headroom; the profile
    # batch is vLLM's default 8192 tokens on an H100, not the 4096 tokens of one sequence.
    activations = 8192 * (4 * 8192 + 3 * 28672 / 2) * 2 / GIB
    assert result.overhead_gib_per_gpu == pytest.approx(0.75 + activations)
    assert result.kv_cache_gib_per_gpu == 163840 * 4096 / GIB


def test_vllm_max_batch_tokens_sets_the_activation_batch():
    result = plan(PlanRequest(facts("llama-3-70b"), "none", "h100-80gb", gpus=2, engine="vllm", max_batch_tokens=2048))
    assert result.overhead_gib_per_gpu == pytest.approx(0.75 + 2048 * (4 * 8192 + 3 * 28672 / 2) * 2 / GIB)


def test_72b_fits_one_h200_for_tgi_but_not_vllms_reservation():
    tgi = plan(PlanRequest(facts("qwen2.5-72b"), "none", "h200", gpus=1))
    vllm = plan(PlanRequest(facts("qwen2.5-72b"), "none", "h200", gpus=1, engine="vllm"))
    assert (tgi.status, vllm.status) == ("Fits", "DoesNotFit")
    assert vllm.min_gpus == 2
    assert vllm.reason == (
        "Qwen2.5-72B at 16-bit needs 135.4 GiB of weights; 1 x H200 141GB gives 128.7 GiB to vLLM "
        "(0.92 of the GPU, --gpu-memory-utilization): use 2 GPUs or an 8-bit quantization (fp8)."
    )


def test_long_context_fits_tgi_but_vllm_would_refuse_to_start():
    tgi = plan(PlanRequest(facts("qwen2.5-7b"), "none", "l4", gpus=1, max_total_tokens=98304))
    vllm = plan(PlanRequest(facts("qwen2.5-7b"), "none", "l4", gpus=1, max_total_tokens=98304, engine="vllm"))
    assert (tgi.status, vllm.status) == ("Fits", "DoesNotFit")
    assert vllm.reason == (
        "Qwen2.5-7B at 16-bit needs 20.5 GiB per GPU (14.2 weights, 5.2 KV cache for 98304 tokens, 1.0 runtime); "
        "1 x L4 24GB gives 20.2 GiB to vLLM (0.92 of the GPU, --gpu-memory-utilization), so vLLM would refuse "
        "to start: one sequence of 98304 tokens needs 5.2 GiB of KV cache per GPU and 5.0 GiB is left after "
        "weights and activations. Use 2 GPUs, an 8-bit quantization (fp8), or at most 94145 max total tokens."
    )


def test_higher_gpu_memory_utilization_tips_the_margin():
    result = plan(
        PlanRequest(
            facts("qwen2.5-7b"),
            "none",
            "l4",
            gpus=1,
            max_total_tokens=98304,
            engine="vllm",
            gpu_memory_utilization=0.95,
        )
    )
    assert result.status == "Fits"
    assert result.reason == (
        "Qwen2.5-7B at 16-bit needs 20.5 GiB per GPU (14.2 weights, 5.2 KV cache, 1.0 runtime); "
        "1 x L4 24GB gives 20.9 GiB to vLLM (0.95 of the GPU, --gpu-memory-utilization): fits with 0.4 GiB to spare."
    )


def test_fits_vllm_but_not_tgi_on_a_small_gpu():
    # The reverse case: on a 16 GB card vLLM's profile batch (2048 tokens, not TGI's 8192) and
    # its KV cache without TGI's 10% headroom save more than the 8% of the GPU it leaves unused.
    tgi = plan(PlanRequest(facts("qwen2.5-7b"), "awq", "t4", gpus=1, max_total_tokens=128000))
    vllm = plan(PlanRequest(facts("qwen2.5-7b"), "awq", "t4", gpus=1, max_total_tokens=128000, engine="vllm"))
    assert (tgi.status, vllm.status) == ("DoesNotFit", "Fits")
    assert tgi.reason == (
        "Qwen2.5-7B with awq (4.16 bits per weight) needs 15.1 GiB per GPU (5.2 weights, 6.8 KV cache for "
        "128000 tokens, 3.1 runtime); 1 x T4 16GB gives 15.0 GiB: use 2 GPUs or at most 125992 max total tokens."
    )
    assert vllm.reason == (
        "Qwen2.5-7B with awq (4.16 bits per weight) needs 13.0 GiB per GPU (5.2 weights, 6.8 KV cache, 1.0 runtime); "
        "1 x T4 16GB gives 13.3 GiB to vLLM (0.92 of the GPU, --gpu-memory-utilization): fits with 0.3 GiB to spare."
    )


def test_vllm_suggests_only_quantizations_it_has():
    result = plan(PlanRequest(facts("llama-3.1-405b"), "none", "h100-80gb", gpus=8, engine="vllm"))
    assert result.reason == (
        "Llama-3.1-405B at 16-bit needs 756.0 GiB of weights; 8 x H100 80GB gives 72.8 GiB each to vLLM "
        "(0.92 of each GPU, --gpu-memory-utilization): use 2 nodes (spec.nodes: 2) or an 8-bit quantization (fp8)."
    )


def test_vllm_shards_llama_3_70b_up_to_the_limit():
    model = facts("llama-3-70b")  # 64 attention heads, 8 key-value heads
    assert valid_shard_counts(model, "none", engine="vllm") == (1, 2, 4, 8)
    assert sharding_problem(model, 8, "none", "vllm") is None
    # 16 shards hold two copies of each KV head: valid, and listed only when the limit allows.
    assert valid_shard_counts(model, "none", limit=16, engine="vllm") == (1, 2, 4, 8, 16)
    assert valid_shard_counts(model, "none", limit=16) == (1, 2, 4, 8)


def test_vllm_names_its_rule_and_the_valid_counts():
    model = facts("llama-3-8b")  # 32 attention heads, 8 key-value heads
    assert sharding_problem(model, 3, "none", "vllm") == (
        "Meta-Llama-3-8B has 32 attention heads and 8 key-value heads; vLLM needs the GPU count to divide the "
        "attention heads, and to divide the key-value heads or be a multiple of them, and 3 does not: "
        "use 1, 2, 4 or 8 GPUs."
    )
    assert valid_shard_counts(model, "none", limit=32, engine="vllm") == (1, 2, 4, 8, 16, 32)


def test_vllm_replicates_kv_heads_where_tgi_cannot_shard():
    model = facts_from_config(QWEN_3B, 3_085_938_688, model_id="Qwen/Qwen2.5-3B")
    assert valid_shard_counts(model, "none") == (1, 2)
    assert valid_shard_counts(model, "none", engine="vllm") == (1, 2, 4, 8)
    tgi = plan(PlanRequest(model, "none", "l4", gpus=4))
    vllm = plan(PlanRequest(model, "none", "l4", gpus=4, engine="vllm"))
    assert (tgi.status, vllm.status) == ("InvalidSharding", "Fits")
    assert tgi.reason == (
        "Qwen2.5-3B has 16 attention heads and 2 key-value heads; TGI needs the GPU count to divide both, "
        "and 4 does not: use 1 or 2 GPUs."
    )
    assert sharding_problem(model, 3, "none", "vllm") == (
        "Qwen2.5-3B has 16 attention heads and 2 key-value heads; vLLM needs the GPU count to divide the "
        "attention heads, and to divide the key-value heads or be a multiple of them, and 3 does not: "
        "use 1, 2, 4 or 8 GPUs."
    )


@pytest.mark.parametrize("quantization", ["eetq", "exl2", "bitsandbytes", "bitsandbytes-nf4", "bitsandbytes-fp4"])
def test_vllm_refuses_quantizations_only_tgi_has(quantization):
    with pytest.raises(ValueError, match=f"vLLM 0.33.0 has no {quantization} quantization; TGI has it"):
        plan(PlanRequest(facts("mistral-7b"), quantization, "l4", engine="vllm"))


def test_vllm_refuses_a_bitsandbytes_checkpoint():
    config = {
        **json.loads((MODELS / "mistral-7b" / "config.json").read_text()),
        "quantization_config": {"quant_method": "bitsandbytes", "load_in_4bit": True},
    }
    with pytest.raises(ValueError, match="vLLM 0.33.0 has no bitsandbytes-nf4 quantization; TGI has it"):
        plan(PlanRequest(facts_from_config(config, 7241732096), "none", "l4", engine="vllm"))


@pytest.mark.parametrize(
    "request_fields, message",
    [
        ({"gpu_memory_utilization": 0.95}, "gpu_memory_utilization is a vLLM setting; TGI takes none."),
        ({"max_batch_tokens": 4096}, "max_batch_tokens is a vLLM setting; TGI takes none."),
        (
            {"engine": "vllm", "gpu_memory_utilization": 1.5},
            "gpu_memory_utilization must be above 0 and at most 1, not 1.5.",
        ),
        ({"engine": "sglang"}, "Unknown engine 'sglang': use one of tgi, vllm."),
    ],
)
def test_engine_settings_are_checked(request_fields, message):
    with pytest.raises(ValueError) as refused:
        plan(PlanRequest(facts("mistral-7b"), "none", "l4", **request_fields))
    assert str(refused.value) == message


# ---- multi-node: vLLM tensor parallel within a node x pipeline parallel across nodes ------


def test_405b_on_two_nodes_of_eight_h100_fits_vllm():
    result = plan(PlanRequest(llama_405b(), "none", "h100-80gb", gpus=8, nodes=2, engine="vllm"))
    # By hand. Weights: embeddings are 2 x 128256 x 16384 = 4,202,692,608 parameters, so the decoder
    # holds 401,650,696,192, 803,301,392,384 bytes at 16 bits. A stage holds 63 of the 126 layers
    # (401,650,696,192 B) and one 128256 x 16384 matrix (4,202,692,608 B): 405,853,388,800 B,
    # / 8 GPUs = 50,731,673,600 B = 47.25 GiB.
    # KV cache: 63 layers x 2 x (8 KV heads / 8 = 1) x 128 x 2 B = 32,256 B a token, x 4096 = 0.123 GiB.
    # Runtime: 0.75 context + one 8192-token batch, 8192 x (4 x 16384 + 3 x 53248 / 8) x 2 B
    # = 1,400,897,536 B (1.305 GiB), + the pipeline's buffers 8192 x 2 x 16384 x 2 B = 0.5 GiB: 2.555 GiB.
    # Needed 49.93 GiB of vLLM's 0.92 x (79.65 - 0.5) = 72.82 GiB.
    assert result.weights_gib_per_gpu == 50_731_673_600 / GIB
    assert result.kv_cache_gib_per_gpu == 32_256 * 4096 / GIB
    assert result.overhead_gib_per_gpu == pytest.approx(0.75 + (1_400_897_536 + 536_870_912) / GIB)
    assert round(result.required_gib_per_gpu, 2) == 49.93
    assert round(result.weights_gib, 2) == 755.96  # still the whole model
    assert (result.status, result.nodes, result.num_shard, result.min_nodes, result.min_gpus) == ("Fits", 2, 8, 2, 8)
    assert result.reason == (
        "Llama-3.1-405B at 16-bit needs 49.9 GiB per GPU (47.2 weights, 0.1 KV cache, 2.6 runtime); "
        "2 nodes x 8 x H100 80GB gives 72.8 GiB each to vLLM (0.92 of each GPU, --gpu-memory-utilization): "
        "fits with 22.9 GiB to spare."
    )


def test_405b_on_one_node_of_eight_h100_suggests_two_nodes_or_fp8():
    result = plan(PlanRequest(llama_405b(), "none", "h100-80gb", gpus=8, nodes=1, engine="vllm"))
    assert (result.status, result.nodes, result.min_gpus, result.min_nodes) == ("DoesNotFit", 1, None, 2)
    assert result.reason == (
        "Llama-3.1-405B at 16-bit needs 756.0 GiB of weights; 8 x H100 80GB gives 72.8 GiB each to vLLM "
        "(0.92 of each GPU, --gpu-memory-utilization): use 2 nodes (spec.nodes: 2) or an 8-bit quantization (fp8)."
    )


def test_tgi_405b_on_eight_h100_suggests_vllm_on_two_nodes():
    result = plan(PlanRequest(llama_405b(), "none", "h100-80gb", gpus=8, nodes=1))
    assert (result.status, result.nodes, result.min_nodes) == ("DoesNotFit", 1, None)
    assert result.reason.endswith(
        ": use engine vllm on 2 nodes (spec.engine.name: vllm, spec.nodes: 2) or an 8-bit quantization (fp8 or eetq)."
    )


def test_tgi_suggests_no_vllm_nodes_for_a_quantization_vllm_lacks():
    result = plan(PlanRequest(llama_405b(), "eetq", "l4", gpus=8))
    assert result.reason == (
        "Llama-3.1-405B with eetq (8.00 bits per weight) needs 381.9 GiB of weights; 8 x L4 24GB gives 22.5 GiB each: "
        "use a GPU type with more memory or a smaller model."
    )


@pytest.mark.parametrize(
    "gpus, nodes, expected_nodes, expected_gpus",
    [
        (8, None, 2, 8),  # the fewest nodes for 8 GPUs each
        (4, None, 3, 4),  # 4 GPUs each: 42 layers a node is the first to fit
        (None, None, 2, 8),  # one node of any count is too small; two nodes need 8 GPUs each
        (None, 3, 3, 4),  # three nodes given: the fewest GPUs each
    ],
)
def test_vllm_picks_the_fewest_nodes_then_the_fewest_gpus(gpus, nodes, expected_nodes, expected_gpus):
    result = plan(PlanRequest(llama_405b(), "none", "h100-80gb", gpus=gpus, nodes=nodes, engine="vllm"))
    assert (result.status, result.nodes, result.num_shard) == ("Fits", expected_nodes, expected_gpus)
    assert result.min_gpus == expected_gpus


def test_a_model_that_fits_one_node_stays_on_one_node():
    result = plan(PlanRequest(facts("llama-3-70b"), "none", "h100-80gb", gpus=None, nodes=None, engine="vllm"))
    assert (result.status, result.nodes, result.num_shard, result.min_nodes) == ("Fits", 1, 2, 1)
    assert "nodes" not in result.to_status()


def test_vllm_tries_at_most_max_nodes_when_it_picks():
    assert MAX_NODES == 16
    # 8.5 GiB GPUs: 16 nodes hold 8 layers each (6.4 GiB of weights a GPU, 7.6 GiB needed, 7.4 usable); 18 hold 7.
    picked = plan(PlanRequest(llama_405b(), "none", gpu_memory_gib=8.5, gpus=8, nodes=None, engine="vllm"))
    assert (picked.status, picked.nodes, picked.min_nodes) == ("DoesNotFit", 1, None)
    assert picked.reason.endswith(": use a GPU type with more memory or a smaller model.")
    given = plan(PlanRequest(llama_405b(), "none", gpu_memory_gib=8.5, gpus=8, nodes=18, engine="vllm"))
    assert (given.status, given.layers_per_node, given.min_nodes) == ("Fits", 7, None)


def test_when_nothing_fits_any_node_count_the_plan_stays_on_one_node():
    result = plan(PlanRequest(llama_405b(), "none", gpu_memory_gib=1.0, gpus=None, nodes=None, engine="vllm"))
    assert (result.status, result.nodes, result.num_shard, result.min_gpus, result.min_nodes) == (
        "DoesNotFit",
        1,
        8,
        None,
        None,
    )


def test_more_gpus_per_node_before_more_nodes():
    result = plan(PlanRequest(llama_405b(), "none", "h100-80gb", gpus=4, nodes=2, engine="vllm"))
    assert (result.min_gpus, result.min_nodes) == (8, 3)
    assert result.reason.endswith(": use 8 GPUs per node or an 8-bit quantization (fp8).")


def test_one_gpu_short_of_a_node_suggests_more_gpus_not_more_nodes():
    # Two nodes of one H200 would fit too, but the node has room for a second GPU (vLLM: TP within a node first).
    result = plan(PlanRequest(facts("qwen2.5-72b"), "none", "h200", gpus=1, engine="vllm"))
    assert (result.min_gpus, result.min_nodes) == (2, 2)
    assert result.reason.endswith(": use 2 GPUs or an 8-bit quantization (fp8).")


def test_kv_cache_too_big_for_two_nodes_suggests_a_third_and_fewer_tokens_on_two():
    result = plan(
        PlanRequest(llama_405b(), "none", "h100-80gb", gpus=8, nodes=2, engine="vllm", max_total_tokens=1_000_000)
    )
    assert result.reason == (
        "Llama-3.1-405B at 16-bit needs 79.8 GiB per GPU (47.2 weights, 30.0 KV cache for 1000000 tokens, "
        "2.6 runtime); 2 nodes x 8 x H100 80GB gives 72.8 GiB each to vLLM (0.92 of each GPU, "
        "--gpu-memory-utilization), so vLLM would refuse to start: one sequence of 1000000 tokens needs 30.0 GiB "
        "of KV cache per GPU and 23.0 GiB is left after weights and activations. Use 3 nodes (spec.nodes: 3), "
        "an 8-bit quantization (fp8), or at most 766073 max total tokens."
    )


def test_tgi_cannot_span_nodes():
    with pytest.raises(ValueError) as refused:
        plan(PlanRequest(llama_405b(), "none", "h100-80gb", gpus=8, nodes=2))
    assert str(refused.value) == "TGI serves within one node; multi-node serving needs engine vllm."
    assert plan(PlanRequest(facts("llama-3-70b"), "none", "h100-80gb", nodes=None)).nodes == 1
    assert sharding_problem(llama_405b(), 8, "none", "tgi", nodes=2) == (
        "TGI serves within one node; multi-node serving needs engine vllm."
    )


def test_more_nodes_than_layers_is_invalid_sharding():
    model = llama_405b()
    assert sharding_problem(model, 8, "none", "vllm", nodes=126) is None
    assert sharding_problem(model, 8, "none", "vllm", nodes=127) == (
        "Llama-3.1-405B has 126 layers: pipeline parallelism needs at least one layer per node, so at most 126 nodes."
    )
    result = plan(PlanRequest(model, "none", "h100-80gb", gpus=8, nodes=127, engine="vllm"))
    assert (result.status, result.fits) == ("InvalidSharding", False)
    assert result.reason.startswith("Llama-3.1-405B has 126 layers")


def test_node_count_below_one_is_invalid_sharding():
    result = plan(PlanRequest(llama_405b(), "none", "h100-80gb", gpus=8, nodes=0, engine="vllm"))
    assert (result.status, result.reason) == ("InvalidSharding", "The node count must be at least 1, not 0.")


def test_heads_are_still_checked_for_the_gpus_of_each_node():
    assert sharding_problem(llama_405b(), 6, "none", "vllm", nodes=2) == (
        "Llama-3.1-405B has 128 attention heads and 8 key-value heads; vLLM needs the GPU count to divide the "
        "attention heads, and to divide the key-value heads or be a multiple of them, and 6 does not: "
        "use 1, 2, 4 or 8 GPUs."
    )


def test_status_names_nodes_only_beyond_one():
    two = plan(PlanRequest(llama_405b(), "none", "h100-80gb", gpus=8, nodes=2, engine="vllm")).to_status()
    one_short = plan(PlanRequest(llama_405b(), "none", "h100-80gb", gpus=8, nodes=1, engine="vllm")).to_status()
    three = plan(PlanRequest(llama_405b(), "none", "h100-80gb", gpus=8, nodes=3, engine="vllm")).to_status()
    single = plan(PlanRequest(facts("llama-3-70b"), "none", "h100-80gb", gpus=2, engine="vllm")).to_status()
    assert (two["nodes"], two["minNodes"]) == (2, 2)
    assert (one_short["nodes"], one_short["minNodes"]) == (1, 2)
    assert (three["nodes"], three["minNodes"]) == (3, 2)
    assert set(single) == {"numShard", "weightsGiB", "kvCacheGiBPerGpu", "gpuMemoryGiB", "fits", "reason", "minGpus"}


def test_to_dict_always_gives_nodes_min_nodes_and_layers_per_node():
    two = plan(PlanRequest(llama_405b(), "none", "h100-80gb", gpus=8, nodes=2, engine="vllm")).to_dict()
    tgi = plan(PlanRequest(facts("llama-3-70b"), "none", "h100-80gb", gpus=2)).to_dict()
    assert (two["nodes"], two["minNodes"], two["layersPerNode"]) == (2, 2, 63)
    assert (tgi["nodes"], tgi["minNodes"], tgi["layersPerNode"]) == (1, None, 80)


# ---- counts agree with their nouns -------------------------------------------------------


def test_one_key_value_head_and_one_valid_gpu_count_are_said_in_the_singular():
    # Falcon-7B's shape: 71 attention heads (a prime) and one KV head (multi-query attention).
    falcon = replace(facts("qwen2.5-7b"), model_id="tiiuae/falcon-7b", num_attention_heads=71, num_key_value_heads=1)
    assert sharding_problem(falcon, 2, "none") == (
        "falcon-7b has 71 attention heads and 1 key-value head; TGI needs the GPU count to divide both, "
        "and 2 does not: use 1 GPU."
    )


def test_one_layer_allows_one_node_two_layers_two_nodes():
    one = replace(facts("llama-3-8b"), num_layers=1)
    assert sharding_problem(one, 1, "none", "vllm", nodes=2) == (
        "Meta-Llama-3-8B has 1 layer: pipeline parallelism needs at least one layer per node, so at most 1 node."
    )
    two = replace(facts("llama-3-8b"), num_layers=2)
    assert sharding_problem(two, 1, "none", "vllm", nodes=3) == (
        "Meta-Llama-3-8B has 2 layers: pipeline parallelism needs at least one layer per node, so at most 2 nodes."
    )

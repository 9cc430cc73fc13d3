"""vLLM 0.33.0's `vllm serve` table (llm_common/data) and the argv checks read from it: the
table holds every option of the parser with its owner, and each check answers literal argv
lists as vLLM's parser does (hack/vllm_parser/check_table.py compares them with the parser itself)."""

from __future__ import annotations

import importlib.util

import pytest

from llm_common import vllm_rules
from llm_common.vllm_rules import (
    DEFAULT_PORT,
    TABLE,
    VERSION,
    flag_name,
    flag_of,
    is_option,
    owned_options,
    positionals,
    repeated_options,
    unknown_options,
    value_problems,
)
from support.paths import ROOT

# Every option of `vllm serve` 0.33.0, as listed by the options file the table was made from (dumped
# from the wheel's own parser); model_tag is the positional MODEL.
PARSER_OPTIONS = """
    model_tag headless api-server-count config grpc disable-log-stats aggregate-engine-logging
    fail-on-environ-validation shutdown-timeout gdn-prefill-backend kda-prefill-backend
    kda-decode-backend enable-log-requests lora-modules chat-template chat-template-content-format
    trust-request-chat-template trust-request-mm-kwargs default-chat-template-kwargs
    reasoning-effort-map response-role return-tokens-as-token-ids enable-auto-tool-choice
    exclude-tools-when-tool-choice-none tool-call-parser tool-parser-plugin tool-strict-level
    tool-server max-log-len enable-prompt-tokens-details enable-per-request-metrics
    enable-server-load-tracking enable-force-include-usage sse-keep-alive-interval
    enable-tokenizer-info-endpoint enable-log-outputs enable-log-deltas cohere-is-reasoning-model
    cohere-format anthropic-disabled-thinking-effort log-error-stack tokens-only enable-scale-out
    fingerprint-mode fingerprint-value host port grpc-port data-parallel-supervisor-port
    dp-supervisor-probe-interval-s dp-supervisor-probe-timeout-s dp-supervisor-probe-failure-threshold
    uds uvicorn-log-level disable-uvicorn-access-log disable-access-log-for-endpoints allow-credentials
    allowed-origins allowed-methods allowed-headers api-key ssl-keyfile ssl-certfile ssl-ca-certs
    enable-ssl-refresh ssl-cert-reqs ssl-ciphers root-path middleware enable-request-id-headers
    disable-fastapi-docs h11-max-incomplete-event-size h11-max-header-count enable-offline-docs
    enable-flash-late-interaction model runner convert tokenizer tokenizer-mode trust-remote-code dtype
    seed hf-config-path allowed-local-media-path allowed-media-domains revision code-revision
    tokenizer-revision max-model-len quantization quantization-config allow-deprecated-quantization
    enforce-eager enable-return-routed-experts return-sampling-mask max-logprobs logprobs-mode
    use-fp64-gumbel enable-trace-replay disable-sliding-window disable-cascade-attn skip-tokenizer-init
    enable-prompt-embeds served-model-name config-format hf-token hf-overrides model-class-overrides
    pooler-config generation-config override-generation-config enable-sleep-mode sleep-mode-backend
    sleep-mode-offload-cudagraph sleep-preserve-parameter-names enable-cumem-allocator
    enable-nccl-comm-suspend model-impl logits-processors io-processor-plugin renderer-num-workers
    load-format download-dir safetensors-load-strategy safetensors-prefetch-num-threads
    safetensors-prefetch-block-size model-loader-extra-config ignore-patterns use-tqdm-on-load
    pt-load-map-location attention-backend mamba-backend mamba-ssu-algorithm
    enable-mamba-cache-stochastic-rounding mamba-cache-philox-rounds reasoning-parser
    reasoning-parser-plugin distributed-executor-backend pipeline-parallel-size master-addr master-port
    nnodes node-rank distributed-timeout-seconds cpu-distributed-timeout-seconds numa-bind
    numa-bind-nodes numa-bind-cpus device-ids tensor-parallel-size decode-context-parallel-size
    dcp-comm-backend dcp-q-replicate dcp-kv-cache-interleave-size cp-kv-cache-interleave-size
    prefill-context-parallel-size data-parallel-size data-parallel-rank data-parallel-start-rank
    data-parallel-size-local data-parallel-address data-parallel-rpc-port data-parallel-backend
    data-parallel-hybrid-lb data-parallel-external-lb data-parallel-multi-port-external-lb enable-hc-sp
    enable-expert-parallel enable-batch-sharded-sampling enable-ep-weight-filter all2all-backend
    enable-dbo enable-shm-tensor-arena ubatch-size enable-elastic-ep elastic-ep-max-dp-size
    dbo-decode-token-threshold dp-sync-interval dbo-prefill-token-threshold
    disable-nccl-for-dp-synchronization enable-eplb eplb-config expert-placement-strategy
    max-parallel-loading-workers ray-workers-use-nsight disable-custom-all-reduce worker-cls
    worker-extension-cls enable-fault-tolerance fault-tolerance-config block-size gpu-memory-utilization
    kv-cache-memory-bytes kv-cache-dtype num-gpu-blocks-override enable-prefix-caching
    prefix-caching-hash-algo prefix-cache-retention-interval kv-cache-dtype-skip-layers
    kv-sharing-fast-prefill swa-bounded-replay mamba-cache-dtype mamba-ssm-cache-dtype mamba-block-size
    prefix-match-unit mamba-cache-mode enable-mamba-shared-prefix-checkpoint replayssm-buffer-len
    use-replayssm kv-offloading-size kv-offloading-backend offload-backend cpu-offload-gb
    cpu-offload-params offload-group-size offload-num-in-group offload-prefetch-step offload-params
    language-model-only limit-mm-per-prompt enable-mm-embeds media-io-kwargs mm-processor-kwargs
    mm-processor-cache-gb mm-processor-cache-type mm-hasher-algorithm mm-shm-cache-max-object-size-mb
    mm-encoder-only mm-encoder-tp-mode mm-encoder-attn-backend mm-encoder-attn-dtype
    mm-encoder-fp8-scale-path mm-encoder-fp8-scale-save-path mm-encoder-fp8-scale-save-margin
    interleave-mm-strings skip-mm-profiling video-pruning-rate video-pruning-method mm-tensor-ipc
    mm-processor-device mm-ipc-gpu-memory-gb mm-device-do-normalize enable-lora max-loras max-lora-rank
    lora-dtype enable-tower-connector-lora max-cpu-loras fully-sharded-loras lora-target-modules
    default-mm-loras specialize-active-lora enable-mixed-moe-lora-format enable-moe-shared-loras
    max-lora-cls-labels logging-config log-level log-config-file show-hidden-metrics-for-version
    otlp-traces-endpoint collect-detailed-traces per-request-spec-decode-metrics kv-cache-metrics
    kv-cache-metrics-sample custom-histogram-buckets cudagraph-metrics enable-layerwise-nvtx-tracing
    enable-mfu-metrics enable-logging-iteration-details jit-monitor-mode jit-monitor-verbose
    max-num-batched-tokens max-num-scheduled-tokens max-num-seqs max-num-active-seqs max-num-queued-reqs
    max-num-queued-tokens long-prefill-token-threshold long-prefill-token-threshold-adaptive
    scheduling-policy enable-chunked-prefill disable-chunked-mm-input scheduler-cls
    scheduler-reserve-full-isl watermark prefill-schedule-interval disable-hybrid-kv-cache-manager
    async-scheduling stream-interval cudagraph-capture-sizes max-cudagraph-capture-size ir-op-priority
    enable-flashinfer-autotune monokernel moe-backend linear-backend sparse-indexer-topk-backend
    speculative-config spec-method spec-model spec-tokens watermark-config diffusion-config
    kv-transfer-config kv-events-config ec-transfer-config ec-manager-config compilation-config
    attention-config engram-config reasoning-config kernel-config additional-config
    structured-outputs-config aux-output-config profiler-config watchdog-config optimization-level
    performance-mode weight-transfer-config
""".split()

ALLOWED_OWNERS = {
    "spec.model.id",
    "spec.model.revision",
    "spec.gpus",
    "spec.quantization",
    "spec.dtype",
    "spec.limits.maxTotalTokens",
    "spec.limits.maxBatchPrefillTokens",
    "spec.limits.maxConcurrentRequests",
    "spec.adapters",
    "spec.model.trustRemoteCode",
    "spec.model.tokenSecretRef",
    "spec.cache",
    "operator",
    "spec.nodes",
}

OWNED = {
    "model_tag": "spec.model.id",
    "model": "spec.model.id",
    "revision": "spec.model.revision",
    "tensor-parallel-size": "spec.gpus",
    "pipeline-parallel-size": "spec.nodes",
    "data-parallel-size": "spec.gpus",
    "nnodes": "spec.nodes",
    "node-rank": "spec.nodes",
    "master-addr": "spec.nodes",
    "master-port": "spec.nodes",
    "quantization": "spec.quantization",
    "dtype": "spec.dtype",
    "max-model-len": "spec.limits.maxTotalTokens",
    "max-num-batched-tokens": "spec.limits.maxBatchPrefillTokens",
    "max-num-seqs": "spec.limits.maxConcurrentRequests",
    "enable-lora": "spec.adapters",
    "lora-modules": "spec.adapters",
    "max-lora-rank": "spec.adapters",
    "max-loras": "spec.adapters",
    "trust-remote-code": "spec.model.trustRemoteCode",
    "hf-token": "spec.model.tokenSecretRef",
    "download-dir": "spec.cache",
    "served-model-name": "operator",
    "host": "operator",
    "port": "operator",
    "uds": "operator",
    "headless": "operator",
    "api-server-count": "operator",
    "config": "operator",
    "ssl-keyfile": "operator",
    "ssl-certfile": "operator",
    "ssl-ca-certs": "operator",
    "ssl-cert-reqs": "operator",
    "ssl-ciphers": "operator",
}

MODEL = "meta-llama/Llama-3.1-8B-Instruct"
# What the operator is likely to give, the model repeated as a second served name.
LIKELY = [
    MODEL,
    "--revision",
    "R",
    "--tensor-parallel-size",
    "2",
    "--max-model-len",
    "8192",
    "--max-num-seqs",
    "128",
    "--served-model-name",
    "name",
    MODEL,
    "--host",
    "0.0.0.0",
    "--port",
    "8000",
    "--dtype",
    "bfloat16",
]


def load_generator():
    spec = importlib.util.spec_from_file_location("vllm_table", ROOT / "hack" / "vllm_table.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


# --- the table ------------------------------------------------------------------------------


def test_the_table_says_where_it_comes_from():
    assert VERSION == "0.33.0" and TABLE.source["tag"] == f"v{VERSION}"
    assert TABLE.source["commit"] == "4ba787ec9"
    assert "g4ba787ec9" in TABLE.source["commit_note"]
    assert TABLE.source["wheel"] == {
        "file": "vllm-0.33.0-cp38-abi3-manylinux_2_28_x86_64.whl",
        "sha256": "4b6bdec4ab269990bf70d45a3c1e94c3760a27064513760193b26d6f0da883aa",
    }
    assert {"repeated", "lists", "underscores", "unknown", "checked_later"} <= set(TABLE.source["parsing"])
    assert sorted(TABLE.source["checked_later"]) == ["kv-cache-dtype", "load-format", "quantization"]
    assert DEFAULT_PORT == 8000


def test_every_option_of_the_parser_is_in_the_table_once():
    assert len(PARSER_OPTIONS) == 321
    assert [f.name for f in TABLE.flags] == PARSER_OPTIONS


def test_every_owner_is_a_spec_field_or_the_operator():
    assert {f.owner for f in TABLE.flags if f.owner} <= ALLOWED_OWNERS
    assert set(TABLE.owned_by()) == ALLOWED_OWNERS


@pytest.mark.parametrize("name", sorted(OWNED))
def test_the_flags_the_operator_sets_are_owned(name):
    assert TABLE.flag(name).owner == OWNED[name]


def test_whatever_changes_the_gpus_of_a_pod_is_owned_by_spec_gpus():
    assert sorted(f.name for f in TABLE.owned_by()["spec.gpus"]) == [
        "data-parallel-external-lb",
        "data-parallel-hybrid-lb",
        "data-parallel-multi-port-external-lb",
        "data-parallel-rank",
        "data-parallel-size",
        "data-parallel-size-local",
        "data-parallel-start-rank",
        "device-ids",
        "prefill-context-parallel-size",
        "tensor-parallel-size",
    ]


def test_the_multi_node_layout_is_owned_by_spec_nodes():
    # One pod per node, pipeline stages across them: the operator sets the ranks and the leader's address.
    assert sorted(f.name for f in TABLE.owned_by()["spec.nodes"]) == [
        "master-addr",
        "master-port",
        "nnodes",
        "node-rank",
        "pipeline-parallel-size",
    ]


def test_tuning_flags_stay_open_to_engine_args():
    open_names = {f.name for f in TABLE.open_flags}
    assert {
        "gpu-memory-utilization",
        "kv-cache-dtype",
        "enable-prefix-caching",
        "max-logprobs",
        "enforce-eager",
        "decode-context-parallel-size",
        "compilation-config",
        "block-size",
    } <= open_names
    assert len(open_names) == 321 - 44
    assert not any(f.positional for f in TABLE.open_flags)


def test_the_generators_owners_are_the_tables():
    gen = load_generator()
    assert {f.name: f.owner for f in TABLE.flags if f.owner} == gen.OWNERS


def test_the_generator_keeps_what_checking_needs():
    gen = load_generator()
    assert gen.flag_entry(
        {"name": "middleware", "aliases": [], "value": "list(string)", "default": [], "action": "append"}
    ) == {"name": "middleware", "value": "string", "repeatable": True}
    assert gen.flag_entry(
        {"name": "max-lora-rank", "aliases": [], "value": "enum", "choices": [1, 8, 16], "default": 16}
    ) == {"name": "max-lora-rank", "value": "int", "choices": ["1", "8", "16"], "owner": "spec.adapters"}
    assert gen.flag_entry({"name": "max-model-len", "aliases": [], "value": "int", "default": None}) == {
        "name": "max-model-len",
        "value": "human-int-or-auto",
        "owner": "spec.limits.maxTotalTokens",
    }
    assert gen.flag_entry(
        {"name": "spec-method", "aliases": [], "value": "enum", "choices": ["ngram", None], "default": None}
    ) == {"name": "spec-method", "value": "enum", "choices": ["ngram", "None"], "takes_none": True}
    assert gen.flag_entry(
        {
            "name": "enable-lora",
            "aliases": ["--disable-lora"],
            "hidden_aliases": ["--no-enable-lora"],
            "value": "bool-optional(--x/--no-x)",
            "default": None,
        }
    ) == {
        "name": "enable-lora",
        "aliases": ["--disable-lora", "--no-enable-lora"],
        "value": "bool-optional",
        "owner": "spec.adapters",
    }


def test_the_flags_kinds_are_the_parsers():
    assert TABLE.flag("tensor-parallel-size").aliases == ("-tp",)
    assert TABLE.flag("dtype").value == "enum"
    assert sorted(TABLE.flag("dtype").choices) == sorted(["auto", "half", "float16", "bfloat16", "float", "float32"])
    # No argparse choices: vLLM's config refuses an unknown value when the engine starts.
    assert [TABLE.flag(n).choices for n in ("quantization", "kv-cache-dtype", "load-format")] == [(), (), ()]
    assert "bitsandbytes" not in TABLE.source["checked_later"]["quantization"]["values"]
    assert TABLE.flag("served-model-name").nargs == "+" and not TABLE.flag("served-model-name").repeatable
    assert [f.name for f in TABLE.flags if f.repeatable] == ["middleware"]
    assert TABLE.flag("hf-token").nargs == "?"
    assert TABLE.flag("enable-prefix-caching").value == "bool-optional"
    assert TABLE.flag("enable-prefix-caching").aliases == ("--disable-prefix-caching", "--no-enable-prefix-caching")
    assert TABLE.flag("max-num-batched-tokens").value == "human-int"
    assert TABLE.flag("compilation-config").value == "json-object"
    assert TABLE.flag("allowed-origins").value == "json"
    assert TABLE.flag("model_tag").positional and TABLE.flag("model_tag").option == "model_tag"
    assert TABLE.flag("mm-processor-device").choices == ("auto", "cpu", "cuda")  # on CUDA


# --- one word -------------------------------------------------------------------------------


@pytest.mark.parametrize(
    "word, name",
    [
        ("--tensor-parallel-size", "tensor-parallel-size"),
        ("-tp", "tensor-parallel-size"),
        ("-tp=2", "tensor-parallel-size"),
        ("--tensor_parallel_size", "tensor-parallel-size"),
        ("--max_model_len", "max-model-len"),
        ("--max_model_len=8k", "max-model-len"),
        ("-pp", "pipeline-parallel-size"),
        ("-dp", "data-parallel-size"),
        ("-q", "quantization"),
        ("-qfp8", "quantization"),
        ("--disable-prefix-caching", "enable-prefix-caching"),
        ("--no-enable-prefix-caching", "enable-prefix-caching"),
        ("--compilation-config.mode", "compilation-config"),
        ("-cc.mode=3", "compilation-config"),
        ("-O3", "optimization-level"),
        ("-O=2", "optimization-level"),
        ("--device-memory-utilization", "gpu-memory-utilization"),
    ],
)
def test_flag_of_reads_a_word_as_vllm_does(word, name):
    assert flag_of(word) is TABLE.flag(name)


@pytest.mark.parametrize("word", ["--tensor-parallel", "--bogus", "-tp2", "-O", "MODEL", "8192", "-1", "--", "-"])
def test_flag_of_knows_no_prefix_and_no_value(word):
    assert flag_of(word) is None


def test_flag_name_is_the_canonical_option_or_the_word_as_written():
    assert flag_name("-tp") == "--tensor-parallel-size"
    assert flag_name("--max_model_len=8k") == "--max-model-len"
    assert flag_name("-O3") == "--optimization-level"
    assert flag_name("-cc.mode") == "--compilation-config"
    assert flag_name("--bogus_flag=1") == "--bogus_flag"
    assert flag_name("--bogus.key") == "--bogus"


def test_is_option_follows_argparse():
    assert is_option("--port") and is_option("-tp") and is_option("--bogus") and is_option("-O3")
    assert not is_option("-1") and not is_option("-0.5") and not is_option("8000")
    assert not is_option("-") and not is_option('{"mode": 3}') and not is_option("-x y")
    assert is_option("-no value")  # -n (--nnodes) with "o value" joined to it, to argparse as here


# --- an argv --------------------------------------------------------------------------------


def test_the_likely_argv_has_no_problem():
    assert unknown_options(LIKELY) == []
    assert value_problems(LIKELY) == []
    assert repeated_options(LIKELY) == []
    assert positionals(LIKELY) == [MODEL]
    assert [(o, f.owner) for o, f in owned_options(LIKELY)] == [
        ("--revision", "spec.model.revision"),
        ("--tensor-parallel-size", "spec.gpus"),
        ("--max-model-len", "spec.limits.maxTotalTokens"),
        ("--max-num-seqs", "spec.limits.maxConcurrentRequests"),
        ("--served-model-name", "operator"),
        ("--host", "operator"),
        ("--port", "operator"),
        ("--dtype", "spec.dtype"),
    ]


def test_unknown_options_are_named_once_as_written():
    assert unknown_options([MODEL, "--tensor-parallel-sizee", "2", "--bogus", "--bogus=1", "-O", "x"]) == [
        "--tensor-parallel-sizee",
        "--bogus",
        "-O",
    ]
    assert unknown_options(["--tensor-parallel", "2"]) == ["--tensor-parallel"]  # argparse would take the prefix
    assert unknown_options(["-O", "3", "--max_model_len", "8k", "-tp", "2"]) == []


def test_owned_options_name_the_option_as_written():
    got = owned_options(
        [
            "-tp",
            "2",
            "--no-enable-lora",
            "--model=x",
            "--gpu-memory-utilization",
            "0.9",
            "--max_num_seqs",
            "3",
            "-qfp8",
            "--disable-log-stats",
            "--grpc",
        ]
    )
    assert [(o, f.name, f.owner) for o, f in got] == [
        ("-tp", "tensor-parallel-size", "spec.gpus"),
        ("--no-enable-lora", "enable-lora", "spec.adapters"),
        ("--model", "model", "spec.model.id"),
        ("--max_num_seqs", "max-num-seqs", "spec.limits.maxConcurrentRequests"),
        ("-q", "quantization", "spec.quantization"),
        ("--disable-log-stats", "disable-log-stats", "operator"),
        ("--grpc", "grpc", "operator"),
    ]


def test_positionals_are_the_words_no_option_takes():
    assert positionals(
        [MODEL, "--enable-prefix-caching", "true", "--max-model-len", "-1", "--served-model-name", "a", "b"]
    ) == [MODEL, "true"]
    assert positionals(["--hf-token", "--port", "1"]) == []


def test_a_flag_given_twice_is_repeated_whatever_its_spelling():
    assert repeated_options(["-tp", "2", "--tensor-parallel-size", "4"]) == ["--tensor-parallel-size"]
    assert repeated_options(["--max_model_len", "1", "--max-model-len", "2"]) == ["--max-model-len"]
    assert repeated_options(["--enable-prefix-caching", "--disable-prefix-caching"]) == ["--enable-prefix-caching"]
    assert repeated_options(["-O3", "--optimization-level", "2"]) == ["--optimization-level"]
    assert repeated_options(["--served-model-name", "a", "--served-model-name", "b"]) == ["--served-model-name"]


def test_middleware_and_json_keys_given_one_by_one_may_repeat():
    assert repeated_options(["--middleware", "a", "--middleware", "b"]) == []
    assert (
        repeated_options(["-cc.mode", "3", "-cc.backend", "eager", "-cc.custom_ops+", "+a", "-cc.custom_ops+", "-b"])
        == []
    )
    assert repeated_options(["-cc.mode", "3", "--compilation-config.mode", "4"]) == ["--compilation-config.mode"]
    assert repeated_options(["--compilation-config", "{}", "-cc.mode", "3"]) == ["--compilation-config"]
    assert repeated_options(["-ac.backend", "x", "-ac.backend.y", "z"]) == ["--attention-config.backend.y"]


def test_good_values_have_no_problem():
    assert (
        value_problems(
            [
                "--max-model-len",
                "32k",
                "--max-model-len",
                "auto",
                "--max-model-len",
                "-1",
                "--max-num-batched-tokens",
                "8K",
                "--kv-cache-memory-bytes",
                "1.5g",
                "--gpu-memory-utilization",
                "0.9",
                "--seed",
                "-3",
                "--dtype",
                "half",
                "--kv-cache-dtype",
                "fp8",
                "--quantization",
                "anything-goes-until-the-engine-starts",
                "--max-lora-rank",
                "64",
                "--moe-backend",
                "FLASHINFER-CUTLASS",
                "--spec-method",
                "None",
                "--tool-strict-level",
                "",
                "--compilation-config",
                '{"mode": 3, "max_cudagraph_capture_size": 1k}',
                "--allowed-origins",
                '["*"]',
                "--hf-overrides",
                "not-json",
                "--hf-token",
                "--enable-prefix-caching",
                "-O3",
                "-cc.mode",
                "3",
                "--cudagraph-capture-sizes",
                "1",
                "2",
                "4",
                "--collect-detailed-traces",
                "model",
                "worker",
                "--gpu-memory-utilization=-0.5",
            ]
        )
        == []
    )


@pytest.mark.parametrize(
    "argv, problem",
    [
        (
            ["--tensor-parallel-size", "two"],
            "--tensor-parallel-size: 'two' is not a value vLLM 0.33.0 accepts: use a whole number.",
        ),
        (
            ["-tp", "1.5"],
            "--tensor-parallel-size (given as -tp): '1.5' is not a value vLLM 0.33.0 accepts: use a whole number.",
        ),
        (["--max-num-seqs", "None"], "--max-num-seqs: 'None' is not a value vLLM 0.33.0 accepts: use a whole number."),
        (
            ["--gpu-memory-utilization", "most"],
            "--gpu-memory-utilization: 'most' is not a value vLLM 0.33.0 accepts: use a number.",
        ),
        (
            ["--dtype", "float8"],
            "--dtype: 'float8' is not a value vLLM 0.33.0 accepts: use one of auto, bfloat16, float, "
            "float16, float32, half.",
        ),
        (
            ["--max-lora-rank", "7"],
            "--max-lora-rank: '7' is not a value vLLM 0.33.0 accepts: use one of 1, 8, 16, 32, 64, 128, 256, 320, 512.",
        ),
        (
            ["--max_model_len", "lots"],
            "--max-model-len (given as --max_model_len): 'lots' is not a value vLLM 0.33.0 accepts: "
            "use a whole number such as 8192, 8k (8000) or 8K (8192), or auto.",
        ),
        (
            ["--kv-cache-memory-bytes", "1.5G"],
            "--kv-cache-memory-bytes: '1.5G' is not a value vLLM 0.33.0 accepts: K, M, G and "
            "T take whole numbers only: write 1.5g (powers of 1000) or a whole number of G.",
        ),
        (
            ["--compilation-config", '{"mode": 3'],
            "--compilation-config: '{\"mode\": 3' is not a value vLLM 0.33.0 accepts: it "
            "is not JSON (Expecting ',' delimiter at character 10).",
        ),
        (
            ["--compilation-config", "3"],
            "--compilation-config: '3' is not a value vLLM 0.33.0 accepts: give a JSON object, "
            'such as {"key": value}.',
        ),
        (
            ["--allowed-origins", "8k"],
            "--allowed-origins: '8k' is not a value vLLM 0.33.0 accepts: it is not JSON (Extra data at character 1).",
        ),
        (
            ["--hf-overrides", "{not json}"],
            "--hf-overrides: '{not json}' is not a value vLLM 0.33.0 accepts: it is not JSON "
            "(Expecting property name enclosed in double quotes at character 1).",
        ),
        (
            ["--collect-detailed-traces", "model", "nope"],
            "--collect-detailed-traces: 'nope' is not a value vLLM 0.33.0 "
            "accepts: use one of all, model, worker, None.",
        ),
        (
            ["--cudagraph-capture-sizes", "1", "x"],
            "--cudagraph-capture-sizes: 'x' is not a value vLLM 0.33.0 accepts: use a whole number.",
        ),
        (["--port"], "--port needs a value."),
        (["--max-model-len", "--port", "8000"], "--max-model-len needs a value."),
        (["--served-model-name", "--port", "8000"], "--served-model-name needs at least one value."),
        (
            ["--enable-prefix-caching=true"],
            "--enable-prefix-caching takes no value, but was given 'true'; give the flag alone.",
        ),
        (["--compilation-config.mode"], "--compilation-config.mode needs a value."),
        (
            ["--max-model-len.x", "1"],
            "--max-model-len.x: only a JSON option takes .keys, and --max-model-len is not one.",
        ),
        (
            ["--gpu-memory-utilization", "-0.5"],
            "--gpu-memory-utilization: vLLM reads '-0.5' as an option's .key, not as a "
            "number; write --gpu-memory-utilization=-0.5.",
        ),
    ],
)
def test_each_bad_value_gets_one_sentence_naming_the_flag_and_what_is_valid(argv, problem):
    assert value_problems(argv) == [problem]


def test_value_problems_leave_unknown_options_to_unknown_options():
    assert value_problems(["--bogus", "x", "--tensor-parallel-sizee", "two"]) == []


def test_the_table_loads_from_text():
    table = vllm_rules.load_table(
        '{"source": {"tag": "v0"}, "flags": [{"name": "x", "value": "int", "aliases": ["-x"], '
        '"owner": "operator", "takes_none": true}]}'
    )
    assert table.flags == (vllm_rules.Flag(name="x", value="int", aliases=("-x",), owner="operator", takes_none=True),)
    assert table.owned_by() == {"operator": table.flags} and table.open_flags == ()


def test_value_of_reads_a_flag_as_vllm_does():
    assert vllm_rules.value_of(["--gpu-memory-utilization", "0.8"], "--gpu-memory-utilization") == "0.8"
    assert vllm_rules.value_of(["--gpu_memory_utilization=0.7"], "--gpu-memory-utilization") == "0.7"
    assert vllm_rules.value_of(["-tp", "4"], "--tensor-parallel-size") == "4"
    assert vllm_rules.value_of(["--enable-prefix-caching"], "--gpu-memory-utilization") is None

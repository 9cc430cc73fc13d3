"""The manifests hack/check_launcher.py checks: variants of one LLMDeployment over each field the
launcher's arguments come from, the known crash cases, and the TGI manifests of given files."""

from __future__ import annotations

import dataclasses
from pathlib import Path

import yaml

from llm_operator.engines.tgi import DTYPE_COMPATIBLE_QUANTIZATIONS, QUANTIZATIONS


@dataclasses.dataclass
class Case:
    name: str
    doc: dict
    model_dir: str | None = None  # tests/data/models/<dir>; None: guessed from the model id
    quant_method: str | None = None  # quantization_config.quant_method; None: from spec.quantization
    known_crash: bool = False  # one of the known crash cases (listed for confirmation)


def manifest(name: str, **spec) -> dict:
    base = {
        "model": {"id": "mistralai/Mistral-7B-Instruct-v0.2"},
        "gpus": 1,
        "limits": {"maxInputTokens": 4096, "maxTotalTokens": 8192},
    }
    for key, value in spec.items():
        base[key] = value
    return {"apiVersion": "llm-operator.io/v1alpha1", "kind": "LLMDeployment", "metadata": {"name": name}, "spec": base}


def builtin_cases() -> list[Case]:
    cases: list[Case] = []
    for q in QUANTIZATIONS:
        cases.append(Case(f"quant-{q}", manifest(f"quant-{q}", quantization=q)))
    for d in ("auto", "float16", "bfloat16"):
        cases.append(Case(f"dtype-{d}", manifest(f"dtype-{d}", dtype=d)))
    for q in QUANTIZATIONS:
        if q != "none" and q in DTYPE_COMPATIBLE_QUANTIZATIONS:
            cases.append(Case(f"dtype-float16-{q}", manifest(f"dtype-float16-{q}", quantization=q, dtype="float16")))
    # The CRD refuses these (dtype with a pre-quantized format; exl2 sharded).
    cases.append(Case("dtype-float16-awq", manifest("dtype-float16-awq", quantization="awq", dtype="float16")))
    cases.append(Case("exl2-gpus-2", manifest("exl2-gpus-2", quantization="exl2", gpus=2)))
    for g in range(1, 17):
        cases.append(Case(f"gpus-{g}", manifest(f"gpus-{g}", gpus=g)))
    cases.append(Case("gpus-unset", manifest("gpus-unset", gpus=None)))
    cases.append(Case("limits-unset", manifest("limits-unset", limits={})))
    cases.append(
        Case(
            "limits-all",
            manifest(
                "limits-all",
                limits={
                    "maxInputTokens": 4096,
                    "maxTotalTokens": 8192,
                    "maxBatchPrefillTokens": 8192,
                    "maxConcurrentRequests": 128,
                },
            ),
        )
    )
    cases.append(Case("limits-input-only", manifest("limits-input-only", limits={"maxInputTokens": 4096})))
    cases.append(Case("limits-total-only", manifest("limits-total-only", limits={"maxTotalTokens": 8192})))
    cases.append(Case("limits-prefill-only", manifest("limits-prefill-only", limits={"maxBatchPrefillTokens": 2048})))
    adapters = [
        {"name": "support", "id": "predibase/customer_support"},
        {"name": "code", "id": "predibase/magicoder", "revision": "main"},
    ]
    cases.append(Case("adapters", manifest("adapters", adapters=adapters)))
    cases.append(Case("cache-on", manifest("cache-on", cache={"enabled": True})))
    cases.append(Case("cache-on-adapters", manifest("cache-on-adapters", cache={"enabled": True}, adapters=adapters)))
    cases.append(
        Case(
            "token-secret",
            manifest(
                "token-secret",
                model={"id": "mistralai/Mistral-7B-Instruct-v0.2", "tokenSecretRef": {"name": "hf-token"}},
            ),
        )
    )
    cases.append(
        Case(
            "trust-remote-code",
            manifest("trust-remote-code", model={"id": "mistralai/Mistral-7B-Instruct-v0.2", "trustRemoteCode": True}),
        )
    )
    cases.append(
        Case(
            "llama-3-70b-awq-4gpu",
            manifest(
                "llama-3-70b-awq-4gpu",
                model={"id": "casperhansen/llama-3-70b-instruct-awq"},
                quantization="awq",
                gpus=4,
                limits={"maxInputTokens": 7168, "maxTotalTokens": 8192},
            ),
        )
    )

    # The known crash cases.
    def crash(name, quant_method=None, model_dir=None, **spec):
        cases.append(
            Case(name, manifest(name, **spec), model_dir=model_dir, quant_method=quant_method, known_crash=True)
        )

    crash("crash-awq-ckpt-none-fp16", quant_method="awq", quantization="none", dtype="float16")
    crash("crash-args-port", engine={"args": ["--port", "9000"]})
    crash("crash-args-num-shard", engine={"args": ["--num-shard", "2"]})
    crash("crash-args-unknown-flag", engine={"args": ["--no-such-flag"]})
    crash(
        "crash-args-batch-total",
        engine={"args": ["--max-batch-total-tokens", "4096"]},
        limits={"maxInputTokens": 4096, "maxTotalTokens": 8192},
    )
    crash("crash-args-max-input-length", engine={"args": ["--max-input-length", "100"]})
    crash("crash-args-blank-in-value", engine={"args": ["--otlp-service-name", "my service"]})
    crash("crash-env-sharded-1gpu", engine={"env": [{"name": "SHARDED", "value": "true"}]})
    crash("crash-env-quantize-int8", engine={"env": [{"name": "QUANTIZE", "value": "int8"}]})
    crash("crash-env-max-input-length", engine={"env": [{"name": "MAX_INPUT_LENGTH", "value": "10"}]})
    # mistral-7b's max_position_embeddings is 32768.
    crash("crash-input-ge-context", limits={"maxInputTokens": 32768})
    crash(
        "crash-input-ge-context-phi3",
        model_dir="phi-3-mini-4k",
        model={"id": "microsoft/Phi-3-mini-4k-instruct"},
        limits={"maxInputTokens": 4096},
    )
    return cases


def file_cases(paths: list[str]) -> list[Case]:
    cases = []
    for path in paths:
        with open(path) as f:
            docs = [d for d in yaml.safe_load_all(f) if d]
        for i, doc in enumerate(docs):
            if ((doc.get("spec") or {}).get("engine") or {}).get("name", "tgi") != "tgi":
                continue  # another engine's manifest: hack/check_vllm_args.py checks vLLM's
            name = Path(path).stem + (f"#{i}" if len(docs) > 1 else "")
            cases.append(Case(name, doc))
    return cases

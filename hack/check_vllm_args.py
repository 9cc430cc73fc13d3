#!/usr/bin/env python3
"""Give what the operator renders for vLLM to vLLM 0.33.0's own `vllm serve` parser.

    hack/vllm_parser/setup.sh                         # once (about 40 s, 331 MB, PyPI only)
    .venv/bin/python hack/check_vllm_args.py [FILE.yaml ...]

Each manifest (default: examples/*.yaml, each as `engine.name: vllm`, and a built-in list
of variants: every quantization vLLM has, adapters, open engine.args) is rendered with the
operator's own code (llm_operator.cli.render.render_one, what `llm-operator render --engine
vllm` runs), with the catalog's facts when the model is in it. The serving container's
args (the words after `vllm serve`, the image's entrypoint) go to hack/vllm_parser/check_argv.py;
what it refuses is printed with the manifest's name. Exit status: 1 if vLLM refused any.

What the parser cannot judge (it has no model and no GPU) is listed in hack/vllm_parser/README.md.
Not part of CI.
"""

from __future__ import annotations

import argparse
import datetime as dt
import json
import subprocess
import sys
from pathlib import Path

import yaml

from llm_operator.cli import render

ROOT = Path(__file__).resolve().parent.parent
CHECK_ARGV = ROOT / "hack" / "vllm_parser" / "check_argv.py"


def manifest(name: str, **spec) -> dict:
    spec.setdefault("engine", {"name": "vllm"})
    return {"apiVersion": "llm-operator.io/v1alpha1", "kind": "LLMDeployment", "metadata": {"name": name}, "spec": spec}


def builtin_cases() -> list[dict]:
    qwen = {"id": "Qwen/Qwen3-8B"}
    # Pre-quantized formats on a model the catalog lacks (its facts unknown, as for a repository
    # published in that format); fp8 on the catalog's 16-bit Qwen3-8B (quantized at load).
    cases = [
        manifest(f"quant-{q}", model={"id": f"acme/qwen3-8b-{q}"}, gpus=1, quantization=q)
        for q in ("awq", "gptq", "marlin", "compressed-tensors")
    ]
    cases.append(manifest("quant-fp8", model=qwen, gpus=1, quantization="fp8"))
    cases += [
        manifest("fp8-checkpoint", model={"id": "Qwen/Qwen3-32B-FP8"}, gpus=2, quantization="fp8"),
        manifest(
            "limits",
            model=qwen,
            gpus=1,
            dtype="bfloat16",
            limits={"maxTotalTokens": 16384, "maxBatchPrefillTokens": 8192, "maxConcurrentRequests": 256},
        ),
        manifest(
            "adapters",
            model=qwen,
            gpus=1,
            adapters=[{"name": "sql", "id": "acme/sql-lora"}, {"name": "chat", "id": "acme/chat-lora"}],
        ),
        manifest(
            "open-args",
            model=qwen,
            gpus=1,
            engine={
                "name": "vllm",
                "args": [
                    "--enable-prefix-caching",
                    "--gpu-memory-utilization=0.95",
                    "--kv-cache-dtype",
                    "fp8",
                    "--compilation-config",
                    '{"cudagraph_mode": "FULL_AND_PIECEWISE"}',
                ],
            },
        ),
        manifest("trust", model={"id": "Qwen/Qwen3-8B", "trustRemoteCode": True, "revision": "abc123"}, gpus=2),
        # A replica on two nodes: the leader's and the worker's argv (LeaderWorkerSet).
        manifest("two-nodes", model={"id": "meta-llama/Meta-Llama-3.1-405B"}, gpus=8, nodes=2),
    ]
    return cases


# What LWS's webhook sets in a group's pods, as the kubelet expands $(VAR) in args.
LWS_ENV = {"LWS_LEADER_ADDRESS": "two-nodes-0.two-nodes.default", "LWS_WORKER_INDEX": "1"}


def _expanded(args: list[str]) -> list[str]:
    out = []
    for word in args:
        for name, value in LWS_ENV.items():
            word = word.replace(f"$({name})", value)
        out.append(word)
    return out


def argvs_of(doc: dict) -> list[tuple[str, list[str]]]:
    """(name, argv) of each serving container the manifest becomes: the Deployment's, or a
    LeaderWorkerSet's leader and worker (variables expanded as the kubelet would)."""
    args = argparse.Namespace(
        namespace="default", gpu="h100-80gb", config=None, params=None, hub=False, catalog_file=[], engine="vllm"
    )
    decision, _ = render.render_one(doc, args, dt.datetime.now(dt.UTC))
    name = doc["metadata"]["name"]
    templates = []
    for obj in decision.desired:
        if obj["kind"] == "Deployment":
            templates.append((name, obj["spec"]["template"]))
        elif obj["kind"] == "LeaderWorkerSet":
            group = obj["spec"]["leaderWorkerTemplate"]
            templates += [(f"{name} (leader)", group["leaderTemplate"]), (f"{name} (worker)", group["workerTemplate"])]
    out = []
    for label, template in templates:
        container = template["spec"]["containers"][0]
        assert container["command"] == ["vllm", "serve"], container["command"]
        out.append((label, _expanded(container["args"])))
    return out


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("files", nargs="*", help="manifests (default: examples/*.yaml and the built-in cases)")
    opts = p.parse_args(argv)
    paths = [Path(f) for f in opts.files] or sorted((ROOT / "examples").glob("*.yaml"))
    docs = [d for path in paths for d in yaml.safe_load_all(path.read_text()) if d]
    if not opts.files:
        docs += builtin_cases()
    named, argvs = [], []
    for doc in docs:
        found = argvs_of(doc)
        if not found:
            print(f"{doc['metadata']['name']}: the operator makes no serving pods (it refuses the spec itself)")
            continue
        for label, argv_ in found:
            named.append(label)
            argvs.append(argv_)
    proc = subprocess.run(
        [sys.executable, str(CHECK_ARGV)], input=json.dumps(argvs), capture_output=True, text=True, timeout=300
    )
    results = [json.loads(line) for line in proc.stdout.splitlines() if line.strip()]
    if len(results) != len(argvs):
        print(proc.stdout, proc.stderr, file=sys.stderr)
        return 2
    refused = 0
    for name, argv_, result in zip(named, argvs, results):
        verdict = "ok" if result["ok"] else f"REFUSED ({result['stage']}): {result['error']}"
        warnings = f"  warnings: {result['warnings']}" if result.get("warnings") else ""
        print(f"{name}: {verdict}{warnings}\n    vllm serve {' '.join(argv_)}")
        refused += not result["ok"]
    print(f"\n{len(argvs)} argv lists, vLLM {render_version()}'s parser refused {refused}")
    return 1 if refused else 0


def render_version() -> str:
    from llm_common import vllm

    return vllm.VERSION


if __name__ == "__main__":
    sys.exit(main())

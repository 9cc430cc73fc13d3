#!/usr/bin/env python3
"""Write common/llm_common/data/vllm-serve-<version>.json, the `vllm serve` flags that
llm_common/vllm_rules.py checks an argv against, from a list of every option of the parser.

    python3 hack/vllm_table.py OPTIONS.json [--check]

OPTIONS.json lists each option of `vllm serve` as vLLM's own parser builds it (name, aliases,
value, choices, nargs, action, default), with a "source" block naming the wheel it came from;
hack/vllm_parser/dump_options.py writes one (hack/vllm_parser/README.md).
This script keeps what checking needs, adds who owns each flag (OWNERS below) and writes
the table, one flag a line. `--check` only says whether the committed table differs (exit 1).
After writing, run hack/vllm_parser/check_table.py to compare the table with the parser.
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
DATA = ROOT / "common" / "llm_common" / "data"

OPERATOR = "operator"
GPUS = "spec.gpus"
NODES = "spec.nodes"
ADAPTERS = "spec.adapters"

# Who sets each flag; engine.args must not give these. Everything else is open to it.
OWNERS = {
    "model_tag": "spec.model.id",  # `vllm serve MODEL`, the positional
    "model": "spec.model.id",
    "revision": "spec.model.revision",
    # How many GPUs one pod uses: world size is PP x TP x PCP (vllm/config/parallel.py
    # ParallelConfig.__post_init__), times the data-parallel ranks this pod runs, over nnodes.
    "tensor-parallel-size": GPUS,
    # Pipeline stages are nodes: the operator runs one pod per node and tells each its rank
    # and the leader's address (vLLM's own multi-node mode, no Ray).
    "pipeline-parallel-size": NODES,
    "prefill-context-parallel-size": GPUS,
    "data-parallel-size": GPUS,
    "data-parallel-size-local": GPUS,
    "data-parallel-rank": GPUS,
    "data-parallel-start-rank": GPUS,
    "data-parallel-hybrid-lb": GPUS,
    "data-parallel-external-lb": GPUS,
    "data-parallel-multi-port-external-lb": GPUS,
    "nnodes": NODES,
    "node-rank": NODES,
    "master-addr": NODES,
    "master-port": NODES,
    "device-ids": GPUS,  # which GPUs: the device plugin gives the pod spec.gpus of them
    "quantization": "spec.quantization",
    "dtype": "spec.dtype",
    "max-model-len": "spec.limits.maxTotalTokens",
    "max-num-batched-tokens": "spec.limits.maxBatchPrefillTokens",
    "max-num-seqs": "spec.limits.maxConcurrentRequests",
    "enable-lora": ADAPTERS,
    "lora-modules": ADAPTERS,
    "max-lora-rank": ADAPTERS,
    "max-loras": ADAPTERS,
    "trust-remote-code": "spec.model.trustRemoteCode",
    "hf-token": "spec.model.tokenSecretRef",
    "download-dir": "spec.cache",
    # The pod's contract with its Service and probes: one HTTP server on the port, named as the resource.
    "served-model-name": OPERATOR,
    "host": OPERATOR,
    "port": OPERATOR,
    "uds": OPERATOR,
    "headless": OPERATOR,
    "api-server-count": OPERATOR,
    "grpc": OPERATOR,  # serves gRPC on --port instead of HTTP: /health would not answer
    "config": OPERATOR,  # a YAML file of more flags: the pod has none
    "ssl-keyfile": OPERATOR,
    "ssl-certfile": OPERATOR,
    "ssl-ca-certs": OPERATOR,
    "ssl-cert-reqs": OPERATOR,
    "ssl-ciphers": OPERATOR,
    # The autoscaler reads the engine's /metrics; with this flag vLLM records no stats there
    # (vllm/v1/engine/async_llm.py: no stat loggers when log_stats is False).
    "disable-log-stats": OPERATOR,
}

# The parser types these with vllm/utils/argparse_utils.py human_readable_int (8k, 2M, 1.5g),
# --max-model-len with human_readable_int_or_auto (also auto and -1): engine/arg_utils.py
# _compute_kwargs, human_readable_int_args. The options list says only "int".
HUMAN_INTS = {
    "max-num-batched-tokens",
    "max-num-scheduled-tokens",
    "kv-cache-memory-bytes",
    "safetensors-prefetch-block-size",
    "max-num-queued-tokens",
}
HUMAN_INT_OR_AUTO = {"max-model-len"}
# Their type lower-cases the value and turns - into _ before the choices are tried
# (engine/arg_utils.py EngineArgs.add_cli_args, kernel group).
FOLDED = {"moe-backend", "linear-backend", "sparse-indexer-topk-backend"}
# Typed with a config dataclass: the value must be a JSON object, which pydantic then checks
# (bare numbers in it may carry k/m/g/t); engine/arg_utils.py _compute_kwargs parse_dataclass.
# The other JSON options are plain json.loads.
CONFIG_OBJECTS = {
    "attention-config",
    "aux-output-config",
    "compilation-config",
    "ec-manager-config",
    "ec-transfer-config",
    "engram-config",
    "eplb-config",
    "fault-tolerance-config",
    "ir-op-priority",
    "kernel-config",
    "kv-events-config",
    "kv-transfer-config",
    "logging-config",
    "pooler-config",
    "profiler-config",
    "quantization-config",
    "reasoning-config",
    "structured-outputs-config",
    "watchdog-config",
    "weight-transfer-config",
}

# 'None' and '' read as unset for an option typed `X | None` (engine/arg_utils.py optional_type).
# The options list gives no types; a default of None says `X | None`, except for these, typed
# without None (int("None") fails) ...
DEFAULT_NONE_BUT_TYPED_WITHOUT = {
    "model_tag",
    "api-server-count",
    "config",
    "default-chat-template-kwargs",
    "reasoning-effort-map",
    "tokenizer",
    "max-model-len",
    "hf-token",
    "device-ids",
    "cp-kv-cache-interleave-size",
    "data-parallel-rank",
    "data-parallel-start-rank",
    "data-parallel-size-local",
    "data-parallel-address",
    "data-parallel-rpc-port",
    "elastic-ep-max-dp-size",
    "block-size",
    "mamba-cache-mode",
    "max-num-batched-tokens",
    "max-num-seqs",
    "cudagraph-capture-sizes",
    "max-cudagraph-capture-size",
    "spec-tokens",
    "gdn-prefill-backend",
    "kda-prefill-backend",
    "kda-decode-backend",
}
# ... and for this one, typed `int | None` with a default of 0.
TYPED_WITH_NONE_DEFAULT_SET = {"prefix-cache-retention-interval"}

# What the options list calls a value -> the kind of one value (a list's nargs is its own field)
KINDS = {
    "bool-flag": "flag",
    "bool-optional(--x/--no-x)": "bool-optional",
    "int": "int",
    "float": "float",
    "string": "string",
    "enum": "enum",
    "json": "json",
    "json|string": "json-or-string",
    "list(string)": "string",
    "list(int)": "int",
    "list(enum)": "enum",
    "string|bool-flag(bare flag = true)": "string",  # nargs '?': bare, it means "the stored token"
}


def flag_entry(option: dict) -> dict:
    name = option["name"]
    value = KINDS[option["value"]]
    if name in HUMAN_INTS:
        value = "human-int"
    elif name in HUMAN_INT_OR_AUTO:
        value = "human-int-or-auto"
    elif name in CONFIG_OBJECTS:
        value = "json-object"
    choices = [("None" if c is None else str(c)) for c in option.get("choices") or ()]
    if value == "enum" and all(isinstance(c, int) for c in option["choices"]):
        value = "int"  # int choices (--max-lora-rank): the value is read as an int, then looked up
    entry: dict = {"name": name}
    if name == "model_tag":
        entry["positional"] = True
    aliases = [*option.get("aliases", ()), *option.get("hidden_aliases", ())]
    if aliases:
        entry["aliases"] = aliases
    entry["value"] = value
    if choices:
        entry["choices"] = choices
    if name in FOLDED:
        entry["fold"] = "lower, - to _"
    if value not in ("flag", "bool-optional") and (
        name in TYPED_WITH_NONE_DEFAULT_SET
        or (option["default"] is None and name not in DEFAULT_NONE_BUT_TYPED_WITHOUT)
    ):
        entry["takes_none"] = True
    if option.get("nargs") and name != "model_tag":
        entry["nargs"] = option["nargs"]
    if option.get("action") == "append":
        entry["repeatable"] = True
    if name in OWNERS:
        entry["owner"] = OWNERS[name]
    return entry


def source_block(research: dict) -> dict:
    src = research["source"]
    commit = src["commit"].split()[0]
    later = {
        name: {"values": facts["values"], "checked_in": facts["validated_in"]}
        for name, facts in research.get("validated_value_sets", {}).items()
        if facts.get("values")
    }
    return {
        "repository": src["repository"],
        "tag": src["tag"],
        "commit": commit,
        "commit_note": f"short: the hash the wheel records (vllm/_version.py: __commit_id__ = 'g{commit}'); the wheel "
        "names no full SHA, and the repository's snapshot was too large to fetch for one",
        "wheel": {"file": src["wheel"]["file"], "sha256": src["wheel"]["sha256"]},
        "flags_from": "the parser `vllm serve` builds (vllm/entrypoints/cli/serve.py ServeSubcommand.subparser_init -> "
        "vllm/entrypoints/common/cli_args.py make_arg_parser: FrontendArgs and AsyncEngineArgs.add_cli_args), "
        "imported from the wheel's Python files with torch and transformers replaced by placeholders "
        "and the platform set to CUDA (hack/vllm_parser)",
        "parsing": {
            "repeated": "the last occurrence wins: FlexibleArgumentParser.parse_args (vllm/utils/argparse_utils.py) "
            "logs 'Found duplicate keys --x' for a --long option given twice and goes on; short aliases "
            "(-tp) are not counted. --middleware (action='append') collects every occurrence.",
            "lists": "an option with nargs '+' takes every following word up to the next option, in one occurrence; "
            "given twice, the last list wins",
            "underscores": "in each --word, '_' between the -- and the first '.' or '=' is read as '-': "
            "--max_model_len is --max-model-len",
            "unknown": "an option the parser lacks is refused: 'vllm serve: error: unrecognized arguments: --x', exit 2",
            "abbreviations": "argparse also takes a unique prefix of a long option (allow_abbrev is left on); "
            "this table knows full names and aliases only",
            "checked_later": "--quantization, --kv-cache-dtype and --load-format have no argparse choices: any value "
            "parses, and the engine's config refuses an unknown one when it starts (values below)",
            "none": "for options typed `X | None` (takes_none), 'None' and '' read as unset (engine/arg_utils.py optional_type)",
            "human_ints": "--max-model-len takes 8192, 8k (1000s), 8K (1024s) or auto/-1; --max-num-batched-tokens, "
            "--max-num-scheduled-tokens, --max-num-queued-tokens, --kv-cache-memory-bytes and "
            "--safetensors-prefetch-block-size take k/m/g/t and K/M/G/T suffixes",
            "json": "a JSON option takes one JSON string, or its keys one by one (--compilation-config.mode 3, "
            "merged into one object; key+ appends to a list); a json-object option (a config class) "
            "takes an object, whose bare numbers may carry k/m/g/t suffixes",
            "optimization": "-O<n>, -O=<n> and -O followed by 0-3 are rewritten to --optimization-level",
            "model": "the model is the positional `vllm serve MODEL`; --model still works, warns, and is moved to the front",
        },
        "checked_later": later,
    }


def table_of(research: dict) -> dict:
    names = {o["name"] for o in research["options"]}
    missing = sorted(set(OWNERS) - names)
    if missing:
        raise SystemExit(f"OWNERS names options the parser lacks: {', '.join(missing)}")
    return {"source": source_block(research), "flags": [flag_entry(o) for o in research["options"]]}


def _block(obj, indent: str) -> str:
    """Objects one key a line; lists and scalars on one line."""
    if not isinstance(obj, dict):
        return json.dumps(obj, ensure_ascii=False)
    inner = indent + "  "
    keys = ",\n".join(f"{inner}{json.dumps(k)}: {_block(v, inner)}" for k, v in obj.items())
    return "{\n" + keys + "\n" + indent + "}"


def render(table: dict) -> str:
    flags = ",\n".join("    " + json.dumps(f, ensure_ascii=False) for f in table["flags"])
    return '{\n  "source": ' + _block(table["source"], "  ") + ',\n  "flags": [\n' + flags + "\n  ]\n}\n"


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("options", type=Path, help="every option of `vllm serve`, as the parser builds it")
    parser.add_argument("--check", action="store_true", help="only say whether the committed table differs")
    args = parser.parse_args(argv)
    research = json.loads(args.options.read_text(encoding="utf-8"))
    table = table_of(research)
    out = DATA / f"vllm-serve-{table['source']['tag'].removeprefix('v')}.json"
    text = render(table)
    if args.check:
        same = out.exists() and out.read_text(encoding="utf-8") == text
        print(f"{out.relative_to(ROOT)}: {'up to date' if same else 'differs'}")
        return 0 if same else 1
    out.write_text(text, encoding="utf-8")
    print(
        f"wrote {out.relative_to(ROOT)}: {len(table['flags'])} flags, "
        f"{sum(1 for f in table['flags'] if 'owner' in f)} owned"
    )
    return 0


if __name__ == "__main__":
    sys.exit(main())

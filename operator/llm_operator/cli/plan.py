"""`llm-operator plan`: will this model fit on these GPUs? Answers before a GPU is spent.

    llm-operator plan MODEL_ID --quantization awq --gpu h100-80gb [--gpus 2] [--json]
    llm-operator plan MODEL_ID --engine vllm [--gpu-memory-utilization 0.95] --gpu h100-80gb
    llm-operator plan MODEL_ID --engine vllm --gpu h100-80gb --gpus 8 [--nodes 2]
    llm-operator plan MODEL_ID --config config.json --params 70553706496 --gpu l4
    llm-operator plan --list-gpus

Without --config the facts come from the Hub; when it cannot be reached (or the model is
gated and no token is given), from the catalog when it knows the model, and it says so.

Exit status: 0 fits, 1 does not fit (or cannot be sharded that way), 2 bad input.
With --config it never touches the network; huggingface_hub is imported only when
the facts have to come from the Hub.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
from dataclasses import replace
from typing import Any, TextIO

from llm_common.words import plural
from llm_operator.engines import DEFAULT_ENGINE, ENGINE_NAMES, vllm
from llm_operator.engines.tgi import QUANTIZATIONS
from llm_operator.facts.catalog import load as load_catalog
from llm_operator.facts.hub import ModelFacts, ModelFactsUnavailable, ModelMissing, facts_from_hub, facts_from_local
from llm_operator.facts.lookup import CATALOG, CONFIG, HUB, UNAVAILABLE, FactsAnswer, from_catalog, source_phrase
from llm_operator.planning.gpus import GPU_TYPES, MAX_GPUS_PER_NODE, UnknownGpuType, gpu_type_for
from llm_operator.planning.planner import Plan, PlanRequest, plan

EXIT_FITS = 0
EXIT_DOES_NOT_FIT = 1
EXIT_BAD_INPUT = 2  # argparse's own status for usage errors
# Said when neither the Hub nor the catalog has a model's facts: the one source left.
GIVE_CONFIG = (
    "To plan without the Hub, give the model's config.json and exact parameter count (--config PATH --params N)."
)


def add_plan_arguments(parser: argparse.ArgumentParser) -> None:
    """Add the `plan` options to a (sub)parser; run_plan reads them."""
    parser.add_argument(
        "model_id", nargs="?", metavar="MODEL_ID", help="Hugging Face model id, e.g. meta-llama/Meta-Llama-3-70B"
    )
    parser.add_argument("--revision", default="main", help="branch, tag or commit on the Hub (default: main)")
    source = parser.add_argument_group("offline model facts (skip the Hub)")
    source.add_argument("--config", metavar="PATH", help="the model's config.json")
    source.add_argument("--params", type=_positive_int, metavar="N", help="exact parameter count (with --config)")
    source.add_argument(
        "--safetensors-index",
        metavar="PATH",
        help="model.safetensors.index.json, for the parameter count (with --config)",
    )
    parser.add_argument(
        "--engine",
        default=DEFAULT_ENGINE,
        choices=ENGINE_NAMES,
        help="serving engine whose memory use to plan for (default: tgi)",
    )
    parser.add_argument(
        "--quantization",
        default="none",
        choices=QUANTIZATIONS,
        metavar="Q",
        help=f"one of {', '.join(QUANTIZATIONS)} (default: none; vLLM has no eetq, exl2 or bitsandbytes*)",
    )
    parser.add_argument(
        "--gpu", metavar="TYPE", help="GPU short name (see --list-gpus) or nvidia.com/gpu.product value"
    )
    parser.add_argument(
        "--gpu-memory-gib", type=_positive_float, metavar="GIB", help="GPU memory, overriding the table"
    )
    parser.add_argument(
        "--gpu-memory-utilization",
        type=_fraction,
        metavar="F",
        help=(
            "vLLM only: the share of each GPU's CUDA memory vLLM reserves "
            f"(default: {vllm.GPU_MEMORY_UTILIZATION}, vLLM 0.33.0's)"
        ),
    )
    parser.add_argument(
        "--gpus", type=_positive_int, metavar="N", help="GPUs per node of a replica (default: the fewest that fit)"
    )
    parser.add_argument(
        "--nodes",
        type=_positive_int,
        metavar="N",
        help=(
            "nodes one replica spans, --gpus on each (vLLM's pipeline parallelism; "
            "default: the fewest that fit for vllm, 1 for tgi)"
        ),
    )
    parser.add_argument(
        "--max-total-tokens",
        type=_positive_int,
        metavar="T",
        help="tokens per sequence, prompt plus output (default: min(context, 4096))",
    )
    parser.add_argument(
        "--kv-cache-dtype",
        choices=("fp8_e4m3fn", "fp8_e5m2"),
        help="KV cache in 8 bits (TGI's names; vLLM's fp8_e4m3/fp8_e5m2 size the same)",
    )
    parser.add_argument("--json", action="store_true", help="print one JSON object instead of a table")
    parser.add_argument(
        "--token-env",
        default="HF_TOKEN",
        metavar="NAME",
        help="environment variable holding a Hub token for gated models (default: HF_TOKEN)",
    )
    parser.add_argument("--cache-dir", metavar="DIR", help="keep fetched model facts here between runs")
    parser.add_argument(
        "--catalog-file",
        action="append",
        default=[],
        metavar="PATH",
        help="more catalog entries (a YAML list), as the operator's --catalog-file",
    )
    parser.add_argument("--list-gpus", action="store_true", help="list the known GPU types and exit")
    # Remember the program name so usage errors read like argparse's own.
    parser.set_defaults(plan_prog=parser.prog)


def _positive_int(text: str) -> int:
    try:
        value = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"invalid positive integer: {text!r}") from None
    if value < 1:
        raise argparse.ArgumentTypeError(f"must be at least 1, got {value}")
    return value


def _positive_float(text: str) -> float:
    try:
        value = float(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"invalid number: {text!r}") from None
    if value <= 0:
        raise argparse.ArgumentTypeError(f"must be positive, got {value:g}")
    return value


def _fraction(text: str) -> float:
    value = _positive_float(text)
    if value > 1:
        raise argparse.ArgumentTypeError(f"must be at most 1, got {value:g}")
    return value


class _UsageError(Exception):
    """Bad input found after parsing; the message names the flag."""


def run_plan(args: argparse.Namespace, out: TextIO | None = None, err: TextIO | None = None) -> int:
    """Run `plan` for parsed args; print to out/err (default stdout/stderr); return the exit status."""
    out, err = out or sys.stdout, err or sys.stderr
    if args.list_gpus:
        out.write(_gpu_table())
        return EXIT_FITS
    try:
        _check_engine_flags(args)  # before the Hub is asked anything
        facts, source = _facts_for(args)
        result = plan(_request_for(args, facts))
    except (_UsageError, UnknownGpuType, ModelFactsUnavailable, ValueError) as problem:
        prog = getattr(args, "plan_prog", "llm-operator plan")
        err.write(f"{prog}: error: {problem}\n")
        return EXIT_BAD_INPUT
    out.write(_json_report(facts, result, source) if args.json else _table_report(facts, result, source))
    return EXIT_FITS if result.fits else EXIT_DOES_NOT_FIT


def _check_engine_flags(args: argparse.Namespace) -> None:
    if args.gpu_memory_utilization is not None and args.engine != vllm.ENGINE.name:
        raise _UsageError("argument --gpu-memory-utilization: only with --engine vllm (TGI plans with the whole GPU)")
    if args.nodes not in (None, 1) and args.engine != vllm.ENGINE.name:
        raise _UsageError(
            "argument --nodes: only 1 with --engine tgi (TGI serves within one node; "
            "multi-node serving needs --engine vllm)"
        )


def _facts_for(args: argparse.Namespace) -> tuple[ModelFacts, FactsAnswer]:
    """The facts, and where they came from (the answer's source and note)."""
    if args.params is not None and args.safetensors_index is not None:
        raise _UsageError("argument --params: not allowed with --safetensors-index (give one parameter source)")
    if args.config is None:
        for flag, value in (("--params", args.params), ("--safetensors-index", args.safetensors_index)):
            if value is not None:
                raise _UsageError(f"argument {flag}: needs --config")
        if not args.model_id:
            raise _UsageError("the following arguments are required: MODEL_ID (or --config, or --list-gpus)")
        token = os.environ.get(args.token_env) or None
        unavailable: ModelFactsUnavailable
        try:
            facts = facts_from_hub(args.model_id, args.revision, token=token, cache_dir=args.cache_dir)
        except ModelMissing as err:
            if err.reason == "RevisionNotFound":
                raise
            unavailable = err
        except ModelFactsUnavailable as err:
            unavailable = err
        else:
            return facts, FactsAnswer(facts, HUB)
        # The Hub cannot answer: the catalog does, for the models it knows.
        answer = from_catalog(
            load_catalog(args.catalog_file),
            args.model_id,
            args.revision,
            FactsAnswer(None, UNAVAILABLE, str(unavailable)),
        )
        if answer.facts is None:
            # Neither the Hub nor the catalog has them: the user can still give them.
            raise ModelFactsUnavailable(f"{answer.message} {GIVE_CONFIG}")
        return answer.facts, replace(answer, message=str(unavailable))  # why not the Hub
    try:
        facts = facts_from_local(args.config, args.params, args.safetensors_index, model_id=args.model_id)
        return facts, FactsAnswer(facts, CONFIG)
    except OSError as problem:
        raise _UsageError(f"argument --config: cannot read {problem.filename}: {problem.strerror}") from None
    except json.JSONDecodeError as problem:
        raise _UsageError(f"argument --config: not valid JSON ({problem})") from None


def _request_for(args: argparse.Namespace, facts: ModelFacts) -> PlanRequest:
    if args.gpu is None and args.gpu_memory_gib is None:
        raise _UsageError("argument --gpu: required (a GPU type such as h100-80gb; see --list-gpus)")
    if args.gpu is not None:
        try:
            gpu_type_for(args.gpu)
        except UnknownGpuType as problem:
            raise _UsageError(f"argument --gpu: {problem}") from None
    return PlanRequest(
        facts=facts,
        quantization=args.quantization,
        gpu_type=args.gpu,
        gpu_memory_gib=args.gpu_memory_gib,
        gpus=args.gpus,
        max_total_tokens=args.max_total_tokens,
        kv_cache_dtype=args.kv_cache_dtype,
        engine=args.engine,
        gpu_memory_utilization=args.gpu_memory_utilization,
        # None lets the planner pick for vLLM; TGI serves within one node.
        nodes=args.nodes if args.engine == vllm.ENGINE.name else 1,
    )


def _source_line(source: FactsAnswer) -> str:
    """Where the facts came from, and why not from the Hub when they did not."""
    return source_phrase(source) + (
        f" The Hub did not answer: {source.message}" if source.source == CATALOG and source.message else ""
    )


def _json_report(facts: ModelFacts, result: Plan, source: FactsAnswer) -> str:
    report: dict[str, Any] = {
        "model": facts.model_id,
        "revision": facts.revision,
        "parameterCount": facts.parameter_count,
        "parameterCountEstimated": facts.parameter_count_estimated,
        "factsSource": source.source,
        "factsFrom": _source_line(source),
        **result.to_dict(),
    }
    return json.dumps(report, sort_keys=True) + "\n"


def _table_report(facts: ModelFacts, result: Plan, source: FactsAnswer) -> str:
    estimated = ", estimated" if facts.parameter_count_estimated else ""
    each = " each" if result.num_shard > 1 or result.nodes > 1 else ""
    per_node = " per node" if result.nodes > 1 else ""
    rows = [
        ("model", f"{facts.model_id} ({facts.parameter_count:,} parameters{estimated})"),
        ("engine", _engine_cell(result)),
        ("quantization", f"{result.quantization} ({result.bits_per_weight:.2f} bits per weight)"),
        ("gpus", f"{result.num_shard} x {result.gpu_name}{per_node} ({result.gpu_memory_gib:.1f} GiB{each})"),
    ]
    if result.nodes > 1:
        rows.append(
            (
                "nodes",
                f"{result.nodes} (pipeline parallel: up to {result.layers_per_node} of "
                f"{facts.num_layers} layers per node)",
            )
        )
    rows += [
        ("max total tokens", f"{result.max_total_tokens}"),
        ("weights", f"{result.weights_gib:.2f} GiB in all, {result.weights_gib_per_gpu:.2f} GiB per GPU"),
        ("kv cache", f"{result.kv_cache_gib_per_gpu:.2f} GiB per GPU"),
        ("runtime overhead", f"{result.overhead_gib_per_gpu:.2f} GiB per GPU"),
        ("needed", f"{result.required_gib_per_gpu:.2f} GiB per GPU"),
        ("verdict", result.status),
        ("min gpus", _min_gpus_cell(result)),
    ]
    if result.min_nodes is not None and result.min_nodes > 1:
        rows.append(("min nodes", f"{result.min_nodes} at {plural(result.num_shard, 'GPU')} per node"))
    rows += [
        ("reason", result.reason),
        ("facts", _source_line(source)),
    ]
    return _aligned(rows)


def _min_gpus_cell(result: Plan) -> str:
    per_node = " per node" if result.nodes > 1 else ""
    if result.min_gpus is None:
        return f"none up to {MAX_GPUS_PER_NODE}{per_node}"
    return f"{result.min_gpus}{per_node}"


def _engine_cell(result: Plan) -> str:
    if result.engine == vllm.ENGINE.name:
        return f"vllm (reserves {result.usable_gib_per_gpu:.1f} GiB per GPU, --gpu-memory-utilization)"
    return result.engine


def _gpu_table() -> str:
    rows = [("NAME", "GPU", "MEMORY", "nvidia.com/gpu.product")]
    rows += [
        (gpu.name, gpu.display_name, f"{gpu.memory_gib:.1f} GiB", ", ".join(gpu.products)) for gpu in GPU_TYPES.values()
    ]
    widths = [max(len(row[column]) for row in rows) for column in range(3)]
    lines = ["  ".join(cell.ljust(width) for cell, width in zip(row[:3], widths)) + "  " + row[3] for row in rows]
    return "\n".join(lines) + "\n"


def _aligned(rows: list[tuple[str, str]]) -> str:
    width = max(len(key) for key, _ in rows)
    return "".join(f"{key.ljust(width)}  {value}\n" for key, value in rows)


def main(argv: list[str] | None = None) -> int:
    """Stand-alone entry point (the main CLI wires add_plan_arguments/run_plan itself)."""
    parser = argparse.ArgumentParser(prog="llm-operator plan", description=__doc__.splitlines()[0])
    add_plan_arguments(parser)
    return run_plan(parser.parse_args(argv))


if __name__ == "__main__":
    sys.exit(main())

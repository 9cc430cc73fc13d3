"""`llm-operator catalog`: the models the operator can plan without the Hub, and what fits.

    llm-operator catalog                       every model: fewest GPUs per GPU type
    llm-operator catalog --gpu l4              every model on one GPU type: fewest GPUs per quantization
    llm-operator catalog MODEL --gpu l4        a ready-to-apply LLMDeployment the planner says fits
    llm-operator catalog --json

Each answer is the planner's, from the catalog's facts (the same numbers a Hub config.json
gives). Exit status: 0, 1 when MODEL fits on no count of that GPU, 2 bad input.
"""

from __future__ import annotations

import argparse
import json
import re
import sys
from dataclasses import dataclass
from typing import Any, TextIO

import yaml

from llm_common.words import plural
from llm_operator import api
from llm_operator.engines import ENGINE_NAMES, vllm
from llm_operator.facts.catalog import Catalog, Entry, short_revision
from llm_operator.facts.catalog import load as load_catalog
from llm_operator.planning.gpus import UnknownGpuType, gpu_type_for
from llm_operator.planning.memory import effective_quantization
from llm_operator.planning.planner import Plan, PlanRequest, plan

EXIT_OK, EXIT_DOES_NOT_FIT, EXIT_BAD_INPUT = 0, 1, 2

# The GPU types of the overview, smallest first: the ones clouds rent most.
OVERVIEW_GPUS = ("l4", "a10g", "l40s", "a100-40gb", "a100-80gb", "h100-80gb", "h200", "b200")

# Quantizations TGI applies at load time to an unquantized checkpoint, least loss first;
# AWQ, GPTQ, exl2 and Marlin need a checkpoint quantized beforehand.
LOAD_TIME_QUANTIZATIONS = ("fp8", "eetq", "bitsandbytes", "bitsandbytes-nf4")


def add_catalog_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument(
        "model_id",
        nargs="?",
        metavar="MODEL",
        help="a model of the catalog: print an LLMDeployment for it (needs --gpu)",
    )
    parser.add_argument(
        "--gpu", metavar="TYPE", help="GPU short name (see `plan --list-gpus`) or nvidia.com/gpu.product value"
    )
    parser.add_argument("--name", help="metadata.name of the printed LLMDeployment (default: from the model's name)")
    parser.add_argument(
        "--max-total-tokens",
        type=int,
        metavar="T",
        help="tokens per sequence, prompt plus output (default: min(context, 4096))",
    )
    parser.add_argument(
        "--engine",
        default="tgi",
        choices=ENGINE_NAMES,
        help="serving engine to plan for (default: tgi); an LLMDeployment printed for vllm names it",
    )
    parser.add_argument("--json", action="store_true", help="print JSON instead of a table")
    parser.add_argument(
        "--catalog-file",
        action="append",
        default=[],
        metavar="PATH",
        help="more catalog entries (a YAML list), as the operator's --catalog-file",
    )


@dataclass(frozen=True)
class Fit:
    """The fewest GPUs of one type for one quantization (None: more than the planner tries)."""

    quantization: str
    gpus: int | None
    plan: Plan


def fit(
    entry: Entry, gpu: str, quantization: str = "none", max_total_tokens: int | None = None, engine: str = "tgi"
) -> Fit:
    result = plan(
        PlanRequest(
            facts=entry.facts, quantization=quantization, gpu_type=gpu, max_total_tokens=max_total_tokens, engine=engine
        )
    )
    return Fit(result.quantization, result.min_gpus, result)


def load_time_quantizations(engine: str = "tgi") -> tuple[str, ...]:
    """LOAD_TIME_QUANTIZATIONS the engine has (vLLM 0.33.0: fp8 only)."""
    return tuple(q for q in LOAD_TIME_QUANTIZATIONS if engine != vllm.ENGINE.name or q not in vllm.ONLY_IN_TGI)


def quantizations_for(entry: Entry, engine: str = "tgi") -> tuple[str, ...]:
    """What can be asked of this checkpoint: its own weights, then, for an unquantized
    one, the load-time quantizations the engine has (vLLM 0.33.0: fp8 only)."""
    own = effective_quantization(entry.facts, "none")
    if own != "none":
        # Pre-quantized: it runs as published, if the engine has its method at all.
        return ("none",) if engine != vllm.ENGINE.name or own not in vllm.ONLY_IN_TGI else ()
    return ("none", *load_time_quantizations(engine))


def _params(entry: Entry) -> str:
    count = entry.facts.parameter_count or 0
    text = f"{count / 1e9:.1f}B" if count >= 0.95e9 else f"{count / 1e6:.0f}M"
    return text + ("~" if entry.facts.parameter_count_estimated else "")


def _precision(entry: Entry) -> str:
    quantization = effective_quantization(entry.facts, "none")
    return quantization if quantization != "none" else entry.facts.torch_dtype


def _cell(gpus: int | None) -> str:
    return str(gpus) if gpus is not None else "-"


def _table(rows: list[list[str]]) -> str:
    widths = [max(len(row[i]) for row in rows) for i in range(len(rows[0]))]
    return "".join("  ".join(cell.ljust(w) for cell, w in zip(row, widths)).rstrip() + "\n" for row in rows)


def overview(catalog: Catalog, tokens: int | None, engine: str = "tgi") -> tuple[str, list[dict[str, Any]]]:
    """Every model: fewest GPUs of each overview GPU type, as published."""
    rows = [["MODEL", "PARAMS", "WEIGHTS", "CONTEXT", *[g.upper() for g in OVERVIEW_GPUS]]]
    data = []
    for entry in catalog.entries():
        if not quantizations_for(entry, engine):
            continue  # a checkpoint format the engine cannot load
        fits = {gpu: fit(entry, gpu, max_total_tokens=tokens, engine=engine).gpus for gpu in OVERVIEW_GPUS}
        rows.append(
            [
                entry.model_id,
                _params(entry),
                _precision(entry),
                str(entry.facts.max_position_embeddings),
                *[_cell(fits[g]) for g in OVERVIEW_GPUS],
            ]
        )
        data.append(
            {
                "model": entry.model_id,
                "revision": entry.revision,
                "parameterCount": entry.facts.parameter_count,
                "weights": _precision(entry),
                "context": entry.facts.max_position_embeddings,
                "fewestGpus": fits,
            }
        )
    legend = (
        "\nEach GPU column: the fewest GPUs of that type per replica for the model as published "
        "(-: more than 8). `--gpu TYPE` shows the quantizations that fit; `catalog MODEL --gpu TYPE` "
        "prints an LLMDeployment.\n"
    )
    return _table(rows) + legend, data


def on_gpu(catalog: Catalog, gpu: str, tokens: int | None, engine: str = "tgi") -> tuple[str, list[dict[str, Any]]]:
    """Every model on one GPU type: fewest GPUs for each quantization that applies."""
    columns = ("none", *load_time_quantizations(engine))
    rows = [["MODEL", "PARAMS", "WEIGHTS", *[("AS PUBLISHED" if q == "none" else q.upper()) for q in columns]]]
    data = []
    for entry in catalog.entries():
        allowed = quantizations_for(entry, engine)
        if not allowed:
            continue
        fits = {q: fit(entry, gpu, q, tokens, engine).gpus for q in allowed}
        rows.append(
            [
                entry.model_id,
                _params(entry),
                _precision(entry),
                *[_cell(fits[q]) if q in allowed else "n/a" for q in columns],
            ]
        )
        data.append({"model": entry.model_id, "gpu": gpu, "fewestGpus": fits})
    gpu_name = gpu_type_for(gpu).display_name
    legend = (
        f"\nFewest {gpu_name} GPUs per replica for each quantization (-: more than 8; n/a: the checkpoint "
        "is quantized already and runs as published).\n"
    )
    return _table(rows) + legend, data


def _name_for(model_id: str) -> str:
    """A DNS-1035 label from the model's name: 'Llama-3.1-70B-Instruct' -> 'llama-3-1-70b-instruct'."""
    name = re.sub(r"[^a-z0-9]+", "-", model_id.rsplit("/", 1)[-1].lower()).strip("-")
    name = name if name[:1].isalpha() else f"m-{name}"
    return name[:63].rstrip("-")


def manifest(entry: Entry, gpu: str, name: str | None, tokens: int | None, engine: str = "tgi") -> tuple[str, bool]:
    """An LLMDeployment the planner says fits on the fewest GPUs of `gpu`, at the least
    lossy precision that fits at all: as published, else fp8, eetq, int8, nf4. A cheaper
    option with fewer GPUs is named in a comment. Returns (YAML with the reason as
    comments, fits)."""
    options = [fit(entry, gpu, q, tokens, engine) for q in quantizations_for(entry, engine)]
    if not options:
        return (f"# {entry.model_id} is published in a format vLLM 0.33.0 cannot load; engine tgi can.\n", False)
    fitting = [o for o in options if o.gpus is not None]
    chosen = fitting[0] if fitting else options[0]
    fewer = min(fitting, key=lambda o: o.gpus or 0) if fitting else None  # every one's gpus is a number
    gpu_type = gpu_type_for(gpu)
    pinned = len(entry.revision) == 40
    spec: dict[str, Any] = {"model": {"id": entry.model_id, "revision": entry.revision if pinned else "main"}}
    if engine != "tgi":
        spec["engine"] = {"name": engine}
    if chosen.quantization not in ("none", effective_quantization(entry.facts, "none")):
        spec["quantization"] = chosen.quantization
    if chosen.gpus is not None:
        spec["gpus"] = chosen.gpus
    if gpu_type.products:
        spec["gpu"] = {"product": gpu_type.products[0]}
    if tokens:
        spec["limits"] = {"maxTotalTokens": tokens}
    doc = {
        "apiVersion": f"{api.GROUP}/{api.VERSION}",
        "kind": api.KIND,
        "metadata": {"name": name or _name_for(entry.model_id)},
        "spec": spec,
    }
    where = f"revision {short_revision(entry.revision)}" if pinned else "an unpinned revision (main)"
    lines = [
        f"{entry.model_id} on {gpu_type.display_name}, planned from the catalog's facts for {where}:",
        chosen.plan.reason,
    ]
    if chosen.gpus is None:
        lines.append("Nothing fits up to 8 GPUs of this type: pick a larger GPU (see `llm-operator catalog`).")
    elif fewer is not None and fewer.gpus is not None and fewer.gpus < chosen.gpus:
        lines.append(
            f"With more loss, {fewer.quantization} fits on {plural(fewer.gpus, 'GPU')} (see `llm-operator catalog --gpu {gpu}`)."
        )
    comment = "".join(f"# {line}\n" for text in lines for line in _wrapped(text))
    return comment + yaml.safe_dump(doc, sort_keys=False), chosen.gpus is not None


def _wrapped(text: str, width: int = 96) -> list[str]:
    out, line = [], ""
    for word in text.split():
        if line and len(line) + 1 + len(word) > width:
            out.append(line)
            line = word
        else:
            line = f"{line} {word}" if line else word
    return out + ([line] if line else [])


def run_catalog(args: argparse.Namespace, out: TextIO | None = None, err: TextIO | None = None) -> int:
    out, err = out or sys.stdout, err or sys.stderr
    catalog = load_catalog(args.catalog_file)
    for _, problem in catalog.problems:
        err.write(f"llm-operator catalog: {problem}\n")
    try:
        if args.gpu is not None:
            gpu_type_for(args.gpu)
        if args.model_id:
            entry = catalog.entry(args.model_id)
            if entry is None:
                known = ", ".join(e.model_id for e in catalog.entries())
                err.write(
                    f"llm-operator catalog: error: {args.model_id} is not in the catalog; it has: {known}. "
                    "`llm-operator plan MODEL --config config.json` plans any model.\n"
                )
                return EXIT_BAD_INPUT
            if args.gpu is None:
                err.write(
                    "llm-operator catalog: error: argument --gpu: required with MODEL "
                    "(a GPU type such as l4; see `llm-operator plan --list-gpus`)\n"
                )
                return EXIT_BAD_INPUT
            if args.name is not None and not api.NAME_RULE.holds(args.name):
                err.write(f"llm-operator catalog: error: argument --name: {api.NAME_RULE.message}\n")
                return EXIT_BAD_INPUT
            text, fits = manifest(entry, args.gpu, args.name, args.max_total_tokens, args.engine)
            out.write(text)
            return EXIT_OK if fits else EXIT_DOES_NOT_FIT
        text, data = (
            on_gpu(catalog, args.gpu, args.max_total_tokens, args.engine)
            if args.gpu
            else overview(catalog, args.max_total_tokens, args.engine)
        )
    except UnknownGpuType as problem:
        err.write(f"llm-operator catalog: error: argument --gpu: {problem}\n")
        return EXIT_BAD_INPUT
    out.write(json.dumps(data, indent=2) + "\n" if args.json else text)
    return EXIT_OK

#!/usr/bin/env python3
"""Run TGI's real text-generation-launcher on what the operator renders, and see which
manifests get past the launcher's own checks.

    .venv/bin/python hack/check_launcher.py --launcher /path/to/text-generation-launcher [FILE.yaml ...]

Each manifest (default: examples/*.yaml and a built-in list of variants and known crash
cases) is rendered with the operator's own code (llm_operator.cli.render.render_one, what
`llm-operator render -f FILE --config config.json --params N` runs), its facts read from the
same config.json the launcher is given. The serving container's args and env are then given to
the launcher as the pod would give them:

  * the container's command is text-generation-launcher itself, its args passed as they are;
    a container with no command would go through the image's ENTRYPOINT, /tgi-entrypoint.sh,
    `exec text-generation-launcher $@` with $@ unquoted: every argument word-split on blanks
    (as here) and glob-expanded (not done here);
  * the image's ENV (PORT=80, HF_HUB_ENABLE_HF_TRANSFER=1), HOSTNAME=<pod name> from
    Kubernetes and NVIDIA_VISIBLE_DEVICES=<one UUID per GPU> from the NVIDIA device plugin,
    then the container's env; secretKeyRef values become a placeholder;
  * --model-id points at a local directory holding only a config.json (a real one from
    tests/data/models, with a quantization_config for pre-quantized checkpoints),
    HF_HUB_OFFLINE=1 and HF_HOME is a scratch directory.

The launcher validates its arguments in main() before it starts
`text-generation-server download-weights`; its log line "Starting check and download process"
therefore means that every check of the launcher passed. Before it, a refusal is either a clap
error (exit 2, "error: ...") or `Error: ArgumentValidation(...)` / `NotEnoughCUDADevices(...)`
(exit 1). A stub text-generation-server on PATH lets the launcher go on: the download succeeds,
and the shard's `serve` argv is recorded and the shard exits. The script then applies the
checks that TGI 3.3.7's Python server and router make later (read from their source; they are
predictions, not observed): `--dtype` together with a `--quantize` other than bitsandbytes*
(server cli.py), and maxInputTokens >= the model's max_position_embeddings with
maxTotalTokens unset (the router's `max_input_tokens` < `max_total_tokens` check after warm-up).

Exit status: 1 if the launcher refuses a manifest the CRD accepts (with --strict, also if a
later refusal, shown as LATER in the table, is predicted), else 0. A manifest the CRD or the operator refuses is reported as
"refused before the launcher".
"""

# The parts live in hack/launchcheck/ (cases, launcher); their names are importable from here.
from __future__ import annotations

import argparse
import copy
import datetime as dt
import glob
import json
import os
import shlex
import sys
import tempfile
from pathlib import Path

# launchcheck first (the sort order keeps it so): importing it puts this tree's operator on sys.path.
from launchcheck import MODELS, ROOT
from launchcheck.cases import Case, builtin_cases, file_cases, manifest
from launchcheck.launcher import (
    IMAGE_ENV,
    LAUNCHER_REFUSED,
    PASSED,
    PASSED_MARK,
    PREQUANTIZED,
    RENDER_REFUSED,
    STUB,
    UNKNOWN,
    Result,
    entrypoint_words,
    flag,
    gpu_count,
    later_refusal,
    message_of,
    model_dir_for,
    pod_env,
    run_launcher,
    write_model,
)
from llm_operator import api
from llm_operator.cli import render
from llm_operator.planning.gpus import UnknownGpuType

__all__ = [
    "IMAGE_ENV",
    "LAUNCHER_REFUSED",
    "MODELS",
    "PASSED",
    "PASSED_MARK",
    "PREQUANTIZED",
    "RENDER_REFUSED",
    "ROOT",
    "STUB",
    "UNKNOWN",
    "Case",
    "Result",
    "builtin_cases",
    "check",
    "entrypoint_words",
    "file_cases",
    "flag",
    "gpu_count",
    "later_refusal",
    "main",
    "manifest",
    "message_of",
    "model_dir_for",
    "pod_env",
    "render_container",
    "run_launcher",
    "table",
    "write_model",
]


def render_container(doc: dict, config: str | None = None, params: int | None = None) -> tuple[dict | None, str]:
    """The serving container of the Deployment the operator would apply, with the model's facts
    read from `config` (the same config.json the launcher is given); or None and why."""
    args = argparse.Namespace(namespace="default", gpu=None, config=config, params=params, hub=False)
    now = dt.datetime.now(dt.UTC)
    try:
        decision, _ = render.render_one(copy.deepcopy(doc), args, now)
    except api.InvalidSpec as problem:
        return None, f"CRD: {problem}"
    except (UnknownGpuType, OSError, ValueError) as problem:
        return None, f"render: {problem}"
    deployments = [c for c in decision.desired if c.get("kind") == "Deployment"]
    if not deployments:
        why = decision.blocked.message if decision.blocked is not None else decision.phase
        return None, f"operator: no Deployment ({why})"
    pod = deployments[0]["spec"]["template"]["spec"]
    container = next((c for c in pod["containers"] if c["name"] == "engine"), pod["containers"][0])
    return container, ""


PARAMS = json.loads((MODELS / "params.json").read_text())


def check(case: Case, launcher: str, timeout: float, stub: bool) -> Result:
    try:
        spec = api.validate_manifest(copy.deepcopy(case.doc))
    except api.InvalidSpec as problem:
        return Result(case, RENDER_REFUSED, f"CRD: {problem}")
    # The operator plans with the facts the launcher will read: the same config.json.
    with tempfile.TemporaryDirectory(prefix="tgi-facts-") as tmp:
        write_model(Path(tmp), case, spec)
        params = PARAMS.get(case.model_dir or model_dir_for(spec.model.id))
        container, why = render_container(case.doc, str(Path(tmp) / "config.json"), params)
    if container is None:
        return Result(case, RENDER_REFUSED, why)
    return run_launcher(launcher, case, container, spec, timeout, stub)


def table(results: list[Result]) -> str:
    rows = [("case", "outcome", "detail")]
    for r in results:
        detail = r.detail + (f" | LATER: {r.later}" if r.later else "")
        rows.append((r.case.name + (" *" if r.case.known_crash else ""), r.outcome, detail))
    w0 = max(len(r[0]) for r in rows)
    w1 = max(len(r[1]) for r in rows)
    lines = [f"{a:<{w0}}  {b:<{w1}}  {c}" for a, b, c in rows]
    lines.insert(1, "-" * (w0 + w1 + 12))
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--launcher", required=True, help="path of TGI's text-generation-launcher binary")
    p.add_argument("files", nargs="*", help="manifests (default: examples/*.yaml and the built-in cases)")
    p.add_argument("--no-builtin", action="store_true", help="only the given files (or examples/*.yaml)")
    p.add_argument("--only", help="only cases whose name contains this")
    p.add_argument("--timeout", type=float, default=8.0, help="seconds a launcher run may take (default 8)")
    p.add_argument(
        "--no-stub",
        action="store_true",
        help="no stand-in text-generation-server: the launcher stops at the download step",
    )
    p.add_argument("--strict", action="store_true", help="also exit 1 when a later refusal is predicted")
    p.add_argument("-v", "--verbose", action="store_true", help="print each launcher argv and its output")
    args = p.parse_args(argv)

    launcher = os.path.abspath(args.launcher)
    if not os.access(launcher, os.X_OK):
        p.error(f"{launcher} is not executable")
    cases = file_cases(args.files or sorted(glob.glob(str(ROOT / "examples" / "*.yaml"))))
    if not args.files and not args.no_builtin:
        cases += builtin_cases()
    if args.only:
        cases = [c for c in cases if args.only in c.name]

    results = []
    for case in cases:
        r = check(case, launcher, args.timeout, not args.no_stub)
        results.append(r)
        if args.verbose:
            print(f"== {case.name}: {r.outcome}\n$ text-generation-launcher {shlex.join(r.argv)}\n{r.log}")
    print(table(results))
    refused = [r for r in results if r.outcome == LAUNCHER_REFUSED]
    later = [r for r in results if r.outcome == PASSED and r.later]
    unknown = [r for r in results if r.outcome == UNKNOWN]
    print(
        f"\n{len(results)} manifests: {sum(r.outcome == PASSED for r in results)} passed the launcher's checks "
        f"({len(later)} with a later refusal predicted), {len(refused)} refused by the launcher, "
        f"{sum(r.outcome == RENDER_REFUSED for r in results)} refused before the launcher, {len(unknown)} unknown. "
        "* = a known crash case."
    )
    return 1 if refused or unknown or (args.strict and later) else 0


if __name__ == "__main__":
    sys.exit(main())

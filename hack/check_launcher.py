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

from __future__ import annotations

import argparse
import copy
import dataclasses
import datetime as dt
import glob
import json
import os
import re
import shlex
import subprocess
import sys
import tempfile
from pathlib import Path

import yaml

ROOT = Path(__file__).resolve().parent.parent
MODELS = ROOT / "tests" / "data" / "models"
# The operator of this tree, whatever the venv has installed.
sys.path[:0] = [str(ROOT / "operator"), str(ROOT / "common")]

from llm_operator import api
from llm_operator.cli import render  # noqa: E402
from llm_operator.engines.tgi import DTYPE_COMPATIBLE_QUANTIZATIONS, QUANTIZATIONS  # noqa: E402
from llm_operator.planning.gpus import UnknownGpuType

# Checkpoints that are quantized on disk: their config.json carries a quantization_config,
# which the launcher reads (and then passes --quantize to the shard on its own).
PREQUANTIZED = ("awq", "gptq", "marlin", "exl2", "compressed-tensors")
# What the image's Dockerfile sets (TGI 3.3.7, final stage).
IMAGE_ENV = {"PORT": "80", "HF_HUB_ENABLE_HF_TRANSFER": "1", "HF_HOME": "/data"}
PASSED_MARK = "Starting check and download process"

# Outcomes.
RENDER_REFUSED = "refused before the launcher"
LAUNCHER_REFUSED = "refused by the launcher"
PASSED = "passed the launcher's checks"
UNKNOWN = "unknown (see --verbose)"


@dataclasses.dataclass
class Case:
    name: str
    doc: dict
    model_dir: str | None = None  # tests/data/models/<dir>; None: guessed from the model id
    quant_method: str | None = None  # quantization_config.quant_method; None: from spec.quantization
    known_crash: bool = False  # one of the known crash cases (listed for confirmation)


@dataclasses.dataclass
class Result:
    case: Case
    outcome: str
    detail: str = ""
    later: str = ""  # predicted refusal after the launcher's checks
    argv: list[str] = dataclasses.field(default_factory=list)
    log: str = ""


# ---------------------------------------------------------------- the cases


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


# ---------------------------------------------------------------- render


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


# ---------------------------------------------------------------- model directory


def model_dir_for(model_id: str) -> str:
    key = model_id.split("/")[-1].lower()
    names = sorted((p.name for p in MODELS.iterdir() if (p / "config.json").exists()), key=len, reverse=True)
    for name in names:
        if name in key:
            return name
    return "mistral-7b"


def write_model(where: Path, case: Case, spec: api.LLMDeploymentSpec) -> dict:
    config = json.loads((MODELS / (case.model_dir or model_dir_for(spec.model.id)) / "config.json").read_text())
    method = case.quant_method
    if method is None and getattr(spec.quantization, "value", spec.quantization) in PREQUANTIZED:
        method = getattr(spec.quantization, "value", spec.quantization)
    if method:
        config["quantization_config"] = {"quant_method": method, "bits": 4, "group_size": 128}
    where.mkdir(parents=True, exist_ok=True)
    (where / "config.json").write_text(json.dumps(config, indent=2))
    return config


# ---------------------------------------------------------------- launcher

STUB = """#!{python}
# A stand-in for text-generation-server: records its argv and environment.
import json, os, sys
with open(os.path.join({out!r}, "call-%d.json" % os.getpid()), "w") as f:
    json.dump({{"argv": sys.argv[1:], "env": dict(os.environ)}}, f)
if sys.argv[1:2] == ["serve"]:
    sys.stderr.write("stub text-generation-server: not a real server\\n")
    sys.exit(1)
sys.exit(0)
"""


def entrypoint_words(args: list[str]) -> list[str]:
    """`exec text-generation-launcher $@` in /tgi-entrypoint.sh: unquoted, so word-split."""
    return [w for a in args for w in re.split(r"[ \t\n]+", a) if w]


def pod_env(container: dict, gpus: int, name: str, hf_home: str) -> dict[str, str]:
    env = {"PATH": os.environ.get("PATH", "/usr/bin:/bin"), "HOME": os.environ.get("HOME", "/root")}
    env.update(IMAGE_ENV)
    env["HOSTNAME"] = f"{name}-5f7d8c9b6-x2x7q"
    env["NVIDIA_VISIBLE_DEVICES"] = ",".join(f"GPU-{i:08d}-0000-0000-0000-000000000000" for i in range(gpus))
    for var in container.get("env") or []:
        env[var["name"]] = var["value"] if "value" in var else "placeholder-from-valueFrom"
    env["HF_HUB_OFFLINE"] = "1"
    env["HF_HOME"] = hf_home
    return env


def gpu_count(container: dict) -> int:
    limits = (container.get("resources") or {}).get("limits") or {}
    return int(next((v for k, v in limits.items() if k.endswith("/gpu")), "0"))


def message_of(line: str) -> str:
    try:
        record = json.loads(line)
    except ValueError:
        return line
    if isinstance(record, dict):
        return (record.get("fields") or {}).get("message") or line
    return line


def run_launcher(
    launcher: str, case: Case, container: dict, spec: api.LLMDeploymentSpec, timeout: float, stub: bool
) -> Result:
    with tempfile.TemporaryDirectory(prefix="tgi-check-") as tmp:
        tmp_path = Path(tmp)
        model = tmp_path / "model"
        config = write_model(model, case, spec)
        calls = tmp_path / "calls"
        calls.mkdir()
        env = pod_env(container, gpu_count(container), case.doc["metadata"]["name"], str(tmp_path / "hf"))
        if stub:
            bindir = tmp_path / "bin"
            bindir.mkdir()
            server = bindir / "text-generation-server"
            server.write_text(STUB.format(python=sys.executable, out=str(calls)))
            server.chmod(0o755)
            env["PATH"] = f"{bindir}:{env['PATH']}"
        command = list(container.get("command") or [])
        if command and Path(command[0]).name == "text-generation-launcher":
            argv = command[1:] + list(container.get("args") or [])  # no shell in between
        elif not command or Path(command[0]).name == "tgi-entrypoint.sh":
            argv = entrypoint_words(command[1:] + list(container.get("args") or []))
        else:
            return Result(case, UNKNOWN, f"the container runs {command[0]}, not the launcher")
        argv = [str(model) if i > 0 and argv[i - 1] == "--model-id" else a for i, a in enumerate(argv)]
        try:
            proc = subprocess.run(
                [launcher, *argv],
                env=env,
                cwd=tmp,
                capture_output=True,
                text=True,
                timeout=timeout,
                start_new_session=True,
            )
            out, err, rc = proc.stdout, proc.stderr, proc.returncode
        except subprocess.TimeoutExpired as t:
            out = t.stdout.decode() if isinstance(t.stdout, bytes) else (t.stdout or "")
            err = t.stderr.decode() if isinstance(t.stderr, bytes) else (t.stderr or "")
            rc = None
        serve = []
        for f in sorted(calls.glob("call-*.json")):
            call = json.loads(f.read_text())
            if call["argv"][:1] == ["serve"]:
                serve.append(call)
    log = out + err
    messages = [message_of(l) for l in log.splitlines() if l.strip()]
    result = Result(case, UNKNOWN, argv=argv, log=log)
    if any(PASSED_MARK in m for m in messages):
        result.outcome = PASSED
        result.detail = f"rc={rc}" + (
            "; shard spawned" if serve else "; stopped at the download step" if not stub else "; no shard spawned"
        )
        if serve:
            shown = [
                f"{f} {flag(serve[0]['argv'], f)}"
                for f in ("--quantize", "--dtype", "--max-input-tokens")
                if flag(serve[0]["argv"], f) is not None
            ]
            shown += [f for f in ("--sharded", "--trust-remote-code") if f in serve[0]["argv"]]
            if "LORA_ADAPTERS" in serve[0]["env"]:
                shown.append(f"LORA_ADAPTERS={serve[0]['env']['LORA_ADAPTERS']}")
            result.detail += f" (shard: {' '.join(shown) or 'no --quantize/--dtype'})"
        result.later = later_refusal(serve[0]["argv"] if serve else None, spec, config, argv)
        return result
    error = next((l for l in err.splitlines() if l.startswith("error:")), None)
    error = error or next((l for l in err.splitlines() if l.startswith("Error:")), None)
    error = error or next((l for l in reversed(err.splitlines()) if "panicked" in l), None)
    if error:
        result.outcome = LAUNCHER_REFUSED
        result.detail = f"rc={rc}: {error.strip()}"
    else:
        result.detail = f"rc={rc}: " + (messages[-1] if messages else "no output")
    return result


def flag(argv: list[str], name: str) -> str | None:
    value = None
    for i, a in enumerate(argv):
        if a == name and i + 1 < len(argv):
            value = argv[i + 1]
        elif a.startswith(name + "="):
            value = a.split("=", 1)[1]
    return value


def later_refusal(
    serve_argv: list[str] | None, spec: api.LLMDeploymentSpec, config: dict, launcher_argv: list[str]
) -> str:
    """What TGI 3.3.7 refuses after the launcher's checks (from its source; predicted)."""
    notes = []
    if serve_argv is None:
        # No shard ran (--no-stub): the launcher passes --quantize from the flag, else from the
        # checkpoint's quantization_config, and --dtype as given.
        serve_argv = list(launcher_argv)
        method = (config.get("quantization_config") or {}).get("quant_method")
        if flag(serve_argv, "--quantize") is None and method:
            serve_argv += ["--quantize", method]
    quantize, dtype = flag(serve_argv, "--quantize"), flag(serve_argv, "--dtype")
    if dtype is not None and quantize not in (None, "bitsandbytes", "bitsandbytes-nf4", "bitsandbytes-fp4"):
        notes.append(
            f"server: the shard gets --quantize {quantize} --dtype {dtype}: RuntimeError 'Only 1 can be set "
            "between `dtype` and `quantize`'"
        )
    max_input = flag(launcher_argv, "--max-input-tokens") or flag(launcher_argv, "--max-input-length")
    max_total = flag(launcher_argv, "--max-total-tokens")
    context = config.get("max_position_embeddings")
    if max_input and not max_total and context and int(max_input) >= int(context):
        notes.append(
            f"router: --max-input-tokens {max_input} >= the model's context {context} and no "
            "--max-total-tokens: the shard caps max_total_tokens at the context, then the router "
            "refuses '`max_input_tokens` must be < `max_total_tokens`'"
        )
    return "; ".join(notes)


# ---------------------------------------------------------------- main

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

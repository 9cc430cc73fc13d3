"""One run of TGI's text-generation-launcher as the pod would make it (its argv and env, a
model directory holding only a config.json, a stub text-generation-server), its outcome, and
the refusals TGI 3.3.7's server and router would make after the launcher's checks."""

from __future__ import annotations

import dataclasses
import json
import os
import re
import subprocess
import sys
import tempfile
from pathlib import Path

from launchcheck import MODELS
from launchcheck.cases import Case
from llm_operator import api

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
class Result:
    case: Case
    outcome: str
    detail: str = ""
    later: str = ""  # predicted refusal after the launcher's checks
    argv: list[str] = dataclasses.field(default_factory=list)
    log: str = ""


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
    messages = [message_of(line) for line in log.splitlines() if line.strip()]
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
    error = next((line for line in err.splitlines() if line.startswith("error:")), None)
    error = error or next((line for line in err.splitlines() if line.startswith("Error:")), None)
    error = error or next((line for line in reversed(err.splitlines()) if "panicked" in line), None)
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

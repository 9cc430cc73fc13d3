"""`llm-runtime download | inspect | serve`: what the download Job and the serving pods run.

download  weights (and LoRA adapters) into the cache volume; the model's facts go to the
          container's termination message, which is how the operator learns them.
inspect   print the facts of a model already in the cache.
serve     check GPUs, /dev/shm and the cache, then exec the engine (LLM_ENGINE: tgi's
          text-generation-launcher, or vllm serve) with the arguments built from the LLM_*
          variables (launcher.py; llm_common.vllm for vLLM).

Exit codes: 0 done; 1 failed, a retry may succeed (stall, corrupt file, network); 2 bad
settings or flags; 3 a serving check failed; 4 failed for good (gated, not found, no space),
so the Job's podFailurePolicy can stop retrying.
"""

from __future__ import annotations

import argparse
import json
import os
import shlex
import sys
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import TextIO

from llm_common import tgi_rules, vllm
from llm_common.lora import AdapterRef, SettingsError, parse_adapters
from llm_common.termination import termination_message, write_termination_message
from llm_common.tgi import LauncherSettings, launcher_args, launcher_env
from llm_runtime import checks, launcher
from llm_runtime import download as dl
from llm_runtime.launcher import ENV_ADAPTERS, ENV_CACHE_DIR, settings_from_env

EXIT_OK, EXIT_RETRYABLE, EXIT_USAGE, EXIT_CHECKS_FAILED, EXIT_PERMANENT = 0, 1, 2, 3, 4
LAUNCHER = "text-generation-launcher"
DEFAULT_CACHE_DIR = "/data"  # TGI's image sets HF_HOME=/data


def _env_default(name: str, default: str | None = None) -> str | None:
    return os.environ.get(name) or default


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="llm-runtime", description=__doc__.split("\n\n")[0])
    sub = parser.add_subparsers(dest="command", required=True)

    down = sub.add_parser("download", help="download a model (and adapters) into the cache; report its facts")
    down.add_argument("--model-id", default=_env_default("MODEL_ID"), help="Hub repository id (env MODEL_ID)")
    down.add_argument(
        "--revision", default=_env_default("REVISION", "main"), help="branch, tag or commit (env REVISION)"
    )
    down.add_argument(
        "--cache-dir",
        default=_env_default("CACHE_DIR", DEFAULT_CACHE_DIR),
        help="the cache volume, used as HF_HOME (env CACHE_DIR, default /data)",
    )
    down.add_argument("--endpoint", default=_env_default("HF_ENDPOINT"), help="Hub URL (env HF_ENDPOINT)")
    down.add_argument(
        "--stall-timeout",
        type=float,
        default=_env_default("STALL_TIMEOUT_S", "120"),
        help="give up when no byte arrives for this many seconds (env STALL_TIMEOUT_S, default 120)",
    )
    down.add_argument(
        "--adapters",
        default=_env_default("ADAPTERS", ""),
        help='LoRA adapters, "name=org/repo@revision,..." (env ADAPTERS)',
    )
    down.add_argument(
        "--allow-pattern",
        action="append",
        default=None,
        help="download only files matching this glob (repeatable); replaces the default selection",
    )
    down.add_argument(
        "--workers",
        type=int,
        default=_env_default("DOWNLOAD_WORKERS", "4"),
        help="files fetched at once (env DOWNLOAD_WORKERS, default 4)",
    )
    # The token is read from HF_TOKEN only: a flag would show it in the process list.

    inspect = sub.add_parser("inspect", help="print the facts JSON of a model in the cache")
    inspect.add_argument("--model-id", default=_env_default("MODEL_ID"))
    inspect.add_argument("--revision", default=_env_default("REVISION", "main"))
    inspect.add_argument("--cache-dir", default=_env_default("CACHE_DIR", DEFAULT_CACHE_DIR))

    serve = sub.add_parser(
        "serve",
        help="check the pod, then exec the engine: TGI's launcher or vllm serve (LLM_ENGINE; settings from LLM_* env)",
    )
    serve.add_argument("--dry-run", action="store_true", help="print the environment and launcher command instead")
    serve.add_argument("--skip-checks", action="store_true", help="start TGI even when a check fails")
    return parser


# --- download / inspect ----------------------------------------------------------------------


def _token(env: Mapping[str, str]) -> str | None:
    return env.get("HF_TOKEN") or env.get("HUGGING_FACE_HUB_TOKEN") or None


def _report(text: str) -> None:
    try:
        write_termination_message(text)
    except OSError as err:  # outside Kubernetes there is no /dev/termination-log: say so, go on
        print(f"llm-runtime: could not write the termination message ({err})", file=sys.stderr)


def run_download(args: argparse.Namespace, env: Mapping[str, str]) -> int:
    if not args.model_id:
        print("llm-runtime download: give --model-id or MODEL_ID", file=sys.stderr)
        return EXIT_USAGE
    try:
        adapters = parse_adapters(args.adapters or "")
    except SettingsError as err:
        print(f"llm-runtime download: {err}", file=sys.stderr)
        return EXIT_USAGE
    common = dict(
        cache_dir=args.cache_dir,
        token=_token(env),
        endpoint=args.endpoint,
        stall_timeout_s=args.stall_timeout,
        progress=lambda line: print(line, flush=True),
        max_workers=args.workers,
    )
    try:
        result = dl.download(args.model_id, args.revision, allow_patterns=args.allow_pattern, **common)
        adapter_commits = {a.name: dl.download_adapter(a.model_id, a.revision, **common).commit for a in adapters}
    except dl.DownloadError as err:
        print(f"llm-runtime download: {err}", file=sys.stderr)
        _report(dl.error_message(err))
        return EXIT_PERMANENT if err.permanent else EXIT_RETRYABLE
    assert result.facts is not None  # download() reads them from what it fetched
    message = termination_message(result.facts, result.commit, adapter_commits)
    _report(message)
    print(message)
    return EXIT_OK


def run_inspect(args: argparse.Namespace) -> int:
    if not args.model_id:
        print("llm-runtime inspect: give --model-id or MODEL_ID", file=sys.stderr)
        return EXIT_USAGE
    facts = dl.facts_from_cache(args.cache_dir, args.model_id, args.revision)
    if facts is None:
        print(
            f"llm-runtime inspect: {checks.cache_check(args.cache_dir, args.model_id, args.revision).message}",
            file=sys.stderr,
        )
        return EXIT_RETRYABLE
    print(json.dumps(facts.to_dict(), indent=2, sort_keys=True))
    return EXIT_OK


# --- serve -----------------------------------------------------------------------------------


@dataclass(frozen=True)
class Measured:
    """What the pod has, measured once; tests pass their own."""

    gpus: list[checks.GpuInfo] | None
    gpu_error: str | None
    shm_bytes: int | None
    cuda_visible_devices: str | None = None


def measure(env: Mapping[str, str]) -> Measured:
    gpus, error = checks.measure_gpus()
    return Measured(gpus, error, checks.measure_shm(), env.get("CUDA_VISIBLE_DEVICES"))


def serve_checks(
    num_shard: int,
    measured: Measured,
    cache_dir: str | None = None,
    model_id: str = "",
    revision: str = "main",
    adapters: tuple[AdapterRef, ...] = (),
) -> list[checks.CheckResult]:
    results = [
        checks.gpu_verdict(num_shard, measured.gpus, measured.gpu_error, measured.cuda_visible_devices),
        checks.shm_verdict(num_shard, measured.shm_bytes),
    ]
    if cache_dir:
        results.append(checks.cache_check(cache_dir, model_id, revision))
        results += [checks.cache_check(cache_dir, a.model_id, a.revision) for a in adapters]
    return results


def launch_plan(env: Mapping[str, str]) -> tuple[LauncherSettings, list[str], dict[str, str]]:
    """(settings, argv, the environment TGI needs beyond the pod's) from the LLM_* variables.

    With LLM_CACHE_DIR the model is named by its Hub id with HF_HOME=cache and HF_HUB_OFFLINE=1,
    not by its snapshot path: TGI then resolves the revision through refs/ as it does online,
    /info and the OpenAI routes report the real model id, and the argv is the same as when TGI
    downloads by itself. Adapters are passed by snapshot path (see launcher.adapter_entry)."""
    cache_dir = env.get(ENV_CACHE_DIR, "").strip() or None
    adapter_dirs = {}
    if cache_dir:
        for ref in parse_adapters(env.get(ENV_ADAPTERS, "")):
            snapshot = dl.cached_snapshot_dir(cache_dir, ref.model_id, ref.revision)
            if snapshot is not None:
                adapter_dirs[ref.name] = str(snapshot)
    settings = settings_from_env(env, adapter_dirs)
    extra = launcher_env(settings, offline=cache_dir is not None)
    if cache_dir:
        extra["HF_HOME"] = cache_dir
    return settings, [LAUNCHER, *launcher_args(settings)], extra


ENGINE_NAMES = {"tgi": "TGI", "vllm": "vLLM"}
ENGINES = tuple(ENGINE_NAMES)


def vllm_plan(env: Mapping[str, str]) -> tuple[vllm.ServeSettings, list[str], dict[str, str]]:
    """(settings, argv, extra environment) for `vllm serve` from the same LLM_* variables:
    LLM_NUM_SHARD is the tensor-parallel size, LLM_MAX_TOTAL_TOKENS --max-model-len,
    LLM_MAX_BATCH_PREFILL_TOKENS --max-num-batched-tokens, LLM_MAX_CONCURRENT_REQUESTS
    --max-num-seqs (vLLM has no separate input limit: LLM_MAX_INPUT_TOKENS is not used)."""
    tgi_settings, _, _ = launch_plan(env)
    cache_dir = env.get(ENV_CACHE_DIR, "").strip() or None
    served = env.get(launcher.ENV_SERVED_NAME, "").strip()
    s = vllm.ServeSettings(
        model_id=tgi_settings.model_id,
        revision=tgi_settings.revision,
        tensor_parallel_size=tgi_settings.num_shard,
        quantization=tgi_settings.quantize,
        checkpoint_quantization=_checkpoint_method(cache_dir, tgi_settings),
        dtype=tgi_settings.dtype,
        trust_remote_code=tgi_settings.trust_remote_code,
        max_model_len=tgi_settings.max_total_tokens,
        max_num_batched_tokens=tgi_settings.max_batch_prefill_tokens,
        max_num_seqs=tgi_settings.max_concurrent_requests,
        served_model_names=tuple(n for n in (served, tgi_settings.model_id) if n),
        lora_modules=vllm.lora_modules(tgi_settings.lora_adapters),
        port=int(env[launcher.ENV_PORT]) if env.get(launcher.ENV_PORT, "").strip() else vllm.DEFAULT_PORT,
        extra_args=tgi_settings.extra_args,
    )
    extra = vllm.serve_env(offline=cache_dir is not None)
    if cache_dir:
        extra["HF_HOME"] = cache_dir
    return s, ["vllm", "serve", *vllm.serve_args(s)], extra


def _checkpoint_method(cache_dir: str | None, s: LauncherSettings) -> str | None:
    """The cached checkpoint's quant_method ("" for 16-bit weights), None without the cache."""
    facts = dl.facts_from_cache(cache_dir, s.model_id, s.revision) if cache_dir else None
    return None if facts is None else facts.quant_method


def vllm_refusals(s: vllm.ServeSettings, cache_dir: str | None, lora_entries: tuple[str, ...]) -> list[str]:
    """What vLLM 0.33.0 would refuse after loading, named by the LLM_* variables."""
    problems = []
    if s.quantization in vllm.ONLY_IN_TGI:
        problems.append(f"{launcher.ENV_QUANTIZE}={s.quantization} is not in vLLM {vllm.VERSION} (TGI has it).")
    facts = dl.facts_from_cache(cache_dir, s.model_id, s.revision) if cache_dir else None
    if facts is not None and s.max_model_len and s.max_model_len > facts.max_position_embeddings:
        problems.append(
            f"{launcher.ENV_MAX_TOTAL_TOKENS}={s.max_model_len} is above the model's context "
            f"({facts.max_position_embeddings}): vLLM refuses a longer --max-model-len."
        )
    pinned = vllm.pinned_hub_adapters(lora_entries)
    if pinned:
        problems.append(
            f"vLLM fetches adapters from the Hub at main only: {', '.join(pinned)} in {ENV_ADAPTERS} "
            f"needs {ENV_CACHE_DIR}."
        )
    return problems


def _checkpoint(cache_dir: str | None, s: LauncherSettings) -> tgi_rules.Checkpoint | None:
    """What TGI will read from the cached model's config.json (None without the cache)."""
    facts = dl.facts_from_cache(cache_dir, s.model_id, s.revision) if cache_dir else None
    return (
        None
        if facts is None
        else tgi_rules.Checkpoint.from_config(facts.quantization_config, facts.max_position_embeddings)
    )


def shell_lines(argv: Sequence[str], extra_env: Mapping[str, str]) -> str:
    """The plan as a shell script a TGI user can read (and run)."""
    exports = [f"export {key}={shlex.quote(value)}" for key, value in sorted(extra_env.items())]
    return "\n".join([*exports, shlex.join(argv)]) + "\n"


def run_serve(
    env: Mapping[str, str],
    dry_run: bool = False,
    skip_checks: bool = False,
    measured: Measured | None = None,
    out: TextIO | None = None,
    err: TextIO | None = None,
) -> int:
    out, err = out or sys.stdout, err or sys.stderr
    engine = env.get(launcher.ENV_ENGINE, "").strip() or "tgi"
    if engine not in ENGINES:
        print(f"llm-runtime serve: {launcher.ENV_ENGINE}={engine!r} is not an engine: use tgi or vllm", file=err)
        return EXIT_USAGE
    try:
        settings, argv, extra = launch_plan(env)
        adapters = parse_adapters(env.get(ENV_ADAPTERS, ""))
        if engine == "vllm":
            vllm_settings, argv, extra = vllm_plan(env)
    except SettingsError as problem:
        print(f"llm-runtime serve: {problem}", file=err)
        return EXIT_USAGE
    cache_dir = env.get(ENV_CACHE_DIR, "").strip() or None
    if engine == "vllm":
        refused = vllm_refusals(vllm_settings, cache_dir, settings.lora_adapters)
    else:
        refused = launcher.refusals(settings, _checkpoint(cache_dir, settings))
    if refused:
        # What the engine would refuse after minutes of loading, said now, in one place.
        print(f"llm-runtime serve: {ENGINE_NAMES[engine]} would refuse these settings: {' '.join(refused)}", file=err)
        return EXIT_USAGE
    failed = False
    if not skip_checks:
        for result in serve_checks(
            settings.num_shard, measured or measure(env), cache_dir, settings.model_id, settings.revision, adapters
        ):
            print(f"check {'ok' if result.ok else 'FAILED'}: {result.message}", file=err)
            failed = failed or not result.ok
    if dry_run:
        out.write(shell_lines(argv, extra))
        return EXIT_CHECKS_FAILED if failed else EXIT_OK
    if failed:
        print(
            f"llm-runtime serve: not starting {ENGINE_NAMES[engine]}; fix the failed checks above, or pass --skip-checks.",
            file=err,
        )
        return EXIT_CHECKS_FAILED
    out.flush()
    err.flush()
    try:
        os.execvpe(argv[0], argv, {**env, **extra})
    except FileNotFoundError:
        image = (
            "an image built FROM vLLM's (vllm/vllm-openai)"
            if engine == "vllm"
            else "the runtime image (built FROM TGI's)"
        )
        print(f"llm-runtime serve: {argv[0]} is not on PATH: run this in {image}.", file=err)
        return 127
    return EXIT_RETRYABLE  # not reached: exec replaced this process


def main(argv: Sequence[str] | None = None) -> int:
    args = _parser().parse_args(argv)
    if args.command == "download":
        return run_download(args, os.environ)
    if args.command == "inspect":
        return run_inspect(args)
    return run_serve(os.environ, dry_run=args.dry_run, skip_checks=args.skip_checks)


if __name__ == "__main__":
    sys.exit(main())

"""vllm-bench: vLLM's own load generator (`vllm bench serve`), straight to one engine and through
the gateway, alternating (real engines only)."""

from __future__ import annotations

import json
import os
import subprocess
import time
from pathlib import Path

from support.loopback import require_loopback  # tests/support/loopback.py: the one address gate

from ..config import HOST, MODEL, emit
from ..figures import as_ttft, compare, merge_rounds, noise, summarize, vllm_bench_round
from ..processes import offline_env, start_gateway, stop
from ..real_engines import RealEngines


def run_vllm_bench(args, tmp: Path, real: RealEngines) -> dict:
    """`vllm bench serve` (random prompts, a fixed concurrency) straight to one engine and through the
    gateway in front of that engine alone, alternating; with several engines, also through a
    gateway in front of all of them (what a client of the model gets, not a like-for-like figure)."""
    procs: list[subprocess.Popen] = []
    log = open(tmp / "gateway-vllm-bench.log", "w")
    results_dir = tmp / "vllm-bench"
    results_dir.mkdir()
    try:
        one = real.addresses[0]
        gateway, gw_port = start_gateway(
            [{"name": MODEL, "namespace": "bench", "engine": "vllm", "endpoints": [one]}], tmp, "vllm-bench", log
        )
        procs.append(gateway)
        paths = {"direct": f"http://{one}", "gateway": f"http://{HOST}:{gw_port}"}
        if len(real.addresses) > 1:
            gateway_all, all_port = start_gateway(
                [{"name": MODEL, "namespace": "bench", "engine": "vllm", "endpoints": real.addresses}],
                tmp,
                "vllm-bench-all",
                log,
            )
            procs.append(gateway_all)
            paths[f"gateway-{len(real.addresses)}"] = f"http://{HOST}:{all_port}"
        command = [
            str(real.venv / "bin" / "vllm"),
            "bench",
            "serve",
            "--backend",
            "openai",
            "--endpoint",
            "/v1/completions",
            "--model",
            MODEL,
            "--tokenizer",
            "<tiny model dir>",
            "--dataset-name",
            "random",
            "--random-input-len",
            str(args.bench_input_len),
            "--random-output-len",
            str(args.bench_output_len),
            "--num-prompts",
            str(args.bench_prompts),
            "--max-concurrency",
            str(args.bench_concurrency),
            "--ignore-eos",
            "--temperature",
            "0",
            "--percentile-metrics",
            "ttft,e2el",
            "--metric-percentiles",
            "50,99",
            "--disable-tqdm",
            "--save-result",
            "--save-detailed",
            "--result-dir",
            str(results_dir),
        ]
        print(
            f"\nvllm-bench: `vllm bench serve` ({args.bench_prompts} random prompts of {args.bench_input_len} "
            f"tokens, {args.bench_output_len} tokens out, ignore_eos, concurrency {args.bench_concurrency}), "
            f"{args.bench_rounds} rounds of {', '.join(paths)}; prefix caches emptied before each run; "
            f"direct and gateway: engine {one}",
            flush=True,
        )
        print(f"{'round':>5}  {'path':<10} {'req/s':>7} {'TTFT p50':>9} {'TTFT p99':>9} {'failed':>6} {'wall':>6}")
        rounds: dict[str, list] = {name: [] for name in paths}
        reported: dict[str, list] = {name: [] for name in paths}
        for r in range(args.bench_rounds):
            for name, base in paths.items():
                real.reset_prefix_caches()
                filename = f"round{r}-{name}.json"
                # The same seed on every path of a round: the same prompts, to a cold cache each time.
                argv = [a if a != "<tiny model dir>" else str(real.model_dir) for a in command] + [
                    "--base-url",
                    base,
                    "--seed",
                    str(1000 + r),
                    "--result-filename",
                    filename,
                ]
                require_loopback(base.split("//")[1].rpartition(":")[0])
                started = time.monotonic()
                proc = subprocess.run(
                    argv,
                    capture_output=True,
                    text=True,
                    timeout=600,
                    cwd=tmp,
                    env={**os.environ, **offline_env(), "OMP_NUM_THREADS": "1"},
                )
                wall = time.monotonic() - started
                (results_dir / f"round{r}-{name}.log").write_text(proc.stdout + proc.stderr)
                if proc.returncode != 0 or not (results_dir / filename).exists():
                    raise SystemExit(
                        f"bench: vllm bench serve against {base} failed ({proc.returncode}):\n"
                        f"{(proc.stdout + proc.stderr)[-3000:]}"
                    )
                result = json.loads((results_dir / filename).read_text())
                rounds[name].append(vllm_bench_round(result))
                reported[name].append(
                    {
                        k: result.get(k)
                        for k in (
                            "completed",
                            "failed",
                            "duration",
                            "request_throughput",
                            "p50_ttft_ms",
                            "p99_ttft_ms",
                            "mean_ttft_ms",
                            "p50_e2el_ms",
                            "p99_e2el_ms",
                            "total_input_tokens",
                            "total_output_tokens",
                        )
                    }
                    | {"wall_s": round(wall, 1), "aligned_prompts_to_server": "re-aligning prompts" in proc.stdout}
                )
                one_round = as_ttft(summarize(*rounds[name][-1]))
                print(
                    f"{r + 1:>5}  {name:<10} {result['request_throughput']:>7.1f} {one_round['ttft_p50_ms']:>7.1f}ms "
                    f"{one_round['ttft_p99_ms']:>7.1f}ms {result.get('failed', 0):>6} {wall:>5.0f}s",
                    flush=True,
                )
        merged = {name: merge_rounds(rounds[name]) for name in paths}
        c = compare(merged["direct"], merged["gateway"])
        c["direct_noise"] = noise(rounds["direct"])
        shown = ["<vllm venv>/bin/vllm", *(a if a != str(results_dir) else "<result dir>" for a in command[1:])]
        out = {
            "settings": {
                "command": shown + ["--base-url", "URL", "--seed", "1000 + round"],
                "direct": paths["direct"],
                "gateway_endpoints": [one],
                "rounds": args.bench_rounds,
            },
            **{name: {**as_ttft(m), "rounds": reported[name]} for name, m in merged.items()},
            "compare": {
                "rps_ratio": c["rps_ratio"],
                "added_ttft_p50_ms": c["added_p50_ms"],
                "added_ttft_p99_ms": c["added_p99_ms"],
                "direct_noise_ttft_ms": c["direct_noise"],
            },
        }
        for name in paths:
            m = out[name]
            print(
                f"{'all':>5}  {name:<10} {m['rps']:>7.1f} {m['ttft_p50_ms']:>7.1f}ms {m['ttft_p99_ms']:>7.1f}ms "
                f"{m['errors']:>6}"
            )
            emit({"scenario": "vllm-bench", "path": name, **{k: v for k, v in m.items() if k != "rounds"}})
        cc = out["compare"]
        print(
            f"gateway vs direct, same engine, same run: {cc['rps_ratio']:.2f}x req/s, TTFT "
            f"{cc['added_ttft_p50_ms']:+.1f} ms at p50, {cc['added_ttft_p99_ms']:+.1f} ms at p99 (the direct "
            f"rounds' own spread: {cc['direct_noise_ttft_ms']['p50_ms']:.1f} / "
            f"{cc['direct_noise_ttft_ms']['p99_ms']:.1f} ms)",
            flush=True,
        )
        emit({"scenario": "vllm-bench", "compare": cc})
        return out
    finally:
        stop(procs)
        log.close()

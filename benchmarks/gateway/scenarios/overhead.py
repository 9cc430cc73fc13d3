"""The gateway's cost: the same streaming load sent straight to the engines and through the
gateway (and with --asgi through benchmarks/asgi_proxy.py), alternating, at each level."""

from __future__ import annotations

import asyncio
import json
import subprocess
import sys
from pathlib import Path

from ..clients import answer_lengths, answer_seconds, run_level
from ..config import ASGI_PROXY, HOST, MODEL, emit
from ..figures import compare, merge_rounds, noise, verdicts
from ..processes import env, free_port, start_engines, start_gateway, stop, wait_http
from ..real_engines import RealEngines


def run_overhead(args, levels: list[int], tmp: Path, real: RealEngines | None = None) -> dict:
    """The gateway's cost: the same load direct and through the gateway at each level."""
    procs: list[subprocess.Popen] = []
    gw_log = open(Path(tmp, "gateway.log"), "w")
    try:
        if real is None:
            ports = [free_port() for _ in range(args.engines)]
            endpoints = [f"{HOST}:{p}" for p in ports]
            engines = start_engines(
                ports,
                {
                    "prefill_tokens_per_s": float("inf"),
                    "decode_tokens_per_s": args.decode_tokens_per_s,
                    "max_batch": args.max_batch,
                },
            )
            procs.append(engines)
            for hostport in endpoints:
                wait_http(f"http://{hostport}/health", 10, engines, "the fake engines")
            engine, direct_model, extra = "tgi", "tgi", {}
        else:
            # vLLM serves MODEL, the name the gateway sends upstream; ignore_eos: answers as long as the fake engines'.
            endpoints, engine, direct_model, extra = real.addresses, "vllm", MODEL, {"ignore_eos": True}
        gateway, gw_port = start_gateway(
            [{"name": MODEL, "namespace": "bench", "engine": engine, "endpoints": endpoints}], tmp, "overhead", gw_log
        )
        procs.append(gateway)
        paths = ["direct", "gateway"]
        if args.asgi:
            asgi_port = free_port()
            asgi = subprocess.Popen(
                [sys.executable, str(ASGI_PROXY), f"--listen={HOST}:{asgi_port}"]
                + [f"--endpoint={e}" for e in endpoints],
                stdout=gw_log,
                stderr=subprocess.STDOUT,
                env=env(),
            )
            procs.append(asgi)
            wait_http(f"http://{HOST}:{asgi_port}/readyz", 30, asgi, "the ASGI proxy")
            paths.append("asgi")

        lengths = answer_lengths(args.tokens)

        def bodies_for(model: str) -> list[bytes]:
            return [
                json.dumps(
                    {
                        "model": model,
                        "stream": True,
                        "max_tokens": n,
                        **extra,
                        "messages": [{"role": "user", "content": "hello"}],
                    }
                ).encode()
                for n in lengths
            ]

        # Direct, the body names the model as TGI knows it ("tgi"); through the gateway, by the
        # LLMDeployment's name, which the gateway rewrites to "tgi" (README: upstream model).
        direct_body, gateway_body = bodies_for(direct_model), bodies_for(MODEL)
        direct_urls = [f"http://{e}/v1/chat/completions" for e in endpoints]
        gateway_urls = [f"http://{HOST}:{gw_port}/v1/chat/completions"]
        if real is None:
            stagger = args.tokens / args.decode_tokens_per_s  # one mean answer's time
        else:
            mean_body = json.dumps(
                {
                    "model": MODEL,
                    "stream": True,
                    "max_tokens": args.tokens,
                    **extra,
                    "messages": [{"role": "user", "content": "hello"}],
                }
            ).encode()
            stagger = min(answer_seconds(direct_urls[0], mean_body) for _ in range(3))
        targets = {"direct": (direct_urls, direct_body), "gateway": (gateway_urls, gateway_body)}
        if args.asgi:
            targets["asgi"] = ([f"http://{HOST}:{asgi_port}/v1/chat/completions"], gateway_body)
        # Warm every path (connections, first-request costs) before measuring.
        for urls, body in targets.values():
            warm = asyncio.run(run_level(urls, 8, 0.5, body))
            if warm[1] or not warm[0]:
                raise SystemExit(
                    f"bench: warm-up against {urls[0]} failed ({warm[1]} errors, "
                    f"{len(warm[0])} answers); the gateway's log: {gw_log.name}"
                )

        results: dict[str, dict] = {}
        print(f"{'streams':>7}  {'path':<8} {'req/s':>8} {'TTFB p50':>9} {'TTFB p99':>9} {'errors':>6}")
        for level in levels:
            rounds = {name: [] for name in paths}
            for _ in range(args.rounds):
                for name in paths:
                    urls, body = targets[name]
                    rounds[name].append(asyncio.run(run_level(urls, level, args.seconds, body, stagger)))
            merged = {name: merge_rounds(rounds[name]) for name in paths}
            d, g = merged["direct"], merged["gateway"]
            c = compare(d, g)
            c["direct_noise"] = noise(rounds["direct"])
            results[str(level)] = {**merged, "compare": c}
            if args.asgi:
                results[str(level)]["compare_asgi"] = compare(d, merged["asgi"])
            for name, r in merged.items():
                print(
                    f"{level:>7}  {name:<8} {r['rps']:>8.1f} {r['ttfb_p50_ms']:>7.2f}ms {r['ttfb_p99_ms']:>7.2f}ms"
                    f" {r['errors']:>6}"
                )
            print(
                f"{level:>7}  {'added':<8} {c['rps_ratio']:>7.2f}x {c['added_p50_ms']:>+7.2f}ms"
                f" {c['added_p99_ms']:>+7.2f}ms",
                flush=True,
            )
            if args.asgi:
                a = results[str(level)]["compare_asgi"]
                print(
                    f"{level:>7}  {'+asgi':<8} {a['rps_ratio']:>7.2f}x {a['added_p50_ms']:>+7.2f}ms"
                    f" {a['added_p99_ms']:>+7.2f}ms",
                    flush=True,
                )
            if args.rounds > 1:
                n = c["direct_noise"]
                print(
                    f"{level:>7}  {'noise':<8} {'':>8} {n['p50_ms']:>7.2f}ms {n['p99_ms']:>7.2f}ms"
                    "  (spread of the direct path's own rounds)",
                    flush=True,
                )
            emit({"scenario": "overhead", "streams": level, **results[str(level)]})
        for line in verdicts(results):
            print(line)
        if real is not None:
            results["settings"] = {
                "engines": len(endpoints),
                "stagger_s": round(stagger, 4),
                "answer_tokens": f"uniform in [{min(lengths)}, {max(lengths)}], ignore_eos",
                "prompt": "one user message, 'hello'",
            }
        return results
    finally:
        stop(procs)
        gw_log.close()

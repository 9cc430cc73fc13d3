"""Routing (issue 16): round-robin straight to the engines (what a Service gives), least load and
prefix through the gateway, over prefix-caching engines, under the same open-loop arrivals."""

from __future__ import annotations

import asyncio
import math
import subprocess
from dataclasses import dataclass, field
from pathlib import Path

from ..clients import arrivals, open_loop
from ..config import HOST, MODEL, STRATEGIES, emit
from ..figures import hit_rate, load_spread, percentile, round_robin_capacity, routing_verdicts
from ..metrics import FAKE_COUNTERS, VLLM_COUNTERS, engine_counters, spilled_counts
from ..processes import free_port, start_engines, start_gateway, stop, wait_http
from ..prompts import prefix_homes, real_prompts, routing_prompts
from ..real_engines import RealEngines


@dataclass
class Setup:
    """One run's engines and load, the same for every strategy."""

    replicas: int
    rate: float
    prompts: list[str]
    settings: dict
    engine: str  # the gateway table's engine kind
    direct_model: str  # the model's name as the engines know it (round-robin talks to them directly)
    counters: tuple[str, ...]  # (cached prompt tokens, prompt tokens[, requests finished]) in /metrics
    extra: dict  # added to every request's body
    options: dict = field(default_factory=dict)  # the fake engines' settings


def fake_setup(args) -> Setup:
    replicas, prefix_words = 4, args.prefix_words
    prompts = routing_prompts(args.prefixes, prefix_words)
    prefill_s = prefix_words / args.prefill_tokens_per_s
    decode_s = args.routing_tokens / args.routing_decode_tokens_per_s
    # What a Service gives today: round-robin finds a prefix cached about as often as an
    # engine's cache holds it (cache_share), so its replicas serve replicas * batch requests
    # per (a miss's prefill share + decode) seconds. The load is offered near that capacity.
    capacity_rr = round_robin_capacity(replicas, args.routing_batch, prefill_s, decode_s, args.cache_share)
    rate = args.offered * capacity_rr
    blocks_per_prefix = prefix_words // 16 + 1
    cache_blocks = max(1, int(blocks_per_prefix * args.prefixes * args.cache_share))
    options = {
        "prefill_tokens_per_s": args.prefill_tokens_per_s,
        "decode_tokens_per_s": args.routing_decode_tokens_per_s,
        "max_batch": args.routing_batch,
        "block_tokens": 16,
        "cache_blocks": cache_blocks,
        "max_input_tokens": 100_000,
        "max_total_tokens": 200_000,
    }
    print(
        f"\nrouting: {replicas} fake engines, {args.prefixes} prefixes of {prefix_words} tokens, "
        f"{args.users} users, prefill {args.prefill_tokens_per_s:g} tokens/s (a whole prefix: {prefill_s * 1000:.0f} ms), "
        f"batch {args.routing_batch}, {args.routing_tokens} tokens per answer at {args.routing_decode_tokens_per_s:g}/s, "
        f"cache {cache_blocks} blocks per engine ({args.cache_share:.2f} of the prefixes); "
        f"offered {rate:.1f} req/s = {args.offered:.2f} x round-robin's capacity ({capacity_rr:.1f} req/s); "
        f"{args.warmup:g} s warm-up, {args.routing_seconds:g} s measured",
        flush=True,
    )
    settings = {
        "replicas": replicas,
        "prefixes": args.prefixes,
        "prefix_tokens": prefix_words,
        "users": args.users,
        "rate": rate,
        "capacity_round_robin": capacity_rr,
        "cache_blocks": cache_blocks,
        **{
            k: getattr(args, k)
            for k in (
                "prefill_tokens_per_s",
                "routing_decode_tokens_per_s",
                "routing_batch",
                "routing_tokens",
                "warmup",
                "routing_seconds",
                "offered",
            )
        },
    }
    return Setup(replicas, rate, prompts, settings, "tgi", "tgi", FAKE_COUNTERS, {}, options)


def real_setup(args, real: RealEngines) -> Setup:
    replicas, rate = len(real.addresses), args.real_rate
    prompts = real_prompts(real, args.prefixes, args.prefix_tokens)
    shortest = min(len(p) for p in prompts)
    if shortest <= args.prefix_chars:
        raise SystemExit(
            f"bench: the shortest prefix has {shortest} characters, not more than --prefix-chars "
            f"{args.prefix_chars}: the prefix strategy would hash the users' questions too"
        )
    per_prefix = args.prefix_tokens // real.block_tokens
    share = (real.num_blocks - real.max_num_seqs) / (args.prefixes * per_prefix)
    homes = prefix_homes(prompts, real.addresses, args.prefix_chars)
    print(
        f"\nrouting: {replicas} vLLM engines (the tiny model, --max-num-seqs {real.max_num_seqs}), "
        f"{args.prefixes} prefixes of {args.prefix_tokens} tokens ({per_prefix} blocks of {real.block_tokens}), "
        f"{args.users} users, {args.routing_tokens} tokens per answer; each engine's KV cache {real.num_blocks} "
        f"blocks ({share:.2f} of the prefixes' blocks, and one per running request); prefixes homed on the "
        f"prefix ring: {list(homes.values())}; offered {rate:g} req/s (Poisson); prefix caches emptied "
        f"before each strategy (POST /reset_prefix_cache); {args.warmup:g} s warm-up, "
        f"{args.routing_seconds:g} s measured",
        flush=True,
    )
    settings = {
        "replicas": replicas,
        "engine": "vLLM",
        "prefixes": args.prefixes,
        "prefix_tokens": args.prefix_tokens,
        "prefix_chars_shortest": shortest,
        "block_tokens": real.block_tokens,
        "cache_blocks": real.num_blocks,
        "cache_share_of_prefix_blocks": share,
        "prefixes_homed_per_engine": homes,
        "users": args.users,
        "rate": rate,
        "max_num_seqs": real.max_num_seqs,
        "caches_reset_between_strategies": True,
        **{
            k: getattr(args, k)
            for k in ("routing_tokens", "warmup", "routing_seconds", "prefix_chars", "load_factor_percent")
        },
    }
    # ignore_eos: every answer routing_tokens long, whatever the random weights say.
    return Setup(replicas, rate, prompts, settings, "vllm", MODEL, VLLM_COUNTERS, {"ignore_eos": True})


def run_routing(args, tmp: Path, real: RealEngines | None = None) -> dict:
    setup = fake_setup(args) if real is None else real_setup(args, real)
    plan = arrivals(setup.rate, args.warmup + args.routing_seconds, args.users, args.prefixes)
    print(f"{'strategy':<12} {'hit rate':>8} {'TTFT mean':>10} {'TTFT p99':>9} {'max/mean load':>13} {'errors':>6}")
    out = {"settings": setup.settings}
    for strategy in args.strategies.split(","):
        out[strategy] = run_strategy(args, tmp, real, setup, strategy, plan)
    if "prefix" in out:
        print(f"prefix routing spilled {out['prefix']['spilled'] * 100:.1f}% of its requests past their home replica")
    if all(s in out for s in STRATEGIES):
        out["verdicts"] = routing_verdicts(out)
    for line in out.get("verdicts", []):
        print(line)
    return out


def run_strategy(
    args, tmp: Path, real: RealEngines | None, setup: Setup, strategy: str, plan: list[tuple[float, int, int]]
) -> dict:
    """One strategy over fresh fake engines (or the real ones, their caches emptied): its row."""
    procs: list[subprocess.Popen] = []
    log = open(tmp / f"gateway-{strategy}.log", "w")
    try:
        if real is None:
            ports = [free_port() for _ in range(setup.replicas)]
            endpoints = [f"{HOST}:{p}" for p in ports]
            procs.append(start_engines(ports, setup.options))
            for hostport in endpoints:
                wait_http(f"http://{hostport}/health", 10, procs[0], "the fake engines")
        else:
            endpoints = real.addresses
            real.reset_prefix_caches()
        gw_port = None
        if strategy == "round-robin":
            urls, model = [f"http://{e}/v1/chat/completions" for e in endpoints], setup.direct_model
        else:
            routing = (
                {
                    "strategy": "prefix",
                    "prefixChars": args.prefix_chars,
                    "loadFactorPercent": args.load_factor_percent,
                }
                if strategy == "prefix"
                else {"strategy": "leastLoad"}
            )
            gateway, gw_port = start_gateway(
                [
                    {
                        "name": MODEL,
                        "namespace": "bench",
                        "engine": setup.engine,
                        "routing": routing,
                        "endpoints": endpoints,
                    }
                ],
                tmp,
                f"routing-{strategy}",
                log,
            )
            procs.append(gateway)
            urls, model = [f"http://{HOST}:{gw_port}/v1/chat/completions"], MODEL
        # The hit rate counts from the end of the warm-up: engine counters read then.
        readings = {}

        async def scenario():
            async def mark():
                await asyncio.sleep(args.warmup)
                readings["before"] = await asyncio.to_thread(engine_counters, endpoints, setup.counters)
                if strategy == "prefix":
                    readings["routed"] = await asyncio.to_thread(spilled_counts, gw_port)

            marker = asyncio.create_task(mark())
            result = await open_loop(urls, model, plan, setup.prompts, args.routing_tokens, args.warmup, setup.extra)
            await marker
            return result

        ttft, per_engine, errors = asyncio.run(scenario())
        after = engine_counters(endpoints, setup.counters)
        if real is not None:
            # vLLM names no engine in its answers: requests each finished over the same window.
            per_engine = {e: int(after[e][2] - readings["before"][e][2]) for e in endpoints}
        row = {
            "hit_rate": hit_rate(readings["before"], after),
            "hit_rate_per_engine": {e: hit_rate({e: readings["before"][e]}, {e: after[e]}) for e in endpoints},
            "ttft_mean_ms": (sum(ttft) / len(ttft) * 1000) if ttft else math.nan,
            "ttft_p50_ms": percentile(ttft, 50) * 1000,
            "ttft_p99_ms": percentile(ttft, 99) * 1000,
            "load_max_over_mean": load_spread(per_engine, setup.replicas),
            "requests": len(ttft),
            "errors": errors,
            "per_engine": per_engine,
        }
        if strategy == "prefix":
            home, spilled = (a - b for a, b in zip(spilled_counts(gw_port), readings["routed"]))
            row["spilled"] = spilled / (home + spilled) if home + spilled else math.nan
        print(
            f"{strategy:<12} {row['hit_rate'] * 100:>7.1f}% {row['ttft_mean_ms']:>8.1f}ms "
            f"{row['ttft_p99_ms']:>7.1f}ms {row['load_max_over_mean']:>13.2f} {errors:>6}",
            flush=True,
        )
        emit({"scenario": "routing", "strategy": strategy, **row})
        return row
    finally:
        stop(procs)
        log.close()

"""The fake engine's /metrics page: TGI's metric names, or vLLM's."""

from __future__ import annotations

import json


def metrics_text(engine) -> str:
    """The /metrics page: TGI's names, or vLLM's (with model_name and engine labels)."""
    if engine.metrics_flavor == "vllm":
        labels = '{engine="0",model_name=%s}' % json.dumps(
            engine.served_names[0] if engine.served_names else engine.model_id
        )
        rows = [
            (
                "vllm:num_requests_running",
                "gauge",
                "Number of requests in model execution batches.",
                "",
                engine.slots.running,
            ),
            (
                "vllm:num_requests_waiting",
                "gauge",
                "Number of requests waiting to be processed.",
                "",
                engine.slots.waiting,
            ),
            (
                "vllm:prefix_cache_queries",
                "counter",
                "Prefix cache queries, in terms of number of queried tokens.",
                "_total",
                engine.prefix_queries,
            ),
            (
                "vllm:prefix_cache_hits",
                "counter",
                "Prefix cache hits, in terms of number of cached tokens.",
                "_total",
                engine.prefix_hits,
            ),
            ("vllm:prompt_tokens", "counter", "Number of prefill tokens processed.", "_total", engine.prompt_tokens),
            (
                "vllm:generation_tokens",
                "counter",
                "Number of generation tokens processed.",
                "_total",
                engine.generation_tokens,
            ),
        ]
        lines = []
        for name, kind, help_text, suffix, value in rows:
            lines += [
                f"# HELP {name}{suffix} {help_text}",
                f"# TYPE {name}{suffix} {kind}",
                f"{name}{suffix}{labels} {float(value)}",
            ]
        lines.append(
            f'vllm:request_success_total{{engine="0",finished_reason="length",model_name={json.dumps(engine.served_names[0] if engine.served_names else engine.model_id)}}} {float(engine.completed)}'
        )
        return "\n".join(lines) + "\n"
    rows = [
        ("tgi_queue_size", "gauge", engine.slots.waiting),
        ("tgi_batch_current_size", "gauge", engine.slots.running),
        ("tgi_request_count", "counter", engine.started + engine.failed + engine.rejected),
        ("tgi_request_success", "counter", engine.completed),
        # Not TGI's: the fake engine's prefix cache, in tokens.
        ("fake_engine_prefix_cache_queries_tokens", "counter", engine.prefix_queries),
        ("fake_engine_prefix_cache_hits_tokens", "counter", engine.prefix_hits),
    ]
    lines = []
    for name, kind, value in rows:
        lines += [f"# TYPE {name} {kind}", f"{name} {value}"]
    return "\n".join(lines) + "\n"

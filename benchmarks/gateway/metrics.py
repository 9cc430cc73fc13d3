"""Prometheus' text format, read: the engines' prefix-cache counters (fake and vLLM) and the
gateway's prefix-routing counter, scraped from /metrics."""

from __future__ import annotations

import re
import urllib.request

from support.loopback import require_loopback  # tests/support/loopback.py: the one address gate

from .config import HOST

# (cached prompt tokens, prompt tokens[, requests finished]) as each kind of engine counts them.
FAKE_COUNTERS = ("fake_engine_prefix_cache_hits_tokens", "fake_engine_prefix_cache_queries_tokens")
VLLM_COUNTERS = ("vllm:prefix_cache_hits_total", "vllm:prefix_cache_queries_total", "vllm:request_success_total")


def prometheus_sum(text: str, name: str) -> float:
    """The sum of every sample of the metric `name`, whatever its labels, in Prometheus' text format."""
    total = 0.0
    for line in text.splitlines():
        if line.startswith(name) and line[len(name) : len(name) + 1] in ("{", " "):
            total += float(line.rsplit(" ", 1)[1])
    return total


def prometheus_labels(text: str, name: str) -> dict[str, str]:
    """The labels of the first sample of `name` (an info metric such as vllm:cache_config_info)."""
    for line in text.splitlines():
        if line.startswith(name + "{"):
            return dict(re.findall(r'(\w+)="([^"]*)"', line[len(name) : line.rindex("}") + 1]))
    return {}


def scrape(hostport: str) -> str:
    require_loopback(hostport.rpartition(":")[0])
    with urllib.request.urlopen(f"http://{hostport}/metrics", timeout=10) as r:
        return r.read().decode()


def engine_counters(endpoints: list[str], names: tuple[str, ...]) -> dict[str, tuple[float, ...]]:
    """{HOST:PORT: (the sum of each of `names`)} read from each engine's /metrics."""
    out = {}
    for hostport in endpoints:
        text = scrape(hostport)
        out[hostport] = tuple(prometheus_sum(text, name) for name in names)
    return out


def spilled_counts(port: int) -> tuple[float, float]:
    """(home, spilled) from the gateway's llm_gateway_prefix_routed_total."""
    text = scrape(f"{HOST}:{port}")
    home = spilled = 0.0
    for line in text.splitlines():
        if line.startswith("llm_gateway_prefix_routed_total{"):
            value = float(line.rsplit(" ", 1)[1])
            if 'outcome="spilled"' in line:
                spilled += value
            else:
                home += value
    return home, spilled

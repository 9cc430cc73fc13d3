"""The operator's own Prometheus metrics: what it reconciled, what it wrote, how long it took."""

from __future__ import annotations

from prometheus_client import Counter, Histogram, start_http_server

RECONCILES = Counter("llm_operator_reconciles_total", "Reconciles of LLMDeployments, by outcome phase.", ["phase"])
WRITES = Counter("llm_operator_writes_total", "Writes to the API, by kind and verb.", ["kind", "verb"])
RECONCILE_SECONDS = Histogram(
    "llm_operator_reconcile_duration_seconds",
    "Time one reconcile took.",
    buckets=(0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10),
)


def serve(port: int, address: str = "0.0.0.0") -> None:
    """Serve /metrics on its own port, in a background thread."""
    start_http_server(port, addr=address)

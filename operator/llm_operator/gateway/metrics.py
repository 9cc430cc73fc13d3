"""The gateway's Prometheus metrics, per model (namespace/name), in a registry of its own."""

from __future__ import annotations

from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram

_TTFB_BUCKETS = (0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30, 60, 120, 300, 900)
_DURATION_BUCKETS = (0.01, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30, 60, 120, 300, 600, 900, 1800)


class GatewayMetrics:
    def __init__(self) -> None:
        r = self.registry = CollectorRegistry()
        # model_namespace and model_name repeat `model` as label values a selector can match
        # (a value cannot hold "/"): an HPA's External metric picks one model by them.
        self.in_flight = Gauge(
            "llm_gateway_requests_in_flight",
            "Requests for the model the gateway has taken and not yet answered (held ones included).",
            ["model", "model_namespace", "model_name"],
            registry=r,
        )
        self.held = Gauge(
            "llm_gateway_requests_held",
            "Requests waiting for the model to have a ready endpoint (scaling from zero, loading).",
            ["model"],
            registry=r,
        )
        self.requests = Counter(
            "llm_gateway_requests_total", "Requests answered, by HTTP status code.", ["model", "code"], registry=r
        )
        self.ttfb = Histogram(
            "llm_gateway_time_to_first_byte_seconds",
            "From the request's arrival to the first byte of the answer sent to the client.",
            ["model"],
            buckets=_TTFB_BUCKETS,
            registry=r,
        )
        self.duration = Histogram(
            "llm_gateway_request_duration_seconds",
            "From the request's arrival to its last byte.",
            ["model"],
            buckets=_DURATION_BUCKETS,
            registry=r,
        )
        self.upstream_errors = Counter(
            "llm_gateway_upstream_errors_total",
            "Failures talking to an endpoint, by cause (connect, timeout, "
            "status_503, disconnected, disconnected_streaming).",
            ["model", "cause"],
            registry=r,
        )
        self.retries = Counter(
            "llm_gateway_retries_total",
            "Requests sent again to another endpoint before any byte reached the client.",
            ["model"],
            registry=r,
        )
        self.wakes = Counter(
            "llm_gateway_wakes_total", "Times a request scaled the model from zero.", ["model"], registry=r
        )
        self.prefix_routed = Counter(
            "llm_gateway_prefix_routed_total",
            "Requests routed by prefix (spec.routing.strategy prefix): to the prefix's home "
            "replica, or spilled to the next on the ring (home over the load bound, or failed).",
            ["model", "outcome"],
            registry=r,
        )
        self.endpoints = Gauge(
            "llm_gateway_ready_endpoints", "Ready endpoints the gateway routes the model to.", ["model"], registry=r
        )

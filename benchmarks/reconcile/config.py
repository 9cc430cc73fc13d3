"""What the benchmark makes, where, and what it counts; BenchError and log."""

from __future__ import annotations

import time

MODEL_ID = "mistralai/Mistral-7B-Instruct-v0.2"

# The operator applies its children from 16 threads (handlers.configure: max_workers);
# the burst of creations and the baseline use as many.
CONCURRENCY = 16
# Enough GPUs for the Ready burst (one GPU per model): the cluster's own plus 6 x 8 H100s.
EXTRA_H100_NODES = 6
# Resources whose writes count as the operator's (its children, its objects, its Events).
OPERATOR_RESOURCES = {
    "llmdeployments",
    "services",
    "deployments",
    "poddisruptionbudgets",
    "jobs",
    "persistentvolumeclaims",
    "horizontalpodautoscalers",
    "events",
}
WRITE_VERBS = {"POST", "PUT", "PATCH", "APPLY", "DELETE", "DELETECOLLECTION"}
QUIET_S = 5.0
CONTROLLER_QPS = 500
# Resources whose requests (reads and writes) a burst's figures count, per object: the
# operator's, and what the controller manager does for its children (ReplicaSets, Pods,
# the Services' Endpoints and EndpointSlices), on both sides.
COUNTED_RESOURCES = OPERATOR_RESOURCES | {"pods", "replicasets", "endpoints", "endpointslices"}
# After a burst's objects are all seen: how long the counted requests must stand still
# before they are read (the controller manager's follow-up writes come in that time).
API_QUIET_TIMEOUT_S = 120
# How long the operator must have been quiet before its memory counts as settled.
SETTLE_S = 10.0
# Where the operator watches (it must not touch the baseline's namespaces).
OPERATOR_NAMESPACES = [
    "bench-latency",
    "bench-throughput",
    "bench-ready",
    "bench-profile",
    "bench-reference",
    "bench-populated",
]
BASELINE_NAMESPACES = [
    "bench-base",
    "bench-base-latency",
    "bench-base-queued",
    "bench-base-writes",
    "bench-base-queued-writes",
]
EXTRA_SERVICE_CIDR = """apiVersion: networking.k8s.io/v1
kind: ServiceCIDR
metadata: {name: bench-extra}
spec: {cidrs: ["10.96.0.0/16"]}
"""


class BenchError(RuntimeError):
    """Something the benchmark needs did not happen; the message says what."""


def log(msg: str) -> None:
    print(f"[{time.strftime('%H:%M:%S')}] {msg}", flush=True)

"""6. Requests per object in a namespace that already holds many other objects, against
the same burst in an empty one."""

from __future__ import annotations

import time
from concurrent.futures import ThreadPoolExecutor

from ..baselines import burst
from ..config import CONCURRENCY, BenchError, log
from ..figures import _ratio
from ..harness import Bench
from ..objects import spec_of, with_retry


# -- 6. requests per object in a namespace that already holds many other objects
def populated(bench: Bench) -> None:
    n, others = bench.args.n_populated, bench.args.n_others
    spec = spec_of(1, bench.args.replicas)
    log(
        f"populated namespace: {n} LLMDeployments at once in an empty namespace (reference), then {n} in a "
        f"namespace holding {others} other objects"
    )
    ref = bench.run_burst(
        "bench-reference", n, spec, "reconciled", apply_children=False, label=f"operator, {n} at once, empty namespace"
    )
    bench.objects += n
    log(
        f"  reference: {ref['api_requests_total']} requests ({ref['api_requests_per_object']} per object), "
        f"p50 {ref['p50_ms']} ms, p99 {ref['p99_ms']} ms, wall {ref['wall_s']}s"
    )
    made = populate(bench, "bench-populated", others, spec)
    r = bench.run_burst(
        "bench-populated",
        n,
        spec,
        "reconciled",
        apply_children=False,
        label=f"operator, {n} at once, {others} others in the namespace",
    )
    bench.objects += n
    bench.figures["populated"] = {
        "others": made,
        "reference": ref,
        "burst": r,
        "api_requests_ratio_to_reference": _ratio(r["api_requests_per_object"], ref["api_requests_per_object"]),
        "p99_ratio_to_reference": _ratio(r["p99_ms"], ref["p99_ms"]),
    }
    f = bench.figures["populated"]
    log(
        f"  with {others} others: {r['api_requests_total']} requests ({r['api_requests_per_object']} per object) "
        f"vs {ref['api_requests_per_object']} in the empty namespace: ratio {f['api_requests_ratio_to_reference']}x; "
        f"p99 {r['p99_ms']} ms ({f['p99_ratio_to_reference']}x); {r['api_requests_per_object_by_kind']}"
    )


def populate(bench: Bench, namespace: str, count: int, spec: dict) -> dict:
    """`count` objects in `namespace` before the burst: half LLMDeployments, reconciled by
    the operator (so its Services, Deployments and ReplicaSets are there too: the read
    model is populated), and half objects it must filter out: ConfigMaps, and Services
    and Deployments (0 replicas) labelled as managed by another tool."""
    started = time.monotonic()
    n_llmd = count // 2
    n_svc = n_dep = count // 20
    n_cm = count - n_llmd - n_svc - n_dep

    def labels(i: int) -> dict:
        return {
            "app.kubernetes.io/name": "other",
            "app.kubernetes.io/instance": f"other-{i:04d}",
            "app.kubernetes.io/managed-by": "another-tool",
        }

    core, apps = f"/api/v1/namespaces/{namespace}", f"/apis/apps/v1/namespaces/{namespace}"
    bodies = [
        (
            f"{core}/configmaps",
            {
                "apiVersion": "v1",
                "kind": "ConfigMap",
                "metadata": {"name": f"other-{i:04d}", "labels": labels(i)},
                "data": {"config.yaml": "key: value\n" * 20},
            },
        )
        for i in range(n_cm)
    ]
    bodies += [
        (
            f"{core}/services",
            {
                "apiVersion": "v1",
                "kind": "Service",
                "metadata": {"name": f"other-{i:04d}", "labels": labels(i)},
                "spec": {"selector": {"app": f"other-{i:04d}"}, "ports": [{"port": 80, "targetPort": 8080}]},
            },
        )
        for i in range(n_svc)
    ]
    bodies += [
        (
            f"{apps}/deployments",
            {
                "apiVersion": "apps/v1",
                "kind": "Deployment",
                "metadata": {"name": f"other-{i:04d}", "labels": labels(i)},
                "spec": {
                    "replicas": 0,
                    "selector": {"matchLabels": {"app": f"other-{i:04d}"}},
                    "template": {
                        "metadata": {"labels": {"app": f"other-{i:04d}", **labels(i)}},
                        "spec": {"containers": [{"name": "app", "image": "busybox"}]},
                    },
                },
            },
        )
        for i in range(n_dep)
    ]

    def create(item: tuple[str, dict]) -> None:
        path, body = item
        with_retry(lambda: bench.kube.request("POST", path, body=body), f"creating {path}/{body['metadata']['name']}")

    with ThreadPoolExecutor(CONCURRENCY) as pool:
        list(pool.map(create, bodies))
    names = [f"pre-{i:04d}" for i in range(n_llmd)]
    w = bench.watch(namespace, spec, names, "reconciled")
    burst(bench.kube, namespace, names, spec, apply_children=False)
    complete = w.wait_done(bench.args.timeout)
    rec = w.results()
    bench.watchers.remove(w)
    if not complete:
        raise BenchError(
            f"populating {namespace}: only {len(rec['done'])}/{n_llmd} LLMDeployments reconciled "
            f"within {bench.args.timeout:.0f}s"
        )
    bench.objects += n_llmd
    bench.wait_controllers()
    bench.settle()
    made = {
        "configmaps": n_cm,
        "services_unmanaged": n_svc,
        "deployments_unmanaged": n_dep,
        "llmdeployments_reconciled": n_llmd,
        "setup_s": round(time.monotonic() - started, 1),
    }
    log(f"  populated {namespace} in {made['setup_s']}s: {made}")
    return made

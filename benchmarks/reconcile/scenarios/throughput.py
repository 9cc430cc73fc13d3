"""3. The throughput burst against the raw-apply and same-writes baselines; the operator's
memory in it and settled after it (4)."""

from __future__ import annotations

import time

from llm_operator import api
from llm_operator.decide.manifests import HASH_ANNOTATION

from ..config import SETTLE_S, log
from ..figures import _ratio
from ..harness import Bench
from ..objects import desired_for, spec_of


# -- 3. throughput burst vs baseline
def throughput(bench: Bench) -> None:
    n = bench.args.n
    spec = spec_of(1, bench.args.replicas)
    log(f"throughput: {n} LLMDeployments created at once -> all reconciled")
    before = bench.operator.metrics()
    r = bench.run_burst("bench-throughput", n, spec, "reconciled", apply_children=False, label=f"operator, {n} at once")
    bench.objects += n
    mem = bench.operator.memory_mib()  # VmHWM: the peak so far, the burst's included
    r.update(bench.operator_work(before, n))
    r["same_objects_as_baseline"] = same_objects(bench, "bench-throughput", "m-0000", spec)
    base = bench.figures["baseline"]
    r["ratio_to_baseline"] = _ratio(r["wall_s"], base["wall_s"])
    r["api_requests_ratio_to_baseline"] = _ratio(r["api_requests_per_object"], base["api_requests_per_object"])
    same = bench.figures.get("baseline_same_writes", {})
    r["ratio_to_same_writes_baseline"] = _ratio(r["wall_s"], same.get("wall_s"))
    r["memory_after_burst_mib"] = mem
    # Settled: the operator and the apiserver quiet (run_burst waited for both), then SETTLE_S more.
    time.sleep(SETTLE_S)
    settled = bench.operator.memory_mib()
    bench.figures["memory"] = {
        "objects": bench.objects,
        "burst_VmHWM_mib": mem["VmHWM"],
        "after_burst_VmRSS_mib": mem["VmRSS"],
        "settled_VmRSS_mib": settled["VmRSS"],
        "settled_VmHWM_mib": settled["VmHWM"],
    }
    bench.figures["throughput"] = r
    log(
        f"  operator: {n} in {r['wall_s']}s wall vs baseline {base['wall_s']}s: ratio {r['ratio_to_baseline']}x "
        f"(per object p50 {r['p50_ms']} ms, p99 {r['p99_ms']} ms); vs the same-writes baseline "
        f"{same.get('wall_s')}s: {r['ratio_to_same_writes_baseline']}x"
    )
    log(
        f"  requests: {r['api_requests_total']} ({r['api_requests_per_object']} per object) vs the baseline's "
        f"{base['api_requests_total']} ({base['api_requests_per_object']}): ratio {r['api_requests_ratio_to_baseline']}x; "
        f"{r['api_requests_per_object_by_kind']}"
    )
    log(
        f"  operator: {r['reconciles_per_object']} reconciles and {r['operator_writes_per_object']} writes per object, "
        f"mean reconcile {r['mean_reconcile_ms']} ms"
    )
    log(
        f"  memory with {bench.objects} LLMDeployments: VmHWM {mem['VmHWM']} MiB (the burst's peak), "
        f"VmRSS {mem['VmRSS']} MiB right after, {settled['VmRSS']} MiB settled"
    )


def same_objects(bench: Bench, namespace: str, name: str, spec: dict) -> bool:
    """The operator's live children carry the desired-hash of what the baseline applies."""
    owner = bench.kube.get(api.API_VERSION, api.KIND, namespace, name)
    for want in desired_for(name, namespace, owner["metadata"]["uid"], spec):
        live = bench.kube.get(want["apiVersion"], want["kind"], namespace, want["metadata"]["name"]) or {}
        have = (live.get("metadata", {}).get("annotations") or {}).get(HASH_ANNOTATION)
        if have != want["metadata"]["annotations"][HASH_ANNOTATION]:
            log(f"  note: {want['kind']}/{name} differs from what the baseline applies")
            return False
    return True

"""3'. The operator restarted with every object needing nothing: the writes it makes
(none is the target), what they changed, its memory before and after."""

from __future__ import annotations

import time

from llm_operator import api

from ..apiserver import apiserver_writes, operator_side, writes_between
from ..config import log
from ..figures import status_changes
from ..harness import Bench
from ..watch import EventLog


# -- 4 and 3'. memory, and writes on a resync where nothing changed
def resync(bench: Bench) -> None:
    bench.wait_controllers()
    mem = bench.operator.memory_mib()
    log(f"memory with {bench.objects} LLMDeployments, idle: {mem}")
    statuses = object_statuses(bench)
    seen = EventLog(bench.raw, f"/apis/{api.API_VERSION}/{api.PLURAL}", statuses)
    before = apiserver_writes(bench.raw)
    log(f"resync: restarting the operator with {bench.objects} LLMDeployments that need nothing")
    bench.operator.stop()
    t0 = time.monotonic()
    bench.operator.start()
    resumed = bench.operator.wait_quiet(bench.objects, bench.args.timeout)
    total_s = time.monotonic() - t0
    after = apiserver_writes(bench.raw)
    changed = status_changes(statuses, object_statuses(bench))
    changed["watch_events"] = seen.stop()
    ours = writes_between(before, after, operator_side)
    others = writes_between(before, after, lambda key: not operator_side(key))
    m = bench.operator.metrics()
    mem_after = bench.operator.memory_mib()
    bench.figures["resync"] = {
        "objects": bench.objects,
        "writes_total": sum(ours.values()),
        "writes_per_llmdeployment": round(sum(ours.values()) / bench.objects, 3),
        "writes_by_resource": ours,
        "other_writes_in_window": others,
        "reconciles_after_restart": m.get("llm_operator_reconciles_total", 0),
        "operator_writes_metric": m.get("llm_operator_writes_total", 0),
        "resume_s": round(resumed, 2),
        "restart_to_quiet_s": round(total_s, 2),
        # What the writes changed, for a few objects: where a no-op resync is not one.
        "status_changes": changed,
    }
    bench.figures.setdefault("memory", {}).update(
        {"resync_objects": bench.objects, "before_restart_mib": mem, "after_restart_and_resync_mib": mem_after}
    )
    r = bench.figures["resync"]
    log(
        f"  {r['writes_total']:.0f} operator-side writes for {bench.objects} objects "
        f"({r['writes_per_llmdeployment']} per LLMDeployment): {ours or 'none'}"
    )
    log(
        f"  {r['reconciles_after_restart']:.0f} reconciles in {resumed:.1f}s after the restart; "
        f"memory after the resync {mem_after}"
    )


def object_statuses(bench: Bench) -> dict[str, dict]:
    out = {}
    for ns in bench.operator.namespaces:
        for o in bench.kube.list(api.API_VERSION, api.KIND, ns):
            out[f"{ns}/{o['metadata']['name']}"] = o.get("status") or {}
    return out

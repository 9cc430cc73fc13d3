"""The operator killed or stopped: a kill -9 mid-burst leaves nothing doubled, orphaned or
forgotten after the restart, and a model deleted while it is down leaves nothing behind."""

from __future__ import annotations

import json
import os
import signal

from faultkit import Stopwatch, census, operator_restored, unreconciled

from support.cluster import wait_for, wait_for_other_namespaces_to_go
from support.manifests import llmd

BURST = 200


def test_kill_9_mid_burst_of_200_then_restart_reconciles_all_once(kubectl, operator):
    # Service IPs are cluster-wide and 200 of the 253 the plane has are about to be taken.
    wait_for_other_namespaces_to_go(kubectl)
    names = [f"burst-{i:03d}" for i in range(BURST)]
    # replicas 0: every child is made (Deployment, Service) without waiting for 200 x GPUs.
    items = [llmd(n, gpus=1, replicas=0) for n in names]
    with operator_restored(operator):
        kubectl.apply(json.dumps({"apiVersion": "v1", "kind": "List", "items": items}))
        # The operator's own count answers faster than listing 200 objects: kill it early in the burst.
        wait_for(
            "the operator to have made 10 children",
            lambda: operator.metric("llm_operator_writes_total") >= 10,
            120,
            0.05,
        )
        os.kill(operator.proc.pid, signal.SIGKILL)
        operator.proc.wait(timeout=10)
        at_kill = len(kubectl.items("deployments"))
        pending = len(unreconciled(kubectl))
        print(f"\nkill -9 with {at_kill}/{BURST} Deployments made and {pending} LLMDeployments not yet Ready")
        assert pending > 0, "the burst was over before the kill: the scenario tested nothing"
        clock = Stopwatch()
        operator.start()
        left: list[str] = []

        def all_reconciled() -> bool:
            left[:] = unreconciled(kubectl)
            return not left

        try:
            wait_for(f"all {BURST} to be Ready after the restart", all_reconciled, 300, 1)
        except AssertionError as err:
            raise AssertionError(f"{err}; {len(left)} unreconciled, e.g. {left[:5]}") from None
        took = clock()
    found = census(kubectl)
    print(
        f"all {BURST} reconciled {took:.1f}s after the restart; children {found['count']}, "
        f"{len(found['duplicates'])} duplicates, {len(found['orphans'])} orphans, 0 unreconciled"
    )
    assert found["duplicates"] == [] and found["orphans"] == [], found
    assert found["count"]["deployments"] == BURST and found["count"]["services"] == BURST, found["count"]
    assert found["count"]["poddisruptionbudgets"] == 0, found["count"]
    # Free the Service IPs for what follows, and wait for the garbage collector to do so.
    kubectl.run("delete", "llmd", "--all", "--wait=true", "--timeout=120s")
    wait_for("the 200 Services to be collected", lambda: kubectl.items("services") == [], 120, 1)


def test_deleted_while_the_operator_is_stopped_leaves_nothing_behind(kubectl, operator):
    kubectl.apply(json.dumps(llmd("gone-while-down", gpus=1, replicas=2)))
    kubectl.run("wait", "--for=condition=Ready", "llmd/gone-while-down", "--timeout=90s")
    before = census(kubectl)
    pods = len(kubectl.items("pods"))
    replicasets = len(kubectl.items("replicasets"))
    assert before["count"]["deployments"] == 1 and before["count"]["poddisruptionbudgets"] == 1 and pods == 2
    with operator_restored(operator):
        operator.stop()
        clock = Stopwatch()
        # No finalizer: the deletion does not wait for the operator.
        kubectl.run("delete", "llmd", "gone-while-down", "--wait=true", "--timeout=30s")

        def nothing_left() -> dict:
            now = census(kubectl)
            now["count"].update(pods=len(kubectl.items("pods")), replicasets=len(kubectl.items("replicasets")))
            return now if not any(now["count"].values()) else {}

        try:
            after = wait_for("the garbage collector to remove every child and pod", nothing_left, 60, 0.5)
        except AssertionError as err:
            raise AssertionError(f"{err}; left: {census(kubectl)['count']}") from None
        took = clock()
    kept = {k: v for k, v in before["count"].items() if v}
    print(
        f"\nwith the operator stopped: {kept}, {replicasets} ReplicaSet(s) and {pods} pods before; "
        f"{sum(after['count'].values())} objects left {took:.1f}s after the deletion"
    )

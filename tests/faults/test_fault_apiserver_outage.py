"""The kube-apiserver down for a minute: the same operator process, never restarted, picks
up a spec change made after the apiserver is back."""

from __future__ import annotations

import json
import time

from faultkit import Stopwatch, reconciled

from support.cluster import condition, wait_for
from support.gatewayprocess import wait_gateway_authorized
from support.manifests import llmd

OUTAGE_S = 60


def test_the_same_operator_process_applies_a_change_made_after_a_60s_apiserver_outage(
    cluster, kubectl, operator, gateway
):
    kubectl.apply(json.dumps(llmd("outage", gpus=1, replicas=1)))
    kubectl.run("wait", "--for=condition=Ready", "llmd/outage", "--timeout=90s")
    pid = operator.proc.pid
    outage_from, gateway_from = operator.log_size(), gateway.log_size()
    cluster.stop_apiserver()
    try:
        time.sleep(OUTAGE_S)  # the outage itself: a fixed length, not a wait for anything
        assert operator.proc.poll() is None, f"the operator exited during the outage:\n{operator.log()[-3000:]}"
    finally:
        back_in = cluster.start_apiserver()
    kubectl.run("patch", "llmd", "outage", "--type=merge", "-p", '{"spec": {"replicas": 2}}')
    clock = Stopwatch()
    generation = kubectl.get("llmd", "outage")["metadata"]["generation"]
    wait_for(
        "the Deployment to follow the change",
        lambda: kubectl.get("deployment", "outage")["spec"]["replicas"] == 2,
        120,
        0.2,
    )
    applied = clock()
    # Ready needs the controller manager's and kwok's watches back too: client-go's reflectors
    # back off up to a minute after an outage this long, so this figure is mostly theirs.
    wait_for(
        "the LLMDeployment to be Ready for the new generation",
        lambda: (o := kubectl.get("llmd", "outage")) and reconciled(o) and o["metadata"]["generation"] == generation,
        180,
        0.2,
    )
    ready = clock()
    # A restarting apiserver refuses requests (403) until its RBAC caches are filled: the
    # operator's retries of those are not the chart's RBAC falling short.
    operator.excused.append((outage_from, operator.log_size()))
    wait_gateway_authorized(kubectl)
    gateway.excused.append((gateway_from, gateway.log_size()))  # the session's gateway, likewise
    print(
        f"\napiserver down {OUTAGE_S}s, back in {back_in:.1f}s; the same operator (pid {pid}) applied the change "
        f"{applied:.1f}s after it was made; Ready {ready:.1f}s after (the controller manager's reconnection)"
    )
    assert operator.proc.pid == pid and operator.proc.poll() is None
    assert kubectl.get("pdb", "outage") is not None
    assert condition(kubectl.get("llmd", "outage"), "Ready")["message"]

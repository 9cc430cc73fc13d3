"""What the real clients make of our status (issue 10): live LLMDeployments, driven into each
state on the local control plane with the operator running, judged by kstatus (cli-utils'
status.Compute, which Flux and kpt use) and by Argo CD (charts/llm-operator/argocd-health.lua
under gopher-lua, set up as Argo CD sets it up), both through hack/statuscheck.

The target, per state:
  kstatus   Current only where the model serves or is scaled to zero; Failed only where
            nothing but a change to the spec (or an impossible placement) can help:
            DoesNotFit, InvalidSharding, a placement no node can ever satisfy, a missing
            StorageClass; InProgress everywhere else.
  Argo CD   Healthy where kstatus says Current, Degraded exactly where it says Failed,
            Progressing everywhere else; never Suspended.

Each state is reached through facts on the children (a Job running, a pod unschedulable, a
ReplicaSet half rolled), never through the operator's own verdict, and judged once the
operator has seen the latest generation and its status has stayed put for a while, so that
the test speaks of the state and not of what today's status code says about it. The table
of verdicts is printed at the end of the module (pytest -s) and each failure names its row.
"""

from __future__ import annotations

import json
import time

import pytest

from support.cluster import condition, pods_of, ready
from support.manifests import CACHE_STORAGE_CLASS, CACHED_FACTS, llmd

H100 = {"product": "NVIDIA-H100-80GB-HBM3"}
NEVER_READY = {"pod-ready.stage.kwok.x-k8s.io/delay": "600s"}  # kwok leaves the pod unready this long
QUIET = 3  # seconds the status must stay unchanged before it is judged

SERVING = ("Current", "Healthy")
BLOCKED = ("Failed", "Degraded")
WORKING = ("InProgress", "Progressing")


# ---- reading the children's facts --------------------------------------------------------
def unschedulable(pod: dict) -> bool:
    return any(
        c["type"] == "PodScheduled" and c["status"] == "False" and c.get("reason") == "Unschedulable"
        for c in (pod.get("status") or {}).get("conditions") or []
    )


def deployment_status(kubectl, name: str) -> dict | None:
    d = kubectl.get("deployment", name)
    if d is None or (d["status"].get("observedGeneration") or 0) < d["metadata"]["generation"]:
        return None
    return {
        "spec": d["spec"]["replicas"],
        **{k: d["status"].get(k) or 0 for k in ("replicas", "readyReplicas", "updatedReplicas")},
    }


def judged(kubectl, name: str, facts, what: str, timeout: float = 90) -> dict:
    """The LLMDeployment once `facts()` holds on its children, the operator has written status
    for its latest generation, and that status has not changed for QUIET seconds."""
    deadline = time.monotonic() + timeout
    seen, since, last = None, time.monotonic(), None
    while time.monotonic() < deadline:
        obj = kubectl.get("llmd", name)
        held = facts()
        judged_now = obj and (obj.get("status") or {}).get("observedGeneration") == obj["metadata"]["generation"]
        version = obj["metadata"]["resourceVersion"] if held and judged_now else None
        if version is None or version != seen:
            seen, since = version, time.monotonic()
        elif time.monotonic() - since >= QUIET:
            return obj
        last = (held, (obj or {}).get("status"))
        time.sleep(0.3)
    raise AssertionError(f"timed out after {timeout}s waiting for {what}, judged and quiet; last seen: {last!r}")


# ---- driving an LLMDeployment into each state --------------------------------------------
def apply(kubectl, manifest: dict) -> None:
    kubectl.apply(json.dumps(manifest))


def serving(kubectl, name: str, **spec) -> dict:
    apply(kubectl, llmd(name, gpus=1, **spec))
    return judged(
        kubectl,
        name,
        lambda: (d := deployment_status(kubectl, name)) and d["readyReplicas"] == d["replicas"] == d["spec"] >= 1,
        "a ready replica",
    )


def state_created(kubectl, volume):
    """The object as the apiserver returns it from the create: no status yet."""
    out = kubectl.run("create", "-f", "-", "-o", "json", input=json.dumps(llmd("created", gpus=1))).stdout
    return json.loads(out)


def state_spec_changed(kubectl, volume):
    """A serving model just after a spec change, as the patch returns it: observedGeneration behind."""
    serving(kubectl, "changed")
    patch = json.dumps({"spec": {"podAnnotations": {"example.com/note": "changed"}}})
    return json.loads(kubectl.run("patch", "llmd", "changed", "--type=merge", "-p", patch, "-o", "json").stdout)


def state_downloading(kubectl, volume):
    volume("fetching-weights")
    apply(
        kubectl,
        llmd(
            "fetching",
            model={"id": CACHED_FACTS["modelId"]},
            gpus=1,
            cache={
                "enabled": True,
                "size": "100Gi",
                "storageClassName": CACHE_STORAGE_CLASS,
                "podAnnotations": {"pod-complete.stage.kwok.x-k8s.io/delay": "600s"},
            },
        ),
    )

    def job_running():
        jobs = kubectl.items("jobs", "app.kubernetes.io/instance=fetching")
        return (
            len(jobs) == 1
            and (jobs[0].get("status") or {}).get("active") == 1
            and kubectl.get("deployment", "fetching") is None
        )

    return judged(kubectl, "fetching", job_running, "the download Job running, no Deployment")


def state_loading(kubectl, volume):
    """The first replica is scheduled and starting, not yet ready (TGI loading the weights)."""
    apply(kubectl, llmd("loading", gpus=1, podAnnotations=NEVER_READY))
    return judged(
        kubectl,
        "loading",
        lambda: (
            (pods := pods_of(kubectl, "loading"))
            and len(pods) == 1
            and pods[0]["spec"].get("nodeName")
            and not ready(pods[0])
        ),
        "one scheduled pod, not ready",
    )


def state_rolling_out(kubectl, volume):
    """A serving model whose spec changed: the new pod starts beside the old, which serves."""
    serving(kubectl, "rolling")
    apply(kubectl, llmd("rolling", gpus=2, podAnnotations=NEVER_READY))
    return judged(
        kubectl,
        "rolling",
        lambda: (
            (d := deployment_status(kubectl, "rolling"))
            and d["spec"] == 1
            and d["replicas"] == 2
            and d["updatedReplicas"] == 1
            and d["readyReplicas"] == 1
        ),
        "one old replica serving and one new one starting",
    )


def state_ready(kubectl, volume):
    return serving(kubectl, "serving")


def state_scaled_to_zero(kubectl, volume):
    serving(kubectl, "idle")
    kubectl.run("scale", "llmd/idle", "--replicas=0")
    return judged(
        kubectl,
        "idle",
        lambda: (
            (d := deployment_status(kubectl, "idle"))
            and d["spec"] == 0
            and d["replicas"] == 0
            and not pods_of(kubectl, "idle")
        ),
        "the Deployment at 0 replicas, no pod",
    )


SLEEPS = {"mode": "operator", "minReplicas": 0, "maxReplicas": 2}


def state_asleep_at_min_replicas_0(kubectl, volume):
    apply(kubectl, llmd("asleep", gpus=1, replicas=0, autoscaling=SLEEPS))
    return judged(
        kubectl,
        "asleep",
        lambda: (
            (d := deployment_status(kubectl, "asleep"))
            and d["spec"] == 0
            and d["replicas"] == 0
            and not pods_of(kubectl, "asleep")
        ),
        "the Deployment at 0 replicas, no pod",
    )


def state_woken_by_a_request(kubectl, volume):
    """What the gateway does for a request to a model asleep at zero: replicas 1, its annotation."""
    apply(kubectl, llmd("woken", gpus=1, replicas=0, autoscaling=SLEEPS, podAnnotations=NEVER_READY))
    judged(kubectl, "woken", lambda: (d := deployment_status(kubectl, "woken")) and d["spec"] == 0, "asleep")
    kubectl.run(
        "patch",
        "llmd",
        "woken",
        "--subresource=scale",
        "--type=merge",
        "-p",
        '{"spec": {"replicas": 1}}',
        "--field-manager=llm-operator-gateway",
    )
    kubectl.run("annotate", "llmd", "woken", "llm-operator.io/woken-by-request-at=2026-01-01T00:00:00Z")
    return judged(
        kubectl,
        "woken",
        lambda: (
            (pods := pods_of(kubectl, "woken"))
            and len(pods) == 1
            and pods[0]["spec"].get("nodeName")
            and not ready(pods[0])
        ),
        "one scheduled pod, not ready",
    )


def no_deployment(kubectl, name: str):
    return lambda: kubectl.get("deployment", name) is None


def state_does_not_fit(kubectl, volume):
    apply(kubectl, llmd("too-big", model={"id": "test/llama-3-70b"}, gpus=1, gpu=H100))
    return judged(kubectl, "too-big", no_deployment(kubectl, "too-big"), "no Deployment")


def state_invalid_sharding(kubectl, volume):
    apply(kubectl, llmd("eight-ways", model={"id": "test/qwen2.5-7b"}, gpus=8))
    return judged(kubectl, "eight-ways", no_deployment(kubectl, "eight-ways"), "no Deployment")


def state_missing_storage_class(kubectl, volume):
    apply(
        kubectl, llmd("nostorage", gpus=1, cache={"enabled": True, "storageClassName": f"absent-{kubectl.namespace}"})
    )
    return judged(kubectl, "nostorage", no_deployment(kubectl, "nostorage"), "no Deployment")


def never_placed(kubectl, name: str):
    """No Deployment, or one whose every pod the scheduler refused."""
    return lambda: (
        kubectl.get("deployment", name) is None or ((pods := pods_of(kubectl, name)) and all(map(unschedulable, pods)))
    )


def state_more_gpus_than_any_node(kubectl, volume):
    apply(kubectl, llmd("huge", gpus=16))
    return judged(kubectl, "huge", never_placed(kubectl, "huge"), "its pod unschedulable")


def state_gpu_product_no_node_has(kubectl, volume):
    apply(kubectl, llmd("absent-gpu", gpus=1, gpu={"product": "NVIDIA-A100-SXM4-80GB"}))
    return judged(kubectl, "absent-gpu", never_placed(kubectl, "absent-gpu"), "no placement")


def state_waiting_for_free_gpus(kubectl, volume):
    """Two H100 nodes of 8: two replicas of 8 GPUs serve, the third waits for a node to free up."""
    apply(kubectl, llmd("busy", gpus=8, replicas=3, gpu=H100))

    def some_serve_one_waits():
        pods = pods_of(kubectl, "busy")
        return any(map(ready, pods)) and any(map(unschedulable, pods))

    return judged(kubectl, "busy", some_serve_one_waits, "a ready replica and an unschedulable one")


STATES = {
    "created": (state_created, WORKING),
    "spec changed": (state_spec_changed, WORKING),
    "downloading": (state_downloading, WORKING),
    "loading": (state_loading, WORKING),
    "rolling out": (state_rolling_out, WORKING),
    "ready": (state_ready, SERVING),
    "scaled to zero": (state_scaled_to_zero, SERVING),
    "asleep: minReplicas 0": (state_asleep_at_min_replicas_0, SERVING),
    "woken by a request": (state_woken_by_a_request, WORKING),
    "does not fit": (state_does_not_fit, BLOCKED),
    "invalid sharding": (state_invalid_sharding, BLOCKED),
    "missing StorageClass": (state_missing_storage_class, BLOCKED),
    "impossible: 16 GPUs": (state_more_gpus_than_any_node, BLOCKED),
    "impossible: no such GPU": (state_gpu_product_no_node_has, BLOCKED),
    "temporary: GPUs busy": (state_waiting_for_free_gpus, WORKING),
}


# ---- the verdicts ----------------------------------------------------------------------
def row(state: str, obj: dict, verdict: dict, want: tuple[str, str]) -> str:
    st = obj.get("status") or {}
    conds = " ".join(f"{t}={condition(obj, t).get('status', '-')}" for t in ("Ready", "Reconciling", "Stalled"))
    reason = condition(obj, "Ready").get("reason", "-")
    ks, argo = verdict["kstatus"], verdict["argocd"]
    mark = "ok" if (ks["status"], argo["status"]) == want else f"WANT {want[0]}/{want[1]}"
    return (
        f"{state:<24} {st.get('phase', '-'):<14} {reason:<22} {conds:<44} "
        f"{ks['status']:<11} {argo['status']:<12} {mark}\n{'':<24} kstatus: {ks['message']!r}\n"
        f"{'':<24} argocd:  {argo['message']!r}"
    )


HEADER = f"{'state':<24} {'phase':<14} {'Ready reason':<22} {'conditions':<44} {'kstatus':<11} {'argocd':<12} target"


@pytest.fixture(scope="module")
def table():
    rows: dict[str, str] = {}
    yield rows
    if rows:
        order = [s for s in STATES if s in rows]
        print("\n\nWhat kstatus and Argo CD make of each state\n" + HEADER + "\n" + "\n".join(rows[s] for s in order))


@pytest.mark.usefixtures("operator")
@pytest.mark.parametrize("state", list(STATES), ids=[s.replace(" ", "-").replace(":", "") for s in STATES])
def test_clients_read_each_state_as_intended(kubectl, volume, client_verdicts, table, state):  # noqa: F811
    drive, want = STATES[state]
    obj = drive(kubectl, volume)
    (verdict,) = client_verdicts([obj])
    line = row(state, obj, verdict, want)
    table[state] = line
    print("\n" + HEADER + "\n" + line)
    assert (verdict["kstatus"]["status"], verdict["argocd"]["status"]) == want, (
        f"kstatus and Argo CD on '{state}' should be {want[0]} / {want[1]}:\n{HEADER}\n{line}"
    )


# ---- the engines themselves: statuscheck runs them as the clients do -----------------------
def test_kstatus_reads_generation_and_the_two_conditions(client_verdicts):
    """Not our objects: cli-utils' own rules, so a statuscheck that judged by itself would fail."""
    base = {
        "apiVersion": "llm-operator.io/v1alpha1",
        "kind": "LLMDeployment",
        "metadata": {"name": "m", "generation": 2},
    }
    stalled = {
        **base,
        "status": {
            "observedGeneration": 2,
            "conditions": [
                {"type": "Ready", "status": "False", "reason": "X", "message": "no"},
                {"type": "Stalled", "status": "True", "reason": "X", "message": "cannot"},
            ],
        },
    }
    behind = {**base, "status": {"observedGeneration": 1, "conditions": [{"type": "Ready", "status": "True"}]}}
    deployment = {
        "apiVersion": "apps/v1",
        "kind": "Deployment",
        "metadata": {"name": "d", "generation": 1},
        "spec": {"replicas": 2},
        "status": {
            "observedGeneration": 1,
            "replicas": 2,
            "updatedReplicas": 2,
            "readyReplicas": 1,
            "availableReplicas": 1,
        },
    }
    got = [v["kstatus"] for v in client_verdicts([base, stalled, behind, deployment])]
    assert got == [
        {"status": "Current", "message": "Resource is current"},  # no status at all: kstatus assumes current
        {"status": "Failed", "message": "cannot"},
        {"status": "InProgress", "message": "LLMDeployment generation is 2, but latest observed generation is 1"},
        {"status": "InProgress", "message": "Available: 1/2"},
    ]


def test_argo_health_scripts_get_argo_cds_libraries_only(client_verdicts, tmp_path):
    """Argo CD opens base, table, package and a safe os, not string or math: a script that
    needs them works under a full Lua and fails in Argo CD, and here."""
    obj = {"apiVersion": "v1", "kind": "ConfigMap", "metadata": {"name": "c", "generation": 3}}
    cases = {
        "string.lua": 'return {status = string.upper("healthy")}',
        "number.lua": 'return {status = "Healthy", message = "generation " .. obj.metadata.generation}',
        "invalid.lua": 'return {status = "Fine"}',
        "table.lua": 'local t = {} table.insert(t, "Degraded") return {status = t[1], message = tostring(#t)}',
    }
    got = {}
    for name, script in cases.items():
        (tmp_path / name).write_text(script)
        (verdict,) = client_verdicts([obj], health=tmp_path / name)
        got[name] = verdict["argocd"]
    assert (
        got["string.lua"]["status"] == "Unknown"
        and "attempt to index a non-table object(nil) with key 'upper'" in got["string.lua"]["message"]
    ), got["string.lua"]
    assert got["number.lua"] == {"status": "Healthy", "message": "generation 3"}
    assert got["invalid.lua"] == {"status": "Unknown", "message": "Lua returned an invalid health status"}
    assert got["table.lua"] == {"status": "Degraded", "message": "1"}


def test_a_kubectl_list_is_judged_item_by_item(client_verdicts):
    """`kubectl get -o json` gives a List: each item gets its own line, in order."""
    items = [{"apiVersion": "v1", "kind": "ConfigMap", "metadata": {"name": n, "namespace": "x"}} for n in ("a", "b")]
    got = client_verdicts([{"apiVersion": "v1", "kind": "List", "items": items}, items[0]])
    assert [(v["kind"], v["name"]) for v in got] == [("ConfigMap", "a"), ("ConfigMap", "b"), ("ConfigMap", "a")]

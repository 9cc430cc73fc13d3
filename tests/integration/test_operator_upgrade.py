"""An operator upgrade restarts no serving pod. The serving workload is made as an older
operator made it (while this one is stopped): a template rendered differently from the same
spec, or one from before the revision label. The operator, started again, leaves the
template and its pods alone; it still puts back a hand edit (to the template written), and a
change of the spec brings its own rendering."""

from __future__ import annotations

import copy
import json

import pytest

from llm_operator.decide.compare import is_subset
from llm_operator.decide.manifests import (
    HASH_ANNOTATION,
    TEMPLATE_HASH_LABEL,
    TEMPLATE_INPUTS_ANNOTATION,
    WRITTEN_TEMPLATE_ANNOTATION,
    template_hash,
)
from support.cluster import condition, pods_of, wait_for, wait_for_other_namespaces_to_go
from support.manifests import llmd

pytestmark = pytest.mark.usefixtures("operator")

OLDER = {"name": "RENDERED_BY", "value": "an older operator"}
STALE_HASH = "written-by-an-older-operator"
LLAMA_405B = "meta-llama/Meta-Llama-3.1-405B"
H100 = "NVIDIA-H100-80GB-HBM3"


def _pod_templates(kind: str, part: dict) -> list[dict]:
    return [part] if kind == "Deployment" else [part["leaderTemplate"], part["workerTemplate"]]


def _older_rendering(kind: str, part: dict) -> dict:
    """The template part as an operator that renders the same inputs differently wrote it: an
    extra variable in the engine's environment, the revision label a digest of the result."""
    out = copy.deepcopy(part)
    templates = _pod_templates(kind, out)
    for t in templates:
        t["metadata"]["labels"].pop(TEMPLATE_HASH_LABEL)
        t["spec"]["containers"][0]["env"].append(dict(OLDER))
    revision = template_hash(templates[0] if kind == "Deployment" else {"leader": templates[0], "worker": templates[1]})
    for t in templates:
        t["metadata"]["labels"][TEMPLATE_HASH_LABEL] = revision
    return out


def _before_the_label(kind: str, part: dict) -> dict:
    """The template part as the operator before the revision label wrote it."""
    out = copy.deepcopy(part)
    for t in _pod_templates(kind, out):
        t["metadata"]["labels"].pop(TEMPLATE_HASH_LABEL)
    return out


def _field(kind: str) -> str:
    return "template" if kind == "Deployment" else "leaderWorkerTemplate"


def _spec_written(kind: str, live: dict, part: dict) -> dict:
    """The workload's spec as the operator writes it (none of the API's defaults), with `part`."""
    if kind == "Deployment":
        keep = ("selector", "strategy", "revisionHistoryLimit", "progressDeadlineSeconds", "replicas")
        return {**{k: live[k] for k in keep}, "template": part}
    return {
        "replicas": live["replicas"],
        "startupPolicy": "LeaderCreated",
        "rolloutStrategy": {
            "type": "RollingUpdate",
            "rollingUpdateConfiguration": {"maxUnavailable": 0, "maxSurge": 1},
        },
        "leaderWorkerTemplate": part,
    }


def _remade_as_older(kubectl, kind: str, resource: str, name: str, older) -> dict:
    """Delete the workload the operator made (its pods with it) and make it again as an older
    operator made it: `older(kind, part)` gives that operator's template part and whether it
    recorded what the template was rendered from (the annotations this operator reads)."""
    live = kubectl.get(resource, name)
    written = json.loads(live["metadata"]["annotations"][WRITTEN_TEMPLATE_ANNOTATION])
    part, record = older(kind, written)
    annotations = {HASH_ANNOTATION: STALE_HASH}
    if record:
        annotations[TEMPLATE_INPUTS_ANNOTATION] = live["metadata"]["annotations"][TEMPLATE_INPUTS_ANNOTATION]
        annotations[WRITTEN_TEMPLATE_ANNOTATION] = json.dumps(part)
    body = {
        "apiVersion": live["apiVersion"],
        "kind": kind,
        "metadata": {
            "name": name,
            "namespace": kubectl.namespace,
            "labels": live["metadata"]["labels"],
            "annotations": annotations,
            "ownerReferences": live["metadata"]["ownerReferences"],
        },
        "spec": _spec_written(kind, live["spec"], part),
    }
    kubectl.run("delete", resource, name, "--cascade=foreground", "--wait=true", "--timeout=60s")
    wait_for(f"{name}'s pods to go", lambda: not pods_of(kubectl, name), 60)
    kubectl.run("create", "--field-manager=llm-operator", "-f", "-", input=json.dumps(body))
    return part


def _settled_pods(kubectl, name: str, count: int) -> dict[str, str]:
    """Name -> uid of the model's `count` pods, once all are ready and no other is left."""

    def all_ready():
        pods = pods_of(kubectl, name)
        ok = len(pods) == count and all(condition(p, "Ready").get("status") == "True" for p in pods)
        return {p["metadata"]["name"]: p["metadata"]["uid"] for p in pods} if ok else None

    return wait_for(f"{count} ready pods of {name}", all_ready, 90)


def _reconciled(kubectl, resource: str, name: str) -> dict:
    """The workload once the operator has written it (its hash is no longer the older one's),
    with the LLMDeployment Ready."""
    live = wait_for(
        f"the operator to take over {resource}/{name}",
        lambda: (
            (w := kubectl.get(resource, name)) and w["metadata"]["annotations"].get(HASH_ANNOTATION) != STALE_HASH and w
        ),
        60,
    )
    kubectl.run("wait", "--for=condition=Ready", f"llmd/{name}", "--timeout=60s")
    return live


def _upgrade(operator, kubectl, kind: str, resource: str, name: str, pods: int, older) -> tuple[dict, dict]:
    """Stop the operator, make the workload as an older one made it, start the operator: the
    workload (before and after) once it took over, checked to restart nothing."""
    operator.stop()
    try:
        part = _remade_as_older(kubectl, kind, resource, name, older)
        uids = _settled_pods(kubectl, name, pods)
        before = kubectl.get(resource, name)
    finally:
        operator.start()
    after = _reconciled(kubectl, resource, name)
    # Its controller has seen the write (a Deployment's generation counts annotation changes too).
    wait_for(
        f"{resource}/{name}'s controller to observe the write",
        lambda: (
            (w := kubectl.get(resource, name))["status"].get("observedGeneration", 0) >= w["metadata"]["generation"]
        ),
        30,
    )
    assert after["metadata"]["uid"] == before["metadata"]["uid"]
    assert after["spec"][_field(kind)] == before["spec"][_field(kind)]
    assert is_subset(part, before["spec"][_field(kind)]), "made as the older operator made it"
    assert {p["metadata"]["name"]: p["metadata"]["uid"] for p in pods_of(kubectl, name)} == uids
    assert json.loads(after["metadata"]["annotations"][WRITTEN_TEMPLATE_ANNOTATION]) == part
    return before, after


def _env(template: dict) -> dict[str, str]:
    return {e["name"]: e.get("value", "") for e in template["spec"]["containers"][0].get("env") or []}


def test_a_deployment_rendered_by_an_older_operator_keeps_its_pods_and_is_still_repaired(operator, kubectl):
    name = "upgraded"
    kubectl.apply(json.dumps(llmd(name, model={"id": "test/mistral-7b"}, gpus=1, replicas=2)))
    kubectl.run("wait", "--for=condition=Ready", f"llmd/{name}", "--timeout=60s")

    _, after = _upgrade(
        operator, kubectl, "Deployment", "deployment", name, 2, lambda k, p: (_older_rendering(k, p), True)
    )
    kept = after["spec"]["template"]
    assert _env(kept)["RENDERED_BY"] == OLDER["value"]
    llmd_status = kubectl.get("llmd", name)["status"]
    assert llmd_status["ready"] == "2/2", "its pods count as the current revision"

    # A hand edit is put back, to the template written (not to this operator's rendering).
    env = kept["spec"]["containers"][0]["env"]
    index = next(i for i, e in enumerate(env) if e["name"] == "RENDERED_BY")
    kubectl.run(
        "patch",
        "deployment",
        name,
        "--type=json",
        "-p",
        json.dumps(
            [{"op": "replace", "path": f"/spec/template/spec/containers/0/env/{index}/value", "value": "by hand"}]
        ),
    )
    wait_for(
        "the hand edit to be put back",
        lambda: _env(kubectl.get("deployment", name)["spec"]["template"]).get("RENDERED_BY") == OLDER["value"],
        30,
    )
    repaired = kubectl.get("deployment", name)["spec"]["template"]
    assert repaired == kept

    # A change of the spec: this operator's rendering, and the pods roll to it.
    kubectl.run("patch", "llmd", name, "--type=merge", "-p", json.dumps({"spec": {"podAnnotations": {"team": "a"}}}))
    wait_for(
        "the new rendering",
        lambda: (
            "RENDERED_BY" not in _env(t := kubectl.get("deployment", name)["spec"]["template"])
            and t["metadata"].get("annotations", {}).get("team") == "a"
        ),
        30,
    )
    kubectl.run("wait", "--for=condition=Ready", f"llmd/{name}", "--timeout=60s")


def test_a_deployment_made_before_the_revision_label_keeps_its_pods(operator, kubectl):
    name = "unlabelled"
    kubectl.apply(json.dumps(llmd(name, model={"id": "test/mistral-7b"}, gpus=1, replicas=1)))
    kubectl.run("wait", "--for=condition=Ready", f"llmd/{name}", "--timeout=60s")

    _, after = _upgrade(
        operator, kubectl, "Deployment", "deployment", name, 1, lambda k, p: (_before_the_label(k, p), False)
    )
    assert TEMPLATE_HASH_LABEL not in after["spec"]["template"]["metadata"]["labels"]
    assert TEMPLATE_INPUTS_ANNOTATION in after["metadata"]["annotations"], "recorded from now on"
    assert kubectl.get("llmd", name)["status"]["ready"] == "1/1"


@pytest.fixture
def h100s_free(kubectl):
    """Both H100 nodes whole: other tests' pods (in namespaces being deleted) gone first."""
    wait_for_other_namespaces_to_go(kubectl)


def test_a_leaderworkerset_rendered_by_an_older_operator_keeps_its_group(operator, kubectl, h100s_free):
    name = "upgraded-group"
    spec = {"model": {"id": LLAMA_405B}, "engine": {"name": "vllm"}, "gpus": 8, "gpu": {"product": H100}, "nodes": 2}
    kubectl.apply(json.dumps(llmd(name, **spec)))
    kubectl.run("wait", "--for=condition=Ready", f"llmd/{name}", "--timeout=90s")

    _, after = _upgrade(
        operator,
        kubectl,
        "LeaderWorkerSet",
        "leaderworkersets",
        name,
        2,
        lambda k, p: (_older_rendering(k, p), True),
    )
    group = after["spec"]["leaderWorkerTemplate"]
    assert _env(group["leaderTemplate"])["RENDERED_BY"] == OLDER["value"]
    assert _env(group["workerTemplate"])["RENDERED_BY"] == OLDER["value"]
    assert kubectl.get("llmd", name)["status"]["ready"] == "1/1"

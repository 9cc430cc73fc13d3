"""Hand edits to the children: what the operator sets is put back, each field timed; what
it never sets (another field manager's) is kept, per server-side apply.

tests/integration/test_operator.py covers a deleted Deployment and the Service's port;
these are the other fields the operator owns."""

from __future__ import annotations

import json

import pytest
from faultkit import Stopwatch, reconciled

from support.cluster import container, wait_for
from support.manifests import llmd

pytestmark = pytest.mark.usefixtures("operator")

IMAGE = "ghcr.io/huggingface/text-generation-inference:3.3.7"


# (what is edited, the JSON patch on the child, how to read the field back, the operator's value)
EDITS = [
    (
        "Deployment image",
        "deployment",
        [{"op": "replace", "path": "/spec/template/spec/containers/0/image", "value": "registry.invalid/other:1"}],
        lambda k: container(k, "drift")["image"],
        IMAGE,
    ),
    (
        "Deployment args",
        "deployment",
        [{"op": "add", "path": "/spec/template/spec/containers/0/args/-", "value": "--disable-custom-kernels"}],
        lambda k: "--disable-custom-kernels" in container(k, "drift")["args"],
        False,
    ),
    (
        "Deployment GPU limit",
        "deployment",
        [{"op": "replace", "path": "/spec/template/spec/containers/0/resources/limits/nvidia.com~1gpu", "value": "2"}],
        lambda k: container(k, "drift")["resources"]["limits"]["nvidia.com/gpu"],
        "1",
    ),
    (
        "Deployment replicas",
        "deployment",
        [{"op": "replace", "path": "/spec/replicas", "value": 3}],
        lambda k: k.get("deployment", "drift")["spec"]["replicas"],
        1,
    ),
    (
        "Service type",
        "service",
        [{"op": "replace", "path": "/spec/type", "value": "NodePort"}],
        lambda k: k.get("service", "drift")["spec"]["type"],
        "ClusterIP",
    ),
    (
        "Service port",
        "service",
        [{"op": "replace", "path": "/spec/ports/0/port", "value": 8080}],
        lambda k: k.get("service", "drift")["spec"]["ports"][0]["port"],
        80,
    ),
]


def test_every_field_the_operator_sets_is_put_back_after_a_hand_edit(kubectl):
    kubectl.apply(json.dumps(llmd("drift", gpus=1, replicas=1)))
    kubectl.run("wait", "--for=condition=Ready", "llmd/drift", "--timeout=90s")
    times = {}
    for what, kind, patch, read, want in EDITS:
        assert read(kubectl) == want, f"{what} before the edit: {read(kubectl)!r}"
        kubectl.run("patch", kind, "drift", "--type=json", "-p", json.dumps(patch))
        clock = Stopwatch()
        wait_for(f"{what} to be put back to {want!r}", lambda read=read, want=want: read(kubectl) == want, 60, 0.1)
        times[what] = clock()
    print("\nrepair times: " + ", ".join(f"{what} {secs:.1f}s" for what, secs in times.items()))
    kubectl.run("wait", "--for=condition=Ready", "llmd/drift", "--timeout=90s")


def test_fields_the_operator_never_sets_are_kept(kubectl):
    """kubectl set resources (CPU and memory requests: the spec sets none) and an extra pod
    label belong to another field manager: the operator neither removes nor fights them."""
    kubectl.apply(json.dumps(llmd("kept", gpus=1, replicas=1)))
    kubectl.run("wait", "--for=condition=Ready", "llmd/kept", "--timeout=90s")
    kubectl.run("set", "resources", "deployment", "kept", "--requests=cpu=2,memory=8Gi")
    kubectl.run(
        "patch",
        "deployment",
        "kept",
        "--type=merge",
        "-p",
        '{"spec": {"template": {"metadata": {"labels": {"team": "search"}}}}}',
    )
    # An owned field edited alongside is put back: the operator did look at this Deployment.
    kubectl.run(
        "patch",
        "deployment",
        "kept",
        "--type=json",
        "-p",
        json.dumps(
            [{"op": "replace", "path": "/spec/template/spec/containers/0/image", "value": "registry.invalid/other:1"}]
        ),
    )
    wait_for("the image to be put back", lambda: container(kubectl, "kept")["image"] == IMAGE, 60, 0.1)
    wait_for("the LLMDeployment to be Ready again", lambda: reconciled(kubectl.get("llmd", "kept")), 90, 0.5)
    deployment = kubectl.get("deployment", "kept")
    template = deployment["spec"]["template"]
    print(
        f"\nkept: requests {template['spec']['containers'][0]['resources'].get('requests')}, "
        f"label team={template['metadata']['labels'].get('team')}"
    )
    assert template["spec"]["containers"][0]["resources"]["requests"] == {"cpu": "2", "memory": "8Gi"}
    assert template["metadata"]["labels"]["team"] == "search"
    assert template["spec"]["containers"][0]["resources"]["limits"]["nvidia.com/gpu"] == "1"

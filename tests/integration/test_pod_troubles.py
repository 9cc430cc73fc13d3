"""Pods that cannot start, and models that do not exist (issue 11), on the local control plane.

The container states are the kubelet's; kwok has no kubelet that pulls images, reads
Secrets or runs containers, so each state is driven by the pod annotations that the
pod-container-waiting stage in hack/kwok/stages.yaml turns into the containerStatuses a
kubelet would report. A missing model or revision is what the Hub stand-in answers (a
repository it names as missing, a revision no repository has), and an unreachable Hub is a
connection it drops.
"""

from __future__ import annotations

import json

import pytest

from support.cluster import condition, wait_for
from support.manifests import llmd

pytestmark = pytest.mark.usefixtures("operator")

STATE = "pod-container.stage.kwok.x-k8s.io/"


def container_state(reason: str, message: str = "", restarts: int = 0, last: dict | None = None) -> dict:
    """Pod annotations that make kwok report the engine container waiting with `reason`."""
    out = {STATE + "waiting-reason": reason, STATE + "waiting-message": message, STATE + "restart-count": str(restarts)}
    for key, value in (last or {}).items():
        out[STATE + "last-" + key] = str(value)
    return out


def stalled_with(kubectl, name: str, reason: str, timeout: float = 40) -> dict:
    """The LLMDeployment once it is Stalled for `reason`, for its latest generation."""

    def check():
        obj = kubectl.get("llmd", name)
        st = (obj or {}).get("status") or {}
        return (
            obj
            if (
                condition(obj, "Stalled").get("reason") == reason
                and condition(obj, "Stalled")["status"] == "True"
                and st.get("observedGeneration") == obj["metadata"]["generation"]
            )
            else None
        )

    return wait_for(f"{name} Stalled with reason {reason}", check, timeout)


def warnings(kubectl, name: str) -> list[tuple[str, str]]:
    return [
        (e["reason"], e["message"])
        for e in kubectl.items("events")
        if e["involvedObject"]["name"] == name and e["type"] == "Warning"
    ]


def test_a_missing_secret_is_named(kubectl):
    """spec.model.tokenSecretRef names a Secret that does not exist. kwok does not read
    Secrets (the pod would turn ready), so the kubelet's CreateContainerConfigError is
    driven by annotation, with the message a kubelet writes."""
    spec = dict(
        model={"id": "org/model", "tokenSecretRef": {"name": "missing-secret", "key": "token"}},
        gpus=1,
        podAnnotations=container_state("CreateContainerConfigError", 'secret "missing-secret" not found'),
    )
    kubectl.apply(json.dumps(llmd("nosecret", **spec)))
    obj = stalled_with(kubectl, "nosecret", "CreateContainerConfigError")
    ready = condition(obj, "Ready")
    assert ready["status"] == "False" and ready["reason"] == "CreateContainerConfigError"
    assert "Secret missing-secret does not exist in this namespace" in ready["message"]
    assert obj["status"]["phase"] == "Failed" and condition(obj, "Reconciling")["status"] == "False"
    wait_for(
        "a Warning Event naming the Secret",
        lambda: any(
            r == "CreateContainerConfigError" and "missing-secret" in m for r, m in warnings(kubectl, "nosecret")
        ),
        20,
    )


def test_a_crash_loop_says_the_restarts_and_the_last_exit(kubectl):
    last = {"reason": "Error", "exit-code": 1, "message": "torch.cuda.OutOfMemoryError: CUDA out of memory"}
    kubectl.apply(
        json.dumps(
            llmd(
                "crashing",
                gpus=1,
                podAnnotations=container_state(
                    "CrashLoopBackOff", "back-off 5m0s restarting failed container=engine", restarts=6, last=last
                ),
            )
        )
    )
    obj = stalled_with(kubectl, "crashing", "CrashLoopBackOff")
    message = condition(obj, "Ready")["message"]
    assert "keeps crashing (CrashLoopBackOff, 6 restarts)" in message
    assert "exit code 1, saying: torch.cuda.OutOfMemoryError: CUDA out of memory" in message


def test_out_of_memory_names_the_memory_limit(kubectl):
    kubectl.apply(
        json.dumps(
            llmd(
                "oom",
                gpus=1,
                engine={"resources": {"limits": {"memory": "48Gi"}}},
                podAnnotations=container_state(
                    "CrashLoopBackOff", "back-off 40s", restarts=2, last={"reason": "OOMKilled", "exit-code": 137}
                ),
            )
        )
    )
    obj = stalled_with(kubectl, "oom", "OOMKilled")
    message = condition(obj, "Ready")["message"]
    assert (
        "ran out of memory and was killed (OOMKilled, exit code 137; 2 restarts) with its memory limit of 48Gi"
        in message
    )


def test_an_image_that_cannot_be_pulled_is_named(kubectl):
    image = "registry.invalid/tgi:nope"
    kubectl.apply(
        json.dumps(
            llmd(
                "nopull",
                gpus=1,
                engine={"image": image},
                podAnnotations=container_state("ImagePullBackOff", f'Back-off pulling image "{image}"'),
            )
        )
    )
    obj = stalled_with(kubectl, "nopull", "ImagePullBackOff")
    assert f"cannot pull image {image} (ImagePullBackOff)" in condition(obj, "Ready")["message"]


def test_a_model_the_hub_does_not_have_deploys_nothing(kubectl):
    kubectl.apply(json.dumps(llmd("nomodel", model={"id": "test/no-such-model"}, gpus=1)))
    obj = stalled_with(kubectl, "nomodel", "ModelNotFound")
    ready = condition(obj, "Ready")
    assert (
        ready["reason"] == "ModelNotFound"
        and "test/no-such-model was not found on the Hugging Face Hub" in ready["message"]
    )
    assert "Nothing is deployed for test/no-such-model@main" in ready["message"]
    # Status is written after the decision's writes: had a Deployment been made, it would be here.
    assert kubectl.get("deployment", "nomodel") is None
    wait_for(
        "a Warning Event ModelNotFound", lambda: any(r == "ModelNotFound" for r, _ in warnings(kubectl, "nomodel")), 20
    )


def test_a_revision_the_hub_does_not_have_deploys_nothing(kubectl):
    kubectl.apply(json.dumps(llmd("norev", model={"id": "test/mistral-7b", "revision": "no-such-revision"}, gpus=1)))
    obj = stalled_with(kubectl, "norev", "RevisionNotFound")
    assert "Revision 'no-such-revision' of test/mistral-7b does not exist" in condition(obj, "Ready")["message"]
    assert kubectl.get("deployment", "norev") is None


def test_a_changed_model_that_does_not_exist_keeps_the_old_one_serving(kubectl):
    kubectl.apply(json.dumps(llmd("swap", model={"id": "test/mistral-7b"}, gpus=1)))
    kubectl.run("wait", "--for=condition=Ready", "llmd/swap", "--timeout=60s")
    before = kubectl.get("deployment", "swap")["metadata"]["resourceVersion"]
    kubectl.run("patch", "llmd", "swap", "--type=merge", "-p", '{"spec": {"model": {"id": "test/no-such-model"}}}')
    obj = stalled_with(kubectl, "swap", "ModelNotFound")
    assert "The previous version keeps serving with 1 ready replica." in condition(obj, "Ready")["message"]
    assert kubectl.get("deployment", "swap")["metadata"]["resourceVersion"] == before


def test_an_unreachable_hub_goes_on_with_the_specs_gpus(kubectl):
    kubectl.apply(json.dumps(llmd("offline", model={"id": "test/unreachable"}, gpus=2)))
    kubectl.run("wait", "--for=condition=Ready", "llmd/offline", "--timeout=60s")
    obj = kubectl.get("llmd", "offline")
    assert obj["status"]["gpus"] == 2 and obj["status"]["plan"]["known"] is False
    assert "Could not reach the Hugging Face Hub" in obj["status"]["plan"]["reason"]
    assert condition(obj, "Stalled")["status"] == "False"
    assert kubectl.get("deployment", "offline") is not None

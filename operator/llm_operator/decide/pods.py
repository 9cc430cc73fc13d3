"""Pure: what the pods say of a serving workload: pods the scheduler cannot place, containers
the kubelet fails to run (a crash loop, an image it cannot pull, a Secret that is not
there, an OOM kill), and how many pods of the current template revision are ready."""

from __future__ import annotations

import re
from dataclasses import dataclass
from typing import Any

from llm_common.words import plural
from llm_operator.decide.manifests import LWS_GROUP_INDEX_LABEL, ROLE_LABEL, TEMPLATE_HASH_LABEL, WORKER


def active_pods(pods: tuple[dict[str, Any], ...]) -> list[dict[str, Any]]:
    return [p for p in pods if not (p.get("metadata") or {}).get("deletionTimestamp")]


def pod_condition(pod: dict[str, Any], kind: str) -> dict[str, Any]:
    return next((c for c in (pod.get("status") or {}).get("conditions") or [] if c.get("type") == kind), {})


def unschedulable_pods(pods: tuple[dict[str, Any], ...]) -> list[dict[str, Any]]:
    """The pods the scheduler has said it cannot place (not those being deleted)."""
    return [
        p
        for p in active_pods(pods)
        if pod_condition(p, "PodScheduled").get("status") == "False"
        and pod_condition(p, "PodScheduled").get("reason") == "Unschedulable"
    ]


def unschedulable_message(pods: tuple[dict[str, Any], ...]) -> str | None:
    """The scheduler's own message for the first pod it could not place."""
    for pod in unschedulable_pods(pods):
        return pod_condition(pod, "PodScheduled").get("message") or "The scheduler could not place a pod."
    return None


def pod_templates(workload: dict[str, Any] | None) -> list[dict[str, Any]]:
    """The pod templates of a live Deployment (one) or LeaderWorkerSet (leader's, worker's)."""
    spec = (workload or {}).get("spec") or {}
    group = spec.get("leaderWorkerTemplate") or {}
    return [t for t in (spec.get("template"), group.get("leaderTemplate"), group.get("workerTemplate")) if t]


def template_revision(deployment: dict[str, Any]) -> str | None:
    """The revision of the live workload's pod template (None: made before the label existed)."""
    templates = pod_templates(deployment)
    return ((templates[0].get("metadata") or {}).get("labels") or {}).get(TEMPLATE_HASH_LABEL) if templates else None


def ready_of_revision(pods: tuple[dict[str, Any], ...], revision: str, group_size: int = 1) -> int:
    """Ready replicas that run this revision of the pod template: pods, or groups (by LWS's
    group-index label) whose `group_size` pods are all ready."""
    ready = [
        p
        for p in active_pods(pods)
        if _labels(p).get(TEMPLATE_HASH_LABEL) == revision and pod_condition(p, "Ready").get("status") == "True"
    ]
    if group_size <= 1:
        return len(ready)
    groups: dict[str, int] = {}
    for p in ready:
        index = _labels(p).get(LWS_GROUP_INDEX_LABEL)
        if index is not None:
            groups[index] = groups.get(index, 0) + 1
    return sum(1 for n in groups.values() if n >= group_size)


def _labels(pod: dict[str, Any]) -> dict[str, Any]:
    return (pod.get("metadata") or {}).get("labels") or {}


def group_words(pod: dict[str, Any]) -> str:
    """Which pod of which group, for a message about a multi-node replica."""
    role = "a worker" if _labels(pod).get(ROLE_LABEL) == WORKER else "the leader"
    index = _labels(pod).get(LWS_GROUP_INDEX_LABEL)
    return f"pod {_pod_name(pod)} ({role} of group {index if index is not None else '?'})"


# A container restarting this often has shown it will not come up by itself.
CRASH_LOOP_STALLED_RESTARTS = 3
# Waiting reasons the kubelet gives a container that will not start without a change.
_CONFIG_ERRORS = ("CreateContainerConfigError", "CreateContainerError", "InvalidImageName")
_PULL_ERRORS = ("ImagePullBackOff", "ErrImagePull")


@dataclass(frozen=True)
class ContainerTrouble:
    """Why a pod of the current revision cannot start, said so a person can act on it."""

    reason: str  # the kubelet's word: CreateContainerConfigError, ImagePullBackOff, CrashLoopBackOff, OOMKilled
    message: str
    stalled: bool  # no wait can heal it


def _pod_name(pod: dict[str, Any]) -> str:
    name: str = (pod.get("metadata") or {}).get("name", "a pod")
    return name


def _missing_secret(message: str) -> str:
    """The kubelet's CreateContainerConfigError message, with what to create or fix."""
    found = re.search(r'secret "([^"]+)" not found', message)
    if found:
        return (
            f"Secret {found.group(1)} does not exist in this namespace: create it, or fix the reference to it "
            "(spec.model.tokenSecretRef, spec.engine.env)."
        )
    found = re.search(r"couldn't find key (\S+) in Secret (\S+)", message)
    if found:
        return (
            f"Secret {found.group(2)} has no key {found.group(1)}: add the key, or fix the reference to it "
            "(spec.model.tokenSecretRef.key, spec.engine.env)."
        )
    return "Fix what the kubelet names (a Secret, a ConfigMap or a key in them)."


def _memory_limit(deployment: dict[str, Any] | None, container: str) -> str | None:
    for template in pod_templates(deployment):
        for c in (template.get("spec") or {}).get("containers") or []:
            if c.get("name") == container:
                return ((c.get("resources") or {}).get("limits") or {}).get("memory")
    return None


def _ended(terminated: dict[str, Any]) -> str:
    """How a container last ended: exit code and the tail of its termination message."""
    text = f"exit code {terminated.get('exitCode', '?')}"
    message = (terminated.get("message") or "").strip()
    return text + (f", saying: {message[-300:]}" if message else "")


def container_trouble(pod: dict[str, Any], deployment: dict[str, Any] | None = None) -> ContainerTrouble | None:
    """Why this pod's containers cannot start (from the kubelet's container states), or None."""
    for cs in (pod.get("status") or {}).get("containerStatuses") or []:
        name = cs.get("name", "the container")
        where = f"Pod {_pod_name(pod)}, container {name}"
        waiting = (cs.get("state") or {}).get("waiting") or {}
        last = (cs.get("lastState") or {}).get("terminated") or {}
        now = (cs.get("state") or {}).get("terminated") or {}
        restarts = cs.get("restartCount") or 0
        reason, kubelet = waiting.get("reason", ""), waiting.get("message", "")
        oom = next((t for t in (now, last) if t.get("reason") == "OOMKilled"), None)
        if oom is not None:
            limit = _memory_limit(deployment, name)
            has = f"its memory limit of {limit}" if limit else "no memory limit, so the node itself ran out"
            return ContainerTrouble(
                "OOMKilled",
                f"{where} ran out of memory and was killed (OOMKilled, {_ended(oom)}; "
                f"{plural(restarts, 'restart')}) with {has}: raise spec.engine.resources.limits.memory, "
                "or lower the batch and token limits (spec.limits).",
                True,
            )
        if reason in _CONFIG_ERRORS:
            return ContainerTrouble(
                reason,
                f"{where} cannot be created ({reason}): {kubelet} "
                + (
                    _missing_secret(kubelet)
                    if reason == "CreateContainerConfigError"
                    else "Fix the image or the container's settings (spec.engine)."
                ),
                True,
            )
        if reason == "ErrImageNeverPull":
            image = re.search(r'image "([^"]+)"', kubelet)
            named = f"image {image.group(1)}" if image else "its image"
            return ContainerTrouble(
                reason,
                f"{where} cannot start ({reason}): {named} is not on the node and "
                "spec.engine.imagePullPolicy is Never. Load the image onto the node, or let the "
                "kubelet pull it (imagePullPolicy IfNotPresent).",
                True,
            )
        if reason in _PULL_ERRORS:
            image = re.search(r'image "([^"]+)"', kubelet)
            named = f"image {image.group(1)}" if image else "its image"
            return ContainerTrouble(
                reason,
                f"{where} cannot pull {named} ({reason}): {kubelet} Check spec.engine.image, "
                "the registry's reachability and the pull secret.",
                reason == "ImagePullBackOff",
            )
        if reason == "CrashLoopBackOff":
            ended = f" It last ended with {_ended(last)}." if last else ""
            stalled = restarts >= CRASH_LOOP_STALLED_RESTARTS
            hint = (
                " It will not heal by itself: read its logs (kubectl logs --previous) and fix the spec."
                if stalled
                else " The kubelet restarts it with a growing back-off."
            )
            return ContainerTrouble(
                "CrashLoopBackOff",
                f"{where} keeps crashing (CrashLoopBackOff, {plural(restarts, 'restart')}).{ended}{hint}",
                stalled,
            )
    return None


def of_revision(pods: tuple[dict[str, Any], ...], revision: str | None) -> list[dict[str, Any]]:
    """Active pods of this template revision (all active pods when it is not known)."""
    return [
        p
        for p in active_pods(pods)
        if revision is None or ((p.get("metadata") or {}).get("labels") or {}).get(TEMPLATE_HASH_LABEL) == revision
    ]


def deployment_condition(deployment: dict[str, Any], kind: str) -> dict[str, Any] | None:
    conditions: list[dict[str, Any]] = (deployment.get("status") or {}).get("conditions") or []
    for cond in conditions:
        if cond.get("type") == kind:
            return cond
    return None

"""I/O: carry out a decision. Server-side apply of the children that differ, prune, the
status patch, Events; and keep every answer in the read model's overlay, so that the
next reconcile sees our writes before their watch events arrive.
"""

from __future__ import annotations

import datetime as dt
import json
import logging
from dataclasses import dataclass, field
from typing import Any

from llm_operator import api
from llm_operator.controller import metrics
from llm_operator.controller.readmodel import ReadModel, Taken
from llm_operator.decide.compare import is_subset, replace_ops
from llm_operator.decide.decision import Decision, rfc3339
from llm_operator.decide.observed import (
    CREATED_AS_UPDATE,
    Observed,
    Refusal,
    child_spec,
    created_as_update,
    trim_child,
    trim_llmdeployment,
)
from llm_operator.decide.status import Event
from llm_operator.kube.client import Kube
from llm_operator.kube.errors import KubeError

log = logging.getLogger(__name__)

AUTOSCALER_FIELD_MANAGER = "llm-operator-autoscaler"


class NamespaceTerminating(Exception):
    """The namespace refused a write because it is being deleted."""


def _terminating(err: KubeError) -> bool:
    return err.status == 403 and "NamespaceTerminating" in err.body


@dataclass
class Written:
    applied: list[dict[str, Any]] = field(default_factory=list)  # the API's answers
    pruned: list[dict[str, Any]] = field(default_factory=list)
    refused: dict[tuple[str, str], Refusal] = field(default_factory=dict)  # (kind, name) -> why not

    def names(self) -> list[str]:
        return [f"{o['kind']}/{o['metadata']['name']}" for o in self.applied] + [
            f"-{o['kind']}/{o['metadata']['name']}" for o in self.pruned
        ]


def _ours(obj: dict[str, Any], uid: str) -> bool:
    return any(
        r.get("uid") == uid and r.get("controller") for r in (obj.get("metadata") or {}).get("ownerReferences") or []
    )


def _holder(obj: dict[str, Any]) -> str:
    refs = (obj.get("metadata") or {}).get("ownerReferences") or []
    ref = next((r for r in refs if r.get("controller")), None) or (refs[0] if refs else None)
    return (
        f"owned by {ref.get('kind')} {ref.get('name')}"
        if ref
        else "owned by no controller (made by hand or by another tool)"
    )


def _write(kube: Kube, observed: Observed, obj: dict[str, Any]) -> dict[str, Any]:
    """Apply a child the read model holds as ours; create one it has never seen.

    Creating with POST, not apply: apply would take over an object of that name that someone
    else made (force moves its fields to us and adds our owner reference, so deleting the
    LLMDeployment would delete it). POST is refused with 409 instead, and only then is the
    object read, to say whose it is (the caller has the read model remember that, so that no
    reconcile tries again until the watch of that name sees the object change or go). Before
    the first later write, our create's update entry becomes an apply entry (Kube.as_applied),
    so that apply can remove a field we stop setting. The read model sees only objects with
    our labels, so without this it could not tell "not there" from "someone else's"."""
    name = obj["metadata"]["name"]
    live = observed.child(obj["kind"], name)
    if live is not None:
        if live.get(CREATED_AS_UPDATE):
            kube.as_applied(obj)
        return apply_or_replace(kube, obj, {"metadata": live["metadata"], "spec": child_spec(live)})
    try:
        return kube.create(obj)
    except KubeError as err:
        if err.status != 409:
            raise
    existing = kube.get(obj["apiVersion"], obj["kind"], obj["metadata"]["namespace"], name)
    if existing is None:  # gone meanwhile: made on the next event
        raise KubeError(409, json.dumps({"message": f"{obj['kind']} {name} was being deleted"}), "Conflict")
    if not _ours(existing, observed.meta.get("uid", "")):
        raise NameTaken(_holder(existing), existing["metadata"].get("resourceVersion", ""))
    if created_as_update(existing):
        kube.as_applied(obj)
    return apply_or_replace(kube, obj, {"metadata": existing["metadata"], "spec": existing.get("spec") or {}})


class NameTaken(Exception):
    def __init__(self, whose: str, version: str):
        super().__init__(whose)
        self.whose = whose
        self.version = version  # the holder's resourceVersion as read


def children(kube: Kube, model: ReadModel, observed: Observed, decision: Decision) -> Written:
    """Apply what differs and delete what is no longer wanted; nothing else. A child the API
    refuses is recorded and the others are written all the same."""
    meta = observed.meta
    key = (meta["namespace"], meta["name"])
    out = Written()
    claim_missing = False
    for obj in decision.apply:
        kind, name = obj["kind"], obj["metadata"]["name"]
        if claim_missing and kind in decision.needs_claim:
            continue  # it would mount a claim that is not ours: nothing of ours may write into someone else's volume
        try:
            answer = _write(kube, observed, obj)
        except NameTaken as taken:
            out.refused[(kind, name)] = Refusal(409, f"{kind} {name} already exists", taken.whose)
            model.remember_taken(key, kind, name, Taken(meta.get("uid", ""), taken.whose, taken.version))
            claim_missing = claim_missing or kind == "PersistentVolumeClaim"
            continue
        except KubeError as err:
            if _terminating(err):
                raise NamespaceTerminating() from None
            out.refused[(kind, name)] = Refusal(err.status, err.api_message())
            if kind == "PersistentVolumeClaim" and observed.child(kind, name) is None:
                claim_missing = True
            continue
        model.remember(key, trim_child(answer), kind, name)
        out.applied.append(answer)
        metrics.WRITES.labels(kind, "apply").inc()
    for obj in decision.prune:
        kind, name = obj["kind"], obj["metadata"]["name"]
        try:
            kube.delete(obj["apiVersion"], kind, meta["namespace"], name, obj.get("propagationPolicy", "Background"))
        except KubeError as err:
            if _terminating(err):
                raise NamespaceTerminating() from None
            out.refused[(kind, name)] = Refusal(err.status, "deleting it: " + err.api_message())
            continue
        model.remember(key, None, kind, name)
        out.pruned.append(obj)
        metrics.WRITES.labels(kind, "delete").inc()
    return out


def status(kube: Kube, model: ReadModel, observed: Observed, patch: dict[str, Any]) -> None:
    meta = observed.meta
    try:
        answer = kube.patch_status(meta["namespace"], meta["name"], patch)
    except KubeError as err:
        if err.status == 404:  # deleted meanwhile: nothing to report on
            return
        raise
    metrics.WRITES.labels(api.KIND, "patch-status").inc()
    if answer:
        model.remember((meta["namespace"], meta["name"]), trim_llmdeployment(answer), api.KIND, meta["name"])


def scale(kube: Kube, observed: Observed, replicas: int) -> None:
    """The autoscaler's decision: spec.replicas through the scale subresource, under a field
    manager of its own, so that `kubectl get llmd -o yaml` shows who set the count."""
    meta = observed.meta
    kube.request(
        "PATCH",
        kube.path(api.API_VERSION, api.KIND, meta["namespace"], meta["name"], "scale"),
        body={"spec": {"replicas": replicas}},
        query={"fieldManager": AUTOSCALER_FIELD_MANAGER},
        content_type="application/merge-patch+json",
    )
    metrics.WRITES.labels(api.KIND, "scale").inc()


def events(kube: Kube, observed: Observed, notes: tuple[Event, ...], now: dt.datetime) -> None:
    """Events for `kubectl describe`; losing one is not worth failing a reconcile for."""
    meta = observed.meta
    involved = {
        "apiVersion": api.API_VERSION,
        "kind": api.KIND,
        "name": meta["name"],
        "namespace": meta["namespace"],
        "uid": meta.get("uid", ""),
    }
    stamp = rfc3339(now)
    for e in notes:
        try:
            kube.post_event(involved, e.type, e.reason, e.message, stamp)
            metrics.WRITES.labels("Event", "create").inc()
        except KubeError as err:
            log.warning("could not post Event %s on %s/%s: %s", e.reason, meta["namespace"], meta["name"], err)


def apply_or_replace(kube: Kube, obj: dict[str, Any], current: dict[str, Any] | None) -> dict[str, Any]:
    """Server-side apply; where a hand edit left list entries that another field manager
    owns (apply merges lists by key, so a changed Service port is added beside ours and
    the result is invalid or still wrong), replace the differing fields outright."""
    try:
        result = kube.apply(obj)
    except KubeError as err:
        if err.status != 422 or current is None:
            raise
        result = current
    if is_subset(obj.get("spec", {}), result.get("spec", {})):
        return result
    log.info("%s/%s: replacing fields edited by hand", obj["kind"], obj["metadata"]["name"])
    kube.json_patch(obj, replace_ops(obj, result))
    return kube.apply(obj)

"""I/O: carry out a decision. Server-side apply of the children that differ, prune, the
status patch, Events; and keep every answer in the read model's overlay, so that the
next reconcile sees our writes before their watch events arrive.
"""

from __future__ import annotations

import datetime as dt
import json
import logging
from dataclasses import dataclass, field

from . import api, metrics
from .apply import Kube, KubeError, apply_or_replace
from .decide import Decision, Event, rfc3339
from .observe import Observed, ReadModel, child_spec, trim_child, trim_llmdeployment

log = logging.getLogger(__name__)


class NamespaceTerminating(Exception):
    """The namespace refused a write because it is being deleted."""


class Refused(Exception):
    """The API refused a write of ours; `message` is its own sentence."""

    def __init__(self, what: str, err: KubeError):
        super().__init__(what)
        self.what = what
        self.status = err.status
        self.message = api_message(err)


def api_message(err: KubeError) -> str:
    """The apiserver's own message from a Status body (else the body as it came)."""
    try:
        return str(json.loads(err.body).get("message") or err.body)[:800]
    except (ValueError, AttributeError):
        return err.body[:800]


def _terminating(err: KubeError) -> bool:
    return err.status == 403 and "NamespaceTerminating" in err.body


@dataclass
class Written:
    applied: list[dict] = field(default_factory=list)     # the API's answers
    pruned: list[dict] = field(default_factory=list)

    def names(self) -> list[str]:
        return [f"{o['kind']}/{o['metadata']['name']}" for o in self.applied] + \
               [f"-{o['kind']}/{o['metadata']['name']}" for o in self.pruned]


def children(kube: Kube, model: ReadModel, observed: Observed, decision: Decision) -> Written:
    """Apply what differs and delete what is no longer wanted; nothing else."""
    meta = observed.meta
    key = (meta["namespace"], meta["name"])
    out = Written()
    what = ""
    try:
        for obj in decision.apply:
            name = obj["metadata"]["name"]
            what = f"{obj['kind']}/{name}"
            live = observed.child(obj["kind"], name)
            current = {"metadata": live["metadata"], "spec": child_spec(live)} if live else None
            answer = apply_or_replace(kube, obj, current)
            model.remember(key, trim_child(answer), obj["kind"], name)
            out.applied.append(answer)
            metrics.WRITES.labels(obj["kind"], "apply").inc()
        for obj in decision.prune:
            what = f"the deletion of {obj['kind']}/{obj['metadata']['name']}"
            kube.delete(obj["apiVersion"], obj["kind"], meta["namespace"], obj["metadata"]["name"])
            model.remember(key, None, obj["kind"], obj["metadata"]["name"])
            out.pruned.append(obj)
            metrics.WRITES.labels(obj["kind"], "delete").inc()
    except KubeError as err:
        if _terminating(err):
            raise NamespaceTerminating() from None
        raise Refused(what, err) from None
    return out


def status(kube: Kube, model: ReadModel, observed: Observed, patch: dict) -> None:
    meta = observed.meta
    try:
        answer = kube.patch_status(meta["namespace"], meta["name"], patch)
    except KubeError as err:
        if err.status == 404:   # deleted meanwhile: nothing to report on
            return
        raise
    metrics.WRITES.labels(api.KIND, "patch-status").inc()
    if answer:
        model.remember((meta["namespace"], meta["name"]), trim_llmdeployment(answer), api.KIND, meta["name"])


def events(kube: Kube, observed: Observed, notes: tuple[Event, ...], now: dt.datetime) -> None:
    """Events for `kubectl describe`; losing one is not worth failing a reconcile for."""
    meta = observed.meta
    involved = {"apiVersion": api.API_VERSION, "kind": api.KIND, "name": meta["name"],
                "namespace": meta["namespace"], "uid": meta.get("uid", "")}
    stamp = rfc3339(now)
    for e in notes:
        try:
            kube.post_event(involved, e.type, e.reason, e.message, stamp)
            metrics.WRITES.labels("Event", "create").inc()
        except KubeError as err:
            log.warning("could not post Event %s on %s/%s: %s", e.reason, meta["namespace"], meta["name"], err)

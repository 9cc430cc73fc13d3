"""What the fault scenarios share: whether a model is reconciled, counting children and
orphans, and bringing the operator back whatever happens. (Reading conditions and waiting for
a quiet cluster are support/cluster.py's.)"""

from __future__ import annotations

import contextlib
import time

from support.cluster import CHILD_KINDS, condition


def reconciled(obj: dict) -> bool:
    """Ready=True, judged for the current generation."""
    ready = condition(obj, "Ready")
    return ready.get("status") == "True" and ready.get("observedGeneration") == obj["metadata"]["generation"]


def unreconciled(kubectl) -> list[str]:
    return sorted(o["metadata"]["name"] for o in kubectl.items("llmdeployments") if not reconciled(o))


def census(kubectl) -> dict:
    """Every child in the namespace by kind: how many, how many per owner name (duplicates),
    and those whose controller is no live LLMDeployment (orphans)."""
    owners = {o["metadata"]["uid"]: o["metadata"]["name"] for o in kubectl.items("llmdeployments")}
    out = {"count": {}, "duplicates": [], "orphans": []}
    for kind in CHILD_KINDS:
        seen: dict[tuple[str, str], list[str]] = {}
        items = kubectl.items(kind)
        out["count"][kind] = len(items)
        for item in items:
            meta = item["metadata"]
            controller = next((r for r in meta.get("ownerReferences") or [] if r.get("controller")), None)
            if controller is None or controller["uid"] not in owners:
                out["orphans"].append(f"{kind}/{meta['name']}")
                continue
            # Children of one kind per owner: a Deployment, a Service, ... each once (a Job per model).
            role = meta.get("labels", {}).get("app.kubernetes.io/component", "")
            seen.setdefault((owners[controller["uid"]], role), []).append(meta["name"])
        out["duplicates"] += [f"{kind} of {owner}: {names}" for (owner, _), names in seen.items() if len(names) > 1]
    return out


@contextlib.contextmanager
def operator_restored(operator):
    """Whatever the scenario does to the session's operator, later tests find it running."""
    try:
        yield
    finally:
        if operator.proc is None or operator.proc.poll() is not None:
            operator.start()


class Stopwatch:
    def __init__(self):
        self.t0 = time.monotonic()

    def __call__(self) -> float:
        return time.monotonic() - self.t0

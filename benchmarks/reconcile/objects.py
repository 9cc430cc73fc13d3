"""The LLMDeployments, and exactly what the operator writes for them, from its own pure
builders (this checkout's): what the baselines apply."""

from __future__ import annotations

import functools
import time

from llm_operator import api
from llm_operator.decide.manifests import Decisions, Owner, desired_children
from llm_operator.kube.client import Kube, KubeError

from .config import MODEL_ID, BenchError


def spec_of(gpus: int, replicas: int) -> dict:
    return {"model": {"id": MODEL_ID, "revision": "main"}, "gpus": gpus, "replicas": replicas}


def manifest(name: str, namespace: str, spec: dict) -> dict:
    return {
        "apiVersion": api.API_VERSION,
        "kind": api.KIND,
        "metadata": {"name": name, "namespace": namespace, "labels": {"benchmark": "reconcile"}},
        "spec": spec,
    }


def desired_for(name: str, namespace: str, uid: str, spec: dict) -> list[dict]:
    """Exactly what the operator applies for this object (same pure builder, same decisions:
    offline the plan is unknown and the user's gpus are used)."""
    parsed = api.parse_spec(spec)
    return desired_children(Owner(name, namespace, uid), parsed, Decisions(gpus=parsed.gpus or 1))


def operator_report(created: dict, answers: list[dict]) -> tuple[dict | None, tuple]:
    """The status patch and the Events the operator writes for a new object whose children
    were just made: the operator's own pure decide() on the same facts (offline, the
    built-in catalog), so that the same-writes baseline writes what the operator writes."""
    import datetime as dt

    from llm_operator.decide import decision as decisions
    from llm_operator.decide.observed import Observed, trim_llmdeployment
    from llm_operator.facts.lookup import lookup

    spec = api.parse_spec(created["spec"])
    answer = lookup(
        spec.model.id,
        spec.model.revision,
        catalog=builtin_catalog(),
        offline_reason="Reading from the Hub failed: the Hub is offline (HF_HUB_OFFLINE=1).",
    )
    observed = decisions.with_applied(Observed(llmd=trim_llmdeployment(created)), answers, [])
    decision = decisions.decide(observed, decisions.Lookups(facts=answer), dt.datetime.now(dt.UTC))
    return decision.status_patch, decision.events


@functools.cache
def builtin_catalog():
    """The catalog the operator ships (read once)."""
    from llm_operator.facts import catalog

    return catalog.builtin()


def write_report(kube: Kube, created: dict, answers: list[dict]) -> None:
    """The operator's status patch and Event for a new object, from a plain client."""
    patch, events = operator_report(created, answers)
    meta = created["metadata"]
    namespace, name = meta["namespace"], meta["name"]
    if patch is not None:
        with_retry(lambda: kube.patch_status(namespace, name, patch), f"patching the status of {name}")
    involved = {
        "apiVersion": api.API_VERSION,
        "kind": api.KIND,
        "name": name,
        "namespace": namespace,
        "uid": meta["uid"],
    }
    for e in events:
        stamp = time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime())
        with_retry(
            lambda e=e, stamp=stamp: kube.post_event(involved, e.type, e.reason, e.message, stamp),
            f"posting an Event on {name}",
        )


def child_kinds(spec: dict) -> list[tuple[str, str]]:
    return [(c["apiVersion"], c["kind"]) for c in desired_for("x", "x", "x", spec)]


def with_retry(call, what: str, tries: int = 8):
    """A call retried on 429/5xx from an overloaded apiserver (both sides go through this)."""
    for attempt in range(tries):
        try:
            return call()
        except KubeError as err:
            if err.status not in (429, 500, 503, 504) or attempt == tries - 1:
                raise BenchError(f"{what}: {err}") from err
            time.sleep(min(2.0, 0.1 * 2**attempt))

"""The controller's I/O with a recording client: act writes what a decision says and keeps
each answer in the read model; the loop's second reconcile on its own writes writes
nothing; the autoscaler's decision goes through act and its state through the reconcile,
the one writer of status."""

from __future__ import annotations

import datetime as dt
import json

import pytest
from fakekube import FakeKube

from llm_operator.controller import act, autoscaling, loop
from llm_operator.controller.context import OperatorContext
from llm_operator.controller.readmodel import ReadModel
from llm_operator.decide import decision as decisions
from llm_operator.decide.decision import Decision
from llm_operator.facts import lookup as model_facts
from llm_operator.facts.catalog import Catalog
from llm_operator.facts.hub import ModelFactsUnavailable
from llm_operator.kube.errors import KubeError

KEY = ("ns", "m")
NOW = dt.datetime(2026, 1, 1, tzinfo=dt.UTC)


class NoHub:
    """The Hub, unreachable: the plan is unknown and the spec's GPU count is used."""

    def get(self, model_id, revision, when_ready=None):
        raise ModelFactsUnavailable("no Hub in this test")


def llmd(spec: dict | None = None, generation: int = 1) -> dict:
    return {
        "apiVersion": "llm-operator.io/v1alpha1",
        "kind": "LLMDeployment",
        "metadata": {"name": "m", "namespace": "ns", "uid": "u-1", "generation": generation, "resourceVersion": "1"},
        "spec": spec or {"model": {"id": "acme/tiny"}, "gpus": 1, "cache": {"enabled": False}},
        "status": {},
    }


def context(body: dict) -> tuple[OperatorContext, FakeKube]:
    model = ReadModel()
    trimmed = {"metadata": body["metadata"], "spec": body["spec"], "status": body["status"]}
    model.bind(
        {
            ReadModel.LLMD_INDEX: {KEY: [trimmed]},
            ReadModel.POD_INDEX: {},
            ReadModel.NODE_INDEX: {},
            ReadModel.STORAGE_CLASS_INDEX: {},
        }
    )
    ctx = OperatorContext(read_model=model, facts=NoHub(), adapter_configs=NoHub(), catalog=Catalog([]))
    kube = FakeKube({("LLMDeployment", "ns", "m"): json.loads(json.dumps(body))})
    ctx._kube = kube
    return ctx, kube


def test_a_first_reconcile_creates_the_children_and_reports_a_second_writes_nothing():
    ctx, kube = context(llmd())
    decision = loop.reconcile(ctx, KEY, ctx.read_model.snapshot(KEY))
    created = sorted(c[1] for c in kube.calls if c[0] == "create")
    assert created == ["Deployment", "Service"], kube.calls
    statuses = [c for c in kube.calls if c[0] == "patch_status"]
    assert len(statuses) == 1 and statuses[0][3]["phase"] == decision.phase
    # The read model holds our answers before any watch event: the next reconcile sees them.
    again = ctx.read_model.snapshot(KEY)
    assert {k for k in again.children} == {"Deployment", "Service"}
    before = len(kube.writes())
    loop.reconcile(ctx, KEY, again)
    assert kube.writes()[before:] == []


def test_the_spec_is_parsed_once_per_generation():
    ctx, _ = context(llmd())
    first = ctx.read_model.snapshot(KEY).spec
    assert first is ctx.read_model.snapshot(KEY).spec
    ctx.read_model.bind({**ctx.read_model._indexes, ReadModel.LLMD_INDEX: {KEY: [llmd(generation=2)]}})
    assert ctx.read_model.snapshot(KEY).spec is not first


def test_an_invalid_spec_is_stalled_in_status_and_writes_no_child():
    ctx, kube = context(llmd({"model": {"id": "acme/tiny"}, "gpus": 0}))
    decision = loop.reconcile(ctx, KEY, ctx.read_model.snapshot(KEY))
    assert decision.blocked is not None and decision.blocked.reason == "InvalidSpec"
    assert [c[0] for c in kube.writes()] == ["patch_status"]


def test_a_child_of_that_name_made_by_someone_else_is_refused_not_taken_over():
    ctx, kube = context(llmd())
    kube.objects[("Service", "ns", "m")] = {
        "apiVersion": "v1",
        "kind": "Service",
        "metadata": {"name": "m", "namespace": "ns", "resourceVersion": "7"},
    }
    decision = loop.reconcile(ctx, KEY, ctx.read_model.snapshot(KEY))
    assert ("apply", "Service", "m") not in kube.calls
    assert decision.blocked is not None and decision.blocked.reason == "NameConflict"
    assert "owned by no controller" in decision.blocked.message


def test_a_refused_write_is_kept_and_the_others_are_written():
    ctx, kube = context(llmd())
    kube.refuse[("create", "Service")] = KubeError(422, json.dumps({"message": "spec.ports: Invalid value"}), "Invalid")
    observed = ctx.read_model.snapshot(KEY)
    lookups = decisions.Lookups(facts=model_facts.FactsAnswer(None, model_facts.UNAVAILABLE, "offline"))
    decision = decisions.decide(observed, lookups, NOW)
    written = act.children(kube, ctx.read_model, observed, decision)
    assert [o["kind"] for o in written.applied] == ["Deployment"]
    refusal = written.refused[("Service", "m")]
    assert refusal.status == 422 and refusal.message == "spec.ports: Invalid value"


def test_a_terminating_namespace_stops_the_writes():
    ctx, kube = context(llmd())
    kube.refuse[("create", "Deployment")] = KubeError(403, "namespace ns is being terminated: NamespaceTerminating")
    kube.refuse[("create", "Service")] = kube.refuse[("create", "Deployment")]
    decision = loop.reconcile(ctx, KEY, ctx.read_model.snapshot(KEY))
    assert decision.phase == "Terminating"
    assert ctx.read_model.snapshot(KEY, ctx.clock()).namespace_terminating


def test_prune_deletes_and_the_read_model_forgets_at_once():
    ctx, kube = context(llmd())
    observed = ctx.read_model.snapshot(KEY)
    gone = {"apiVersion": "policy/v1", "kind": "PodDisruptionBudget", "metadata": {"name": "m", "namespace": "ns"}}
    written = act.children(kube, ctx.read_model, observed, Decision(phase="Ready", prune=(gone,)))
    assert written.pruned == [gone] and ("delete", "PodDisruptionBudget", "m") in kube.calls
    assert "PodDisruptionBudget" not in ctx.read_model.snapshot(KEY).children


def test_a_status_patch_of_an_object_deleted_meanwhile_is_not_an_error():
    ctx, kube = context(llmd())
    del kube.objects[("LLMDeployment", "ns", "m")]
    act.status(kube, ctx.read_model, ctx.read_model.snapshot(KEY), {"phase": "Ready"})  # no exception


def autoscaled() -> dict:
    return {
        "model": {"id": "acme/tiny"},
        "gpus": 1,
        "cache": {"enabled": False},
        "replicas": 1,
        "autoscaling": {"mode": "operator", "minReplicas": 2, "maxReplicas": 3},
    }


def test_the_autoscaler_scales_through_act_and_hands_its_state_to_the_reconcile():
    ctx, kube = context(llmd(autoscaled()))
    decision = autoscaling.autoscale(ctx, ctx.read_model.snapshot(KEY), now=1000.0)
    assert decision.desired_replicas == 2
    scales = [c for c in kube.calls if c[0] == "request"]
    assert scales == [
        (
            "request",
            "PATCH",
            "/apis/llm-operator.io/v1alpha1/namespaces/ns/llmdeployments/m/scale",
            {"spec": {"replicas": 2}},
            {"fieldManager": "llm-operator-autoscaler"},
        )
    ]
    # The autoscaler writes no status itself: the reconcile writes its report.
    assert not [c for c in kube.calls if c[0] == "patch_status"]
    report = ctx.scaler_reports[KEY]
    assert report["lastDecision"]["desiredReplicas"] == 2
    loop.reconcile(ctx, KEY, ctx.read_model.snapshot(KEY))
    (status,) = [c[3] for c in kube.calls if c[0] == "patch_status"]
    written = status["autoscaler"]["lastDecision"]
    assert (written["desiredReplicas"], written["time"], written["reason"]) == (
        2,
        1000.0,
        report["lastDecision"]["reason"],
    )


def test_without_a_report_the_reconcile_keeps_the_autoscaler_state_in_status():
    body = llmd(autoscaled())
    body["status"] = {"autoscaler": {"lastDecision": {"action": "hold", "desiredReplicas": 1}}}
    ctx, kube = context(body)
    loop.reconcile(ctx, KEY, ctx.read_model.snapshot(KEY))
    (status,) = [c[3] for c in kube.calls if c[0] == "patch_status"]
    assert "autoscaler" not in status  # kept as it is: a merge patch that leaves it alone


def test_a_gone_owner_is_forgotten_with_its_autoscaler_state():
    import asyncio

    ctx, _ = context(llmd(autoscaled()))
    ctx.scaler_states[KEY] = object()
    ctx.scaler_reports[KEY] = {}
    ctx.read_model.bind({**ctx.read_model._indexes, ReadModel.LLMD_INDEX: {}})
    assert asyncio.run(loop.process(ctx, KEY)) is None
    assert KEY not in ctx.scaler_states and KEY not in ctx.scaler_reports


@pytest.mark.parametrize("verb", ["create", "apply"])
def test_an_unexpected_api_failure_is_recorded_as_a_refusal(verb):
    ctx, kube = context(llmd())
    observed = ctx.read_model.snapshot(KEY)
    obj = {
        "apiVersion": "v1",
        "kind": "Service",
        "metadata": {"name": "m", "namespace": "ns", "annotations": {}},
        "spec": {},
    }
    if verb == "apply":  # the read model holds it as ours: applied, not created
        mine = {
            **obj,
            "metadata": {
                **obj["metadata"],
                "resourceVersion": "3",
                "ownerReferences": [{"uid": "u-1", "controller": True}],
            },
        }
        ctx.read_model.remember(KEY, mine, "Service", "m")
        observed = ctx.read_model.snapshot(KEY)
    kube.refuse[(verb, "Service")] = KubeError(500, "etcdserver: request timed out")
    written = act.children(kube, ctx.read_model, observed, Decision(phase="Creating", apply=(obj,)))
    assert written.refused[("Service", "m")].status == 500

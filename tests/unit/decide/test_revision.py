"""Which pod template a serving workload is written with: the one written before while what it
was rendered from is unchanged (a newer operator's rendering restarts no pod), the new rendering
once that changes, and the written one back after a hand edit."""

from __future__ import annotations

import copy
import json

import pytest
from decideobjects import KNOWN, NOW, OWNER, known_decisions, live_service, observed, parsed_spec, serving_pod

from llm_operator import api
from llm_operator.decide import manifests
from llm_operator.decide.compare import up_to_date
from llm_operator.decide.decision import decide
from llm_operator.decide.manifests import (
    HASH_ANNOTATION,
    TEMPLATE_HASH_LABEL,
    TEMPLATE_INPUTS_ANNOTATION,
    WRITTEN_TEMPLATE_ANNOTATION,
    Decisions,
    desired_deployment,
    desired_leaderworkerset,
    template_hash,
    template_inputs,
    with_hash,
)
from llm_operator.decide.revision import settled_workload

SPEC = {"model": {"id": "org/mistral"}, "gpus": 1}
D = Decisions(gpus=1, max_total_tokens=8192)


def _spec(**extra):
    return api.parse_spec({**SPEC, **extra})


def _rerendered(body: dict, change, field: str = "template") -> dict:
    """`body` as an operator that renders the same inputs differently wrote it: `change` applied
    to each pod template, the revision label a digest of the result, the record and the hash stamped."""
    out = copy.deepcopy(body)
    part = out["spec"][field]
    templates = [part] if field == "template" else [part["leaderTemplate"], part["workerTemplate"]]
    for t in templates:
        t["metadata"]["labels"].pop(TEMPLATE_HASH_LABEL)
        change(t)
    revision = template_hash(templates[0] if field == "template" else {"leader": templates[0], "worker": templates[1]})
    for t in templates:
        t["metadata"]["labels"][TEMPLATE_HASH_LABEL] = revision
    out["metadata"]["annotations"][WRITTEN_TEMPLATE_ANNOTATION] = json.dumps(part)
    del out["metadata"]["annotations"][HASH_ANNOTATION]
    return with_hash(out)


def _extra_env(template: dict) -> None:
    template["spec"]["containers"][0]["env"].append({"name": "RENDERED_BY", "value": "an older operator"})


# --- what the template is rendered from ------------------------------------------------------


@pytest.mark.parametrize("engine", ["tgi", "vllm"])
def test_the_inputs_leave_out_the_fields_no_pod_reads_and_so_does_the_template(engine):
    base = _spec(engine={"name": engine})
    other = _spec(
        engine={"name": engine},
        replicas=3,
        autoscaling={"mode": "operator", "minReplicas": 1, "maxReplicas": 5},
        routing={"strategy": "prefix"},
        service={"type": "NodePort", "port": 8080},
    )
    assert template_inputs(OWNER, base, D) == template_inputs(OWNER, other, D)
    assert (
        desired_deployment(OWNER, base, D)["spec"]["template"]
        == desired_deployment(OWNER, other, D)["spec"]["template"]
    )


def test_the_inputs_change_with_the_spec_the_plan_and_the_name_but_not_with_defaults_written_out():
    inputs = template_inputs(OWNER, _spec(), D)
    assert template_inputs(OWNER, _spec(quantization="none", dtype="auto", cache={"enabled": False}), D) == inputs
    assert template_inputs(OWNER, _spec(limits={"maxInputTokens": 1000}), D) != inputs
    assert template_inputs(OWNER, _spec(), Decisions(gpus=2, max_total_tokens=8192)) != inputs
    assert template_inputs(OWNER, _spec(), Decisions(gpus=1, max_total_tokens=4096)) != inputs
    assert template_inputs(manifests.Owner("n", "ns", "uid-1"), _spec(), D) != inputs
    # Whether the spec may serve now is no input: it decides whether there is a workload at all.
    assert template_inputs(OWNER, _spec(), Decisions(gpus=1, max_total_tokens=8192, serve=False)) == inputs


def test_the_workload_records_its_inputs_and_the_template_written():
    body = desired_deployment(OWNER, _spec(), D)
    annotations = body["metadata"]["annotations"]
    assert annotations[TEMPLATE_INPUTS_ANNOTATION] == template_inputs(OWNER, _spec(), D)
    assert json.loads(annotations[WRITTEN_TEMPLATE_ANNOTATION]) == body["spec"]["template"]


# --- the template written ------------------------------------------------------------------------


def test_unchanged_inputs_keep_the_template_an_older_rendering_wrote():
    want = desired_deployment(OWNER, _spec(), D)
    older = _rerendered(want, _extra_env)
    settled = settled_workload(want, older)
    assert settled == older
    assert up_to_date(settled, older), "nothing to write: the pods keep running"


def test_changed_inputs_write_the_new_rendering():
    older = _rerendered(desired_deployment(OWNER, _spec(), D), _extra_env)
    want = desired_deployment(OWNER, _spec(limits={"maxInputTokens": 1000}), D)
    assert settled_workload(want, older) == want


def test_a_hand_edit_of_a_kept_template_is_put_back_to_the_template_written():
    want = desired_deployment(OWNER, _spec(), D)
    older = _rerendered(want, _extra_env)
    edited = copy.deepcopy(older)
    edited["spec"]["template"]["spec"]["containers"][0]["image"] = "someone/else:latest"
    edited["spec"]["template"]["spec"]["containers"][0]["env"][-1]["value"] = "by hand"
    settled = settled_workload(want, edited)
    assert settled == older
    assert not up_to_date(settled, edited), "the edit is written over"


def test_a_record_that_cannot_be_read_gives_the_new_rendering():
    want = desired_deployment(OWNER, _spec(), D)
    older = _rerendered(want, _extra_env)
    older["metadata"]["annotations"][WRITTEN_TEMPLATE_ANNOTATION] = "{not json"
    assert settled_workload(want, older) == want


def test_a_template_written_before_the_revision_label_is_kept_without_it():
    want = desired_deployment(OWNER, _spec(), D)
    before_label = copy.deepcopy(want)
    del before_label["spec"]["template"]["metadata"]["labels"][TEMPLATE_HASH_LABEL]
    before_label["metadata"]["annotations"] = {HASH_ANNOTATION: "written-by-an-older-operator"}
    settled = settled_workload(want, before_label)
    assert settled["spec"]["template"] == before_label["spec"]["template"]
    assert json.loads(settled["metadata"]["annotations"][WRITTEN_TEMPLATE_ANNOTATION]) == settled["spec"]["template"]
    assert settled["metadata"]["annotations"][TEMPLATE_INPUTS_ANNOTATION] == template_inputs(OWNER, _spec(), D)
    # Apart from the label, it must be this rendering: another one is replaced.
    before_label["spec"]["template"]["spec"]["containers"][0]["image"] = "older/image:1"
    assert settled_workload(want, before_label) == want


def test_a_labelled_template_without_a_record_gives_the_new_rendering():
    want = desired_deployment(OWNER, _spec(), D)
    older = _rerendered(want, _extra_env)
    del older["metadata"]["annotations"][TEMPLATE_INPUTS_ANNOTATION]
    assert settled_workload(want, older) == want


def test_a_leaderworkerset_keeps_its_group_template_while_the_inputs_are_unchanged():
    spec = _spec(engine={"name": "vllm"}, gpus=8, nodes=2)
    d = Decisions(gpus=8, nodes=2, max_total_tokens=8192)
    want = desired_leaderworkerset(OWNER, spec, d)
    older = _rerendered(want, _extra_env, field="leaderWorkerTemplate")
    assert settled_workload(want, older) == older
    changed = desired_leaderworkerset(OWNER, _spec(engine={"name": "vllm"}, gpus=8, nodes=2, dtype="float16"), d)
    assert settled_workload(changed, older) == changed


# --- through decide() ---------------------------------------------------------------------------


def test_a_deployment_an_older_operator_rendered_is_left_alone_and_its_pods_count_as_current():
    spec = parsed_spec()
    older = _rerendered(desired_deployment(OWNER, spec, known_decisions(spec)), _extra_env)
    older["metadata"]["generation"] = 1
    older["status"] = {"replicas": 1, "readyReplicas": 1, "updatedReplicas": 1, "observedGeneration": 1}
    decision = decide(observed(children=[live_service(), older], pods=[serving_pod(older)]), KNOWN, NOW)
    assert decision.apply == () and decision.prune == ()
    assert decision.phase == "Ready"
    # The desired children are the new rendering (what `render` prints for a new model).
    (fresh,) = (c for c in decision.desired if c["kind"] == "Deployment")
    assert fresh["spec"]["template"] != older["spec"]["template"]

"""The operator's planning glue: facts once, pending plans, GPU types from nodes (issue 3)."""

from __future__ import annotations

import threading

from llm_operator import api
from llm_operator.facts import hub as modelinfo
from llm_operator.facts import lookup as facts
from llm_operator.planning import plan as planning

SPEC = api.parse_spec({"model": {"id": "org/m"}, "gpus": 2})


def test_a_pending_plan_in_status_is_not_taken_as_a_plan():
    status = {"observedGeneration": 1, "gpus": 2, "plan": {"known": False, "pending": True, "reason": "Reading"}}
    assert planning.Previous.from_status(status, 1).plan is None
    done = {"observedGeneration": 1, "gpus": 2, "plan": {"known": False, "reason": "unknown"}}
    assert planning.Previous.from_status(done, 1).plan == done["plan"]
    assert planning.Previous.from_status(done, 2).plan is None


def test_facts_are_read_in_the_background_once_and_failures_remembered():
    calls, ready = [], threading.Event()

    def fetch(model_id, revision):
        calls.append((model_id, revision))
        raise modelinfo.ModelFactsUnavailable("offline.")

    source = facts.FactsSource(fetch=fetch)
    answer = facts.lookup("org/m", "main", hub=source, when_ready=ready.set)
    outcome = planning.plan_for(SPEC, answer, planning.Previous(), [])
    assert outcome.waiting is not None and outcome.status["pending"] is True
    assert ready.wait(5)
    answer = facts.lookup("org/m", "main", hub=source)
    outcome = planning.plan_for(SPEC, answer, planning.Previous(), [])
    assert outcome.waiting is None and outcome.blocked is None and outcome.gpus == 2
    assert outcome.status == {
        "known": False,
        "reason": "The plan is unknown: offline. Going on with 2 GPUs per replica.",
    }
    assert calls == [("org/m", "main")]


def test_unknown_facts_go_on_with_one_gpu_in_the_singular():
    one = api.parse_spec({"model": {"id": "org/m"}, "gpus": 1})
    answer = facts.lookup("org/m", "main", offline_reason="offline.")
    assert planning.plan_for(one, answer, planning.Previous(), []).status == {
        "known": False,
        "reason": "The plan is unknown: offline. Going on with 1 GPU per replica.",
    }


def test_gpu_types_from_node_labels_largest_first():
    nodes = [
        {"metadata": {"labels": {"nvidia.com/gpu.product": "NVIDIA-L4", "nvidia.com/gpu.memory": "23034"}}},
        {"metadata": {"labels": {"nvidia.com/gpu.product": "NVIDIA-H100-80GB-HBM3", "nvidia.com/gpu.memory": "81559"}}},
        {"metadata": {"labels": {}}},
    ]
    assert [g.name for g in planning.gpu_types_of(nodes)] == ["h100-80gb", "l4"]
    spec = api.parse_spec({"model": {"id": "org/m"}, "gpu": {"product": "NVIDIA-L4"}})
    assert planning.gpu_for(spec, planning.gpu_types_of(nodes)).name == "l4"

"""One source of model facts: the Job's report, then status.modelFacts, then the Hub,
each only when it is for the same model id and revision."""

from __future__ import annotations

import json

from llm_operator import facts
from llm_operator.decide import Lookups, decide, facts_query
from llm_operator.modelinfo import ModelFactsUnavailable

from test_decide import CACHE, FAST, LLAMA_70B, NOW, _spec, claim, job, job_pod, live_service, observed

A = {**LLAMA_70B, "modelId": "org/llama-70b", "revision": "a"}
B = {**LLAMA_70B, "modelId": "org/llama-70b", "revision": "b", "numLayers": 81}


class Hub:
    """A Hub that answers at once (or is unreachable), counting calls."""

    def __init__(self, answer=None):
        self.answer, self.calls = answer, []

    def get(self, model_id, revision, when_ready=None):
        self.calls.append((model_id, revision))
        if self.answer is None:
            raise ModelFactsUnavailable("Could not reach the Hugging Face Hub.")
        return self.answer


def test_the_jobs_report_comes_first_then_status_then_the_hub():
    hub = Hub()
    got = facts.lookup("org/llama-70b", "b", job_report=B, status_facts={**B, "numLayers": 1}, hub=hub)
    assert (got.source, got.facts.num_layers) == ("job", 81)
    got = facts.lookup("org/llama-70b", "b", job_report=None, status_facts=B, hub=hub)
    assert (got.source, got.facts.num_layers) == ("status", 81)
    assert hub.calls == []
    got = facts.lookup("org/llama-70b", "b", job_report=None, status_facts=None, hub=hub)
    assert (got.source, got.facts) == ("unavailable", None) and "Could not reach" in got.message
    assert hub.calls == [("org/llama-70b", "b")]


def test_facts_of_another_revision_or_model_are_never_used():
    hub = Hub()
    got = facts.lookup("org/llama-70b", "b", job_report=A, status_facts=A, hub=hub)
    assert got.source == "unavailable" and hub.calls == [("org/llama-70b", "b")]
    got = facts.lookup("org/other", "a", job_report=None, status_facts=A, hub=Hub())
    assert got.source == "unavailable"


def test_offline_without_a_hub_says_why():
    got = facts.lookup("org/m", "main", offline_reason="No Hub here.")
    assert (got.source, got.message) == ("unavailable", "No Hub here.")


def test_a_revision_change_plans_from_the_new_jobs_report_not_the_old_status():
    """Regression: the old revision's status.modelFacts won over the new Job's facts, the Hub
    being unreachable the plan became unknown and a 70B model fell back to 1 GPU."""
    spec = {**CACHE, "model": {"id": "org/llama-70b", "revision": "b"}, "gpus": None}
    old_status = {"observedGeneration": 1, "gpus": 2, "modelFacts": A,
                  "plan": {"known": True, "numShard": 2, "fits": True}}
    obs = observed(spec=spec, status=old_status, storage_classes=FAST, meta={"generation": 2},
                   children=[live_service(), claim(), job("Complete", spec=spec)],
                   pods=[job_pod(spec=spec, message=json.dumps({**B, "commit": "c0ffee"}))])
    q = facts_query(obs, _spec(spec))
    answer = facts.lookup(q.model_id, q.revision, job_report=q.job_report, status_facts=q.status_facts, hub=Hub())
    assert answer.source == "job" and answer.facts.revision == "b"
    d = decide(obs, Lookups(facts=answer), NOW)
    assert d.status["plan"]["known"] is True and d.status["gpus"] == 2
    assert d.status["modelFacts"]["revision"] == "b" and d.status["modelFacts"]["numLayers"] == 81
    deployment = next(o for o in d.apply if o["kind"] == "Deployment")
    assert deployment["spec"]["template"]["spec"]["containers"][0]["resources"]["limits"]["nvidia.com/gpu"] == "2"

"""One source of model facts: the Job's report, then status.modelFacts, then the Hub,
each only when it is for the same model id and revision."""

from __future__ import annotations

import json
import threading

import pytest
from decideobjects import (
    CACHE,
    FAST,
    LLAMA_70B,
    NOW,
    claim,
    job,
    job_pod,
    live_deployment,
    live_service,
    observed,
    serving_pod,
)
from decideobjects import parsed_spec as _spec

from llm_operator.decide.decision import Lookups, decide, facts_query
from llm_operator.facts import lookup as facts
from llm_operator.facts.hub import ModelFacts, ModelFactsUnavailable, ModelMissing

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
    old_status = {
        "observedGeneration": 1,
        "gpus": 2,
        "modelFacts": A,
        "plan": {"known": True, "numShard": 2, "fits": True},
    }
    obs = observed(
        spec=spec,
        status=old_status,
        storage_classes=FAST,
        meta={"generation": 2},
        children=[live_service(), claim(), job("Complete", spec=spec)],
        pods=[job_pod(spec=spec, message=json.dumps({**B, "commit": "c0ffee"}))],
    )
    q = facts_query(obs, _spec(spec))
    answer = facts.lookup(q.model_id, q.revision, job_report=q.job_report, status_facts=q.status_facts, hub=Hub())
    assert answer.source == "job" and answer.facts.revision == "b"
    d = decide(obs, Lookups(facts=answer), NOW)
    assert d.status["plan"]["known"] is True and d.status["gpus"] == 2
    assert d.status["modelFacts"]["revision"] == "b" and d.status["modelFacts"]["numLayers"] == 81
    deployment = next(o for o in d.apply if o["kind"] == "Deployment")
    assert deployment["spec"]["template"]["spec"]["containers"][0]["resources"]["limits"]["nvidia.com/gpu"] == "2"


# ---- a model or revision the Hub says does not exist (issue 11) ---------------------------

NOT_FOUND = (
    "org/mistral was not found on the Hugging Face Hub (https://huggingface.co): check the id, "
    "or give a token if the repository is private."
)


class MissingHub(Hub):
    def __init__(self, reason="ModelNotFound", message=NOT_FOUND):
        super().__init__()
        self.reason, self.message = reason, message

    def get(self, model_id, revision, when_ready=None):
        self.calls.append((model_id, revision))
        raise ModelMissing(self.message, self.reason)


def missing_answer(reason="ModelNotFound", message=NOT_FOUND):
    return facts.lookup("org/mistral", "main", hub=MissingHub(reason, message))


def test_the_lookup_says_when_the_hub_has_no_such_model():
    got = missing_answer()
    assert (got.source, got.missing, got.message) == ("unavailable", "ModelNotFound", NOT_FOUND)
    assert facts.lookup("org/mistral", "main", hub=Hub()).missing == ""


def test_a_model_the_hub_does_not_have_deploys_nothing_and_is_stalled():
    d = decide(observed(), Lookups(facts=missing_answer()), NOW)
    assert d.desired == () and d.apply == () and d.phase == "Failed"
    ready = next(c for c in d.status["conditions"] if c["type"] == "Ready")
    assert (ready["status"], ready["reason"]) == ("False", "ModelNotFound")
    assert ready["message"] == NOT_FOUND + (
        " Nothing is deployed for org/mistral@main until spec.model names a model and revision the Hub has."
    )
    stalled = next(c for c in d.status["conditions"] if c["type"] == "Stalled")
    assert (stalled["status"], stalled["reason"]) == ("True", "ModelNotFound")
    assert [(e.type, e.reason) for e in d.events] == [("Warning", "ModelNotFound")]
    assert d.status["observedGeneration"] == 1


def test_a_revision_the_hub_does_not_have_is_stalled_too():
    message = (
        "Revision 'v9' of org/mistral does not exist on the Hugging Face Hub: pin an existing branch, tag or commit."
    )
    d = decide(observed(), Lookups(facts=missing_answer("RevisionNotFound", message)), NOW)
    assert d.desired == () and d.phase == "Failed" and d.blocked.reason == "RevisionNotFound"


def test_a_changed_model_that_does_not_exist_keeps_the_old_deployment_serving():
    live = live_deployment()
    d = decide(
        observed(children=[live_service(), live], pods=[serving_pod(live)]), Lookups(facts=missing_answer()), NOW
    )
    assert d.prune == () and d.apply == () and d.blocked.reason == "ModelNotFound"
    ready = next(c for c in d.status["conditions"] if c["type"] == "Ready")
    assert ready["message"].endswith("The previous version keeps serving with 1 ready replica.")


def test_with_a_token_a_repository_not_found_may_be_private_so_the_pods_judge():
    """The operator reads the Hub without the token (it never reads Secrets): a private
    repository then answers as a missing one, so it goes on with the spec's gpus."""
    spec = {"model": {"id": "org/mistral", "tokenSecretRef": {"name": "hf", "key": "token"}}}
    d = decide(observed(spec=spec), Lookups(facts=missing_answer()), NOW)
    assert d.blocked is None and ("Deployment", "m") in [(o["kind"], o["metadata"]["name"]) for o in d.apply]


def test_an_unreachable_hub_goes_on_with_the_specs_gpus():
    d = decide(observed(), Lookups(facts=facts.lookup("org/mistral", "main", hub=Hub())), NOW)
    assert d.blocked is None and ("Deployment", "m") in [(o["kind"], o["metadata"]["name"]) for o in d.apply]
    assert d.status["gpus"] == 1 and d.status["plan"]["known"] is False


def test_a_remembered_failure_keeps_its_kind():
    calls = []

    def fetch(model_id, revision):
        calls.append(model_id)
        raise ModelMissing(NOT_FOUND, "ModelNotFound")

    source = facts.FactsSource(fetch=fetch)
    done = threading.Event()
    first = facts.lookup("org/mistral", "main", hub=source, when_ready=done.set)
    assert first.source == "pending" and done.wait(5)
    again = facts.lookup("org/mistral", "main", hub=source)
    assert again.missing == "ModelNotFound" and calls == ["org/mistral"]


def test_a_remembered_failure_raised_again_and_again_holds_no_callers_frames():
    """Each caller gets a new exception: re-raising the remembered one would chain every
    caller's frames onto its traceback (memory growing with each reconcile)."""

    def fetch(model_id, revision):
        raise ModelFactsUnavailable("the Hub cannot be reached")

    source = facts.FactsSource(fetch=fetch)
    done = threading.Event()
    with pytest.raises(facts.FactsPending):
        source.get("org/m", "main", done.set)
    assert done.wait(5)
    depths, seen = [], set()
    for _ in range(5):
        with pytest.raises(ModelFactsUnavailable) as caught:
            source.get("org/m", "main")
        seen.add(id(caught.value))
        tb, depth = caught.value.__traceback__, 0
        while tb is not None:
            depth, tb = depth + 1, tb.tb_next
        depths.append(depth)
    assert len(set(depths)) == 1, depths
    assert str(caught.value) == "the Hub cannot be reached"
    remembered = source._failures[("org/m", "main")][1]
    assert remembered.__traceback__ is None and id(remembered) not in seen


# ---- the catalog, after the Hub (issue 14) -------------------------------------------------

from llm_operator.facts import catalog as model_catalog  # noqa: E402

CATALOG = model_catalog.parse_entries(
    [
        {
            "id": "org/llama-70b",
            "revision": "c" * 40,
            "parameterCount": 70_553_706_496,
            "config": {
                "model_type": "llama",
                "hidden_size": 8192,
                "intermediate_size": 28672,
                "num_attention_heads": 64,
                "num_hidden_layers": 80,
                "num_key_value_heads": 8,
                "vocab_size": 128256,
                "max_position_embeddings": 131072,
                "torch_dtype": "bfloat16",
            },
        }
    ],
    "test",
)


class PendingHub(Hub):
    def get(self, model_id, revision, when_ready=None):
        self.calls.append((model_id, revision))
        raise facts.FactsPending()


def test_the_catalog_answers_only_when_the_job_status_and_hub_do_not():
    got = facts.lookup("org/llama-70b", "b", job_report=B, status_facts=None, hub=Hub(), catalog=CATALOG)
    assert got.source == "job"
    got = facts.lookup("org/llama-70b", "b", job_report=None, status_facts=B, hub=Hub(), catalog=CATALOG)
    assert got.source == "status"
    got = facts.lookup("org/llama-70b", "main", hub=Hub(answer=ModelFacts.from_dict(B)), catalog=CATALOG)
    assert (got.source, got.facts.num_layers) == ("hub", 81)
    # The Hub cannot be reached: the catalog, for the revision asked.
    got = facts.lookup("org/llama-70b", "main", hub=Hub(), catalog=CATALOG)
    assert (got.source, got.facts.num_layers, got.facts.revision, got.note) == ("catalog", 80, "main", "")
    assert got.source_revision == "c" * 40
    # No Hub at all (render offline): the catalog.
    assert facts.lookup("org/llama-70b", "main", catalog=CATALOG).source == "catalog"
    # A model the catalog does not know stays unavailable, with the Hub's reason.
    got = facts.lookup("org/other", "main", hub=Hub(), catalog=CATALOG)
    assert got.source == "unavailable" and "Could not reach" in got.message


def test_while_the_hub_is_being_read_the_catalog_waits():
    got = facts.lookup("org/llama-70b", "main", hub=PendingHub(), catalog=CATALOG)
    assert got.source == "pending"


def test_a_model_the_hub_hides_is_planned_from_the_catalog_but_a_missing_revision_is_not():
    # A gated or private repository answers "not found" to a reader without a token.
    got = facts.lookup("org/llama-70b", "main", hub=MissingHub(), catalog=CATALOG)
    assert (got.source, got.missing) == ("catalog", "")
    got = facts.lookup("org/llama-70b", "v9", hub=MissingHub("RevisionNotFound", "no v9"), catalog=CATALOG)
    assert (got.source, got.missing) == ("unavailable", "RevisionNotFound")


def test_a_pinned_revision_the_catalog_has_not_is_planned_and_told_so():
    got = facts.lookup("org/llama-70b", "v2", hub=Hub(), catalog=CATALOG)
    assert got.source == "catalog" and got.facts.revision == "v2"
    assert got.note.startswith("The catalog's facts are for revision ccccccc, not v2 (spec.model.revision)")


def test_a_catalog_plan_names_its_source_and_survives_a_restart_unchanged():
    spec = {
        "model": {"id": "org/llama-70b", "revision": "v2"},
        "gpus": None,
        "gpu": {"product": "NVIDIA-H100-80GB-HBM3"},
    }
    answer = facts.lookup("org/llama-70b", "v2", hub=Hub(), catalog=CATALOG)
    d = decide(observed(spec=spec), Lookups(facts=answer), NOW)
    plan = d.status["plan"]
    assert (plan["known"], plan["source"], plan["numShard"], d.status["gpus"]) == (True, "catalog", 2, 2)
    assert plan["reason"].endswith(
        "Model facts from the catalog (revision ccccccc). The catalog's facts are for "
        "revision ccccccc, not v2 (spec.model.revision); the plan uses them until the "
        "download Job reads the pinned revision's own."
    )
    kept = d.status["modelFacts"]
    assert (kept["source"], kept["sourceRevision"], kept["revision"]) == ("catalog", "c" * 40, "v2")
    # After a restart the facts come from status.modelFacts, and say the same.
    again = facts.lookup(
        "org/llama-70b", "v2", status_facts=kept, hub=Hub(answer=ModelFacts.from_dict(B)), catalog=CATALOG
    )
    assert (again.source, again.note, again.source_revision) == (answer.source, answer.note, answer.source_revision)
    d2 = decide(observed(spec=spec, status=d.status), Lookups(facts=again), NOW)
    assert d2.status["plan"] == plan and d2.status["modelFacts"] == kept


def test_a_hub_plan_says_so():
    spec = {"model": {"id": "org/llama-70b", "revision": "b"}, "gpus": 2, "gpu": {"product": "NVIDIA-H100-80GB-HBM3"}}
    d = decide(
        observed(spec=spec),
        Lookups(facts=facts.lookup("org/llama-70b", "b", hub=Hub(answer=ModelFacts.from_dict(B)))),
        NOW,
    )
    assert d.status["plan"]["source"] == "hub"
    assert d.status["plan"]["reason"].endswith("Model facts from the Hugging Face Hub.")


def test_a_rejected_extra_entry_is_named_when_its_model_is_planned():
    rejected = model_catalog.parse_entries([{"id": "org/m", "config": {"hidden_size": "big"}}], "extra.yaml")
    got = facts.lookup("org/m", "main", hub=Hub(), catalog=rejected)
    assert got.source == "unavailable"
    assert got.message.endswith(
        "Catalog extra.yaml, entry 1 (org/m): config.hidden_size must be an integer, got 'big'; the entry is left out."
    )

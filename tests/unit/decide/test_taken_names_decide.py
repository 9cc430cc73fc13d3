"""A child's name taken by an object not ours, as the read model remembers it (Observed.taken):
not written again, and said exactly as when the create was refused; `holder` says, from what
the watch of that name shows, whether it is still taken and by whom."""

from __future__ import annotations

from dataclasses import replace

from decideobjects import CACHE, FAST, KNOWN, NOW, OWNER, UID, cond, kinds, observed

from llm_operator.decide import manifests as resources
from llm_operator.decide import writes
from llm_operator.decide.decision import decide
from llm_operator.decide.observed import Refusal

BY_HAND = "owned by no controller (made by hand or by another tool)"
OURS = [
    {"apiVersion": "llm-operator.io/v1alpha1", "kind": "LLMDeployment", "name": "m", "uid": UID, "controller": True}
]
THEIRS = [{"apiVersion": "apps/v1", "kind": "Deployment", "name": "x", "uid": "u2", "controller": True}]


def service(refs=None) -> dict:
    """A Service named m as its watch shows it (metadata, spec)."""
    meta = {"name": "m", "namespace": "ns", "resourceVersion": "7"}
    if refs is not None:
        meta["ownerReferences"] = refs
    return {"apiVersion": "v1", "kind": "Service", "metadata": meta, "spec": {"ports": [{"port": 81}]}}


def test_a_name_remembered_as_taken_is_not_written_and_the_status_stays_as_the_refusal_made_it():
    refused = decide(replace(observed(), refused={("Service", "m"): Refusal(409, "exists", BY_HAND)}), KNOWN, NOW)
    assert cond(refused)[1] == "NameConflict" and [e.reason for e in refused.events] == ["NameConflict"]
    # The next reconcile, with the name remembered and the status the first one wrote.
    again = decide(replace(observed(status=refused.status), taken={("Service", "m"): BY_HAND}), KNOWN, NOW)
    assert ("Service", "m") not in kinds(again.apply) and ("Deployment", "m") in kinds(again.apply)
    assert again.status == refused.status  # the same conditions, observedGeneration and message
    assert again.status_patch is None and again.events == ()
    assert cond(again, "Stalled")[:2] == ("True", "NameConflict")
    assert cond(again)[2].startswith(f"Service/m already exists and is not this LLMDeployment's ({BY_HAND})")


def test_a_new_generation_with_the_name_still_taken_is_not_claimed_as_done():
    taken = {("Service", "m"): "owned by Deployment x"}
    d = decide(replace(observed(status={"observedGeneration": 1}, meta={"generation": 2}), taken=taken), KNOWN, NOW)
    assert d.status["observedGeneration"] == 1 and cond(d, "Stalled")[:2] == ("True", "NameConflict")
    assert "(owned by Deployment x)" in cond(d)[2]


def test_a_cache_claim_whose_name_is_taken_is_mounted_by_nothing():
    taken = {("PersistentVolumeClaim", "m-weights"): BY_HAND}
    d = decide(replace(observed(spec=CACHE, storage_classes=FAST), taken=taken), KNOWN, NOW)
    assert kinds(d.apply) == [("Service", "m")]  # no claim, no download Job, no Deployment
    assert cond(d)[2].startswith("PersistentVolumeClaim/m-weights already exists and is not this LLMDeployment's")


def test_judge_child_says_a_taken_name_only_while_the_read_model_holds_no_object_of_that_name():
    meta = {"name": "m", "namespace": "ns", "annotations": {resources.HASH_ANNOTATION: "h1"}}
    want = {"apiVersion": "v1", "kind": "Service", "metadata": meta, "spec": {"x": 1}}

    def judge(live, taken):
        return writes.judge_child(want, live, OWNER, True, lambda: writes.Claimants(0, 0), taken)

    outcome = judge(None, BY_HAND)
    assert not outcome.apply and not outcome.unmountable
    verdict, permanent = outcome.problem
    assert (verdict.reason, permanent) == ("NameConflict", True) and f"({BY_HAND})" in verdict.message
    assert judge(None, None) == writes.APPLY
    # An object the read model holds goes by what it shows: ours is applied, another's named.
    assert judge({**want, "metadata": {**want["metadata"], "ownerReferences": OURS}}, BY_HAND) == writes.LEAVE
    held = judge({**want, "metadata": {**want["metadata"], "ownerReferences": THEIRS}}, BY_HAND)
    assert "(owned by Deployment x)" in held.problem[0].message


def test_holder_names_who_holds_the_name_until_it_is_gone_or_ours():
    assert writes.holder(service(), UID) == BY_HAND
    assert writes.holder(service(THEIRS), UID) == "owned by Deployment x"
    assert writes.holder(service([{**OURS[0], "controller": False}]), UID) == "owned by LLMDeployment m"
    assert writes.holder(service([{**OURS[0], "uid": "an-earlier-one"}]), UID) == "owned by LLMDeployment m"
    assert writes.holder(service(OURS), UID) is None
    assert writes.holder(None, UID) is None

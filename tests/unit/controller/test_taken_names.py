"""A child's name taken by an object not ours costs one create and one read, however many
reconciles follow: the read model remembers the holder, and the watch of that one name
(TakenNames, driven here with literal events) forgets it and wakes the owner once the object
goes or becomes ours; the next reconcile then makes the child."""

from __future__ import annotations

import asyncio

from fakekube import FakeKube
from test_act_and_loop import KEY, context, llmd

from llm_operator.controller import loop
from llm_operator.controller.informers import TakenNames
from llm_operator.controller.readmodel import ReadModel, Taken

BY_HAND = "owned by no controller (made by hand or by another tool)"
OURS = {"apiVersion": "llm-operator.io/v1alpha1", "kind": "LLMDeployment", "name": "m", "uid": "u-1"}


def users_service(refs: list | None = None, rv: str = "7") -> dict:
    meta = {"name": "m", "namespace": "ns", "resourceVersion": rv}
    if refs is not None:
        meta["ownerReferences"] = refs
    return {"apiVersion": "v1", "kind": "Service", "metadata": meta, "spec": {"ports": [{"port": 81}]}}


def round_trips(kube: FakeKube) -> list[tuple]:
    return [c for c in kube.calls if c[1:] == ("Service", "m")]


class NoStreams:
    """An AsyncKube whose list_watch only records what it was asked and runs until cancelled."""

    def __init__(self) -> None:
        self.watches: list[dict] = []

    async def list_watch(self, path, selector, on_list, on_event, stop, on_failure=None, fields="", since=None):
        self.watches.append(
            {"path": path, "selector": selector, "fields": fields, "since": since, "on_event": on_event}
        )
        await asyncio.Event().wait()


def names(model: ReadModel, kube=None) -> tuple[TakenNames, list]:
    woken: list = []
    return TakenNames(kube, model, lambda key, body: woken.append(key)), woken


def test_a_taken_name_costs_one_create_and_one_read_however_many_reconciles_follow():
    ctx, kube = context(llmd())
    kube.objects[("Service", "ns", "m")] = users_service()
    first = loop.reconcile(ctx, KEY, ctx.read_model.snapshot(KEY))
    assert round_trips(kube) == [("create", "Service", "m"), ("get", "Service", "m")]
    assert ctx.read_model.taken(KEY) == {("Service", "m"): Taken("u-1", BY_HAND, "7")}
    for generation in (1, 2, 3):
        if generation > 1:  # a new spec: still not written, still said
            ctx.read_model.bind({**ctx.read_model._indexes, ReadModel.LLMD_INDEX: {KEY: [llmd(generation=generation)]}})
        decision = loop.reconcile(ctx, KEY, ctx.read_model.snapshot(KEY))
        assert decision.blocked == first.blocked
    assert round_trips(kube) == [("create", "Service", "m"), ("get", "Service", "m")]
    assert first.blocked.reason == "NameConflict" and f"({BY_HAND})" in first.blocked.message
    assert kube.objects[("Service", "ns", "m")] == users_service()  # never written


def test_the_object_gone_forgets_the_name_wakes_the_owner_and_the_next_reconcile_makes_the_child():
    ctx, kube = context(llmd())
    kube.objects[("Service", "ns", "m")] = users_service()
    loop.reconcile(ctx, KEY, ctx.read_model.snapshot(KEY))
    watches, woken = names(ctx.read_model)
    watches.seen(KEY, "Service", "m", users_service(rv="8"))  # a change that leaves it theirs
    assert woken == [] and ("Service", "m") in ctx.read_model.taken(KEY)
    del kube.objects[("Service", "ns", "m")]
    watches.seen(KEY, "Service", "m", None)
    assert woken == [KEY] and ctx.read_model.taken(KEY) == {}
    decision = loop.reconcile(ctx, KEY, ctx.read_model.snapshot(KEY))
    assert decision.blocked is None
    assert kube.objects[("Service", "ns", "m")]["metadata"]["ownerReferences"][0]["uid"] == "u-1"


def test_the_object_made_ours_is_taken_over_another_holder_is_said_and_a_broken_watch_wakes_nobody():
    model = ReadModel()
    watches, woken = names(model)
    model.remember_taken(KEY, "Service", "m", Taken("u-1", BY_HAND, "7"))
    watches.seen(KEY, "Service", "m", users_service([{**OURS, "controller": False}]))  # ours, not as controller
    assert woken == [KEY] and model.taken(KEY)[("Service", "m")].whose == "owned by LLMDeployment m"
    watches.seen(KEY, "Service", "m", users_service([{**OURS, "controller": True}]))
    assert woken == [KEY, KEY] and model.taken(KEY) == {}
    model.remember_taken(KEY, "Service", "m", Taken("u-1", BY_HAND, "9"))
    watches.failed(KEY, "Service", "m")
    assert woken == [KEY, KEY] and model.taken(KEY) == {}  # tried again by the next reconcile, not at once


def test_an_earlier_llmdeployment_of_the_name_does_not_pass_its_taken_names_on():
    ctx, _ = context(llmd())
    ctx.read_model.remember_taken(KEY, "Service", "m", Taken("u-0", BY_HAND, "7"))
    assert ctx.read_model.snapshot(KEY).taken == {}
    ctx.read_model.remember_taken(KEY, "Service", "m", Taken("u-1", BY_HAND, "7"))
    assert ctx.read_model.snapshot(KEY).taken == {("Service", "m"): BY_HAND}


def test_each_taken_name_is_watched_by_its_name_from_the_version_read_until_it_goes():
    async def main():
        model = ReadModel()
        kube = NoStreams()
        watches, woken = names(model, kube)
        model.remember_taken(KEY, "Service", "m", Taken("u-1", BY_HAND, "7"))
        model.remember_taken(KEY, "PersistentVolumeClaim", "m-weights", Taken("u-1", BY_HAND, "5"))
        watches.sync(KEY)
        watches.sync(KEY)  # one watch a name, however often asked
        await asyncio.sleep(0)
        asked = sorted((w["path"], w["selector"], w["fields"], w["since"]) for w in kube.watches)
        tasks = dict(watches._tasks)
        kube.watches[[w["fields"] for w in kube.watches].index("metadata.name=m")]["on_event"]("DELETED", {})
        model.retake(KEY, "PersistentVolumeClaim", "m-weights", None)  # forgotten otherwise: no watch kept
        watches.sync(KEY)
        await asyncio.sleep(0)
        return asked, tasks, woken, watches._tasks

    asked, tasks, woken, left = asyncio.run(main())
    assert asked == [
        ("/api/v1/namespaces/ns/persistentvolumeclaims", "", "metadata.name=m-weights", "5"),
        ("/api/v1/namespaces/ns/services", "", "metadata.name=m", "7"),
    ]
    assert woken == [KEY] and left == {}
    assert all(t.cancelled() for t in tasks.values())

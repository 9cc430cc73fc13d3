"""The informers' bookkeeping: what a listing or a watch event does to the owner index and
whom it wakes. Literal events; the streams themselves run in the integration tests."""

from __future__ import annotations

import asyncio

from llm_operator.controller.informers import Informer, Informers, OwnerIndex
from llm_operator.controller.readmodel import ReadModel
from llm_operator.decide import observed as observe
from llm_operator.decide.manifests import INSTANCE_LABEL, MANAGED_BY
from llm_operator.kube.asyncclient import KubeError


def service(name="m", owner="m", ns="ns", rv="1", port=8080, kind=True) -> dict:
    body = {
        "metadata": {
            "name": name,
            "namespace": ns,
            "resourceVersion": rv,
            "labels": {INSTANCE_LABEL: owner, "app.kubernetes.io/managed-by": MANAGED_BY},
        },
        "spec": {"ports": [{"port": port}]},
    }
    if kind:
        body.update(kind="Service", apiVersion="v1")
    return body


def informer(namespace="ns", index=None):
    woken: list = []
    inf = Informer(
        None,
        "/api/v1/namespaces/ns/services",
        "",
        "Service",
        "v1",
        index if index is not None else OwnerIndex(),
        observe.trim_child,
        lambda key, body: woken.append((key, body is not None)),
        namespace,
    )
    return inf, woken


def test_an_added_child_is_held_by_its_owner_and_wakes_it():
    inf, woken = informer()
    inf.on_event("ADDED", service())
    assert [c["metadata"]["name"] for c in inf.index[("ns", "m")]] == ["m"]
    assert ("ns", "m") in inf.index and len(inf.index) == 1
    assert woken == [(("ns", "m"), True)]


def test_a_change_no_decision_can_see_wakes_nobody():
    inf, woken = informer()
    inf.on_event("ADDED", service(rv="1"))
    inf.on_event("MODIFIED", service(rv="2"))  # only the version moved
    assert woken == [(("ns", "m"), True)]
    inf.on_event("MODIFIED", service(rv="3", port=9090))
    assert woken[-1] == (("ns", "m"), True) and len(woken) == 2
    assert observe.child_spec(inf.index.get_one(("ns", "m"), "m"))["ports"] == [{"port": 9090}]


def test_a_deleted_child_leaves_the_index_and_wakes_its_owner():
    inf, woken = informer()
    inf.on_event("ADDED", service())
    inf.on_event("DELETED", service())
    assert ("ns", "m") not in inf.index and list(inf.index) == []
    assert woken[-1] == (("ns", "m"), False)


def test_an_object_relabelled_to_another_owner_moves_and_wakes_both():
    inf, woken = informer()
    inf.on_event("ADDED", service(owner="a"))
    inf.on_event("MODIFIED", service(owner="b", rv="2"))
    assert ("ns", "a") not in inf.index
    assert [c["metadata"]["name"] for c in inf.index[("ns", "b")]] == ["m"]
    assert (("ns", "a"), False) in woken and woken[-1] == (("ns", "b"), True)


def test_an_object_that_loses_its_owner_label_is_dropped():
    inf, woken = informer()
    inf.on_event("ADDED", service(owner="a"))
    unlabelled = service(rv="2")
    del unlabelled["metadata"]["labels"][INSTANCE_LABEL]
    inf.on_event("MODIFIED", unlabelled)
    assert len(inf.index) == 0 and woken[-1] == (("ns", "a"), False)


def test_a_relisting_replaces_its_namespace_only_and_wakes_what_changed():
    index = OwnerIndex()
    other, _ = informer(namespace="other", index=index)
    other.on_event("ADDED", service(name="x", owner="x", ns="other"))
    inf, woken = informer(index=index)
    inf.on_list([service(name="kept", owner="kept", kind=False), service(name="gone", owner="gone", kind=False)])
    assert inf.synced.is_set()
    # A listing's items carry no kind: the informer names it, as a watch event would.
    assert inf.index.get_one(("ns", "kept"), "kept")["kind"] == "Service"
    woken.clear()
    # After a 410, the new listing: "gone" went meanwhile, "kept" is unchanged, "new" is new.
    inf.on_list([service(name="kept", owner="kept", rv="5", kind=False), service(name="new", owner="new", kind=False)])
    assert sorted(key[1] for key, _ in woken) == ["gone", "new"]
    assert sorted(k[1] for k in index) == ["kept", "new", "x"]  # the other namespace's object stays


def test_a_kind_the_cluster_does_not_serve_counts_as_listed_so_the_rest_go_on():
    inf, _ = informer()
    inf.on_failure(ConnectionError("reset"))
    assert not inf.synced.is_set()
    inf.on_failure(KubeError(404, "the server could not find the requested resource"))
    assert inf.synced.is_set() and len(inf.index) == 0


def test_one_informer_per_kind_and_namespace_and_one_index_per_kind():
    infs = Informers(None, ("Service", "Deployment"), ["a", "b"], "sel", lambda key, body: None)
    paths = sorted(i.path for i in infs.informers)
    assert paths == [
        "/api/v1/namespaces/a/pods",
        "/api/v1/namespaces/a/services",
        "/api/v1/namespaces/b/pods",
        "/api/v1/namespaces/b/services",
        "/apis/apps/v1/namespaces/a/deployments",
        "/apis/apps/v1/namespaces/b/deployments",
    ]
    assert sorted(infs.indexes) == sorted(
        [ReadModel.child_index("Service"), ReadModel.child_index("Deployment"), ReadModel.POD_INDEX]
    )
    assert not infs.synced()
    cluster = Informers(None, ("Service",), None, "sel", lambda key, body: None)
    assert sorted(i.path for i in cluster.informers) == ["/api/v1/pods", "/api/v1/services"]


def test_the_read_model_reads_the_informers_indexes():
    infs = Informers(None, ("Service",), ["ns"], "sel", lambda key, body: None)
    model = ReadModel()
    llmd = {"metadata": {"name": "m", "namespace": "ns", "uid": "u"}, "spec": {}, "status": {}}
    model.bind({ReadModel.LLMD_INDEX: {("ns", "m"): [llmd]}, **infs.indexes})
    svc = next(i for i in infs.informers if i.kind == "Service")
    svc.on_event("ADDED", service())
    observed = model.snapshot(("ns", "m"))
    assert [c["metadata"]["name"] for c in observed.children["Service"]] == ["m"]
    assert observed.pods == ()


def test_synced_waits_for_every_informer():
    async def main():
        infs = Informers(None, ("Service",), ["ns"], "sel", lambda key, body: None)
        waiting = asyncio.create_task(infs.wait_synced())
        infs.informers[0].on_list([])
        await asyncio.sleep(0)
        assert not waiting.done()
        infs.informers[1].on_list([])
        await asyncio.wait_for(waiting, 1)
        assert infs.synced()

    asyncio.run(main())

"""The endpoint store (gateway/endpoints.py) with literal inputs: LLMDeployments and pods ->
the table, a request's `model` -> model and adapter, what the proxy records per endpoint,
and who is told of a change."""

from gatewayobjects import llmd, pod

from llm_operator.gateway.endpoints import Endpoint, EndpointStore, Model, endpoint_of, model_of


def test_a_model_is_read_from_its_spec_and_status():
    m = model_of(
        llmd(
            "m",
            engine="vllm",
            replicas=0,
            autoscaling={"mode": "operator", "minReplicas": 0},
            adapters=[("bot", "bot"), ("broken", None)],
        )
    )
    assert (m.namespace, m.name, m.engine, m.replicas, m.ready, m.uid) == ("models", "m", "vllm", 0, True, "u-m")
    assert m.wakes
    assert m.adapters == (("bot", "bot"),)  # an adapter not served is not routed to
    assert not model_of(llmd("m", autoscaling={"mode": "hpa", "minReplicas": 1})).wakes
    assert model_of(llmd("m", stalled="does not fit")).stalled == "does not fit"


def test_the_engine_gets_the_model_name_it_serves():
    assert model_of(llmd("m")).upstream_model(None) == "tgi"  # TGI: anything else is an adapter id
    assert model_of(llmd("m", engine="vllm")).upstream_model(None) == "m"
    assert model_of(llmd("m")).upstream_model("org/bot") == "org/bot"


def test_only_ready_serving_pods_are_endpoints():
    assert endpoint_of(pod("p", "m")) == (("models", "m"), Endpoint("127.10.0.5", 8080, "p"))
    assert endpoint_of(pod("p", "m", ready=False))[1] is None
    assert endpoint_of(pod("p", "m", deleting=True))[1] is None  # terminating: no new requests
    assert endpoint_of(pod("p", "m", role="worker"))[1] is None  # a multi-node group's worker
    assert endpoint_of(pod("p", "m", role="leader"))[1] is not None
    no_ip = pod("p", "m")
    del no_ip["status"]["podIP"]
    assert endpoint_of(no_ip)[1] is None


def test_a_pod_turning_unready_leaves_the_table_at_once():
    routes = EndpointStore()
    routes.set_pod(pod("a", "m", ip="127.10.0.5"))
    routes.set_pod(pod("b", "m", ip="127.10.0.6"))
    assert [e.pod for e in routes.endpoints(("models", "m"))] == ["a", "b"]
    routes.set_pod(pod("a", "m", ready=False))
    assert [e.pod for e in routes.endpoints(("models", "m"))] == ["b"]
    routes.set_pod(pod("b", "m"), deleted=True)
    assert routes.endpoints(("models", "m")) == []
    changed = routes.replace_pods([pod("c", "other", ip="127.10.0.7")])
    assert changed == {("models", "other")}
    assert [e.pod for e in routes.endpoints(("models", "other"))] == ["c"]


def test_resolve_by_name_adapter_and_namespace():
    routes = EndpointStore()
    for obj in (
        llmd("llama"),
        llmd("mistral", adapters=[("support", "support")]),
        llmd("qwen", ns="a"),
        llmd("qwen", ns="b"),
        llmd("loading", ready=False),
    ):
        routes.set_model(model_of(obj))
    assert routes.resolve("llama").model.name == "llama"
    r = routes.resolve("support")
    assert (r.model.name, r.adapter) == ("mistral", "support")
    assert routes.resolve("a/qwen").model.namespace == "a"
    ambiguous = routes.resolve("qwen")
    assert ambiguous.model is None and ambiguous.status == 400 and "a/qwen, b/qwen" in ambiguous.error
    missing = routes.resolve("gpt-4")
    assert missing.status == 404
    assert missing.error == ("The model 'gpt-4' does not exist. Available: a/qwen, b/qwen, llama, mistral, support.")
    assert routes.resolve(None).status == 400
    # A model not Ready is routable (requests wait for it) but not listed.
    assert routes.resolve("loading").model.name == "loading"


def test_a_relist_replaces_one_namespace_or_all_and_names_every_key_it_touched():
    store = EndpointStore()
    told = []
    store.observe(told.append)
    store.replace_models([model_of(llmd("x", ns="a")), model_of(llmd("y", ns="a")), model_of(llmd("x", ns="b"))])
    assert sorted(told) == [("a", "x"), ("a", "y"), ("b", "x")]
    told.clear()
    store.replace_models([model_of(llmd("z", ns="a"))], "a")  # b's part stays
    assert sorted(store.models) == [("a", "z"), ("b", "x")]
    assert sorted(told) == [("a", "x"), ("a", "y"), ("a", "z")]  # the lost ones too: their waiters look
    told.clear()
    store.replace_pods([pod("p", "x", ns="b"), pod("q", "z", ns="a", ip="127.10.0.6")])
    assert sorted(told) == [("a", "z"), ("b", "x")]
    assert store.replace_pods([], "a") == {("a", "z")}
    assert store.endpoints(("a", "z")) == [] and [e.pod for e in store.endpoints(("b", "x"))] == ["p"]
    told.clear()
    store.set_endpoints(("a", "z"), [Endpoint("127.0.0.1", 9000, "z-0")])
    store.drop_model(("b", "x"))
    assert told == [("a", "z"), ("b", "x")]
    assert sorted(store.models) == [("a", "z")]


def test_in_flight_counts_and_ejections_per_endpoint():
    store = EndpointStore()
    a, b = Endpoint("127.0.0.2", 1, "a"), Endpoint("127.0.0.3", 1, "b")
    store.set_model(Model(namespace="n", name="m"))
    store.set_endpoints(("n", "m"), [b, a])
    assert store.endpoints(("n", "m")) == [a, b]  # by pod name
    store.acquire(a.hostport)
    store.acquire(a.hostport)
    store.acquire(b.hostport)
    assert store.outstanding == {a.hostport: 2, b.hostport: 1}
    store.release(a.hostport)
    store.release(b.hostport)
    assert store.outstanding == {a.hostport: 1}  # none left: no entry
    assert store.next_return(100.0) is None
    store.eject(a.hostport, 105.0)
    assert store.usable(("n", "m"), 100.0) == [b]
    assert store.next_return(100.0) == 105.0
    assert store.usable(("n", "m"), 105.0) == [a, b]  # back at its time
    assert store.next_return(105.0) is None

"""The gateway's pure parts with literal inputs: LLMDeployments and pods -> the routing
table, a request's `model` -> model and adapter, least-outstanding picks."""

import random

from llm_operator.gateway.routes import Endpoint, Model, Routes, endpoint_of, model_of, pick


def llmd(name, ns="models", ready=True, engine=None, replicas=1, autoscaling=None, adapters=(), stalled=""):
    spec = {"model": {"id": "org/m"}, "replicas": replicas}
    if engine:
        spec["engine"] = {"name": engine}
    if autoscaling:
        spec["autoscaling"] = autoscaling
    status = {"conditions": [{"type": "Ready", "status": "True" if ready else "False", "message": "m"}]}
    if stalled:
        status["conditions"].append({"type": "Stalled", "status": "True", "message": stalled})
    if adapters:
        spec["adapters"] = [{"name": a, "id": f"org/{a}"} for a, _ in adapters]
        status["adapters"] = [{"name": a, "served": served is not None, "servedAs": served or ""} for a, served in adapters]
    return {"metadata": {"name": name, "namespace": ns, "uid": "u-" + name}, "spec": spec, "status": status}


def pod(name, model, ns="models", ip="127.10.0.5", ready=True, deleting=False, role=None, port=8080):
    labels = {"llm-operator.io/name": model, "app.kubernetes.io/component": "server"}
    if role:
        labels["llm-operator.io/role"] = role
    meta = {"name": name, "namespace": ns, "labels": labels}
    if deleting:
        meta["deletionTimestamp"] = "2026-12-01T00:00:00Z"
    return {"metadata": meta,
            "spec": {"containers": [{"name": "engine", "ports": [{"name": "http", "containerPort": port}]}]},
            "status": {"podIP": ip, "conditions": [{"type": "Ready", "status": "True" if ready else "False"}]}}


def test_a_model_is_read_from_its_spec_and_status():
    m = model_of(llmd("m", engine="vllm", replicas=0, autoscaling={"mode": "operator", "minReplicas": 0},
                      adapters=[("bot", "bot"), ("broken", None)]))
    assert (m.namespace, m.name, m.engine, m.replicas, m.ready, m.uid) == ("models", "m", "vllm", 0, True, "u-m")
    assert m.wakes
    assert m.adapters == (("bot", "bot"),)        # an adapter not served is not routed to
    assert not model_of(llmd("m", autoscaling={"mode": "hpa", "minReplicas": 1})).wakes
    assert model_of(llmd("m", stalled="does not fit")).stalled == "does not fit"


def test_the_engine_gets_the_model_name_it_serves():
    assert model_of(llmd("m")).upstream_model(None) == "tgi"            # TGI: anything else is an adapter id
    assert model_of(llmd("m", engine="vllm")).upstream_model(None) == "m"
    assert model_of(llmd("m")).upstream_model("org/bot") == "org/bot"


def test_only_ready_serving_pods_are_endpoints():
    assert endpoint_of(pod("p", "m")) == (("models", "m"), Endpoint("127.10.0.5", 8080, "p"))
    assert endpoint_of(pod("p", "m", ready=False))[1] is None
    assert endpoint_of(pod("p", "m", deleting=True))[1] is None           # terminating: no new requests
    assert endpoint_of(pod("p", "m", role="worker"))[1] is None           # a multi-node group's worker
    assert endpoint_of(pod("p", "m", role="leader"))[1] is not None
    no_ip = pod("p", "m")
    del no_ip["status"]["podIP"]
    assert endpoint_of(no_ip)[1] is None


def test_a_pod_turning_unready_leaves_the_table_at_once():
    routes = Routes()
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
    routes = Routes()
    for obj in (llmd("llama"), llmd("mistral", adapters=[("support", "support")]), llmd("qwen", ns="a"),
                llmd("qwen", ns="b"), llmd("loading", ready=False)):
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


def test_least_outstanding_with_random_ties():
    a, b, c = Endpoint("127.0.0.2", 1, "a"), Endpoint("127.0.0.3", 1, "b"), Endpoint("127.0.0.4", 1, "c")
    load = {a.hostport: 3, b.hostport: 1, c.hostport: 1}
    picks = {pick([a, b, c], load, random.Random(seed)).pod for seed in range(40)}
    assert picks == {"b", "c"}                                            # never the busiest; both tied ones
    assert pick([a, b, c], {a.hostport: 0, b.hostport: 1, c.hostport: 1}).pod == "a"
    assert pick([a, b], load, exclude={b.hostport}).pod == "a"            # a retry goes elsewhere
    assert pick([a], {}, exclude={a.hostport}) is None
    assert pick([], {}) is None


def test_watch_events_and_per_namespace_relists_keep_the_table_whole():
    from llm_operator.gateway.server import Gateway, Settings

    gw = Gateway(Settings(), kube=object())          # a table fed by watches, never started here
    assert gw.synced == {"models": False, "pods": False}
    in_a, in_b = gw._merge_listed("models", "a", 2), gw._merge_listed("models", "b", 2)
    in_a([llmd("x", ns="a"), llmd("y", ns="a")])
    assert not gw.synced["models"]                     # b not listed yet
    in_b([llmd("x", ns="b")])
    assert gw.synced["models"]
    assert sorted(gw.routes.models) == [("a", "x"), ("a", "y"), ("b", "x")]
    in_a([llmd("y", ns="a")])                          # a relist of a drops what a lost, leaves b alone
    assert sorted(gw.routes.models) == [("a", "y"), ("b", "x")]
    gw.on_model_event("DELETED", llmd("y", ns="a"))
    assert sorted(gw.routes.models) == [("b", "x")]
    pods_a = gw._merge_listed("pods", "a", 2)
    pods_a([pod("p", "x", ns="a", ip="127.10.0.9")])
    gw.on_pod_event("ADDED", pod("q", "x", ns="b", ip="127.10.1.9"))
    pods_a([])
    assert gw.routes.endpoints(("a", "x")) == [] and [e.pod for e in gw.routes.endpoints(("b", "x"))] == ["q"]
    gw.on_pod_event("MODIFIED", pod("q", "x", ns="b", ip="127.10.1.9", ready=False))
    assert gw.routes.endpoints(("b", "x")) == []

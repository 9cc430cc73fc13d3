"""The watch feed (gateway/feed.py): lists and events into the endpoint store, what it
watches, and the static table that stands in for a cluster."""

import asyncio

from gatewayobjects import llmd, pod

from llm_operator.gateway.endpoints import POD_SELECTOR, Endpoint, EndpointStore
from llm_operator.gateway.feed import Feed, install_static, load_static


def test_watch_events_and_per_namespace_relists_keep_the_table_whole():
    store = EndpointStore()
    feed = Feed(store, kube=object())  # a table fed by watches, never started here
    assert feed.synced == {"models": False, "pods": False}
    in_a, in_b = feed.on_listed("models", "a", 2), feed.on_listed("models", "b", 2)
    in_a([llmd("x", ns="a"), llmd("y", ns="a")])
    assert not feed.synced["models"]  # b not listed yet
    in_b([llmd("x", ns="b")])
    assert feed.synced["models"]
    assert sorted(store.models) == [("a", "x"), ("a", "y"), ("b", "x")]
    in_a([llmd("y", ns="a")])  # a relist of a drops what a lost, leaves b alone
    assert sorted(store.models) == [("a", "y"), ("b", "x")]
    feed.on_model_event("DELETED", llmd("y", ns="a"))
    assert sorted(store.models) == [("b", "x")]
    pods_a = feed.on_listed("pods", "a", 2)
    pods_a([pod("p", "x", ns="a", ip="127.10.0.9")])
    feed.on_pod_event("ADDED", pod("q", "x", ns="b", ip="127.10.1.9"))
    pods_a([])
    assert store.endpoints(("a", "x")) == [] and [e.pod for e in store.endpoints(("b", "x"))] == ["q"]
    feed.on_pod_event("MODIFIED", pod("q", "x", ns="b", ip="127.10.1.9", ready=False))
    assert store.endpoints(("b", "x")) == []


def test_with_one_scope_a_relist_replaces_the_whole_table():
    store = EndpointStore()
    feed = Feed(store, kube=object())
    listed = feed.on_listed("models", None, 1)
    listed([llmd("x", ns="a"), llmd("y", ns="b")])
    assert feed.synced == {"models": True, "pods": False}
    listed([llmd("y", ns="b")])
    assert sorted(store.models) == [("b", "y")]
    feed.on_model_event("MODIFIED", llmd("y", ns="b", replicas=3))
    assert store.models[("b", "y")].replicas == 3


class FakeKube:
    """Records each list-watch asked for; lists what it was given, then waits for stop."""

    def __init__(self, items):
        self.items, self.watched = items, []

    async def list_watch(self, path, selector, on_list, on_event, stop):
        self.watched.append((path, selector))
        on_list(self.items.get(path, []))
        await stop.wait()


def test_one_list_watch_of_models_and_of_serving_pods_per_namespace():
    async def scenario(namespaces, items):
        store = EndpointStore()
        kube = FakeKube(items)
        feed = Feed(store, kube)
        feed.start(namespaces)
        for _ in range(100):
            if all(feed.synced.values()):
                break
            await asyncio.sleep(0)
        await feed.stop()
        return store, feed, kube.watched

    store, feed, watched = asyncio.run(
        scenario([], {"/apis/llm-operator.io/v1alpha1/llmdeployments": [llmd("m")], "/api/v1/pods": [pod("p", "m")]})
    )
    assert watched == [("/apis/llm-operator.io/v1alpha1/llmdeployments", ""), ("/api/v1/pods", POD_SELECTOR)]
    assert feed.synced == {"models": True, "pods": True}
    assert list(store.models) == [("models", "m")] and [e.pod for e in store.endpoints(("models", "m"))] == ["p"]
    _, feed, watched = asyncio.run(scenario(["a", "b"], {}))
    assert [w[0] for w in watched] == [
        "/apis/llm-operator.io/v1alpha1/namespaces/a/llmdeployments",
        "/api/v1/namespaces/a/pods",
        "/apis/llm-operator.io/v1alpha1/namespaces/b/llmdeployments",
        "/api/v1/namespaces/b/pods",
    ]
    assert feed.synced == {"models": True, "pods": True}
    assert POD_SELECTOR == "llm-operator.io/name,app.kubernetes.io/component=server"


def test_without_a_client_there_is_nothing_to_wait_for():
    feed = Feed(EndpointStore())
    assert feed.synced == {"models": True, "pods": True}
    feed.start(["a"])  # watches nothing


def test_a_static_table_from_a_file(tmp_path):
    path = tmp_path / "static.yaml"
    path.write_text(
        "- name: m\n  engine: vllm\n  endpoints: ['127.0.0.1:9000', '127.0.0.1:9001']\n"
        "  adapters: {sql: org/sql}\n  routing: {strategy: prefix, prefixChars: 300, loadFactorPercent: 150}\n"
        "- {name: n, namespace: other}\n"
    )
    table = load_static(str(path))
    (m, m_endpoints), (n, n_endpoints) = table
    assert (m.namespace, m.name, m.engine, m.ready, m.replicas, m.adapters) == (
        "default",
        "m",
        "vllm",
        True,
        2,
        (("sql", "org/sql"),),
    )
    assert (m.routing, m.prefix_chars, m.load_factor) == ("prefix", 300, 1.5)
    assert m_endpoints == [Endpoint("127.0.0.1", 9000, "m-0"), Endpoint("127.0.0.1", 9001, "m-1")]
    assert (n.key, n.engine, n.replicas, n.routing, n.prefix_chars, n.load_factor, n_endpoints) == (
        ("other", "n"),
        "tgi",
        0,
        "leastLoad",
        4096,
        1.25,
        [],
    )
    store = EndpointStore()
    told = []
    store.observe(told.append)
    install_static(store, table)
    assert store.endpoints(("default", "m")) == m_endpoints and store.models[("other", "n")] == n
    assert set(told) == {("default", "m"), ("other", "n")}

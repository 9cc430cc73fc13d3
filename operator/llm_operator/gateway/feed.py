"""The watch feed: list-then-watch of LLMDeployments and their serving pods through the
gateway's Kubernetes client (gateway/kube.py), each list and event turned into an update
of the endpoint store. Or, instead of a cluster, a static table from a file (`--static`).
"""

from __future__ import annotations

import asyncio
from collections.abc import Callable
from pathlib import Path
from typing import TYPE_CHECKING, Any

from llm_operator import api
from llm_operator.gateway import prefix
from llm_operator.gateway.endpoints import POD_SELECTOR, Endpoint, EndpointStore, Model, model_of
from llm_operator.kube import kinds

if TYPE_CHECKING:
    from llm_operator.gateway.kube import Kube

WHAT = ("models", "pods")


class Feed:
    """Keeps the store to what the API server says, one list-watch per kind and namespace
    (one of each in cluster scope). Without a client there is nothing to watch: the table
    is set some other way (install_static) and counts as synced from the start."""

    def __init__(self, store: EndpointStore, kube: Kube | None = None):
        self.store = store
        self.kube = kube
        self.synced = {what: kube is None for what in WHAT}  # the first list of each has arrived
        self._listed: dict[str, set[str | None]] = {what: set() for what in WHAT}
        self._tasks: list[asyncio.Task[None]] = []
        self._stop = asyncio.Event()

    # ---- lists and events -> the store ------------------------------------------------------
    def on_listed(self, what: str, namespace: str | None, scopes: int) -> Callable[[list[dict[str, Any]]], None]:
        """The on_list callback of one namespace's list-watch of `what` ("models" or "pods"):
        a (re)list replaces that namespace's part of the table (with one scope, all of it).
        Synced once every one of the `scopes` namespaces has listed."""
        part = namespace if scopes > 1 else None
        listed = self._listed[what]

        def apply(items: list[dict[str, Any]]) -> None:
            if what == "models":
                self.store.replace_models([model_of(obj) for obj in items], part)
            else:
                self.store.replace_pods(items, part)
            listed.add(namespace)
            self.synced[what] = len(listed) >= scopes

        return apply

    def on_model_event(self, kind: str, obj: dict[str, Any]) -> None:
        model = model_of(obj)
        if kind == "DELETED":
            self.store.drop_model(model.key)
        else:
            self.store.set_model(model)

    def on_pod_event(self, kind: str, obj: dict[str, Any]) -> None:
        self.store.set_pod(obj, deleted=kind == "DELETED")

    # ---- lifecycle -----------------------------------------------------------------------
    def start(self, namespaces: list[str]) -> None:
        """One list-watch of LLMDeployments and one of serving pods per namespace (cluster
        scope when none is named). The client must be started."""
        if self.kube is None:
            return
        scopes: list[str | None] = [*namespaces] or [None]
        for ns in scopes:
            self._tasks.append(
                asyncio.create_task(
                    self.kube.list_watch(
                        kinds.path(api.KIND, ns),
                        "",
                        self.on_listed("models", ns, len(scopes)),
                        self.on_model_event,
                        self._stop,
                    )
                )
            )
            self._tasks.append(
                asyncio.create_task(
                    self.kube.list_watch(
                        kinds.path("Pod", ns),
                        POD_SELECTOR,
                        self.on_listed("pods", ns, len(scopes)),
                        self.on_pod_event,
                        self._stop,
                    )
                )
            )

    async def stop(self) -> None:
        self._stop.set()
        for task in self._tasks:
            task.cancel()
        await asyncio.gather(*self._tasks, return_exceptions=True)


# ---- a static table ---------------------------------------------------------------------------


def load_static(path: str) -> list[tuple[Model, list[Endpoint]]]:
    """A fixed table instead of a cluster: a YAML/JSON list of
    {name, namespace, engine, adapters: {name: servedAs}, endpoints: ["host:port", ...],
    routing: {strategy, prefixChars, loadFactorPercent}} (routing as in an LLMDeployment's spec)."""
    import yaml

    out = []
    for item in yaml.safe_load(Path(path).read_text()) or []:
        model = Model(
            namespace=item.get("namespace", "default"),
            name=item["name"],
            engine=item.get("engine", "tgi"),
            ready=True,
            replicas=len(item.get("endpoints") or []),
            adapters=tuple((item.get("adapters") or {}).items()),
            routing=(item.get("routing") or {}).get("strategy", "leastLoad"),
            prefix_chars=int((item.get("routing") or {}).get("prefixChars", prefix.DEFAULT_PREFIX_CHARS)),
            load_factor=int((item.get("routing") or {}).get("loadFactorPercent", prefix.DEFAULT_LOAD_FACTOR_PERCENT))
            / 100,
        )
        endpoints = []
        for i, hostport in enumerate(item.get("endpoints") or []):
            host, _, port = hostport.rpartition(":")
            endpoints.append(Endpoint(host, int(port), f"{model.name}-{i}"))
        out.append((model, endpoints))
    return out


def install_static(store: EndpointStore, table: list[tuple[Model, list[Endpoint]]]) -> None:
    for model, endpoints in table:
        store.set_model(model)
        store.set_endpoints(model.key, endpoints)

"""The endpoint store: the gateway's picture of the models and where they are served. Pure
data and methods, no I/O.

The watch feed (feed.py) fills it with LLMDeployments and their serving pods, each object
trimmed to what routing needs; the proxy (proxy.py) records in it the requests it has in
flight per endpoint and the endpoints it ejected for refusing connections; `resolve` turns
a request's `model` into a model (and adapter). Whoever waits on the table (requests held
for a model, the ready-endpoints gauge) observes it: each change names the model's key.

Endpoints come from the pods the model's Service selects, with the readiness rule the
EndpointSlice controller applies (Ready condition true, not terminating): the same set
the Service's EndpointSlices hold, read from the pods directly (see docs/gateway.md for why).
"""

from __future__ import annotations

from collections.abc import Callable, Iterable
from dataclasses import dataclass
from typing import Any

from llm_operator.decide.manifests import NAME_LABEL, ROLE_LABEL, WORKER
from llm_operator.engines import PORT_NAME
from llm_operator.gateway import prefix

SERVER_COMPONENT = "server"
# The pods the gateway watches: the serving pods of every LLMDeployment.
POD_SELECTOR = f"{NAME_LABEL},app.kubernetes.io/component={SERVER_COMPONENT}"

Key = tuple[str, str]  # (namespace, name) of an LLMDeployment


@dataclass(frozen=True)
class Endpoint:
    address: str
    port: int
    pod: str

    @property
    def hostport(self) -> str:
        return f"{self.address}:{self.port}"


@dataclass(frozen=True)
class Model:
    """One LLMDeployment as the gateway sees it."""

    namespace: str
    name: str
    engine: str = "tgi"
    replicas: int = 1
    min_replicas: int = 1
    autoscaling_mode: str = "none"
    ready: bool = False
    stalled: str = ""  # the Stalled condition's message, when Stalled is True
    message: str = ""  # the Ready condition's message
    adapters: tuple[tuple[str, str], ...] = ()  # (name clients use, id the engine serves it as)
    uid: str = ""
    routing: str = "leastLoad"  # spec.routing.strategy
    prefix_chars: int = prefix.DEFAULT_PREFIX_CHARS
    load_factor: float = prefix.DEFAULT_LOAD_FACTOR_PERCENT / 100

    @property
    def key(self) -> Key:
        return (self.namespace, self.name)

    @property
    def label(self) -> str:
        return f"{self.namespace}/{self.name}"

    @property
    def wakes(self) -> bool:
        """At zero, may a request scale it to one? Only where zero is the autoscaler's floor."""
        return self.autoscaling_mode == "operator" and self.min_replicas == 0

    def upstream_model(self, adapter: str | None) -> str:
        """What the engine expects in the body's `model`: TGI reads any value but "tgi" as
        an adapter id; vLLM serves the base model under the LLMDeployment's name."""
        if adapter is not None:
            return adapter
        return "tgi" if self.engine == "tgi" else self.name


def _condition(status: dict[str, Any], ctype: str) -> dict[str, Any]:
    conditions: list[dict[str, Any]] = status.get("conditions") or []
    for c in conditions:
        if c.get("type") == ctype:
            return c
    return {}


def model_of(obj: dict[str, Any]) -> Model:
    """An LLMDeployment (as the API returns it) -> Model. Tolerates a partial object."""
    meta = obj.get("metadata") or {}
    spec = obj.get("spec") or {}
    status = obj.get("status") or {}
    autoscaling = spec.get("autoscaling") or {}
    routing = spec.get("routing") or {}
    ready = _condition(status, "Ready")
    stalled = _condition(status, "Stalled")
    adapters = []
    served = {a.get("name"): a for a in status.get("adapters") or [] if isinstance(a, dict)}
    for a in spec.get("adapters") or []:
        entry = served.get(a.get("name")) or {}
        if entry.get("served") and entry.get("servedAs"):
            adapters.append((a["name"], entry["servedAs"]))
    return Model(
        namespace=meta.get("namespace", ""),
        name=meta.get("name", ""),
        uid=meta.get("uid", ""),
        engine=((spec.get("engine") or {}).get("name") or "tgi"),
        replicas=int(spec.get("replicas", 1) if spec.get("replicas") is not None else 1),
        min_replicas=int(autoscaling.get("minReplicas", 1)),
        autoscaling_mode=autoscaling.get("mode", "none"),
        ready=ready.get("status") == "True",
        stalled=stalled.get("message", "") if stalled.get("status") == "True" else "",
        message=ready.get("message", ""),
        adapters=tuple(adapters),
        routing=routing.get("strategy", "leastLoad"),
        prefix_chars=int(routing.get("prefixChars", prefix.DEFAULT_PREFIX_CHARS)),
        load_factor=int(routing.get("loadFactorPercent", prefix.DEFAULT_LOAD_FACTOR_PERCENT)) / 100,
    )


def endpoint_of(pod: dict[str, Any]) -> tuple[Key, Endpoint | None]:
    """A serving pod -> (its model's key, its endpoint if it takes requests now, else None)."""
    meta = pod.get("metadata") or {}
    labels = meta.get("labels") or {}
    key = (meta.get("namespace", ""), labels.get(NAME_LABEL, ""))
    status = pod.get("status") or {}
    if labels.get(ROLE_LABEL) == WORKER or meta.get("deletionTimestamp"):
        return key, None
    if _condition(status, "Ready").get("status") != "True" or not status.get("podIP"):
        return key, None
    port = None
    for c in (pod.get("spec") or {}).get("containers") or []:
        for p in c.get("ports") or []:
            if p.get("name") == PORT_NAME:
                port = p.get("containerPort")
    if not port:
        return key, None
    return key, Endpoint(status["podIP"], int(port), meta.get("name", ""))


@dataclass
class Resolved:
    model: Model | None = None
    adapter: str | None = None  # the id the engine serves the adapter as
    error: str = ""  # why not, when model is None
    status: int = 200


class EndpointStore:
    """Models and their ready endpoints, keyed by (namespace, name), and per endpoint
    (HOST:PORT) the requests in flight there and until when it is ejected."""

    def __init__(self) -> None:
        self.models: dict[Key, Model] = {}
        self.pods: dict[Key, dict[str, Endpoint]] = {}  # key -> pod name -> endpoint
        self.outstanding: dict[str, int] = {}  # host:port -> requests sent there and not finished
        self.ejected: dict[str, float] = {}  # host:port -> monotonic time it may be used again
        self._observers: list[Callable[[Key], None]] = []

    def observe(self, observer: Callable[[Key], None]) -> None:
        """Call `observer(key)` after each change that may touch the model `key` or its endpoints."""
        self._observers.append(observer)

    def _changed(self, keys: Iterable[Key]) -> None:
        for key in keys:
            for observer in self._observers:
                observer(key)

    # ---- models ------------------------------------------------------------------------
    def set_model(self, model: Model) -> None:
        self.models[model.key] = model
        self._changed((model.key,))

    def drop_model(self, key: Key) -> None:
        self.models.pop(key, None)
        self._changed((key,))

    def replace_models(self, models: Iterable[Model], namespace: str | None = None) -> None:
        """After a (re)list: exactly these models, in `namespace` (None: in every namespace)."""
        before = {k for k in self.models if namespace is None or k[0] == namespace}
        for key in before:
            del self.models[key]
        for model in models:
            self.models[model.key] = model
        self._changed(before | {k for k in self.models if namespace is None or k[0] == namespace})

    # ---- endpoints -----------------------------------------------------------------------
    def _put_pod(self, pod: dict[str, Any], deleted: bool = False) -> Key:
        key, endpoint = endpoint_of(pod)
        name = (pod.get("metadata") or {}).get("name", "")
        table = self.pods.setdefault(key, {})
        if endpoint is None or deleted:
            table.pop(name, None)
        else:
            table[name] = endpoint
        if not table:
            self.pods.pop(key, None)
        return key

    def set_pod(self, pod: dict[str, Any], deleted: bool = False) -> Key:
        """A serving pod added, changed or (deleted) gone. Returns its model's key."""
        key = self._put_pod(pod, deleted)
        self._changed((key,))
        return key

    def replace_pods(self, pods: list[dict[str, Any]], namespace: str | None = None) -> set[Key]:
        """After a (re)list: exactly these pods, in `namespace` (None: in every namespace).
        Returns every key whose endpoints may have changed."""
        before = {k for k in self.pods if namespace is None or k[0] == namespace}
        for key in before:
            del self.pods[key]
        keys = {self._put_pod(pod) for pod in pods}
        changed = before | keys
        self._changed(changed)
        return changed

    def set_endpoints(self, key: Key, endpoints: Iterable[Endpoint]) -> None:
        """A model's endpoints given outright (a static table) rather than read from pods."""
        self.pods[key] = {e.pod: e for e in endpoints}
        self._changed((key,))

    def endpoints(self, key: Key) -> list[Endpoint]:
        return sorted((self.pods.get(key) or {}).values(), key=lambda e: e.pod)

    def usable(self, key: Key, now: float) -> list[Endpoint]:
        """The model's ready endpoints that are not ejected at `now`."""
        return [e for e in self.endpoints(key) if self.ejected.get(e.hostport, 0) <= now]

    # ---- what the proxy records per endpoint -------------------------------------------
    def acquire(self, hostport: str) -> None:
        """A request sent to `hostport`."""
        self.outstanding[hostport] = self.outstanding.get(hostport, 0) + 1

    def release(self, hostport: str) -> None:
        """A request at `hostport` finished (answered, failed or cancelled)."""
        self.outstanding[hostport] -= 1
        if not self.outstanding[hostport]:
            del self.outstanding[hostport]

    def eject(self, hostport: str, until: float) -> None:
        """Skip `hostport` until the monotonic time `until` (it refused a connection)."""
        self.ejected[hostport] = until

    def next_return(self, now: float) -> float | None:
        """The soonest time after `now` an ejected endpoint may be used again, if any."""
        return min((t for t in self.ejected.values() if t > now), default=None)

    # ---- reading ---------------------------------------------------------------------
    def resolve(self, requested: object) -> Resolved:
        """The body's `model` -> a model and adapter. Accepted: an LLMDeployment's name (or
        namespace/name when the name is in several namespaces), an adapter's name or the id
        it is served as."""
        if not requested or not isinstance(requested, str):
            return Resolved(
                error=f'The request names no model: set the body\'s "model" to one of {self.names_sentence()}.',
                status=400,
            )
        if "/" in requested:
            ns, _, name = requested.partition("/")
            model = self.models.get((ns, name))
            if model:
                return Resolved(model)
        by_name = [m for m in self.models.values() if m.name == requested]
        if len(by_name) == 1:
            return Resolved(by_name[0])
        if len(by_name) > 1:
            options = ", ".join(sorted(m.label for m in by_name))
            return Resolved(
                error=f"Model {requested!r} is served in several namespaces: name one of {options}.", status=400
            )
        hits = [(m, served) for m in self.models.values() for name, served in m.adapters if requested in (name, served)]
        if len(hits) == 1:
            return Resolved(hits[0][0], hits[0][1])
        if len(hits) > 1:
            options = ", ".join(sorted(f"{m.label} (as {served})" for m, served in hits))
            return Resolved(
                error=f"Adapter {requested!r} is served by several models: name one of {options}.", status=400
            )
        return Resolved(
            error=f"The model {requested!r} does not exist. Available: {self.names_sentence()}.", status=404
        )

    def listed(self) -> list[Model]:
        """Models a client can ask for: Ready (which includes scaled to zero, woken on request)."""
        return sorted((m for m in self.models.values() if m.ready), key=lambda m: m.key)

    def names(self) -> list[str]:
        counts: dict[str, int] = {}
        for m in self.listed():
            counts[m.name] = counts.get(m.name, 0) + 1
        out = []
        for m in self.listed():
            out.append(m.name if counts[m.name] == 1 else m.label)
            out.extend(name for name, _ in m.adapters)
        return out

    def names_sentence(self) -> str:
        names = self.names()
        return ", ".join(names) if names else "none (no LLMDeployment is Ready)"

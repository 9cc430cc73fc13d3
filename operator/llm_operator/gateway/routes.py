"""The gateway's picture of the cluster, and the pure decisions made from it.

Fed by two watches (LLMDeployments, and the serving pods of every LLMDeployment), each
object trimmed to what routing needs. Nothing here does I/O: `Routes` is a plain table,
`resolve` turns a request's `model` into a model (and adapter), `pick` chooses an endpoint
by least outstanding requests with ties broken at random.

Endpoints come from the pods the model's Service selects, with the readiness rule the
EndpointSlice controller applies (Ready condition true, not terminating): the same set
the Service's EndpointSlices hold, read from the pods directly (see the README for why).
"""

from __future__ import annotations

import random
from dataclasses import dataclass, field

from llm_operator import api
from llm_operator.decide import manifests as resources
from llm_operator.gateway import prefix

SERVER_COMPONENT = "server"
# The pods the gateway watches: the serving pods of every LLMDeployment.
POD_SELECTOR = f"{resources.NAME_LABEL},app.kubernetes.io/component={SERVER_COMPONENT}"


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
    stalled: str = ""            # the Stalled condition's message, when Stalled is True
    message: str = ""            # the Ready condition's message
    adapters: tuple[tuple[str, str], ...] = ()   # (name clients use, id the engine serves it as)
    uid: str = ""
    routing: str = "leastLoad"   # spec.routing.strategy
    prefix_chars: int = prefix.DEFAULT_PREFIX_CHARS
    load_factor: float = prefix.DEFAULT_LOAD_FACTOR_PERCENT / 100

    @property
    def key(self) -> tuple[str, str]:
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


def _condition(status: dict, ctype: str) -> dict:
    for c in status.get("conditions") or []:
        if c.get("type") == ctype:
            return c
    return {}


def model_of(obj: dict) -> Model:
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
        namespace=meta.get("namespace", ""), name=meta.get("name", ""), uid=meta.get("uid", ""),
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


def endpoint_of(pod: dict) -> tuple[tuple[str, str], Endpoint | None]:
    """A serving pod -> (its model's key, its endpoint if it takes requests now, else None)."""
    meta = pod.get("metadata") or {}
    labels = meta.get("labels") or {}
    key = (meta.get("namespace", ""), labels.get(resources.NAME_LABEL, ""))
    status = pod.get("status") or {}
    if labels.get(resources.ROLE_LABEL) == resources.WORKER or meta.get("deletionTimestamp"):
        return key, None
    if _condition(status, "Ready").get("status") != "True" or not status.get("podIP"):
        return key, None
    port = None
    for c in (pod.get("spec") or {}).get("containers") or []:
        for p in c.get("ports") or []:
            if p.get("name") == resources.PORT_NAME:
                port = p.get("containerPort")
    if not port:
        return key, None
    return key, Endpoint(status["podIP"], int(port), meta.get("name", ""))


@dataclass
class Resolved:
    model: Model | None = None
    adapter: str | None = None     # the id the engine serves the adapter as
    error: str = ""                # why not, when model is None
    status: int = 200


@dataclass
class Routes:
    """Models and their ready endpoints, keyed by (namespace, name)."""

    models: dict[tuple[str, str], Model] = field(default_factory=dict)
    pods: dict[tuple[str, str], dict[str, Endpoint]] = field(default_factory=dict)   # key -> pod name -> endpoint

    # ---- updates from the watches --------------------------------------------------
    def set_model(self, model: Model) -> None:
        self.models[model.key] = model

    def drop_model(self, key: tuple[str, str]) -> None:
        self.models.pop(key, None)

    def set_pod(self, pod: dict, deleted: bool = False) -> tuple[str, str]:
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

    def replace_pods(self, pods: list[dict]) -> set[tuple[str, str]]:
        """After a (re)list: exactly these pods. Returns every key whose endpoints may have changed."""
        before = set(self.pods)
        self.pods = {}
        for pod in pods:
            self.set_pod(pod)
        return before | set(self.pods)

    def endpoints(self, key: tuple[str, str]) -> list[Endpoint]:
        return sorted((self.pods.get(key) or {}).values(), key=lambda e: e.pod)

    # ---- reading ---------------------------------------------------------------------
    def resolve(self, requested: str) -> Resolved:
        """The body's `model` -> a model and adapter. Accepted: an LLMDeployment's name (or
        namespace/name when the name is in several namespaces), an adapter's name or the id
        it is served as."""
        if not requested or not isinstance(requested, str):
            return Resolved(error="The request names no model: set the body's \"model\" to one of "
                                  f"{self.names_sentence()}.", status=400)
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
            return Resolved(error=f"Model {requested!r} is served in several namespaces: name one of {options}.",
                            status=400)
        hits = [(m, served) for m in self.models.values() for name, served in m.adapters
                if requested in (name, served)]
        if len(hits) == 1:
            return Resolved(hits[0][0], hits[0][1])
        if len(hits) > 1:
            options = ", ".join(sorted(f"{m.label} (as {served})" for m, served in hits))
            return Resolved(error=f"Adapter {requested!r} is served by several models: name one of {options}.",
                            status=400)
        return Resolved(error=f"The model {requested!r} does not exist. Available: {self.names_sentence()}.",
                        status=404)

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


def pick(endpoints: list[Endpoint], outstanding: dict[str, int], rng: random.Random | None = None,
         exclude: set[str] = frozenset()) -> Endpoint | None:
    """Least outstanding requests (the gateway's own count per endpoint), ties at random."""
    candidates = [e for e in endpoints if e.hostport not in exclude]
    if not candidates:
        return None
    least = min(outstanding.get(e.hostport, 0) for e in candidates)
    tied = [e for e in candidates if outstanding.get(e.hostport, 0) == least]
    return tied[0] if len(tied) == 1 else (rng or random).choice(tied)

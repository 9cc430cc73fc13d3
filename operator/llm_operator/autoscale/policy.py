"""Operator-native autoscaling, the pure part: engine /metrics text -> load -> replica decision.

The loop (loop.py) scrapes each ready pod's /metrics, turns each into a `PodSample`,
calls `decide` with the state it stored in `status.autoscaler` and the current replica
count, scales to `Decision.desired_replicas` when the action is not "hold", and stores
`state.to_dict()` back. Nothing here does I/O or reads a clock: `now` is passed in.

Rules, in order:
- minReplicas 0 and 0 replicas: hold at 0. Only a request (through the gateway) wakes a
  model; nothing here does. While it runs, its floor is 1 (so a model just woken, with no
  ready pod yet, is kept at 1), except for one rule:
- scaleToZeroAfterSeconds (minReplicas 0 only): once the gateway has taken no request for
  the model for that long (its requests counter unchanged and nothing in flight or held,
  tick after tick), scale to 0. Without the gateway's counts nothing says "no request"
  (an engine's idle gauges miss requests between scrapes), so the model is not put to
  sleep and the reason says why;
- bounds first: below the floor (minReplicas, at least 1) scale up at once, above
  maxReplicas scale down to maxReplicas at once (the spec says so; no delay applies to the
  spec's own bounds);
- no pod answered: hold, and restart the scale-down timer (never scale down on no data);
- need = clamp(ceil(load / target)), with load = max(newest total, mean of the last 60 s):
  the newest sample makes a burst act at once, the mean keeps one quiet scrape between busy
  ones from counting as a drop;
- need > current: scale up at once;
- need < current: scale down only once need has stayed below current for
  scaleDownDelaySeconds without a break, and then to the highest need seen in that time
  (as the HPA's scale-down stabilization window does), so a dip does not remove too much.
An unreachable pod counts as unknown: its load is estimated as the mean of the pods that
answered, never as zero, which would scale down the replicas that are too busy to answer.
"""

from __future__ import annotations

import math
import re
from dataclasses import dataclass, replace
from typing import Any, Protocol

from llm_common.words import plural
from llm_operator.api.names import GATEWAY_HELD, GATEWAY_IN_FLIGHT, GATEWAY_REQUESTS
from llm_operator.engines import DEFAULT_ENGINE, LoadMetrics, engine_named

WINDOW_SECONDS = 60.0  # moving window the mean load is taken over
MAX_OBSERVATIONS = 20  # bound on the stored window, so status.autoscaler stays small

_NAME = re.compile(r"[a-zA-Z_:][a-zA-Z0-9_:]*")
_SKIPPED_TYPES = {
    "histogram": ("_bucket", "_sum", "_count", "_created"),
    "gaugehistogram": ("_bucket", "_gsum", "_gcount"),
    "summary": ("_sum", "_count", "_created"),
}


def parse_prometheus_text(text: str) -> dict[str, float]:
    """Prometheus text exposition -> {sample name: value summed over its label sets}.

    Counters, gauges and untyped samples are kept; histogram and summary series are left
    out (the scaler reads gauges only). Malformed lines are skipped; NaN and +Inf are kept
    (they poison their sum), so that `load_of` can call such a pod unknown, not idle.
    """
    types: dict[str, str] = {}
    samples: list[tuple[str, str]] = []
    for raw in text.splitlines():
        line = raw.strip()
        if line.startswith("#"):
            parts = line.split(None, 3)
            if len(parts) >= 4 and parts[1] == "TYPE":
                types[parts[2]] = parts[3].strip().lower()
            continue
        match = _NAME.match(line)
        if not match:
            continue
        rest = line[match.end() :]
        if rest.startswith("{"):
            end = _labels_end(rest)
            if end is None:
                continue
            rest = rest[end:]
        fields = rest.split()
        if fields:
            samples.append((match.group(), fields[0]))
    out: dict[str, float] = {}
    for name, text_value in samples:
        if _in_skipped_family(name, types):
            continue
        try:
            out[name] = out.get(name, 0.0) + float(text_value)
        except ValueError:
            continue
    return out


# The name it had while TGI was the only engine.
parse_tgi_metrics = parse_prometheus_text


def _labels_end(rest: str) -> int | None:
    """Index just past the closing brace of a label set, minding quoted values and escapes."""
    quoted = escaped = False
    for i, ch in enumerate(rest):
        if escaped:
            escaped = False
        elif ch == "\\":
            escaped = quoted
        elif ch == '"':
            quoted = not quoted
        elif ch == "}" and not quoted:
            return i + 1
    return None


def _in_skipped_family(name: str, types: dict[str, str]) -> bool:
    if types.get(name) in _SKIPPED_TYPES:
        return True
    return any(
        name.endswith(suffix) and suffix in _SKIPPED_TYPES.get(types.get(name[: -len(suffix)], ""), ())
        for suffix in ("_bucket", "_sum", "_count", "_created", "_gsum", "_gcount")
    )


def load_of(metrics: dict[str, float], metric: str, names: LoadMetrics | None = None) -> float | None:
    """One pod's load for the spec's metric, read with the engine's metric names (the
    default engine's when none are given); None (unknown) when the text is not the
    engine's at all or the gauge reads NaN or infinite.

    An engine registers a gauge only when first set (TGI sets its queue gauge at the first
    request), so a pod of the engine without the gauge has 0.
    """
    return (names or engine_named(DEFAULT_ENGINE).load_metrics).load(metrics, metric)


@dataclass(frozen=True)
class PodSample:
    pod: str
    load: float | None  # None: unreachable or not the engine's metrics, so unknown (not zero)


_MODEL_LABEL = re.compile(r'(?:^|,)\s*model="((?:[^"\\]|\\.)*)"')


@dataclass(frozen=True)
class GatewayCounts:
    in_flight: float = 0.0
    held: float = 0.0
    requests: float = 0.0


def gateway_counts(text: str) -> dict[str, GatewayCounts]:
    """One gateway's /metrics text -> {namespace/name: its counts} (requests summed over codes).
    A model the gateway has never seen a request for has no series: absent, read as zero."""
    fields = {GATEWAY_IN_FLIGHT: "in_flight", GATEWAY_HELD: "held", GATEWAY_REQUESTS: "requests"}
    out: dict[str, dict[str, float]] = {}
    for raw in text.splitlines():
        line = raw.strip()
        name, brace, rest = line.partition("{")
        if not brace or name not in fields:
            continue
        end = _labels_end("{" + rest)
        if end is None:
            continue
        labels, value = rest[: end - 2], rest[end - 1 :].split()
        match = _MODEL_LABEL.search(labels)
        if not match or not value:
            continue
        try:
            number = float(value[0])
        except ValueError:
            continue
        if not math.isfinite(number):
            continue
        model = match.group(1).replace('\\"', '"').replace("\\\\", "\\")
        counts = out.setdefault(model, {})
        counts[fields[name]] = counts.get(fields[name], 0.0) + number
    return {model: GatewayCounts(**counts) for model, counts in out.items()}


def sum_gateway_counts(
    readings: list[dict[str, GatewayCounts] | None], model: str
) -> tuple[list[PodSample], GatewayCounts | None]:
    """Per gateway replica (None: it did not answer) -> the model's samples, one per replica
    (its requests in flight, held included), and its counts summed over the replicas that
    answered (None when none did)."""
    samples, total, answered = [], GatewayCounts(), 0
    for i, reading in enumerate(readings):
        if reading is None:
            samples.append(PodSample(f"gateway-{i}", None))
            continue
        counts = reading.get(model, GatewayCounts())
        samples.append(PodSample(f"gateway-{i}", counts.in_flight))
        total = GatewayCounts(
            total.in_flight + counts.in_flight, total.held + counts.held, total.requests + counts.requests
        )
        answered += 1
    return samples, (total if answered else None)


class AutoscalingSpecLike(Protocol):
    """What `decide` reads of api.Autoscaling."""

    # Read-only, so that api.Autoscaling's enum metric (a str) is one.
    @property
    def min_replicas(self) -> int: ...
    @property
    def max_replicas(self) -> int: ...
    @property
    def metric(self) -> str: ...
    @property
    def target(self) -> int: ...
    @property
    def scale_down_delay_seconds(self) -> int: ...
    @property
    def scale_to_zero_after_seconds(self) -> int | None: ...


@dataclass(frozen=True)
class Observation:
    time: float
    load: float  # total over the pods, unknown pods estimated
    known_pods: int
    pods: int


@dataclass(frozen=True)
class Decision:
    desired_replicas: int
    action: str  # scale-up | scale-down | hold
    reason: str
    inputs: dict[str, Any]

    def to_dict(self) -> dict[str, Any]:
        return {
            "desiredReplicas": self.desired_replicas,
            "action": self.action,
            "reason": self.reason,
            "inputs": dict(self.inputs),
        }


@dataclass(frozen=True)
class ScalerState:
    window: tuple[Observation, ...] = ()
    low_since: float | None = None  # when need first fell below current, unbroken since
    low_peak: int | None = None  # highest need seen since low_since
    last_scale_time: float | None = None
    last_decision: dict[str, Any] | None = None
    idle_since: float | None = None  # since when the gateway has taken no request for the model
    requests_seen: float | None = None  # the gateway's requests counter at the last tick

    def to_dict(self) -> dict[str, Any]:
        """JSON for status.autoscaler. Every key is always present (None as null) so that a
        JSON merge patch of the status clears a timer instead of leaving the old value."""
        return {
            "window": [[o.time, o.load, o.known_pods, o.pods] for o in self.window],
            "lowSince": self.low_since,
            "lowPeak": self.low_peak,
            "lastScaleTime": self.last_scale_time,
            "lastDecision": self.last_decision,
            "idleSince": self.idle_since,
            "requestsSeen": self.requests_seen,
        }

    @classmethod
    def from_dict(cls, data: dict[str, Any] | None) -> ScalerState:
        """Back from status.autoscaler; None or {} (first run) gives a fresh state."""
        data = data or {}
        window = tuple(
            Observation(float(t), float(load), int(known), int(pods))
            for t, load, known, pods in data.get("window") or ()
        )
        low_since, low_peak, last = data.get("lowSince"), data.get("lowPeak"), data.get("lastScaleTime")
        idle_since, seen = data.get("idleSince"), data.get("requestsSeen")
        return cls(
            window=window[-MAX_OBSERVATIONS:],
            low_since=None if low_since is None else float(low_since),
            low_peak=None if low_peak is None else int(low_peak),
            last_scale_time=None if last is None else float(last),
            last_decision=data.get("lastDecision"),
            idle_since=None if idle_since is None else float(idle_since),
            requests_seen=None if seen is None else float(seen),
        )


def decide(
    state: ScalerState,
    samples: list[PodSample],
    current_replicas: int,
    spec: AutoscalingSpecLike,
    now: float,
    *,
    source: str = "pods",
    gateway: GatewayCounts | None = None,
) -> tuple[Decision, ScalerState]:
    """The replica count the load asks for now, and the state to store for the next call.

    source "pods": a sample per ready pod; "gateway": a sample per gateway replica, its
    requests in flight for the model. gateway: the model's counts summed over the gateway
    replicas that answered (None: none did), what scaleToZeroAfterSeconds is timed by."""
    lo, hi, target = spec.min_replicas, spec.max_replicas, spec.target
    asleep = lo == 0 and current_replicas == 0
    floor = max(lo, 1)  # minReplicas 0 is where a model may sleep, not where it is put
    delay, metric = spec.scale_down_delay_seconds, str(getattr(spec.metric, "value", spec.metric))
    known = [s.load for s in samples if s.load is not None]
    unknown = len(samples) - len(known)
    window = tuple(o for o in state.window if now - WINDOW_SECONDS < o.time <= now)
    inputs = {
        "metric": metric,
        "target": target,
        "pods": len(samples),
        "knownPods": len(known),
        "currentReplicas": current_replicas,
        "minReplicas": lo,
        "maxReplicas": hi,
        "scaleDownDelaySeconds": delay,
    }
    if known:
        known_load = sum(known)
        estimated = known_load / len(known) * unknown
        total = round(known_load + estimated, 3)
        window = (window + (Observation(now, total, len(known), len(samples)),))[-MAX_OBSERVATIONS:]
        mean = round(sum(o.load for o in window) / len(window), 3)
        load = max(total, mean)
        raw = math.ceil(round(load / target, 6))
        need = min(hi, max(floor, raw))
        inputs.update(
            knownLoad=round(known_load, 3),
            estimatedLoad=round(estimated, 3),
            load=total,
            windowMean=mean,
            windowSamples=len(window),
            needed=raw,
        )
        if source == "gateway":
            seen = f"{metric} {known_load:g} through the gateway ({len(known)} of {len(samples)} gateway replicas answered)"
        else:
            seen = f"{metric} {known_load:g} across {len(known)} of {len(samples)} pods"
        if unknown:
            seen += f" ({unknown} unreachable, estimated {estimated:g} more)"
        if mean > total:
            seen += f", {WINDOW_SECONDS:g} s mean {mean:g}"
        seen += f", target {target} per replica -> {plural(raw, 'replica')}"
        if need != raw:
            if raw > hi:
                seen += f" (capped at maxReplicas {need})"
            else:
                seen += f" (raised to minReplicas {need})" if lo >= 1 else f" (raised to {need} while running)"
    else:
        need = None
        seen = (
            f"no {metric} data: none of {len(samples)} gateway replicas answered"
            if source == "gateway"
            else f"no {metric} data: none of {len(samples)} ready pods answered"
        )

    # Idle: the gateway took no request since the last tick and holds none in flight.
    after = spec.scale_to_zero_after_seconds if lo == 0 else None
    idle_since = None
    requests_seen = None if gateway is None else gateway.requests
    if (
        after is not None
        and not asleep
        and gateway is not None
        and gateway.in_flight == 0
        and state.requests_seen is not None
        and requests_seen == state.requests_seen
    ):
        idle_since = state.idle_since if state.idle_since is not None else now
    idle_for = None if idle_since is None else now - idle_since
    if after is not None:
        inputs.update(scaleToZeroAfterSeconds=after, idleSince=idle_since)

    low_since = low_peak = None
    if asleep:
        desired, action = 0, "hold"
        why = "holding at 0 (minReplicas 0): a request through the gateway wakes the model"
    elif after is not None and idle_for is not None and idle_for >= after and current_replicas > 0:
        desired, action = 0, "scale-down"
        why = (
            f"no request through the gateway for {idle_for:g} s (scaleToZeroAfterSeconds {after}); scaling to 0, "
            "the next request wakes the model"
        )
        idle_since = None
    elif current_replicas < floor:
        desired, action = need or floor, "scale-up"
        why = f"{plural(current_replicas, 'replica')} is below minReplicas {lo}; scaling up to {desired}"
    elif current_replicas > hi:
        desired, action = hi, "scale-down"
        why = f"{plural(current_replicas, 'replica')} is above maxReplicas {hi}; scaling down to {hi}"
    elif need is None:
        desired, action = current_replicas, "hold"
        why = f"holding at {current_replicas}; never scaling down without data"
    elif need > current_replicas:
        desired, action = need, "scale-up"
        why = f"scaling up from {current_replicas} to {need}"
    elif need == current_replicas:
        desired, action = current_replicas, "hold"
        why = f"holding at {current_replicas}"
    else:
        low_since = state.low_since if state.low_since is not None else now
        low_peak = max(need, state.low_peak or 0) if state.low_since is not None else need
        below = now - low_since
        if below >= delay:
            desired, action = low_peak, "scale-down"
            why = f"below {current_replicas} for {below:g} s (delay {delay} s); scaling down to {low_peak}"
            low_since = low_peak = None
        else:
            desired, action = current_replicas, "hold"
            why = f"below {current_replicas} for {below:g} of {delay} s; holding at {current_replicas}"

    if after is not None and not asleep and action != "scale-down":
        if gateway is None:
            why += (
                "; not scaling to zero: scaleToZeroAfterSeconds needs the gateway's request counts and no "
                "gateway answered (the operator's --gateway-pods or --gateway-metrics-url)"
            )
        elif idle_for is not None:
            why += f"; no request for {idle_for:g} of {after} s before scaling to 0"
    inputs["lowSince"] = low_since
    decision = Decision(desired, action, f"{seen}; {why}.", inputs)
    new_state = replace(
        state,
        window=window,
        low_since=low_since,
        low_peak=low_peak,
        last_scale_time=now if action != "hold" else state.last_scale_time,
        last_decision={"time": now, **decision.to_dict()},
        idle_since=idle_since,
        requests_seen=requests_seen,
    )
    return decision, new_state

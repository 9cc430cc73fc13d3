"""Choosing an endpoint for a request, all in one place. Pure.

The candidates are a model's usable endpoints (ready, not ejected: the endpoint store's
`usable`) less those this request already tried. Among them, by the model's
spec.routing.strategy:

- leastLoad (the default): the fewest outstanding requests (the gateway's own count per
  endpoint), ties broken at random.
- prefix: consistent hashing with bounded loads (CHWBL). The request's key (prefix.py: the
  adapter and the start of the prompt) lands on a ring of the candidates; the first one
  clockwise whose load is below the bound takes it. The bound is ceil(load_factor * (L + 1)
  / n) for total load L over n candidates, so no endpoint goes above load_factor times the
  mean, and one always fits (the least loaded one is never above the bound): a home over
  the bound, or already tried, spills to the next on the ring.
"""

from __future__ import annotations

import math
import random
from collections.abc import Container, Iterable
from dataclasses import dataclass
from typing import Any

from llm_operator.gateway import prefix
from llm_operator.gateway.endpoints import Endpoint, Key, Model
from llm_operator.gateway.prefix import Ring, hash64

HOME, SPILLED = "home", "spilled"  # where a prefix-routed request went


def route_key(model: Model, body: dict[str, Any], adapter: str | None) -> bytes | None:
    """What a request is routed by besides load: its prefix key under strategy prefix, else None."""
    return prefix.prefix_key(body, adapter, model.prefix_chars) if model.routing == "prefix" else None


# ---- least outstanding requests ------------------------------------------------------------


def pick_least_outstanding(
    endpoints: list[Endpoint],
    outstanding: dict[str, int],
    rng: random.Random | None = None,
    exclude: Container[str] = frozenset(),
) -> Endpoint | None:
    """Least outstanding requests (the gateway's own count per endpoint), ties at random."""
    candidates = [e for e in endpoints if e.hostport not in exclude]
    if not candidates:
        return None
    least = min(outstanding.get(e.hostport, 0) for e in candidates)
    tied = [e for e in candidates if outstanding.get(e.hostport, 0) == least]
    return tied[0] if len(tied) == 1 else (rng or random).choice(tied)


# ---- prefix: the ring with bounded loads -------------------------------------------------------


def load_bound(loads: dict[str, int], members: Iterable[str], load_factor: float) -> int:
    """Most outstanding requests a replica may have before it takes one more."""
    members = list(members)
    total = sum(loads.get(m, 0) for m in members)
    return math.ceil(load_factor * (total + 1) / len(members))


@dataclass(frozen=True)
class Choice:
    member: str
    spilled: bool  # not the key's home: its home (or more) was over the bound or excluded


def pick_by_prefix(
    ring: Ring, key: bytes, loads: dict[str, int], load_factor: float, exclude: Iterable[str] = ()
) -> Choice | None:
    """The first member clockwise from the key's hash whose load is below the bound;
    None when every member is excluded."""
    exclude = set(exclude)
    candidates = [m for m in ring.members if m not in exclude]
    if not candidates:
        return None
    cap = load_bound(loads, candidates, load_factor)
    first = True
    for member in ring.walk(hash64(key)):
        if member in exclude:
            first = False
            continue
        if loads.get(member, 0) + 1 <= cap:
            return Choice(member, spilled=not first)
        first = False
    # Unreachable with load_factor >= 1 (the least loaded member is below the bound); kept total.
    return Choice(min(candidates, key=lambda m: (loads.get(m, 0), m)), spilled=True)


# ---- by the model's strategy ------------------------------------------------------------------


class Scheduler:
    """Picks an endpoint by the model's spec.routing; keeps each prefix-routed model's ring
    (rebuilt when its usable endpoints change) and the random source for ties."""

    def __init__(self, rng: random.Random | None = None):
        self.rng = rng or random.Random()
        self.rings: dict[Key, Ring] = {}

    def pick(
        self, model: Model, usable: list[Endpoint], outstanding: dict[str, int], tried: set[str], key: bytes | None
    ) -> tuple[Endpoint, str] | None:
        """(endpoint, outcome) by the model's strategy, outcome HOME or SPILLED when routed by
        prefix and "" otherwise; None when every usable endpoint was tried (or there is none)."""
        if key is None or model.routing != "prefix" or not usable:
            least = pick_least_outstanding(usable, outstanding, self.rng, tried)
            return None if least is None else (least, "")
        members = frozenset(e.hostport for e in usable)
        ring = self.rings.get(model.key)
        if ring is None or ring.members != members:
            ring = self.rings[model.key] = Ring(members)
        choice = pick_by_prefix(ring, key, outstanding, model.load_factor, tried)
        if choice is None:
            return None
        return next(e for e in usable if e.hostport == choice.member), SPILLED if choice.spilled else HOME

"""Choosing an endpoint (gateway/scheduling.py) with literal inputs: least outstanding
requests, the prefix ring's load bound and spills, and the pick by a model's strategy."""

from __future__ import annotations

import random

import pytest

from llm_operator.gateway.endpoints import Endpoint, Model
from llm_operator.gateway.prefix import Ring, hash64, prefix_key
from llm_operator.gateway.scheduling import (
    HOME,
    SPILLED,
    Choice,
    Scheduler,
    load_bound,
    pick_by_prefix,
    pick_least_outstanding,
    route_key,
)

A, B, C, D = "127.0.0.1:8001", "127.0.0.1:8002", "127.0.0.1:8003", "127.0.0.1:8004"


def key_homed_at(ring: Ring, member: str, start: int = 0) -> bytes:
    for i in range(start, start + 10_000):
        key = f"key-{i}".encode()
        if ring.home(key) == member:
            return key
    raise AssertionError(f"no key homed at {member}")


# ---- least outstanding ---------------------------------------------------------------------


def test_least_outstanding_with_random_ties():
    pick = pick_least_outstanding
    a, b, c = Endpoint("127.0.0.2", 1, "a"), Endpoint("127.0.0.3", 1, "b"), Endpoint("127.0.0.4", 1, "c")
    load = {a.hostport: 3, b.hostport: 1, c.hostport: 1}
    picks = {pick([a, b, c], load, random.Random(seed)).pod for seed in range(40)}
    assert picks == {"b", "c"}  # never the busiest; both tied ones
    assert pick([a, b, c], {a.hostport: 0, b.hostport: 1, c.hostport: 1}).pod == "a"
    assert pick([a, b], load, exclude={b.hostport}).pod == "a"  # a retry goes elsewhere
    assert pick([a], {}, exclude={a.hostport}) is None
    assert pick([], {}) is None


# ---- the bound and the pick by prefix --------------------------------------------------------


def test_the_load_bound_in_literals():
    # 4 outstanding over 4 replicas, factor 1.25: ceil(1.25 * 5 / 4) = 2.
    assert load_bound({A: 3, B: 1, C: 0, D: 0}, [A, B, C, D], 1.25) == 2
    assert load_bound({}, [A, B, C, D], 1.25) == 1  # idle: one each before spilling
    assert load_bound({A: 10, B: 10}, [A, B], 1.0) == 11  # ceil(21 / 2)
    assert load_bound({A: 7, B: 1}, [A, B], 1.5) == 7  # ceil(1.5 * 9 / 2) = ceil(6.75)


def test_home_takes_the_request_while_under_the_bound():
    ring = Ring([A, B, C, D])
    key = key_homed_at(ring, A)
    # cap ceil(1.25*4/4) = 2
    assert pick_by_prefix(ring, key, {A: 1, B: 1, C: 1, D: 0}, 1.25) == Choice(A, spilled=False)


def test_a_home_over_the_bound_spills_to_the_next_on_the_ring():
    ring = Ring([A, B, C, D])
    key = key_homed_at(ring, A)
    second = list(ring.walk(hash64(key)))[1]
    loads = {A: 3, B: 1, C: 0, D: 0}  # cap 2: A (3) is over it, the rest under
    choice = pick_by_prefix(ring, key, loads, 1.25)
    assert choice == Choice(second, spilled=True)


def test_excluded_members_are_skipped_and_all_excluded_is_none():
    ring = Ring([A, B])
    key = key_homed_at(ring, A)
    assert pick_by_prefix(ring, key, {}, 1.25, exclude={A}) == Choice(B, spilled=True)
    assert pick_by_prefix(ring, key, {}, 1.25, exclude={A, B}) is None


@pytest.mark.parametrize("factor", [1.0, 1.25, 2.0])
def test_no_assignment_ever_exceeds_the_bound(factor):
    """Random arrivals and completions: every pick lands at or under ceil(f * (L + 1) / n)."""
    rng = random.Random(7)
    ring = Ring([A, B, C, D])
    loads = {A: 0, B: 0, C: 0, D: 0}
    hot = [f"prefix-{i}".encode() for i in range(3)]  # three hot keys: homes overflow
    for _ in range(5_000):
        if rng.random() < 0.55:
            cap = load_bound(loads, loads, factor)
            choice = pick_by_prefix(ring, rng.choice(hot), loads, factor)
            loads[choice.member] += 1
            assert loads[choice.member] <= cap
        else:
            busy = [m for m, n in loads.items() if n]
            if busy:
                loads[rng.choice(busy)] -= 1
    assert max(loads.values()) <= load_bound(loads, loads, factor) + 1


# ---- by the model's strategy -------------------------------------------------------------------


def endpoints(*hostports: str) -> list[Endpoint]:
    return [Endpoint("127.0.0.1", int(hp.rpartition(":")[2]), f"pod{i}") for i, hp in enumerate(hostports)]


LEAST = Model(namespace="n", name="least")
PREFIX = Model(namespace="n", name="prefix", routing="prefix", prefix_chars=8, load_factor=1.25)


def test_only_a_prefix_routed_model_has_a_route_key():
    body = {"messages": [{"role": "system", "content": "You are terse."}]}
    assert route_key(LEAST, body, None) is None
    assert route_key(PREFIX, body, "bot") == prefix_key(body, "bot", 8) == b"bot\x00system\x1fY"


def test_least_load_is_picked_without_a_key_or_under_strategy_least_load():
    usable = endpoints(A, B, C)
    scheduler = Scheduler(random.Random(1))
    assert scheduler.pick(LEAST, usable, {A: 2, B: 0, C: 1}, set(), b"ignored") == (usable[1], "")
    assert scheduler.pick(PREFIX, usable, {A: 2, B: 0, C: 1}, set(), None) == (usable[1], "")
    assert scheduler.pick(LEAST, usable, {}, {A, B, C}, None) is None  # every one tried
    assert scheduler.pick(PREFIX, [], {}, set(), b"k") is None  # none usable
    assert scheduler.rings == {}  # no ring for least load


def test_by_prefix_a_key_goes_home_then_spills_and_the_ring_follows_the_usable_set():
    usable = endpoints(A, B, C, D)
    scheduler = Scheduler(random.Random(1))
    ring = Ring([A, B, C, D])
    key = key_homed_at(ring, A)
    second = list(ring.walk(hash64(key)))[1]
    assert scheduler.pick(PREFIX, usable, {}, set(), key) == (usable[0], HOME)
    by_hostport = {e.hostport: e for e in usable}
    assert scheduler.pick(PREFIX, usable, {A: 3, B: 1}, set(), key) == (by_hostport[second], SPILLED)  # over cap 2
    assert scheduler.pick(PREFIX, usable, {}, {A}, key) == (by_hostport[second], SPILLED)  # A failed it
    assert scheduler.pick(PREFIX, usable, {}, {A, B, C, D}, key) is None
    assert scheduler.rings[PREFIX.key].members == frozenset([A, B, C, D])
    cached = scheduler.rings[PREFIX.key]
    scheduler.pick(PREFIX, usable, {}, set(), key)
    assert scheduler.rings[PREFIX.key] is cached  # same endpoints: same ring
    scheduler.pick(PREFIX, usable[1:], {}, set(), key)  # A left: a ring without it
    assert scheduler.rings[PREFIX.key].members == frozenset([B, C, D])

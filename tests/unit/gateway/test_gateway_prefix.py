"""Prefix-aware routing (gateway/prefix.py): keys, the ring, the load bound, spills."""

from __future__ import annotations

import random

import pytest

from llm_operator.gateway.prefix import Choice, Ring, hash64, load_bound, pick, prefix_key

A, B, C, D = "127.0.0.1:8001", "127.0.0.1:8002", "127.0.0.1:8003", "127.0.0.1:8004"


def key_homed_at(ring: Ring, member: str, start: int = 0) -> bytes:
    for i in range(start, start + 10_000):
        key = f"key-{i}".encode()
        if ring.home(key) == member:
            return key
    raise AssertionError(f"no key homed at {member}")


# ---- keys ------------------------------------------------------------------------------

def test_chat_key_is_the_messages_in_order_up_to_the_limit():
    body = {"model": "m", "messages": [{"role": "system", "content": "You are terse."},
                                       {"role": "user", "content": "hello"}]}
    assert prefix_key(body, None) == b"\x00system\x1fYou are terse.\x1euser\x1fhello\x1e"
    assert prefix_key(body, None, max_chars=10) == b"\x00system\x1fYou"
    # Only the start counts: the same system prompt with another question shares a 20-char key.
    other = {"messages": [{"role": "system", "content": "You are terse."}, {"role": "user", "content": "bye"}]}
    assert prefix_key(body, None, 20) == prefix_key(other, None, 20)
    assert prefix_key(body, None) != prefix_key(other, None)


def test_content_parts_and_completion_prompts():
    parts = {"messages": [{"role": "user", "content": [{"type": "text", "text": "a"}, {"type": "image_url"},
                                                         {"type": "text", "text": "b"}]}]}
    assert prefix_key(parts, None) == b"\x00user\x1fab\x1e"
    assert prefix_key({"prompt": "Once upon a time"}, None, 9) == b"\x00Once upon"
    assert prefix_key({"prompt": ["first", "second"]}, None) == b"\x00first"
    assert prefix_key({"prompt": 42}, None) == b"\x00"


def test_an_adapter_is_hashed_apart_from_its_base_model():
    body = {"prompt": "same words"}
    assert prefix_key(body, "support") == b"support\x00same words"
    assert prefix_key(body, "support") != prefix_key(body, None) != prefix_key(body, "sales")


# ---- the ring ----------------------------------------------------------------------------

def test_walk_gives_every_member_once_home_first():
    ring = Ring([A, B, C, D])
    order = list(ring.walk(hash64(b"k")))
    assert sorted(order) == sorted([A, B, C, D]) and order[0] == ring.home(b"k")
    assert list(Ring([]).walk(1)) == [] and Ring([]).home(b"k") is None


def test_shares_are_even_enough():
    ring = Ring([A, B, C, D])
    counts = {m: 0 for m in (A, B, C, D)}
    for i in range(20_000):
        counts[ring.home(f"user-{i}".encode())] += 1
    assert all(0.18 < n / 20_000 < 0.32 for n in counts.values()), counts


def test_a_joining_replica_takes_only_keys_and_a_leaving_one_gives_only_its_own():
    keys = [f"k{i}".encode() for i in range(5_000)]
    three, four = Ring([A, B, C]), Ring([A, B, C, D])
    before = {k: three.home(k) for k in keys}
    after = {k: four.home(k) for k in keys}
    moved = [k for k in keys if before[k] != after[k]]
    assert moved and all(after[k] == D for k in moved)           # only to the newcomer
    assert 0.15 < len(moved) / len(keys) < 0.35                  # about its quarter
    # D leaves again: exactly its keys move, back where they were.
    assert {k: Ring([A, B, C]).home(k) for k in keys} == before


# ---- the bound and the pick ------------------------------------------------------------------

def test_the_load_bound_in_literals():
    # 4 outstanding over 4 replicas, factor 1.25: ceil(1.25 * 5 / 4) = 2.
    assert load_bound({A: 3, B: 1, C: 0, D: 0}, [A, B, C, D], 1.25) == 2
    assert load_bound({}, [A, B, C, D], 1.25) == 1                # idle: one each before spilling
    assert load_bound({A: 10, B: 10}, [A, B], 1.0) == 11           # ceil(21 / 2)
    assert load_bound({A: 7, B: 1}, [A, B], 1.5) == 7              # ceil(1.5 * 9 / 2) = ceil(6.75)


def test_home_takes_the_request_while_under_the_bound():
    ring = Ring([A, B, C, D])
    key = key_homed_at(ring, A)
    assert pick(ring, key, {A: 1, B: 1, C: 1, D: 0}, 1.25) == Choice(A, spilled=False)   # cap ceil(1.25*4/4) = 2


def test_a_home_over_the_bound_spills_to_the_next_on_the_ring():
    ring = Ring([A, B, C, D])
    key = key_homed_at(ring, A)
    second = list(ring.walk(hash64(key)))[1]
    loads = {A: 3, B: 1, C: 0, D: 0}                                # cap 2: A (3) is over it, the rest under
    choice = pick(ring, key, loads, 1.25)
    assert choice == Choice(second, spilled=True)


def test_excluded_members_are_skipped_and_all_excluded_is_none():
    ring = Ring([A, B])
    key = key_homed_at(ring, A)
    assert pick(ring, key, {}, 1.25, exclude={A}) == Choice(B, spilled=True)
    assert pick(ring, key, {}, 1.25, exclude={A, B}) is None


@pytest.mark.parametrize("factor", [1.0, 1.25, 2.0])
def test_no_assignment_ever_exceeds_the_bound(factor):
    """Random arrivals and completions: every pick lands at or under ceil(f * (L + 1) / n)."""
    rng = random.Random(7)
    ring = Ring([A, B, C, D])
    loads = {A: 0, B: 0, C: 0, D: 0}
    hot = [f"prefix-{i}".encode() for i in range(3)]                # three hot keys: homes overflow
    for _ in range(5_000):
        if rng.random() < 0.55:
            cap = load_bound(loads, loads, factor)
            choice = pick(ring, rng.choice(hot), loads, factor)
            loads[choice.member] += 1
            assert loads[choice.member] <= cap
        else:
            busy = [m for m, n in loads.items() if n]
            if busy:
                loads[rng.choice(busy)] -= 1
    assert max(loads.values()) <= load_bound(loads, loads, factor) + 1

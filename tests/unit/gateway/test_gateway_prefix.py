"""Prefix-aware routing's keys and ring (gateway/prefix.py); the load bound and spills are in
test_gateway_scheduling.py."""

from __future__ import annotations

from llm_operator.gateway.prefix import Ring, hash64, prefix_key

A, B, C, D = "127.0.0.1:8001", "127.0.0.1:8002", "127.0.0.1:8003", "127.0.0.1:8004"


# ---- keys ------------------------------------------------------------------------------


def test_chat_key_is_the_messages_in_order_up_to_the_limit():
    body = {
        "model": "m",
        "messages": [{"role": "system", "content": "You are terse."}, {"role": "user", "content": "hello"}],
    }
    assert prefix_key(body, None) == b"\x00system\x1fYou are terse.\x1euser\x1fhello\x1e"
    assert prefix_key(body, None, max_chars=10) == b"\x00system\x1fYou"
    # Only the start counts: the same system prompt with another question shares a 20-char key.
    other = {"messages": [{"role": "system", "content": "You are terse."}, {"role": "user", "content": "bye"}]}
    assert prefix_key(body, None, 20) == prefix_key(other, None, 20)
    assert prefix_key(body, None) != prefix_key(other, None)


def test_content_parts_and_completion_prompts():
    parts = {
        "messages": [
            {
                "role": "user",
                "content": [{"type": "text", "text": "a"}, {"type": "image_url"}, {"type": "text", "text": "b"}],
            }
        ]
    }
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
    assert moved and all(after[k] == D for k in moved)  # only to the newcomer
    assert 0.15 < len(moved) / len(keys) < 0.35  # about its quarter
    # D leaves again: exactly its keys move, back where they were.
    assert {k: Ring([A, B, C]).home(k) for k in keys} == before

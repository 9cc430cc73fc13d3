"""Prefix-aware routing's keys and ring, for consistent hashing with bounded loads (CHWBL;
the bound and the pick are in scheduling.py). Pure.

A request's key is the start of its prompt (the chat messages in order, or the completion
prompt) up to `prefix_chars` characters, with the adapter's name in front so that a base
model's and an adapter's caches are hashed apart. The key's hash lands on a ring of
virtual nodes, VNODES per replica; walking clockwise from it gives the key's home replica
first, then the others in the order a request spills to them. Replicas joining or leaving
the ring move only the keys whose nearest point was theirs.
"""

from __future__ import annotations

import bisect
import hashlib
from collections.abc import Iterable, Iterator
from typing import Any

VNODES = 100  # points per replica: with 4 replicas the shares stay within a few percent
DEFAULT_PREFIX_CHARS = 4096
DEFAULT_LOAD_FACTOR_PERCENT = 125


def hash64(data: bytes) -> int:
    return int.from_bytes(hashlib.blake2b(data, digest_size=8).digest(), "big")


def _text(content: object) -> str:
    """A message's content: a string, or OpenAI's list of parts (their text, in order)."""
    if isinstance(content, str):
        return content
    if isinstance(content, list):
        return "".join(p.get("text", "") for p in content if isinstance(p, dict) and isinstance(p.get("text"), str))
    return ""


def prefix_key(body: dict[str, Any], adapter: str | None, max_chars: int = DEFAULT_PREFIX_CHARS) -> bytes:
    """The routing key of an OpenAI request body: adapter, then the prompt's first max_chars."""
    if isinstance(body.get("messages"), list):
        parts = []
        for m in body["messages"]:
            if isinstance(m, dict):
                parts.append(f"{m.get('role', '')}\x1f{_text(m.get('content'))}\x1e")
        prompt = "".join(parts)
    else:
        given = body.get("prompt")
        if isinstance(given, list):  # a batch of prompts: the first one decides
            given = given[0] if given else ""
        prompt = given if isinstance(given, str) else ""
    # surrogatepass: a JSON string may hold a lone surrogate ("\\ud800"), which strict UTF-8 refuses
    return (adapter or "").encode() + b"\x00" + prompt[:max_chars].encode("utf-8", "surrogatepass")


class Ring:
    """Consistent-hash ring of replica names (HOST:PORT), VNODES points each."""

    def __init__(self, members: Iterable[str], vnodes: int = VNODES):
        self.members = frozenset(members)
        points = sorted((hash64(f"{m}#{i}".encode()), m) for m in self.members for i in range(vnodes))
        self._hashes = [h for h, _ in points]
        self._owners = [m for _, m in points]

    def walk(self, key_hash: int) -> Iterator[str]:
        """Distinct members clockwise from key_hash: the key's home first."""
        n = len(self._hashes)
        if not n:
            return
        start = bisect.bisect_left(self._hashes, key_hash)
        seen: set[str] = set()
        for i in range(n):
            owner = self._owners[(start + i) % n]
            if owner not in seen:
                seen.add(owner)
                yield owner
                if len(seen) == len(self.members):
                    return

    def home(self, key: bytes) -> str | None:
        return next(self.walk(hash64(key)), None)

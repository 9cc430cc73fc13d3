"""The fake engine's prefix cache: an LRU of full blocks of prompt tokens, each block's hash chained
over its whole prefix (and the adapter), as vLLM's.
"""

from __future__ import annotations

from collections import OrderedDict


class PrefixCache:
    """An LRU of chained block hashes; a block's hash covers its whole prefix, so a hit on block k
    means blocks 0..k are the same. Only full blocks are cached."""

    def __init__(self, block_tokens: int, capacity_blocks: int):
        if block_tokens < 1:
            raise ValueError(f"block_tokens must be at least 1, not {block_tokens}")
        self.block_tokens, self.capacity = block_tokens, capacity_blocks
        self.blocks: OrderedDict[int, None] = OrderedDict()

    def block_hashes(self, namespace: str | None, tokens: list[str]) -> list[int]:
        # The adapter is part of the root: an adapter's KV cache is not the base model's.
        h, out, b = hash(("root", namespace)), [], self.block_tokens
        for start in range(0, len(tokens) - b + 1, b):
            h = hash((h, tuple(tokens[start : start + b])))
            out.append(h)
        return out

    def cached_tokens(self, hashes: list[int]) -> int:
        """Tokens covered by the longest run of cached leading blocks; those blocks become most recent."""
        n = 0
        for h in hashes:
            if h not in self.blocks:
                break
            self.blocks.move_to_end(h)
            n += 1
        return n * self.block_tokens

    def insert(self, hashes: list[int]) -> None:
        if self.capacity <= 0:
            return
        for h in hashes:
            self.blocks[h] = None
            self.blocks.move_to_end(h)
        while len(self.blocks) > self.capacity:
            self.blocks.popitem(last=False)

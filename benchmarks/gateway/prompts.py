"""The routing scenario's shared prefixes: random words for the fake engines, prefixes sized in
the real engines' own tokens for vLLM; and where the gateway's prefix ring homes them."""

from __future__ import annotations

import random
import re

from .real_engines import RealEngines


def routing_prompts(prefixes: int, prefix_words: int, seed: int = 16) -> list[str]:
    """`prefixes` long system prompts (a product manual, a RAG context...), distinct from the first word."""
    rng = random.Random(seed)
    vocabulary = [f"w{i}" for i in range(5000)]
    return [" ".join([f"doc{p}"] + rng.choices(vocabulary, k=prefix_words - 1)) for p in range(prefixes)]


def sized_prompts(prefixes: int, tokens: int, count_tokens, vocabulary: list[str], seed: int = 16) -> list[str]:
    """`prefixes` documents as routing_prompts makes them ("doc{p}", then random words), each the
    longest run of words that count_tokens (a real engine's tokenizer) finds no longer than `tokens`."""
    rng = random.Random(seed)
    out = []
    for p in range(prefixes):
        words = [f"doc{p}"]
        while count_tokens(" ".join(words)) <= tokens:
            words += rng.choices(vocabulary, k=64)
        low, high = 1, len(words) - 1  # words[:low] fits, words[:high + 1] does not
        while low < high:
            middle = (low + high + 1) // 2
            if count_tokens(" ".join(words[:middle])) <= tokens:
                low = middle
            else:
                high = middle - 1
        out.append(" ".join(words[:low]))
    return out


def real_prompts(real: RealEngines, prefixes: int, tokens: int) -> list[str]:
    """Prefixes of `tokens` tokens of the engines' own tokenizer, in words of the text it was trained on."""
    from tokenizers import Tokenizer

    tokenizer = Tokenizer.from_file(str(real.model_dir / "tokenizer.json"))
    # Words the tokenizer was trained on take few tokens each, so a prefix outruns the prefix strategy's prefixChars.
    vocabulary = sorted({w for w in re.findall(r"[a-z]+", real.training_text.read_text().lower()) if len(w) > 2})
    return sized_prompts(
        prefixes, tokens, lambda text: len(tokenizer.encode(text, add_special_tokens=False).ids), vocabulary
    )


def prefix_homes(prompts: list[str], endpoints: list[str], prefix_chars: int) -> dict[str, int]:
    """How many of the prompts' prefixes the gateway's prefix ring homes on each endpoint."""
    from llm_operator.gateway import prefix

    ring = prefix.Ring(endpoints)
    homes = {e: 0 for e in endpoints}
    for text in prompts:
        key = prefix.prefix_key({"messages": [{"role": "system", "content": text}]}, None, prefix_chars)
        homes[ring.home(key)] += 1
    return homes

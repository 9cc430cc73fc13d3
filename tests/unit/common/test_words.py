"""Counts in sentences: one noun for 1, the plural for every other count."""

import pytest

from llm_common.words import noun, plural


@pytest.mark.parametrize(
    "n, want",
    [(0, "0 GPUs"), (1, "1 GPU"), (2, "2 GPUs"), (16, "16 GPUs")],
)
def test_plural_agrees_with_the_count(n, want):
    assert plural(n, "GPU") == want


def test_plural_keeps_a_noun_phrase_whole():
    assert plural(1, "key-value head") == "1 key-value head"
    assert plural(8, "key-value head") == "8 key-value heads"
    assert plural(1, "ready replica") == "1 ready replica"
    assert plural(3, "ready replica") == "3 ready replicas"


def test_an_irregular_plural_is_given():
    assert plural(1, "index", "indices") == "1 index"
    assert plural(2, "index", "indices") == "2 indices"


def test_noun_alone_for_a_count_said_otherwise():
    assert noun(1, "GPU") == "GPU"
    assert noun(4, "GPU") == "GPUs"
    assert noun(0, "taint") == "taints"

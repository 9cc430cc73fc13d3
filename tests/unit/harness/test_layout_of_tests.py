"""The test tree itself: pytest imports each test file by its base name (rootdir-relative
imports, no packages), so two test files of one name in different tiers break collection of
the whole suite, though each tier on its own collects."""

from __future__ import annotations

from collections import defaultdict
from pathlib import Path

TESTS = Path(__file__).resolve().parents[2]


def test_every_test_file_has_a_name_no_other_test_file_has():
    where: defaultdict[str, list[str]] = defaultdict(list)
    for path in TESTS.rglob("test_*.py"):
        where[path.name].append(str(path.relative_to(TESTS)))
    assert {name: paths for name, paths in where.items() if len(paths) > 1} == {}

"""Where things are: the repository's root, from which the tests find the chart, the CRDs,
examples/ and tests/data/."""

from __future__ import annotations

from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
DATA = ROOT / "tests" / "data"
CHART = ROOT / "charts" / "llm-operator"

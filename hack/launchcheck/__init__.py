"""The parts of hack/check_launcher.py (TGI's launcher on what the operator renders):

    cases.py     the manifests checked: the built-in variants, the known crash cases, files
    launcher.py  one launcher run as the pod would make it, and what TGI refuses later

Importing this package puts this tree's operator (operator/, common/) first on sys.path,
whatever the venv has installed.
"""

from __future__ import annotations

import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent.parent
MODELS = ROOT / "tests" / "data" / "models"
# The operator of this tree, whatever the venv has installed.
sys.path[:0] = [str(ROOT / "operator"), str(ROOT / "common")]

"""The weight cache's layout on its volume, as the download Job writes it and the operator
and the serving pods read it: huggingface_hub's cache under `hub/` (so HF_HOME is the
volume), and our completion markers under `llm-operator/`."""

from __future__ import annotations

from pathlib import Path
from urllib.parse import quote

DEFAULT_CACHE_DIR = "/data"  # where the serving pods mount the volume (TGI's image sets HF_HOME=/data)

MARKER_DIR = "llm-operator"
MARKER_NAME = "COMPLETE"


def repo_folder(repo_id: str) -> str:
    """huggingface_hub's folder name for a model repository: models--org--name."""
    return "models--" + repo_id.replace("/", "--")


def repo_dir(cache_dir: str | Path, repo_id: str) -> Path:
    return Path(cache_dir) / "hub" / repo_folder(repo_id)


def snapshot_dir(repo_id: str, commit: str, cache_dir: str | Path = DEFAULT_CACHE_DIR) -> str:
    """Where huggingface-hub's cache layout keeps a downloaded revision."""
    return str(repo_dir(cache_dir, repo_id) / "snapshots" / commit)


def marker_path(cache_dir: str | Path, repo_id: str, revision: str) -> Path:
    # A revision may contain "/" (refs/pr/1, feature/x): quoted, it stays one directory.
    return Path(cache_dir) / MARKER_DIR / repo_id.replace("/", "--") / quote(revision, safe="") / MARKER_NAME

"""The cache layout on the volume: what a download leaves there, as the Hub cache TGI reads offline.

`cache_dir/hub/models--org--name/{blobs,snapshots,refs}` (so HF_HOME=cache_dir), plus the
completion marker, written last. repo_folder, repo_dir, marker_path and the snapshot path come
from llm_common.cache: the operator reads the same layout.
"""

from __future__ import annotations

import hashlib
import json
import os
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from llm_common.cache import marker_path
from llm_common.cache import snapshot_dir as _snapshot_path
from llm_common.modelfacts import ModelFacts


@dataclass(frozen=True)
class RemoteFile:
    """One file of a repository revision, as the Hub describes it."""

    name: str
    size: int
    blob_id: str | None = None  # git object id (sha1 of "blob <size>\0" + content)
    sha256: str | None = None  # LFS files only: the content's sha256, also their ETag

    @property
    def etag(self) -> str:
        # The name huggingface_hub gives the blob: the LFS sha256, else the git object id.
        return self.sha256 or self.blob_id or hashlib.sha256(self.name.encode()).hexdigest()


@dataclass(frozen=True)
class DownloadResult:
    repo_id: str
    revision: str
    commit: str
    snapshot_dir: Path
    files: tuple[RemoteFile, ...]
    downloaded_bytes: int = 0  # fetched by this run (0 when the cache was already complete)
    facts: ModelFacts | None = None

    @property
    def total_bytes(self) -> int:
        return sum(f.size for f in self.files)


# --- reading: the marker and the snapshot -----------------------------------------------------


def read_marker(cache_dir: str | Path, repo_id: str, revision: str) -> dict[str, Any] | None:
    try:
        marker = json.loads(marker_path(cache_dir, repo_id, revision).read_text())
    except (FileNotFoundError, NotADirectoryError):
        return None
    except ValueError:
        return None  # unreadable: as good as absent, the next download rewrites it
    return (
        marker if isinstance(marker, dict) and marker.get("commit") and isinstance(marker.get("files"), list) else None
    )


def _snapshot_dir(cache_dir: str | Path, repo_id: str, commit: str) -> Path:
    return Path(_snapshot_path(repo_id, commit, cache_dir))


def is_complete(cache_dir: str | Path, model_id: str, revision: str) -> bool:
    """True when the marker is there and every file it lists is in the snapshot with its size."""
    marker = read_marker(cache_dir, model_id, revision)
    if marker is None:
        return False
    snapshot = _snapshot_dir(cache_dir, model_id, marker["commit"])
    for entry in marker["files"]:
        try:
            if (snapshot / entry["name"]).stat().st_size != entry["size"]:
                return False
        except (OSError, KeyError, TypeError):
            return False
    return True


def cached_snapshot_dir(cache_dir: str | Path, repo_id: str, revision: str) -> Path | None:
    """The complete snapshot of repo_id@revision in the cache, or None."""
    if not is_complete(cache_dir, repo_id, revision):
        return None
    marker = read_marker(cache_dir, repo_id, revision)
    assert marker is not None  # is_complete has just read it
    return _snapshot_dir(cache_dir, repo_id, marker["commit"])


def result_from_marker(cache_dir: str | Path, marker: dict[str, Any]) -> DownloadResult:
    """The DownloadResult a marker describes (no facts, nothing downloaded)."""
    files = tuple(RemoteFile(e["name"], e["size"], e.get("blobId"), e.get("sha256")) for e in marker["files"])
    return DownloadResult(
        marker["repoId"],
        marker["revision"],
        marker["commit"],
        _snapshot_dir(cache_dir, marker["repoId"], marker["commit"]),
        files,
    )


# --- writing: atomically, the marker last -----------------------------------------------------


def _write_atomically(path: Path, text: str) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    temporary = path.with_name(f".{path.name}.{os.getpid()}.tmp")
    with open(temporary, "w") as out:
        out.write(text)
        out.flush()
        os.fsync(out.fileno())  # the marker must not reach the disk before its content
    os.replace(temporary, path)


def write_marker(cache_dir: str | Path, result: DownloadResult) -> None:
    marker = {
        "repoId": result.repo_id,
        "revision": result.revision,
        "commit": result.commit,
        "completedAt": datetime.now(UTC).strftime("%Y-%m-%dT%H:%M:%SZ"),
        "files": [
            {
                "name": f.name,
                "size": f.size,
                **({"sha256": f.sha256} if f.sha256 else {}),
                **({"blobId": f.blob_id} if f.blob_id else {}),
            }
            for f in result.files
        ],
    }
    _write_atomically(marker_path(cache_dir, result.repo_id, result.revision), json.dumps(marker, indent=1))


def write_ref(repo: Path, revision: str, commit: str) -> None:
    # Written even when the revision is the commit itself, unlike huggingface_hub: TGI's router
    # (Rust hf-hub crate) resolves every revision through refs/<revision> in offline mode.
    _write_atomically(repo / "refs" / revision, commit)


def link(snapshot: Path, name: str, blob: Path) -> None:
    """snapshots/<commit>/<name> -> ../../blobs/<etag>, relative like huggingface_hub's."""
    pointer = snapshot / name
    pointer.parent.mkdir(parents=True, exist_ok=True)
    target = os.path.relpath(blob, pointer.parent)
    if pointer.is_symlink() and os.readlink(pointer) == target:
        return
    if pointer.is_symlink() or pointer.exists():
        pointer.unlink()
    os.symlink(target, pointer)

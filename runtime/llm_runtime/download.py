"""Weights into the cache volume, laid out as the Hub cache TGI reads offline.

`download()` fetches the files TGI needs of one model revision into
`cache_dir/hub/models--org--name/{blobs,snapshots,refs}` (so HF_HOME=cache_dir), checks each
file's size and hash against the Hub's metadata, and writes a completion marker last. It
resumes interrupted files across runs, notices a stalled transfer, and reads the model's facts
from what it fetched. `download_adapter()` does the same for a LoRA adapter repository.

The parts, each its own module: which files (selection.py, pure), the cache layout on the
volume (snapshot.py), the transfer with its verification and progress lines (transfer.py), and
why a download failed (errors.py). This module asks the Hub, puts them together and reads the
facts; it also names what the other modules define that cli.py, checks.py and the tests use.
"""

from __future__ import annotations

import json
import struct
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass, replace
from pathlib import Path
from typing import TYPE_CHECKING

from llm_common.cache import marker_path
from llm_common.modelfacts import ModelFacts, facts_from_config, parameter_count_from_safetensors_metadata
from llm_common.termination import termination_message
from llm_common.words import plural
from llm_runtime.errors import (
    CorruptDownload,
    DownloadError,
    DownloadRefused,
    DownloadStalled,
    error_message,
    hub_errors,
)
from llm_runtime.selection import (
    ADAPTER_CONFIG,
    ADAPTER_WEIGHTS,
    BIN_INDEX,
    CONFIG_FILES,
    SAFETENSORS_INDEX,
    TOKENIZER_FILES,
    is_weight_name,
    select_adapter_files,
    select_model_files,
)
from llm_runtime.snapshot import (
    DownloadResult,
    RemoteFile,
    cached_snapshot_dir,
    is_complete,
    read_marker,
    result_from_marker,
    write_marker,
    write_ref,
)
from llm_runtime.transfer import Transfer, human_bytes, progress_line

if TYPE_CHECKING:
    from huggingface_hub import HfApi

__all__ = [
    # which files (selection.py)
    "ADAPTER_CONFIG",
    "ADAPTER_WEIGHTS",
    "BIN_INDEX",
    "CONFIG_FILES",
    "SAFETENSORS_INDEX",
    "TOKENIZER_FILES",
    "select_adapter_files",
    "select_model_files",
    # the cache layout (snapshot.py, llm_common.cache)
    "DownloadResult",
    "RemoteFile",
    "cached_snapshot_dir",
    "is_complete",
    "marker_path",
    "read_marker",
    # progress lines (transfer.py)
    "human_bytes",
    "progress_line",
    # why a download failed (errors.py, llm_common.termination)
    "CorruptDownload",
    "DownloadError",
    "DownloadRefused",
    "DownloadStalled",
    "error_message",
    "termination_message",
    # this module
    "download",
    "download_adapter",
    "facts_from_cache",
    "facts_from_snapshot",
    "safetensors_parameter_counts",
]


# --- the public functions --------------------------------------------------------------------


@dataclass(frozen=True)
class _Repo:
    api: HfApi
    commit: str
    files: dict[str, RemoteFile]


def _describe(repo_id: str, revision: str, token: str | None, endpoint: str | None, timeout: float) -> _Repo:
    from huggingface_hub import HfApi

    api = HfApi(endpoint=endpoint, token=token)
    with hub_errors(repo_id, revision, api.endpoint):
        info = api.model_info(repo_id, revision=revision, files_metadata=True, timeout=timeout)
    files = {}
    for s in info.siblings or []:
        lfs = s.lfs
        sha256 = (lfs.get("sha256") if isinstance(lfs, Mapping) else getattr(lfs, "sha256", None)) if lfs else None
        size = (lfs.get("size") if isinstance(lfs, Mapping) else getattr(lfs, "size", None)) if lfs else None
        files[s.rfilename] = RemoteFile(s.rfilename, int(size if size is not None else s.size or 0), s.blob_id, sha256)
    assert info.sha is not None  # a model_info at a revision names its commit
    return _Repo(api, info.sha, files)


def _fetch(
    repo_id: str,
    revision: str,
    cache_dir: str | Path,
    select: Callable[[Callable[[str], Path], list[str]], list[str]],
    token: str | None,
    endpoint: str | None,
    stall_timeout_s: float,
    progress: Callable[[str], None],
    progress_interval_s: float,
    max_workers: int,
) -> DownloadResult:
    from huggingface_hub import hf_hub_url
    from huggingface_hub.utils import (  # type: ignore[attr-defined]  # public: in utils' computed __all__
        build_hf_headers,
        disable_progress_bars,
    )

    cache_dir = Path(cache_dir)
    marker = read_marker(cache_dir, repo_id, revision)
    if marker is not None and is_complete(cache_dir, repo_id, revision):
        progress(f"{repo_id}@{revision} is already complete in {cache_dir} (commit {marker['commit'][:12]}).")
        return result_from_marker(cache_dir, marker)
    # tqdm bars write carriage returns into container logs; the lines below replace them.
    disable_progress_bars()
    described = _describe(repo_id, revision, token, endpoint, stall_timeout_s)
    endpoint = described.api.endpoint
    transfer = Transfer(
        repo_id,
        revision,
        described.commit,
        cache_dir,
        # By commit, not branch: every file comes from the one revision the listing described.
        url_for=lambda name: hf_hub_url(repo_id, name, revision=described.commit, endpoint=endpoint),
        headers=build_hf_headers(token=token),
        stall_timeout_s=stall_timeout_s,
        progress=progress,
        progress_interval_s=progress_interval_s,
        max_workers=max_workers,
    )
    write_ref(transfer.repo, revision, described.commit)

    def fetch_now(name: str) -> Path:
        with hub_errors(repo_id, revision, endpoint):
            transfer.run([described.files[name]], summary=False)
        return transfer.snapshot / name

    names = select(fetch_now, sorted(described.files))
    if not names:
        raise DownloadRefused(
            f"{repo_id}@{revision} has none of the files TGI serves from "
            "(safetensors or .bin weights, config.json, adapter_config.json)."
        )
    files = [described.files[n] for n in names]
    progress(
        f"{repo_id}@{revision} (commit {described.commit[:12]}): {plural(len(files), 'file')}, "
        f"{human_bytes(sum(f.size for f in files))}, into {cache_dir}"
    )
    with hub_errors(repo_id, revision, endpoint):
        transfer.run(files)
    result = DownloadResult(repo_id, revision, described.commit, transfer.snapshot, tuple(files), transfer.downloaded)
    write_marker(cache_dir, result)  # last: its presence means every file above is verified
    return result


def download(
    model_id: str,
    revision: str = "main",
    cache_dir: str | Path = "/data",
    token: str | None = None,
    endpoint: str | None = None,
    stall_timeout_s: float = 120,
    allow_patterns: Iterable[str] | None = None,
    progress: Callable[[str], None] = print,
    progress_interval_s: float = 10,
    max_workers: int = 4,
) -> DownloadResult:
    """Download what TGI needs of model_id@revision into cache_dir (HF_HOME layout) and read
    its facts. token and endpoint default to huggingface_hub's (HF_TOKEN, HF_ENDPOINT).

    Raises DownloadStalled, CorruptDownload, DownloadRefused (permanent) or DownloadError."""
    patterns = list(allow_patterns) if allow_patterns else None

    def select(fetch_now: Callable[[str], Path], names: list[str]) -> list[str]:
        if not patterns and "config.json" not in names:
            raise DownloadRefused(
                f"{model_id}@{revision} has no config.json, so it is not a Transformers model TGI can serve."
            )
        index = None
        if not patterns and SAFETENSORS_INDEX in names:
            index = json.loads(fetch_now(SAFETENSORS_INDEX).read_text())
        return select_model_files(names, index, patterns)

    result = _fetch(
        model_id,
        revision,
        cache_dir,
        select,
        token,
        endpoint,
        stall_timeout_s,
        progress,
        progress_interval_s,
        max_workers,
    )
    return replace(result, facts=facts_from_snapshot(result))


def download_adapter(
    adapter_id: str,
    revision: str = "main",
    cache_dir: str | Path = "/data",
    token: str | None = None,
    endpoint: str | None = None,
    stall_timeout_s: float = 120,
    allow_patterns: Iterable[str] | None = None,
    progress: Callable[[str], None] = print,
    progress_interval_s: float = 10,
    max_workers: int = 4,
) -> DownloadResult:
    """Download a LoRA adapter repository into the same cache, with the same checks."""
    patterns = list(allow_patterns) if allow_patterns else None

    def select(fetch_now: Callable[[str], Path], names: list[str]) -> list[str]:
        chosen = select_adapter_files(names, patterns)
        if not patterns and (ADAPTER_CONFIG not in chosen or not any(n.endswith(".safetensors") for n in chosen)):
            raise DownloadRefused(
                f"{adapter_id}@{revision} is not a LoRA adapter TGI can load: it needs "
                f"{ADAPTER_CONFIG} and {ADAPTER_WEIGHTS} (TGI reads adapters only as safetensors)."
            )
        return chosen

    return _fetch(
        adapter_id,
        revision,
        cache_dir,
        select,
        token,
        endpoint,
        stall_timeout_s,
        progress,
        progress_interval_s,
        max_workers,
    )


# --- facts ------------------------------------------------------------------------------------


def safetensors_parameter_counts(path: str | Path) -> dict[str, int]:
    """Elements per dtype in one safetensors file, from its header alone."""
    with open(path, "rb") as data:
        (length,) = struct.unpack("<Q", data.read(8))
        header = json.loads(data.read(length))
    counts: dict[str, int] = {}
    for name, tensor in header.items():
        if name == "__metadata__":
            continue
        elements = 1
        for dimension in tensor["shape"]:
            elements *= dimension
        counts[tensor["dtype"]] = counts.get(tensor["dtype"], 0) + elements
    return counts


def facts_from_snapshot(result: DownloadResult) -> ModelFacts:
    """ModelFacts from the downloaded config.json and the safetensors headers (exact count;
    estimated from the architecture for .bin weights or packed quantized ones)."""
    config_path = result.snapshot_dir / "config.json"
    if not config_path.exists():
        raise DownloadRefused(
            f"{result.repo_id}@{result.revision} has no config.json, so it is not a Transformers model TGI can serve."
        )
    config = json.loads(config_path.read_text())
    counts: dict[str, int] = {}
    for f in result.files:
        if f.name.endswith(".safetensors") and is_weight_name(f.name):
            for dtype, n in safetensors_parameter_counts(result.snapshot_dir / f.name).items():
                counts[dtype] = counts.get(dtype, 0) + n
    parameters = parameter_count_from_safetensors_metadata({"parameter_count": counts}) if counts else None
    return facts_from_config(config, parameters, model_id=result.repo_id, revision=result.revision)


def facts_from_cache(cache_dir: str | Path, model_id: str, revision: str) -> ModelFacts | None:
    """Facts of a model already complete in the cache, or None."""
    marker = read_marker(cache_dir, model_id, revision)
    if marker is None or not is_complete(cache_dir, model_id, revision):
        return None
    return facts_from_snapshot(result_from_marker(cache_dir, marker))

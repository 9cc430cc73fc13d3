"""Weights into the cache volume, laid out as the Hub cache TGI reads offline.

`download()` fetches the files TGI needs of one model revision into
`cache_dir/hub/models--org--name/{blobs,snapshots,refs}` (so HF_HOME=cache_dir), checks each
file's size and hash against the Hub's metadata, and writes a completion marker last. It
resumes interrupted files across runs, notices a stalled transfer, and reads the model's facts
from what it fetched. `download_adapter()` does the same for a LoRA adapter repository.

Why the transfer loop is ours and not hf_hub_download's: huggingface_hub 2.x downloads into
a process-unique temporary file and deletes it on failure (its PR #4228), so a Job pod killed
half-way through a 10 GB shard would start that shard again from zero. Here each blob has one
`blobs/<etag>.incomplete` file that outlives the process, and huggingface_hub's own `http_get`
continues it with an HTTP Range request. Works with huggingface_hub 0.30 (TGI 3.3.7's image)
and 2.x (the operator image).
"""

from __future__ import annotations

import fnmatch
import hashlib
import json
import os
import queue
import struct
import threading
import time
from contextlib import contextmanager
import errno
from dataclasses import dataclass, field, replace
from datetime import datetime, timezone
from pathlib import Path
from typing import TYPE_CHECKING, Any, BinaryIO, Callable, Iterable, Iterator, Mapping

from llm_common.cache import MARKER_DIR, MARKER_NAME, marker_path, repo_dir, repo_folder  # noqa: F401
from llm_common.cache import snapshot_dir as _snapshot_path
from llm_common.hub_errors import http_error_sentence, refusal_sentence
from llm_common.modelfacts import ModelFacts, facts_from_config, parameter_count_from_safetensors_metadata
from llm_common.termination import (TERMINATION_MESSAGE_LIMIT, failure_message, termination_message,  # noqa: F401
                                    write_termination_message)

if TYPE_CHECKING:
    from huggingface_hub import HfApi

KiB, MiB, GiB = 1024, 1024**2, 1024**3

CONFIG_FILES = ("config.json", "generation_config.json")
TOKENIZER_FILES = (
    "tokenizer.json", "tokenizer_config.json", "tokenizer.model", "special_tokens_map.json",
    "vocab.json", "merges.txt", "added_tokens.json",
    # Recent transformers keep the chat template beside the tokenizer; /v1/chat/completions needs it.
    "chat_template.json", "chat_template.jinja",
    # Vision-language models: TGI builds their processor from these.
    "preprocessor_config.json", "processor_config.json",
)
ADAPTER_CONFIG = "adapter_config.json"
ADAPTER_WEIGHTS = "adapter_model.safetensors"
SAFETENSORS_INDEX = "model.safetensors.index.json"
BIN_INDEX = "pytorch_model.bin.index.json"

# TGI skips weight files whose names contain these (training_args.bin and the like), and
# "adapter" for the base model (text_generation_server/utils/hub.py, _weight_files_from_dir).
_NOT_WEIGHTS = ("arguments", "args", "training", "adapter")


_HASH_BLOCK = 8 * MiB
_WATCH_INTERVAL_S = 0.2
# Transport failures in a row, without a byte of progress, before a file's attempt gives up.
_RETRIES = 5


class DownloadError(Exception):
    """A download that did not finish; the message is a sentence a person can act on.
    `permanent`: retrying cannot help (no access, no such repository or revision)."""

    permanent = False


class DownloadRefused(DownloadError):
    permanent = True


class DownloadStalled(DownloadError):
    """No byte arrived for the stall timeout."""


class CorruptDownload(DownloadError):
    """A file's size or hash differs from the Hub's; the file was removed."""


class _Cancelled(Exception):
    """Raised inside a worker whose download was abandoned (stall or another worker's error)."""


@dataclass(frozen=True)
class RemoteFile:
    """One file of a repository revision, as the Hub describes it."""

    name: str
    size: int
    blob_id: str | None = None      # git object id (sha1 of "blob <size>\0" + content)
    sha256: str | None = None       # LFS files only: the content's sha256, also their ETag

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
    downloaded_bytes: int = 0       # fetched by this run (0 when the cache was already complete)
    facts: ModelFacts | None = None

    @property
    def total_bytes(self) -> int:
        return sum(f.size for f in self.files)


# --- which files: pure ----------------------------------------------------------------------


def _is_weight_name(name: str) -> bool:
    return not any(word in name for word in _NOT_WEIGHTS)


def _matching(names: Iterable[str], patterns: Iterable[str]) -> list[str]:
    patterns = list(patterns)
    return sorted(n for n in names if any(fnmatch.fnmatch(n, p) for p in patterns))


def select_model_files(names: Iterable[str], index: Mapping[str, Any] | None = None,
                       allow_patterns: Iterable[str] | None = None) -> list[str]:
    """The files of a model repository TGI needs, sorted.

    safetensors when the repository has any (the shards its index names, when it has an
    index), else .bin/.pt; config, generation config and tokenizer files; an adapter's
    files if present. Only top-level files: TGI never reads subfolders (original/ holds
    the same weights in another format). `allow_patterns` replaces these rules."""
    names = list(names)
    if allow_patterns:
        return _matching(names, allow_patterns)
    top = [n for n in names if "/" not in n]
    small = [n for n in top if n in CONFIG_FILES + TOKENIZER_FILES + (ADAPTER_CONFIG, ADAPTER_WEIGHTS)]
    safetensors = [n for n in top if n.endswith(".safetensors") and _is_weight_name(n)]
    if safetensors and index is not None:
        listed = set((index.get("weight_map") or {}).values())
        weights = [n for n in safetensors if n in listed] + [SAFETENSORS_INDEX]
    elif safetensors:
        # Mistral repositories ship consolidated.safetensors (for mistral-inference) beside
        # the model-*.safetensors shards: the same weights twice.
        sharded = [n for n in safetensors if n.startswith("model")]
        weights = sharded or safetensors
    else:
        weights = [n for n in top if n.endswith((".bin", ".pt")) and _is_weight_name(n)]
        weights += [BIN_INDEX] if BIN_INDEX in top else []
    return sorted(set(small + weights))


def select_adapter_files(names: Iterable[str], allow_patterns: Iterable[str] | None = None) -> list[str]:
    """A LoRA adapter's config and safetensors weights, plus its tokenizer files if it has any."""
    names = list(names)
    if allow_patterns:
        return _matching(names, allow_patterns)
    top = [n for n in names if "/" not in n]
    weights = [n for n in top if n.startswith("adapter_model") and n.endswith(".safetensors")]
    small = [n for n in top if n in (ADAPTER_CONFIG,) + TOKENIZER_FILES]
    return sorted(set(small + weights))


# --- the cache layout -------------------------------------------------------------------------


# repo_folder, repo_dir and marker_path come from llm_common.cache: the operator reads the same layout.


def read_marker(cache_dir: str | Path, repo_id: str, revision: str) -> dict[str, Any] | None:
    try:
        marker = json.loads(marker_path(cache_dir, repo_id, revision).read_text())
    except (FileNotFoundError, NotADirectoryError):
        return None
    except ValueError:
        return None  # unreadable: as good as absent, the next download rewrites it
    return marker if isinstance(marker, dict) and marker.get("commit") and isinstance(marker.get("files"), list) else None


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
    assert marker is not None   # is_complete has just read it
    return _snapshot_dir(cache_dir, repo_id, marker["commit"])


def _result_from_marker(cache_dir: str | Path, marker: dict[str, Any]) -> DownloadResult:
    files = tuple(RemoteFile(e["name"], e["size"], e.get("blobId"), e.get("sha256")) for e in marker["files"])
    return DownloadResult(marker["repoId"], marker["revision"], marker["commit"],
                          _snapshot_dir(cache_dir, marker["repoId"], marker["commit"]), files)


def _write_atomically(path: Path, text: str) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    temporary = path.with_name(f".{path.name}.{os.getpid()}.tmp")
    with open(temporary, "w") as out:
        out.write(text)
        out.flush()
        os.fsync(out.fileno())  # the marker must not reach the disk before its content
    os.replace(temporary, path)


def _write_marker(cache_dir: str | Path, result: DownloadResult) -> None:
    marker = {
        "repoId": result.repo_id, "revision": result.revision, "commit": result.commit,
        "completedAt": datetime.now(timezone.utc).strftime("%Y-%m-%dT%H:%M:%SZ"),
        "files": [{"name": f.name, "size": f.size, **({"sha256": f.sha256} if f.sha256 else {}),
                   **({"blobId": f.blob_id} if f.blob_id else {})} for f in result.files],
    }
    _write_atomically(marker_path(cache_dir, result.repo_id, result.revision), json.dumps(marker, indent=1))


def _write_ref(repo: Path, revision: str, commit: str) -> None:
    # Written even when the revision is the commit itself, unlike huggingface_hub: TGI's router
    # (Rust hf-hub crate) resolves every revision through refs/<revision> in offline mode.
    _write_atomically(repo / "refs" / revision, commit)


def _link(snapshot: Path, name: str, blob: Path) -> None:
    """snapshots/<commit>/<name> -> ../../blobs/<etag>, relative like huggingface_hub's."""
    pointer = snapshot / name
    pointer.parent.mkdir(parents=True, exist_ok=True)
    target = os.path.relpath(blob, pointer.parent)
    if pointer.is_symlink() and os.readlink(pointer) == target:
        return
    if pointer.is_symlink() or pointer.exists():
        pointer.unlink()
    os.symlink(target, pointer)


# --- progress lines: pure -------------------------------------------------------------------


def human_bytes(n: float) -> str:
    """1288490188 -> '1.2 GiB'; 89128960 -> '85 MiB'; 512 -> '512 B'."""
    for unit, size in (("GiB", GiB), ("MiB", MiB), ("KiB", KiB)):
        if n >= size:
            value = n / size
            return f"{value:.1f} {unit}" if value < 10 and unit == "GiB" else f"{value:.0f} {unit}"
    return f"{int(n)} B"


def progress_line(name: str, done: int, total: int, rate: float | None) -> str:
    """'model.safetensors: 1.2 GiB of 4.9 GiB (24%), 85 MiB/s'"""
    percent = int(100 * done / total) if total else 100
    line = f"{name}: {human_bytes(done)} of {human_bytes(total)} ({percent}%)"
    return line + (f", {human_bytes(rate)}/s" if rate is not None else "")


def _duration(seconds: float) -> str:
    minutes, secs = divmod(int(round(seconds)), 60)
    return f"{minutes}m {secs}s" if minutes else f"{secs}s"


# --- verification ---------------------------------------------------------------------------


def _verify(path: Path, expected: RemoteFile, repo_id: str, on_bytes: Callable[[int], None]) -> None:
    """Size, then sha256 (LFS) or the git object id (small files); a bad file is removed."""
    size = path.stat().st_size
    problem = None
    if size != expected.size:
        problem = f"it has {size} bytes where the Hub says {expected.size}"
    else:
        sha256 = hashlib.sha256()
        git = hashlib.sha1(b"blob %d\0" % size) if expected.sha256 is None and expected.blob_id else None
        with open(path, "rb") as data:
            while block := data.read(_HASH_BLOCK):
                sha256.update(block)
                if git is not None:
                    git.update(block)
                on_bytes(len(block))
        if expected.sha256 and sha256.hexdigest() != expected.sha256:
            problem = f"its sha256 is {sha256.hexdigest()} where the Hub says {expected.sha256}"
        elif git is not None and git.hexdigest() != expected.blob_id:
            problem = f"its git object id is {git.hexdigest()} where the Hub says {expected.blob_id}"
    if problem:
        path.unlink(missing_ok=True)
        raise CorruptDownload(f"{repo_id}: {expected.name} arrived corrupt ({problem}); it was removed, "
                              "so the next attempt downloads it again.")


# --- Hub errors as sentences ----------------------------------------------------------------


def _as_download_error(exc: BaseException, repo_id: str, revision: str, endpoint: str) -> DownloadError | None:
    # The same sentences as the operator's (llm_common.hub_errors), naming the download's token.
    refused = refusal_sentence(exc, repo_id, revision, endpoint, token="a token (HF_TOKEN)",
                               gated_token="the download a token (HF_TOKEN)")
    if refused is not None:
        return DownloadRefused(refused)
    answered = http_error_sentence(exc, repo_id, revision, endpoint)
    if answered is not None:
        return DownloadError(answered)
    if isinstance(exc, OSError) and exc.errno == errno.ENOSPC:
        return DownloadRefused(f"The cache volume is full while downloading {repo_id}@{revision}: "
                               "make the cache larger (spec.cache.size).")
    if isinstance(exc, PermissionError):
        return DownloadRefused(f"The cache volume is not writable while downloading {repo_id}@{revision} ({exc}): "
                               "give the download pod write access (securityContext.fsGroup).")
    if isinstance(exc, OSError) or _is_transient(exc):
        # Transport failures (refused, reset, timeout) and short reads: the next attempt resumes.
        return DownloadError(f"Downloading {repo_id}@{revision} from {endpoint} failed: {exc}")
    return None


def _is_transient(exc: BaseException) -> bool:
    """A transport failure (refused, reset, cut short, timed out) of the HTTP client huggingface_hub
    uses: requests before 1.0, httpx 1.x, httpx2 2.x. Not an HTTP error answer."""
    return type(exc).__module__.split(".")[0] in ("httpx2", "httpx", "httpcore", "requests", "urllib3")


@contextmanager
def _hub_errors(repo_id: str, revision: str, endpoint: str) -> Iterator[None]:
    try:
        yield
    except DownloadError:
        raise
    except Exception as exc:
        mapped = _as_download_error(exc, repo_id, revision, endpoint)
        if mapped is None:
            raise
        raise mapped from exc


# --- the transfer ---------------------------------------------------------------------------


class _GuardedFile:
    """The file http_get writes into; refuses to write once the download was abandoned, so a
    worker thread that wakes up after a stall cannot touch the cache again."""

    def __init__(self, raw: BinaryIO, cancel: threading.Event) -> None:
        self.raw, self.cancel = raw, cancel

    def write(self, data: bytes) -> int:
        if self.cancel.is_set():
            raise _Cancelled()
        return self.raw.write(data)

    def __getattr__(self, name: str) -> Any:  # seek, tell, truncate, flush
        return getattr(self.raw, name)


@contextmanager
def _exclusive(lock_path: Path) -> Iterator[None]:
    """An flock on huggingface_hub's own lock file for the blob, so that two downloaders of one
    cache never append to the same .incomplete file. Best effort: some network filesystems
    grant every flock; the hash check then still refuses a mixed-up file."""
    import fcntl

    lock_path.parent.mkdir(parents=True, exist_ok=True)
    with open(lock_path, "a") as handle:
        fcntl.flock(handle, fcntl.LOCK_EX)
        try:
            yield
        finally:
            fcntl.flock(handle, fcntl.LOCK_UN)


@dataclass
class _Transfer:
    """Fetches files into one repository's cache folder with worker threads, while the calling
    thread is the watchdog over the bytes on disk: when none arrive for `stall_timeout_s` it
    abandons the workers and raises DownloadStalled. The HTTP client's read timeout is no
    substitute: it covers one read, and retries follow it."""

    repo_id: str
    revision: str
    commit: str
    cache_dir: Path
    url_for: Callable[[str], str]
    headers: dict[str, str]
    stall_timeout_s: float
    progress: Callable[[str], None]
    progress_interval_s: float
    max_workers: int
    cancel: threading.Event = field(default_factory=threading.Event)
    errors: list[BaseException] = field(default_factory=list)
    downloaded: int = 0
    hashed: int = 0
    _counter_lock: threading.Lock = field(default_factory=threading.Lock)

    @property
    def repo(self) -> Path:
        return repo_dir(self.cache_dir, self.repo_id)

    @property
    def snapshot(self) -> Path:
        return self.repo / "snapshots" / self.commit

    def blob(self, f: RemoteFile) -> Path:
        return self.repo / "blobs" / f.etag

    def incomplete(self, f: RemoteFile) -> Path:
        return self.repo / "blobs" / f"{f.etag}.incomplete"

    def on_disk(self, f: RemoteFile) -> int:
        for path in (self.incomplete(f), self.blob(f)):
            try:
                return path.stat().st_size
            except FileNotFoundError:
                continue
        return 0

    # worker side

    def fetch(self, f: RemoteFile) -> None:
        blob = self.blob(f)
        if blob.exists() and blob.stat().st_size == f.size:
            _link(self.snapshot, f.name, blob)  # verified before it was renamed into place
            return
        with _exclusive(self.cache_dir / "hub" / ".locks" / repo_folder(self.repo_id) / f"{f.etag}.lock"):
            if not (blob.exists() and blob.stat().st_size == f.size):
                partial = self.incomplete(f)
                partial.parent.mkdir(parents=True, exist_ok=True)
                with open(partial, "ab") as raw:  # append: what an earlier run fetched stays
                    if raw.tell() > f.size:
                        raw.truncate(0)
                    self.continue_file(f, raw)
                if self.cancel.is_set():
                    raise _Cancelled()
                _verify(partial, f, self.repo_id, lambda n: self._count(hashed=n))
                os.replace(partial, blob)
            _link(self.snapshot, f.name, blob)

    def continue_file(self, f: RemoteFile, raw: BinaryIO) -> None:
        """http_get from where the file ends, again after each transport failure. The retries
        are ours, not http_get's, so that an abandoned worker stops at the first failure."""
        from huggingface_hub.file_download import http_get

        attempts = _RETRIES
        while True:
            resume = raw.tell()
            try:
                # http_get annotates BinaryIO; it only writes, seeks and tells, which _GuardedFile forwards.
                http_get(self.url_for(f.name), _GuardedFile(raw, self.cancel),  # type: ignore[arg-type]
                         resume_size=resume, headers=dict(self.headers), expected_size=f.size,
                         displayed_filename=f.name, _nb_retries=0)
                return
            except Exception as exc:
                if self.cancel.is_set():
                    raise _Cancelled() from exc
                if not _is_transient(exc):
                    raise
                attempts = _RETRIES if raw.tell() > resume else attempts - 1
                if attempts <= 0:
                    raise
                self.cancel.wait(1)  # a short pause; over at once when the download is abandoned
            finally:
                raw.flush()
                self._count(downloaded=max(0, raw.tell() - resume))

    def _count(self, downloaded: int = 0, hashed: int = 0) -> None:
        with self._counter_lock:
            self.downloaded += downloaded
            self.hashed += hashed

    def work(self, todo: "queue.Queue[RemoteFile]") -> None:
        while not self.cancel.is_set():
            try:
                f = todo.get_nowait()
            except queue.Empty:
                return
            try:
                self.fetch(f)
            except _Cancelled:
                return
            except BaseException as exc:  # handed to the watching thread, which raises it
                self.errors.append(exc)
                self.cancel.set()
                return

    # watching side

    def run(self, files: list[RemoteFile], summary: bool = True) -> None:
        todo: queue.Queue[RemoteFile] = queue.Queue()
        for f in files:
            todo.put(f)
        # Daemon threads: a worker stuck in a read must not keep the process alive after a stall.
        workers = [threading.Thread(target=self.work, args=(todo,), daemon=True, name=f"download-{i}")
                   for i in range(max(1, min(self.max_workers, len(files))))]
        for worker in workers:
            worker.start()
        self.watch(files, workers, summary)

    def activity(self, files: list[RemoteFile]) -> int:
        # Hashing a large file on slow storage takes a while: bytes hashed count as progress too.
        return sum(self.on_disk(f) for f in files) + self.hashed

    def watch(self, files: list[RemoteFile], workers: list[threading.Thread], summary: bool) -> None:
        total = sum(f.size for f in files)
        started = last_change = last_report = time.monotonic()
        last_activity = self.activity(files)
        reported: dict[str, int] = {f.name: self.on_disk(f) for f in files}
        while (alive := [w for w in workers if w.is_alive()]) and not self.errors:
            alive[0].join(_WATCH_INTERVAL_S)
            now = time.monotonic()
            current = self.activity(files)
            if current != last_activity:
                last_activity, last_change = current, now
            elif now - last_change >= self.stall_timeout_s:
                self.cancel.set()
                waiting = [f.name for f in files if not self.blob(f).exists()]
                done = sum(self.on_disk(f) for f in files)
                raise DownloadStalled(
                    f"No bytes of {self.repo_id}@{self.revision} arrived for {self.stall_timeout_s:g} s "
                    f"(waiting on {', '.join(waiting[:3]) or 'the Hub'}; {human_bytes(done)} of {human_bytes(total)} "
                    "on disk): giving up this attempt. The partial files are kept and the next attempt resumes them.")
            if now - last_report >= self.progress_interval_s:
                self.report(files, reported, now - last_report)
                last_report = now
        if self.errors:
            raise self.errors[0]
        if summary:
                self.progress(f"{self.repo_id}@{self.revision}: {len(files)} files, {human_bytes(total)}, "
                          f"{human_bytes(self.downloaded)} downloaded in {_duration(time.monotonic() - started)}, "
                          "verified")

    def report(self, files: list[RemoteFile], reported: dict[str, int], elapsed: float) -> None:
        for f in files:
            size = self.on_disk(f)
            if size != reported[f.name] and not self.blob(f).exists():
                rate = (size - reported[f.name]) / elapsed if elapsed > 0 else None
                self.progress(progress_line(f.name, size, f.size, rate))
            reported[f.name] = size


# --- the public functions --------------------------------------------------------------------


@dataclass(frozen=True)
class _Repo:
    api: HfApi
    commit: str
    files: dict[str, RemoteFile]


def _describe(repo_id: str, revision: str, token: str | None, endpoint: str | None, timeout: float) -> _Repo:
    from huggingface_hub import HfApi

    api = HfApi(endpoint=endpoint, token=token)
    with _hub_errors(repo_id, revision, api.endpoint):
        info = api.model_info(repo_id, revision=revision, files_metadata=True, timeout=timeout)
    files = {}
    for s in info.siblings or []:
        lfs = s.lfs
        sha256 = (lfs.get("sha256") if isinstance(lfs, Mapping) else getattr(lfs, "sha256", None)) if lfs else None
        size = (lfs.get("size") if isinstance(lfs, Mapping) else getattr(lfs, "size", None)) if lfs else None
        files[s.rfilename] = RemoteFile(s.rfilename, int(size if size is not None else s.size or 0), s.blob_id, sha256)
    assert info.sha is not None   # a model_info at a revision names its commit
    return _Repo(api, info.sha, files)


def _fetch(repo_id: str, revision: str, cache_dir: str | Path, select: Callable[[Callable[[str], Path], list[str]], list[str]],
           token: str | None, endpoint: str | None, stall_timeout_s: float, progress: Callable[[str], None],
           progress_interval_s: float, max_workers: int) -> DownloadResult:
    from huggingface_hub import hf_hub_url
    from huggingface_hub.utils import (  # type: ignore[attr-defined]  # public: in utils' computed __all__
        build_hf_headers,
        disable_progress_bars,
    )

    cache_dir = Path(cache_dir)
    marker = read_marker(cache_dir, repo_id, revision)
    if marker is not None and is_complete(cache_dir, repo_id, revision):
        progress(f"{repo_id}@{revision} is already complete in {cache_dir} (commit {marker['commit'][:12]}).")
        return _result_from_marker(cache_dir, marker)
    # tqdm bars write carriage returns into container logs; the lines below replace them.
    disable_progress_bars()
    described = _describe(repo_id, revision, token, endpoint, stall_timeout_s)
    endpoint = described.api.endpoint
    transfer = _Transfer(
        repo_id, revision, described.commit, cache_dir,
        # By commit, not branch: every file comes from the one revision the listing described.
        url_for=lambda name: hf_hub_url(repo_id, name, revision=described.commit, endpoint=endpoint),
        headers=build_hf_headers(token=token), stall_timeout_s=stall_timeout_s, progress=progress,
        progress_interval_s=progress_interval_s, max_workers=max_workers)
    _write_ref(transfer.repo, revision, described.commit)

    def fetch_now(name: str) -> Path:
        with _hub_errors(repo_id, revision, endpoint):
            transfer.run([described.files[name]], summary=False)
        return transfer.snapshot / name

    names = select(fetch_now, sorted(described.files))
    if not names:
        raise DownloadRefused(f"{repo_id}@{revision} has none of the files TGI serves from "
                              "(safetensors or .bin weights, config.json, adapter_config.json).")
    files = [described.files[n] for n in names]
    progress(f"{repo_id}@{revision} (commit {described.commit[:12]}): {len(files)} files, "
             f"{human_bytes(sum(f.size for f in files))}, into {cache_dir}")
    with _hub_errors(repo_id, revision, endpoint):
        transfer.run(files)
    result = DownloadResult(repo_id, revision, described.commit, transfer.snapshot, tuple(files), transfer.downloaded)
    _write_marker(cache_dir, result)  # last: its presence means every file above is verified
    return result


def download(model_id: str, revision: str = "main", cache_dir: str | Path = "/data", token: str | None = None,
             endpoint: str | None = None, stall_timeout_s: float = 120, allow_patterns: Iterable[str] | None = None,
             progress: Callable[[str], None] = print, progress_interval_s: float = 10,
             max_workers: int = 4) -> DownloadResult:
    """Download what TGI needs of model_id@revision into cache_dir (HF_HOME layout) and read
    its facts. token and endpoint default to huggingface_hub's (HF_TOKEN, HF_ENDPOINT).

    Raises DownloadStalled, CorruptDownload, DownloadRefused (permanent) or DownloadError."""
    patterns = list(allow_patterns) if allow_patterns else None

    def select(fetch_now: Callable[[str], Path], names: list[str]) -> list[str]:
        if not patterns and "config.json" not in names:
            raise DownloadRefused(f"{model_id}@{revision} has no config.json, so it is not a Transformers "
                                  "model TGI can serve.")
        index = None
        if not patterns and SAFETENSORS_INDEX in names:
            index = json.loads(fetch_now(SAFETENSORS_INDEX).read_text())
        return select_model_files(names, index, patterns)

    result = _fetch(model_id, revision, cache_dir, select, token, endpoint, stall_timeout_s, progress,
                    progress_interval_s, max_workers)
    return replace(result, facts=facts_from_snapshot(result))


def download_adapter(adapter_id: str, revision: str = "main", cache_dir: str | Path = "/data", token: str | None = None,
                     endpoint: str | None = None, stall_timeout_s: float = 120,
                     allow_patterns: Iterable[str] | None = None, progress: Callable[[str], None] = print,
                     progress_interval_s: float = 10, max_workers: int = 4) -> DownloadResult:
    """Download a LoRA adapter repository into the same cache, with the same checks."""
    patterns = list(allow_patterns) if allow_patterns else None

    def select(fetch_now: Callable[[str], Path], names: list[str]) -> list[str]:
        chosen = select_adapter_files(names, patterns)
        if not patterns and (ADAPTER_CONFIG not in chosen or not any(n.endswith(".safetensors") for n in chosen)):
            raise DownloadRefused(f"{adapter_id}@{revision} is not a LoRA adapter TGI can load: it needs "
                                  f"{ADAPTER_CONFIG} and {ADAPTER_WEIGHTS} (TGI reads adapters only as safetensors).")
        return chosen

    return _fetch(adapter_id, revision, cache_dir, select, token, endpoint, stall_timeout_s, progress,
                  progress_interval_s, max_workers)


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
        raise DownloadRefused(f"{result.repo_id}@{result.revision} has no config.json, so it is not a Transformers "
                              "model TGI can serve.")
    config = json.loads(config_path.read_text())
    counts: dict[str, int] = {}
    for f in result.files:
        if f.name.endswith(".safetensors") and _is_weight_name(f.name):
            for dtype, n in safetensors_parameter_counts(result.snapshot_dir / f.name).items():
                counts[dtype] = counts.get(dtype, 0) + n
    parameters = parameter_count_from_safetensors_metadata({"parameter_count": counts}) if counts else None
    return facts_from_config(config, parameters, model_id=result.repo_id, revision=result.revision)


def facts_from_cache(cache_dir: str | Path, model_id: str, revision: str) -> ModelFacts | None:
    """Facts of a model already complete in the cache, or None."""
    marker = read_marker(cache_dir, model_id, revision)
    if marker is None or not is_complete(cache_dir, model_id, revision):
        return None
    return facts_from_snapshot(_result_from_marker(cache_dir, marker))


# --- the termination message (llm_common/termination.py: the operator reads it back) ----------


def error_message(exc: DownloadError) -> str:
    """What a failed download leaves in its termination message."""
    reason = type(exc).__name__.removeprefix("Download") or "Error"
    return failure_message(str(exc), reason, exc.permanent)

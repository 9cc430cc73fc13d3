"""The transfer: files of one revision into the cache with worker threads, resumed and verified.

Why the transfer loop is ours and not hf_hub_download's: huggingface_hub 2.x downloads into
a process-unique temporary file and deletes it on failure (its PR #4228), so a Job pod killed
half-way through a 10 GB shard would start that shard again from zero. Here each blob has one
`blobs/<etag>.incomplete` file that outlives the process, and huggingface_hub's own `http_get`
continues it with an HTTP Range request. Works with huggingface_hub 0.30 (TGI 3.3.7's image)
and 2.x (the operator image). The calling thread watches the bytes on disk: it writes the
progress lines and notices a stalled transfer.
"""

from __future__ import annotations

import hashlib
import os
import queue
import threading
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, BinaryIO

from llm_common.cache import repo_dir, repo_folder
from llm_common.words import plural
from llm_runtime.errors import CorruptDownload, DownloadStalled, is_transient
from llm_runtime.snapshot import RemoteFile, link

KiB, MiB, GiB = 1024, 1024**2, 1024**3

_HASH_BLOCK = 8 * MiB
_WATCH_INTERVAL_S = 0.2
# Transport failures in a row, without a byte of progress, before a file's attempt gives up.
_RETRIES = 5


class _Cancelled(Exception):
    """Raised inside a worker whose download was abandoned (stall or another worker's error)."""


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
        raise CorruptDownload(
            f"{repo_id}: {expected.name} arrived corrupt ({problem}); it was removed, "
            "so the next attempt downloads it again."
        )


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
class Transfer:
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
            link(self.snapshot, f.name, blob)  # verified before it was renamed into place
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
            link(self.snapshot, f.name, blob)

    def continue_file(self, f: RemoteFile, raw: BinaryIO) -> None:
        """http_get from where the file ends, again after each transport failure. The retries
        are ours, not http_get's, so that an abandoned worker stops at the first failure."""
        from huggingface_hub.file_download import http_get

        attempts = _RETRIES
        while True:
            resume = raw.tell()
            try:
                # http_get annotates BinaryIO; it only writes, seeks and tells, which _GuardedFile forwards.
                http_get(
                    self.url_for(f.name),
                    _GuardedFile(raw, self.cancel),  # type: ignore[arg-type]
                    resume_size=resume,
                    headers=dict(self.headers),
                    expected_size=f.size,
                    displayed_filename=f.name,
                    _nb_retries=0,
                )
                return
            except Exception as exc:
                if self.cancel.is_set():
                    raise _Cancelled() from exc
                if not is_transient(exc):
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

    def work(self, todo: queue.Queue[RemoteFile]) -> None:
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
        workers = [
            threading.Thread(target=self.work, args=(todo,), daemon=True, name=f"download-{i}")
            for i in range(max(1, min(self.max_workers, len(files))))
        ]
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
                    "on disk): giving up this attempt. The partial files are kept and the next attempt resumes them."
                )
            if now - last_report >= self.progress_interval_s:
                self.report(files, reported, now - last_report)
                last_report = now
        if self.errors:
            raise self.errors[0]
        if summary:
            self.progress(
                f"{self.repo_id}@{self.revision}: {plural(len(files), 'file')}, {human_bytes(total)}, "
                f"{human_bytes(self.downloaded)} downloaded in {_duration(time.monotonic() - started)}, "
                "verified"
            )

    def report(self, files: list[RemoteFile], reported: dict[str, int], elapsed: float) -> None:
        for f in files:
            size = self.on_disk(f)
            if size != reported[f.name] and not self.blob(f).exists():
                rate = (size - reported[f.name]) / elapsed if elapsed > 0 else None
                self.progress(progress_line(f.name, size, f.size, rate))
            reported[f.name] = size

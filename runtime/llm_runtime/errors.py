"""Why a download failed: its exceptions, the Hub's errors as sentences, and the termination
message a failure leaves (the protocol itself is llm_common/termination.py; the operator reads it)."""

from __future__ import annotations

import errno
from collections.abc import Iterator
from contextlib import contextmanager

from llm_common.hub_errors import http_error_sentence, refusal_sentence
from llm_common.termination import failure_message


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


# --- Hub errors as sentences ----------------------------------------------------------------


def _as_download_error(exc: BaseException, repo_id: str, revision: str, endpoint: str) -> DownloadError | None:
    # The same sentences as the operator's (llm_common.hub_errors), naming the download's token.
    refused = refusal_sentence(
        exc, repo_id, revision, endpoint, token="a token (HF_TOKEN)", gated_token="the download a token (HF_TOKEN)"
    )
    if refused is not None:
        return DownloadRefused(refused)
    answered = http_error_sentence(exc, repo_id, revision, endpoint)
    if answered is not None:
        return DownloadError(answered)
    if isinstance(exc, OSError) and exc.errno == errno.ENOSPC:
        return DownloadRefused(
            f"The cache volume is full while downloading {repo_id}@{revision}: make the cache larger (spec.cache.size)."
        )
    if isinstance(exc, PermissionError):
        return DownloadRefused(
            f"The cache volume is not writable while downloading {repo_id}@{revision} ({exc}): "
            "give the download pod write access (securityContext.fsGroup)."
        )
    if isinstance(exc, OSError) or is_transient(exc):
        # Transport failures (refused, reset, timeout) and short reads: the next attempt resumes.
        return DownloadError(f"Downloading {repo_id}@{revision} from {endpoint} failed: {exc}")
    return None


def is_transient(exc: BaseException) -> bool:
    """A transport failure (refused, reset, cut short, timed out) of the HTTP client huggingface_hub
    uses: requests before 1.0, httpx 1.x, httpx2 2.x. Not an HTTP error answer."""
    return type(exc).__module__.split(".")[0] in ("httpx2", "httpx", "httpcore", "requests", "urllib3")


@contextmanager
def hub_errors(repo_id: str, revision: str, endpoint: str) -> Iterator[None]:
    """Raises what the Hub, the transport or the cache volume raise inside as a DownloadError."""
    try:
        yield
    except DownloadError:
        raise
    except Exception as exc:
        mapped = _as_download_error(exc, repo_id, revision, endpoint)
        if mapped is None:
            raise
        raise mapped from exc


# --- the termination message (llm_common/termination.py: the operator reads it back) ----------


def error_message(exc: DownloadError) -> str:
    """What a failed download leaves in its termination message."""
    reason = type(exc).__name__.removeprefix("Download") or "Error"
    return failure_message(str(exc), reason, exc.permanent)

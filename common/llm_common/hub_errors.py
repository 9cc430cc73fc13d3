"""Hugging Face Hub errors as sentences a person can act on.

Shared by the operator (reading a model's facts) and the runtime (the download Job), so
that both say the same thing about a gated, missing or unreachable repository.
huggingface_hub is imported inside the functions only: nothing here needs it until an
error is to be classified.
"""

from __future__ import annotations

import sys
from collections.abc import Iterator
from contextlib import contextmanager


class ModelFactsUnavailable(Exception):
    """The facts of a model could not be read; the message says why and what to do."""


class ModelMissing(ModelFactsUnavailable):
    """The Hub answered that the repository (reason ModelNotFound) or the revision
    (RevisionNotFound) does not exist: not unreachable, not gated."""

    def __init__(self, message: str, reason: str):
        super().__init__(message)
        self.reason = reason


def refusal_sentence(
    exc: BaseException,
    repo_id: str,
    revision: str,
    endpoint: str,
    token: str = "a token",
    gated_token: str | None = None,
) -> str | None:
    """The sentence for an answer that retrying cannot change (gated, no such repository or
    revision), or None. `token` names the token to give (the download says "(HF_TOKEN)");
    `gated_token` the one for a gated repository, `token` when None."""
    from huggingface_hub.utils import (  # type: ignore[attr-defined]  # public: in utils' computed __all__
        GatedRepoError,
        RepositoryNotFoundError,
        RevisionNotFoundError,
    )

    # Order matters: GatedRepoError is a RepositoryNotFoundError.
    if isinstance(exc, GatedRepoError):
        return (
            f"{repo_id} is gated on the Hugging Face Hub: accept its licence on the model "
            f"page and give {gated_token or token} of an account that has access."
        )
    if isinstance(exc, RepositoryNotFoundError):
        return (
            f"{repo_id} was not found on the Hugging Face Hub ({endpoint}): check the id, "
            f"or give {token} if the repository is private."
        )
    if isinstance(exc, RevisionNotFoundError):
        return (
            f"Revision {revision!r} of {repo_id} does not exist on the Hugging Face Hub: "
            "pin an existing branch, tag or commit."
        )
    return None


def http_error_sentence(exc: BaseException, repo_id: str, revision: str, endpoint: str) -> str | None:
    """The sentence for any other error answer of the Hub, or None."""
    from huggingface_hub.utils import (  # type: ignore[attr-defined]  # public: in utils' computed __all__
        HfHubHTTPError,
    )

    if not isinstance(exc, HfHubHTTPError):
        return None
    first_line = str(exc).splitlines()[0] if str(exc) else type(exc).__name__
    return f"The Hugging Face Hub ({endpoint}) answered an error for {repo_id}@{revision}: {first_line}"


def sentence_for_hub_error(exc: BaseException, model_id: str, revision: str, endpoint: str) -> str | None:
    """Why a model's config.json could not be read, or None for an error that is not the Hub's."""
    from huggingface_hub.utils import (  # type: ignore[attr-defined]  # public: in utils' computed __all__
        EntryNotFoundError,
    )

    where = f"{model_id}@{revision}"
    refused = refusal_sentence(exc, model_id, revision, endpoint)
    if refused is not None:
        return refused
    # The "offline" error is an EntryNotFoundError: test it first.
    if is_offline_error(exc) and offline_mode():
        return f"HF_HUB_OFFLINE is set and {where} is not in the local Hub cache: unset HF_HUB_OFFLINE."
    if is_offline_error(exc) or is_connection_error(exc):
        return (
            f"Could not reach the Hugging Face Hub at {endpoint} to read {where}: check network access or HF_ENDPOINT."
        )
    if isinstance(exc, EntryNotFoundError):
        return f"{where} has no config.json, so it is not a Transformers model TGI can serve."
    return http_error_sentence(exc, model_id, revision, endpoint)


@contextmanager
def hub_errors_as_unavailable(model_id: str, revision: str, endpoint: str) -> Iterator[None]:
    """Turn huggingface_hub's and the HTTP client's exceptions into ModelFactsUnavailable."""
    try:
        yield
    except Exception as exc:
        message = sentence_for_hub_error(exc, model_id, revision, endpoint)
        if message is None:
            raise
        missing = missing_reason(exc)
        if missing:
            raise ModelMissing(message, missing) from exc
        raise ModelFactsUnavailable(message) from exc


def missing_reason(exc: BaseException) -> str | None:
    """ModelNotFound or RevisionNotFound when the Hub said so, else None. A gated repository
    is a RepositoryNotFoundError too, and is not missing."""
    from huggingface_hub.utils import (  # type: ignore[attr-defined]  # public: in utils' computed __all__
        GatedRepoError,
        RepositoryNotFoundError,
        RevisionNotFoundError,
    )

    if isinstance(exc, GatedRepoError):
        return None
    if isinstance(exc, RepositoryNotFoundError):
        return "ModelNotFound"
    if isinstance(exc, RevisionNotFoundError):
        return "RevisionNotFound"
    return None


def offline_mode() -> bool:
    from huggingface_hub import constants

    return bool(constants.HF_HUB_OFFLINE)


def is_offline_error(exc: BaseException) -> bool:
    from huggingface_hub.utils import (  # type: ignore[attr-defined]  # public: in utils' computed __all__
        LocalEntryNotFoundError,
    )

    # huggingface_hub raises this when the Hub is unreachable (after its own retries)
    # or offline mode is on, and the file is not cached.
    return isinstance(exc, LocalEntryNotFoundError)


# Transport failures (refused, reset, DNS, timeout) of the HTTP clients huggingface_hub
# has used: requests (< 1.0), httpx (1.x), httpx2 (2.x). Looked up only in modules
# already imported, so nothing is imported just to classify an error.
_TRANSPORT_ERROR_CLASSES = (
    ("httpx2", "TransportError"),
    ("httpx", "TransportError"),
    ("requests", "ConnectionError"),
    ("requests", "Timeout"),
)


def is_connection_error(exc: BaseException) -> bool:
    """True for transport failures, not for HTTP error answers."""
    if isinstance(exc, (ConnectionError, TimeoutError)):
        return True
    for module_name, class_name in _TRANSPORT_ERROR_CLASSES:
        error_class = getattr(sys.modules.get(module_name), class_name, None)
        if error_class is not None and isinstance(exc, error_class):
            return True
    return False

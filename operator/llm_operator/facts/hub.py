"""The Hub reader: a model's facts (and an adapter's config) from the Hugging Face Hub, with
an on-disk cache. The parsing of config.json lives in llm_common.modelfacts (shared with
the runtime).

Facts come from three places, in order of trust: the safetensors headers on the Hub
(exact parameter count), a local config.json plus a count the caller knows, or an
estimate from the architecture when no count is available (flagged as estimated).

huggingface_hub is imported lazily, only on the Hub path, so that `llm-operator plan`
with a local config answers offline and fast.
"""

from __future__ import annotations

import json
import os
from pathlib import Path
from typing import Any

# The parsing and the Hub's error sentences live in the shared leaf (the download Job reads
# facts the same way); re-exported here under the names the operator has always used.
from llm_common.hub_errors import ModelFactsUnavailable, ModelMissing, hub_errors_as_unavailable  # noqa: F401
from llm_common.modelfacts import (  # noqa: F401
    DTYPE_BYTES,
    ModelFacts,
    estimate_parameter_count,
    facts_from_config,
    facts_from_local,
    parameter_count_from_safetensors_index,
    parameter_count_from_safetensors_metadata,
)

__all__ = [
    "DTYPE_BYTES",
    "PROBE_TIMEOUT_S",
    "ModelFacts",
    "ModelFactsUnavailable",
    "ModelMissing",
    "adapter_config_from_hub",
    "estimate_parameter_count",
    "facts_from_config",
    "facts_from_hub",
    "facts_from_local",
    "hub_errors_as_unavailable",
    "parameter_count_from_safetensors_index",
    "parameter_count_from_safetensors_metadata",
]


def _disk_cache_path(cache_dir: str | Path, model_id: str, revision: str) -> Path:
    # "/" cannot appear in a file name; huggingface_hub's own cache uses "--" the same way.
    return Path(cache_dir) / "model-facts" / f"{model_id.replace('/', '--')}@{revision}.json"


def _read_disk_cache(path: Path) -> ModelFacts | None:
    try:
        return ModelFacts.from_dict(json.loads(path.read_text()))
    except FileNotFoundError:
        return None
    except (ValueError, TypeError):
        return None  # a corrupt or older-format entry: fetch again and overwrite it


def _write_disk_cache(path: Path, facts: ModelFacts) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    temporary = path.with_name(f"{path.name}.{os.getpid()}.tmp")  # one per writer process
    temporary.write_text(json.dumps(facts.to_dict(), indent=2, sort_keys=True))
    temporary.replace(path)  # atomic: a concurrent reader never sees half a file


def facts_from_hub(
    model_id: str,
    revision: str = "main",
    token: str | None = None,
    cache_dir: str | Path | None = None,
    endpoint: str | None = None,
) -> ModelFacts:
    """Facts from the Hub: config.json plus the exact count from the safetensors headers.

    Cached under cache_dir when given (`plan --cache-dir`); the operator keeps what it read
    in facts.FactsSource, its one in-process cache. `endpoint` defaults to huggingface_hub's
    (HF_ENDPOINT or https://huggingface.co). Raises ModelFactsUnavailable with a sentence a
    person can act on."""
    disk_path = _disk_cache_path(cache_dir, model_id, revision) if cache_dir else None
    facts = _read_disk_cache(disk_path) if disk_path else None
    if facts is None:
        facts = _fetch_facts(model_id, revision, token, cache_dir, endpoint)
        if disk_path:
            _write_disk_cache(disk_path, facts)
    return facts


# One request, no retries, to learn whether the Hub can be reached at all: huggingface_hub
# retries a refused connection or an unknown host for about 23 s, and an air-gapped
# cluster would wait that long for every model before planning from the catalog.
PROBE_TIMEOUT_S = 5.0


def _probe(endpoint: str) -> None:
    """Raises the HTTP client's transport error when `endpoint` cannot be reached; any
    HTTP answer, even an error, means it can. Through huggingface_hub's own session, so
    proxies and certificates are the ones its downloads use."""
    from huggingface_hub import constants, get_session

    if constants.HF_HUB_OFFLINE:
        return  # the download below says so at once
    get_session().head(endpoint, timeout=PROBE_TIMEOUT_S)


def _fetch_facts(
    model_id: str, revision: str, token: str | None, cache_dir: str | Path | None, endpoint: str | None
) -> ModelFacts:
    from huggingface_hub import HfApi
    from huggingface_hub.errors import NotASafetensorsRepoError

    api = HfApi(endpoint=endpoint, token=token)
    hub_cache = str(Path(cache_dir) / "hub") if cache_dir else None
    with hub_errors_as_unavailable(model_id, revision, api.endpoint):
        _probe(api.endpoint)
        config_path = api.hf_hub_download(model_id, "config.json", revision=revision, cache_dir=hub_cache)
        config = json.loads(Path(config_path).read_text())
        try:
            metadata = api.get_safetensors_metadata(model_id, revision=revision)
        except NotASafetensorsRepoError:
            metadata = None  # .bin-only repository: fall back to the architecture estimate
    parameter_count = parameter_count_from_safetensors_metadata(metadata) if metadata else None
    return facts_from_config(config, parameter_count, model_id=model_id, revision=revision)


def adapter_config_from_hub(repo_id: str, revision: str) -> dict[str, Any]:
    """adapter_config.json from the Hub (HF_ENDPOINT honoured); ModelFactsUnavailable if it cannot be had."""
    from huggingface_hub import hf_hub_download
    from huggingface_hub.errors import HfHubHTTPError
    from requests import RequestException  # noqa: F401  (older huggingface-hub raises it)

    try:
        path = hf_hub_download(repo_id, "adapter_config.json", revision=revision)
    except (HfHubHTTPError, OSError, ValueError) as err:
        raise ModelFactsUnavailable(f"adapter_config.json of {repo_id}@{revision} could not be read: {err}") from None
    with open(path) as fh:
        config: dict[str, Any] = json.load(fh)
    return config

"""The catalog: model facts shipped with the operator, for planning without the Hub.

An air-gapped cluster, or a gated model whose token the operator never reads, leaves the
Hub path without an answer. The catalog answers for the models it knows: each entry is a
model's config.json (the fields the planner reads) and its exact parameter count, tied to
the revision they were read from, with where each number came from. Entries are data
(`data/catalog/*.json`), parsed by the same function as the Hub's config.json
(llm_common.modelfacts.facts_from_config), so a catalog plan equals a Hub plan.

A platform team adds entries in a file (the chart mounts `catalog.extraModels` from a
ConfigMap); an entry there replaces a shipped one of the same id. A bad entry is reported
once, naming the entry and the field, and left out; the others load.
"""

from __future__ import annotations

import functools
import json
import logging
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field, replace
from importlib import resources
from pathlib import Path
from typing import Any

import yaml

from llm_common.modelfacts import ModelFacts, facts_from_config
from llm_common.words import plural

log = logging.getLogger(__name__)

# The branch a spec names when it pins nothing (the CRD's default for spec.model.revision).
UNPINNED = "main"

# config.json keys the parser reads, by the JSON type they must have (null is allowed: it
# means "not set", as transformers writes it).
_INTEGER_KEYS = (
    "hidden_size",
    "n_embd",
    "n_embed",
    "d_model",
    "num_attention_heads",
    "n_head",
    "num_heads",
    "num_hidden_layers",
    "n_layer",
    "num_layers",
    "num_key_value_heads",
    "num_kv_heads",
    "n_head_kv",
    "head_dim",
    "vocab_size",
    "max_position_embeddings",
    "n_positions",
    "max_sequence_length",
    "seq_length",
    "intermediate_size",
    "ffn_hidden_size",
    "n_inner",
    "num_local_experts",
    "num_experts",
    "n_routed_experts",
    "num_experts_per_tok",
    "num_experts_per_token",
    "moe_top_k",
    "moe_intermediate_size",
    "shared_expert_intermediate_size",
)
_BOOLEAN_KEYS = ("tie_word_embeddings", "attention_bias", "bias", "new_decoder_architecture", "multi_query")
_STRING_KEYS = ("model_type", "torch_dtype", "dtype")
_OBJECT_KEYS = ("quantization_config", "text_config")
_ENTRY_KEYS = {"id", "revision", "parameterCount", "config", "sources", "facts"}


class CatalogEntryError(ValueError):
    """One entry that cannot be used: says which entry, where, and which field."""


@dataclass(frozen=True)
class Entry:
    """One model of the catalog: its facts (for `revision`) and where they came from."""

    facts: ModelFacts
    origin: str  # "built in" or the file the entry came from
    sources: Mapping[str, Any] = field(default_factory=dict, hash=False)

    @property
    def model_id(self) -> str:
        return self.facts.model_id

    @property
    def revision(self) -> str:
        return self.facts.revision


@dataclass(frozen=True)
class Match:
    """A catalog answer for id@revision: the facts (carrying the revision asked for, so
    that status.modelFacts matches the spec) and a sentence when the revisions differ."""

    facts: ModelFacts
    entry: Entry
    note: str = ""


def short_revision(revision: str) -> str:
    """A commit as people quote it (7 hex digits); anything else as it is."""
    is_commit = len(revision) == 40 and all(c in "0123456789abcdef" for c in revision)
    return revision[:7] if is_commit else revision


class Catalog:
    """Entries by model id (case-insensitive, as the Hub treats ids), later ones winning,
    and the problems of the entries that were left out."""

    def __init__(self, entries: Iterable[Entry] = (), problems: Iterable[tuple[str, str]] = ()):
        self._by_id: dict[str, Entry] = {}
        for entry in entries:
            self._by_id[entry.model_id.lower()] = entry
        # (model id or "", sentence): an id lets a plan that misses say why.
        self.problems: tuple[tuple[str, str], ...] = tuple(problems)

    def __len__(self) -> int:
        return len(self._by_id)

    def entries(self) -> list[Entry]:
        """Every entry, by model id."""
        return sorted(self._by_id.values(), key=lambda e: e.model_id.lower())

    def entry(self, model_id: str) -> Entry | None:
        return self._by_id.get(model_id.lower())

    def match(self, model_id: str, revision: str) -> Match | None:
        """The entry's facts for model_id@revision. An unpinned spec (main) takes the
        entry as it is; a spec pinning another revision gets them with a sentence saying
        they are for a different revision (architectures rarely change between commits,
        but the plan should not hide that they might have)."""
        entry = self.entry(model_id)
        if entry is None:
            return None
        note = ""
        if revision != UNPINNED and not _same_revision(revision, entry.revision):
            note = (
                f"The catalog's facts are for revision {short_revision(entry.revision)}, not {revision} "
                "(spec.model.revision); the plan uses them until the download Job reads the pinned revision's own."
            )
        return Match(replace(entry.facts, model_id=model_id, revision=revision), entry, note)

    def problem_for(self, model_id: str) -> str:
        """Why an entry for model_id was left out, if one was."""
        return next((p for i, p in self.problems if i and i.lower() == model_id.lower()), "")

    def extended(self, other: Catalog) -> Catalog:
        """This catalog with `other`'s entries added (replacing same ids) and its problems."""
        return Catalog([*self.entries(), *other.entries()], (*self.problems, *other.problems))


def _same_revision(asked: str, have: str) -> bool:
    """A commit may be quoted short (at least 7 hex digits)."""
    return asked == have or (len(asked) >= 7 and have.startswith(asked))


def _type_problem(value: Any, key: str) -> str:
    if value is None:
        return ""
    if key in _INTEGER_KEYS and (isinstance(value, bool) or not isinstance(value, int)):
        return f"must be an integer, got {value!r}"
    if key in _INTEGER_KEYS and value < 0:
        return f"must not be negative, got {value}"
    if key in _BOOLEAN_KEYS and not isinstance(value, bool):
        return f"must be true or false, got {value!r}"
    if key in _STRING_KEYS and not isinstance(value, str):
        return f"must be a string, got {value!r}"
    if key in _OBJECT_KEYS and not isinstance(value, dict):
        return f"must be an object, got {value!r}"
    return ""


def _check_config(config: Mapping[str, Any], path: str) -> None:
    for key, value in config.items():
        problem = _type_problem(value, key)
        if problem:
            raise CatalogEntryError(f"{path}.{key} {problem}")
    if isinstance(config.get("text_config"), dict):
        _check_config(config["text_config"], f"{path}.text_config")


def parse_entry(raw: Any, origin: str) -> Entry:
    """An entry from its data; CatalogEntryError names the field that is wrong."""
    if not isinstance(raw, dict):
        raise CatalogEntryError(f"must be an object with id and config, got {raw!r}")
    unknown = sorted(set(raw) - _ENTRY_KEYS)
    if unknown:
        raise CatalogEntryError(f"unknown field {unknown[0]} (an entry has {', '.join(sorted(_ENTRY_KEYS))})")
    model_id = raw.get("id")
    if not isinstance(model_id, str) or "/" not in model_id.strip("/"):
        raise CatalogEntryError(f"id must be a Hugging Face model id such as org/name, got {model_id!r}")
    revision = raw.get("revision", UNPINNED)
    if not isinstance(revision, str) or not revision:
        raise CatalogEntryError(f"revision must be a branch, tag or commit, got {revision!r}")
    count = raw.get("parameterCount")
    if count is not None and (isinstance(count, bool) or not isinstance(count, int) or count < 1):
        raise CatalogEntryError(f"parameterCount must be a positive integer (the exact count), got {count!r}")
    config = raw.get("config")
    if not isinstance(config, dict):
        raise CatalogEntryError(f"config must be an object (the model's config.json), got {config!r}")
    _check_config(config, "config")
    sources = raw.get("sources") or {}
    if not isinstance(sources, dict):
        raise CatalogEntryError(f"sources must be an object, got {sources!r}")
    try:
        facts = facts_from_config(config, count, model_id=model_id, revision=revision)
    except (ValueError, TypeError, KeyError) as err:
        raise CatalogEntryError(f"config: {err}") from None
    _check_stated_facts(raw.get("facts"), facts)
    return Entry(facts, origin, sources)


def _check_stated_facts(stated: Any, facts: ModelFacts) -> None:
    """An entry may state the numbers the planner will use (the shipped ones do, for
    readers); each must be what its config gives, or the entry is refused."""
    if stated is None:
        return
    if not isinstance(stated, dict):
        raise CatalogEntryError(f"facts must be an object, got {stated!r}")
    parsed = facts.to_dict()
    for key, value in stated.items():
        if key not in parsed:
            raise CatalogEntryError(f"facts.{key} is not a fact (the facts are {', '.join(sorted(parsed))})")
        if parsed[key] != value:
            raise CatalogEntryError(f"facts.{key} says {value!r}, but config gives {parsed[key]!r}")


def parse_entries(items: Any, origin: str) -> Catalog:
    """A catalog from a list of entries (or {"models": [...]}); bad entries are left out
    with a sentence each, and the rest load."""
    if isinstance(items, dict) and "models" in items:
        items = items["models"]
    if items is None:
        items = []
    if not isinstance(items, list):
        return Catalog(
            problems=[
                (
                    "",
                    f"Catalog {origin}: expected a list of models, got {type(items).__name__}; "
                    "no entry of it was loaded.",
                )
            ]
        )
    entries: list[Entry] = []
    problems: list[tuple[str, str]] = []
    for index, raw in enumerate(items, 1):
        name = given if isinstance(raw, dict) and isinstance(given := raw.get("id"), str) else ""
        try:
            entries.append(parse_entry(raw, origin))
        except CatalogEntryError as err:
            which = f"entry {index} ({name})" if name else f"entry {index}"
            problems.append((name, f"Catalog {origin}, {which}: {err}; the entry is left out."))
    return Catalog(entries, problems)


def load_file(path: str | Path) -> Catalog:
    """Extra entries from a YAML or JSON file (JSON is YAML). A file that cannot be read
    or parsed is one problem, not a crash: the operator goes on with what it has."""
    path = Path(path)
    try:
        data = yaml.safe_load(path.read_text())
    except OSError as err:
        return Catalog(problems=[("", f"Catalog {path}: cannot be read ({err.strerror}); no entry of it was loaded.")])
    except yaml.YAMLError as err:
        return Catalog(problems=[("", f"Catalog {path}: not valid YAML ({err}); no entry of it was loaded.")])
    return parse_entries(data, str(path))


@functools.lru_cache(maxsize=1)
def builtin() -> Catalog:
    """The entries shipped in the package (read once)."""
    catalog = Catalog()
    folder = resources.files("llm_operator.facts") / "data" / "catalog"
    for item in sorted(folder.iterdir(), key=lambda i: i.name):
        if item.name.endswith(".json"):
            catalog = catalog.extended(parse_entries(json.loads(item.read_text()), f"built in ({item.name})"))
    return catalog


def load(extra_files: Iterable[str | Path] = ()) -> Catalog:
    """The shipped catalog plus the entries of `extra_files`, each problem logged once."""
    catalog = builtin()
    for path in extra_files:
        extra = load_file(path)
        log.info("catalog: %s from %s", plural(len(extra), "model"), path)
        catalog = catalog.extended(extra)
    for _, problem in catalog.problems:
        log.warning("%s", problem)
    return catalog

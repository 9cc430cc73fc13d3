"""LoRA adapters served beside the base model: how they are written down between the
operator and the pods ("name=org/repo@revision,..."), and the engine's entry for each."""

from __future__ import annotations

from dataclasses import dataclass

from llm_common.cache import snapshot_dir

__all__ = ["AdapterRef", "SettingsError", "adapter_entry", "parse_adapters", "snapshot_dir"]


class SettingsError(ValueError):
    """The serving environment is incomplete or malformed; the message names the variable."""


@dataclass(frozen=True)
class AdapterRef:
    """A LoRA adapter served beside the base model: the name clients ask for, and its repository."""

    name: str
    model_id: str
    revision: str = "main"

    def __str__(self) -> str:
        return f"{self.name}={self.model_id}@{self.revision}"


def parse_adapters(text: str) -> tuple[AdapterRef, ...]:
    """ "name=org/repo@revision,other=org/repo2" -> AdapterRefs (revision defaults to main)."""
    refs = []
    for item in (part.strip() for part in text.split(",")):
        if not item:
            continue
        name, eq, rest = item.partition("=")
        model_id, _, revision = rest.partition("@")
        if not eq or not name or not model_id:
            raise SettingsError(f"adapter {item!r} is not of the form name=org/repo@revision")
        refs.append(AdapterRef(name.strip(), model_id.strip(), revision.strip() or "main"))
    return tuple(refs)


def adapter_entry(ref: AdapterRef, local_dir: str | None) -> str:
    """One --lora-adapters entry. TGI's parser takes "id", "id@revision" and "name=path": a
    cached adapter is passed by path (keeping its client-facing name), one from the Hub as
    id@revision (clients then name it by its id)."""
    return f"{ref.name}={local_dir}" if local_dir else f"{ref.model_id}@{ref.revision}"

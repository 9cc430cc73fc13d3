"""Pure: what an engine's table of flags answers whatever the engine (tgi_rules, vllm_rules)."""

from __future__ import annotations

from typing import Generic, Protocol, TypeVar


class _Flag(Protocol):
    @property
    def name(self) -> str: ...

    @property
    def owner(self) -> str | None: ...


F = TypeVar("F", bound=_Flag)


class FlagTable(Generic[F]):
    """Mixed into an engine's Table, which has `flags`, each with `name` and `owner`."""

    flags: tuple[F, ...]

    def flag(self, name: str) -> F:
        return next(f for f in self.flags if f.name == name)

    @property
    def open_flags(self) -> tuple[F, ...]:
        """The flags engine.args may give: those the operator does not set."""
        return tuple(f for f in self.flags if f.owner is None)

    def owned_by(self) -> dict[str, tuple[F, ...]]:
        """Owner (a spec field or OPERATOR) -> the flags it sets, in table order."""
        out: dict[str, list[F]] = {}
        for f in self.flags:
            if f.owner:
                out.setdefault(f.owner, []).append(f)
        return {k: tuple(v) for k, v in out.items()}

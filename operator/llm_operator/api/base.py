"""The machinery every API model shares: camelCase on the wire with unknown fields refused,
and cross-field rules declared once (`Rule`) that serve both as CEL in the CRD (so the
apiserver rejects a bad manifest at `kubectl apply`) and as a pydantic validator (so
`llm-operator render` rejects it without a cluster)."""

from __future__ import annotations

from collections.abc import Callable, Iterable
from dataclasses import dataclass
from typing import Any, Self

from pydantic import BaseModel, ConfigDict, model_validator
from pydantic.alias_generators import to_camel

DNS_LABEL = r"^[a-z0-9]([-a-z0-9]*[a-z0-9])?$"
DNS_SUBDOMAIN = r"^[a-z0-9]([-a-z0-9]*[a-z0-9])?(\.[a-z0-9]([-a-z0-9]*[a-z0-9])?)*$"
# A Hub repository id: "name" or "owner/name", as huggingface-hub validates it.
HUB_REPO_ID = r"^[A-Za-z0-9]([A-Za-z0-9._-]*[A-Za-z0-9])?(/[A-Za-z0-9]([A-Za-z0-9._-]*[A-Za-z0-9])?)?$"
QUANTITY = r"^[0-9]+(\.[0-9]+)?(Ki|Mi|Gi|Ti|Pi|k|M|G|T|P)?$"
ENV_NAME = r"^[-._a-zA-Z][-._a-zA-Z0-9]*$"


@dataclass(frozen=True)
class Rule:
    """A cross-field rule: CEL for the apiserver, `holds` for Python, one message for both.
    `explain` lets Python also name the offending values (a CEL messageExpression doing the
    same over engine.args costs more than the apiserver's estimator allows)."""

    cel: str
    message: str
    field_path: str
    holds: Callable[[Any], bool]
    explain: Callable[[Any], str] | None = None

    def to_cel(self) -> dict[str, str]:
        return {"rule": self.cel, "message": self.message, "fieldPath": self.field_path}

    def message_for(self, obj: Any) -> str:
        return self.explain(obj) if self.explain else self.message


class Model(BaseModel):
    """Base for every API object: camelCase on the wire, unknown fields refused."""

    model_config = ConfigDict(
        alias_generator=to_camel, populate_by_name=True, extra="forbid", use_enum_values=True, validate_default=True
    )

    def wire(self) -> dict[str, Any]:
        """The object as it is written in a manifest (camelCase, unset optionals left out)."""
        return self.model_dump(by_alias=True, exclude_none=True, mode="json")


class RuledModel(Model):
    """A model with cross-field `__rules__`, checked here and emitted as CEL by crd.py."""

    __rules__: tuple[Rule, ...] = ()

    @model_validator(mode="after")
    def _check_rules(self) -> Self:
        for rule in type(self).__rules__:
            if not rule.holds(self):
                raise RuleViolation(rule, rule.message_for(self))
        return self


class RuleViolation(ValueError):
    def __init__(self, rule: Rule, message: str | None = None):
        super().__init__(message or rule.message)
        self.rule = rule


def _cel_list(items: Iterable[str]) -> str:
    return "[" + ", ".join("'" + i + "'" for i in items) + "]"


def _set(model: BaseModel, field: str) -> bool:
    return getattr(model, field, None) is not None

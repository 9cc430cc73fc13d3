"""Pure: TGI's own argument rules, mirrored from its source as data.

data/tgi-launcher-3.3.7.json holds every text-generation-launcher flag (long name, the
environment variable clap also reads it from, what value it takes, which spec field owns
it when the operator sets it) and the rules the launcher, the router and the server apply
to them, each with the file and function it mirrors. This module reads that table and
checks an argv against it; the operator (admission and decide) and `llm-runtime serve`
both use it, so the three refuse the same things with the same reasons.

Callers say how a flag is named to their user (`Namer`): the operator names spec fields
(spec.limits.maxInputTokens), the runtime its LLM_* variables.
"""

from __future__ import annotations

import json
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass
from importlib import resources
from typing import Any

from .flag_table import FlagTable

DATA_FILE = "tgi-launcher-3.3.7.json"
# The operator sets these itself; they have no spec field (the Service and probes target the port).
OPERATOR = "operator"
# Integer types as clap parses them: Rust's unsigned integers of that width.
_UNSIGNED_BITS = {"usize": 64, "u64": 64, "u32": 32, "u16": 16}


@dataclass(frozen=True)
class Flag:
    name: str  # long name without the dashes: "max-input-tokens"
    env: str | None  # the variable clap reads it from when the flag is absent
    value: str  # flag | bool | string | enum | f32 | usize | u16 | u32 | u64 | usize-list
    choices: tuple[str, ...] = ()
    short: str | None = None
    repeatable: bool = False
    owner: str | None = None  # the spec field that sets it, OPERATOR, or None: engine.args may

    @property
    def option(self) -> str:
        return f"--{self.name}"

    @property
    def takes_value(self) -> bool:
        return self.value != "flag"


@dataclass(frozen=True)
class Rule:
    id: str
    kind: str
    flag: str
    source: str
    message: str
    other: str | None = None
    alias: str | None = None
    min: int | None = None
    max: int | None = None
    values: tuple[str, ...] = ()
    allowed: tuple[str, ...] = ()
    checkpoint: bool = False
    default_other: str | None = None
    checkpoint_message: str | None = None


@dataclass(frozen=True)
class Table(FlagTable[Flag]):
    source: dict[str, Any]
    flags: tuple[Flag, ...]
    rules: tuple[Rule, ...]

    @property
    def env_names(self) -> tuple[str, ...]:
        return tuple(f.env for f in self.flags if f.env)


def load_table(text: str | None = None) -> Table:
    raw = json.loads(
        text
        if text is not None
        else resources.files("llm_common").joinpath("data", DATA_FILE).read_text(encoding="utf-8")
    )
    flags = tuple(
        Flag(
            name=f["name"],
            env=f.get("env"),
            value=f["value"],
            choices=tuple(f.get("choices", ())),
            short=f.get("short"),
            repeatable=bool(f.get("repeatable")),
            owner=f.get("owner"),
        )
        for f in raw["flags"]
    )
    rules = tuple(
        Rule(**{**r, "values": tuple(r.get("values", ())), "allowed": tuple(r.get("allowed", ()))})
        for r in raw["rules"]
    )
    return Table(source=raw["source"], flags=flags, rules=rules)


TABLE = load_table()
QUANTIZE_CHOICES = TABLE.flag("quantize").choices
DTYPE_CHOICES = TABLE.flag("dtype").choices
# --dtype is taken together with these quantizations only (server cli.py).
DTYPE_WITH_QUANTIZE = next(r.allowed for r in TABLE.rules if r.id == "dtype-only-with-bitsandbytes")

Namer = Callable[[Flag], str]


def launcher_namer(flag: Flag) -> str:
    return flag.option


# --- one argument at a time ----------------------------------------------------------------


def flag_of(word: str) -> Flag | None:
    """The flag a word of argv names ("--port", "--port=80", "-p"), or None."""
    if word.startswith("--"):
        name = word[2:].split("=", 1)[0]
        return next((f for f in TABLE.flags if f.name == name), None)
    if word.startswith("-") and len(word) >= 2:
        return next((f for f in TABLE.flags if f.short == word[1]), None)
    return None


def flag_name(word: str) -> str:
    """The option a word gives, as written: "--port=80" -> "--port"."""
    return word.split("=", 1)[0] if word.startswith("--") else word[:2]


def is_option(word: str) -> bool:
    return word.startswith("-")


def unknown_options(args: Sequence[str]) -> list[str]:
    return [flag_name(a) for a in args if is_option(a) and flag_of(a) is None]


def owned_options(args: Sequence[str]) -> list[tuple[str, Flag]]:
    return [(flag_name(a), f) for a in args if is_option(a) and (f := flag_of(a)) is not None and f.owner]


def repeated_options(args: Sequence[str]) -> list[str]:
    seen: list[str] = []
    twice: list[str] = []
    for a in args:
        f = flag_of(a) if is_option(a) else None
        if f is None or f.repeatable:
            continue
        if f.name in seen and f.option not in twice:
            twice.append(f.option)
        seen.append(f.name)
    return twice


def launcher_env_names(names: Iterable[str]) -> list[str]:
    own = set(TABLE.env_names)
    return [n for n in names if n in own]


def value_problem(flag: Flag, value: str) -> str | None:
    """Why clap would refuse this value for this flag, or None."""
    if flag.value == "string":
        return None
    if flag.value == "bool":
        return None if value in ("true", "false") else "use true or false"
    if flag.value == "enum":
        return None if value in flag.choices else f"use one of {', '.join(flag.choices)}"
    if flag.value == "f32":
        try:
            float(value)
        except ValueError:
            return "use a number"
        return None
    items = value.split(",") if flag.value == "usize-list" else [value]
    bits = _UNSIGNED_BITS["usize" if flag.value == "usize-list" else flag.value]
    for item in items:
        if not item.isdigit() or int(item) >= 2**bits:
            return f"use a whole number from 0 to {2**bits - 1}" + (
                ", or several separated by commas" if flag.value == "usize-list" else ""
            )
    return None


@dataclass(frozen=True)
class Parsed:
    values: dict[str, list[str | None]]  # flag name -> each value given (None for a plain flag)
    problems: list[str]


def parse(argv: Sequence[str], name: Namer = launcher_namer) -> Parsed:
    """argv as clap would read it: each problem is a sentence naming the flag by `name`."""
    values: dict[str, list[str | None]] = {}
    problems: list[str] = []
    i = 0
    while i < len(argv):
        word = argv[i]
        i += 1
        if not is_option(word):
            problems.append(f"{word!r} is not an option TGI's launcher knows, nor the value of one.")
            continue
        flag = flag_of(word)
        if flag is None:
            problems.append(f"{flag_name(word)} is not a flag of TGI's launcher: {known_list()}.")
            if "=" not in word and i < len(argv) and not is_option(argv[i]):
                i += 1  # its value, most likely: one problem is enough
            continue
        inline = word.split("=", 1)[1] if word.startswith("--") and "=" in word else None
        if not flag.takes_value:
            if inline is not None:
                problems.append(f"{name(flag)} takes no value, but was given {inline!r}.")
                continue
            value = None
        elif inline is not None:
            value = inline
        elif i < len(argv) and not is_option(argv[i]):
            value = argv[i]
            i += 1
        else:
            problems.append(f"{name(flag)} needs a value.")
            continue
        if value is not None and (why := value_problem(flag, value)):
            problems.append(f"{name(flag)}: {value!r} is not a value TGI's launcher accepts: {why}.")
            continue  # refused already: the rules between flags judge valid values only
        if flag.name in values and not flag.repeatable:
            problems.append(f"{name(flag)} is given twice: TGI's launcher takes it once.")
        values.setdefault(flag.name, []).append(value)
    return Parsed(values, problems)


def known_list() -> str:
    return "engine arguments may use " + ", ".join(f.option for f in TABLE.open_flags)


# --- the rules between flags ---------------------------------------------------------------


@dataclass(frozen=True)
class Checkpoint:
    """What the model's config.json tells the launcher: the quantization it passes every
    shard when --quantize is unset, and the context the server caps the total at."""

    quantization: str | None = None
    context: int | None = None

    @classmethod
    def from_config(
        cls, quantization_config: Mapping[str, Any] | None, max_position_embeddings: int | None
    ) -> Checkpoint:
        method = (quantization_config or {}).get("quant_method")
        # The launcher deserializes quant_method into its own enum: anything else reads as none.
        return cls(method if method in QUANTIZE_CHOICES else None, max_position_embeddings)


def _number(raw: str | None) -> float | None:
    try:
        return float(raw) if raw is not None else None
    except ValueError:
        return None


def rule_problems(
    values: Mapping[str, list[str | None]], checkpoint: Checkpoint | None = None, name: Namer = launcher_namer
) -> list[str]:
    """The table's rules over parsed flag values (plus what the checkpoint says)."""
    cp = checkpoint or Checkpoint()

    def last(flag: str | None) -> str | None:
        got = values.get(flag or "")
        return got[-1] if got else None

    problems = []
    for r in TABLE.rules:
        flag = TABLE.flag(r.flag)
        other = TABLE.flag(r.other) if r.other else None
        value = last(r.flag) if r.alias is None else (last(r.flag) or last(r.alias))
        other_value = last(r.other)
        from_checkpoint = False
        if r.checkpoint and other is not None and other.name == "quantize" and other_value is None and cp.quantization:
            other_value, from_checkpoint = cp.quantization, True
        if r.checkpoint and r.flag == "quantize" and value is None and cp.quantization:
            value, from_checkpoint = cp.quantization, True
        if r.default_other == "context" and other_value is None and cp.context:
            other_value, from_checkpoint = str(cp.context), True
        broken = False
        n, o = _number(value), _number(other_value)
        if r.kind == "min":
            assert r.min is not None  # a "min" rule names its bound (the table's rules)
            broken = n is not None and n < r.min
        elif r.kind == "true-needs-min":
            assert r.min is not None
            broken = value == "true" and (o if o is not None else 0) < r.min
        elif r.kind == "value-caps-other":
            assert r.max is not None
            broken = value in r.values and o is not None and o > r.max
        elif r.kind == "exclusive":
            broken = r.flag in values and r.other in values
        elif r.kind == "less-than":
            broken = n is not None and o is not None and not n < o
        elif r.kind == "at-most":
            broken = n is not None and o is not None and not n <= o
        elif r.kind == "value-excludes-other":
            broken = value is not None and other_value is not None and other_value not in r.allowed
        elif r.kind == "requires":
            broken = r.flag in values and r.other not in values
        else:
            raise ValueError(f"rule {r.id}: unknown kind {r.kind!r}")
        if not broken:
            continue
        template = r.checkpoint_message if from_checkpoint and r.checkpoint_message else r.message
        problems.append(
            template.format(
                flag=name(flag),
                other=name(other) if other else "",
                value=value,
                other_value=other_value,
                other_value_minus_one=int(o) - 1 if o is not None else "",
                min=r.min,
                max=r.max,
            )
        )
    return problems


def argv_problems(argv: Sequence[str], checkpoint: Checkpoint | None = None, name: Namer = launcher_namer) -> list[str]:
    """Everything TGI's launcher, router and server would refuse in this argv, as sentences."""
    parsed = parse(argv, name)
    return parsed.problems + rule_problems(parsed.values, checkpoint, name)


def extra_args_problems(extra: Sequence[str], name: Namer, where: str, fixed: str = "it is set for you") -> list[str]:
    """Extra arguments appended after the settings' own: no flag the settings own, none the
    launcher lacks. `where` names the list to the user (spec.engine.args, LLM_EXTRA_ARGS);
    `fixed` says why a flag no setting can change (a name starting with "-") is not theirs."""
    problems = []
    for option, flag in owned_options(extra):
        setting = name(flag)
        problems.append(
            f"{where} must not give {option}: "
            + (f"{fixed}." if setting.startswith("-") else f"it is set from {setting}; set that instead.")
        )
    unknown = unknown_options(extra)
    if unknown:
        problems.append(
            f"{where}: {', '.join(unknown)} {'is not a flag' if len(unknown) == 1 else 'are not flags'} "
            f"of TGI 3.3.7's launcher; {known_list()}."
        )
    return problems

"""Pure: `vllm serve`'s own argument rules, as data.

data/vllm-serve-0.33.0.json holds every option of `vllm serve` 0.33.0 (long name, aliases,
the kind of value it takes, its choices, whether it takes a list, which spec field owns it
when the operator sets it), as vLLM's parser builds them, with the wheel they came from.
hack/vllm_table.py writes it; hack/vllm_parser/check_table.py compares it with the parser.

This module reads an argv as vLLM does: FlexibleArgumentParser's rewrites first
(--max_model_len is --max-model-len, -O3 is --optimization-level 3, --x.key v is a key of the
JSON option --x), then argparse (an option's value is the next word unless that is an option;
a list option takes every word up to the next option). It does not judge what vLLM's config
checks later (--quantization, --kv-cache-dtype, --load-format: TABLE.source["checked_later"]),
rules between flags, or anything that needs the model's config.
"""

from __future__ import annotations

import json
import re
from collections.abc import Sequence
from dataclasses import dataclass
from importlib import resources
from typing import Any

from .flag_table import FlagTable

VERSION = "0.33.0"
DATA_FILE = f"vllm-serve-{VERSION}.json"
DEFAULT_PORT = 8000  # FrontendArgs.port (vllm/entrypoints/common/cli_args.py)
# The operator sets these itself; they have no spec field (the Service and probes target the port).
OPERATOR = "operator"
NO_VALUE = ("flag", "bool-optional")
# argparse reads these as values, not options, when no option looks like one (none does here).
_NEGATIVE_NUMBER = re.compile(r"^-\d+$|^-\d*\.\d+$")
# vllm/utils/argparse_utils.py human_readable_int: 8k = 8000, 8K = 8192.
_HUMAN_INT = re.compile(r"(\d+(?:\.\d+)?)([kKmMgGtT])")
_HUMAN_NUMBER = re.compile(r"\b\d+(?:\.\d+)?[kKmMgGtT]\b")
_JSON_STRING = re.compile(r'("(?:[^"\\]|\\.)*")')
_LOOKS_LIKE_OBJECT = re.compile(r"(?s)^\s*{.*}\s*$")
# -O<n>, -O=<n> and -O followed by one of these are --optimization-level (FlexibleArgumentParser.parse_args).
_O_LEVELS = ("0", "1", "2", "3")


@dataclass(frozen=True)
class Flag:
    name: str  # long name without the dashes: "tensor-parallel-size"
    value: str  # flag | bool-optional | int | human-int | human-int-or-auto | float | string | enum | json | json-object | json-or-string
    aliases: tuple[str, ...] = ()  # other spellings the parser takes: "-tp", "--no-enable-x", "--disable-x"
    choices: tuple[str, ...] = ()
    nargs: str | None = None  # "+": a list, every word up to the next option; "?": the value may be left out
    repeatable: bool = False  # each occurrence adds (action='append'); otherwise the last one wins
    fold: str | None = None  # the value is lower-cased and - read as _ before the choices are tried
    takes_none: bool = False  # 'None' and '' read as unset (typed `X | None`)
    owner: str | None = None  # the spec field that sets it, OPERATOR, or None: engine.args may
    positional: bool = False  # `vllm serve MODEL`

    @property
    def option(self) -> str:
        return self.name if self.positional else f"--{self.name}"

    @property
    def takes_value(self) -> bool:
        return self.value not in NO_VALUE

    @property
    def is_json(self) -> bool:
        return self.value in ("json", "json-object", "json-or-string")


@dataclass(frozen=True)
class Table(FlagTable[Flag]):
    source: dict[str, Any]
    flags: tuple[Flag, ...]


def load_table(text: str | None = None) -> Table:
    raw = json.loads(
        text
        if text is not None
        else resources.files("llm_common").joinpath("data", DATA_FILE).read_text(encoding="utf-8")
    )
    flags = tuple(
        Flag(
            name=f["name"],
            value=f["value"],
            aliases=tuple(f.get("aliases", ())),
            choices=tuple(f.get("choices", ())),
            nargs=f.get("nargs"),
            repeatable=bool(f.get("repeatable")),
            fold=f.get("fold"),
            takes_none=bool(f.get("takes_none")),
            owner=f.get("owner"),
            positional=bool(f.get("positional")),
        )
        for f in raw["flags"]
    )
    return Table(source=raw["source"], flags=flags)


TABLE = load_table()
_BY_OPTION = {s: f for f in TABLE.flags if not f.positional for s in (f.option, *f.aliases)}
_OPTIMIZATION = TABLE.flag("optimization-level")


# --- one word ------------------------------------------------------------------------------


@dataclass(frozen=True)
class _Word:
    written: str  # the option as written: "--max_model_len", "-tp", "-O"
    flag: Flag | None
    path: str | None = None  # a JSON option's key: "mode" in --compilation-config.mode
    inline: str | None = None  # a value in the same word: --port=80, -O3, -qfp8


def _read(word: str) -> _Word:
    if word.startswith("-O") and len(word) > 2 and not word.startswith("--"):
        return _Word("-O", _OPTIMIZATION, inline=word[3:] if word[2] == "=" else word[2:])
    key, eq, inline = word.partition("=")
    key, dot, path = key.partition(".")
    # vLLM reads '_' as '-' in a --word's name (up to the first '.'): --max_model_len.
    name = "--" + key[2:].replace("_", "-") if key.startswith("--") else key
    flag = _BY_OPTION.get(name)
    if flag is None and not key.startswith("--") and len(key) > 2 and not dot and not eq:
        # argparse reads -qfp8 as -q fp8 when -q is an option.
        short = _BY_OPTION.get(key[:2])
        if short is not None and short.takes_value:
            return _Word(key[:2], short, inline=key[2:])
    return _Word(key, flag, path if dot else None, inline if eq else None)


def flag_of(word: str) -> Flag | None:
    """The flag a word of argv names ("--max-model-len", "--max_model_len=8k", "-tp",
    "--compilation-config.mode", "-O3"), or None. A bare -O names a flag only when 0-3 follows
    it: see unknown_options."""
    return _read(word).flag if is_option(word) else None


def flag_name(word: str) -> str:
    """The canonical option a word gives ("-tp" -> "--tensor-parallel-size"), or, for an option
    vLLM lacks, the word's option part as written ("--max-modle-len=1" -> "--max-modle-len")."""
    w = _read(word)
    return w.flag.option if w.flag else w.written


def is_option(word: str) -> bool:
    """Whether argparse reads the word as an option rather than a value."""
    if not word.startswith("-") or word == "-" or _NEGATIVE_NUMBER.match(word):
        return False
    # A word with a blank that names no option is a value to argparse (a JSON string, say).
    return " " not in word or _read(word).flag is not None


# --- an argv, word by word -----------------------------------------------------------------


@dataclass(frozen=True)
class _Given:
    word: _Word
    values: tuple[str, ...]
    problem: str | None = None  # a shape problem: no value, a value for a flag that takes none


def _label(w: _Word) -> str:
    assert w.flag is not None
    return w.flag.option if w.written == w.flag.option else f"{w.flag.option} (given as {w.written})"


def _walk(args: Sequence[str]) -> tuple[list[_Given], list[str]]:
    """The options given, each with the words it takes, and the words no option takes."""
    given: list[_Given] = []
    loose: list[str] = []
    i = 0
    while i < len(args):
        word = args[i]
        i += 1
        if not is_option(word):
            loose.append(word)
            continue
        w = _read(word)
        if word == "-O" and i < len(args) and args[i] in _O_LEVELS:
            w = _Word("-O", _OPTIMIZATION)
        f = w.flag
        values: list[str] = []
        problem = None
        if f is None:
            pass
        elif w.path is not None:
            # vLLM takes the next word as the key's value, whatever it looks like.
            if w.inline is not None:
                values.append(w.inline)
            elif i < len(args):
                values.append(args[i])
                i += 1
            else:
                problem = f"{w.written}.{w.path} needs a value."
        elif not f.takes_value:
            if w.inline is not None:
                problem = f"{_label(w)} takes no value, but was given {w.inline!r}; give the flag alone."
        elif w.inline is not None:
            values.append(w.inline)
        else:
            while i < len(args) and not is_option(args[i]):
                values.append(args[i])
                i += 1
                if f.nargs != "+":
                    break
            if not values and f.nargs == "+":
                problem = f"{_label(w)} needs at least one value."
            elif not values and f.nargs != "?":
                problem = f"{_label(w)} needs a value."
            elif dotted := next((v for v in values if v.startswith("-") and "." in v), None):
                # FlexibleArgumentParser takes any word with a leading - and a . for an option's .key.
                problem = (
                    f"{_label(w)}: vLLM reads {dotted!r} as an option's .key, not as a number; "
                    f"write {f.option}={dotted}."
                )
        given.append(_Given(w, tuple(values), problem))
    return given, loose


def value_of(args: Sequence[str], option: str) -> str | None:
    """The value argv gives a flag, read as vLLM reads it (aliases, underscores, "--x=v"; the
    last one when given twice), or None when it is not given with one."""
    values = [
        g.values[0]
        for g in _walk(args)[0]
        if g.word.flag is not None and g.word.flag.option == option and g.word.path is None and g.values
    ]
    return values[-1] if values else None


def unknown_options(args: Sequence[str]) -> list[str]:
    """Options `vllm serve` lacks, each once, as written: vLLM refuses them ('unrecognized arguments')."""
    out: list[str] = []
    for g in _walk(args)[0]:
        if g.word.flag is None and g.word.written not in out:
            out.append(g.word.written)
    return out


def owned_options(args: Sequence[str]) -> list[tuple[str, Flag]]:
    """(the option as written, its flag) for each flag that a spec field or the operator sets."""
    return [(g.word.written, g.word.flag) for g in _walk(args)[0] if g.word.flag is not None and g.word.flag.owner]


def positionals(args: Sequence[str]) -> list[str]:
    """Words that are neither an option nor an option's value: `vllm serve` reads the first as
    the model and refuses any other ('unrecognized arguments')."""
    return _walk(args)[1]


def _overlap(a: str, b: str) -> bool:
    return a == b or a.startswith(b + ".") or b.startswith(a + ".")


def repeated_options(args: Sequence[str]) -> list[str]:
    """Flags given twice (aliases count as the flag): vLLM keeps the last and goes on, which in
    a manifest is a mistake. --middleware adds up, and keys of a JSON option given one by one
    (--compilation-config.mode 3 --compilation-config.backend x) merge, unless the same key
    comes twice or the whole option comes too (then the last wins)."""
    plain: set[str] = set()
    keys: dict[str, list[tuple[str, bool]]] = {}  # flag -> (key, appends) given one by one
    twice: list[str] = []

    def note(option: str) -> None:
        if option not in twice:
            twice.append(option)

    for g in _walk(args)[0]:
        f = g.word.flag
        if f is None or f.repeatable:
            continue
        if g.word.path is None:
            if f.name in plain or f.name in keys:
                note(f.option)
            plain.add(f.name)
            continue
        path, appends = g.word.path.removesuffix("+"), g.word.path.endswith("+")
        if f.name in plain:
            note(f.option)
        elif any(_overlap(path, p) and not (appends and a and p == path) for p, a in keys.get(f.name, ())):
            note(f"{f.option}.{path}")
        keys.setdefault(f.name, []).append((path, appends))
    return twice


# --- values --------------------------------------------------------------------------------


def _human_int_problem(value: str) -> str | None:
    value = value.strip()
    m = _HUMAN_INT.fullmatch(value)
    if m:
        number, suffix = m.groups()
        if suffix.isupper() and "." in number:
            return f"K, M, G and T take whole numbers only: write {number}{suffix.lower()} (powers of 1000) or a whole number of {suffix}"
        return None
    try:
        int(value)
    except ValueError:
        return "use a whole number such as 8192, 8k (8000) or 8K (8192)"
    return None


def _json_problem(value: str, config: bool) -> str | None:
    if config:
        # A config class's JSON may carry k/m/g/t on bare numbers (engine/arg_utils.py _expand_json_human_readable_numbers).
        parts = _JSON_STRING.split(value)
        value = "".join(p if i % 2 else _HUMAN_NUMBER.sub("0", p) for i, p in enumerate(parts))
    try:
        parsed = json.loads(value)
    except json.JSONDecodeError as e:
        return f"it is not JSON ({e.msg} at character {e.pos})"
    if config and not isinstance(parsed, dict):
        return 'give a JSON object, such as {"key": value}'
    return None


def value_problem(flag: Flag, value: str) -> str | None:
    """Why vLLM's parser would refuse this value for this flag, or None."""
    if flag.fold:
        value = value.lower().replace("-", "_")
    if value in ("None", "") and flag.takes_none:
        return None
    kind = flag.value
    if kind == "int":
        try:
            number = int(value)
        except ValueError:
            return "use a whole number"
        value = str(number)
    elif kind == "human-int" or (kind == "human-int-or-auto" and value.strip().lower() not in ("auto", "-1")):
        if why := _human_int_problem(value):
            return why + (", or auto" if kind == "human-int-or-auto" else "")
    elif kind == "float":
        try:
            float(value)
        except ValueError:
            return "use a number"
    elif kind in ("json", "json-object") or (kind == "json-or-string" and _LOOKS_LIKE_OBJECT.match(value)):
        if why := _json_problem(value, config=kind == "json-object"):
            return why
    if flag.choices and value not in flag.choices:
        return f"use one of {', '.join(flag.choices)}"
    return None


def value_problems(args: Sequence[str]) -> list[str]:
    """A sentence for each value vLLM's parser would refuse: a number that does not parse, a
    value not among the flag's choices, JSON that does not parse, a flag that needs a value
    given none (or that takes none given one), a .key on an option that is not JSON.
    Options vLLM lacks are unknown_options' to report."""
    problems = []
    for g in _walk(args)[0]:
        w = g.word
        if w.flag is None:
            continue
        if g.problem:
            problems.append(g.problem)
        elif w.path is not None:
            if not w.flag.is_json:
                problems.append(
                    f"{w.written}.{w.path}: only a JSON option takes .keys, and {w.flag.option} is not one."
                )
        else:
            for value in g.values:
                if why := value_problem(w.flag, value):
                    problems.append(f"{_label(w)}: {value!r} is not a value vLLM {VERSION} accepts: {why}.")
    return problems

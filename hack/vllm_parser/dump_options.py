#!/usr/bin/env python3
"""Print every option of vLLM's `vllm serve` parser as JSON: what hack/vllm_table.py reads.

    python3 hack/vllm_parser/dump_options.py > /tmp/vllm-serve-options.json
    python3 hack/vllm_table.py /tmp/vllm-serve-options.json [--check]

Each option: name (the first --long spelling; model_tag for the positional MODEL), aliases
(the other spellings --help shows), hidden_aliases (spellings the parser takes but hides),
value (bool-flag, bool-optional(--x/--no-x), int, float, string, enum, json, json|string,
list(...)), choices, nargs, action, default, and the argparse type's name. The source block
names the wheel (setup.sh checked its sha256) and the commit the wheel records; it also
lists the values of --quantization, --kv-cache-dtype and --load-format, which vLLM checks
when the engine starts, not while parsing.
"""

from __future__ import annotations

import argparse
import ast
import json
import sys
import typing

import serve_parser

REPOSITORY = "https://github.com/vllm-project/vllm"


def type_name(t) -> str:
    """The argparse type's name, optional_type(...) unwrapped: "int", "human_readable_int", "loads"..."""
    name = getattr(t, "__name__", "") if t is not None else ""
    if name in ("_optional_type", "_parse_type"):
        return type_name(t.__closure__[0].cell_contents)
    return name or "str"


def value_of(action) -> str:
    if isinstance(action, argparse.BooleanOptionalAction):
        return "bool-optional(--x/--no-x)"
    if action.nargs == 0:
        return "bool-flag"
    if action.nargs == "?" and action.const is True:
        return "string|bool-flag(bare flag = true)"
    name = type_name(action.type)
    if action.choices:
        one = "enum"
    elif name in ("int", "human_readable_int", "human_readable_int_or_auto"):
        one = "int"
    elif name == "float":
        one = "float"
    elif name in ("loads", "parse_dataclass"):
        one = "json"
    elif name == "union_dict_and_str":
        one = "json|string"
    else:
        one = "string"
    return f"list({one})" if action.nargs == "+" or isinstance(action, argparse._AppendAction) else one


def plain(value):
    """A default as JSON can hold it."""
    try:
        json.dumps(value)
    except TypeError:
        return repr(value)
    return value


def options(serve) -> list[dict]:
    registered: dict[int, list[str]] = {}
    for s, action in serve._option_string_actions.items():
        registered.setdefault(id(action), []).append(s)
    out = []
    for a in serve._actions:
        if isinstance(a, argparse._HelpAction):
            continue
        shown = list(a.option_strings)
        longs = [s for s in shown if s.startswith("--")]
        name = longs[0][2:] if longs else a.dest
        entry = {
            "name": name,
            "aliases": [s for s in shown if s != f"--{name}"],
            "value": value_of(a),
            "default": plain(a.default),
            "repeatable": isinstance(a, argparse._AppendAction),
        }
        hidden = [s for s in registered.get(id(a), ()) if s not in shown]
        if hidden:
            entry["hidden_aliases"] = hidden
        if a.choices:
            entry["choices"] = [plain(c) for c in a.choices]
        if a.nargs not in (None, 0):
            entry["nargs"] = a.nargs
        if type(a).__name__ not in ("_StoreAction",):
            entry["action"] = "append" if isinstance(a, argparse._AppendAction) else type(a).__name__
        entry["type"] = type_name(a.type)
        out.append(entry)
    return out


def literal_in_source(module: str, name: str) -> list[str]:
    """The strings of `name = Literal[...]` in a vllm module, read without importing it
    (vllm.model_executor.model_loader imports kernels that ask the GPU its capability)."""
    path = serve_parser.HOME / "vllm-py" / (module.replace(".", "/") + "/__init__.py")
    for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
        if isinstance(node, ast.Assign) and [getattr(t, "id", None) for t in node.targets] == [name]:
            return [ast.literal_eval(e) for e in node.value.slice.elts]
    raise SystemExit(f"{name} is no longer a Literal in {module}: see where it went")


def checked_later() -> dict:
    from vllm.config.cache import CacheDType
    from vllm.model_executor.layers.quantization import QUANTIZATION_METHODS

    return {
        "quantization": {
            "values": list(QUANTIZATION_METHODS),
            "validated_in": "vllm/config/model.py:ModelConfig._verify_quantization against "
            "vllm/model_executor/layers/quantization/__init__.py:QUANTIZATION_METHODS",
        },
        "kv-cache-dtype": {
            "values": list(typing.get_args(CacheDType)),
            "validated_in": "vllm/config/cache.py:CacheConfig._validate_cache_dtype against "
            "KV_CACHE_DTYPES (CacheDType Literal)",
        },
        "load-format": {
            "values": literal_in_source("vllm.model_executor.model_loader", "LoadFormats"),
            "validated_in": "vllm/model_executor/model_loader/__init__.py:get_model_loader / LoadFormats",
        },
    }


def main() -> int:
    serve_parser.use_venv()
    _, serve, _ = serve_parser.build()
    import vllm._version

    _, version, wheel, sha256 = (serve_parser.HOME / "ready").read_text().split()
    commit = vllm._version.__commit_id__.removeprefix("g")
    json.dump(
        {
            "source": {
                "repository": REPOSITORY,
                "tag": f"v{version}",
                "commit": f"{commit} (the short hash vllm/_version.py records)",
                "wheel": {"file": wheel, "sha256": sha256},
            },
            "validated_value_sets": checked_later(),
            "options": options(serve),
        },
        sys.stdout,
        indent=1,
    )
    print()
    return 0


if __name__ == "__main__":
    sys.exit(main())

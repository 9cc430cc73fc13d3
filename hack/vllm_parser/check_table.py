#!/usr/bin/env python3
"""Compare common/llm_common/data/vllm-serve-0.33.0.json, and llm_common.vllm_rules' reading
of values, with vLLM's own `vllm serve` parser.

    python3 hack/vllm_parser/check_table.py [-v]

1. Each option: the same spellings (hidden ones too), nargs, choices and append action in the
   table as in the parser, 'None' read as unset in both or neither, and no option in one that
   the other lacks.
2. Each flag's values: a set of probes (numbers, suffixed numbers, auto, None, JSON, each
   choice, ...) given to both. "we refuse, vLLM takes" must never happen: the operator would
   turn away a manifest vLLM runs. "we take, vLLM refuses" is leniency, counted (-v lists it).
3. A list of whole argv lists (ARGVS): vLLM's parser and vllm_rules must agree on each.
Exit status: 1 on a difference in 1. or 3., or any "we refuse, vLLM takes" in 2., else 0.
"""

from __future__ import annotations

import argparse
import sys

import serve_parser

PROBES = [
    "1",
    "0",
    "-1",
    "8192",
    " 8 ",
    "8k",
    "8K",
    "1.5k",
    "1.5K",
    "auto",
    "AUTO",
    "0.5",
    "1e3",
    "nan",
    "x",
    "None",
    "",
    "true",
    "{}",
    '{"a": 1}',
    '{"a": 8k}',
    "{bad",
    "[1, 2]",
    '"s"',
]


def spellings(serve) -> dict[str, set[str]]:
    """dest of each option -> every string the parser takes for it."""
    out: dict[str, set[str]] = {}
    for s, action in serve._option_string_actions.items():
        out.setdefault(action.dest, set()).add(s)
    return out


def typed_with_none(action) -> bool:
    """Whether the parser reads 'None' as unset: its type is engine/arg_utils.py optional_type(...)."""
    return getattr(action.type, "__name__", "") == "_optional_type"


def config_object(action) -> bool:
    """Whether the parser reads the value as a config class's JSON (engine/arg_utils.py parse_dataclass)."""
    t = action.type
    if getattr(t, "__name__", "") == "_optional_type":
        t = t.__closure__[0].cell_contents
    return getattr(t, "__name__", "") == "parse_dataclass"


def shape_differences(serve, table: dict) -> list[str]:
    actions = {a.dest: a for a in serve._actions if a.dest != "help"}
    strings = spellings(serve)
    flags = {f["name"]: f for f in table["flags"]}
    dest_of = {f["name"]: f["name"].replace("-", "_") for f in table["flags"]}
    diffs = [f"the parser has {d}, the table does not" for d in sorted(set(actions) - set(dest_of.values()))]
    for name, f in flags.items():
        a = actions.get(dest_of[name])
        if a is None:
            diffs.append(f"the table has {name}, the parser does not")
            continue
        if not f.get("positional"):
            ours = {f"--{name}", *f.get("aliases", ())}
            if ours != strings[a.dest]:
                diffs.append(f"{name}: spellings {sorted(ours)} in the table, {sorted(strings[a.dest])} in the parser")
        nargs = a.nargs if a.nargs not in (0, None) else None
        if not f.get("positional") and f.get("nargs") != nargs:
            diffs.append(f"{name}: nargs {f.get('nargs')!r} in the table, {nargs!r} in the parser")
        choices = ["None" if c is None else str(c) for c in a.choices] if a.choices else []
        if f.get("choices", []) != choices:
            diffs.append(f"{name}: choices {f.get('choices', [])} in the table, {choices} in the parser")
        if bool(f.get("takes_none")) != typed_with_none(a):
            diffs.append(f"{name}: takes_none {bool(f.get('takes_none'))} in the table, type {a.type!r} in the parser")
        if (f["value"] == "json-object") != config_object(a):
            diffs.append(f"{name}: value {f['value']} in the table, type {a.type!r} in the parser")
        if bool(f.get("repeatable")) != isinstance(a, argparse._AppendAction):
            diffs.append(
                f"{name}: repeatable {bool(f.get('repeatable'))} in the table, action {type(a).__name__} in the parser"
            )
    return diffs


# Whole argv lists (the words after `vllm serve MODEL`) read word by word: aliases, = and attached
# values, underscores, -O, dotted JSON keys, lists, negative numbers, a value left out.
ARGVS = [
    ["-tp", "2"],
    ["-tp=2"],
    ["-tp2"],
    ["-qfp8"],
    ["-q", "fp8"],
    ["--max_model_len", "8k"],
    ["--max_model_len=auto"],
    ["--max-model-len", "-1"],
    ["--max-model-len"],
    ["--max-model-len", "--port", "8000"],
    ["-O3"],
    ["-O", "3"],
    ["-O=2"],
    ["-Odecode"],
    ["-O", "decode"],
    ["-O"],
    ["--compilation-config.mode", "3"],
    ["-cc.mode=3"],
    ["-cc.mode", "3", "-cc.backend", "eager"],
    ["--compilation-config.custom_ops+", "+rms_norm,-silu"],
    ["--max-model-len.x", "1"],
    ["--compilation-config", "{bad"],
    ["--served-model-name", "a", "b"],
    ["--served-model-name"],
    ["--served-model-name=a", "b"],
    ["--middleware", "a", "--middleware", "b"],
    ["--enable-prefix-caching"],
    ["--no-enable-prefix-caching"],
    ["--disable-prefix-caching"],
    ["--enable-prefix-caching=true"],
    ["--enable-prefix-caching", "true"],
    ["--enable_prefix_caching"],
    ["-ep"],
    ["--hf-token"],
    ["--hf-token", "t"],
    ["--cudagraph-capture-sizes", "1", "2", "4"],
    ["--cudagraph-capture-sizes", "1", "x"],
    ["--collect-detailed-traces", "model", "worker"],
    ["--collect-detailed-traces", "model", "nope"],
    ["--moe-backend", "FLASHINFER-CUTLASS"],
    ["--seed", "-3"],
    ["--gpu-memory-utilization", "-0.5"],
    ["--gpu-memory-utilization=-0.5"],
    ["--bogus"],
    ["--bogus=1"],
    ["--tensor-parallel"],
    ["--", "--port", "1"],
    ["--max-lora-rank", "08"],
    ["--dtype", "half"],
    ["--kv-cache-dtype", "whatever"],
    ["--load-format", "whatever"],
    ["--chat-template-content-format", "string"],
    ["--tool-strict-level", "None"],
    ["--mamba-cache-mode", "None"],
    ["--kv-cache-memory-bytes", "1.5G"],
    ["--kv-cache-memory-bytes", "2G"],
    ["--speculative-config", '{"n": 1}'],
    ["--hf-overrides", "plain-string"],
    ["--hf-overrides", "{not json}"],
    ["--device-ids", "0,1"],
]


def argv_differences(parser, cmd, warned) -> list[str]:
    """Each ARGVS list where vLLM's parser and vllm_rules disagree on taking it."""
    from llm_common import vllm_rules

    diffs = []
    for argv in ARGVS:
        theirs = serve_parser.check(parser, cmd, ["some/model", *argv], warned)
        vllm_takes = theirs["ok"] or theirs["stage"] != "parse"
        ours = vllm_rules.value_problems(argv) + vllm_rules.unknown_options(argv) + vllm_rules.positionals(argv)
        if bool(ours) == vllm_takes:
            diffs.append(
                f"{argv}: "
                + (
                    f"we refuse ({ours[0]}), vLLM takes it"
                    if ours
                    else f"we take it, vLLM refuses ({theirs['error'].splitlines()[0][:120]})"
                )
            )
    return diffs


def probes_for(flag) -> list[str]:
    extra = [v for c in flag.choices for v in (c, c.upper(), c.replace("_", "-"))]
    return [*PROBES, *extra, "nope"]


def value_differences(parser, cmd, warned) -> tuple[list[str], list[str]]:
    from llm_common import vllm_rules

    strict, lenient = [], []
    for flag in vllm_rules.TABLE.flags:
        if flag.positional:
            continue
        cases = (
            [[flag.option], [f"{flag.option}=true"]]
            if not flag.takes_value
            else [[f"{flag.option}={v}"] for v in dict.fromkeys(probes_for(flag))]
        )
        for case in cases:
            # --model=X is moved to the front as the model: give no other then.
            theirs = serve_parser.check(parser, cmd, case if flag.name == "model" else ["some/model", *case], warned)
            vllm_takes = theirs["ok"] or theirs["stage"] != "parse"
            ours = vllm_rules.value_problems(case) + vllm_rules.unknown_options(case)
            if ours and vllm_takes:
                strict.append(f"{case[0]!r}: we refuse ({ours[0]}), vLLM takes it")
            elif not ours and not vllm_takes:
                lenient.append(f"{case[0]!r}: we take it, vLLM refuses ({theirs['error'].splitlines()[0][:120]})")
    return strict, lenient


def main() -> int:
    serve_parser.use_venv()
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("-v", action="store_true", help="list each lenient case")
    opts = ap.parse_args()
    sys.path.insert(0, str(serve_parser.ROOT / "common"))
    warned = serve_parser.WarningLog().attach()
    parser, serve, cmd = serve_parser.build()
    diffs = shape_differences(serve, serve_parser.table())
    for d in diffs:
        print("SHAPE", d)
    strict, lenient = value_differences(parser, cmd, warned)
    argv_diffs = argv_differences(parser, cmd, warned)
    for d in argv_diffs:
        print("ARGV", d)
    for s in strict:
        print("REFUSED", s)
    for s in lenient if opts.v else ():
        print("LENIENT", s)
    flags = {s.split("=", 1)[0] for s in lenient}
    print(
        f"{len(serve_parser.table()['flags'])} flags; {len(diffs)} shape differences; "
        f"{len(strict)} values we refuse and vLLM takes; "
        f"{len(lenient)} values we take and vLLM refuses (on {len(flags)} flags); "
        f"{len(argv_diffs)} of {len(ARGVS)} argv lists read differently"
    )
    return 1 if diffs or strict or argv_diffs else 0


if __name__ == "__main__":
    sys.exit(main())

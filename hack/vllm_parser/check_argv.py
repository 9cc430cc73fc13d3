#!/usr/bin/env python3
"""Give argv lists to vLLM 0.33.0's own `vllm serve` parser and say what it makes of each.

    hack/vllm_parser/setup.sh                     # once
    echo '[["MODEL", "--tensor-parallel-size", "2"], ["MODEL", "--bogus"]]' | python3 hack/vllm_parser/check_argv.py

stdin: a JSON list of argv lists, each the words after `vllm serve` (the model first).
stdout: one JSON object a line, in order:
    {"ok": true}                                    parsed, and passed `vllm serve`'s own checks
    {"ok": true, "warnings": [...]}                 ... and vLLM warned (e.g. "Found duplicate keys --x")
    {"ok": false, "stage": "parse", "error": ...}   argparse refused it ("unrecognized arguments: --x")
    {"ok": false, "stage": "validate", "error": ...}  ServeSubcommand.validate refused it
Exit status: 1 if any argv was refused, else 0.
"""

from __future__ import annotations

import json
import sys

import serve_parser


def main() -> int:
    serve_parser.use_venv()
    argvs = json.load(sys.stdin)
    if not isinstance(argvs, list):
        sys.exit("stdin must be a JSON list of argv lists")
    warned = serve_parser.WarningLog().attach()
    parser, _, cmd = serve_parser.build()
    all_ok = True
    for argv in argvs:
        result = serve_parser.check(parser, cmd, argv, warned)
        all_ok &= result["ok"]
        print(json.dumps(result))
    return 0 if all_ok else 1


if __name__ == "__main__":
    sys.exit(main())

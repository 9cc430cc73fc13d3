#!/usr/bin/env python3
"""The engine stand-in's `text-generation-launcher`: reads the flags the operator gives TGI's
launcher and serves tests/support/fakeengine.py on --hostname/--port with TGI's API, health and metrics.
Flags it has no use for (quantization, shards, dtype) are accepted and ignored.

What a test can make it do, through spec.engine.env:
  STANDIN_EXIT_CODE=N       exit with code N at once, saying so on stderr and in the
                            termination log (a crashing engine)
  STANDIN_ALLOCATE_MIB=N    touch N MiB of memory before serving (an engine over its limit)
  STANDIN_REQUIRE_WEIGHTS=1 refuse to start unless HF_HOME holds the model's snapshot (the
                            cache volume the download Job filled, mounted read-only)
"""

import argparse
import os
import sys
from pathlib import Path

sys.path.insert(0, "/opt/standin")

from fakeengine import main as fake_main  # noqa: E402


def fail(code: int, message: str) -> None:
    print(message, file=sys.stderr, flush=True)
    try:
        Path("/dev/termination-log").write_text(message)
    except OSError:
        pass
    sys.exit(code)


def main() -> None:
    parser = argparse.ArgumentParser(prog="text-generation-launcher (engine stand-in)")
    parser.add_argument("--model-id", required=True)
    parser.add_argument("--revision", default="main")
    parser.add_argument("--hostname", default="0.0.0.0")
    parser.add_argument("--port", type=int, default=80)
    parser.add_argument("--max-input-tokens", type=int, default=None)
    parser.add_argument("--max-total-tokens", type=int, default=None)
    parser.add_argument("--max-concurrent-requests", type=int, default=None)
    parser.add_argument("--lora-adapters", default="")
    args, ignored = parser.parse_known_args()
    print(f"engine stand-in for {args.model_id}@{args.revision}; ignoring {' '.join(ignored) or 'nothing'}", flush=True)

    code = os.environ.get("STANDIN_EXIT_CODE")
    if code:
        fail(int(code), f"engine stand-in: exiting with code {code} as STANDIN_EXIT_CODE asks")
    mib = int(os.environ.get("STANDIN_ALLOCATE_MIB") or 0)
    if mib:
        print(f"allocating {mib} MiB", flush=True)
        hog = bytearray(mib << 20)
        for i in range(0, len(hog), 4096):
            hog[i] = 1
    if os.environ.get("STANDIN_REQUIRE_WEIGHTS"):
        home = Path(os.environ.get("HF_HOME") or "/data")
        snapshots = home / "hub" / ("models--" + args.model_id.replace("/", "--")) / "snapshots"
        found = sorted(p.name for p in snapshots.glob("*")) if snapshots.is_dir() else []
        if not found:
            fail(2, f"engine stand-in: no snapshot of {args.model_id} under {snapshots}")
        writable = os.access(home, os.W_OK)
        print(
            f"weights found: {snapshots} holds {', '.join(found)}; {home} is {'writable' if writable else 'read-only'}",
            flush=True,
        )

    argv = ["--host", args.hostname, "--port", str(args.port), "--model-id", args.model_id, "--in-container"]
    for flag, value in (
        ("--max-input-tokens", args.max_input_tokens),
        ("--max-total-tokens", args.max_total_tokens),
        ("--max-concurrent-requests", args.max_concurrent_requests),
    ):
        if value is not None:
            argv += [flag, str(value)]
    for entry in filter(None, args.lora_adapters.split(",")):
        # TGI's entries are ID or NAME=PATH; the name is what requests use.
        argv += ["--adapter", entry.split("=", 1)[0]]
    fake_main(argv)


if __name__ == "__main__":
    main()

"""vLLM's own `vllm serve` parser, built from the wheel's Python files without torch or a GPU.

setup.sh puts the wheel's Python files and the light packages its parser imports under
HOME (below); the scripts here run with that venv's python (they switch to it themselves).
"""

from __future__ import annotations

import argparse
import contextlib
import io
import json
import logging
import os
import sys
import warnings
from pathlib import Path

HERE = Path(__file__).resolve().parent
ROOT = HERE.parent.parent
VERSION = os.environ.get("VLLM_VERSION", "0.33.0")
TABLE_FILE = ROOT / "common" / "llm_common" / "data" / f"vllm-serve-{VERSION}.json"
HOME = Path(os.environ.get("VLLM_PARSER_HOME", Path.home() / ".cache" / "llm-operator" / f"vllm-parser-{VERSION}"))
PYTHON = HOME / "venv" / "bin" / "python"
# Imported by the parser's modules, never used to build it; the compiled extensions are not unpacked.
PLACEHOLDERS = ["torch", "transformers", "xgrammar", "vllm._C", "vllm._C_stable_libtorch", "vllm._qutlass_C"]


def use_venv() -> None:
    """Run this script again with the venv's python, unless it already is."""
    if not (HOME / "ready").exists():
        sys.exit(f"{HOME} is not built: run hack/vllm_parser/setup.sh first")
    if Path(sys.prefix).resolve() != (HOME / "venv").resolve():
        os.execv(PYTHON, [str(PYTHON), *sys.argv])


class ParseFailure(Exception):
    pass


def _refuse(self, message):
    raise ParseFailure(message)


def build():
    """(vLLM's top parser, its `serve` subparser, the ServeSubcommand), on a CUDA platform."""
    sys.path.insert(0, str(HOME / "vllm-py"))
    sys.path.insert(0, str(HERE))
    os.environ.setdefault("VLLM_CONFIGURE_LOGGING", "0")
    os.environ.setdefault("VLLM_NO_USAGE_STATS", "1")
    os.environ.setdefault("HF_HUB_OFFLINE", "1")
    warnings.simplefilter("ignore")
    import stubs

    stubs.install(PLACEHOLDERS)
    # FlexibleArgumentParser.error adds its hints, then calls ArgumentParser.error: raise instead of exit.
    argparse.ArgumentParser.error = _refuse
    with contextlib.redirect_stdout(io.StringIO()), contextlib.redirect_stderr(io.StringIO()):
        import vllm.platforms
        from vllm.platforms.cuda import CudaPlatform

        # The pods run on CUDA; no GPU here, so name the platform rather than detect it
        # (--mm-processor-device's choices, for one, depend on it).
        vllm.platforms.current_platform = CudaPlatform()
        from vllm.entrypoints.cli.serve import ServeSubcommand
        from vllm.utils.argparse_utils import FlexibleArgumentParser

        parser = FlexibleArgumentParser(description="vLLM CLI")
        subparsers = parser.add_subparsers(required=False, dest="subparser")
        cmd = ServeSubcommand()
        serve = cmd.subparser_init(subparsers)
        serve.set_defaults(dispatch_function=cmd.cmd)
    return parser, serve, cmd


class WarningLog(logging.Handler):
    """Collects what vLLM's loggers warn about while it parses."""

    def __init__(self):
        super().__init__(logging.WARNING)
        self.records: list[str] = []

    def emit(self, record):
        self.records.append(record.getMessage())

    def attach(self) -> WarningLog:
        log = logging.getLogger("vllm")
        log.addHandler(self)
        log.setLevel(logging.WARNING)
        log.propagate = False
        return self


def check(parser, cmd, argv: list[str], warned: WarningLog) -> dict:
    """What `vllm serve ARGV` makes of its arguments, before any model is read:
    {"ok": true[, "warnings": [...]]} or {"ok": false, "stage": "parse"|"validate", "error": ...}."""
    if not isinstance(argv, list) or not all(isinstance(a, str) for a in argv):
        return {"ok": False, "stage": "input", "error": "argv must be a list of strings"}
    warned.records.clear()
    import vllm.logger

    # warning_once and friends remember what they said: each argv gets its own warnings.
    for name in ("_print_debug_once", "_print_info_once", "_print_warning_once"):
        once = getattr(vllm.logger, name, None)
        if hasattr(once, "cache_clear"):
            once.cache_clear()
    sink = io.StringIO()
    result: dict = {"ok": True}
    try:
        with contextlib.redirect_stdout(sink), contextlib.redirect_stderr(sink):
            args = parser.parse_args(["serve", *argv])
    except ParseFailure as e:
        result = {"ok": False, "stage": "parse", "error": str(e)}
    except SystemExit as e:  # --help, --version
        result = {"ok": False, "stage": "parse", "error": f"the parser exited ({e.code})"}
    except (ValueError, TypeError, IndexError, AssertionError) as e:  # raised by FlexibleArgumentParser's rewrites
        result = {"ok": False, "stage": "parse", "error": f"{type(e).__name__}: {e}"}
    else:
        from vllm.exceptions import VLLMError

        try:
            with contextlib.redirect_stdout(sink), contextlib.redirect_stderr(sink):
                cmd.validate(args)
        except (ValueError, TypeError, VLLMError) as e:  # validate_parsed_serve_args raises these
            result = {"ok": False, "stage": "validate", "error": f"{type(e).__name__}: {e}"}
    if warned.records:
        result["warnings"] = list(warned.records)
    return result


def table() -> dict:
    return json.loads(TABLE_FILE.read_text(encoding="utf-8"))

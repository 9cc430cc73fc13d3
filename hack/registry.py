#!/usr/bin/env python3
"""A container registry on loopback for tests: the CNCF distribution registry (built and cached
by `hack/tools.sh registry`), plain HTTP on 127.0.0.1, its configuration and storage in a
directory of its own, stopped with everything it started.

    python hack/registry.py serve --dir DIR     # until Ctrl-C; prints the address

hack/publish.py pushes to it with --plain-http; the real node pulls from it once told to trust
it (RealNode.trust_plain_http_registry). Standard library only.
"""

from __future__ import annotations

import argparse
import json
import os
import signal
import socket
import subprocess
import sys
import time
import urllib.error
import urllib.request
from pathlib import Path

HACK = Path(__file__).resolve().parent


class RegistryError(RuntimeError):
    """The registry could not be built or started; the message says why."""


def registry_binary() -> str:
    proc = subprocess.run(["bash", str(HACK / "tools.sh"), "registry"], stdout=subprocess.PIPE, text=True)
    if proc.returncode != 0:
        raise RegistryError("hack/tools.sh could not build the registry (its message is above)")
    return proc.stdout.strip().splitlines()[-1]


def registry_config(storage: Path, port: int) -> dict:
    """The registry's configuration: filesystem storage, plain HTTP on 127.0.0.1:port only."""
    return {
        "version": 0.1,
        "log": {"level": "warn", "accesslog": {"disabled": True}},
        "storage": {"filesystem": {"rootdirectory": str(storage)}, "delete": {"enabled": True}},
        "http": {"addr": f"127.0.0.1:{port}"},
    }


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


class LocalRegistry:
    """One registry process serving from `dir` (its config, storage and log)."""

    def __init__(self, dir: Path):
        self.dir = dir
        self.proc: subprocess.Popen | None = None
        self.port = 0

    @property
    def host(self) -> str:
        """HOST:PORT, the first part of the names of the images it holds."""
        return f"127.0.0.1:{self.port}"

    def start(self, timeout: float = 30) -> str:
        binary = registry_binary()
        self.port = free_port()
        self.dir.mkdir(parents=True, exist_ok=True)
        config = self.dir / "config.yml"
        config.write_text(json.dumps(registry_config(self.dir / "storage", self.port), indent=2))  # JSON is YAML
        # Its tracing would export to localhost:4318 unless told not to.
        env = {**os.environ, "OTEL_TRACES_EXPORTER": "none"}
        with open(self.dir / "registry.log", "ab") as log:
            self.proc = subprocess.Popen(
                [binary, "serve", str(config)],
                stdout=log,
                stderr=subprocess.STDOUT,
                stdin=subprocess.DEVNULL,
                env=env,
                start_new_session=True,
            )
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self.proc.poll() is not None:
                raise RegistryError(f"the registry exited ({self.proc.returncode}): {self.log_tail()}")
            try:
                with urllib.request.urlopen(f"http://{self.host}/v2/", timeout=2) as resp:
                    if resp.status == 200:
                        return self.host
            except (urllib.error.URLError, OSError):
                pass
            time.sleep(0.2)
        self.stop()
        raise RegistryError(f"the registry did not answer on {self.host} within {timeout:.0f}s: {self.log_tail()}")

    def log_tail(self, lines: int = 20) -> str:
        path = self.dir / "registry.log"
        return "\n".join(path.read_text(errors="replace").splitlines()[-lines:]) if path.exists() else ""

    def stop(self, timeout: float = 10) -> None:
        if self.proc is None or self.proc.poll() is not None:
            return
        self.proc.terminate()
        try:
            self.proc.wait(timeout)
        except subprocess.TimeoutExpired:
            os.killpg(self.proc.pid, signal.SIGKILL)
            self.proc.wait(5)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("action", choices=["serve"])
    parser.add_argument("--dir", type=Path, required=True, help="its config, storage and log")
    args = parser.parse_args(argv)
    registry = LocalRegistry(args.dir.resolve())
    try:
        print(registry.start(), flush=True)
        assert registry.proc is not None
        registry.proc.wait()
    except RegistryError as err:
        print(f"registry: {err}", file=sys.stderr)
        return 1
    except KeyboardInterrupt:
        pass
    finally:
        registry.stop()
    return 0


if __name__ == "__main__":
    sys.exit(main())

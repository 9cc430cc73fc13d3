"""What every part of the local control plane uses: its error, free ports, polling, and the
process groups its components run in. Standard library only."""

from __future__ import annotations

import json
import os
import socket
import subprocess
import time
from dataclasses import dataclass
from pathlib import Path

HACK = Path(__file__).resolve().parent.parent
COMPONENTS = ("etcd", "kube-apiserver", "kube-controller-manager", "kube-scheduler", "kwok", "lws-manager")
START_TIMEOUT_S = 60


class ClusterError(RuntimeError):
    """The control plane could not be brought up; the message says which part and why."""


def tools_dir() -> Path:
    """The directory holding the pinned binaries (built or reused by hack/tools.sh)."""
    try:
        out = subprocess.run(
            ["bash", str(HACK / "tools.sh")], check=True, stdout=subprocess.PIPE, text=True
        ).stdout.strip()
    except subprocess.CalledProcessError as err:
        raise ClusterError("hack/tools.sh could not provide the Kubernetes binaries (its message is above)") from err
    return Path(out.splitlines()[-1])


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def wait_until(what: str, check, timeout: float, procs: dict[str, subprocess.Popen] | None = None) -> None:
    """Poll `check` until it is true; fail with `what` after `timeout` seconds or if a process died."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if check():
            return
        for name, proc in (procs or {}).items():
            if proc.poll() is not None:
                raise ClusterError(f"{name} exited with code {proc.returncode} while waiting for {what}; see its log")
        time.sleep(0.2)
    raise ClusterError(f"timed out after {timeout:.0f}s waiting for {what}")


@dataclass
class Ports:
    etcd_client: int
    etcd_peer: int
    apiserver: int
    kwok: int
    lws_webhook: int

    @classmethod
    def pick(cls) -> Ports:
        return cls(free_port(), free_port(), free_port(), free_port(), free_port())


def json_stream(text: str) -> list[dict]:
    """The objects of kubectl's `-o json` output for several objects: one JSON document each."""
    decoder, objects, at, text = json.JSONDecoder(), [], 0, text.strip()
    while at < len(text):
        obj, at = decoder.raw_decode(text, at)
        objects.append(obj)
        while at < len(text) and text[at].isspace():
            at += 1
    return objects


def pid_alive(pid: int) -> bool:
    """True when the process exists and is not a zombie."""
    try:
        stat = Path(f"/proc/{pid}/stat").read_text()
    except (FileNotFoundError, ProcessLookupError):
        return False
    return stat.rsplit(")", 1)[1].split()[0] != "Z"


def signal_group(pid: int, sig: int) -> None:
    try:
        os.killpg(pid, sig)
    except (ProcessLookupError, PermissionError):
        pass
    # Reap it if it is our child (the pytest fixture's case), so it is not left a zombie.
    try:
        os.waitpid(pid, os.WNOHANG)
    except ChildProcessError:
        pass

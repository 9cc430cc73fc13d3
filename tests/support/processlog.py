"""A test process's log file, with the stretches a test excused (an apiserver restarting
answers 403 until its RBAC caches are filled, which says nothing about our rules)."""

from __future__ import annotations

from pathlib import Path


class ProcessLog:
    log_path: Path

    def __init__(self, log_path: Path):
        self.log_path = log_path
        # Byte offsets [start, end) of the log a test excused.
        self.excused: list[tuple[int, int]] = []

    def log(self) -> str:
        return self.log_path.read_text(errors="replace")

    def log_size(self) -> int:
        return self.log_path.stat().st_size

    def unexcused_lines(self) -> list[str]:
        data = self.log_path.read_bytes()
        for start, end in sorted(self.excused, reverse=True):
            data = data[:start] + data[end:]
        return data.decode(errors="replace").splitlines()

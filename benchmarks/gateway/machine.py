"""What else ran on the machine: CPU seconds of this run's processes and of everything else
(sampled from /proc), the load average, other `vllm serve` processes, the CPU's model."""

from __future__ import annotations

import os
import platform
import threading
import time
from pathlib import Path


def other_vllm_servers() -> int:
    """`vllm serve` processes on this machine (their forked children not counted): competition for the CPUs."""
    found: dict[int, int] = {}
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit():
            continue
        try:
            argv = (entry / "cmdline").read_bytes().split(b"\0")
            ppid = int((entry / "stat").read_text().rsplit(")", 1)[1].split()[1])
        except (OSError, ValueError, IndexError):
            continue
        if len(argv) > 2 and argv[1].endswith(b"/vllm") and argv[2] == b"serve":
            found[int(entry.name)] = ppid
    return sum(1 for ppid in found.values() if ppid not in found)


class CpuSampler:
    """CPU seconds used by this run's processes (this one, its descendants, the engines' own
    sessions) and by everything else on the machine, from /proc every `interval` s: the load
    average counts the run's own threads too, so it cannot say alone what competed with the run."""

    def __init__(self, interval: float = 2.0):
        self.interval, self.sessions = interval, set()
        self.tick = os.sysconf("SC_CLK_TCK")
        self.ours = self.others = 0.0
        self.last: dict[int, int] = {}
        self.lock = threading.Lock()
        self.done = threading.Event()
        self.sample(first=True)
        self.thread = threading.Thread(target=self.run, name="cpu-sampler", daemon=True)

    def sample(self, first: bool = False) -> None:
        stats: dict[int, tuple[int, int, int]] = {}  # pid: (ppid, session, utime + stime)
        for entry in Path("/proc").iterdir():
            if not entry.name.isdigit():
                continue
            try:
                fields = (entry / "stat").read_text().rsplit(")", 1)[1].split()
            except (OSError, IndexError):
                continue
            stats[int(entry.name)] = (int(fields[1]), int(fields[3]), int(fields[11]) + int(fields[12]))
        me = os.getpid()

        def is_ours(pid: int) -> bool:
            for _ in range(64):
                if pid == me or (pid in stats and stats[pid][1] in self.sessions):
                    return True
                if pid not in stats or pid <= 1:
                    return False
                pid = stats[pid][0]
            return False

        seen: dict[int, int] = {}
        ours = others = 0
        for pid, (_, _, ticks) in stats.items():
            seen[pid] = ticks
            # A process first seen now (or a reused pid) started since the last sample: all its time is new.
            before = self.last.get(pid, 0)
            delta = ticks - before if ticks >= before else ticks
            if is_ours(pid):
                ours += delta
            else:
                others += delta
        with self.lock:
            if not first:
                self.ours += ours / self.tick
                self.others += others / self.tick
            self.last = seen

    def run(self) -> None:
        while not self.done.wait(self.interval):
            self.sample()

    def start(self) -> CpuSampler:
        self.thread.start()
        return self

    def stop(self) -> None:
        self.done.set()
        self.thread.join()
        self.sample()

    def totals(self) -> tuple[float, float]:
        with self.lock:
            return self.ours, self.others


# The run's sampler, set by cli.main; RealEngines adds the engines' sessions (theirs count as this run's).
SAMPLER: CpuSampler | None = None


def load_now() -> dict:
    now = {
        "loadavg_1_5_15": [round(x, 2) for x in os.getloadavg()],
        "vllm_servers_running": other_vllm_servers(),
        "at": time.strftime("%H:%M:%SZ", time.gmtime()),
    }
    if SAMPLER is not None:
        ours, others = SAMPLER.totals()
        now["cpu_s_since_start"] = {"this_run": round(ours, 1), "everything_else": round(others, 1)}
    return now


def cpu_model() -> str:
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor()

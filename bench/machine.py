"""What the benchmarks read off the machine they run on.

The figures of a run only compare with each other (every variant shares the machine with
RabbitMQ and the load); across machines, ``speed_reference`` says how fast this one's CPU is.
"""

from __future__ import annotations

import os
import sys
import time
from pathlib import Path


def cpu_seconds(pid: int | None) -> float:
    """User + system CPU seconds a process has used so far; NaN when unknown."""
    if pid is None:
        return float("nan")
    try:
        fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    except OSError:
        return float("nan")
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def broker_pid() -> int | None:
    """RabbitMQ's Erlang VM, when it runs on this machine (for its share of the CPU)."""
    for entry in Path("/proc").iterdir():
        if entry.name.isdigit():
            try:
                if (entry / "comm").read_text().strip() == "beam.smp":
                    return int(entry.name)
            except OSError:
                continue
    return None


def speed_reference() -> float:
    """Seconds this machine takes for 10 million steps of a pure-Python loop (best of 3)."""
    best = float("inf")
    for _ in range(3):
        started = time.perf_counter()
        total = 0
        for step in range(10_000_000):
            total += step
        best = min(best, time.perf_counter() - started)
    return best


def describe() -> str:
    """One line: CPUs, Python, the speed reference and the load average."""
    return (
        f"{os.cpu_count()} CPUs, Python {sys.version.split()[0]}, 10M-step Python loop in "
        f"{speed_reference():.2f} s, load average {os.getloadavg()[0]:.2f}"
    )

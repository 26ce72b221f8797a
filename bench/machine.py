"""What the benchmarks read off the machine they run on, and how they read a profile.

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


def _listening_inodes(port: int) -> set[str]:
    inodes = set()
    for table in ("/proc/net/tcp", "/proc/net/tcp6"):
        try:
            lines = Path(table).read_text().splitlines()[1:]
        except OSError:
            continue
        for line in lines:
            fields = line.split()
            # local address is HEXIP:HEXPORT; state 0A is LISTEN
            if fields[3] == "0A" and int(fields[1].rsplit(":", 1)[1], 16) == port:
                inodes.add(fields[9])
    return inodes


def broker_pid(port: int | None = 5672) -> int | None:
    """RabbitMQ's Erlang VM listening on AMQP ``port`` on this machine (for its share of the
    CPU); with ``port`` None, or when none is found listening, the first Erlang VM found.

    Several nodes may run on one machine (a cluster, a node of a test's own): the port says
    which one serves the benchmark.
    """
    beams = []
    for entry in Path("/proc").iterdir():
        if entry.name.isdigit():
            try:
                if (entry / "comm").read_text().strip() == "beam.smp":
                    beams.append(entry)
            except OSError:
                continue
    sockets = {f"socket:[{inode}]" for inode in _listening_inodes(port)} if port else set()
    for entry in beams:
        try:
            if any(os.readlink(fd) in sockets for fd in (entry / "fd").iterdir()):
                return int(entry.name)
        except OSError:
            continue
    return int(beams[0].name) if beams else None


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


def top_of_profile(path: Path, lines: int = 12) -> list[str]:
    """The functions with the most samples in a py-spy raw profile: own, and with callees."""
    own: dict[str, int] = {}
    total: dict[str, int] = {}
    samples = 0
    for line in path.read_text().splitlines():
        stack, _, count_text = line.rpartition(" ")
        if not stack or not count_text.isdigit():
            continue
        count = int(count_text)
        samples += count
        frames = [_frame(f) for f in stack.split(";")]
        own[frames[-1]] = own.get(frames[-1], 0) + count
        for frame in set(frames):
            total[frame] = total.get(frame, 0) + count
    if not samples:
        return ["(no samples)"]
    shown = [f"{samples} samples; own % / with callees % / function"]
    for frame, count in sorted(own.items(), key=lambda kv: -kv[1])[:lines]:
        shown.append(f"{100 * count / samples:5.1f} {100 * total[frame] / samples:5.1f}  {frame}")
    return shown


def _frame(text: str) -> str:
    # "function (path/to/module.py:123)" -> "function (module.py)"
    name, _, where = text.partition(" (")
    module = where.rsplit("/", 1)[-1].split(":", 1)[0]
    return f"{name} ({module})" if module else name

"""The real processes a chaos scenario runs: ``bridge run --role ...`` and ``bridge simulator``.

Each ``Child`` is a subprocess of the installed ``bridge`` command (``python -m bridge.cli``), its
settings given as ``BRIDGE_*`` variables (none inherited from the runner's environment), its log
in JSON lines read as they come, kept in memory for the diagnosis and written to a file. A child
remembers whether the runner stopped it or it exited by itself: an exit nobody asked for is a
finding of its own.
"""

from __future__ import annotations

import asyncio
import json
import os
import signal
import socket
import sys
import time
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parent.parent


def free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return int(probe.getsockname()[1])


def bridge_environ(settings: Mapping[str, Mapping[str, Any]]) -> dict[str, str]:
    """The environment of a child: ours without any ``BRIDGE_*``, plus ``settings`` as
    ``BRIDGE_SECTION__KEY`` (strings as they are, anything else as JSON)."""
    env = {k: v for k, v in os.environ.items() if not k.startswith("BRIDGE_")}
    for section, values in settings.items():
        for key, value in values.items():
            if value is None:
                continue
            name = f"BRIDGE_{section.upper()}__{key.upper()}"
            env[name] = value if isinstance(value, str) else json.dumps(value)
    return env


@dataclass
class LogLine:
    at_s: float  # seconds since the scenario's start
    text: str
    fields: dict[str, Any] = field(default_factory=dict)

    @property
    def message(self) -> str:
        return str(self.fields.get("message", self.text))

    @property
    def level(self) -> str:
        return str(self.fields.get("level", ""))

    def mentions(self, needle: str) -> bool:
        return needle in self.text


@dataclass
class Exit:
    at_s: float
    code: int
    expected: bool


class Child:
    """One subprocess; ``start``, ``wait_for(text)``, ``kill``/``terminate``, ``stop``."""

    def __init__(
        self,
        name: str,
        argv: list[str],
        *,
        env: dict[str, str],
        log_file: Path,
        epoch: float,
    ) -> None:
        self.name = name
        self.argv = argv
        self.env = env
        self.log_file = log_file
        self.epoch = epoch
        self.lines: list[LogLine] = []
        self.exits: list[Exit] = []
        self.process: asyncio.subprocess.Process | None = None
        self._changed = asyncio.Condition()
        self._watch: asyncio.Task[None] | None = None
        self._expect_exit = False
        self.starts = 0

    def now(self) -> float:
        return time.monotonic() - self.epoch

    @property
    def is_running(self) -> bool:
        return self.process is not None and self.process.returncode is None

    async def start(self) -> None:
        if self.is_running:
            raise RuntimeError(f"{self.name} is already running")
        self._expect_exit = False
        self.starts += 1
        with self.log_file.open("a") as out:
            out.write(f"# start {self.starts} at {self.now():.2f} s: {' '.join(self.argv)}\n")
        self.process = await asyncio.create_subprocess_exec(
            *self.argv,
            env=self.env,
            cwd=ROOT,
            stdin=asyncio.subprocess.DEVNULL,
            stdout=asyncio.subprocess.PIPE,
            stderr=asyncio.subprocess.STDOUT,
            start_new_session=True,  # a Ctrl-C of the runner reaches the runner only
        )
        self._watch = asyncio.create_task(self._read(self.process))

    async def _read(self, process: asyncio.subprocess.Process) -> None:
        assert process.stdout is not None
        with self.log_file.open("a") as out:
            async for raw in process.stdout:
                text = raw.decode(errors="replace").rstrip()
                out.write(text + "\n")
                fields: dict[str, Any] = {}
                if text.startswith("{"):
                    try:
                        parsed = json.loads(text)
                    except ValueError:
                        parsed = None
                    if isinstance(parsed, dict):
                        fields = parsed
                async with self._changed:
                    self.lines.append(LogLine(self.now(), text, fields))
                    self._changed.notify_all()
            code = await process.wait()
            out.write(f"# exit {code} at {self.now():.2f} s\n")
        async with self._changed:
            self.exits.append(Exit(self.now(), code, self._expect_exit))
            self._changed.notify_all()

    async def wait_for(self, text: str, *, timeout_s: float, since: int = 0) -> LogLine | None:
        """The first line from index ``since`` on containing ``text``; None if the process
        exited first or ``timeout_s`` passed."""

        def found() -> LogLine | None:
            for line in self.lines[since:]:
                if text in line.text:
                    return line
            return None

        def done() -> bool:
            return found() is not None or not self.is_running

        try:
            async with asyncio.timeout(timeout_s), self._changed:
                await self._changed.wait_for(done)
        except TimeoutError:
            return None
        return found()

    def signal(self, signum: int) -> None:
        if self.process is not None and self.process.returncode is None:
            self._expect_exit = True
            self.process.send_signal(signum)

    async def wait_exit(self, timeout_s: float) -> int | None:
        if self.process is None or self._watch is None:
            return None
        try:
            await asyncio.wait_for(asyncio.shield(self._watch), timeout_s)
        except TimeoutError:
            return None
        return self.process.returncode

    async def kill(self) -> int | None:
        """SIGKILL, as a crash or an OOM kill would."""
        self.signal(signal.SIGKILL)
        return await self.wait_exit(10)

    async def stop(self, timeout_s: float = 60) -> int | None:
        """SIGTERM, then SIGKILL if it has not exited after ``timeout_s``."""
        if not self.is_running:
            return self.process.returncode if self.process is not None else None
        self.signal(signal.SIGTERM)
        code = await self.wait_exit(timeout_s)
        if code is None:
            code = await self.kill()
        return code

    def unexpected_exits(self) -> list[Exit]:
        return [e for e in self.exits if not e.expected]

    def tail(self, count: int = 5) -> list[str]:
        return [line.message for line in self.lines[-count:]]


def bridge_child(
    name: str,
    role: str,
    settings: Mapping[str, Mapping[str, Any]],
    *,
    log_dir: Path,
    epoch: float,
) -> Child:
    argv = [sys.executable, "-m", "bridge.cli", "run", "--role", role]
    argv += ["--log-format", "json"]
    return Child(
        name, argv, env=bridge_environ(settings), log_file=log_dir / f"{name}.log", epoch=epoch
    )


def simulator_child(
    port: int, *, seed: int, log_dir: Path, epoch: float, extra: list[str] | None = None
) -> Child:
    argv = [
        sys.executable, "-m", "bridge.cli", "simulator", "--host", "127.0.0.1",
        "--port", str(port), "--no-limits", "--fault-seed", str(seed),
        "--log-format", "json", "--log-level", "INFO", *(extra or []),
    ]  # fmt: skip
    return Child(
        "simulator", argv, env=bridge_environ({}), log_file=log_dir / "simulator.log", epoch=epoch
    )

"""Several receiver processes on one port, started, watched and stopped by the bridge's process.

With ``receiver.processes = N`` (N > 1) ``ReceiverSupervisor`` starts N processes
(``child.py``), each a whole receiver listening on ``receiver.host:receiver.port`` with
``SO_REUSEPORT`` (the kernel spreads new connections over them), with its spool in
``spool_dir/<index>`` (``layout.py``: process 0 also drains a spool left by an earlier layout).
Catapult keeps its connections alive, so a connection's callbacks all reach one process.

- start: every process must report that it listens; if one cannot (a port taken, a spool in
  use), the others are stopped and ``start`` raises (``SettingsError`` or ``OSError``): the
  bridge cannot go on and exits non-zero.
- a process that dies later is restarted, with the same index (it drains its own spool), after
  a pause that doubles from ``RESTART_FIRST_S`` up to ``RESTART_MAX_S`` while it keeps dying
  (back to the first after it ran ``RESTART_STABLE_S``); the others serve meanwhile.
- stop: SIGTERM to every process; each stops in the receiver's order (``server.py``); one that
  has not exited within its drain time is killed.
- metrics: the processes write them to a directory of prometheus_client's multiprocess mode,
  made empty at start and removed at stop; ``collect_into(registry)`` adds them up there, for
  the operations port. Readiness: ready when every process runs and says it is ready.

Nothing here reads HTTP or AMQP; the processes do.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import os
import shutil
import signal
import sys
import tempfile
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import orjson
from prometheus_client import CollectorRegistry
from prometheus_client.multiprocess import MultiProcessCollector, mark_process_dead

from bridge.operations import Readiness
from bridge.receiver.child import ChildOrder
from bridge.receiver.drainer import Backoff
from bridge.receiver.layout import ProcessSlot
from bridge.settings import Settings, SettingsError, reachable_host

log = logging.getLogger(__name__)

# Imported, not run as ``__main__``: the order it unpickles names ``bridge.receiver.child``.
CHILD_MAIN = "from bridge.receiver.child import main; raise SystemExit(main())"

RESTART_FIRST_S = 0.5
RESTART_MAX_S = 30.0
RESTART_STABLE_S = 30.0
# A process reports that it listens once its spool is recovered and the broker tried once.
START_TIMEOUT_S = 120.0
# A process's exit status when its settings cannot work (``child.py``).
_SETTINGS_STATUS = 2


@dataclass(slots=True)
class _Process:
    """One receiver process: its slot, and what it last said."""

    slot: ProcessSlot
    state: str = "starting"  # starting | running | restarting | stopped
    process: asyncio.subprocess.Process | None = None
    pid: int | None = None
    listening: asyncio.Event = field(default_factory=asyncio.Event)
    is_ready: bool = False
    report: dict[str, Any] = field(default_factory=dict)
    started_at: float = 0.0
    restarts: int = 0
    reader: asyncio.Task[None] | None = None
    watcher: asyncio.Task[None] | None = None


class ReceiverSupervisor:
    """``receiver.processes`` receiver processes on one port; ``start``, ``readiness``, ``stop``."""

    def __init__(self, settings: Settings) -> None:
        receiver = settings.receiver
        self._settings = settings
        self._processes = [
            _Process(ProcessSlot(index, receiver.processes)) for index in range(receiver.processes)
        ]
        self._host = receiver.host
        self._port = receiver.port
        self._path = receiver.path
        self._stop_timeout_s = receiver.shutdown_timeout_s + settings.broker.confirm_timeout_s + 5
        self._stopping = asyncio.Event()
        self._metrics_dir: Path | None = None

    @property
    def metrics_dir(self) -> Path:
        if self._metrics_dir is None:
            raise RuntimeError("the receiver processes are not started")
        return self._metrics_dir

    @property
    def pids(self) -> list[int | None]:
        """Each process's id, by index (None while it is not running)."""
        return [p.pid if p.state == "running" else None for p in self._processes]

    @property
    def base_url(self) -> str:
        return f"http://{reachable_host(self._host)}:{self._port}"

    @property
    def callback_url(self) -> str:
        return self.base_url + self._path

    def collect_into(self, registry: CollectorRegistry) -> None:
        """Serve the processes' metrics, added up, from ``registry``."""
        MultiProcessCollector(registry, path=str(self.metrics_dir))  # type: ignore[no-untyped-call]

    async def start(self) -> None:
        self._metrics_dir = Path(tempfile.mkdtemp(prefix="bridge-receiver-metrics-"))
        results = await asyncio.gather(
            *(self._spawn(p) for p in self._processes), return_exceptions=True
        )
        failures = [result for result in results if isinstance(result, BaseException)]
        if failures:
            await self.stop()
            raise failures[0]
        for process in self._processes:
            process.watcher = asyncio.create_task(
                self._watch(process), name=f"receiver-process-{process.slot.index}"
            )
        log.info(
            "receiver: %d processes listening on %s%s (pids %s)",
            len(self._processes),
            self.base_url,
            self._path,
            " ".join(str(pid) for pid in self.pids),
        )

    async def _spawn(self, process: _Process) -> None:
        """Start ``process`` and wait until it listens; ``SettingsError``/``OSError`` if not."""
        index = process.slot.index
        environ = dict(os.environ, PROMETHEUS_MULTIPROC_DIR=str(self.metrics_dir))
        process.state = "starting"
        process.listening.clear()
        process.is_ready = False
        child = await asyncio.create_subprocess_exec(
            sys.executable, "-c", CHILD_MAIN,
            stdin=asyncio.subprocess.PIPE,
            stdout=asyncio.subprocess.PIPE,
            env=environ,
        )  # fmt: skip
        process.process, process.pid = child, child.pid
        assert child.stdin is not None
        assert child.stdout is not None
        # The pipe stays open: its end tells the process that this one is gone.
        child.stdin.write(ChildOrder.of(self._settings, process.slot).encode())
        process.reader = asyncio.create_task(self._read(process, child.stdout))
        listening = asyncio.ensure_future(process.listening.wait())
        exited = asyncio.ensure_future(child.wait())
        try:
            await asyncio.wait(
                {listening, exited}, timeout=START_TIMEOUT_S, return_when=asyncio.FIRST_COMPLETED
            )
        finally:
            listening.cancel()
            exited.cancel()
        if process.listening.is_set():
            process.state = "running"
            process.started_at = time.monotonic()
            return
        if child.returncode is None:
            child.kill()
            await child.wait()
            raise OSError(f"receiver process {index} did not listen within {START_TIMEOUT_S:g} s")
        process.state = "stopped"
        message = (
            f"receiver process {index} could not start (exit status {child.returncode}); "
            "its log says why"
        )
        if child.returncode == _SETTINGS_STATUS:
            raise SettingsError(message)
        raise OSError(message)

    async def _read(self, process: _Process, stdout: asyncio.StreamReader) -> None:
        async for line in stdout:
            try:
                message = orjson.loads(line)
            except orjson.JSONDecodeError:
                log.warning("receiver process %d wrote %r", process.slot.index, line[:200])
                continue
            if message.get("event") == "listening":
                process.listening.set()
            elif message.get("event") == "readiness":
                process.is_ready = bool(message.get("ready"))
                process.report = message.get("report") or {}

    async def _watch(self, process: _Process) -> None:
        """Restart ``process`` whenever it dies, until ``stop``."""
        backoff = Backoff(RESTART_FIRST_S, RESTART_MAX_S)
        index = process.slot.index
        while True:
            child = process.process
            assert child is not None
            status = await child.wait()
            if self._stopping.is_set():
                return
            self._forget(process)
            if time.monotonic() - process.started_at >= RESTART_STABLE_S:
                backoff.reset()
            pause_s = backoff.next()
            process.state = "restarting"
            log.error(
                "receiver process %d (pid %s) exited with status %s; restarting it in %.1f s",
                index,
                process.pid,
                status,
                pause_s,
            )
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self._stopping.wait(), pause_s)
            if self._stopping.is_set():
                return
            try:
                await self._spawn(process)
            except (SettingsError, OSError) as exc:
                log.error("receiver process %d: %s", index, exc)
                continue
            process.restarts += 1
            log.warning("receiver process %d restarted (pid %s)", index, process.pid)

    def _forget(self, process: _Process) -> None:
        """A process that exited: its live gauges go, its pipes close."""
        process.is_ready = False
        if process.pid is not None and self._metrics_dir is not None:
            mark_process_dead(process.pid, str(self._metrics_dir))  # type: ignore[no-untyped-call]
        if process.process is not None and process.process.stdin is not None:
            process.process.stdin.close()

    def readiness(self) -> Readiness:
        """Ready when every process runs and reports it is ready; each process's report."""
        problems: list[str] = []
        reports = []
        for process in self._processes:
            index = process.slot.index
            if process.state != "running":
                problems.append(f"process {index} {process.state}")
            elif not process.is_ready:
                inner = process.report.get("problems") or ["not ready yet"]
                problems.extend(f"process {index}: {problem}" for problem in inner)
            reports.append(
                {
                    "index": index,
                    "pid": process.pid,
                    "state": process.state,
                    "restarts": process.restarts,
                }
                | {k: v for k, v in process.report.items() if k not in ("status", "problems")}
            )
        report = {
            "status": "ready" if not problems else "not-ready",
            "problems": problems,
            "processes": reports,
        }
        return Readiness(is_ready=not problems, report=report)

    async def stop(self) -> None:
        """SIGTERM to every process, and wait for each to stop (killed after its drain time)."""
        self._stopping.set()
        for process in self._processes:
            if process.watcher is not None:
                process.watcher.cancel()
                with contextlib.suppress(asyncio.CancelledError):
                    await process.watcher
        running = [
            p for p in self._processes if p.process is not None and p.process.returncode is None
        ]
        for process in running:
            assert process.process is not None
            with contextlib.suppress(ProcessLookupError):
                process.process.send_signal(signal.SIGTERM)
        await asyncio.gather(*(self._reap(p) for p in running))
        for process in self._processes:
            self._forget(process)
            process.state = "stopped"
            if process.reader is not None:
                with contextlib.suppress(asyncio.CancelledError):
                    await process.reader
        if self._metrics_dir is not None:
            shutil.rmtree(self._metrics_dir, ignore_errors=True)
        log.info("receiver processes stopped")

    async def _reap(self, process: _Process) -> None:
        child = process.process
        assert child is not None
        try:
            async with asyncio.timeout(self._stop_timeout_s):
                await child.wait()
        except TimeoutError:
            log.error(
                "receiver process %d (pid %s) did not stop within %.0f s; killing it",
                process.slot.index,
                process.pid,
                self._stop_timeout_s,
            )
            with contextlib.suppress(ProcessLookupError):
                child.kill()
            await child.wait()
        if child.returncode not in (0, None):
            log.warning(
                "receiver process %d exited with status %s", process.slot.index, child.returncode
            )

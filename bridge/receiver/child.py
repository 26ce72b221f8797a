"""One of several receiver processes: ``child.main``, run by the supervisor in a process of its own.

The supervisor (``supervisor.py``) talks to it over two pipes, and nothing else is shared but
the callback port (``SO_REUSEPORT``), the metrics directory (``PROMETHEUS_MULTIPROC_DIR``) and
the spool's parent directory::

    stdin   the order: 8 bytes of length, then the pickled ``ChildOrder`` (the settings as the
            parent completed them, generated credentials included, and the process's slot);
            then nothing: its end (the supervisor is gone) stops this process
    stdout  JSON lines: {"event": "listening", "pid": ...} once it serves, then
            {"event": "readiness", "ready": ..., "report": {...}} whenever that changes

SIGTERM or SIGINT stops it in the receiver's order (``server.py``): stop accepting, answer the
callbacks in flight, stop the drains, close the broker connection, flush the spool. The exit
status says what went wrong at start: 2 for settings that cannot work (a spool directory in use
or unusable), 1 for a port that cannot be bound. Log lines carry ``receiver_process=<index>``.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import os
import pickle
import signal
import struct
import sys
from dataclasses import dataclass
from typing import IO, Any

import orjson

from bridge import eventloop
from bridge.logs import configure_logging
from bridge.receiver.layout import ProcessSlot
from bridge.receiver.server import ReceiverServer
from bridge.settings import Settings, SettingsError

log = logging.getLogger(__name__)

LENGTH = struct.Struct(">Q")
# How often the shared gauges are written and readiness is looked at.
REPORT_INTERVAL_S = 0.25


@dataclass(frozen=True, slots=True)
class ChildOrder:
    """What a receiver process is told at start (pickled: ``SecretStr`` values travel as such).

    The settings go as their sections: the settings object itself may be of a class made for
    loading them, which pickle cannot name.
    """

    sections: dict[str, Any]
    slot: ProcessSlot

    @classmethod
    def of(cls, settings: Settings, slot: ProcessSlot) -> ChildOrder:
        return cls({name: getattr(settings, name) for name in Settings.model_fields}, slot)

    @property
    def settings(self) -> Settings:
        return Settings.model_validate(self.sections)

    def encode(self) -> bytes:
        data = pickle.dumps(self)
        return LENGTH.pack(len(data)) + data


def read_order(stream: IO[bytes]) -> ChildOrder:
    (length,) = LENGTH.unpack(stream.read(LENGTH.size))
    # The pipe's other end is our parent, which wrote this order; nothing else writes to it.
    order = pickle.loads(stream.read(length))  # noqa: S301
    if not isinstance(order, ChildOrder):
        raise TypeError("the receiver process was not given its order")
    return order


class _Label(logging.Filter):
    def __init__(self, index: int) -> None:
        super().__init__()
        self._index = index

    def filter(self, record: logging.LogRecord) -> bool:
        record.receiver_process = self._index
        return True


class _ParentGone(asyncio.Protocol):
    def __init__(self, stop: asyncio.Event) -> None:
        self._stop = stop

    def connection_lost(self, exc: Exception | None) -> None:
        self._stop.set()


def _tell(out: IO[bytes], message: dict[str, Any]) -> None:
    out.write(orjson.dumps(message) + b"\n")
    out.flush()


async def serve(order: ChildOrder, out: IO[bytes]) -> int:
    settings, slot = order.settings, order.slot
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for signum in (signal.SIGINT, signal.SIGTERM):
        loop.add_signal_handler(signum, stop.set)
    await loop.connect_read_pipe(lambda: _ParentGone(stop), sys.stdin)
    server = ReceiverServer(settings, slot=slot)
    try:
        await server.start()
    except SettingsError as exc:
        log.error("receiver process %d: %s", slot.index, exc)
        return 2
    except OSError as exc:
        log.error("receiver process %d cannot listen: %s", slot.index, exc)
        return 1
    try:
        _tell(out, {"event": "listening", "pid": os.getpid()})
        last: tuple[bool, bytes] | None = None
        while not stop.is_set():
            server.refresh_metrics()
            readiness = server.readiness()
            now = (readiness.is_ready, orjson.dumps(readiness.report))
            if now != last:
                last = now
                _tell(
                    out,
                    {"event": "readiness", "ready": readiness.is_ready, "report": readiness.report},
                )
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(stop.wait(), REPORT_INTERVAL_S)
    finally:
        await server.stop()
    return 0


def main() -> int:
    order = read_order(sys.stdin.buffer)
    settings = order.settings
    configure_logging(settings.log)
    label = _Label(order.slot.index)
    for handler in logging.getLogger().handlers:
        handler.addFilter(label)
    # stdout is the supervisor's pipe: nothing else may write to it.
    out = os.fdopen(os.dup(sys.stdout.fileno()), "wb")
    sys.stdout = sys.stderr
    return eventloop.run(serve(order, out))

"""The spool: an on-disk journal of events the broker has not confirmed, drained in arrival order.

A callback is answered 200 only once its event is either confirmed by RabbitMQ or written here
and flushed to disk (``fdatasync``). Layout of a spool directory (the record format and the file
primitives are in ``segments.py``)::

    lock                       flock()ed by the one receiver using the directory
    cursor                     "<segment> <offset>": the first record not drained yet
    segment-000000000001.log   records, appended, one per line: "<crc32, 8 hex> <json>\\n"
    rejected.log               events no broker can take (they cannot be encoded), kept for good
    damaged.log                lines that failed their checksum or were cut short, kept as found

Appends are group-committed: every write waiting while a flush runs goes into the next single
write + flush, so a burst of callbacks costs a few flushes, not one each. Segments rotate at
``segment_bytes``; a drained segment is deleted, and when everything is drained the journal starts
a fresh segment, so the disk holds only what is still owed to the broker. The total size is
bounded by ``max_bytes``: an append that would pass it raises ``SpoolFull`` (answered 503).

Disk failures never corrupt what is there. A failed write is cut back off its segment; if even that
fails, the segment is left as it is (its known size ends before the torn part) and the next write
starts a new segment, so no record is ever glued to half of another. A drain that is committed in
memory but whose cursor cannot be written stays committed here (nothing is published twice by
this process) and is written by ``persist``, which the drainer retries.

At start (``Journal.open``) the directory is recovered: segments before the cursor are removed, a
record torn by a crash at the end of a segment is cut off and kept in ``damaged.log`` (counted as
damaged unless it is the last segment's: that one was never answered), files that are not regular
files are left alone, and the remaining records are counted. Memory does not grow with the spool:
the drainer reads records back in batches.

File work runs in worker threads; all state lives in the event loop's thread.
"""

from __future__ import annotations

import asyncio
import contextlib
import fcntl
import logging
import os
import stat
from collections.abc import Iterable
from dataclasses import dataclass
from pathlib import Path

from bridge.events.envelope import Envelope
from bridge.receiver.errors import SpoolFailed, SpoolFull
from bridge.receiver.segments import (
    Position,
    SpoolRecord,
    TornWrite,
    append_aside,
    encode_record,
    fsync_directory,
    open_append,
    read_lines,
    read_record,
    segment_path,
    write_durably,
)
from bridge.settings import SettingsError

log = logging.getLogger(__name__)

REJECTED_FILE = "rejected.log"
DAMAGED_FILE = "damaged.log"


def segment_size_for(max_bytes: int) -> int:
    """Rotation size: a slice of the bound, so drained parts are given back while others arrive."""
    return max(4096, min(16 * 1024 * 1024, max_bytes // 8))


@dataclass(slots=True)
class _Recovered:
    lock_fd: int
    sizes: dict[int, int]
    cursor: Position
    depth: int
    head_fd: int
    damaged: int


def _segments(directory: Path) -> list[int]:
    """Numbers of the segment files, oldest first; anything that is not a regular file is left."""
    numbers = []
    for path in directory.glob("segment-*.log"):
        try:
            number = int(path.name[len("segment-") : -len(".log")])
            mode = os.stat(path).st_mode
        except (ValueError, OSError):
            continue
        if stat.S_ISREG(mode):
            numbers.append(number)
        else:
            log.error("spool: %s is not a regular file; it is left alone", path.name)
    return sorted(numbers)


def _recover(directory: Path) -> _Recovered:
    directory.mkdir(parents=True, exist_ok=True)
    lock_fd = os.open(directory / "lock", os.O_RDWR | os.O_CREAT, 0o600)
    try:
        fcntl.flock(lock_fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
    except BlockingIOError:
        os.close(lock_fd)
        raise SettingsError(
            f"receiver.spool_dir {directory} is in use by another receiver; give each its own"
        ) from None
    segments = _segments(directory)
    cursor = Position(segments[0] if segments else 1, 0)
    with contextlib.suppress(FileNotFoundError, ValueError):
        saved_segment, saved_offset = (directory / "cursor").read_text().split()
        cursor = Position(int(saved_segment), int(saved_offset))
    for segment in [s for s in segments if s < cursor.segment]:
        segment_path(directory, segment).unlink()
    segments = [s for s in segments if s >= cursor.segment]
    if segments and segments[0] > cursor.segment:
        cursor = Position(segments[0], 0)
    sizes: dict[int, int] = {}
    depth = damaged = 0
    for segment in segments:
        path = segment_path(directory, segment)
        data = path.read_bytes()
        end = data.rfind(b"\n") + 1
        if end < len(data):
            append_aside(directory / DAMAGED_FILE, data[end:] + b"\n")
            if segment != segments[-1]:
                damaged += 1
                log.error(
                    "spool segment %s ends in a damaged record; kept in %s", path.name, DAMAGED_FILE
                )
            else:
                log.warning(
                    "spool: a record torn by a crash (never answered) is cut off %s; kept in %s",
                    path.name,
                    DAMAGED_FILE,
                )
            os.truncate(path, end)
        sizes[segment] = end
        start = cursor.offset if segment == cursor.segment else 0
        depth += data.count(b"\n", start, end)
    if not segments:
        segments = [cursor.segment]
        sizes[cursor.segment] = 0
    if cursor.offset > sizes[cursor.segment]:
        cursor = Position(cursor.segment, sizes[cursor.segment])
    head_fd = open_append(segment_path(directory, segments[-1]))
    fsync_directory(directory)
    return _Recovered(lock_fd, sizes, cursor, depth, head_fd, damaged)


class Journal:
    """The spool of one receiver. Build it with ``await Journal.open(...)``."""

    def __init__(self, directory: Path, recovered: _Recovered, *, max_bytes: int) -> None:
        self.directory = directory
        self.max_bytes = max_bytes
        self.segment_bytes = segment_size_for(max_bytes)
        self.damaged = recovered.damaged  # damaged records kept aside since the start
        self._lock_fd = recovered.lock_fd
        self._sizes = recovered.sizes  # segment -> durable size; ordered oldest first
        self._head = max(self._sizes)
        self._head_fd = recovered.head_fd
        self._head_torn = False  # a write could not be taken back: the next one rotates
        self._cursor = recovered.cursor
        self._persisted = True  # the cursor file says what _cursor says
        self._doomed: set[int] = set()  # drained segments not deleted yet
        self._depth = recovered.depth
        self._pending: list[tuple[bytes, asyncio.Future[None]]] = []
        self._reserved = 0  # bytes waiting in _pending or being flushed
        self._unflushed = 0  # records waiting in _pending or being flushed
        self._flusher: asyncio.Task[None] | None = None
        self._io = asyncio.Lock()
        self._has_records = asyncio.Event()
        self._empty = asyncio.Event()
        self._closed = False
        self._others: list[Journal] = []
        self._note_depth()

    def count_with(self, other: Journal) -> None:
        """Count ``other``'s bytes against this journal's bound too (``used_bytes``)."""
        self._others.append(other)

    @classmethod
    async def open(cls, directory: Path, *, max_bytes: int) -> Journal:
        try:
            recovered = await asyncio.to_thread(_recover, directory)
        except OSError as exc:
            raise SettingsError(
                f"receiver.spool_dir {directory} cannot be used: {exc.strerror or exc}"
            ) from exc
        journal = cls(directory, recovered, max_bytes=max_bytes)
        if journal.depth:
            log.warning(
                "spool %s holds %d events from before the start; draining them",
                directory,
                journal.depth,
            )
        return journal

    @property
    def depth(self) -> int:
        """Records flushed to disk and not drained yet."""
        return self._depth

    @property
    def size_bytes(self) -> int:
        return sum(self._sizes.values()) + self._reserved

    @property
    def used_bytes(self) -> int:
        """What counts against ``max_bytes``: this journal and those counted with it."""
        return self.size_bytes + sum(other.size_bytes for other in self._others)

    @property
    def is_empty(self) -> bool:
        """Nothing owed to the broker: no record on disk, none being written."""
        return self._depth == 0 and self._unflushed == 0

    @property
    def is_persisted(self) -> bool:
        """The cursor on disk is the cursor here (else ``persist`` is owed)."""
        return self._persisted

    def _note_depth(self) -> None:
        if self._depth:
            self._has_records.set()
        else:
            self._has_records.clear()
        if self.is_empty:
            self._empty.set()
        else:
            self._empty.clear()

    async def wait_for_records(self) -> None:
        await self._has_records.wait()

    async def wait_empty(self) -> None:
        """Until nothing is owed to the broker."""
        await self._empty.wait()

    async def append(self, envelope: Envelope, *, bounded: bool = True) -> None:
        """Write one record, return once it is on disk; ``SpoolFull`` or ``SpoolFailed`` if not.

        ``bounded=False`` is for a record moved here from another journal: it already counts
        against the spool, so ``max_bytes`` does not refuse it.
        """
        if self._closed:
            raise SpoolFailed("the spool is closed")
        line = encode_record(envelope)
        if bounded and self.used_bytes + len(line) > self.max_bytes:
            raise SpoolFull(f"the spool holds its limit of {self.max_bytes} bytes")
        done: asyncio.Future[None] = asyncio.get_running_loop().create_future()
        self._pending.append((line, done))
        self._reserved += len(line)
        self._unflushed += 1
        self._empty.clear()
        if self._flusher is None or self._flusher.done():
            self._flusher = asyncio.create_task(self._flush(), name="spool-flush")
        await asyncio.shield(done)

    async def _flush(self) -> None:
        while self._pending:
            batch, self._pending = self._pending, []
            data = b"".join(line for line, _ in batch)
            try:
                async with self._io:
                    if self._head_torn or self._sizes[self._head] >= self.segment_bytes:
                        await self._rotate()
                    size = self._sizes[self._head]
                    await asyncio.to_thread(write_durably, self._head_fd, data, size)
                    self._sizes[self._head] = size + len(data)
            except Exception as exc:  # the disk's boundary: any failure refuses this batch only
                if isinstance(exc, TornWrite):
                    self._head_torn = True
                log.error("spool write failed: %s", exc, exc_info=not isinstance(exc, OSError))
                error: Exception | None = SpoolFailed(f"the spool could not be written ({exc})")
            else:
                error = None
                self._depth += len(batch)
            finally:
                self._reserved -= len(data)
                self._unflushed -= len(batch)
                self._note_depth()
            for _, done in batch:
                if not done.done():
                    if error is None:
                        done.set_result(None)
                    else:
                        done.set_exception(error)

    async def _rotate(self) -> None:
        """Start the next segment (the caller holds ``_io``); ``OSError`` if it cannot."""
        new = self._head + 1

        def create() -> int:
            fd = open_append(segment_path(self.directory, new))
            fsync_directory(self.directory)
            return fd

        fd = await asyncio.to_thread(create)
        os.close(self._head_fd)
        self._head, self._head_fd = new, fd
        self._head_torn = False
        self._sizes[new] = 0

    async def read_batch(self, limit: int) -> list[SpoolRecord]:
        """Up to ``limit`` records from the cursor on, in arrival order; ``OSError`` if unread."""
        plan = [
            (segment, self._cursor.offset if segment == self._cursor.segment else 0, size)
            for segment, size in self._sizes.items()
            if segment >= self._cursor.segment
        ]

        def read() -> list[SpoolRecord]:
            records: list[SpoolRecord] = []
            for segment, start, stop in plan:
                if len(records) >= limit:
                    break
                if start >= stop:
                    continue
                path = segment_path(self.directory, segment)
                for line, end in read_lines(path, start, stop, limit - len(records)):
                    records.append(read_record(line, Position(segment, end)))
            return records

        return await asyncio.to_thread(read)

    async def commit(self, end: Position, count: int) -> None:
        """Mark ``count`` records up to ``end`` as drained; give back what is no longer needed.

        The records are drained here as soon as this is called. Writing the cursor may fail
        (``OSError``): then ``is_persisted`` is False until ``persist`` succeeds, and a restart
        before that drains them again.
        """
        async with self._io:
            self._depth -= count
            cursor = end
            while cursor.segment != self._head and cursor.offset >= self._sizes[cursor.segment]:
                cursor = Position(min(s for s in self._sizes if s > cursor.segment), 0)
            self._cursor = cursor
            self._persisted = False
            obsolete = [s for s in self._sizes if s < cursor.segment]
            if self.is_empty and cursor.offset > 0:
                # Everything is drained: a fresh segment instead of an ever-growing one.
                try:
                    await self._rotate()
                except OSError as exc:
                    log.warning("spool: cannot start a fresh segment (%s); going on", exc)
                else:
                    obsolete.append(cursor.segment)
                    self._cursor = Position(self._head, 0)
            for segment in obsolete:
                del self._sizes[segment]
            self._doomed.update(obsolete)
            self._note_depth()
            await self._persist()

    async def persist(self) -> None:
        """Write the cursor and delete the drained segments; ``OSError`` if the disk refuses."""
        async with self._io:
            await self._persist()

    async def _persist(self) -> None:
        cursor, doomed = self._cursor, sorted(self._doomed)
        await asyncio.to_thread(self._write_cursor, cursor, doomed)
        self._doomed.difference_update(doomed)
        self._persisted = self._cursor == cursor

    def _write_cursor(self, cursor: Position, doomed: list[int]) -> None:
        temporary = self.directory / "cursor.tmp"
        with temporary.open("w") as fh:
            fh.write(f"{cursor.segment} {cursor.offset}\n")
            fh.flush()
            os.fsync(fh.fileno())
        temporary.replace(self.directory / "cursor")
        for segment in doomed:
            segment_path(self.directory, segment).unlink(missing_ok=True)
        fsync_directory(self.directory)

    async def set_aside(self, envelopes: Iterable[Envelope]) -> Path:
        """Keep events the broker can never take in ``rejected.log``, flushed to disk.

        The drainer then commits past them: one event that cannot be encoded must not hold back
        every event behind it, and it stays on disk for an operator to look at.
        """
        return await self._keep(REJECTED_FILE, b"".join(encode_record(e) for e in envelopes))

    async def keep_damaged(self, records: Iterable[SpoolRecord]) -> Path:
        """Keep damaged lines, as they were read, in ``damaged.log`` (flushed), and count them."""
        kept = list(records)
        path = await self._keep(DAMAGED_FILE, b"".join(r.line + b"\n" for r in kept))
        self.damaged += len(kept)
        return path

    async def _keep(self, name: str, lines: bytes) -> Path:
        path = self.directory / name
        async with self._io:
            await asyncio.to_thread(append_aside, path, lines)
        return path

    async def close(self) -> None:
        """Finish the writes in progress, then release the files and the directory lock."""
        self._closed = True
        if self._flusher is not None:
            await self._flusher
        async with self._io:
            try:
                await self._persist()
            except OSError as exc:
                log.error("spool: the cursor could not be written at shutdown (%s)", exc)
            os.close(self._head_fd)
            os.close(self._lock_fd)

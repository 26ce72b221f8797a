"""The spool: an on-disk journal of events the broker has not confirmed, drained in arrival order.

A callback is answered 200 only once its event is either confirmed by RabbitMQ or written here
and flushed to disk (``fdatasync``). Layout of ``receiver.spool_dir``::

    lock                       flock()ed by the one receiver using the directory
    cursor                     "<segment> <offset>": the first record not drained yet
    segment-000000000001.log   records, appended, one per line: "<crc32, 8 hex> <json>\\n"

Appends are group-committed: every write waiting while a flush runs goes into the next single
write + flush, so a burst of callbacks costs a few flushes, not one each. Segments rotate at
``segment_bytes``; a drained segment is deleted, and when everything is drained the journal starts
a fresh segment, so the disk holds only what is still owed to the broker. The total size is
bounded by ``max_bytes``: an append that would pass it raises ``SpoolFull`` (answered 503).

At start (``Journal.open``) the directory is recovered: segments before the cursor are removed, a
record torn by a crash at the end of the last segment is cut off (it was never answered), and the
remaining records are counted. A damaged line elsewhere is reported to the drainer, which logs and
skips it. Memory does not grow with the spool: the drainer reads records back in batches.

File work runs in worker threads; all state lives in the event loop's thread.
"""

from __future__ import annotations

import asyncio
import contextlib
import fcntl
import logging
import os
import zlib
from dataclasses import dataclass
from datetime import datetime
from pathlib import Path

import orjson

from bridge.events.envelope import Envelope
from bridge.receiver.errors import SpoolFailed, SpoolFull
from bridge.settings import SettingsError

log = logging.getLogger(__name__)

_READ_CHUNK = 256 * 1024
# Events the broker refused for good (they cannot be encoded): kept, never drained again.
REJECTED_FILE = "rejected.log"


def segment_size_for(max_bytes: int) -> int:
    """Rotation size: a slice of the bound, so drained parts are given back while others arrive."""
    return max(4096, min(16 * 1024 * 1024, max_bytes // 8))


@dataclass(frozen=True, slots=True, order=True)
class Position:
    segment: int
    offset: int


@dataclass(frozen=True, slots=True)
class SpoolRecord:
    """One record read back: its envelope (None if the line is damaged) and where it ends."""

    envelope: Envelope | None
    end: Position


def encode_record(envelope: Envelope) -> bytes:
    """One journal line. Event bodies are UTF-8 JSON, so they are kept as a JSON string."""
    payload = orjson.dumps(
        {
            "routing_key": envelope.routing_key,
            "message_id": envelope.message_id,
            "type": envelope.type,
            "content_type": envelope.content_type,
            "headers": dict(envelope.headers),
            "correlation_id": envelope.correlation_id,
            "reply_to": envelope.reply_to,
            "timestamp": envelope.timestamp.isoformat(),
            "body": envelope.body.decode("utf-8"),
        }
    )
    return b"%08x %b\n" % (zlib.crc32(payload), payload)


def decode_record(line: bytes) -> Envelope:
    """The envelope of one line (without its newline); ``ValueError`` if it is damaged."""
    checksum, sep, payload = line.partition(b" ")
    if not sep or len(checksum) != 8 or int(checksum, 16) != zlib.crc32(payload):
        raise ValueError("checksum mismatch")
    fields = orjson.loads(payload)
    return Envelope(
        body=fields["body"].encode("utf-8"),
        routing_key=fields["routing_key"],
        message_id=fields["message_id"],
        type=fields["type"],
        content_type=fields["content_type"],
        headers=fields["headers"],
        correlation_id=fields["correlation_id"],
        reply_to=fields["reply_to"],
        timestamp=datetime.fromisoformat(fields["timestamp"]),
    )


def _segment_path(directory: Path, segment: int) -> Path:
    return directory / f"segment-{segment:012d}.log"


def _fsync_directory(directory: Path) -> None:
    fd = os.open(directory, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


def _open_append(path: Path) -> int:
    return os.open(path, os.O_WRONLY | os.O_APPEND | os.O_CREAT, 0o600)


@dataclass(slots=True)
class _Recovered:
    lock_fd: int
    sizes: dict[int, int]
    cursor: Position
    depth: int
    head_fd: int


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
    segments = sorted(
        int(path.name[len("segment-") : -len(".log")]) for path in directory.glob("segment-*.log")
    )
    cursor = Position(segments[0] if segments else 1, 0)
    with contextlib.suppress(FileNotFoundError, ValueError):
        saved_segment, saved_offset = (directory / "cursor").read_text().split()
        cursor = Position(int(saved_segment), int(saved_offset))
    for segment in [s for s in segments if s < cursor.segment]:
        _segment_path(directory, segment).unlink()
    segments = [s for s in segments if s >= cursor.segment]
    if segments and segments[0] > cursor.segment:
        cursor = Position(segments[0], 0)
    sizes: dict[int, int] = {}
    depth = 0
    for segment in segments:
        path = _segment_path(directory, segment)
        data = path.read_bytes()
        end = data.rfind(b"\n") + 1
        if end < len(data):
            if segment != segments[-1]:
                log.error("spool segment %s ends in a damaged record; it is skipped", path.name)
            else:
                log.warning("spool: cutting a record torn by a crash off %s", path.name)
            os.truncate(path, end)
        sizes[segment] = end
        start = cursor.offset if segment == cursor.segment else 0
        depth += data.count(b"\n", start, end)
    if not segments:
        segments = [cursor.segment]
        sizes[cursor.segment] = 0
    if cursor.offset > sizes[cursor.segment]:
        cursor = Position(cursor.segment, sizes[cursor.segment])
    head_fd = _open_append(_segment_path(directory, segments[-1]))
    _fsync_directory(directory)
    return _Recovered(lock_fd=lock_fd, sizes=sizes, cursor=cursor, depth=depth, head_fd=head_fd)


def _write_durably(fd: int, data: bytes, size_before: int) -> None:
    try:
        view = memoryview(data)
        while view:
            view = view[os.write(fd, view) :]
        os.fdatasync(fd)
    except OSError:
        # Never leave half a record behind: the next append would be glued to it.
        with contextlib.suppress(OSError):
            os.ftruncate(fd, size_before)
        raise


def _read_lines(path: Path, start: int, stop: int, limit: int) -> list[tuple[bytes, int]]:
    """Up to ``limit`` complete lines between ``start`` and ``stop``, with their end offsets."""
    lines: list[tuple[bytes, int]] = []
    with path.open("rb") as fh:
        fh.seek(start)
        offset = start
        buffered = b""
        while offset < stop and len(lines) < limit:
            chunk = fh.read(min(_READ_CHUNK, stop - offset))
            if not chunk:
                break
            offset += len(chunk)
            buffered += chunk
            begin = 0
            while len(lines) < limit:
                newline = buffered.find(b"\n", begin)
                if newline < 0:
                    break
                lines.append((buffered[begin:newline], offset - len(buffered) + newline + 1))
                begin = newline + 1
            buffered = buffered[begin:]
    return lines


class Journal:
    """The spool of one receiver. Build it with ``await Journal.open(...)``."""

    def __init__(self, directory: Path, recovered: _Recovered, *, max_bytes: int) -> None:
        self.directory = directory
        self.max_bytes = max_bytes
        self.segment_bytes = segment_size_for(max_bytes)
        self._lock_fd = recovered.lock_fd
        self._sizes = recovered.sizes  # segment -> durable size; ordered oldest first
        self._head = max(self._sizes)
        self._head_fd = recovered.head_fd
        self._cursor = recovered.cursor
        self._depth = recovered.depth
        self._pending: list[tuple[bytes, asyncio.Future[None]]] = []
        self._reserved = 0  # bytes waiting in _pending or being flushed
        self._unflushed = 0  # records waiting in _pending or being flushed
        self._flusher: asyncio.Task[None] | None = None
        self._io = asyncio.Lock()
        self._has_records = asyncio.Event()
        self._closed = False
        if self._depth:
            self._has_records.set()

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
            log.warning("spool holds %d events from before the start; draining them", journal.depth)
        return journal

    @property
    def depth(self) -> int:
        """Records flushed to disk and not drained yet."""
        return self._depth

    @property
    def size_bytes(self) -> int:
        return sum(self._sizes.values()) + self._reserved

    @property
    def is_empty(self) -> bool:
        """Nothing owed to the broker: no record on disk, none being written."""
        return self._depth == 0 and self._unflushed == 0

    async def wait_for_records(self) -> None:
        await self._has_records.wait()

    async def append(self, envelope: Envelope) -> None:
        """Write one record, return once it is on disk; ``SpoolFull`` or ``SpoolFailed`` if not."""
        if self._closed:
            raise SpoolFailed("the spool is closed")
        line = encode_record(envelope)
        if self.size_bytes + len(line) > self.max_bytes:
            raise SpoolFull(f"the spool holds its limit of {self.max_bytes} bytes")
        done: asyncio.Future[None] = asyncio.get_running_loop().create_future()
        self._pending.append((line, done))
        self._reserved += len(line)
        self._unflushed += 1
        if self._flusher is None or self._flusher.done():
            self._flusher = asyncio.create_task(self._flush(), name="spool-flush")
        await asyncio.shield(done)

    async def _flush(self) -> None:
        while self._pending:
            batch, self._pending = self._pending, []
            data = b"".join(line for line, _ in batch)
            try:
                async with self._io:
                    if self._sizes[self._head] >= self.segment_bytes:
                        await self._rotate()
                    size = self._sizes[self._head]
                    await asyncio.to_thread(_write_durably, self._head_fd, data, size)
                    self._sizes[self._head] = size + len(data)
            except Exception as exc:  # the disk's boundary: any failure refuses this batch only
                log.error("spool write failed: %s", exc, exc_info=not isinstance(exc, OSError))
                error: Exception | None = SpoolFailed(f"the spool could not be written ({exc})")
            else:
                error = None
                self._depth += len(batch)
                self._has_records.set()
            finally:
                self._reserved -= len(data)
                self._unflushed -= len(batch)
            for _, done in batch:
                if not done.done():
                    if error is None:
                        done.set_result(None)
                    else:
                        done.set_exception(error)

    async def _rotate(self) -> None:
        """Start the next segment (the caller holds ``_io``)."""
        new = self._head + 1

        def create() -> int:
            fd = _open_append(_segment_path(self.directory, new))
            _fsync_directory(self.directory)
            return fd

        fd = await asyncio.to_thread(create)
        os.close(self._head_fd)
        self._head, self._head_fd = new, fd
        self._sizes[new] = 0

    async def read_batch(self, limit: int) -> list[SpoolRecord]:
        """Up to ``limit`` records from the cursor on, in arrival order."""
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
                path = _segment_path(self.directory, segment)
                for line, end in _read_lines(path, start, stop, limit - len(records)):
                    try:
                        envelope: Envelope | None = decode_record(line)
                    except (ValueError, KeyError, TypeError, AttributeError):
                        log.error("spool record in %s before offset %d is damaged", path.name, end)
                        envelope = None
                    records.append(SpoolRecord(envelope, Position(segment, end)))
            return records

        return await asyncio.to_thread(read)

    async def commit(self, end: Position, count: int) -> None:
        """Mark ``count`` records up to ``end`` as drained; give back what is no longer needed."""
        async with self._io:
            self._depth -= count
            cursor = end
            while cursor.segment != self._head and cursor.offset >= self._sizes[cursor.segment]:
                cursor = Position(min(s for s in self._sizes if s > cursor.segment), 0)
            obsolete = [s for s in self._sizes if s < cursor.segment]
            if self._depth == 0 and self._unflushed == 0:
                self._has_records.clear()
                if cursor.offset > 0:
                    # Everything is drained: a fresh segment instead of an ever-growing one.
                    obsolete.append(self._head)
                    await self._rotate()
                    cursor = Position(self._head, 0)
            self._cursor = cursor
            for segment in obsolete:
                del self._sizes[segment]
            await asyncio.to_thread(self._persist, cursor, obsolete)

    async def set_aside(self, envelope: Envelope) -> Path:
        """Keep an event the broker can never take in ``rejected.log``, flushed to disk.

        The drainer then commits past it: one event that cannot be encoded must not hold back
        every event behind it, and it stays on disk for an operator to look at.
        """
        path = self.directory / REJECTED_FILE

        def write() -> None:
            fd = _open_append(path)
            try:
                _write_durably(fd, encode_record(envelope), os.fstat(fd).st_size)
            finally:
                os.close(fd)

        async with self._io:
            await asyncio.to_thread(write)
        return path

    def _persist(self, cursor: Position, obsolete: list[int]) -> None:
        temporary = self.directory / "cursor.tmp"
        with temporary.open("w") as fh:
            fh.write(f"{cursor.segment} {cursor.offset}\n")
            fh.flush()
            os.fsync(fh.fileno())
        temporary.replace(self.directory / "cursor")
        for segment in obsolete:
            _segment_path(self.directory, segment).unlink(missing_ok=True)
        _fsync_directory(self.directory)

    async def close(self) -> None:
        """Finish the writes in progress, then release the files and the directory lock."""
        self._closed = True
        if self._flusher is not None:
            await self._flusher
        async with self._io:
            await asyncio.to_thread(self._persist, self._cursor, [])
            os.close(self._head_fd)
            os.close(self._lock_fd)

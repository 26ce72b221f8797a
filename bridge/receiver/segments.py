"""The spool's files: the record line, segment names, durable appends, reading lines back.

A record is one line, ``"<crc32, 8 hex> <json>\\n"``; the JSON holds the envelope, with the body as
a string (event bodies are UTF-8 JSON). A segment is a file of such lines, named by its number.
Files a record is moved to for good (``rejected.log``, ``damaged.log``) are written with
``append_aside``. Everything here is blocking file I/O, run in worker threads by ``spool.py``;
no state.
"""

from __future__ import annotations

import os
import zlib
from dataclasses import dataclass
from datetime import datetime
from pathlib import Path

import orjson

from bridge.events.envelope import Envelope

_READ_CHUNK = 256 * 1024


@dataclass(frozen=True, slots=True, order=True)
class Position:
    segment: int
    offset: int


@dataclass(frozen=True, slots=True)
class SpoolRecord:
    """One record read back: its envelope (None if damaged), its line, and where it ends."""

    envelope: Envelope | None
    line: bytes
    end: Position


class TornWrite(OSError):
    """A write failed and could not be taken back: the file ends in part of a record."""


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


def read_record(line: bytes, end: Position) -> SpoolRecord:
    try:
        envelope: Envelope | None = decode_record(line)
    except (ValueError, KeyError, TypeError, AttributeError):
        envelope = None
    return SpoolRecord(envelope, line, end)


def segment_path(directory: Path, segment: int) -> Path:
    return directory / f"segment-{segment:012d}.log"


def fsync_directory(directory: Path) -> None:
    fd = os.open(directory, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


def open_append(path: Path) -> int:
    return os.open(path, os.O_WRONLY | os.O_APPEND | os.O_CREAT, 0o600)


def write_durably(fd: int, data: bytes, size_before: int) -> None:
    """Append ``data`` and flush it to disk, or leave the file as it was and raise ``OSError``.

    If the write fails and the file cannot be cut back to ``size_before`` either, ``TornWrite``:
    the file now ends in part of a record, and nothing may be appended to it any more (the next
    record would be glued to that part).
    """
    try:
        view = memoryview(data)
        while view:
            view = view[os.write(fd, view) :]
        os.fdatasync(fd)
    except OSError as exc:
        try:
            os.ftruncate(fd, size_before)
        except OSError:
            raise TornWrite(exc.errno, f"{exc.strerror}; and cannot be taken back") from exc
        raise


def append_aside(path: Path, lines: bytes) -> None:
    """Append whole lines to a file records are kept in for good, flushed to disk.

    Such a file is appended to by opening it each time; if an earlier write was torn, the new
    lines start on a line of their own.
    """
    fd = os.open(path, os.O_RDWR | os.O_APPEND | os.O_CREAT, 0o600)
    try:
        size = os.fstat(fd).st_size
        if size and os.pread(fd, 1, size - 1) != b"\n":
            lines = b"\n" + lines
        write_durably(fd, lines, size)
    finally:
        os.close(fd)


def read_lines(path: Path, start: int, stop: int, limit: int) -> list[tuple[bytes, int]]:
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

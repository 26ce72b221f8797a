"""The receiver's parts on their own: spool journal (real files), dedup window, auth, readiness."""

from __future__ import annotations

import asyncio
import base64
import os
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import orjson
import pytest
from pydantic import SecretStr

from bridge.broker import Envelope
from bridge.events.callbacks import FieldProblem
from bridge.receiver.auth import CallbackAuth
from bridge.receiver.dedup import DedupWindow
from bridge.receiver.errors import BadCallback, SpoolFailed, SpoolFull, Unauthorized
from bridge.receiver.health import assess
from bridge.receiver.problems import problem_response
from bridge.receiver.segments import Position, decode_record, encode_record
from bridge.receiver.spool import DAMAGED_FILE, Journal
from bridge.settings import ReceiverSettings, SettingsError


def envelope(n: int, *, size: int = 40) -> Envelope:
    return Envelope(
        body=b'{"n":%d,"pad":"%b"}' % (n, b"x" * size),
        routing_key="inbound.sms",
        message_id=f"id-{n}",
        type="io.catapult-bridge.message.received.v1",
        headers={"direction": "in", "ce-id": f"id-{n}"},
        correlation_id=f"cmd-{n}" if n % 2 else None,
        timestamp=datetime(2026, 1, 1, tzinfo=UTC),
    )


def segments(directory: Path) -> list[Path]:
    return sorted(directory.glob("segment-*.log"))


async def drain_all(journal: Journal, batch: int = 1000) -> list[str]:
    ids: list[str] = []
    while journal.depth:
        records = await journal.read_batch(batch)
        ids.extend(r.envelope.message_id for r in records if r.envelope is not None)
        await journal.commit(records[-1].end, len(records))
    return ids


def test_records_round_trip() -> None:
    original = envelope(3)
    line = encode_record(original)
    assert line.endswith(b"\n")
    assert line.count(b"\n") == 1
    assert decode_record(line[:-1]) == original
    damaged = line[:20] + b"X" + line[21:-1]
    with pytest.raises(ValueError, match="checksum"):
        decode_record(damaged)


async def test_spool_keeps_arrival_order_across_segments_and_restarts(tmp_path: Path) -> None:
    journal = await Journal.open(tmp_path, max_bytes=80_000)  # 10,000-byte segments
    for start in range(0, 150, 30):  # bursts: each is one group-committed write
        await asyncio.gather(*(journal.append(envelope(n)) for n in range(start, start + 30)))
    assert journal.depth == 150
    assert not journal.is_empty
    assert len(segments(tmp_path)) > 1
    first = await journal.read_batch(40)
    assert [r.envelope.message_id for r in first if r.envelope] == [f"id-{n}" for n in range(40)]
    await journal.commit(first[-1].end, 40)
    await journal.close()

    reopened = await Journal.open(tmp_path, max_bytes=80_000)
    assert reopened.depth == 110
    assert await drain_all(reopened, batch=33) == [f"id-{n}" for n in range(40, 150)]
    assert reopened.is_empty
    await reopened.append(envelope(999))
    assert await drain_all(reopened) == ["id-999"]
    await reopened.close()
    # Drained segments are given back: one fresh, empty segment is left.
    (left,) = segments(tmp_path)
    assert left.stat().st_size == 0


async def test_spool_refuses_past_its_bound_and_takes_again_once_drained(tmp_path: Path) -> None:
    line = len(encode_record(envelope(0)))
    journal = await Journal.open(tmp_path, max_bytes=line * 3 + 10)
    for n in range(3):
        await journal.append(envelope(n))
    with pytest.raises(SpoolFull):
        await journal.append(envelope(3))
    assert await drain_all(journal) == ["id-0", "id-1", "id-2"]
    await journal.append(envelope(4))
    assert journal.depth == 1
    await journal.close()


async def test_a_torn_last_record_is_cut_off_at_start(tmp_path: Path) -> None:
    journal = await Journal.open(tmp_path, max_bytes=1_000_000)
    for n in range(3):
        await journal.append(envelope(n))
    await journal.close()
    (segment,) = segments(tmp_path)
    with segment.open("ab") as fh:  # a crash in the middle of a write: half a record, no newline
        fh.write(encode_record(envelope(3))[:25])
    reopened = await Journal.open(tmp_path, max_bytes=1_000_000)
    assert reopened.depth == 3
    await reopened.append(envelope(4))  # lands after the cut, on a line of its own
    assert await drain_all(reopened) == ["id-0", "id-1", "id-2", "id-4"]
    await reopened.close()


async def test_a_damaged_record_is_skipped_not_fatal(tmp_path: Path) -> None:
    journal = await Journal.open(tmp_path, max_bytes=1_000_000)
    for n in range(3):
        await journal.append(envelope(n))
    await journal.close()
    (segment,) = segments(tmp_path)
    data = bytearray(segment.read_bytes())
    second = data.index(b"\n") + 1
    data[second + 30] ^= 0x01  # flip a bit inside the second record
    segment.write_bytes(bytes(data))
    reopened = await Journal.open(tmp_path, max_bytes=1_000_000)
    records = await reopened.read_batch(10)
    assert [r.envelope.message_id if r.envelope else None for r in records] == [
        "id-0",
        None,
        "id-2",
    ]
    await reopened.commit(records[-1].end, len(records))
    assert reopened.is_empty
    await reopened.close()


async def test_a_torn_record_inside_the_spool_is_kept_aside_and_counted(tmp_path: Path) -> None:
    journal = await Journal.open(tmp_path, max_bytes=32_000)  # 4096-byte segments
    for n in range(60):
        await journal.append(envelope(n))
    await journal.close()
    first, *_ = segments(tmp_path)
    data = first.read_bytes()
    last = data[data.rindex(b"\n", 0, len(data) - 1) + 1 : -1]
    lost = decode_record(last).message_id
    first.write_bytes(data[:-3])  # its last record loses its end: it fails its checksum
    reopened = await Journal.open(tmp_path, max_bytes=32_000)
    assert reopened.damaged == 1
    assert (tmp_path / DAMAGED_FILE).read_bytes() == last[:-2] + b"\n"  # kept as it was found
    assert await drain_all(reopened) == [f"id-{n}" for n in range(60) if f"id-{n}" != lost]
    await reopened.close()


async def test_a_write_that_cannot_be_taken_back_never_glues_records(tmp_path: Path) -> None:
    # The next segment is /dev/full: a write there fails (ENOSPC) and so does cutting it back
    # (ftruncate: EINVAL), real errors both. The journal must refuse that batch only, and put
    # the next record on a fresh segment, not after whatever the failed write left.
    journal = await Journal.open(tmp_path, max_bytes=32_000)
    (tmp_path / "segment-000000000002.log").symlink_to("/dev/full")
    written: list[int] = []
    refused: list[int] = []
    for n in range(60):
        try:
            await journal.append(envelope(n))
        except SpoolFailed:
            refused.append(n)
        else:
            written.append(n)
    assert len(refused) == 1
    assert await drain_all(journal) == [f"id-{n}" for n in written]
    await journal.close()
    # At the next start the link is still there: it is left alone, not read (it never ends).
    reopened = await Journal.open(tmp_path, max_bytes=32_000)
    await reopened.append(envelope(99))
    assert await drain_all(reopened) == ["id-99"]
    await reopened.close()


async def test_one_directory_one_receiver(tmp_path: Path) -> None:
    journal = await Journal.open(tmp_path, max_bytes=1_000_000)
    with pytest.raises(SettingsError, match=r"receiver\.spool_dir .* in use"):
        await Journal.open(tmp_path, max_bytes=1_000_000)
    await journal.close()
    await (await Journal.open(tmp_path, max_bytes=1_000_000)).close()


async def test_a_stale_cursor_is_tolerated(tmp_path: Path) -> None:
    journal = await Journal.open(tmp_path, max_bytes=1_000_000)
    await journal.append(envelope(1))
    await journal.close()
    (tmp_path / "cursor").write_text("garbage")
    reopened = await Journal.open(tmp_path, max_bytes=1_000_000)
    assert reopened.depth == 1
    await reopened.close()
    (tmp_path / "cursor").write_text("0 999999")
    reopened = await Journal.open(tmp_path, max_bytes=1_000_000)
    assert await drain_all(reopened) == ["id-1"]
    await reopened.close()


async def test_group_commit_flushes_a_burst_together(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    journal = await Journal.open(tmp_path, max_bytes=10_000_000)
    calls = 0
    real = os.fdatasync

    def counting(fd: int) -> None:
        nonlocal calls
        calls += 1
        real(fd)

    monkeypatch.setattr(os, "fdatasync", counting)
    await asyncio.gather(*(journal.append(envelope(n)) for n in range(200)))
    assert journal.depth == 200
    assert calls <= 3
    await journal.close()
    assert Position(1, 0) < Position(1, 5) < Position(2, 0)


class Clock:
    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now


async def test_dedup_window_expires_and_stays_bounded() -> None:
    clock = Clock()
    window = DedupWindow(window_s=10, max_entries=3, clock=clock)
    runs: list[str] = []

    async def run(key: str) -> bool:
        async def action() -> str:
            runs.append(key)
            return key

        _, duplicate = await window.once(key, action)
        return duplicate

    assert [await run(k) for k in ("a", "a", "b")] == [False, True, False]
    clock.now += 11
    assert await run("a") is False  # expired
    for key in ("c", "d", "e"):
        await run(key)
    assert len(window) == 3
    assert await run("a") is False  # evicted: oldest first
    assert runs == ["a", "b", "a", "c", "d", "e", "a"]


async def test_dedup_concurrent_duplicates_wait_for_the_first() -> None:
    window = DedupWindow(window_s=60, max_entries=10)
    started = asyncio.Event()
    release = asyncio.Event()
    runs = 0

    async def action() -> str:
        nonlocal runs
        runs += 1
        started.set()
        await release.wait()
        return "stored"

    first = asyncio.create_task(window.once("k", action))
    await started.wait()
    second = asyncio.create_task(window.once("k", action))
    release.set()
    assert await first == ("stored", False)
    assert await second == (None, True)
    assert runs == 1


async def test_dedup_takes_over_when_the_first_fails() -> None:
    window = DedupWindow(window_s=60, max_entries=10)
    started = asyncio.Event()
    fail = asyncio.Event()

    async def failing() -> str:
        started.set()
        await fail.wait()
        raise RuntimeError("broker gone")

    async def working() -> str:
        return "stored"

    first = asyncio.create_task(window.once("k", failing))
    await started.wait()
    second = asyncio.create_task(window.once("k", working))
    fail.set()
    with pytest.raises(RuntimeError):
        await first
    assert await second == ("stored", False)


async def test_dedup_off() -> None:
    window = DedupWindow(window_s=0, max_entries=10)

    async def action() -> int:
        return 1

    assert [await window.once("k", action) for _ in range(2)] == [(1, False), (1, False)]


def basic(user: str, password: str) -> str:
    return "Basic " + base64.b64encode(f"{user}:{password}".encode()).decode()


@pytest.mark.parametrize(
    ("settings", "authorization", "token", "allowed"),
    [
        ({"username": "u", "password": "p"}, basic("u", "p"), None, True),
        ({"username": "u", "password": "p"}, basic("u", "x"), None, False),
        ({"username": "u", "password": "p"}, basic("x", "p"), None, False),
        ({"username": "u", "password": "p"}, None, None, False),
        ({"username": "u", "password": "p"}, "Bearer abc", None, False),
        ({"username": "u", "password": "p"}, "Basic %%%", None, False),
        ({"username": "u", "password": "p:q"}, basic("u", "p:q"), None, True),
        ({"path_token": "t0k"}, None, "t0k", True),
        ({"path_token": "t0k"}, None, "t0K", False),
        ({"path_token": "t0k"}, None, None, False),
        ({"username": "u", "password": "p", "path_token": "t"}, basic("u", "p"), "t", True),
        ({"username": "u", "password": "p", "path_token": "t"}, basic("u", "p"), "x", False),
        ({"username": "u", "password": "p", "path_token": "t"}, basic("u", "x"), "t", False),
        ({"allow_unauthenticated": True}, None, None, True),
    ],
)
def test_auth(
    settings: dict[str, Any], authorization: str | None, token: str, allowed: bool
) -> None:
    auth = CallbackAuth(ReceiverSettings(**settings))
    if allowed:
        auth.check(authorization, token)
        return
    with pytest.raises(Unauthorized) as caught:
        auth.check(authorization, token)
    assert caught.value.detail == "valid credentials are required"  # never which part was wrong
    assert caught.value.headers["WWW-Authenticate"].startswith("Basic realm=")


def test_no_credentials_refuses_to_start() -> None:
    with pytest.raises(SettingsError, match="allow_unauthenticated"):
        CallbackAuth(ReceiverSettings())


def test_auth_never_shows_secrets() -> None:
    auth = CallbackAuth(
        ReceiverSettings(
            username="u", password=SecretStr("hunter2-pw"), path_token=SecretStr("t0k3n")
        )
    )
    assert "hunter2" not in repr(auth)
    assert "t0k3n" not in repr(auth)


@pytest.mark.parametrize(
    ("state", "expected_ready", "problems"),
    [
        ({"broker_state": "ready", "spool_enabled": True}, True, []),
        ({"broker_state": "ready", "spool_enabled": False}, True, []),
        ({"broker_state": "disconnected", "spool_enabled": True}, False, ["broker disconnected"]),
        ({"broker_state": "connecting", "spool_enabled": False}, False, ["broker connecting"]),
        (
            {"broker_state": "ready", "spool_enabled": True, "spool_records": 5},
            True,
            [],
        ),
        (
            {
                "broker_state": "ready",
                "spool_enabled": True,
                "spool_records": 5,
                "drain_stalled": True,
            },
            False,
            ["spool stalled"],
        ),
        (
            {
                "broker_state": "ready",
                "spool_enabled": True,
                "spool_bytes": 95,
                "spool_max_bytes": 100,
            },
            False,
            ["spool nearly-full"],
        ),
    ],
)
def test_readiness(state: dict[str, Any], expected_ready: bool, problems: list[str]) -> None:
    result = assess(**state)
    assert result.is_ready is expected_ready
    assert result.report["problems"] == problems


def test_a_problem_renders_whatever_it_echoes() -> None:
    # The last line of defence: a refusal that echoes text which is not Unicode (a lone
    # surrogate) or a value of no JSON type still becomes a problem document, never a 500.
    error = BadCallback(
        [FieldProblem("te\ud800xt", "is odd", "a\udfffb"), FieldProblem("x", "too", object())]
    )
    response = problem_response(error)
    assert response.status == 400
    assert isinstance(response.body, bytes)
    body = orjson.loads(response.body)
    assert [e["field"] for e in body["errors"]] == ["te\\ud800xt", "x"]
    assert body["errors"][0]["value"] == "a\\udfffb"

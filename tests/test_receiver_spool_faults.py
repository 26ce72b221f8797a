"""The spool under faults: a failing disk, an event the broker keeps refusing, a full spool, a
receiver killed with events in its spool. Nothing answered 200 is lost, and nothing is sent again
and again.

Disk faults are real OS errors, no mocks: a segment file replaced by a directory cannot be read
(IsADirectoryError), and a file that is a link to ``/dev/full`` cannot be written (ENOSPC). Broker
refusals are real nacks: a queue of the test's own, bound to its events exchange, with
``x-max-length`` 0 and ``x-overflow`` ``reject-publish`` refuses every message routed to it.
Every wait is on an event, a queue or a process, with a deadline.
"""

from __future__ import annotations

import asyncio
import os
import signal
import sys
from collections.abc import AsyncIterator, Awaitable, Callable
from pathlib import Path

import aiohttp
import orjson
import pytest
from aio_pika.abc import AbstractIncomingMessage, AbstractQueue, AbstractRobustConnection

from bridge.events.envelope import INBOUND_SMS, Envelope
from bridge.operations import OperationsServer
from bridge.receiver import ReceiverServer
from bridge.receiver.drainer import SpoolDrainer
from bridge.receiver.keys import DRAINER, JOURNAL, RETRY_DRAINER, RETRY_JOURNAL
from bridge.receiver.spool import DAMAGED_FILE, Journal
from bridge.settings import Settings
from tests.fixtures.receiver import (
    AUTH_HEADERS,
    CREDENTIALS,
    BrokerProxy,
    EventQueues,
    MakeReceiver,
    ServeOperations,
)
from tests.test_receiver_outage import expected, inbound, post, readiness

pytestmark = pytest.mark.fault

OpenQueues = Callable[[Settings], Awaitable[EventQueues]]
DEADLINE_S = 10.0


def subject(message: AbstractIncomingMessage) -> str:
    return str(orjson.loads(message.body)["subject"])


def segments(directory: Path) -> list[Path]:
    return sorted(directory.glob("segment-*.log"))


def drainer(server: ReceiverServer) -> SpoolDrainer:
    return server.app[DRAINER]


async def stalled(server: ReceiverServer, *, retry: bool = False, is_stalled: bool = True) -> None:
    """Until the drain has failed (or flows again), within the deadline."""
    drain = server.app[RETRY_DRAINER if retry else DRAINER]
    async with asyncio.timeout(DEADLINE_S):
        await drain.wait_stalled(is_stalled)


async def take_until(queue: AbstractQueue, wanted: set[str]) -> list[str]:
    """Subjects read from ``queue`` (acked) until every one of ``wanted`` was among them."""
    seen: list[str] = []
    async with asyncio.timeout(DEADLINE_S), queue.iterator() as messages:
        async for message in messages:
            await message.ack()
            seen.append(subject(message))
            if wanted <= set(seen):
                break
    return seen


@pytest.fixture
async def refuse_mms(
    amqp: AbstractRobustConnection, unique: str
) -> AsyncIterator[Callable[[Settings], Awaitable[Callable[[], Awaitable[None]]]]]:
    """``lift = await refuse_mms(settings)``: RabbitMQ nacks every MMS event until ``lift()``."""
    channel = await amqp.channel()
    name = f"t-{unique}.refuses-mms"

    async def refuse(settings: Settings) -> Callable[[], Awaitable[None]]:
        queue = await channel.declare_queue(
            name, arguments={"x-max-length": 0, "x-overflow": "reject-publish"}
        )
        await queue.bind(settings.broker.events_exchange, "inbound.mms")

        async def lift() -> None:
            await channel.queue_delete(name)

        return lift

    yield refuse
    await channel.queue_delete(name)
    await channel.close()


async def metric(client: aiohttp.ClientSession, ops: OperationsServer, line: str) -> float:
    async with client.get(ops.base_url + "/metrics") as response:
        text = await response.text()
    for sample in text.splitlines():
        name, _, value = sample.rpartition(" ")
        if name == line:
            return float(value)
    return 0.0


async def test_a_spool_that_cannot_be_read_stalls_the_drain_until_the_disk_heals(
    proxied: Callable[..., Settings],
    broker_proxy: BrokerProxy,
    make_receiver: MakeReceiver,
    serve_operations: ServeOperations,
    callback_client: aiohttp.ClientSession,
    event_queues: OpenQueues,
) -> None:
    settings = proxied(drain_retry_max_s=0.3)
    await broker_proxy.cut()
    server = await make_receiver(settings)
    ops = await serve_operations(server)
    assert [await post(callback_client, server, n) for n in range(10)] == [(200, "spooled")] * 10
    (segment,) = segments(settings.receiver.spool_dir)
    hidden = segment.with_name("hidden")
    segment.rename(hidden)
    segment.mkdir()  # reading the segment now fails with IsADirectoryError

    await broker_proxy.restore()
    await stalled(server)
    status, report = await readiness(callback_client, ops)
    assert (status, report["spool"]["state"]) == (503, "stalled")
    assert await metric(callback_client, ops, "bridge_receiver_spool_drain_stalled") == 1.0
    failures = 'bridge_receiver_spool_drain_failures_total{reason="disk"}'
    assert await metric(callback_client, ops, failures) >= 1.0
    # Callbacks are still taken, and queue up behind the stalled ones (the head still writes).
    assert await post(callback_client, server, 10) == (200, "spooled")

    segment.rmdir()
    hidden.rename(segment)  # the disk is back: the next retry drains everything, in order
    queues = await event_queues(settings)
    assert [subject(m) for m in await queues.take(queues.inbound, 11)] == expected(range(11))
    await stalled(server, is_stalled=False)
    status, report = await readiness(callback_client, ops)
    assert (status, report["spool"]["state"]) == (200, "empty")
    assert await queues.count(queues.inbound) == 0


async def test_a_cursor_that_cannot_be_written_does_not_stop_the_drain(
    proxied: Callable[..., Settings],
    broker_proxy: BrokerProxy,
    make_receiver: MakeReceiver,
    serve_operations: ServeOperations,
    callback_client: aiohttp.ClientSession,
    event_queues: OpenQueues,
) -> None:
    settings = proxied(drain_retry_max_s=0.3)
    spool = settings.receiver.spool_dir
    await broker_proxy.cut()
    server = await make_receiver(settings)
    ops = await serve_operations(server)
    assert [await post(callback_client, server, n) for n in range(10)] == [(200, "spooled")] * 10
    (spool / "cursor.tmp").symlink_to("/dev/full")  # every cursor write now fails: ENOSPC

    await broker_proxy.restore()
    queues = await event_queues(settings)
    assert [subject(m) for m in await queues.take(queues.inbound, 10)] == expected(range(10))
    await stalled(server)
    status, report = await readiness(callback_client, ops)
    assert (status, report["spool"]["state"]) == (503, "stalled")
    # Drained, if not yet on disk: a new callback is not held behind anything.
    assert await post(callback_client, server, 10) == (200, "published")
    assert [subject(m) for m in await queues.take(queues.inbound, 1)] == expected(range(10, 11))

    (spool / "cursor.tmp").unlink()  # the disk heals: the cursor is written at the next retry
    await stalled(server, is_stalled=False)
    assert (await readiness(callback_client, ops))[0] == 200
    await server.stop()
    again = await make_receiver(settings)  # nothing of the first ten is published again
    assert await post(callback_client, again, 11) == (200, "published")
    assert [subject(m) for m in await queues.take(queues.inbound, 1)] == expected(range(11, 12))
    assert await queues.count(queues.inbound) == 0


async def test_an_event_the_broker_refuses_does_not_hold_or_repeat_those_behind_it(
    proxied: Callable[..., Settings],
    broker_proxy: BrokerProxy,
    make_receiver: MakeReceiver,
    serve_operations: ServeOperations,
    callback_client: aiohttp.ClientSession,
    event_queues: OpenQueues,
    refuse_mms: Callable[[Settings], Awaitable[Callable[[], Awaitable[None]]]],
) -> None:
    settings = proxied(drain_retry_max_s=0.5)
    queues = await event_queues(settings)
    lift = await refuse_mms(settings)
    await broker_proxy.cut()
    server = await make_receiver(settings)
    ops = await serve_operations(server)
    assert await post(callback_client, server, 0, kind="mms") == (200, "spooled")
    assert [await post(callback_client, server, n) for n in range(1, 20)] == [(200, "spooled")] * 19

    await broker_proxy.restore()  # the MMS at the head is refused (nacked) on every try
    seen = await take_until(queues.inbound, set(expected(range(1, 20))))
    assert [s for s in seen if s != "m-outage0000"] == expected(range(1, 20))  # once each, in order
    await stalled(server, retry=True)
    _, report = await readiness(callback_client, ops)
    assert report["spool"]["retrying"] == 1
    nacked = 'bridge_receiver_publish_failures_total{reason="nacked"}'
    assert await metric(callback_client, ops, nacked) >= 1.0

    await lift()  # the refusing queue is gone: the next retry of the MMS is confirmed
    async with asyncio.timeout(DEADLINE_S):
        await server.app[RETRY_JOURNAL].wait_empty()
    await stalled(server, retry=True, is_stalled=False)
    rest = [
        subject(m) for m in await queues.take(queues.inbound, await queues.count(queues.inbound))
    ]
    # The other queue took the MMS on every refused try: one copy per retry, no more (the
    # retries back off from 0.1 s to 0.5 s), and none of the SMS came again.
    copies = [s for s in seen + rest if s == "m-outage0000"]
    assert 1 <= len(copies) <= 12
    assert set(rest) <= {"m-outage0000"}
    assert server.app[JOURNAL].is_empty


async def test_a_full_spool_publishes_directly_while_the_broker_takes_events(
    proxied: Callable[..., Settings],
    broker_proxy: BrokerProxy,
    make_receiver: MakeReceiver,
    serve_operations: ServeOperations,
    callback_client: aiohttp.ClientSession,
    event_queues: OpenQueues,
) -> None:
    settings = proxied(spool_max_bytes=20_000, drain_retry_max_s=0.3)
    await broker_proxy.cut()
    server = await make_receiver(settings)
    ops = await serve_operations(server)
    answers = [await post(callback_client, server, n) for n in range(25)]
    accepted = [n for n, (status, _) in enumerate(answers) if status == 200]
    assert 0 < len(accepted) < 25
    first = segments(settings.receiver.spool_dir)[0]
    hidden = first.with_name("hidden")
    first.rename(hidden)
    first.mkdir()  # the drain cannot read: the spool stays full while RabbitMQ is back

    await broker_proxy.restore()
    await stalled(server)
    _, report = await readiness(callback_client, ops)
    assert report["spool"]["state"] == "nearly-full"
    assert await post(callback_client, server, 100) == (200, "published")
    queues = await event_queues(settings)
    assert [subject(m) for m in await queues.take(queues.inbound, 1)] == expected(range(100, 101))

    first.rmdir()
    hidden.rename(first)
    drained = [subject(m) for m in await queues.take(queues.inbound, len(accepted))]
    assert drained == [expected(range(n, n + 1))[0] for n in accepted]
    assert await queues.count(queues.inbound) == 0


async def test_a_receiver_killed_with_events_in_its_spool_drains_them_after_a_restart(
    proxied: Callable[..., Settings],
    broker_proxy: BrokerProxy,
    make_receiver: MakeReceiver,
    callback_client: aiohttp.ClientSession,
    event_queues: OpenQueues,
) -> None:
    settings = proxied()
    queues = await event_queues(settings)
    await broker_proxy.cut()
    env = {
        **{k: v for k, v in os.environ.items() if not k.upper().startswith("BRIDGE_")},
        "BRIDGE_BROKER__URL": settings.broker.url.get_secret_value(),
        "BRIDGE_BROKER__EVENTS_EXCHANGE": settings.broker.events_exchange,
        "BRIDGE_BROKER__DEAD_LETTER_EXCHANGE": settings.broker.dead_letter_exchange,
        "BRIDGE_BROKER__INBOUND_QUEUE": settings.broker.inbound_queue,
        "BRIDGE_BROKER__STATUS_QUEUE": settings.broker.status_queue,
        "BRIDGE_BROKER__SEND_QUEUE": settings.broker.send_queue,
        "BRIDGE_BROKER__IMPORT_QUEUE": settings.broker.import_queue,
        "BRIDGE_BROKER__CONNECT_TIMEOUT_S": "1",
        "BRIDGE_RECEIVER__HOST": "127.0.0.1",
        "BRIDGE_RECEIVER__PORT": "0",
        "BRIDGE_RECEIVER__USERNAME": CREDENTIALS["username"],
        "BRIDGE_RECEIVER__PASSWORD": CREDENTIALS["password"],
        "BRIDGE_RECEIVER__SPOOL_DIR": str(settings.receiver.spool_dir),
        "BRIDGE_OPERATIONS__PORT": "0",
        "BRIDGE_SIMULATOR__PORT": "0",
    }
    process = await asyncio.create_subprocess_exec(
        sys.executable,
        "-m",
        "bridge.cli",
        "run",
        "--role",
        "receiver",
        env=env,
        stderr=asyncio.subprocess.PIPE,
    )
    assert process.stderr is not None
    try:
        async with asyncio.timeout(30):
            while b"receiver listening on " not in (line := await process.stderr.readline()):
                assert line, "the receiver exited before it listened"
        url = line.decode().split("receiver listening on ", 1)[1].strip()
        for n in range(30):
            async with callback_client.post(url, json=inbound(n), headers=AUTH_HEADERS) as answer:
                assert (answer.status, (await answer.json())["status"]) == (200, "spooled")
        process.send_signal(signal.SIGKILL)  # no shutdown at all: the spool is as it was
        async with asyncio.timeout(DEADLINE_S):
            await process.wait()
    finally:
        if process.returncode is None:
            process.kill()
            await process.wait()

    await broker_proxy.restore()
    await make_receiver(settings)  # the same spool directory, its lock released by the kill
    assert [subject(m) for m in await queues.take(queues.inbound, 30)] == expected(range(30))
    assert await queues.count(queues.inbound) == 0


async def test_a_damaged_record_is_kept_aside_counted_and_drained_past(
    make_settings: Callable[..., Settings],
    make_receiver: MakeReceiver,
    serve_operations: ServeOperations,
    callback_client: aiohttp.ClientSession,
    event_queues: OpenQueues,
) -> None:
    settings = make_settings(receiver=CREDENTIALS)
    spool = settings.receiver.spool_dir
    journal = await Journal.open(spool, max_bytes=settings.receiver.spool_max_bytes)
    for n in range(3):
        await journal.append(event(n))
    await journal.close()
    (segment,) = segments(spool)
    data = bytearray(segment.read_bytes())
    second = data.index(b"\n") + 1
    data[second + 30] ^= 0x01  # a bit flips inside the second record
    segment.write_bytes(bytes(data))
    damaged_line = bytes(data[second : data.index(b"\n", second)])

    server = await make_receiver(settings)
    ops = await serve_operations(server)
    queues = await event_queues(settings)
    assert [subject(m) for m in await queues.take(queues.inbound, 2)] == [
        "m-outage0000",
        "m-outage0002",
    ]
    async with asyncio.timeout(DEADLINE_S):
        await server.app[JOURNAL].wait_empty()
    assert (spool / DAMAGED_FILE).read_bytes() == damaged_line + b"\n"  # as it was on disk
    assert await metric(callback_client, ops, "bridge_receiver_spool_damaged_records") == 1.0
    assert await queues.count(queues.inbound) == 0


def event(n: int) -> Envelope:
    return Envelope(
        body=orjson.dumps({"subject": f"m-outage{n:04d}"}),
        routing_key=INBOUND_SMS,
        message_id=f"event-{n}",
        type="t",
    )

"""Broker outages: every callback answered 200 is spooled, then drained in order, none lost.

The receiver reaches RabbitMQ through a TCP proxy the test cuts and restores (the real broker,
which other tests use, stays up). Reconnection is quick: ``broker.reconnect_delay_s`` is 0.05 s
(0.2 s at most) and ``receiver.retry_interval_s`` 0.1 s. Waiting is always on the queue, with a
deadline.
"""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable
from typing import Any

import aiohttp
import orjson
import pytest
from aio_pika.abc import AbstractRobustConnection

from bridge.broker import Envelope, Topology, declare_topology
from bridge.broker.topology import INBOUND_SMS
from bridge.operations import OperationsServer
from bridge.receiver import ReceiverServer
from bridge.receiver.segments import decode_record
from bridge.receiver.spool import REJECTED_FILE, Journal
from bridge.settings import Settings
from tests.fixtures.receiver import (
    AUTH_HEADERS,
    CREDENTIALS,
    BrokerProxy,
    EventQueues,
    MakeReceiver,
    ServeOperations,
)

pytestmark = pytest.mark.fault

OpenQueues = Callable[[Settings], Awaitable[EventQueues]]


def inbound(n: int, *, kind: str = "sms") -> dict[str, Any]:
    return {
        "eventType": kind,
        "direction": "in",
        "messageId": f"m-outage{n:04d}",
        "from": "+13233326955",
        "to": "+13865245000",
        "text": f"message {n}",
        "time": "2026-01-01T00:00:00Z",
        "state": "received",
        **({"media": ["https://x.test/a.gif"]} if kind == "mms" else {}),
    }


async def post(
    client: aiohttp.ClientSession, server: ReceiverServer, n: int, *, kind: str = "sms"
) -> tuple[int, str]:
    fields = inbound(n, kind=kind)
    async with client.post(server.callback_url, json=fields, headers=AUTH_HEADERS) as response:
        body = orjson.loads(await response.read())
        return response.status, body["status"] if response.status == 200 else body["type"]


async def readiness(client: aiohttp.ClientSession, ops: OperationsServer) -> tuple[int, Any]:
    """The operations server's /readyz: its status and the receiver's report."""
    async with client.get(ops.base_url + "/readyz") as response:
        return response.status, (await response.json())["receiver"]


def subjects(messages: list[Any]) -> list[str]:
    return [orjson.loads(m.body)["subject"] for m in messages]


def expected(numbers: range) -> list[str]:
    return [f"m-outage{n:04d}" for n in numbers]


async def test_broker_down_at_start_spools_then_drains_in_order(
    proxied: Callable[..., Settings],
    broker_proxy: BrokerProxy,
    make_receiver: MakeReceiver,
    serve_operations: ServeOperations,
    callback_client: aiohttp.ClientSession,
    event_queues: OpenQueues,
) -> None:
    settings = proxied()
    await broker_proxy.cut()
    server = await make_receiver(settings)  # starts and serves although RabbitMQ is unreachable
    ops = await serve_operations(server)
    status, report = await readiness(callback_client, ops)
    assert status == 503
    assert report["broker"] == "connecting"

    answers = [await post(callback_client, server, n) for n in range(20)]
    assert answers == [(200, "spooled")] * 20
    _, report = await readiness(callback_client, ops)
    assert report["spool"]["records"] == 20

    await broker_proxy.restore()
    queues = await event_queues(settings)
    assert subjects(await queues.take(queues.inbound, 20)) == expected(range(20))
    status, report = await readiness(callback_client, ops)
    assert (status, report["broker"]) == (200, "ready")


async def test_connection_cut_while_callbacks_arrive(
    proxied: Callable[..., Settings],
    broker_proxy: BrokerProxy,
    make_receiver: MakeReceiver,
    serve_operations: ServeOperations,
    callback_client: aiohttp.ClientSession,
    event_queues: OpenQueues,
) -> None:
    settings = proxied()
    server = await make_receiver(settings)
    ops = await serve_operations(server)
    queues = await event_queues(settings)
    assert [await post(callback_client, server, n) for n in range(3)] == [(200, "published")] * 3

    await broker_proxy.cut()
    during = [await post(callback_client, server, n) for n in range(3, 30)]
    assert {status for status, _ in during} == {200}
    assert {outcome for _, outcome in during} == {"spooled"}

    await broker_proxy.restore()
    assert subjects(await queues.take(queues.inbound, 30)) == expected(range(30))
    assert (await post(callback_client, server, 30))[0] == 200
    assert subjects(await queues.take(queues.inbound, 1)) == expected(range(30, 31))
    assert await queues.count(queues.inbound) == 0
    async with callback_client.get(ops.base_url + "/metrics") as response:
        metrics = await response.text()
    assert 'bridge_receiver_callbacks_total{outcome="spooled"} 27.0' in metrics
    assert "bridge_receiver_spool_drained_total 27.0" in metrics


async def test_spool_survives_a_receiver_restart(
    proxied: Callable[..., Settings],
    broker_proxy: BrokerProxy,
    make_receiver: MakeReceiver,
    callback_client: aiohttp.ClientSession,
    event_queues: OpenQueues,
) -> None:
    settings = proxied()
    first = await make_receiver(settings)
    assert (await post(callback_client, first, 0)) == (200, "published")
    await broker_proxy.cut()
    assert [await post(callback_client, first, n) for n in range(1, 15)] == [(200, "spooled")] * 14
    await first.stop()

    await broker_proxy.restore()
    second = await make_receiver(settings)  # same spool directory: drains what the first left
    assert (await post(callback_client, second, 15))[0] == 200
    queues = await event_queues(settings)
    assert subjects(await queues.take(queues.inbound, 16)) == expected(range(16))
    assert await queues.count(queues.inbound) == 0


async def test_in_flight_callbacks_finish_at_shutdown_and_are_drained_after(
    proxied: Callable[..., Settings],
    broker_proxy: BrokerProxy,
    make_settings: Callable[..., Settings],
    amqp_url: str,
    make_receiver: MakeReceiver,
    callback_client: aiohttp.ClientSession,
    event_queues: OpenQueues,
) -> None:
    settings = proxied()
    server = await make_receiver(settings)
    assert (await post(callback_client, server, 0)) == (200, "published")

    broker_proxy.pause()  # publishes go out but no confirm comes back
    in_flight = [asyncio.create_task(post(callback_client, server, n)) for n in range(1, 6)]
    await broker_proxy.held.wait()
    await server.stop()  # stops accepting, waits for the five, closes the broker link
    assert [await task for task in in_flight] == [(200, "spooled")] * 5
    await broker_proxy.cut()  # what the proxy held never reaches the broker

    direct = make_settings(
        broker={"url": amqp_url},
        receiver={**CREDENTIALS, "spool_dir": str(settings.receiver.spool_dir)},
    )
    await make_receiver(direct)
    queues = await event_queues(settings)
    drained = subjects(await queues.take(queues.inbound, 6))
    assert drained[0] == "m-outage0000"
    assert sorted(drained[1:]) == expected(range(1, 6))
    assert await queues.count(queues.inbound) == 0


async def test_without_spool_an_outage_is_answered_503(
    proxied: Callable[..., Settings],
    broker_proxy: BrokerProxy,
    make_receiver: MakeReceiver,
    serve_operations: ServeOperations,
    callback_client: aiohttp.ClientSession,
    event_queues: OpenQueues,
) -> None:
    settings = proxied(spool_enabled=False)
    server = await make_receiver(settings)
    ops = await serve_operations(server)
    assert (await post(callback_client, server, 0)) == (200, "published")
    await broker_proxy.cut()
    status, kind = await post(callback_client, server, 1)
    assert (status, kind) == (503, "urn:catapult-bridge:problem:unavailable")
    status, report = await readiness(callback_client, ops)
    assert status == 503
    assert report["spool"] == {"enabled": False}
    await broker_proxy.restore()
    queues = await event_queues(settings)
    assert subjects(await queues.take(queues.inbound, 1)) == expected(range(1))
    assert await queues.count(queues.inbound) == 0


async def test_a_full_spool_answers_503(
    proxied: Callable[..., Settings],
    broker_proxy: BrokerProxy,
    make_receiver: MakeReceiver,
    serve_operations: ServeOperations,
    callback_client: aiohttp.ClientSession,
    event_queues: OpenQueues,
) -> None:
    # Room for about 15 events of some 1.3 kB: when one more does not fit, over 90 % is used.
    settings = proxied(spool_max_bytes=20_000)
    await broker_proxy.cut()
    server = await make_receiver(settings)
    ops = await serve_operations(server)
    answers = [await post(callback_client, server, n) for n in range(25)]
    accepted = [n for n, (status, _) in enumerate(answers) if status == 200]
    refused = [kind for status, kind in answers if status == 503]
    assert accepted == list(range(len(accepted)))
    assert 0 < len(accepted) < 25
    assert set(refused) == {"urn:catapult-bridge:problem:spool-full"}
    status, report = await readiness(callback_client, ops)
    assert status == 503
    assert report["spool"]["state"] == "nearly-full"

    await broker_proxy.restore()
    queues = await event_queues(settings)
    assert subjects(await queues.take(queues.inbound, len(accepted))) == expected(
        range(len(accepted))
    )
    assert await queues.count(queues.inbound) == 0


async def test_an_unroutable_event_is_spooled_and_published_once_the_queue_is_back(
    make_settings: Callable[..., Settings],
    amqp: AbstractRobustConnection,
    make_receiver: MakeReceiver,
    callback_client: aiohttp.ClientSession,
    event_queues: OpenQueues,
) -> None:
    settings = make_settings(receiver={**CREDENTIALS, "retry_interval_s": 0.1})
    server = await make_receiver(settings)
    channel = await amqp.channel()
    await channel.queue_delete(settings.broker.inbound_queue)  # no queue for inbound.* any more
    await channel.close()
    assert (await post(callback_client, server, 0)) == (200, "spooled")  # returned: mandatory
    # The queue comes back (the worker, an operator, or the drainer's own redeclaration).
    channel = await amqp.channel()
    await declare_topology(channel, Topology.from_settings(settings))
    await channel.close()
    queues = await event_queues(settings)
    assert subjects(await queues.take(queues.inbound, 1)) == expected(range(1))


async def test_no_accepted_callback_can_stop_the_drain(
    proxied: Callable[..., Settings],
    broker_proxy: BrokerProxy,
    make_receiver: MakeReceiver,
    callback_client: aiohttp.ClientSession,
    event_queues: OpenQueues,
) -> None:
    # Every callback answered 200 during an outage must be publishable once the broker is back:
    # one the broker could never take would hold every event spooled behind it for good.
    settings = proxied()
    await broker_proxy.cut()
    server = await make_receiver(settings)
    long_id_tag = {**inbound(1), "tag": "cbr1:" + "x" * 300}
    before_1970 = {**inbound(2), "time": "1969-07-20T20:17:40Z"}
    statuses = []
    for fields in (inbound(0), long_id_tag, before_1970, inbound(3)):
        async with callback_client.post(
            server.callback_url, json=fields, headers=AUTH_HEADERS
        ) as response:
            statuses.append(response.status)
    assert statuses == [200, 200, 400, 200]

    await broker_proxy.restore()
    queues = await event_queues(settings)
    drained = await queues.take(queues.inbound, 3)
    assert subjects(drained) == ["m-outage0000", "m-outage0001", "m-outage0003"]
    assert orjson.loads(drained[1].body)["data"]["tag"] == long_id_tag["tag"]


async def test_an_event_the_broker_can_never_take_is_set_aside_not_retried(
    make_settings: Callable[..., Settings],
    make_receiver: MakeReceiver,
    event_queues: OpenQueues,
) -> None:
    # A spool left by an earlier version: between two good events, one whose correlation id is
    # longer than AMQP allows, so no broker can ever take it.
    settings = make_settings(receiver=CREDENTIALS)
    spool_dir = settings.receiver.spool_dir
    journal = await Journal.open(spool_dir, max_bytes=settings.receiver.spool_max_bytes)

    def event(n: int, correlation_id: str | None = None) -> Envelope:
        body = orjson.dumps({"subject": f"m-outage{n:04d}"})
        return Envelope(
            body=body,
            routing_key=INBOUND_SMS,
            message_id=f"event-{n}",
            type="t",
            correlation_id=correlation_id,
        )

    for envelope in (event(0), event(1, correlation_id="c" * 300), event(2)):
        await journal.append(envelope)
    await journal.close()

    await make_receiver(settings)
    queues = await event_queues(settings)

    assert subjects(await queues.take(queues.inbound, 2)) == ["m-outage0000", "m-outage0002"]
    rejected = (spool_dir / REJECTED_FILE).read_bytes().splitlines()
    assert [decode_record(line).message_id for line in rejected] == ["event-1"]
    assert await queues.count(queues.inbound) == 0

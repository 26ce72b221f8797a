"""The shared broker plumbing against the real RabbitMQ: topology and confirmed publishing."""

from __future__ import annotations

import asyncio
import subprocess
import sys
from datetime import UTC, datetime
from typing import Any

import aiormq
import pytest
from aio_pika.abc import AbstractRobustConnection

from bridge.broker import (
    Envelope,
    Publisher,
    PublishFailed,
    Topology,
    declare_topology,
    open_confirm_channel,
)
from bridge.broker.errors import ChannelFailed, translated
from bridge.broker.topology import INBOUND_MMS, INBOUND_SMS, route_declarations
from tests.fixtures.broker import delete_topology


@pytest.mark.parametrize("queue_type", ["quorum", "classic"])
async def test_topology_is_idempotent_and_routes(
    amqp: AbstractRobustConnection, make_settings: Any, queue_type: str
) -> None:
    settings = make_settings(broker={"queue_type": queue_type})
    topology = Topology.from_settings(settings)
    channel = await open_confirm_channel(amqp)
    await declare_topology(channel, topology)
    await declare_topology(channel, topology)  # twice: no PRECONDITION_FAILED

    publisher = Publisher(await channel.get_underlay_channel(), confirm_timeout_s=3)
    for key in (INBOUND_SMS, INBOUND_MMS):
        await publisher.publish(
            Envelope(body=b"{}", routing_key=key, message_id=f"id-{key}", type="t"),
            exchange=topology.events_exchange,
        )
    queue = await channel.get_queue(topology.inbound_queue, ensure=False)
    received = [await queue.get(timeout=5), await queue.get(timeout=5)]
    assert [m.message_id for m in received] == [f"id-{INBOUND_SMS}", f"id-{INBOUND_MMS}"]
    assert all(m.delivery_mode == 2 for m in received)
    await channel.close()


async def test_unroutable_publish_fails(amqp: AbstractRobustConnection, make_settings: Any) -> None:
    topology = Topology.from_settings(make_settings())
    channel = await open_confirm_channel(amqp)
    await declare_topology(channel, topology)
    publisher = Publisher(await channel.get_underlay_channel(), confirm_timeout_s=3)
    envelope = Envelope(
        body=b"{}",
        routing_key="nowhere.at.all",
        message_id="x",
        type="t",
        timestamp=datetime.now(UTC),
    )
    with pytest.raises(PublishFailed) as caught:
        await publisher.publish(envelope, exchange=topology.events_exchange)
    assert caught.value.reason == "unroutable"
    await channel.close()


async def test_test_teardown_deletes_everything_the_topology_declares(
    amqp: AbstractRobustConnection, make_settings: Any
) -> None:
    """Queues a test leaves behind are never reclaimed, and every quorum queue holds file
    handles of the shared broker: the teardown must delete the whole declared topology."""
    topology = Topology.from_settings(make_settings())
    channel = await open_confirm_channel(amqp)
    await declare_topology(channel, topology)
    await channel.close()
    await delete_topology(amqp, topology)
    plan = topology.declarations()
    left = []
    for name in [q.name for q in plan.queues] + [e.name for e in plan.exchanges]:
        probe = await amqp.channel()
        try:
            if name in {e.name for e in plan.exchanges}:
                await probe.get_exchange(name, ensure=True)
            else:
                await probe.declare_queue(name, passive=True)
            left.append(name)
        except aiormq.exceptions.ChannelNotFoundEntity:
            pass
        finally:
            if not probe.is_closed:
                await probe.close()
    assert left == []


def test_retry_tier_picks_the_next_tier_up(make_settings: Any) -> None:
    topology = Topology.from_settings(make_settings(worker={"retry_delays_s": [1, 5, 30]}))
    assert [topology.retry_tier(d) for d in (0.2, 1, 2, 29, 31)] == [1, 1, 5, 30, 30]
    assert topology.retry_queue(topology.send_queue, 5).endswith(".outbound.sms.retry.5s")


@pytest.mark.parametrize(
    ("exchange", "key", "exchanges", "queues"),
    [
        ("events", "result.send.succeeded", ["events"], ["{p}outbound.sms.results"]),
        ("events", "result.import.failed", ["events"], ["{p}outbound.import.results"]),
        ("dead", "{p}outbound.sms.dead", ["dead"], ["{p}outbound.sms.dead"]),
        ("", "{p}outbound.sms.retry.5s", [], ["{p}outbound.sms.retry.5s"]),
        ("", "someones-reply-queue", [], []),
        ("elsewhere", "result.send.succeeded", [], []),
    ],
)
def test_a_route_declares_its_exchange_queues_and_bindings(
    make_settings: Any, exchange: str, key: str, exchanges: list[str], queues: list[str]
) -> None:
    """What a commit publishing on a route has declared first (``committer.py``)."""
    topology = Topology.from_settings(make_settings(worker={"retry_delays_s": [1, 5, 30]}))
    names = {"events": topology.events_exchange, "dead": topology.dead_letter_exchange}
    prefix = topology.send_queue.removesuffix("outbound.sms")
    plan = route_declarations(topology, names.get(exchange, exchange), key.format(p=prefix))
    assert [e.name for e in plan.exchanges] == [names[e] for e in exchanges]
    assert [q.name for q in plan.queues] == [q.format(p=prefix) for q in queues]
    assert [b.queue for b in plan.bindings] == ([q.name for q in plan.queues] if exchanges else [])


def test_the_pure_layer_imports_no_amqp_client() -> None:
    """Events and messages are data: building one must not load the client that sends it."""
    pure = [
        "bridge.events.envelope",
        "bridge.events.cloudevents",
        "bridge.events.receiver_events",
        "bridge.events.commands",
        "bridge.events.results",
        "bridge.events.callbacks",
    ]
    code = (
        f"import sys; import {', '.join(pure)}; "
        "print(sorted({m.split('.')[0] for m in sys.modules} & {'aio_pika', 'aiormq'}))"
    )
    run = subprocess.run(  # noqa: S603 - our own interpreter and a fixed program
        [sys.executable, "-c", code], capture_output=True, text=True, timeout=60, check=True
    )
    assert run.stdout.strip() == "[]"


async def test_a_call_whose_connection_closes_under_it_fails_as_a_channel_failure(
    amqp_url: str,
) -> None:
    # aiormq cancels the calls in flight on a connection it closes: before, they raised
    # CancelledError in a task nobody cancelled (a worker's stop raised it and ended half way).
    connection = await aiormq.connect(amqp_url)
    channel = await connection.channel()

    async def declare() -> None:
        with translated("declaring a queue"):
            await channel.queue_declare("", exclusive=True)

    call = asyncio.create_task(declare())
    await asyncio.sleep(0)  # the call is on its way
    await connection.close()
    with pytest.raises(ChannelFailed, match="closed under it") as failed:
        await call
    assert failed.value.reason == "disconnected"


async def test_a_task_cancelled_in_a_broker_call_is_still_cancelled(amqp_url: str) -> None:
    connection = await aiormq.connect(amqp_url)
    try:
        channel = await connection.channel()

        async def declare() -> None:
            with translated("declaring a queue"):
                await channel.queue_declare("", exclusive=True)

        call = asyncio.create_task(declare())
        await asyncio.sleep(0)
        call.cancel()
        with pytest.raises(asyncio.CancelledError):
            await call
    finally:
        await connection.close()

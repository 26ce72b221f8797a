"""``BrokerLink`` and its intakes against the real RabbitMQ, through a proxy the test can cut.

What a role builds on: deliveries of a lost session are stale and cannot be settled; a paused
intake takes nothing, across reconnects too, until it is resumed; consuming starts again by
itself on every new session.
"""

from __future__ import annotations

import asyncio
import uuid
from collections.abc import AsyncIterator, Callable
from typing import Any

import aio_pika
import pytest
from aio_pika.abc import AbstractRobustConnection

from bridge.broker import BrokerLink, Inbound
from bridge.broker.intake import settle
from bridge.settings import Settings
from tests.fixtures.broker import link_log
from tests.fixtures.receiver import BrokerProxy


class Received:
    """Deliveries handed to the intake's callback, taken with a deadline."""

    def __init__(self) -> None:
        self.queue: asyncio.Queue[Inbound] = asyncio.Queue()

    async def on_message(self, message: Inbound) -> None:
        await self.queue.put(message)

    async def take(self, count: int = 1, *, timeout_s: float = 5.0) -> list[Inbound]:
        async with asyncio.timeout(timeout_s):
            return [await self.queue.get() for _ in range(count)]


@pytest.fixture
async def link(
    make_settings: Callable[..., Settings], broker_proxy: BrokerProxy
) -> AsyncIterator[BrokerLink]:
    settings = make_settings(
        broker={
            "url": broker_proxy.url(),
            "reconnect_delay_s": 0.05,
            "reconnect_max_delay_s": 0.2,
            "connect_timeout_s": 1.0,
        }
    )
    link = BrokerLink(settings, name="catapult-bridge test")
    yield link
    await link.close()


async def publish(amqp: AbstractRobustConnection, queue: str, count: int) -> None:
    channel = await amqp.channel(publisher_confirms=True)
    for _ in range(count):
        await channel.default_exchange.publish(
            aio_pika.Message(b"{}", message_id=uuid.uuid4().hex), routing_key=queue
        )
    await channel.close()


async def consumers_of(amqp: AbstractRobustConnection, queue: str) -> int:
    channel = await amqp.channel()
    try:
        declared = await channel.declare_queue(queue, passive=True)
        return int(declared.declaration_result.consumer_count or 0)
    finally:
        await channel.close()


async def lose_the_session(link: BrokerLink, proxy: BrokerProxy) -> None:
    """Cut the proxy, wait until the link knows, restore it, wait until it is ready again."""
    with link_log() as log:
        await proxy.cut()
        await log.wait_for("lost the connection")
        assert not link.is_ready
        await proxy.restore()
    async with asyncio.timeout(10):
        await link.wait_ready()


async def test_a_delivery_of_a_lost_session_is_stale_and_cannot_be_settled(
    link: BrokerLink, broker_proxy: BrokerProxy, amqp: AbstractRobustConnection
) -> None:
    received = Received()
    queue = link.topology.send_queue
    await link.consume(queue, prefetch=10, on_message=received.on_message)
    await link.start()
    await publish(amqp, queue, 1)
    [held] = await received.take()
    assert not held.is_stale

    await lose_the_session(link, broker_proxy)
    assert held.is_stale
    assert not await settle(held, ack=True)  # nothing to settle it on
    [again] = await received.take()  # consumed again on the new session: the broker redelivers
    assert again.redelivered
    assert again.message_id == held.message_id
    assert await settle(again, ack=True)


async def test_a_paused_intake_takes_nothing_until_resumed_across_a_reconnect(
    link: BrokerLink, broker_proxy: BrokerProxy, amqp: AbstractRobustConnection
) -> None:
    received = Received()
    queue = link.topology.send_queue
    intake = await link.consume(queue, prefetch=10, on_message=received.on_message)
    await link.start()
    assert intake.is_consuming
    assert await consumers_of(amqp, queue) == 1

    await intake.pause()
    assert not intake.is_consuming
    assert await consumers_of(amqp, queue) == 0
    await publish(amqp, queue, 3)
    await lose_the_session(link, broker_proxy)
    assert await consumers_of(amqp, queue) == 0  # still paused on the new session
    assert received.queue.empty()

    await intake.resume()
    assert intake.is_consuming
    taken = await received.take(3)
    for message in taken:
        assert await settle(message, ack=True)
    assert await consumers_of(amqp, queue) == 1


async def test_an_intake_registered_while_the_link_is_up_consumes_at_once(
    link: BrokerLink, amqp: AbstractRobustConnection
) -> None:
    await link.start()
    received = Received()
    queue = link.topology.import_queue
    intake = await link.consume(queue, prefetch=1, on_message=received.on_message)
    assert intake.is_consuming
    await publish(amqp, queue, 1)
    [message] = await received.take()
    assert await settle(message, ack=True)
    await intake.close()
    assert await consumers_of(amqp, queue) == 0
    assert link.is_ready  # closing an intake on purpose ends no session


def test_the_link_shows_its_address_masked(make_settings: Callable[..., Any]) -> None:
    settings = make_settings(broker={"url": "amqp://app:s3cret-pw@rabbit.example:5672/vhost"})
    link = BrokerLink(settings, name="catapult-bridge test")
    assert "s3cret-pw" not in link.address
    assert link.address.startswith("amqp://app:***@rabbit.example:5672/vhost")


async def test_consumer_counts_and_a_consumer_for_one_session_only(
    link: BrokerLink, broker_proxy: BrokerProxy
) -> None:
    await link.start()
    queue, missing = link.topology.send_queue, f"t-missing-{uuid.uuid4().hex[:10]}"
    assert await link.consumer_counts([missing, queue]) == {missing: None, queue: 0}
    assert link.is_ready  # the missing queue closed a channel of its own, not the session

    received = Received()
    intake = await link.consume(queue, prefetch=1, on_message=received.on_message, once=True)
    assert await link.consumer_counts([queue]) == {queue: 1}
    await lose_the_session(link, broker_proxy)
    assert not intake.is_consuming  # not attached to the new session
    assert await link.consumer_counts([queue]) == {queue: 0}


async def test_an_intake_closed_while_a_session_attaches_leaves_no_other_unattached(
    link: BrokerLink, amqp: AbstractRobustConnection
) -> None:
    # Before, the session walked its attachments by index: one closed meanwhile (a shard given
    # up as the link came back) shifted the rest, and the next one was not attached at all.
    first = await link.consume(
        link.topology.send_queue, prefetch=1, on_message=Received().on_message
    )

    async def close_the_first(_session: object) -> None:
        await first.close()

    link.attach(close_the_first)
    received = Received()
    queue = link.topology.import_queue
    after = await link.consume(queue, prefetch=1, on_message=received.on_message)
    await link.start()
    async with asyncio.timeout(5):
        await link.wait_ready()
    assert after.is_consuming
    assert await consumers_of(amqp, queue) == 1

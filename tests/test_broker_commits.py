"""What one commit of a transactional intake acks: exactly its own deliveries, never one held.

A commit acks a run of its deliveries with one ``basic.ack(multiple=True)``, which acks every
delivery of the channel up to that tag still unacked. So a delivery held while later ones are
acked, or nacked in the same commit, must stay out of it. Against the real RabbitMQ: a delivery
acked by mistake cannot be acked again (the broker closes the channel: "unknown delivery tag"),
and a delivery left unacked by mistake keeps its prefetch slot, so the next deliveries never come.
"""

from __future__ import annotations

import asyncio
import uuid
from collections.abc import AsyncIterator, Callable, Sequence

import aio_pika
import pytest
from aio_pika.abc import AbstractRobustConnection

from bridge.broker import BrokerLink, Inbound
from bridge.broker.committer import SettledTags
from bridge.broker.intake import settle
from bridge.settings import Settings

PREFETCH = 4


class Received:
    def __init__(self) -> None:
        self.queue: asyncio.Queue[Inbound] = asyncio.Queue()

    async def on_message(self, message: Inbound) -> None:
        await self.queue.put(message)

    async def take(self, count: int, *, timeout_s: float = 5.0) -> list[Inbound]:
        async with asyncio.timeout(timeout_s):
            return [await self.queue.get() for _ in range(count)]


@pytest.fixture
async def link(make_settings: Callable[..., Settings]) -> AsyncIterator[BrokerLink]:
    link = BrokerLink(make_settings(), name="catapult-bridge test")
    yield link
    await link.close()


async def publish(amqp: AbstractRobustConnection, queue: str, count: int) -> None:
    channel = await amqp.channel(publisher_confirms=True)
    for _ in range(count):
        await channel.default_exchange.publish(
            aio_pika.Message(b"{}", message_id=uuid.uuid4().hex), routing_key=queue
        )
    await channel.close()


async def one_commit(settles: Sequence[tuple[Inbound, bool]]) -> list[bool]:
    """Settle these together: queued in one step, they go out in one commit."""
    return list(await asyncio.gather(*(settle(m, ack=ack) for m, ack in settles)))


async def test_a_commit_acks_its_deliveries_and_leaves_a_held_one_and_a_nacked_one(
    link: BrokerLink, amqp: AbstractRobustConnection
) -> None:
    received = Received()
    queue = link.topology.send_queue
    await link.consume(queue, prefetch=PREFETCH, on_message=received.on_message, transactional=True)
    await link.start()

    await publish(amqp, queue, PREFETCH)
    first, second, held, fourth = await received.take(PREFETCH)
    assert await one_commit([(first, True), (second, True), (fourth, True)]) == [True] * 3
    # Not acked with the others: acking it now is no "unknown delivery tag" (the channel lives).
    assert await settle(held, ack=True)
    assert not held.is_stale

    # Every slot of the prefetch is free again, or these would not all come.
    await publish(amqp, queue, PREFETCH)
    fifth, nacked, seventh, eighth = await received.take(PREFETCH)
    oks = await one_commit([(fifth, True), (nacked, False), (seventh, True), (eighth, True)])
    assert oks == [True] * 4
    [again] = await received.take(1)  # the nacked one, and only it, comes back
    assert (again.message_id, again.redelivered) == (nacked.message_id, True)
    assert await settle(again, ack=True)

    await publish(amqp, queue, PREFETCH)
    rest = await received.take(PREFETCH)
    assert await one_commit([(m, True) for m in rest]) == [True] * PREFETCH
    assert received.queue.empty()


@pytest.mark.parametrize(
    ("settled", "acks", "up_to"),
    [
        ([], [1, 2, 3], 3),
        ([], [2, 3], 0),  # 1 is still held: nothing may be acked as a range
        ([], [1, 2, 4], 2),  # 3 held (or nacked in this commit): the range ends before it
        ([1, 3], [2, 4], 4),  # 1 and 3 settled before: the range runs through them
        ([2], [1, 3, 5], 3),
        ([1, 2], [3], 3),
        ([1, 2], [5, 6], 0),  # 3 and 4 never seen here: a gap ends the range
    ],
)
def test_a_multiple_ack_reaches_only_over_settled_or_acked_tags(
    settled: list[int], acks: list[int], up_to: int
) -> None:
    tags = SettledTags()
    tags.settle(settled)
    assert tags.multiple_up_to(set(acks)) == up_to


def test_past_its_limit_of_tags_above_a_held_one_it_acks_one_by_one() -> None:
    tags = SettledTags(limit=3)
    tags.settle([2, 3, 4])  # 1 held
    assert tags.multiple_up_to({1, 5}) == 5
    tags.settle([5])  # a fourth above the held one: memory would grow with what is held
    assert tags.multiple_up_to({1, 6}) == 0
    tags.settle([1, 6])
    assert tags.multiple_up_to({7, 8}) == 0

"""Consuming a queue, and settling its deliveries: the AMQP half of taking work in.

An ``Intake`` consumes one queue on a channel of its own with a bounded prefetch, so the broker
never hands a consumer more than it can hold, and hands each delivery to a callback. ``ack`` and
``nack`` tell the broker what became of a delivery; what that is, is decided by the caller (the
worker settles in exactly one place, ``worker.consumer.CommandConsumer.settle``). Every failure
here is a ``ChannelFailed`` (``errors.py``).
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Awaitable, Callable

import aiormq
from aio_pika.abc import (
    AbstractChannel,
    AbstractIncomingMessage,
    AbstractQueue,
    AbstractRobustConnection,
    ConsumerTag,
)

from bridge.broker.errors import ChannelFailed, translated

log = logging.getLogger(__name__)

# One delivery as a consumer sees it: body, properties (``message_id``, ``headers``, ...),
# ``redelivered``. Code outside this package names it only by this alias.
Inbound = AbstractIncomingMessage
OnMessage = Callable[[Inbound], Awaitable[None]]
# A broker that stopped answering must not hold a shutdown.
CLOSE_TIMEOUT_S = 5.0


class Intake:
    """One queue consumed on one channel; ``cancel`` stops deliveries, ``close`` the channel."""

    def __init__(self, channel: AbstractChannel, queue: AbstractQueue, tag: ConsumerTag) -> None:
        self._channel = channel
        self._queue = queue
        self._tag: ConsumerTag | None = tag

    @classmethod
    async def open(
        cls,
        connection: AbstractRobustConnection,
        *,
        queue: str,
        prefetch: int,
        on_message: OnMessage,
        transactional: bool = False,
    ) -> Intake:
        """``transactional``: a channel without publisher confirms (a channel cannot have both),
        for a consumer that settles in AMQP transactions on it (``tx.select`` is the caller's)."""
        with translated(f"consuming {queue}"):
            channel = await connection.channel(publisher_confirms=not transactional)
            await channel.set_qos(prefetch_count=prefetch)
            amqp_queue = await channel.get_queue(queue, ensure=False)
            tag = await amqp_queue.consume(on_message)
        return cls(channel, amqp_queue, tag)

    @property
    def queue(self) -> str:
        return self._queue.name

    @property
    def channel(self) -> AbstractChannel:
        return self._channel

    @property
    def consumer_tag(self) -> ConsumerTag | None:
        return self._tag

    async def cancel(self) -> None:
        """Stop intake: the broker sends no more deliveries (those held stay unacked)."""
        tag, self._tag = self._tag, None
        if tag is None:
            return
        try:
            with translated(f"cancelling the consumer of {self.queue}"):
                async with asyncio.timeout(CLOSE_TIMEOUT_S):
                    await self._queue.cancel(tag)
        except ChannelFailed as exc:
            log.warning("%s", exc)

    async def close(self) -> None:
        if self._channel.is_closed:
            return
        try:
            with translated(f"closing the channel of {self.queue}"):
                async with asyncio.timeout(CLOSE_TIMEOUT_S):
                    await self._channel.close()
        except ChannelFailed as exc:
            log.debug("%s", exc)


def is_stale(message: Inbound) -> bool:
    """Its channel is gone: it can no longer be settled, and the broker will deliver it again."""
    try:
        return bool(message.channel.is_closed)
    except aiormq.exceptions.ChannelInvalidStateError:
        return True  # aio-pika's answer for a closed channel: it raises instead of saying so


async def ack(message: Inbound) -> None:
    """Ack one delivery; ``ChannelFailed`` when its channel is gone (the broker redelivers it)."""
    with translated("ack"):
        await message.ack()


async def nack(message: Inbound, *, requeue: bool = True) -> None:
    """Nack one delivery; ``ChannelFailed`` when its channel is gone (the broker redelivers it)."""
    with translated("nack"):
        await message.nack(requeue=requeue)


__all__ = ["Inbound", "Intake", "OnMessage", "ack", "is_stale", "nack"]

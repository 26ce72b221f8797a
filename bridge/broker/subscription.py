"""Reading events and queues for the command line: a queue of one's own, or a named one.

``subscribe`` declares an exclusive, auto-delete queue named by the broker, binds it to the
events exchange with the given patterns and consumes it: it sees copies of the events and takes
nothing from the queues applications consume; it disappears with the connection. ``read_queue``
consumes a named queue (for ``bridge tail --from-queue`` and ``bridge dlq``). Either way the
deliveries come through a ``Subscription``, at most ``prefetch`` of them unacked, and what is not
acked goes back to its queue when the subscription closes. Failures are ``ChannelFailed``.
"""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import Iterable
from typing import Any

from aiormq.abc import AbstractChannel, DeliveredMessage

from bridge.broker.errors import AMQP_FAILURES, ChannelFailed, translated
from bridge.broker.intake import Inbound, settle
from bridge.broker.link import CLOSE_TIMEOUT_S, Session


class Subscription:
    """Deliveries of one queue on a channel of its own; ``next`` hands them over in order."""

    def __init__(self, session: Session, channel: AbstractChannel, queue: str) -> None:
        self.queue = queue
        self._session = session
        self._channel = channel
        self._deliveries: asyncio.Queue[Inbound] = asyncio.Queue()
        self._consumer_tag: str | None = None

    async def _consume(self, *, prefetch: int) -> None:
        async def deliver(message: DeliveredMessage) -> None:
            self._deliveries.put_nowait(Inbound(message))

        with translated(f"consuming {self.queue}"):
            await self._channel.basic_qos(prefetch_count=prefetch)
            ok = await self._channel.basic_consume(self.queue, deliver, no_ack=False)
        self._consumer_tag = ok.consumer_tag

    async def next(self, timeout_s: float | None = None) -> Inbound:
        """The next delivery; ``TimeoutError`` after ``timeout_s``, ``ChannelFailed`` when the
        connection or the channel closed meanwhile."""
        if not self._deliveries.empty():
            return self._deliveries.get_nowait()
        taking: asyncio.Future[Any] = asyncio.ensure_future(self._deliveries.get())
        ended: asyncio.Future[Any] = self._session.ended
        try:
            done, _ = await asyncio.wait(
                {taking, ended},
                timeout=timeout_s,
                return_when=asyncio.FIRST_COMPLETED,
            )
        finally:
            if not taking.done():
                taking.cancel()
        if taking in done:
            delivery: Inbound = taking.result()
            return delivery
        if self._session.ended.done():
            raise ChannelFailed(
                "disconnected", f"reading {self.queue}: {self._session.ended.result()}"
            )
        raise TimeoutError

    @property
    def waiting(self) -> int:
        """Deliveries received and not handed over yet."""
        return self._deliveries.qsize()

    async def ack(self, message: Inbound) -> None:
        if not await settle(message, ack=True):
            raise ChannelFailed("disconnected", f"acknowledging a message of {self.queue}")

    async def close(self) -> None:
        """Cancel the consumer and close the channel: whatever was not acked goes back."""
        self._session.release(self._channel)
        if self._channel.is_closed:
            return
        with contextlib.suppress(*AMQP_FAILURES):
            async with asyncio.timeout(CLOSE_TIMEOUT_S):
                await self._channel.close()


async def subscribe(
    session: Session, *, exchange: str, patterns: Iterable[str], prefetch: int = 200
) -> Subscription:
    """A queue of its own, bound to ``exchange`` with each of ``patterns``, consumed."""
    channel = await session.open_channel("a subscription")
    with translated(f"declaring a queue bound to {exchange}"):
        ok = await channel.queue_declare("", exclusive=True, auto_delete=True)
        queue = str(ok.queue)
        for pattern in patterns:
            await channel.queue_bind(queue, exchange, routing_key=pattern)
    subscription = Subscription(session, channel, queue)
    await subscription._consume(prefetch=prefetch)
    return subscription


async def read_queue(session: Session, queue: str, *, prefetch: int = 200) -> Subscription:
    """Consume the existing ``queue`` (``ChannelFailed`` "refused" when there is none)."""
    channel = await session.open_channel(f"reading {queue}", watched=False)
    subscription = Subscription(session, channel, queue)
    await subscription._consume(prefetch=prefetch)
    return subscription


async def queue_depth(session: Session, queue: str) -> int | None:
    """Messages ready in ``queue`` now; None when there is no such queue."""
    channel = await session.open_channel(f"declaring {queue} passively", watched=False)
    try:
        with translated(f"declaring {queue} passively"):
            ok = await channel.queue_declare(queue, passive=True)
        return int(ok.message_count or 0)
    except ChannelFailed as exc:
        if exc.reason == "refused":
            return None
        raise
    finally:
        if not channel.is_closed:
            with contextlib.suppress(*AMQP_FAILURES):
                async with asyncio.timeout(CLOSE_TIMEOUT_S):
                    await channel.close()


__all__ = ["Subscription", "queue_depth", "read_queue", "subscribe"]

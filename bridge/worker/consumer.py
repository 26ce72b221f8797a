"""The AMQP side of the worker: consuming the command queues, and ``settle``, the only ack.

Each command queue is consumed on its own channel with a bounded prefetch (sends:
``worker.send_prefetch``, enough for every call slot to carry a full batch; imports:
``worker.number_concurrency``), so the broker never hands the worker more than it can hold: memory
does not grow with the length of a queue. Deliveries are handed to a callback; what happens to
each one in the end is decided elsewhere (``settlement.Planner``) and carried out here, by
``settle``, which is the one function that acks or nacks a command:

    Finish     result published and confirmed (and to ``reply_to``), dead letter published and
               confirmed for failures, then ack
    Republish  the copy published to its delay tier and confirmed, then ack
    GiveBack   nack with requeue

When the broker does not confirm (unreachable, refused, timed out) nothing is acked: the delivery
is nacked back (or, with the channel gone, the broker redelivers it anyway), and the redelivery is
looked up before anything is sent again.
"""

from __future__ import annotations

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

from bridge.broker import DeclaredExchanges, Publisher, PublishFailed
from bridge.worker.metrics import WorkerMetrics
from bridge.worker.settlement import Disposition, Finish, GiveBack, Republish

log = logging.getLogger(__name__)

OnMessage = Callable[[AbstractIncomingMessage], Awaitable[None]]


class CommandConsumer:
    def __init__(
        self,
        *,
        publisher: Publisher,
        exchanges: DeclaredExchanges,
        metrics: WorkerMetrics,
    ) -> None:
        self._publisher = publisher
        self._exchanges = exchanges
        self._metrics = metrics
        self._channels: list[AbstractChannel] = []
        self._consumers: list[tuple[AbstractQueue, ConsumerTag]] = []

    async def consume(
        self,
        connection: AbstractRobustConnection,
        *,
        queue: str,
        prefetch: int,
        on_message: OnMessage,
    ) -> None:
        """Start consuming ``queue`` on a channel of its own, ``prefetch`` unacked at most."""
        channel = await connection.channel()
        self._channels.append(channel)
        await channel.set_qos(prefetch_count=prefetch)
        amqp_queue = await channel.get_queue(queue, ensure=False)
        tag = await amqp_queue.consume(on_message)
        self._consumers.append((amqp_queue, tag))

    async def cancel(self) -> None:
        """Stop intake: the broker sends no more deliveries (those held stay unacked)."""
        consumers, self._consumers = self._consumers, []
        for queue, tag in consumers:
            try:
                await queue.cancel(tag)
            except (aiormq.exceptions.AMQPError, ConnectionError, RuntimeError) as exc:
                log.warning("could not cancel the consumer of %s: %r", queue.name, exc)

    async def close(self) -> None:
        channels, self._channels = self._channels, []
        for channel in channels:
            if not channel.is_closed:
                try:
                    await channel.close()
                except (aiormq.exceptions.AMQPError, ConnectionError, RuntimeError) as exc:
                    log.debug("closing a consumer channel failed: %r", exc)

    async def settle(
        self, message: AbstractIncomingMessage, disposition: Disposition, *, command_id: str
    ) -> bool:
        """Carry out ``disposition`` for ``message``; the only place a command is acked.

        Returns True when the message was acked (its disposition done), False when it went back.
        """
        ids = {"command_id": command_id, "message_id": message.message_id}
        try:
            match disposition:
                case Finish():
                    await self._publish_finish(disposition, ids)
                case Republish(queue=queue, envelope=envelope):
                    await self._publisher.publish(
                        self._exchanges.default, envelope, routing_key=queue
                    )
                case GiveBack():
                    await self._nack(message, ids)
                    return False
        except PublishFailed as exc:
            self._metrics.settle_failures.inc()
            log.warning(
                "command %s not settled (%s): giving it back to the broker",
                command_id,
                exc.reason,
                extra=ids,
            )
            await self._nack(message, ids)
            return False
        try:
            await message.ack()
        except (aiormq.exceptions.AMQPError, ConnectionError, RuntimeError) as exc:
            # The channel is gone: the broker redelivers the message, and its redelivery is
            # looked up before anything is sent again.
            self._metrics.settle_failures.inc()
            log.warning("ack of command %s failed: %r", command_id, exc, extra=ids)
            return False
        return True

    async def _publish_finish(self, finish: Finish, ids: dict[str, str | None]) -> None:
        await self._publisher.publish(self._exchanges.events, finish.result)
        if finish.dead_letter is not None:
            await self._publisher.publish(self._exchanges.dead_letter, finish.dead_letter)
        if not finish.reply_to:
            return
        try:
            await self._publisher.publish(
                self._exchanges.default, finish.result, routing_key=finish.reply_to
            )
        except PublishFailed as exc:
            # The result is on the events exchange already; a missing reply queue is the
            # application's to fix, and must not hold the command back.
            log.warning(
                "result of command %s not delivered to reply_to %r (%s)",
                ids["command_id"],
                finish.reply_to,
                exc.reason,
                extra=ids,
            )

    async def _nack(self, message: AbstractIncomingMessage, ids: dict[str, str | None]) -> None:
        self._metrics.given_back.inc()
        try:
            await message.nack(requeue=True)
        except (aiormq.exceptions.AMQPError, ConnectionError, RuntimeError) as exc:
            log.debug("nack of command %s failed (%r): the broker redelivers it", ids, exc)


__all__ = ["CommandConsumer", "OnMessage"]

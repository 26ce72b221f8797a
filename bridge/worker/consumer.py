"""The AMQP side of the worker: consuming the command queues, and ``settle``, the only ack.

Each command queue is consumed on its own channel with a bounded prefetch (sends:
``worker.send_prefetch``, enough for every call slot to carry a full batch; imports:
``worker.number_concurrency``), so the broker never hands the worker more than it can hold: memory
does not grow with the length of a queue. The intakes consume on every connection of the link: a
reconnect consumes again, and ``pause``/``resume`` stop and restart intake across reconnects.
Deliveries are handed to a callback; what happens to each one in the end is decided elsewhere
(``settlement.Planner``) and carried out here, by ``settle``, which is the one function that acks
or nacks a command:

    Finish     result published and confirmed (and to ``reply_to``), dead letter published and
               confirmed for failures, then ack
    Republish  the copy published to its delay tier and the ack, in one transaction
    GiveBack   nack with requeue

When the broker does not confirm (unreachable, refused, timed out) nothing is acked: the delivery
is nacked back (or, with the channel gone, the broker redelivers it anyway), and the redelivery is
looked up before anything is sent again. A result or dead letter that no queue takes (someone
deleted it) is not given back, which would bring the command straight back to fail the same way:
the link declares the topology again and the publish is tried again (``_publish_routed``).

A copy and the ack of its original must never be separated, so every command channel is
transactional and every settle of it is committed by its channel's committer
(``bridge.broker.committer``, which also declares a copy's queue right before the commit).
Results and dead letters still go through the confirm channel before their ack: a kill between
the two gives a second result with the same event id, which consumers drop.
"""

from __future__ import annotations

import logging
from collections.abc import Collection

from bridge.broker import BrokerLink, Envelope, Inbound, Intake, OnMessage, PublishFailed
from bridge.broker.committer import DEFAULT_EXCHANGE
from bridge.broker.intake import settle as settle_delivery
from bridge.worker.metrics import WorkerMetrics
from bridge.worker.settlement import Disposition, Finish, GiveBack, Republish

log = logging.getLogger(__name__)


class CommandConsumer:
    def __init__(self, *, link: BrokerLink, metrics: WorkerMetrics) -> None:
        self._link = link
        self._metrics = metrics
        self._intakes: list[Intake] = []

    async def consume(self, *, queue: str, prefetch: int, on_message: OnMessage) -> None:
        """Consume ``queue`` on a transactional channel of its own, ``prefetch`` unacked at most.

        On every connection of the link: after a reconnect the queue is consumed again.
        """
        self._intakes.append(
            await self._link.consume(
                queue, prefetch=prefetch, on_message=on_message, transactional=True
            )
        )

    @property
    def is_consuming(self) -> bool:
        """Every queue consumed (connected, and intake not paused)."""
        return bool(self._intakes) and all(intake.is_consuming for intake in self._intakes)

    @property
    def is_paused(self) -> bool:
        return any(intake.is_paused for intake in self._intakes)

    async def pause(self, queues: Collection[str] | None = None) -> None:
        """Stop intake (of ``queues``, else of all) until ``resume``, across reconnects too;
        deliveries held stay unacked."""
        for intake in self._intakes:
            if queues is None or intake.queue in queues:
                await intake.pause()

    async def resume(self, queues: Collection[str] | None = None) -> None:
        for intake in self._intakes:
            if queues is None or intake.queue in queues:
                await intake.resume()

    async def cancel(self) -> None:
        """Stop intake for the shutdown: the broker sends no more deliveries."""
        await self.pause()

    async def close(self) -> None:
        intakes, self._intakes = self._intakes, []
        for intake in intakes:
            await intake.close()

    async def settle(self, message: Inbound, disposition: Disposition, *, command_id: str) -> bool:
        """Carry out ``disposition`` for ``message``; the only place a command is acked.

        Returns True when the message was acked (its disposition done), False when it went back.
        """
        ids = {"command_id": command_id, "message_id": message.message_id}
        try:
            match disposition:
                case Finish():
                    await self._publish_finish(message, disposition, ids)
                case Republish(queue=queue, envelope=envelope):
                    if await settle_delivery(message, ack=True, copy=(queue, envelope)):
                        return True
                    self._metrics.settle_failures.inc()
                    log.warning(
                        "copy of command %s not committed: the broker delivers it again",
                        command_id,
                        extra=ids,
                    )
                    return False
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
        if not await settle_delivery(message, ack=True):
            # The channel is gone: the broker redelivers the message, and its redelivery is
            # looked up before anything is sent again.
            self._metrics.settle_failures.inc()
            log.warning(
                "ack of command %s failed: the broker delivers it again", command_id, extra=ids
            )
            return False
        return True

    async def _publish_finish(
        self, message: Inbound, finish: Finish, ids: dict[str, str | None]
    ) -> None:
        await self._publish_routed(message, finish.result, ids=ids)
        if finish.dead_letter is not None:
            await self._publish_routed(
                message,
                finish.dead_letter,
                exchange=self._link.topology.dead_letter_exchange,
                ids=ids,
            )
        if not finish.reply_to:
            return
        try:
            await self._link.publish(
                finish.result, exchange=DEFAULT_EXCHANGE, routing_key=finish.reply_to
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

    async def _publish_routed(
        self,
        message: Inbound,
        envelope: Envelope,
        *,
        exchange: str | None = None,
        ids: dict[str, str | None],
    ) -> None:
        """Publish; while no queue is bound for it, the topology is declared again and it is
        tried again, for as long as ``message`` can still be settled.

        A queue the worker publishes into was deleted: giving the command back would bring it
        straight back, looked up at Catapult, to fail the same way, in a loop. The link paces
        the declarations (one for every settle waiting, pauses growing while the queue cannot
        come back), so this waits rather than spins, holding the command unacked (the prefetch
        bounds how many). Any other failure raises at once.
        """
        while True:
            try:
                await self._link.publish(envelope, exchange=exchange)
                return
            except PublishFailed as exc:
                if exc.reason != "unroutable" or message.is_stale:
                    raise
                log.debug(
                    "command %s: %s; waiting for the topology to be declared again",
                    ids["command_id"],
                    exc,
                    extra=ids,
                )
                await self._link.redeclare()

    async def _nack(self, message: Inbound, ids: dict[str, str | None]) -> None:
        self._metrics.given_back.inc()
        if not await settle_delivery(message, ack=False):
            log.debug("nack of command %s failed: the broker redelivers it", ids)


__all__ = ["CommandConsumer", "OnMessage"]

"""The AMQP side of the worker: consuming the command queues, and ``settle``, the only ack.

Each command queue is consumed on its own channel with a bounded prefetch (sends:
``worker.send_prefetch``, enough for every call slot to carry a full batch; imports:
``worker.number_concurrency``), so the broker never hands the worker more than it can hold: memory
does not grow with the length of a queue. The intakes consume on every connection of the link: a
reconnect consumes again, and ``pause``/``resume`` stop and restart intake across reconnects.
Deliveries are handed to a callback; what happens to each one in the end is decided elsewhere
(``settlement.Planner``) and carried out here, by ``settle``, which is the one function that acks
or nacks a command:

    Finish     the result event (and its copy to ``reply_to``), the dead letter for failures,
               and the ack, in one transaction
    Republish  the copy published to its delay tier and the ack, in one transaction
    GiveBack   nack with requeue

Nothing the worker publishes for a command can be separated from the command's ack: every command
channel is transactional and every settle of it is committed by its channel's committer
(``bridge.broker.committer``, which has the link declare each route a commit publishes to right
before it). A process killed at any moment leaves either all of a settle or none of it: no result
without its ack (a second result when the command came back), no copy beside its original. A
commit that fails has no effect and gives the delivery back to the broker, and a
redelivered send is looked up before anything is sent again. A route that cannot be declared
(someone deleted a queue and holds its name) holds the commit, not the command's end: it is not
given back, which would bring it straight back to fail the same way, in a loop.
"""

from __future__ import annotations

import logging
from collections.abc import Collection

from bridge.broker import BrokerLink, Inbound, Intake, OnMessage
from bridge.broker.committer import DEFAULT_EXCHANGE, Outgoing
from bridge.broker.intake import settle as settle_delivery
from bridge.worker.metrics import WorkerMetrics
from bridge.worker.settlement import Disposition, Finish, GiveBack, Republish

log = logging.getLogger(__name__)

# AMQP's limit on a routing key (a ``shortstr``); a longer ``reply_to`` cannot be published to.
MAX_ROUTING_KEY_BYTES = 255


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
        match disposition:
            case GiveBack():
                await self._nack(message, ids)
                return False
            case Republish(queue=queue, envelope=envelope):
                publishes = [Outgoing(envelope, DEFAULT_EXCHANGE, queue)]
                what = "copy"
            case Finish():
                publishes = self._finish_publishes(disposition, ids)
                what = "result"
        if await settle_delivery(message, ack=True, publishes=publishes):
            return True
        # Nothing of it took effect: the broker delivers the message again, and a redelivered
        # send is looked up before anything is sent again.
        self._metrics.settle_failures.inc()
        log.warning(
            "%s of command %s not committed: the broker delivers it again",
            what,
            command_id,
            extra=ids,
        )
        return False

    def _finish_publishes(self, finish: Finish, ids: dict[str, str | None]) -> list[Outgoing]:
        """The result (and its copy to ``reply_to``) and the dead letter, for one transaction."""
        topology = self._link.topology
        result = finish.result
        publishes = [Outgoing(result, topology.events_exchange, result.routing_key)]
        if finish.dead_letter is not None:
            dead = finish.dead_letter
            publishes.append(Outgoing(dead, topology.dead_letter_exchange, dead.routing_key))
        reply_to = finish.reply_to
        if reply_to and len(reply_to.encode()) <= MAX_ROUTING_KEY_BYTES:
            # Not part of the topology, so not declared: a reply queue that is not there drops
            # the copy (the result is on the events exchange all the same).
            publishes.append(Outgoing(result, DEFAULT_EXCHANGE, reply_to, declared=False))
        elif reply_to:
            log.warning(
                "result of command %s not sent to reply_to: longer than %d bytes",
                ids["command_id"],
                MAX_ROUTING_KEY_BYTES,
                extra=ids,
            )
        return publishes

    async def _nack(self, message: Inbound, ids: dict[str, str | None]) -> None:
        self._metrics.given_back.inc()
        if not await settle_delivery(message, ack=False):
            log.debug("nack of command %s failed: the broker redelivers it", ids)


__all__ = ["CommandConsumer", "OnMessage"]

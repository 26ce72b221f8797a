"""The AMQP side of the worker: consuming the command queues, and ``settle``, the only ack.

Each command queue is consumed on its own channel with a bounded prefetch (sends:
``worker.send_prefetch``, enough for every call slot to carry a full batch; imports:
``worker.number_concurrency``), so the broker never hands the worker more than it can hold: memory
does not grow with the length of a queue. Deliveries are handed to a callback; what happens to
each one in the end is decided elsewhere (``settlement.Planner``) and carried out here, by
``settle``, which is the one function that acks or nacks a command:

    Finish     result published and confirmed (and to ``reply_to``), dead letter published and
               confirmed for failures, then ack
    Republish  the copy published to its delay tier and the ack, in one transaction
    GiveBack   nack with requeue

When the broker does not confirm (unreachable, refused, timed out) nothing is acked: the delivery
is nacked back (or, with the channel gone, the broker redelivers it anyway), and the redelivery is
looked up before anything is sent again.

A copy and the ack of its original must never be separated: a worker killed after the copy was
stored and before the ack took effect left both, and the original came back (looked up, found
nothing, sent) while the copy later went out again. So each command channel is transactional
(``tx.select``): the copy is published on that channel and the original acked, and neither takes
effect before ``tx.commit`` (RabbitMQ applies a transaction's publishes and acks at the commit, and
a channel that dies before it applies none). Acks and nacks on such a channel are transactional
too, so every settle goes through the channel's ``Committer``, which commits what has gathered
in one ``tx.commit`` (group commit: one round trip for many settles under load).

Inside a transaction RabbitMQ routes the publishes at the commit, in the same step as the acks: a
copy to a queue that no longer exists (an operator deleted a delay tier) is dropped while its
original's ack takes effect, and the ``basic.return`` of a mandatory publish comes only then (and
aiormq does not hand returns of a channel without confirms to its caller). So just before
``tx.commit`` the committer declares each queue the commit's copies go to, with the arguments of
the one topology: a no-op when the queue is there, the queue again when it was deleted. What is
left is a queue deleted in the instant between that declaration and the commit. Results and
dead letters still go through the confirm channel before their ack: a kill between the two gives
a second result with the same event id, which consumers drop.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

from aio_pika.abc import AbstractChannel

from bridge.broker import (
    BrokerLink,
    ChannelFailed,
    Envelope,
    Inbound,
    Intake,
    OnMessage,
    PublishFailed,
)
from bridge.broker.errors import translated
from bridge.worker.metrics import WorkerMetrics
from bridge.worker.settlement import Disposition, Finish, GiveBack, Republish

log = logging.getLogger(__name__)

# The default exchange: its routing keys are queue names (retry tiers, reply_to queues).
DEFAULT_EXCHANGE = ""


@dataclass(slots=True)
class _Settle:
    message: Inbound
    ack: bool  # else nack with requeue
    copy: tuple[str, Envelope] | None  # (queue, envelope) published with it
    done: asyncio.Future[bool] = field(
        default_factory=lambda: asyncio.get_running_loop().create_future()
    )


class Committer:
    """Every ack, nack and copy of one transactional channel, committed together.

    ``settle`` queues one and waits for the commit that carries it: True once committed, False
    when the channel failed first (nothing of it took effect; the broker delivers the message
    again). One commit runs at a time; what arrives meanwhile goes into the next.

    ``queue_arguments``: every queue a copy may go to, with its declared arguments (the
    topology's): each is declared again before a commit publishes a copy to it.
    """

    def __init__(
        self,
        channel: AbstractChannel,
        *,
        timeout_s: float,
        queue_arguments: Mapping[str, Mapping[str, Any]],
    ) -> None:
        self._channel = channel
        self._timeout_s = timeout_s
        self._queue_arguments = queue_arguments
        self._pending: list[_Settle] = []
        self._running: asyncio.Task[None] | None = None
        # The underlying channel in transaction mode: a reconnected robust channel is a new one,
        # selected again before its first commit.
        self._selected: object | None = None

    async def settle(
        self, message: Inbound, *, ack: bool, copy: tuple[str, Envelope] | None = None
    ) -> bool:
        item = _Settle(message, ack, copy)
        self._pending.append(item)
        if self._running is None or self._running.done():
            self._running = asyncio.get_running_loop().create_task(self._run())
        return await asyncio.shield(item.done)

    async def _run(self) -> None:
        while self._pending:
            batch, self._pending = self._pending, []
            try:
                async with asyncio.timeout(self._timeout_s):
                    batch = await self._commit(batch)
            except (TimeoutError, ChannelFailed) as exc:
                log.warning("commit of %d settles failed: %s", len(batch), exc)
                ok = False
            else:
                ok = True
            for item in batch:
                if not item.done.done():
                    item.done.set_result(ok)

    async def _commit(self, batch: list[_Settle]) -> list[_Settle]:
        """Publish, ack and nack what ``batch`` holds, and commit; return what it carried."""
        with translated("committing settles"):
            channel = await self._channel.get_underlay_channel()
            if self._selected is not channel:
                await channel.tx_select()
                self._selected = channel
            live = []
            for item in batch:
                if item.message.channel is not channel:
                    # Delivered on a channel that is gone: it cannot be settled any more, and
                    # the broker delivers it again.
                    item.done.set_result(False)
                else:
                    live.append(item)
            for item in live:
                if item.copy is not None:
                    queue, envelope = item.copy
                    await channel.basic_publish(
                        envelope.body,
                        exchange=DEFAULT_EXCHANGE,
                        routing_key=queue,
                        properties=envelope.to_properties(),
                    )
                if item.ack:
                    await item.message.ack()
                else:
                    await item.message.nack(requeue=True)
            for queue in dict.fromkeys(i.copy[0] for i in live if i.copy is not None):
                # There when the commit routes the copies (see the module docstring); not part
                # of the transaction, and a no-op for a queue that is there.
                await channel.queue_declare(
                    queue, durable=True, arguments=dict(self._queue_arguments[queue])
                )
            await channel.tx_commit()
        return live


class CommandConsumer:
    def __init__(
        self, *, link: BrokerLink, metrics: WorkerMetrics, commit_timeout_s: float
    ) -> None:
        self._link = link
        self._metrics = metrics
        self._commit_timeout_s = commit_timeout_s
        self._intakes: list[Intake] = []
        self._committers: dict[str, Committer] = {}
        self._copy_queues = {q.name: q.arguments for q in link.topology.declarations().queues}

    async def consume(self, *, queue: str, prefetch: int, on_message: OnMessage) -> None:
        """Start consuming ``queue`` on a transactional channel of its own, ``prefetch`` unacked
        at most."""
        intake = await self._link.consume(
            queue, prefetch=prefetch, on_message=on_message, transactional=True
        )
        self._intakes.append(intake)
        # A robust queue consumes again under the same tag after a reconnection.
        self._committers[intake.consumer_tag or ""] = Committer(
            intake.channel,
            timeout_s=self._commit_timeout_s,
            queue_arguments=self._copy_queues,
        )

    async def cancel(self) -> None:
        """Stop intake: the broker sends no more deliveries (those held stay unacked)."""
        for intake in self._intakes:
            await intake.cancel()

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
                    await self._publish_finish(disposition, ids)
                case Republish(queue=queue, envelope=envelope):
                    committer = self._committer(message)
                    if await committer.settle(message, ack=True, copy=(queue, envelope)):
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
        if not await self._committer(message).settle(message, ack=True):
            # The channel is gone: the broker redelivers the message, and its redelivery is
            # looked up before anything is sent again.
            self._metrics.settle_failures.inc()
            log.warning(
                "ack of command %s failed: the broker delivers it again", command_id, extra=ids
            )
            return False
        return True

    def _committer(self, message: Inbound) -> Committer:
        return self._committers[message.consumer_tag or ""]

    async def _publish_finish(self, finish: Finish, ids: dict[str, str | None]) -> None:
        await self._link.publish(finish.result)
        if finish.dead_letter is not None:
            await self._link.publish(
                finish.dead_letter, exchange=self._link.topology.dead_letter_exchange
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

    async def _nack(self, message: Inbound, ids: dict[str, str | None]) -> None:
        self._metrics.given_back.inc()
        if not await self._committer(message).settle(message, ack=False):
            log.debug("nack of command %s failed: the broker redelivers it", ids)


__all__ = ["CommandConsumer", "Committer", "OnMessage"]

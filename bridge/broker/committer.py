"""``Committer``: the acks, nacks and copies of one transactional channel, committed together.

A copy republished for a delivery (to a delay tier) and the ack of that delivery must never be
separated: a process killed after the copy was stored and before the ack took effect left both,
and the original came back (looked up, found nothing, sent) while the copy later went out again.
So a consumer channel can be transactional (``tx.select``, done by its ``Intake`` on every
session): the copy is published on that channel and the delivery acked, and neither takes effect
before ``tx.commit`` (RabbitMQ applies a transaction's publishes and acks at the commit, and a
channel that dies before it applies none). Acks and nacks on such a channel are transactional
too, so every settle of it goes through its committer, which commits what has gathered in one
``tx.commit`` (group commit: one round trip for many settles under load).

Inside a transaction RabbitMQ routes the publishes at the commit, in the same step as the acks: a
copy to a queue that no longer exists (an operator deleted a delay tier) would be dropped while
its original's ack takes effect, and the ``basic.return`` of a mandatory publish comes only then
(aiormq hands returns of a channel without confirms to nobody). So just before ``tx.commit`` the
committer declares each queue the commit's copies go to, with the arguments of the one topology:
a no-op when the queue is there, the queue again when it was deleted. What is left is a queue
deleted in the instant between that declaration and the commit.

One committer per channel: a new session's channel has a new one, and a delivery of a lost
channel cannot be settled any more (its settle answers False; the broker delivers it again).
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

from aiormq.abc import AbstractChannel

from bridge.broker.errors import ChannelFailed, translated
from bridge.events.envelope import Envelope

log = logging.getLogger(__name__)

# The default exchange: its routing keys are queue names.
DEFAULT_EXCHANGE = ""


@dataclass(slots=True)
class _Settle:
    delivery_tag: int
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

    async def settle(
        self, delivery_tag: int, *, ack: bool, copy: tuple[str, Envelope] | None = None
    ) -> bool:
        if self._channel.is_closed:
            return False
        item = _Settle(delivery_tag, ack, copy)
        self._pending.append(item)
        if self._running is None or self._running.done():
            self._running = asyncio.get_running_loop().create_task(self._run())
        return await asyncio.shield(item.done)

    async def _run(self) -> None:
        while self._pending:
            batch, self._pending = self._pending, []
            try:
                async with asyncio.timeout(self._timeout_s):
                    await self._commit(batch)
            except (TimeoutError, ChannelFailed) as exc:
                log.warning("commit of %d settles failed: %s", len(batch), exc)
                ok = False
            except Exception:  # a bug must not leave the settles waiting for ever
                log.exception("commit of %d settles failed", len(batch))
                ok = False
            else:
                ok = True
            for item in batch:
                if not item.done.done():
                    item.done.set_result(ok)

    async def _commit(self, batch: list[_Settle]) -> None:
        """Publish, ack and nack what ``batch`` holds, and commit."""
        channel = self._channel
        with translated("committing settles"):
            for item in batch:
                if item.copy is not None:
                    queue, envelope = item.copy
                    await channel.basic_publish(
                        envelope.body,
                        exchange=DEFAULT_EXCHANGE,
                        routing_key=queue,
                        properties=envelope.to_properties(),
                    )
                if item.ack:
                    await channel.basic_ack(item.delivery_tag)
                else:
                    await channel.basic_nack(item.delivery_tag, requeue=True)
            for queue in dict.fromkeys(i.copy[0] for i in batch if i.copy is not None):
                # There when the commit routes the copies (see the module docstring); not part
                # of the transaction, and a no-op for a queue that is there.
                arguments = self._queue_arguments.get(queue)
                if arguments is not None:
                    await channel.queue_declare(queue, durable=True, arguments=dict(arguments))
            await channel.tx_commit()


__all__ = ["DEFAULT_EXCHANGE", "Committer"]

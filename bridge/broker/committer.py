"""``Committer``: the acks, nacks and publishes of one transactional channel, committed together.

What the worker publishes for a delivery (a copy to a delay tier; or the command's result, its
dead letter, its reply) and the ack of that delivery must never be separated: a process killed
after the copy was stored and before the ack took effect left both, and the original came back
(looked up, found nothing, sent) while the copy later went out again; killed between a result and
its ack, the command came back and ended a second time. So every consumer channel of the worker is
transactional (``tx.select``, done by its ``Intake`` on every session): the publishes go out on
that channel and the delivery is acked, and none of it takes effect before ``tx.commit``
(RabbitMQ applies a transaction's publishes and acks at the commit, and a channel that dies
before it applies none). Acks and nacks on such a channel are transactional too, so every settle
of it goes through its committer, which commits what has gathered in one ``tx.commit`` (group
commit: one round trip for many settles under load). A commit that fails with the channel still
open is rolled back (or, if that fails too, the channel is closed), so nothing of it is carried
into the next commit.

Inside a transaction RabbitMQ routes the publishes at the commit, in the same step as the acks: a
publish to a queue that no longer exists (an operator deleted a delay tier or the results queue)
would be dropped while its original's ack takes effect, and the ``basic.return`` of a mandatory
publish comes only then (aiormq hands returns of a channel without confirms to nobody). So just
before ``tx.commit`` the committer has the link declare every route the commit publishes to (the
exchange, the queues bound for the routing key, the bindings, with the arguments of the one
topology), on a side channel of the link: a no-op when all is there, the queue again when it was
deleted, and a refused declaration closes that side channel, never this one. While a route cannot
be declared, the commit waits, the link declaring the whole topology again at a growing pace
(``BrokerLink.redeclare``): nothing is given back to come straight back in a loop. What is left is
a queue deleted in the instant between the declaration and the commit.

One committer per channel: a new session's channel has a new one, and a delivery of a lost
channel cannot be settled any more (its settle answers False; the broker delivers it again).

What a commit writes costs the worker more than anything else it does per command (a socket write
per frame set), so a commit writes as little as it can. Its publishes and acks are handed to
aiormq's writer without waiting for each to drain: nothing of them takes effect before the
commit, which waits for the broker's answer, and a commit holds at most what the prefetch lets
the channel hold; the last settle of a commit waits for the transport to drain below its
high-water mark, so a slow broker slows the worker down instead of filling its memory. And the
acks of a commit become one ``basic.ack(multiple=True)`` as far as AMQP allows: a multiple ack of
tag N acks every delivery up to N still unacked on the channel, so it stands only for the run of
tags from the lowest unsettled one that are all acked in this commit (``SettledTags``); a
delivery still held, nacked, or never seen here ends the run, and the acks past it go one by one.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import Awaitable, Callable, Collection, Iterable, Sequence
from dataclasses import dataclass, field

import aiormq
from aiormq.abc import AbstractChannel

from bridge.broker.errors import AMQP_FAILURES, ChannelFailed, translated
from bridge.events.envelope import Envelope

log = logging.getLogger(__name__)

# The default exchange: its routing keys are queue names.
DEFAULT_EXCHANGE = ""
# A broker that stopped answering must not hold a rollback or a close.
_CLEANUP_TIMEOUT_S = 5.0

Route = tuple[str, str]  # (exchange, routing key)
DeclareRoutes = Callable[[Collection[Route]], Awaitable[None]]
Redeclare = Callable[[], Awaitable[bool]]


@dataclass(frozen=True, slots=True)
class Outgoing:
    """One message published in a settle's transaction.

    ``declared``: its route belongs to the topology and is declared before the commit; a route
    outside it (an application's ``reply_to`` queue) is published to as it is.
    """

    envelope: Envelope
    exchange: str
    routing_key: str
    declared: bool = True


@dataclass(slots=True)
class _Settle:
    delivery_tag: int
    ack: bool  # else nack with requeue
    publishes: Sequence[Outgoing]
    done: asyncio.Future[bool] = field(
        default_factory=lambda: asyncio.get_running_loop().create_future()
    )


class SettledTags:
    """The delivery tags of one channel settled so far: how far one multiple ack may reach.

    A channel's delivery tags are consecutive from 1. Kept as a floor (every tag up to it is
    settled) and the settled tags above it, which a delivery held long keeps from joining the
    floor; past ``limit`` of those, tracking stops for the channel and its acks go one by one
    (memory stays bounded whatever a caller holds). No I/O here.
    """

    def __init__(self, *, limit: int = 65_536) -> None:
        self._floor = 0
        self._above: set[int] = set()
        self._limit = limit
        self._tracking = True

    def multiple_up_to(self, acks: Collection[int]) -> int:
        """The highest tag one ``multiple`` ack may carry for ``acks`` (0: none).

        It covers the tags from the floor up that are each settled already or in ``acks``, and
        ends at the last of them in ``acks``; the first tag that is neither ends it.
        """
        if not self._tracking:
            return 0
        tag, last, above = self._floor + 1, 0, self._above
        while True:
            if tag in acks:
                last = tag
            elif tag not in above:
                return last
            tag += 1

    def settle(self, tags: Iterable[int]) -> None:
        """``tags`` are settled (their commit took effect)."""
        if not self._tracking:
            return
        floor, above = self._floor, self._above
        above.update(t for t in tags if t > floor)
        while floor + 1 in above:
            floor += 1
            above.remove(floor)
        self._floor = floor
        if len(above) > self._limit:
            log.debug("%d settled deliveries above one still held: acking one by one", len(above))
            self._tracking = False
            above.clear()


class Committer:
    """Every ack, nack and publish of one transactional channel, committed together.

    ``settle`` queues one and waits for the commit that carries it: True once committed, False
    when the channel failed first or the commit failed (nothing of it took effect; the broker
    delivers the message again). One commit runs at a time; what arrives meanwhile goes into the
    next.

    ``declare_routes`` declares what the given routes need (raises ``ChannelFailed``);
    ``redeclare`` declares the whole topology again, paced (True once it could).
    """

    def __init__(
        self,
        channel: AbstractChannel,
        *,
        timeout_s: float,
        declare_routes: DeclareRoutes,
        redeclare: Redeclare,
    ) -> None:
        if not isinstance(channel, aiormq.Channel):
            # aiormq's own channel publishes without waiting for the drain (its abstract one
            # does not say so).
            raise TypeError(f"a committer needs an aiormq channel, not {type(channel).__name__}")
        self._channel = channel
        self._timeout_s = timeout_s
        self._declare_routes = declare_routes
        self._redeclare = redeclare
        self._pending: list[_Settle] = []
        self._tags = SettledTags()
        self._running: asyncio.Task[None] | None = None

    async def settle(
        self, delivery_tag: int, *, ack: bool, publishes: Sequence[Outgoing] = ()
    ) -> bool:
        if self._channel.is_closed:
            return False
        item = _Settle(delivery_tag, ack, publishes)
        self._pending.append(item)
        if self._running is None or self._running.done():
            self._running = asyncio.get_running_loop().create_task(self._run())
        return await asyncio.shield(item.done)

    async def _run(self) -> None:
        while self._pending:
            batch, self._pending = self._pending, []
            try:
                ok = await self._routes_declared(batch)
                if ok:
                    async with asyncio.timeout(self._timeout_s):
                        await self._commit(batch)
            except (TimeoutError, ChannelFailed) as exc:
                log.warning("commit of %d settles failed: %s", len(batch), exc)
                ok = False
            except Exception:  # a bug must not leave the settles waiting for ever
                log.exception("commit of %d settles failed", len(batch))
                ok = False
            if not ok:
                await self._give_back(batch)
            for item in batch:
                if not item.done.done():
                    item.done.set_result(ok)

    async def _routes_declared(self, batch: list[_Settle]) -> bool:
        """Declare the routes ``batch`` publishes to; wait while they cannot be (see above).

        False when the channel is gone meanwhile (nothing can be committed on it any more).
        """
        routes = {
            (p.exchange, p.routing_key) for item in batch for p in item.publishes if p.declared
        }
        while routes:
            if self._channel.is_closed:
                return False
            try:
                await self._declare_routes(routes)
            except ChannelFailed as exc:
                if exc.reason != "refused":
                    raise
                log.debug("a route of a commit cannot be declared (%s): waiting", exc)
                # Paced, and it logs what it could not declare and when it could again.
                while not await self._redeclare():
                    if self._channel.is_closed:
                        return False
            else:
                return True
        return not self._channel.is_closed

    async def _commit(self, batch: list[_Settle]) -> None:
        """Publish, ack and nack what ``batch`` holds, and commit."""
        channel = self._channel
        acks = {item.delivery_tag for item in batch if item.ack}
        up_to = self._tags.multiple_up_to(acks) if len(acks) > 1 else 0
        # The settles left after the multiple ack: (tag, ack, multiple).
        settles = [(up_to, True, True)] if up_to else []
        settles += [
            (item.delivery_tag, item.ack, False)
            for item in batch
            if not (item.ack and item.delivery_tag <= up_to)
        ]
        with translated("committing settles"):
            for item in batch:
                for outgoing in item.publishes:
                    envelope = outgoing.envelope
                    await channel.basic_publish(
                        envelope.body,
                        exchange=outgoing.exchange,
                        routing_key=outgoing.routing_key,
                        properties=envelope.to_properties(),
                        wait=False,
                    )
            last = len(settles) - 1
            for index, (tag, ack, multiple) in enumerate(settles):
                wait = index == last  # the transport drained below its high-water mark
                if ack:
                    await channel.basic_ack(tag, multiple=multiple, wait=wait)
                else:
                    await channel.basic_nack(tag, requeue=True, wait=wait)
            await channel.tx_commit()
        self._tags.settle(item.delivery_tag for item in batch)

    async def _give_back(self, batch: list[_Settle]) -> None:
        """After a failed commit: roll back what it left open and nack its deliveries back.

        Otherwise the publishes and acks of the failed commit would take effect with the next
        one, for deliveries their callers were told went back; and deliveries neither acked nor
        nacked would stay with this channel for as long as it lives. If that fails too, the
        channel is closed: nothing of it takes effect, and the broker delivers them again.
        """
        channel = self._channel
        if channel.is_closed:
            return
        try:
            async with asyncio.timeout(_CLEANUP_TIMEOUT_S):
                await channel.tx_rollback()
                for item in batch:
                    await channel.basic_nack(item.delivery_tag, requeue=True)
                await channel.tx_commit()
            self._tags.settle(item.delivery_tag for item in batch)
            return
        except AMQP_FAILURES as exc:  # a timeout is an OSError too
            log.warning("giving back after a failed commit failed (%r): closing the channel", exc)
        with contextlib.suppress(*AMQP_FAILURES):
            async with asyncio.timeout(_CLEANUP_TIMEOUT_S):
                await channel.close()


__all__ = [
    "DEFAULT_EXCHANGE",
    "Committer",
    "DeclareRoutes",
    "Outgoing",
    "Redeclare",
    "Route",
    "SettledTags",
]

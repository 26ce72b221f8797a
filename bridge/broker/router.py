"""``Router``: moves every command of one queue into an exchange, each copy committed with its ack.

With sharded sending on (``worker.shards``, see ``bridge.worker.shards``) applications still
publish send commands to ``outbound.sms`` on the default exchange; one router at a time consumes
it and republishes each delivery, body and properties unchanged, to the consistent-hash exchange
``outbound.sms.shards`` with the sending number as its routing key, which puts every command of
one number into the same shard queue. The copy and the ack of the original are one transaction
(``tx.select`` on the router's channel; RabbitMQ applies a transaction's publishes and acks at
``tx.commit``, and a channel that dies before it applies none), so a command is never in both
queues, nor in neither. What gathers while a commit runs goes into the next one (group commit,
``COMMIT_MAX`` at most); a commit publishes in delivery order, so the shard queues receive one
number's commands in the order the queue held them. As the worker's committer does, a commit
hands its publishes to aiormq's writer without waiting for each to drain (nothing takes effect
before ``tx.commit``) and acks with one ``basic.ack(multiple=True)`` of its last tag: the router
acks everything it takes, in order, so every earlier tag of the channel is in this commit or in
one before it.

A delivery the broker redelivered (a router died before its commit) may also have been taken by
a worker before sharding was switched on: its copy carries ``x-bridge-lookup``, so the worker
looks it up at Catapult before sending it.

The router consumes only while ``activate``d (the worker that is the single active consumer of the
router queue activates it) and on every session of its link, like an ``Intake``; a session that
ends leaves it inactive until it is activated again. A body that is not JSON or names no sender
is routed with an empty key: the worker that takes it from its shard dead-letters it as usual.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import Callable
from typing import TYPE_CHECKING

import aiormq
import orjson
from aiormq.abc import AbstractChannel, DeliveredMessage
from pamqp.commands import Basic

from bridge.broker.errors import ChannelFailed, translated
from bridge.events import headers as h

if TYPE_CHECKING:
    from bridge.broker.link import BrokerLink, Session

log = logging.getLogger(__name__)

CLOSE_TIMEOUT_S = 5.0
# Deliveries copied and acked in one transaction at most.
COMMIT_MAX = 100


def sender_of(body: bytes) -> str:
    """The sending number of a send command's body ("" when there is none to read)."""
    try:
        command = orjson.loads(body)
    except orjson.JSONDecodeError:
        return ""
    sender = command.get("from") if isinstance(command, dict) else None
    return sender if isinstance(sender, str) else ""


class Router:
    """Consumes ``queue`` while active and copies each delivery to ``exchange`` under
    ``key_of(body)``, the copy and the ack committed together."""

    def __init__(
        self,
        link: BrokerLink,
        *,
        queue: str,
        exchange: str,
        prefetch: int,
        commit_timeout_s: float,
        key_of: Callable[[bytes], str] = sender_of,
    ) -> None:
        self._link = link
        self.queue = queue
        self._exchange = exchange
        self._prefetch = prefetch
        self._commit_timeout_s = commit_timeout_s
        self._key_of = key_of
        self._session: Session | None = None
        self._channel: AbstractChannel | None = None
        self._tag: str | None = None
        self._active = False
        self._closed = False
        self._pending: list[DeliveredMessage] = []
        self._committing: asyncio.Task[None] | None = None
        self._lock = asyncio.Lock()
        self.routed = 0

    @property
    def is_active(self) -> bool:
        return self._active

    async def attach(self, session: Session) -> None:
        """Open this session's transactional channel (run by the link on every session)."""
        async with self._lock:
            if self._closed or self._session is session:
                return
            self._active = False  # a new session: activated again once it is the router again
            channel = await session.open_channel(f"routing {self.queue}")
            with translated(f"setting up the router of {self.queue}"):
                await channel.basic_qos(prefetch_count=self._prefetch)
                await channel.tx_select()
            self._session, self._channel, self._tag = session, channel, None
            self._pending = []

    async def activate(self) -> None:
        """Start routing on the current session (a no-op when already routing)."""
        async with self._lock:
            channel = self._channel
            if self._closed or self._active or channel is None or channel.is_closed:
                return
            self._active = True
            try:
                with translated(f"consuming {self.queue} to route it"):
                    ok = await channel.basic_consume(self.queue, self._on_delivery)
            except ChannelFailed as exc:
                self._active = False
                if self._session is not None:
                    self._session.end(str(exc))
                return
            self._tag = ok.consumer_tag
            log.info("routing %s into %s by sending number", self.queue, self._exchange)

    async def deactivate(self) -> None:
        """Stop taking deliveries; what was taken is still committed."""
        async with self._lock:
            self._active = False
            tag, self._tag = self._tag, None
            channel = self._channel
            if tag is not None and channel is not None and not channel.is_closed:
                try:
                    with translated(f"cancelling the router of {self.queue}"):
                        async with asyncio.timeout(CLOSE_TIMEOUT_S):
                            await channel.basic_cancel(tag)
                except ChannelFailed as exc:
                    log.debug("%s", exc)
        committing = self._committing
        if committing is not None and not committing.done():
            await asyncio.shield(committing)

    async def close(self) -> None:
        await self.deactivate()
        async with self._lock:
            self._closed = True
            self._link.detach(self.attach)
            channel, self._channel = self._channel, None
            if channel is None or channel.is_closed:
                return
            if self._session is not None:
                self._session.release(channel)
            with contextlib.suppress(ChannelFailed), translated("closing the router's channel"):
                async with asyncio.timeout(CLOSE_TIMEOUT_S):
                    await channel.close()

    async def _on_delivery(self, message: DeliveredMessage) -> None:
        if message.channel is not self._channel:
            return  # of a channel that is gone: the broker delivers it again
        self._pending.append(message)
        if self._committing is None or self._committing.done():
            self._committing = asyncio.get_running_loop().create_task(self._commit_all())

    async def _commit_all(self) -> None:
        while self._pending:
            # Bounded, so that one commit never takes long: the rest go into the next one.
            batch, self._pending = self._pending[:COMMIT_MAX], self._pending[COMMIT_MAX:]
            channel = batch[0].channel
            try:
                async with asyncio.timeout(self._commit_timeout_s):
                    await self._commit(channel, batch)
            except (TimeoutError, ChannelFailed) as exc:
                # Nothing of the batch took effect, or (a timeout) it is not known: the channel
                # is given up either way, so the broker delivers every uncommitted one again.
                log.warning("routing %d commands of %s failed: %s", len(batch), self.queue, exc)
                if self._session is not None:
                    self._session.end(f"the router's commit failed: {exc}")
                return
            self.routed += len(batch)

    async def _commit(self, channel: AbstractChannel, batch: list[DeliveredMessage]) -> None:
        if not isinstance(channel, aiormq.Channel):
            # aiormq's own channel publishes without waiting for the drain (its abstract one
            # does not say so).
            raise TypeError(f"the router needs an aiormq channel, not {type(channel).__name__}")
        with translated(f"routing {self.queue}"):
            for message in batch:
                properties = message.header.properties
                headers = dict(properties.headers or {})
                # The broker's count is of this queue; the shard queue keeps its own.
                redelivered = bool(getattr(message.delivery, "redelivered", False))
                if redelivered or headers.pop(h.DELIVERY_COUNT, None):
                    h.mark_lookup(headers)
                copied = Basic.Properties(
                    content_type=properties.content_type,
                    content_encoding=properties.content_encoding,
                    headers=headers,
                    delivery_mode=properties.delivery_mode or 2,
                    priority=properties.priority,
                    correlation_id=properties.correlation_id,
                    reply_to=properties.reply_to,
                    expiration=properties.expiration,
                    message_id=properties.message_id,
                    timestamp=properties.timestamp,
                    message_type=properties.message_type,
                    # Not user_id: RabbitMQ refuses one that is not the publishing connection's.
                    app_id=properties.app_id,
                )
                await channel.basic_publish(
                    message.body,
                    exchange=self._exchange,
                    routing_key=self._key_of(message.body),
                    properties=copied,
                    wait=False,
                )
            # Every delivery of this channel up to the batch's last is in the batch or was
            # committed before it (the router acks all it takes, in order): one multiple ack
            # stands for them all, and waits for the transport to drain.
            last_tag = int(getattr(batch[-1].delivery, "delivery_tag", 0) or 0)
            await channel.basic_ack(last_tag, multiple=True)
            await channel.tx_commit()


__all__ = ["Router", "sender_of"]

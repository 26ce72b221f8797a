"""Consuming a queue, and settling its deliveries: the AMQP half of taking work in.

An ``Intake`` consumes one queue on a channel of its own with a bounded prefetch, so the broker
never hands a consumer more than it can hold, and hands each delivery to a callback as an
``Inbound``. It is attached to a ``BrokerLink``: on every session (the first, and each one after a
reconnect) it opens its channel, sets the prefetch and consumes again, unless it is paused. The
client library's own consumer recovery is not used: aio-pika's robust queues restore consumers
only while the queue objects are still referenced and the queue still exists, so here the
re-consume is explicit, and a consumer the broker cancels (its queue was deleted) ends the
session, after which the topology is declared again and the queue consumed anew.

``pause`` stops deliveries (``basic.cancel``) and keeps them stopped across reconnects until
``resume``; the deliveries already held stay unacked, for the caller to settle or give back.
``settle`` tells the broker what became of a delivery (ack, or nack with requeue, and for a
transactional intake what is published in the same transaction: ``committer.py``); what that is,
is decided by the caller (the worker settles in exactly one place). A delivery whose channel is
gone is stale: it can no longer be settled, and the broker delivers it again. Every failure here
is a ``ChannelFailed`` (``errors.py``), or a False from ``settle``.
"""

from __future__ import annotations

import asyncio
import logging
import math
from collections.abc import Awaitable, Callable, Mapping, Sequence
from datetime import datetime
from typing import TYPE_CHECKING, Any

from aiormq.abc import AbstractChannel, DeliveredMessage
from pamqp.commands import Basic

from bridge.broker.committer import Committer, Outgoing
from bridge.broker.errors import ChannelFailed, translated

if TYPE_CHECKING:
    from bridge.broker.link import BrokerLink, Session

log = logging.getLogger(__name__)

# A broker that stopped answering must not hold a shutdown.
CLOSE_TIMEOUT_S = 5.0


class Inbound:
    """One delivery as a consumer sees it: the body, the properties, where it came from.

    The attribute names are aio-pika's ``IncomingMessage``'s (``message_id``, ``headers``,
    ``type``, ``expiration`` in seconds, ...), read from the frames aiormq decoded.
    """

    __slots__ = ("_channel", "_committer", "_deliver", "_properties", "body")

    def __init__(self, message: DeliveredMessage, committer: Committer | None = None) -> None:
        self.body: bytes = message.body
        self._properties: Basic.Properties = message.header.properties
        self._deliver = message.delivery
        self._channel: AbstractChannel = message.channel
        self._committer = committer

    @property
    def properties(self) -> Basic.Properties:
        """Every AMQP property as received (read them; do not change them)."""
        return self._properties

    @property
    def message_id(self) -> str | None:
        return self._properties.message_id

    @property
    def headers(self) -> Mapping[str, Any]:
        return self._properties.headers or {}

    @property
    def correlation_id(self) -> str | None:
        return self._properties.correlation_id

    @property
    def reply_to(self) -> str | None:
        return self._properties.reply_to

    @property
    def type(self) -> str | None:
        return self._properties.message_type

    @property
    def content_type(self) -> str | None:
        return self._properties.content_type

    @property
    def timestamp(self) -> datetime | None:
        return self._properties.timestamp

    @property
    def expiration(self) -> float | None:
        """The AMQP ``expiration`` in seconds (on the wire: milliseconds, as text)."""
        raw = self._properties.expiration
        try:
            seconds = None if raw is None else float(raw) / 1000.0
        except ValueError:
            return None
        # "nan" and "inf" parse as floats; they are no expiry a message can have.
        return seconds if seconds is not None and math.isfinite(seconds) else None

    @property
    def app_id(self) -> str | None:
        return self._properties.app_id

    @property
    def redelivered(self) -> bool:
        return bool(getattr(self._deliver, "redelivered", False))

    @property
    def delivery_tag(self) -> int:
        return int(getattr(self._deliver, "delivery_tag", 0) or 0)

    @property
    def routing_key(self) -> str | None:
        return getattr(self._deliver, "routing_key", None)

    @property
    def is_stale(self) -> bool:
        """Its channel is gone: it can no longer be settled; the broker delivers it again."""
        return self._channel.is_closed


OnMessage = Callable[[Inbound], Awaitable[None]]


class Intake:
    """One queue consumed on a channel of its own, on every session of its link."""

    def __init__(
        self,
        link: BrokerLink,
        *,
        queue: str,
        prefetch: int,
        on_message: OnMessage,
        transactional: bool = False,
        commit_timeout_s: float = 5.0,
    ) -> None:
        self._link = link
        self.queue = queue
        self._prefetch = prefetch
        self._on_message = on_message
        self._transactional = transactional
        self._commit_timeout_s = commit_timeout_s
        self._session: Session | None = None
        self._channel: AbstractChannel | None = None
        self._tag: str | None = None
        self._paused = False
        self._closed = False
        self._committer: Committer | None = None
        self._lock = asyncio.Lock()

    @property
    def is_consuming(self) -> bool:
        channel = self._channel
        return self._tag is not None and channel is not None and not channel.is_closed

    @property
    def is_paused(self) -> bool:
        return self._paused

    async def attach(self, session: Session) -> None:
        """Open this session's channel and consume (unless paused); run by the link."""
        async with self._lock:
            if self._closed or self._session is session:
                return
            channel = await session.open_channel(f"consuming {self.queue}")
            with translated(f"setting the prefetch of {self.queue}"):
                await channel.basic_qos(prefetch_count=self._prefetch)
            committer = None
            if self._transactional:
                with translated(f"making the channel of {self.queue} transactional"):
                    await channel.tx_select()
                committer = Committer(
                    channel,
                    timeout_s=self._commit_timeout_s,
                    declare_routes=self._link.declare_routes,
                    redeclare=self._link.redeclare,
                )
            channel.on_consumer_cancel_callbacks.add(self._on_cancel)
            self._session, self._channel, self._tag = session, channel, None
            self._committer = committer
            if not self._paused:
                await self._consume(channel)

    async def pause(self) -> None:
        """Stop deliveries, here and after reconnects, until ``resume``; those held stay held."""
        async with self._lock:
            self._paused = True
            await self._cancel()

    async def resume(self) -> None:
        """Consume again (at once if the link is up, else on its next session)."""
        async with self._lock:
            self._paused = False
            channel = self._channel
            if self._closed or channel is None or channel.is_closed or self._tag is not None:
                return
            try:
                await self._consume(channel)
            except ChannelFailed as exc:
                if self._session is not None:
                    self._session.end(str(exc))

    async def close(self) -> None:
        """Stop for good: no more deliveries, the channel closed (unsettled ones go back)."""
        async with self._lock:
            self._closed = True
            self._link.detach(self.attach)
            await self._cancel()
            channel, self._channel = self._channel, None
            if channel is None or channel.is_closed:
                return
            if self._session is not None:
                self._session.release(channel)
            try:
                with translated(f"closing the channel of {self.queue}"):
                    async with asyncio.timeout(CLOSE_TIMEOUT_S):
                        await channel.close()
            except ChannelFailed as exc:
                log.debug("%s", exc)

    async def _consume(self, channel: AbstractChannel) -> None:
        committer = self._committer

        async def deliver(message: DeliveredMessage) -> None:
            await self._on_message(Inbound(message, committer))

        with translated(f"consuming {self.queue}"):
            ok = await channel.basic_consume(self.queue, deliver)
        self._tag = ok.consumer_tag

    async def _cancel(self) -> None:
        tag, self._tag = self._tag, None
        channel = self._channel
        if tag is None or channel is None or channel.is_closed:
            return
        try:
            with translated(f"cancelling the consumer of {self.queue}"):
                async with asyncio.timeout(CLOSE_TIMEOUT_S):
                    await channel.basic_cancel(tag)
        except ChannelFailed as exc:
            log.warning("%s", exc)

    def _on_cancel(self, frame: Basic.Cancel) -> None:
        # The broker cancelled the consumer: its queue was deleted (or, for a quorum queue, the
        # consumer could not be kept). A new session declares the queue again and consumes it.
        if frame.consumer_tag == self._tag and self._session is not None:
            self._tag = None
            self._session.end(f"the broker cancelled the consumer of {self.queue}")


async def settle(message: Inbound, *, ack: bool, publishes: Sequence[Outgoing] = ()) -> bool:
    """Ack ``message`` (or nack it with requeue); True once the broker has it, False when the
    channel is gone (nothing took effect; the broker delivers it again).

    ``publishes`` (published with the ack in one transaction: a copy, a result, a dead letter)
    need a transactional intake. On a transactional intake every settle goes through its
    committer.
    """
    committer = message._committer
    if committer is not None:
        return await committer.settle(message.delivery_tag, ack=ack, publishes=publishes)
    if publishes:
        raise ValueError("publishes settled with their delivery need a transactional intake")
    try:
        await (_ack if ack else _nack)(message)
    except ChannelFailed as exc:
        log.debug("%s", exc)
        return False
    return True


async def _ack(message: Inbound) -> None:
    with translated("ack"):
        await message._channel.basic_ack(message.delivery_tag)


async def _nack(message: Inbound) -> None:
    with translated("nack"):
        await message._channel.basic_nack(message.delivery_tag, requeue=True)


def is_stale(message: Inbound) -> bool:
    """Its channel is gone: it can no longer be settled, and the broker will deliver it again."""
    return message.is_stale


__all__ = ["Inbound", "Intake", "OnMessage", "is_stale", "settle"]

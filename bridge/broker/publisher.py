"""Persistent, mandatory, confirmed publishing on one confirm-mode aiormq channel.

``Publisher.publish`` returns only once RabbitMQ has confirmed the message; every way it can fail
(closed channel, no confirm within the deadline, nack, no queue bound for the routing key)
becomes a ``PublishFailed`` with its reason (``errors.py``), so callers decide on one exception
type (the receiver spools, the worker leaves the command unacked).
"""

from __future__ import annotations

import logging

import aiormq
from aio_pika.abc import AbstractChannel as AioPikaChannel
from aio_pika.abc import AbstractConnection as AioPikaConnection
from aiormq.abc import AbstractChannel

from bridge.broker.errors import AMQP_FAILURES, PublishFailed, publish_failed, translated
from bridge.events.envelope import Envelope

log = logging.getLogger(__name__)


class Publisher:
    """Publishes on one confirm-mode channel; safe to share between tasks."""

    def __init__(self, channel: AbstractChannel, *, confirm_timeout_s: float) -> None:
        self.channel = channel
        self._confirm_timeout_s = confirm_timeout_s

    async def publish(
        self, envelope: Envelope, *, exchange: str, routing_key: str | None = None
    ) -> None:
        """Publish to ``exchange`` ("" is the default exchange) and wait for the confirm.

        Properties are built straight from the envelope (no intermediate message object).
        Raises ``PublishFailed`` on any failure.
        """
        key = envelope.routing_key if routing_key is None else routing_key
        try:
            # aiormq bounds the lock, the drain and the confirm by ``timeout`` in one deadline
            # (it raises TimeoutError): one timer per publish instead of two.
            result = await self.channel.basic_publish(
                envelope.body,
                exchange=exchange,
                routing_key=key,
                properties=envelope.to_properties(),
                mandatory=True,
                timeout=self._confirm_timeout_s,
            )
        except AMQP_FAILURES as exc:
            raise publish_failed(exc, routing_key=key, timeout_s=self._confirm_timeout_s) from exc
        if isinstance(result, aiormq.abc.DeliveredMessage):
            # Basic.Return on a channel opened without on_return_raises: aiormq hands back the
            # returned message instead of raising.
            raise PublishFailed("unroutable", f"no queue is bound for {key!r}")


async def open_confirm_channel(connection: AioPikaConnection) -> AioPikaChannel:
    """An aio-pika channel in confirm mode where returned (unroutable) messages raise.

    For tools on an aio-pika connection; ``Publisher`` takes its underlying aiormq channel
    (``await channel.get_underlay_channel()``).
    """
    with translated("opening a confirm channel"):
        return await connection.channel(publisher_confirms=True, on_return_raises=True)


__all__ = ["Publisher", "open_confirm_channel"]

"""Persistent, mandatory, confirmed publishing, and the one place broker errors are translated.

``Publisher.publish`` returns only once RabbitMQ has confirmed the message; every way it can fail
(unreachable broker, closed channel, no confirm within the deadline, nack, no queue bound for the
routing key) becomes one ``PublishFailed`` carrying a short reason, so callers decide on one
exception type (the receiver spools, the worker leaves the command unacked).
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Mapping
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any

import aio_pika
import aiormq
from aio_pika.abc import (
    AbstractChannel,
    AbstractExchange,
    AbstractRobustConnection,
    DeliveryMode,
)
from aiormq import spec

from bridge.settings import BrokerSettings

log = logging.getLogger(__name__)

CLOUDEVENTS_JSON = "application/cloudevents+json"
APP_ID = "catapult-bridge"
_PERSISTENT = int(DeliveryMode.PERSISTENT)


class PublishFailed(Exception):
    """The broker did not take the message; ``reason`` is one of a few stable words."""

    def __init__(self, reason: str, detail: str = "") -> None:
        self.reason = reason
        self.detail = detail
        super().__init__(f"publish failed ({reason}){': ' + detail if detail else ''}")


@dataclass(frozen=True, slots=True)
class Envelope:
    """One AMQP message ready to publish: the body and the properties consumers route on."""

    body: bytes
    routing_key: str
    message_id: str
    type: str
    content_type: str = CLOUDEVENTS_JSON
    headers: Mapping[str, Any] = field(default_factory=dict)
    correlation_id: str | None = None
    reply_to: str | None = None
    timestamp: datetime = field(default_factory=lambda: datetime.now(UTC))

    def to_properties(self) -> spec.Basic.Properties:
        """The AMQP properties, built directly (what ``to_message().properties`` gives, cheaper).

        ``priority=0`` and an empty ``headers`` table are kept: aio-pika always sent them.
        """
        headers = self.headers
        return spec.Basic.Properties(
            content_type=self.content_type,
            headers=headers if type(headers) is dict else dict(headers),
            delivery_mode=_PERSISTENT,
            priority=0,
            correlation_id=self.correlation_id,
            reply_to=self.reply_to,
            message_id=self.message_id,
            timestamp=self.timestamp,
            message_type=self.type,
            app_id=APP_ID,
        )

    def to_message(self) -> aio_pika.Message:
        return aio_pika.Message(
            self.body,
            content_type=self.content_type,
            message_id=self.message_id,
            type=self.type,
            headers=dict(self.headers),
            correlation_id=self.correlation_id,
            reply_to=self.reply_to,
            timestamp=self.timestamp,
            delivery_mode=DeliveryMode.PERSISTENT,
            app_id=APP_ID,
        )


class Publisher:
    """Publishes on one confirm-mode channel; safe to share between tasks."""

    def __init__(self, channel: AbstractChannel, *, confirm_timeout_s: float) -> None:
        self._channel = channel
        self._confirm_timeout_s = confirm_timeout_s

    async def publish(
        self, exchange: AbstractExchange, envelope: Envelope, *, routing_key: str | None = None
    ) -> None:
        """Publish and wait for the confirm; raise ``PublishFailed`` on any failure.

        Publishes on the exchange's underlying aiormq channel with properties built straight
        from the envelope (what ``exchange.publish(envelope.to_message())`` does, without the
        intermediate ``aio_pika.Message``).
        """
        key = envelope.routing_key if routing_key is None else routing_key
        channel: AbstractChannel = exchange.channel  # type: ignore[attr-defined]
        try:
            async with asyncio.timeout(self._confirm_timeout_s):
                if channel.is_closed:
                    raise aiormq.exceptions.ChannelInvalidStateError(f"{channel!r} closed")
                underlay = await channel.get_underlay_channel()
                result = await underlay.basic_publish(
                    envelope.body,
                    exchange=exchange.name,
                    routing_key=key,
                    properties=envelope.to_properties(),
                    mandatory=True,
                )
        except TimeoutError as exc:
            raise PublishFailed("timeout", f"no confirm in {self._confirm_timeout_s:g} s") from exc
        except aiormq.exceptions.PublishError as exc:
            # Basic.Return on a channel opened with on_return_raises=True.
            raise PublishFailed("unroutable", f"no queue is bound for {key!r}") from exc
        except aiormq.exceptions.DeliveryError as exc:
            raise PublishFailed("nacked", "the broker refused the message") from exc
        except (aiormq.exceptions.AMQPError, ConnectionError, RuntimeError) as exc:
            # RuntimeError: aiormq's ChannelInvalidStateError when the channel is closed.
            raise PublishFailed("disconnected", type(exc).__name__) from exc
        if isinstance(result, aiormq.abc.DeliveredMessage):
            # Basic.Return on a channel opened without on_return_raises: aiormq hands back the
            # returned message instead of raising.
            raise PublishFailed("unroutable", f"no queue is bound for {key!r}")


async def connect(settings: BrokerSettings, *, name: str) -> AbstractRobustConnection:
    """Open a robust (self-reconnecting) connection; raise ``PublishFailed`` if unreachable."""
    try:
        return await aio_pika.connect_robust(
            settings.url.get_secret_value(),
            timeout=settings.connect_timeout_s,
            client_properties={"connection_name": name},
            heartbeat=settings.heartbeat_s,
        )
    except (aiormq.exceptions.AMQPError, OSError, TimeoutError) as exc:
        # The URL carries the password: only its masked form may reach the message.
        raise PublishFailed(
            "disconnected", f"cannot connect to {settings.display_url}: {type(exc).__name__}"
        ) from None


async def open_confirm_channel(connection: AbstractRobustConnection) -> AbstractChannel:
    """A channel in publisher-confirm mode where returned (unroutable) messages raise."""
    return await connection.channel(publisher_confirms=True, on_return_raises=True)

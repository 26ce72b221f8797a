"""``Publisher.publish`` on the aiormq channel directly: same wire message, same failure reasons."""

from __future__ import annotations

import uuid
from collections.abc import AsyncIterator
from datetime import UTC, datetime
from types import MappingProxyType
from typing import Any

import aio_pika
import aiormq
import pytest
from aio_pika.abc import AbstractChannel, AbstractExchange, AbstractRobustConnection

from bridge.broker import Envelope, Publisher, PublishFailed, open_confirm_channel
from bridge.events.cloudevents import CloudEvent, EventType

ENVELOPES = [
    Envelope(body=b"{}", routing_key="k", message_id="x", type="t"),
    Envelope(
        body=b'{"a": 1}',
        routing_key="k",
        message_id="id-1",
        type="t",
        headers=MappingProxyType({"a": 1, "b": [1, "x"], "c": {"d": True}}),
        correlation_id="corr",
        reply_to="reply.queue",
        timestamp=datetime(2024, 1, 2, 3, 4, 5, 678, tzinfo=UTC),
    ),
]


def as_aio_pika_message(envelope: Envelope) -> aio_pika.Message:
    """The envelope as aio-pika's own ``Message`` (what an aio-pika publish would send)."""
    return aio_pika.Message(
        envelope.body,
        content_type=envelope.content_type,
        message_id=envelope.message_id,
        type=envelope.type,
        headers=dict(envelope.headers),
        correlation_id=envelope.correlation_id,
        reply_to=envelope.reply_to,
        timestamp=envelope.timestamp,
        delivery_mode=aio_pika.DeliveryMode.PERSISTENT,
        app_id="catapult-bridge",
    )


@pytest.mark.parametrize("envelope", ENVELOPES)
def test_properties_are_those_aio_pika_would_send(envelope: Envelope) -> None:
    built, via_message = envelope.to_properties(), as_aio_pika_message(envelope).properties
    assert built == via_message
    assert built.marshal() == via_message.marshal()


def test_envelope_headers_keep_only_what_consumers_route_on() -> None:
    event = CloudEvent(
        id="e-1",
        source="test",
        type=EventType.MESSAGE_RECEIVED,
        subject="m-1",
        time=datetime(2024, 1, 1, tzinfo=UTC),
        correlationid="c-1",
        data={},
    )
    envelope = event.to_envelope(routing_key="inbound.sms", headers={"direction": "in"})
    assert dict(envelope.headers) == {
        "ce-type": str(EventType.MESSAGE_RECEIVED),
        "ce-subject": "m-1",
        "ce-correlationid": "c-1",
        "direction": "in",
    }
    bare = event.model_copy(update={"subject": None, "correlationid": None})
    assert dict(bare.to_envelope(routing_key="k").headers) == {
        "ce-type": str(EventType.MESSAGE_RECEIVED)
    }


class Bench:
    def __init__(
        self,
        channel: AbstractChannel,
        underlay: aiormq.abc.AbstractChannel,
        exchange: AbstractExchange,
        queue: Any,
    ) -> None:
        self.channel, self.underlay, self.exchange, self.queue = channel, underlay, exchange, queue


@pytest.fixture
async def bench(amqp: AbstractRobustConnection) -> AsyncIterator[Bench]:
    name = f"test.publisher.{uuid.uuid4().hex[:10]}"
    setup = await amqp.channel()
    exchange = await setup.declare_exchange(name, aio_pika.ExchangeType.TOPIC, auto_delete=True)
    queue = await setup.declare_queue(name, arguments={"x-queue-type": "classic"})
    await queue.bind(exchange, "ok.#")
    full = await setup.declare_queue(
        f"{name}.full", arguments={"x-max-length": 0, "x-overflow": "reject-publish"}
    )
    await full.bind(exchange, "full.#")
    channel = await open_confirm_channel(amqp)
    underlay = await channel.get_underlay_channel()
    yield Bench(channel, underlay, await channel.get_exchange(name), queue)
    await queue.delete(if_unused=False, if_empty=False)
    await full.delete(if_unused=False, if_empty=False)
    await setup.close()


def envelope(key: str) -> Envelope:
    return Envelope(
        body=b'{"x": 1}',
        routing_key=key,
        message_id=uuid.uuid4().hex,
        type="t",
        headers={"ce-type": "t", "direction": "in"},
        correlation_id="c",
        timestamp=datetime(2024, 1, 2, 3, 4, 5, tzinfo=UTC),
    )


async def test_a_confirmed_publish_arrives_with_its_properties(bench: Bench) -> None:
    sent = envelope("ok.one")
    await Publisher(bench.underlay, confirm_timeout_s=5).publish(sent, exchange=bench.exchange.name)
    got = await bench.queue.get(timeout=5)
    assert got.body == sent.body
    assert got.message_id == sent.message_id
    assert got.type == "t"
    assert got.content_type == sent.content_type
    assert got.correlation_id == "c"
    assert got.delivery_mode == 2
    assert got.app_id == "catapult-bridge"
    assert got.timestamp == sent.timestamp
    assert got.headers == {"ce-type": "t", "direction": "in"}
    assert got.routing_key == "ok.one"


async def test_routing_key_overrides_the_envelope_one(bench: Bench) -> None:
    await Publisher(bench.underlay, confirm_timeout_s=5).publish(
        envelope("nowhere"), exchange=bench.exchange.name, routing_key="ok.two"
    )
    assert (await bench.queue.get(timeout=5)).routing_key == "ok.two"


async def test_unroutable(bench: Bench) -> None:
    with pytest.raises(PublishFailed) as caught:
        await Publisher(bench.underlay, confirm_timeout_s=5).publish(
            envelope("nowhere"), exchange=bench.exchange.name
        )
    assert caught.value.reason == "unroutable"


async def test_unroutable_without_on_return_raises(
    bench: Bench, amqp: AbstractRobustConnection
) -> None:
    channel = await amqp.channel(publisher_confirms=True, on_return_raises=False)
    with pytest.raises(PublishFailed) as caught:
        await Publisher(await channel.get_underlay_channel(), confirm_timeout_s=5).publish(
            envelope("nowhere"), exchange=bench.exchange.name
        )
    assert caught.value.reason == "unroutable"
    await channel.close()


async def test_nacked(bench: Bench) -> None:
    with pytest.raises(PublishFailed) as caught:
        await Publisher(bench.underlay, confirm_timeout_s=5).publish(
            envelope("full.one"), exchange=bench.exchange.name
        )
    assert caught.value.reason == "nacked"


async def test_closed_channel_is_disconnected(bench: Bench) -> None:
    await bench.channel.close()
    with pytest.raises(PublishFailed) as caught:
        await Publisher(bench.underlay, confirm_timeout_s=5).publish(
            envelope("ok.one"), exchange=bench.exchange.name
        )
    assert caught.value.reason == "disconnected"


async def test_no_confirm_in_time_is_a_timeout(bench: Bench) -> None:
    with pytest.raises(PublishFailed) as caught:
        await Publisher(bench.underlay, confirm_timeout_s=1e-9).publish(
            envelope("ok.one"), exchange=bench.exchange.name
        )
    assert caught.value.reason == "timeout"

"""End to end: the Catapult simulator calls the receiver back; the events land in RabbitMQ.

The simulator delivers inbound SMS and MMS to the application of the number they are sent to, and
the status events and delivery receipts of outbound messages to the application of the sending
number, by POST (JSON) or GET (query), with the receiver's credentials in the callback URL as
Catapult v1 users wrote them (``http://user:password@host/...``).
"""

from __future__ import annotations

from collections.abc import AsyncIterator, Awaitable, Callable
from dataclasses import dataclass
from typing import Any

import aiohttp
import orjson
import pytest
from aio_pika.abc import AbstractIncomingMessage

from bridge.events.cloudevents import EventType
from bridge.events.tag import encode_tag
from bridge.receiver import ReceiverServer
from bridge.settings import SIMULATOR_API_SECRET, SIMULATOR_API_TOKEN, Settings
from bridge.simulator import Simulator
from tests.fixtures.receiver import (
    CREDENTIALS,
    PASSWORD,
    USERNAME,
    BrokerProxy,
    EventQueues,
    MakeReceiver,
)
from tests.fixtures.simulator import MakeSimulator

TOKEN = "p4th-t0ken-e2e"
POST_NUMBER = "+19195550200"
GET_NUMBER = "+19195550201"
SENDER = "+13233326955"
MEDIA = (
    "https://api.catapult.inetwork.com/v1/users/u-1/media/cat-m-abc.jpg",
    "https://api.catapult.inetwork.com/v1/users/u-1/media/123_1-m-abc.smil",
)


@dataclass
class Linked:
    """A simulator whose applications call one receiver back, and the receiver's queues."""

    simulator: Simulator
    receiver: ReceiverServer
    queues: EventQueues
    settings: Settings

    def callback_url(self, *, password: str = PASSWORD) -> str:
        host = self.receiver.base_url.removeprefix("http://")
        return f"http://{USERNAME}:{password}@{host}{self.settings.receiver.path}/{TOKEN}"


async def link(
    simulator: Simulator,
    receiver: ReceiverServer,
    queues: EventQueues,
    settings: Settings,
) -> Linked:
    linked = Linked(simulator, receiver, queues, settings)
    for number, method in ((POST_NUMBER, "post"), (GET_NUMBER, "get")):
        app = simulator.add_application(
            incoming_message_url=linked.callback_url(), callback_http_method=method
        )
        simulator.add_number(number, application_id=app.id)
    return linked


@pytest.fixture
async def linked(
    make_settings: Callable[..., Settings],
    make_receiver: MakeReceiver,
    make_simulator: MakeSimulator,
    event_queues: Callable[[Settings], Awaitable[EventQueues]],
) -> Linked:
    settings = make_settings(receiver={**CREDENTIALS, "path_token": TOKEN})
    receiver = await make_receiver(settings)
    return await link(await make_simulator(), receiver, await event_queues(settings), settings)


@pytest.fixture
async def api() -> AsyncIterator[aiohttp.ClientSession]:
    auth = aiohttp.encode_basic_auth(SIMULATOR_API_TOKEN, SIMULATOR_API_SECRET)
    async with aiohttp.ClientSession(headers={"Authorization": auth}) as session:
        yield session


async def send_message(api: aiohttp.ClientSession, simulator: Simulator, **fields: Any) -> str:
    """Send through the simulator's v1 API; the new message's id."""
    url = f"{simulator.base_url}/users/{simulator.user_id}/messages"
    async with api.post(url, json=fields) as response:
        assert response.status == 201, await response.text()
        return response.headers["Location"].rsplit("/", 1)[-1]


def events(messages: list[AbstractIncomingMessage]) -> dict[str, list[dict[str, Any]]]:
    """Events by Catapult message id, in queue order."""
    by_message: dict[str, list[dict[str, Any]]] = {}
    for message in messages:
        event = orjson.loads(message.body)
        assert message.message_id == event["id"]
        assert message.type == event["type"]
        by_message.setdefault(event["subject"], []).append(event)
    return by_message


async def test_inbound_sms_and_mms_by_post_and_get(linked: Linked) -> None:
    sim = linked.simulator
    injected = {
        sim.inject_inbound(from_=SENDER, to=POST_NUMBER, text="sms by post").id: (
            "sms",
            POST_NUMBER,
        ),
        sim.inject_inbound(from_=SENDER, to=POST_NUMBER, text="mms by post", media=MEDIA).id: (
            "mms",
            POST_NUMBER,
        ),
        sim.inject_inbound(from_=SENDER, to=GET_NUMBER, text="sms by get").id: ("sms", GET_NUMBER),
        sim.inject_inbound(from_=SENDER, to=GET_NUMBER, text="mms, by get", media=MEDIA).id: (
            "mms",
            GET_NUMBER,
        ),
    }
    attempts = await sim.wait_for_callbacks(4, predicate=lambda a: a.message_id in injected)
    assert all(a.is_ok and a.status == 200 for a in attempts)
    assert sorted(a.method for a in attempts) == ["GET", "GET", "POST", "POST"]

    received = events(await linked.queues.take(linked.queues.inbound, 4))
    assert set(received) == set(injected)
    for message_id, (kind, number) in injected.items():
        (event,) = received[message_id]
        data = event["data"]
        assert event["type"] == EventType.MESSAGE_RECEIVED
        assert (data["messageType"], data["from"], data["to"]) == (kind, SENDER, number)
        assert data["media"] == (list(MEDIA) if kind == "mms" else [])
        assert data["text"] in ("sms by post", "mms by post", "sms by get", "mms, by get")
    assert await linked.queues.count(linked.queues.status) == 0


async def test_status_events_and_receipts_by_post_and_get(
    linked: Linked, api: aiohttp.ClientSession
) -> None:
    sim = linked.simulator
    sim.set_destination("+13233320001", "not-delivered", 720)
    sim.set_destination("+13233320002", "error", 770)
    plans = [
        # (from, to, expected event types in order)
        (POST_NUMBER, "+13233320000", ["sending", "sent", "delivered"]),
        (GET_NUMBER, "+13233320000", ["sending", "sent", "delivered"]),
        (POST_NUMBER, "+13233320001", ["sending", "sent", "not-delivered"]),
        (GET_NUMBER, "+13233320002", ["sending", "failed", "not-delivered"]),
    ]
    sent: dict[str, tuple[str, list[str]]] = {}
    for index, (sender, to, expected) in enumerate(plans):
        command_id = f"cmd-e2e-{index}"
        message_id = await send_message(
            api,
            sim,
            **{"from": sender, "to": to, "text": f"hello {index}", "receiptRequested": "all"},
            tag=encode_tag(command_id, f"user tag {index}"),
        )
        sent[message_id] = (command_id, expected)
    total = sum(len(expected) for _, expected in sent.values())
    attempts = await sim.wait_for_callbacks(total, predicate=lambda a: a.message_id in sent)
    assert all(a.is_ok for a in attempts)

    received = events(await linked.queues.take(linked.queues.status, total))
    for index, (message_id, (command_id, expected)) in enumerate(sent.items()):
        got = received[message_id]
        assert [e["type"] for e in got] == [f"io.catapult-bridge.message.{t}.v1" for t in expected]
        assert {e["correlationid"] for e in got} == {command_id}
        assert {e["data"]["tag"] for e in got} == {f"user tag {index}"}
        assert len({e["id"] for e in got}) == len(got)
    codes = {m: received[m][-1]["data"].get("deliveryCode") for m in sent}
    assert sorted(codes.values()) == [0, 0, 720, 770]
    assert await linked.queues.count(linked.queues.inbound) == 0


async def test_duplicate_deliveries_are_published_once(linked: Linked) -> None:
    sim = linked.simulator
    sim.set_faults(duplicate_callback_rate=1.0)
    ids = {
        sim.inject_inbound(from_=SENDER, to=n, text=f"twice {n}").id
        for n in (POST_NUMBER, GET_NUMBER)
    }
    attempts = await sim.wait_for_callbacks(4, predicate=lambda a: a.message_id in ids)
    assert all(a.is_ok for a in attempts)
    received = events(await linked.queues.take(linked.queues.inbound, 2))
    assert set(received) == ids
    assert await linked.queues.count(linked.queues.inbound) == 0


async def test_refused_credentials_send_catapult_to_the_fallback_url(linked: Linked) -> None:
    sim = linked.simulator
    app = sim.add_application(
        incoming_message_url=linked.callback_url(password="not-the-password"),
        fallback_url=linked.callback_url(),
    )
    sim.add_number("+19195550202", application_id=app.id)
    message = sim.inject_inbound(from_=SENDER, to="+19195550202", text="via fallback")
    first, fallback = await sim.wait_for_callbacks(2, message_id=message.id)
    assert (first.status, first.is_fallback) == (401, False)
    assert (fallback.status, fallback.is_fallback) == (200, True)
    assert PASSWORD not in first.url
    (event,) = events(await linked.queues.take(linked.queues.inbound, 1))[message.id]
    assert event["data"]["text"] == "via fallback"


async def test_callbacks_during_a_broker_outage_are_answered_and_drained(
    make_settings: Callable[..., Settings],
    make_receiver: MakeReceiver,
    make_simulator: MakeSimulator,
    event_queues: Callable[[Settings], Awaitable[EventQueues]],
    broker_proxy: BrokerProxy,
) -> None:
    settings = make_settings(
        broker={
            "url": broker_proxy.url(),
            "connect_timeout_s": 1.0,
            "reconnect_delay_s": 0.05,
            "reconnect_max_delay_s": 0.2,
        },
        receiver={**CREDENTIALS, "path_token": TOKEN, "retry_interval_s": 0.1},
    )
    receiver = await make_receiver(settings)
    linked = await link(await make_simulator(), receiver, await event_queues(settings), settings)
    sim = linked.simulator
    await broker_proxy.cut()
    ids = [
        sim.inject_inbound(from_=SENDER, to=POST_NUMBER, text=f"outage {n}").id for n in range(6)
    ]
    attempts = await sim.wait_for_callbacks(6, predicate=lambda a: a.message_id in ids)
    assert all(a.is_ok and not a.is_fallback for a in attempts)
    await broker_proxy.restore()
    received = events(await linked.queues.take(linked.queues.inbound, 6))
    assert set(received) == set(ids)

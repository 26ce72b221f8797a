"""Callbacks made by the simulator, received by real HTTP servers: order, content, GET encoding,
credentials, timeouts, fallback and failure records."""

from __future__ import annotations

import base64
from typing import Any
from urllib.parse import parse_qsl

import pytest

from bridge.simulator import Simulator
from tests.fixtures.simulator import CallbackSink, ReceivedRequest, SimulatorApi

SENDER = "+19195550100"
PEER = "+19195551234"


@pytest.fixture
def sender(simulator: Simulator) -> str:
    simulator.add_number(SENDER)
    return SENDER


async def send(sim_api: SimulatorApi, **fields: Any) -> str:
    payload = {"from": SENDER, "to": PEER, "text": "hello", **fields}
    answer = await sim_api.call("POST", "/messages", json=payload)
    assert answer.status == 201, answer.body
    return answer.headers["Location"].rsplit("/", 1)[1]


async def events(sink: CallbackSink, count: int) -> list[ReceivedRequest]:
    return [await sink.next() for _ in range(count)]


# Outbound status walk ---------------------------------------------------------------------------


async def test_outbound_events_in_order_with_receipt(
    sim_api: SimulatorApi, sender: str, callback_sink: CallbackSink
) -> None:
    message_id = await send(
        sim_api, callbackUrl=callback_sink.url("/status"), receiptRequested="all", tag="cmd-7"
    )
    received = await events(callback_sink, 3)
    bodies = [r.json() for r in received]
    assert [(b["state"], b.get("deliveryState")) for b in bodies] == [
        ("sending", None),
        ("sent", None),
        ("sent", "delivered"),
    ]
    first = received[0]
    assert first.method == "POST"
    assert first.path == "/status"
    assert first.headers["Content-Type"] == "application/json; charset=utf-8"
    assert first.headers["User-Agent"].startswith("BandwidthAPI/v1 (")
    assert bodies[0] == {
        "eventType": "sms",
        "direction": "out",
        "messageId": message_id,
        "messageUri": sim_api.url(f"/messages/{message_id}"),
        "from": SENDER,
        "to": PEER,
        "text": "hello",
        "time": sim_api.simulator.state.messages[message_id].time,
        "state": "sending",
        "tag": "cmd-7",
        "segmentCount": 1,
    }
    assert bodies[2]["deliveryCode"] == 0
    assert bodies[2]["deliveryDescription"] == "Message delivered to carrier"
    attempts = await sim_api.simulator.wait_for_callbacks(3, message_id=message_id)
    assert all(a.is_ok and a.status == 200 and not a.is_fallback for a in attempts)


@pytest.mark.parametrize(
    ("receipt", "outcome", "expected"),
    [
        ("none", "delivered", [("sending", None), ("sent", None)]),
        ("error", "delivered", [("sending", None), ("sent", None)]),
        ("all", "not-delivered", [("sending", None), ("sent", None), ("sent", "not-delivered")]),
        ("error", "not-delivered", [("sending", None), ("sent", None), ("sent", "not-delivered")]),
        ("none", "error", [("sending", None), ("error", None)]),
        ("error", "error", [("sending", None), ("error", None), ("error", "not-delivered")]),
    ],
)
async def test_receipts_follow_receipt_requested(
    sim_api: SimulatorApi,
    sender: str,
    callback_sink: CallbackSink,
    receipt: str,
    outcome: Any,
    expected: list[tuple[str, str | None]],
) -> None:
    sim_api.simulator.set_destination(PEER, outcome, 720)
    message_id = await send(sim_api, callbackUrl=callback_sink.url(), receiptRequested=receipt)
    await sim_api.simulator.wait_idle()
    bodies = [(await callback_sink.next()).json() for _ in expected]
    assert [(b["state"], b.get("deliveryState")) for b in bodies] == expected
    assert callback_sink.received.empty()
    if expected[-1][1] == "not-delivered":
        assert bodies[-1]["deliveryCode"] == 720
        assert bodies[-1]["deliveryDescription"] == "Invalid destination address"
    record = sim_api.simulator.state.messages[message_id]
    assert record.state == expected[-1][0]
    resource = (await sim_api.call("GET", f"/messages/{message_id}")).json()
    assert resource["state"] == expected[-1][0]


async def test_mms_gets_no_receipt_and_carries_media(
    sim_api: SimulatorApi, sender: str, callback_sink: CallbackSink
) -> None:
    media = ["https://example.com/a.jpg", "https://example.com/b.smil"]
    await send(sim_api, text=None, media=media, callbackUrl=callback_sink.url())
    await sim_api.simulator.wait_idle()
    bodies = [(await callback_sink.next()).json() for _ in range(2)]
    assert [b["eventType"] for b in bodies] == ["mms", "mms"]
    assert [b["state"] for b in bodies] == ["sending", "sent"]
    assert bodies[0]["media"] == media
    assert callback_sink.received.empty()


async def test_without_callback_url_events_go_to_the_senders_application(
    sim_api: SimulatorApi, simulator: Simulator, callback_sink: CallbackSink
) -> None:
    app = simulator.add_application(
        incoming_message_url=callback_sink.url("/app"), callback_http_method="get"
    )
    simulator.add_number(SENDER, application_id=app.id)
    message_id = await send(sim_api, text="a b+c&d")
    first, second = await events(callback_sink, 2)
    assert first.method == second.method == "GET"
    assert first.path == "/app"
    assert first.body == b""
    assert first.query["messageId"] == message_id
    assert first.query["state"] == "sending"
    assert second.query["state"] == "sent"
    assert first.query["text"] == "a b+c&d"
    # Values are form-encoded as the platform's GET callbacks were: '+' and ':' '/' escaped.
    assert "from=%2B19195550100" in first.raw_query
    assert "messageUri=http%3A%2F%2F127.0.0.1" in first.raw_query


async def test_get_callback_sends_one_media_parameter_per_url(
    sim_api: SimulatorApi, sender: str, callback_sink: CallbackSink
) -> None:
    media = ["https://example.com/a.jpg", "https://example.com/b.smil"]
    await send(
        sim_api, text="", media=media, callbackUrl=callback_sink.url(), callbackHttpMethod="GET"
    )
    received = await callback_sink.next()
    assert received.query.getall("media") == media
    assert [v for k, v in parse_qsl(received.raw_query) if k == "media"] == media
    assert received.query["segmentCount"] == "1"


async def test_without_callback_url_or_application_nothing_is_sent(
    sim_api: SimulatorApi, sender: str
) -> None:
    message_id = await send(sim_api, receiptRequested="all")
    record = sim_api.simulator.state.messages[message_id]
    assert record.state == "sent"
    assert record.delivery_state == "delivered"
    assert list(sim_api.simulator.state.callback_attempts) == []


async def test_credentials_in_the_url_become_basic_auth_and_are_masked(
    sim_api: SimulatorApi, sender: str, callback_sink: CallbackSink
) -> None:
    url = callback_sink.url("/secure", user="catapult", password="s3cr3t-pass")
    message_id = await send(sim_api, callbackUrl=url)
    received = await callback_sink.next()
    expected = base64.b64encode(b"catapult:s3cr3t-pass").decode()
    assert received.headers["Authorization"] == f"Basic {expected}"
    assert received.path == "/secure"
    (attempt,) = await sim_api.simulator.wait_for_callbacks(1, message_id=message_id)
    assert "s3cr3t-pass" not in attempt.url
    assert attempt.url.startswith("http://catapult:***@127.0.0.1:")
    listed = await sim_api.control("GET", f"/callbacks?messageId={message_id}")
    assert "s3cr3t-pass" not in listed.body.decode()


# Failure, fallback, timeout ---------------------------------------------------------------------


async def test_failed_callback_goes_to_the_fallback_once(
    sim_api: SimulatorApi, sender: str, callback_sink: CallbackSink
) -> None:
    callback_sink.respond("/primary", 500)
    message_id = await send(
        sim_api,
        callbackUrl=callback_sink.url("/primary"),
        fallbackUrl=callback_sink.url("/fallback"),
    )
    paths = [(await callback_sink.next()).path for _ in range(4)]
    assert paths == ["/primary", "/fallback", "/primary", "/fallback"]
    attempts = await sim_api.simulator.wait_for_callbacks(4, message_id=message_id)
    assert [(a.is_fallback, a.is_ok, a.status) for a in attempts] == [
        (False, False, 500),
        (True, True, 200),
        (False, False, 500),
        (True, True, 200),
    ]
    assert list(sim_api.simulator.state.user_errors) == []


async def test_redirect_counts_as_failure(
    sim_api: SimulatorApi, sender: str, callback_sink: CallbackSink
) -> None:
    callback_sink.respond("/moved", 302)
    message_id = await send(sim_api, callbackUrl=callback_sink.url("/moved"))
    attempts = await sim_api.simulator.wait_for_callbacks(2, message_id=message_id)
    assert [(a.is_ok, a.status) for a in attempts] == [(False, 302), (False, 302)]


async def test_timeout_then_fallback(
    sim_api: SimulatorApi, sender: str, callback_sink: CallbackSink
) -> None:
    callback_sink.hang("/slow")
    message_id = await send(
        sim_api,
        callbackUrl=callback_sink.url("/slow"),
        callbackTimeout=200,
        fallbackUrl=callback_sink.url("/fallback"),
    )
    attempts = await sim_api.simulator.wait_for_callbacks(2, message_id=message_id)
    assert attempts[0].error == "timeout after 200 ms"
    assert attempts[0].status is None
    assert attempts[0].duration_ms >= 190
    assert attempts[1].is_fallback
    assert attempts[1].is_ok


async def test_both_failing_records_a_user_error_and_moves_on(
    sim_api: SimulatorApi, sender: str, callback_sink: CallbackSink
) -> None:
    callback_sink.respond("/a", 503)
    callback_sink.respond("/b", 404)
    message_id = await send(
        sim_api, callbackUrl=callback_sink.url("/a"), fallbackUrl=callback_sink.url("/b")
    )
    await sim_api.simulator.wait_idle()
    attempts = [a for a in sim_api.simulator.state.callback_attempts if a.message_id == message_id]
    assert len(attempts) == 4  # sending and sent: each tried at the URL and the fallback once
    errors = await sim_api.call("GET", "/errors")
    assert errors.status == 200
    body = errors.json()
    assert len(body) == 2
    error = body[0]
    assert error["category"] == "unavailable"
    assert error["code"] == "callback-http-failure-status"
    assert error["message"] == "The callback returned an HTTP failure status"
    details = {d["name"]: d["value"] for d in error["details"]}
    assert details["callbackStatusCode"] == "404"
    assert details["callbackUrl"] == callback_sink.url("/b")
    assert details["callbackMethod"] == "POST"
    assert details["messageId"] == message_id
    one = await sim_api.call("GET", f"/errors/{error['id']}")
    assert one.json() == error


async def test_unreachable_target_is_a_failed_attempt(sim_api: SimulatorApi, sender: str) -> None:
    message_id = await send(sim_api, callbackUrl="http://127.0.0.1:9/closed")
    attempts = await sim_api.simulator.wait_for_callbacks(2, message_id=message_id)
    assert not attempts[0].is_ok
    assert attempts[0].status is None
    assert attempts[0].error


async def test_a_url_the_connection_cannot_use_is_a_failed_attempt(simulator: Simulator) -> None:
    # The API refuses such a URL; set from Python it still reaches delivery, whose failure must be
    # recorded like any other instead of ending the delivery task.
    app = simulator.add_application(incoming_message_url="http://a..b/in")
    simulator.add_number(SENDER, application_id=app.id)
    record = simulator.inject_inbound(from_=PEER, to=SENDER, text="x")
    (attempt,) = await simulator.wait_for_callbacks(1, message_id=record.id)
    assert not attempt.is_ok
    assert attempt.status is None
    assert attempt.error is not None
    assert attempt.error.startswith("UnicodeError")
    await simulator.wait_idle()
    (error,) = simulator.state.user_errors
    assert error.code == "callback-http-failure-status"


# Inbound ----------------------------------------------------------------------------------------


async def test_inbound_sms_goes_to_the_application(
    sim_api: SimulatorApi, simulator: Simulator, callback_sink: CallbackSink
) -> None:
    app = simulator.add_application(incoming_message_url=callback_sink.url("/in"))
    simulator.add_number(SENDER, application_id=app.id)
    answer = await sim_api.control(
        "POST", "/inbound", json={"from": PEER, "to": SENDER, "text": "ping"}
    )
    assert answer.status == 201
    message_id = answer.json()["id"]
    received = await callback_sink.next()
    body = received.json()
    assert body == {
        "eventType": "sms",
        "direction": "in",
        "messageId": message_id,
        "messageUri": sim_api.url(f"/messages/{message_id}"),
        "from": PEER,
        "to": SENDER,
        "text": "ping",
        "applicationId": app.id,
        "time": body["time"],
        "state": "received",
        "segmentCount": 1,
    }
    stored = await sim_api.call("GET", f"/messages/{message_id}")
    assert stored.json()["direction"] == "in"
    assert stored.json()["state"] == "received"


async def test_inbound_mms_by_get_with_fallback(
    simulator: Simulator, callback_sink: CallbackSink
) -> None:
    callback_sink.respond("/in", 500)
    app = simulator.add_application(
        incoming_message_url=callback_sink.url("/in"),
        fallback_url=callback_sink.url("/in-fallback"),
        callback_http_method="GET",
        timeout_ms=2000,
    )
    simulator.add_number(SENDER, application_id=app.id)
    media = ["https://example.com/m/1.jpg", "https://example.com/m/2.smil"]
    record = simulator.inject_inbound(from_=PEER, to=SENDER, text="pic", media=media)
    first, second = await events(callback_sink, 2)
    assert (first.path, second.path) == ("/in", "/in-fallback")
    assert second.method == "GET"
    assert second.query["eventType"] == "mms"
    assert second.query["messageId"] == record.id
    assert second.query.getall("media") == media


async def test_inbound_without_application_is_a_user_error(
    sim_api: SimulatorApi, simulator: Simulator
) -> None:
    simulator.add_number(SENDER)
    record = simulator.inject_inbound(from_=PEER, to=SENDER, text="lost")
    (error,) = simulator.state.user_errors
    assert error.code == "no-application-for-number"
    assert error.message == f"No application is configured for number {SENDER}"
    assert record.id in simulator.state.messages


async def test_inbound_to_a_number_not_on_the_account_is_404(sim_api: SimulatorApi) -> None:
    answer = await sim_api.control(
        "POST", "/inbound", json={"from": PEER, "to": SENDER, "text": "x"}
    )
    assert answer.status == 404
    assert answer.json()["code"] == "number-not-found"


async def test_get_callback_keeps_the_urls_own_query(
    sim_api: SimulatorApi, sender: str, callback_sink: CallbackSink
) -> None:
    await send(sim_api, callbackUrl=callback_sink.url("/q?token=abc"), callbackHttpMethod="GET")
    received = await callback_sink.next()
    assert received.raw_query.startswith("token=abc&eventType=sms&")
    assert received.query["token"] == "abc"

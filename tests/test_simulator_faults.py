"""Faults injected by the simulator, switched at start (settings) and at run time (control)."""

from __future__ import annotations

import time

import aiohttp
import pytest

from bridge.simulator import Simulator
from tests.fixtures.simulator import CallbackSink, MakeSimulator, SimulatorApi

SENDER = "+19195550100"
PEER = "+19195551234"
MESSAGE = {"from": SENDER, "to": PEER, "text": "x"}


@pytest.fixture
def sender(simulator: Simulator) -> str:
    simulator.add_number(SENDER)
    return SENDER


async def test_latency_is_added_to_answers(sim_api: SimulatorApi, sender: str) -> None:
    sim_api.simulator.set_faults(latency_ms=150)
    started = time.perf_counter()
    answer = await sim_api.call("POST", "/messages", json=MESSAGE)
    assert answer.status == 201
    assert time.perf_counter() - started >= 0.15
    sim_api.simulator.clear_faults()
    started = time.perf_counter()
    await sim_api.call("GET", "/messages")
    assert time.perf_counter() - started < 0.15


async def test_error_rate_answers_500_or_503_without_effect(
    make_simulator: MakeSimulator, sim_http: aiohttp.ClientSession
) -> None:
    simulator = await make_simulator(error_rate=1.0, fault_seed=7)
    simulator.add_number(SENDER)
    sim_api = SimulatorApi(sim_http, simulator)
    codes = set()
    for _ in range(12):
        answer = await sim_api.call("POST", "/messages", json=MESSAGE)
        assert answer.status in (500, 503)
        codes.add((answer.status, answer.json()["code"]))
    assert codes == {(500, "internal-server-error"), (503, "service-unavailable")}
    assert simulator.state.messages == {}


async def test_an_echo_error_prints_the_request_back_and_has_no_effect(
    sim_api: SimulatorApi, sender: str
) -> None:
    sim_api.simulator.set_faults(echo_error_rate=1.0)
    body = {**MESSAGE, "text": "a <b> & c"}
    answer = await sim_api.call("POST", "/messages", json=body, params={"q": "1"})
    assert answer.status == 500
    assert "text/html" in answer.headers["Content-Type"]
    page = answer.body.decode()
    assert f"POST /v1/users/{sim_api.simulator.user_id}/messages?q=1" in page
    assert f"Authorization: {sim_api.authorization}" in page
    assert '"text":"a <b> & c"' in page  # raw
    assert "a &lt;b&gt; &amp; c" in page  # and HTML-escaped
    assert sim_api.simulator.state.messages == {}
    sim_api.simulator.clear_faults()
    assert (await sim_api.call("POST", "/messages", json=body)).status == 201


async def test_ambiguous_503_creates_the_message(
    sim_api: SimulatorApi, sender: str, callback_sink: CallbackSink
) -> None:
    answer = await sim_api.control("PUT", "/faults", json={"ambiguous_rate": 1.0})
    assert answer.json()["ambiguous_rate"] == 1.0
    sent = await sim_api.call(
        "POST", "/messages", json={**MESSAGE, "tag": "cmd-42", "callbackUrl": callback_sink.url()}
    )
    assert sent.status == 503
    body = sent.json()
    assert body["category"] == "unavailable"
    assert body["code"] == "message-gateway-unavailable"
    (record,) = sim_api.simulator.state.messages.values()
    assert record.tag == "cmd-42"
    assert body["message"] == (
        "The message gateway was temporarily unavailable. Check the state of your message "
        f"{record.id} to determine if it was successfully sent"
    )
    # The worker's lookup: the sender's recent messages, found by tag.
    listed = await sim_api.call("GET", "/messages", params={"from": SENDER})
    assert [m["tag"] for m in listed.json()] == ["cmd-42"]
    assert (await callback_sink.next()).json()["messageId"] == record.id


async def test_a_lost_answer_is_a_plain_5xx_for_a_message_that_exists(
    make_simulator: MakeSimulator, sim_http: aiohttp.ClientSession
) -> None:
    simulator = await make_simulator(lost_answer_rate=1.0, fault_seed=3)
    simulator.add_number(SENDER)
    sim_api = SimulatorApi(sim_http, simulator)
    statuses = set()
    for n in range(16):
        answer = await sim_api.call("POST", "/messages", json={**MESSAGE, "tag": f"t{n}"})
        statuses.add(answer.status)
        if answer.status in (500, 503):
            assert answer.json()["code"] in ("internal-server-error", "service-unavailable")
        else:
            assert "text/html" in answer.headers["Content-Type"]
    assert statuses == {500, 502, 503, 504}
    assert sorted(m.tag or "" for m in simulator.state.messages.values()) == sorted(
        f"t{n}" for n in range(16)
    )
    batch = await sim_api.call("POST", "/messages", json=[MESSAGE, MESSAGE])
    assert batch.status >= 500
    assert len(simulator.state.messages) == 18


async def test_gateway_unavailable_creates_nothing(sim_api: SimulatorApi, sender: str) -> None:
    sim_api.simulator.set_faults(gateway_unavailable_rate=1.0)
    answer = await sim_api.call("POST", "/messages", json=MESSAGE)
    assert answer.status == 503
    assert answer.json()["code"] == "message-gateway-unavailable"
    assert sim_api.simulator.state.messages == {}
    named = answer.json()["message"].split("message ")[1].split(" ")[0]
    sim_api.simulator.clear_faults()
    assert (await sim_api.call("GET", f"/messages/{named}")).status == 404


async def test_ambiguous_batch(sim_api: SimulatorApi, sender: str) -> None:
    sim_api.simulator.set_faults(ambiguous_rate=1.0)
    answer = await sim_api.call("POST", "/messages", json=[MESSAGE, MESSAGE])
    assert answer.status == 503
    assert len(sim_api.simulator.state.messages) == 2


async def test_rate_limit_storm(sim_api: SimulatorApi, sender: str) -> None:
    sim_api.simulator.set_faults(rate_limit_storm_rate=1.0)
    send = await sim_api.call("POST", "/messages", json=MESSAGE)
    assert send.status == 403
    assert send.json()["code"] == "message-rate-limit"
    read = await sim_api.call("GET", "/messages")
    assert read.status == 429
    assert int(read.headers["X-RateLimit-Reset"]) > time.time() * 1000
    batch = await sim_api.call("POST", "/messages", json=[MESSAGE])
    assert batch.json()[0]["error"]["category"] == "limit"
    sim_api.simulator.set_faults(rate_limit_storm_rate=0)
    assert (await sim_api.call("POST", "/messages", json=MESSAGE)).status == 201


async def test_duplicated_callbacks(
    sim_api: SimulatorApi, sender: str, callback_sink: CallbackSink
) -> None:
    sim_api.simulator.set_faults(duplicate_callback_rate=1.0)
    await sim_api.call("POST", "/messages", json={**MESSAGE, "callbackUrl": callback_sink.url()})
    states = [(await callback_sink.next()).json()["state"] for _ in range(4)]
    assert states == ["sending", "sending", "sent", "sent"]


async def test_receipts_out_of_order(
    sim_api: SimulatorApi, sender: str, callback_sink: CallbackSink
) -> None:
    sim_api.simulator.set_faults(reorder_receipts_rate=1.0)
    sent = await sim_api.call(
        "POST",
        "/messages",
        json={**MESSAGE, "callbackUrl": callback_sink.url(), "receiptRequested": "all"},
    )
    bodies = [(await callback_sink.next()).json() for _ in range(3)]
    assert [(b["state"], b.get("deliveryState")) for b in bodies] == [
        ("sending", None),
        ("sent", "delivered"),  # the receipt overtakes the status event
        ("sent", None),
    ]
    await sim_api.simulator.wait_idle()
    record = sim_api.simulator.state.messages[sent.headers["Location"].rsplit("/", 1)[1]]
    assert (record.state, record.delivery_state) == ("sent", "delivered")


async def test_failing_callback_targets_use_the_fallback(
    sim_api: SimulatorApi, sender: str, callback_sink: CallbackSink
) -> None:
    sim_api.simulator.set_faults(callback_failure_rate=1.0)
    await sim_api.call(
        "POST",
        "/messages",
        json={**MESSAGE, "callbackUrl": callback_sink.url(), "fallbackUrl": callback_sink.url()},
    )
    await sim_api.simulator.wait_idle()
    attempts = list(sim_api.simulator.state.callback_attempts)
    assert len(attempts) == 4
    assert all(a.error == "injected failure: target unreachable" for a in attempts)
    assert callback_sink.received.empty()
    assert len(sim_api.simulator.state.user_errors) == 2


async def test_slow_callbacks(
    sim_api: SimulatorApi, sender: str, callback_sink: CallbackSink
) -> None:
    sim_api.simulator.set_faults(callback_delay_ms=100)
    started = time.perf_counter()
    await sim_api.call("POST", "/messages", json={**MESSAGE, "callbackUrl": callback_sink.url()})
    await callback_sink.next()
    await callback_sink.next()
    assert time.perf_counter() - started >= 0.2


async def test_faults_from_settings_and_control(
    make_simulator: MakeSimulator, sim_http: aiohttp.ClientSession
) -> None:
    simulator = await make_simulator(latency_ms=5, duplicate_callback_rate=0.5)
    sim_api = SimulatorApi(sim_http, simulator)
    current = (await sim_api.control("GET", "/faults")).json()
    assert current["latency_ms"] == 5
    assert current["duplicate_callback_rate"] == 0.5
    changed = await sim_api.control("PUT", "/faults", json={"error_rate": 0.25})
    assert changed.json()["error_rate"] == 0.25
    assert changed.json()["latency_ms"] == 5
    bad = await sim_api.control("PUT", "/faults", json={"error_rate": 2})
    assert bad.status == 400
    assert "error_rate" in bad.json()["message"]
    cleared = await sim_api.control("DELETE", "/faults")
    assert set(cleared.json().values()) == {0}
    await simulator.reset()
    assert simulator.faults.latency_ms == 5  # reset restores the start-time faults

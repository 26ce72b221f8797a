"""The simulator's control endpoints, its life cycle, and ``bridge simulator`` as a command."""

from __future__ import annotations

import asyncio
import logging
import os
import re
import signal
import sys
from urllib.parse import quote

import aiohttp
import pytest

from bridge.cli import build_parser
from bridge.settings import SimulatorSettings
from bridge.simulator import Simulator, SimulatorStatus
from bridge.simulator.cli import simulator_overrides
from tests.fixtures.simulator import CallbackSink, MakeSimulator, SimulatorApi

SENDER = "+19195550100"
PEER = "+19195551234"


async def test_inspection_endpoints(sim_api: SimulatorApi, callback_sink: CallbackSink) -> None:
    app = (
        await sim_api.control(
            "POST", "/applications", json={"incomingMessageUrl": callback_sink.url("/in")}
        )
    ).json()
    added = await sim_api.control(
        "POST", "/numbers", json={"number": SENDER, "applicationId": app["id"]}
    )
    assert added.status == 201
    assert added.json()["applicationId"] == app["id"]
    duplicate = await sim_api.control("POST", "/numbers", json={"number": SENDER})
    assert duplicate.status == 409
    sent = await sim_api.call("POST", "/messages", json={"from": SENDER, "to": PEER, "text": "x"})
    message_id = sent.headers["Location"].rsplit("/", 1)[1]
    waited = await sim_api.control(
        "POST", "/callbacks/wait", json={"count": 2, "messageId": message_id}
    )
    assert waited.status == 200
    assert [a["event"]["state"] for a in waited.json()] == ["sending", "sent"]
    assert all(a["outcome"] == "ok" for a in waited.json())
    assert (await sim_api.control("POST", "/idle", json={"timeoutMs": 2000})).status == 200

    requests = (await sim_api.control("GET", "/requests")).json()
    assert requests[-1]["method"] == "POST"
    assert requests[-1]["path"].endswith("/messages")
    assert requests[-1]["status"] == 201
    assert "simulator-secret" not in str(requests)
    messages = (await sim_api.control("GET", "/messages")).json()
    assert [m["id"] for m in messages] == [message_id]
    numbers = (await sim_api.control("GET", "/numbers")).json()
    assert [n["number"] for n in numbers] == [SENDER]
    apps = (await sim_api.control("GET", "/applications")).json()
    assert [a["id"] for a in apps] == [app["id"]]
    callbacks = (await sim_api.control("GET", "/callbacks?limit=1")).json()
    assert len(callbacks) == 1
    assert (await sim_api.control("GET", "/health")).json() == {"status": "ok"}


async def test_waiting_for_callbacks_that_never_come_is_408(sim_api: SimulatorApi) -> None:
    answer = await sim_api.control("POST", "/callbacks/wait", json={"count": 1, "timeoutMs": 50})
    assert answer.status == 408
    with pytest.raises(TimeoutError, match="0 of 1"):
        await sim_api.simulator.wait_for_callbacks(1, timeout_s=0.05)


async def test_destinations_steer_outcomes(
    sim_api: SimulatorApi, callback_sink: CallbackSink
) -> None:
    sim_api.simulator.add_number(SENDER)
    answer = await sim_api.control(
        "PUT", f"/destinations/{PEER}", json={"outcome": "not-delivered", "deliveryCode": 770}
    )
    assert answer.status == 200
    payload = {
        "from": SENDER,
        "to": PEER,
        "text": "x",
        "receiptRequested": "all",
        "callbackUrl": callback_sink.url(),
    }
    await sim_api.call("POST", "/messages", json=payload)
    receipt = [(await callback_sink.next()).json() for _ in range(3)][-1]
    assert receipt["deliveryState"] == "not-delivered"
    assert receipt["deliveryCode"] == 770
    assert (await sim_api.control("DELETE", f"/destinations/{PEER}")).status == 204
    bad = await sim_api.control("PUT", f"/destinations/{PEER}", json={"outcome": "lost"})
    assert bad.status == 400


async def test_reset_clears_everything(sim_api: SimulatorApi) -> None:
    sim_api.simulator.add_number(SENDER)
    sim_api.simulator.set_limits(account_messages_per_s=5)
    await sim_api.call("POST", "/messages", json={"from": SENDER, "to": PEER, "text": "x"})
    answer = await sim_api.control("POST", "/reset")
    assert answer.status == 204
    state = sim_api.simulator.state
    assert not state.messages
    assert not state.numbers
    assert not state.requests
    assert sim_api.simulator.limits.account_messages_per_s == 0  # as configured at start


@pytest.mark.parametrize(
    ("method", "path", "data"),
    [
        ("POST", "/inbound", b"not json"),
        ("POST", "/inbound", b'{"from": 1, "to": "+1", "text": "x"}'),
        ("POST", "/numbers", b"[]"),
        ("PUT", "/faults", b'{"nope": 1}'),
        ("PUT", "/limits", b'["x"]'),
        ("POST", "/callbacks/wait", b'{"count": 0}'),
        ("GET", "/unknown", b""),
        ("DELETE", "/health", b""),
        ("GET", "/requests?limit=%C2%B2", b""),
        ("GET", "/callbacks?limit=-1", b""),
    ],
)
async def test_bad_control_requests_are_json_4xx(
    sim_api: SimulatorApi, sim_http: aiohttp.ClientSession, method: str, path: str, data: bytes
) -> None:
    async with sim_http.request(
        method, f"{sim_api.simulator.control_url}{path}", data=data
    ) as response:
        assert 400 <= response.status < 500
        body = await response.json()
    assert {"category", "code", "message", "details"} <= set(body)


def status_of(simulator: Simulator) -> SimulatorStatus:
    return simulator.status


async def test_life_cycle() -> None:
    simulator = Simulator(SimulatorSettings())
    assert status_of(simulator) is SimulatorStatus.CREATED
    async with simulator:
        assert status_of(simulator) is SimulatorStatus.RUNNING
        assert re.match(r"^http://127\.0\.0\.1:\d+/v1$", simulator.base_url)
        assert simulator.control_url == simulator.base_url.removesuffix("/v1") + "/_sim"
        with pytest.raises(RuntimeError):
            await simulator.start()
    assert status_of(simulator) is SimulatorStatus.STOPPED


async def test_stop_cancels_callbacks_in_flight(callback_sink: CallbackSink) -> None:
    callback_sink.hang("/slow")
    async with Simulator(
        SimulatorSettings(account_messages_per_s=0, number_messages_per_s=0)
    ) as sim:
        app = sim.add_application(incoming_message_url=callback_sink.url("/slow"))
        sim.add_number(SENDER, application_id=app.id)
        sim.inject_inbound(from_=PEER, to=SENDER, text="x")
        await callback_sink.next()
        assert sim.platform.dispatcher.pending == 1
    assert sim.platform.dispatcher.pending == 0


# Command line -----------------------------------------------------------------------------------


def test_flags_become_overrides_only_when_given() -> None:
    args = build_parser().parse_args(
        [
            "simulator",
            "--port",
            "9999",
            "--user-id",
            "u-x",
            "--error-rate",
            "0.5",
            "--no-limits",
            "--a2p-numbers",
            "+19195550100, +19195550101",
        ]
    )
    overrides = simulator_overrides(args)
    assert overrides["simulator.port"] == 9999
    assert overrides["simulator.user_id"] == "u-x"
    assert overrides["simulator.error_rate"] == 0.5
    assert overrides["simulator.account_messages_per_s"] == 0.0
    assert overrides["simulator.number_reads_per_s"] == 0.0
    assert overrides["simulator.a2p_numbers"] == ("+19195550100", "+19195550101")
    assert "simulator.host" not in overrides
    assert simulator_overrides(build_parser().parse_args(["simulator"])) == {}


async def test_bridge_simulator_serves_until_sigterm(sim_http: aiohttp.ClientSession) -> None:
    process = await asyncio.create_subprocess_exec(
        sys.executable,
        "-m",
        "bridge.cli",
        "simulator",
        "--port",
        "0",
        "--api-secret",
        "cli-secret",
        stderr=asyncio.subprocess.PIPE,
        env={**os.environ, "BRIDGE_LOG__LEVEL": "INFO"},
    )
    assert process.stderr is not None
    try:
        base_url = None
        async with asyncio.timeout(20):
            while base_url is None:
                line = (await process.stderr.readline()).decode()
                assert line, "the simulator exited before listening"
                match = re.search(r"simulator at (http://\S+/v1)", line)
                base_url = match[1] if match else None
        async with sim_http.get(base_url.removesuffix("/v1") + "/_sim/health") as response:
            assert response.status == 200
        auth = aiohttp.encode_basic_auth("t-simulatortoken234abcdefg", "cli-secret")
        url = f"{base_url}/users/u-simulatoruser2345abcdefg/messages"
        async with sim_http.get(url, headers={"Authorization": auth}) as response:
            assert response.status == 200
    finally:
        process.send_signal(signal.SIGTERM)
        code = await asyncio.wait_for(process.wait(), 20)
    assert code == 0


async def test_inspection_masks_callback_passwords(sim_api: SimulatorApi) -> None:
    sim_api.simulator.add_number(SENDER)
    url = "http://bridge:hunter2-pass@127.0.0.1:9/cb"
    await sim_api.control("POST", "/applications", json={"incomingMessageUrl": url})
    sent = await sim_api.call(
        "POST", "/messages", json={"from": SENDER, "to": PEER, "text": "x", "callbackUrl": url}
    )
    assert sent.status == 201
    await sim_api.simulator.wait_idle()
    for path in ("/messages", "/applications", "/callbacks", "/errors"):
        answer = await sim_api.control("GET", path)
        assert "hunter2-pass" not in answer.body.decode(), path
    record = next(iter(sim_api.simulator.state.messages.values()))
    assert "hunter2-pass" not in repr(record)
    assert "hunter2-pass" not in repr(next(iter(sim_api.simulator.state.applications.values())))


async def test_inspection_and_logs_hide_a_receiver_path_token(
    make_simulator: MakeSimulator, sim_http: aiohttp.ClientSession, caplog: pytest.LogCaptureFixture
) -> None:
    # The token is a credential in the URL's path: masked_url cannot know it, the simulator is
    # told it (``receiver.path_token``), and nothing it shows without credentials carries it.
    token = "path-token-Zq81+/x"
    simulator = await make_simulator(hidden=(token,))
    simulator.add_number(SENDER)
    sim_api = SimulatorApi(sim_http, simulator)
    url = f"http://bridge:pw-1234@127.0.0.1:9/catapult/messages/{quote(token, safe='')}"
    await sim_api.control("POST", "/applications", json={"incomingMessageUrl": url})
    sent = await sim_api.call(
        "POST", "/messages", json={"from": SENDER, "to": PEER, "text": "x", "callbackUrl": url}
    )
    assert sent.status == 201
    with caplog.at_level(logging.DEBUG, logger="bridge.simulator"):
        await simulator.wait_idle()
    shown = [
        (await sim_api.control("GET", p)).body.decode()
        for p in ("/messages", "/applications", "/callbacks")
    ]
    shown.append(caplog.text)
    for text in shown:
        assert "path-token" not in text
        assert "/catapult/messages/***" in text or text == caplog.text
    assert "callback for" in caplog.text  # the failed attempt was logged, token masked


async def test_logs_are_bounded(
    make_simulator: MakeSimulator, sim_http: aiohttp.ClientSession
) -> None:
    simulator = await make_simulator(max_requests_logged=3, max_messages=2)
    simulator.add_number(SENDER)
    sim_api = SimulatorApi(sim_http, simulator)
    for _ in range(5):
        await sim_api.call("POST", "/messages", json={"from": SENDER, "to": PEER, "text": "x"})
    assert len(simulator.state.requests) == 3
    assert len(simulator.state.messages) == 2
    assert len((await sim_api.control("GET", "/requests")).json()) == 3

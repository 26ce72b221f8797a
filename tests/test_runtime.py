"""``bridge run`` as a user meets it: every role in one process against the embedded simulator.

In-process through ``start_roles`` (to reach the simulator and the queues), and once as a real
``bridge run`` subprocess stopped by SIGTERM.
"""

from __future__ import annotations

import asyncio
import base64
import os
import signal
import sys
from collections.abc import AsyncIterator
from contextlib import AsyncExitStack
from typing import Any

import aio_pika
import aiohttp
import orjson
import pytest
from aio_pika.abc import AbstractQueue, AbstractRobustConnection

from bridge.events.cloudevents import EventType
from bridge.runtime import Roles, callback_url, embedded_settings, start_roles
from bridge.settings import Settings, load_settings

SENDER = "+19195550100"  # the first of the simulator's Dashboard numbers
PEER = "+15555550123"


async def next_events(
    queue: AbstractQueue, count: int = 1, timeout_s: float = 10.0
) -> list[dict[str, Any]]:
    """The next ``count`` messages on ``queue`` (acked), decoded, within ``timeout_s``.

    One consumer for all of them: a consumer per message would hand back the prefetched ones and
    the queue would redeliver them out of order.
    """
    events: list[dict[str, Any]] = []
    async with asyncio.timeout(timeout_s), queue.iterator() as messages:
        async for message in messages:
            await message.ack()
            events.append(orjson.loads(message.body))
            if len(events) == count:
                break
    return events


@pytest.fixture
async def running(make_settings: Any) -> AsyncIterator[Roles]:
    settings: Settings = make_settings(
        receiver={"host": "127.0.0.1", "port": 0},
        simulator={"port": 0},
        operations={"port": 0},
    )
    async with AsyncExitStack() as stack:
        yield await start_roles(stack, settings, role="all")


async def test_inbound_sms_reaches_the_inbound_queue(
    running: Roles, amqp: AbstractRobustConnection
) -> None:
    assert running.simulator is not None
    channel = await amqp.channel()
    queue = await channel.get_queue(running.settings.broker.inbound_queue, ensure=False)

    record = running.simulator.inject_inbound(from_=PEER, to=SENDER, text="hello bridge")

    [event] = await next_events(queue)
    assert event["type"] == EventType.MESSAGE_RECEIVED
    assert event["subject"] == record.id
    assert event["data"]["from"] == PEER
    assert event["data"]["text"] == "hello bridge"


async def test_send_command_gets_a_result_and_status_events(
    running: Roles, amqp: AbstractRobustConnection
) -> None:
    broker = running.settings.broker
    channel = await amqp.channel(publisher_confirms=True)
    results = await channel.get_queue(broker.send_queue + broker.results_suffix, ensure=False)
    statuses = await channel.get_queue(broker.status_queue, ensure=False)
    command = {"from": SENDER, "to": PEER, "text": "hi", "receiptRequested": "all"}

    await channel.default_exchange.publish(
        aio_pika.Message(orjson.dumps(command), message_id="cmd-runtime-1"),
        routing_key=broker.send_queue,
    )

    [result] = await next_events(results)
    assert result["type"] == EventType.SEND_SUCCEEDED
    assert result["subject"] == "cmd-runtime-1"
    assert result["data"]["commandId"] == "cmd-runtime-1"
    seen = await next_events(statuses, 3)
    assert [e["type"] for e in seen] == [
        EventType.MESSAGE_SENDING,
        EventType.MESSAGE_SENT,
        EventType.MESSAGE_DELIVERED,
    ]
    assert {e.get("correlationid") for e in seen} == {"cmd-runtime-1"}


async def test_one_operations_server_reports_every_role(running: Roles) -> None:
    assert running.receiver is not None
    async with aiohttp.ClientSession(timeout=aiohttp.ClientTimeout(total=10)) as http:
        async with http.get(running.operations.base_url + "/readyz") as response:
            assert response.status == 200
            report = await response.json()
        async with http.get(running.operations.base_url + "/metrics") as response:
            metrics = await response.text()
        async with http.get(running.receiver.base_url + "/metrics") as response:
            assert response.status == 404  # the callback port serves callbacks
    assert report["status"] == "ready"
    assert report["receiver"]["broker"] == "ready"
    assert report["worker"]["state"] == "running"
    assert "bridge_receiver_broker_ready 1.0" in metrics
    assert "bridge_worker_ready 1.0" in metrics


def test_embedded_settings_give_the_receiver_credentials() -> None:
    settings = embedded_settings(load_settings())
    receiver = settings.receiver
    assert receiver.username == "catapult"
    assert receiver.password is not None
    assert len(receiver.password.get_secret_value()) >= 20
    assert settings.catapult.dashboard_account_id == settings.simulator.dashboard_account_id
    url = callback_url(settings, "http://127.0.0.1:8080")
    assert url.startswith("http://catapult:")
    assert url.endswith("@127.0.0.1:8080/catapult/messages")


def test_configured_credentials_are_kept() -> None:
    settings = embedded_settings(
        load_settings(receiver={"username": "me", "password": "pa:ss/word", "path_token": "tok en"})
    )
    assert settings.receiver.username == "me"
    url = callback_url(settings, "http://10.0.0.1:9000/")
    assert url == "http://me:pa%3Ass%2Fword@10.0.0.1:9000/catapult/messages/tok%20en"


async def test_bridge_run_stops_cleanly_on_sigterm(make_settings: Any) -> None:
    settings: Settings = make_settings()
    broker = settings.broker
    env = {
        **os.environ,
        "BRIDGE_BROKER__URL": broker.url.get_secret_value(),
        "BRIDGE_BROKER__EVENTS_EXCHANGE": broker.events_exchange,
        "BRIDGE_BROKER__DEAD_LETTER_EXCHANGE": broker.dead_letter_exchange,
        "BRIDGE_BROKER__INBOUND_QUEUE": broker.inbound_queue,
        "BRIDGE_BROKER__STATUS_QUEUE": broker.status_queue,
        "BRIDGE_BROKER__SEND_QUEUE": broker.send_queue,
        "BRIDGE_BROKER__IMPORT_QUEUE": broker.import_queue,
        "BRIDGE_RECEIVER__HOST": "127.0.0.1",
        "BRIDGE_RECEIVER__PORT": "0",
        "BRIDGE_RECEIVER__SPOOL_DIR": str(settings.receiver.spool_dir),
        "BRIDGE_SIMULATOR__PORT": "0",
        "BRIDGE_OPERATIONS__PORT": "0",
    }
    process = await asyncio.create_subprocess_exec(
        sys.executable,
        "-m",
        "bridge.cli",
        "run",
        env=env,
        stderr=asyncio.subprocess.PIPE,
    )
    assert process.stderr is not None
    try:
        async with asyncio.timeout(20):
            while b"bridge running" not in (line := await process.stderr.readline()):
                assert line, "bridge run exited before it was running"
        process.send_signal(signal.SIGTERM)
        async with asyncio.timeout(30):
            rest = await process.stderr.read()
            code = await process.wait()
    finally:
        if process.returncode is None:
            process.kill()
            await process.wait()
    assert code == 0, rest.decode()
    assert b"bridge stopped" in rest


@pytest.mark.parametrize(("role", "says_send"), [("receiver", False), ("all", True)])
async def test_embedded_start_log_fits_the_role_and_gives_the_callback_credentials(
    make_settings: Any, caplog: pytest.LogCaptureFixture, role: str, says_send: bool
) -> None:
    settings: Settings = make_settings(
        receiver={"host": "127.0.0.1", "port": 0}, simulator={"port": 0}, operations={"port": 0}
    )
    caplog.set_level("INFO", logger="bridge.runtime")
    async with AsyncExitStack() as stack:
        roles = await start_roles(stack, settings, role=role)
        assert roles.receiver is not None
        lines = [r.getMessage() for r in caplog.records if r.name == "bridge.runtime"]
        password = roles.settings.receiver.password
        assert password is not None
        # A receiver alone has no worker to send with; the generated credentials are told,
        # so a callback can be tried by hand, and they open this receiver.
        assert any("Send with" in line for line in lines) is says_send
        [told] = [line for line in lines if "callback credentials" in line]
        assert f"catapult:{password.get_secret_value()}" in told
        url = f"{roles.receiver.base_url}{roles.settings.receiver.path}"
        token = base64.b64encode(f"catapult:{password.get_secret_value()}".encode()).decode()
        headers = {"Authorization": f"Basic {token}"}
        async with (
            aiohttp.ClientSession() as http,
            http.post(url, json=[], headers=headers) as answer,
        ):
            assert answer.status != 401


async def test_configured_credentials_are_never_logged(
    make_settings: Any, caplog: pytest.LogCaptureFixture
) -> None:
    settings: Settings = make_settings(
        receiver={"host": "127.0.0.1", "port": 0, "username": "me", "password": "mine-Xq81"},
        simulator={"port": 0},
        operations={"port": 0},
    )
    caplog.set_level("DEBUG")
    async with AsyncExitStack() as stack:
        await start_roles(stack, settings, role="receiver")
    assert "mine-Xq81" not in caplog.text

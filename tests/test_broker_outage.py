"""No role exits because RabbitMQ is away: at start, or cut while it runs, each role waits.

The bridge reaches the broker through a TCP proxy the test cuts and restores (the real broker,
which other tests use, stays up); the test itself publishes and reads through its own direct
connection. Reconnection is quick (``broker.reconnect_delay_s`` 0.05 s, at most 0.2 s), and every
wait is on a queue, a result, a log line or a process, with a deadline.
"""

from __future__ import annotations

import asyncio
import logging
import os
import re
import signal
import sys
from collections.abc import AsyncIterator, Callable
from contextlib import AsyncExitStack
from typing import Any

import aio_pika
import aiohttp
import orjson
import pytest
from aio_pika.abc import AbstractRobustConnection
from aiohttp.test_utils import TestClient, TestServer

from bridge.broker import Topology, declare_topology
from bridge.runtime import start_roles
from bridge.settings import Settings
from bridge.worker import create_health_app
from tests.fixtures.broker import link_log
from tests.fixtures.receiver import AUTH_HEADERS, CREDENTIALS, BrokerProxy, EventQueues
from tests.fixtures.worker import MakeWorkerEnv, WorkerEnv, send_body

pytestmark = pytest.mark.fault


def quick_reconnect(proxy: BrokerProxy) -> dict[str, Any]:
    return {
        "url": proxy.url(),
        "reconnect_delay_s": 0.05,
        "reconnect_max_delay_s": 0.2,
        "connect_timeout_s": 1.0,
        "confirm_timeout_s": 1.0,
    }


async def metric(http: TestClient[Any, Any], name: str) -> float:
    text = await (await http.get("/metrics")).text()
    found = re.search(rf"^{name} (\S+)$", text, re.MULTILINE)
    assert found is not None, text
    return float(found.group(1))


def sends_of(env: WorkerEnv, command_id: str) -> int:
    return len(env.sent_with_tag_of(command_id))


def result_ids(env: WorkerEnv, command_id: str) -> set[str | None]:
    """The event ids of a command's results: one, though a result confirmed just before the
    connection went may come twice (its ack was lost; the same event, for consumers to drop)."""
    return {m.message_id for m in env.results.by_key.get(command_id, [])}


async def test_the_worker_waits_out_a_broker_cut_and_consumes_again(
    make_worker_env: MakeWorkerEnv, broker_proxy: BrokerProxy
) -> None:
    env = await make_worker_env(broker=quick_reconnect(broker_proxy))
    async with TestClient(TestServer(create_health_app(env.worker))) as http:
        before = await env.publish(send_body("before"))
        assert before is not None
        await env.result(before)
        assert (await http.get("/readyz")).status == 200
        assert await metric(http, "bridge_worker_ready") == 1.0

        with link_log() as log:
            await broker_proxy.cut()
            await log.wait_for("lost the connection")
            assert not env.worker.is_ready
            assert (await http.get("/readyz")).status == 503
            assert await metric(http, "bridge_worker_ready") == 0.0
            during = [await env.publish(send_body(f"during {n}")) for n in range(5)]
            await log.wait_for("still not reachable", 3)  # it keeps trying, quietly
            await broker_proxy.restore()
            await log.wait_for("connected to RabbitMQ")
            results = await env.results_for([c for c in during if c is not None])

        assert {r["data"]["outcome"] for r in results.values()} == {"succeeded"}
        assert len(log.loud()) == 1, log.loud()  # the loss, said once
        assert len(log.matching("connected to RabbitMQ", level=logging.INFO)) == 1
        assert (await http.get("/readyz")).status == 200
        assert await metric(http, "bridge_worker_ready") == 1.0
        for command_id in [before, *during]:
            assert command_id is not None
            assert len(result_ids(env, command_id)) == 1
            assert sends_of(env, command_id) == 1


async def test_commands_held_when_the_channel_is_lost_are_not_sent_from_it(
    make_worker_env: MakeWorkerEnv, broker_proxy: BrokerProxy
) -> None:
    # Two sends a second from one number, all held in memory: most are waiting their turn when
    # the connection goes. Those belong to a lost channel (the broker delivers them again), so
    # none may be sent from it; each is sent once, after its redelivery is looked up.
    env = await make_worker_env(
        broker=quick_reconnect(broker_proxy),
        worker={"number_messages_per_s": 2, "hold_s": 30},
    )
    ids = [await env.publish(send_body(f"held {n}")) for n in range(6)]
    first = ids[0]
    assert first is not None
    await env.result(first)
    with link_log() as log:
        await broker_proxy.cut()
        await log.wait_for("lost the connection")
        # Over a second of outage (the backoff's pauses add up), time for several sends at 2/s.
        await log.wait_for("still not reachable", 8)
        await broker_proxy.restore()
        await log.wait_for("connected to RabbitMQ")
    results = await env.results_for([i for i in ids if i is not None], timeout_s=20)
    for command_id in ids:
        assert command_id is not None
        assert len(result_ids(env, command_id)) == 1
        assert sends_of(env, command_id) == 1
    # Found by the look-up after its redelivery: only a send that was in flight at the cut. A
    # held command sent from the lost channel during the outage would be found this way too.
    recovered = [i for i, r in results.items() if r["data"].get("recovered")]
    assert len(recovered) <= 1, recovered


async def test_the_worker_starts_while_the_broker_is_away(
    make_worker_env: MakeWorkerEnv, broker_proxy: BrokerProxy
) -> None:
    await broker_proxy.cut()
    env = await make_worker_env(broker=quick_reconnect(broker_proxy), start=False)
    with link_log() as log:
        await env.worker.start()  # returns: the worker waits for the broker, it does not exit
        assert not env.worker.is_ready
        command_id = await env.publish(send_body("sent while the worker waited"))
        assert command_id is not None
        await log.wait_for("still not reachable", 2)
        await broker_proxy.restore()
        result = await env.result(command_id, timeout_s=10)
    assert result["data"]["outcome"] == "succeeded"
    assert env.worker.is_ready
    assert len(log.loud()) == 1, log.loud()


async def test_a_consumer_the_broker_cancels_comes_back(
    make_worker_env: MakeWorkerEnv, amqp: AbstractRobustConnection
) -> None:
    # Deleting a consumed queue makes RabbitMQ cancel its consumers (basic.cancel); the worker
    # declares the topology again and consumes the new queue.
    env = await make_worker_env(broker={"reconnect_delay_s": 0.05, "reconnect_max_delay_s": 0.2})
    with link_log() as log:
        channel = await amqp.channel()
        await channel.queue_delete(env.topology.send_queue)
        await channel.close()
        await log.wait_for("connected to RabbitMQ")
    command_id = await env.publish(send_body("after the queue came back"))
    assert command_id is not None
    assert (await env.result(command_id))["data"]["outcome"] == "succeeded"


@pytest.fixture
async def all_roles(
    make_settings: Callable[..., Settings], broker_proxy: BrokerProxy
) -> AsyncIterator[Callable[[], Any]]:
    async with AsyncExitStack() as stack:

        async def start() -> Any:
            settings = make_settings(
                broker=quick_reconnect(broker_proxy),
                receiver={**CREDENTIALS, "host": "127.0.0.1", "port": 0, "retry_interval_s": 0.1},
                simulator={"port": 0},
                operations={"port": 0},
            )
            return await start_roles(stack, settings, role="all")

        yield start


async def read_events(queues: EventQueues, count: int) -> list[dict[str, Any]]:
    return [orjson.loads(m.body) for m in await queues.take(queues.inbound, count)]


async def read_new_events(
    queues: EventQueues, seen: set[str], count: int = 1
) -> list[dict[str, Any]]:
    """The next ``count`` inbound events whose ids are not in ``seen`` (added to it).

    Across a broker cut an event may be published again (its confirm was lost with the
    connection): at least once, consumers drop it by id. Such a copy is skipped, not counted.
    """
    events: list[dict[str, Any]] = []
    async with asyncio.timeout(30):
        while len(events) < count:
            [event] = await read_events(queues, 1)
            if event["id"] not in seen:
                seen.add(event["id"])
                events.append(event)
    return events


async def test_both_roles_start_while_the_broker_is_away_and_ride_out_a_cut(
    all_roles: Callable[[], Any],
    broker_proxy: BrokerProxy,
    amqp: AbstractRobustConnection,
    callback_client: aiohttp.ClientSession,
    event_queues: Callable[[Settings], Any],
) -> None:
    await broker_proxy.cut()
    roles = await all_roles()  # starts: the receiver serves, the worker waits
    assert roles.receiver is not None
    assert roles.simulator is not None
    settings = roles.settings
    queues: EventQueues = await event_queues(settings)
    results = await amqp.channel()
    results_queue = await results.get_queue(
        Topology.from_settings(settings).results_queue(settings.broker.send_queue), ensure=False
    )

    def inbound(text: str) -> None:
        roles.simulator.inject_inbound(from_="+15555550123", to="+19195550100", text=text)

    async def command(text: str) -> str:
        channel = await amqp.channel(publisher_confirms=True)
        command_id = f"cmd-{text.replace(' ', '-')}"
        body = {"from": "+19195550100", "to": "+15555550123", "text": text}
        await channel.default_exchange.publish(
            aio_pika.Message(orjson.dumps(body), message_id=command_id),
            routing_key=settings.broker.send_queue,
        )
        await channel.close()
        return command_id

    seen_results: set[str] = set()
    seen_events: set[str] = set()

    async def result_subjects(count: int) -> list[str]:
        """The subjects of the next ``count`` results not seen before (a result may come again
        across a cut: at least once, consumers drop it by id)."""
        subjects = []
        async with asyncio.timeout(30), results_queue.iterator() as messages:
            async for message in messages:
                await message.ack()
                result = orjson.loads(message.body)
                if result["id"] in seen_results:
                    continue
                seen_results.add(result["id"])
                subjects.append(result["subject"])
                if len(subjects) == count:
                    break
        return subjects

    async with callback_client.get(roles.operations.base_url + "/readyz") as response:
        assert response.status == 503
        report = await response.json()
        assert (report["receiver"]["broker"], report["worker"]["broker"]) == (
            "connecting",
            "connecting",
        )
    inbound("while away at start")
    sent_early = await command("while away at start")
    await broker_proxy.restore()
    assert [e["data"]["text"] for e in await read_new_events(queues, seen_events)] == [
        "while away at start"
    ]
    assert await result_subjects(1) == [sent_early]

    await broker_proxy.cut()
    async with callback_client.post(
        roles.receiver.callback_url,
        json={
            "eventType": "sms",
            "direction": "in",
            "messageId": "m-cut0001",
            "from": "+15555550123",
            "to": "+19195550100",
            "text": "during the cut",
            "time": "2026-01-01T00:00:00Z",
            "state": "received",
        },
        headers=AUTH_HEADERS,
    ) as response:
        assert response.status == 200
        assert (await response.json())["status"] == "spooled"
    sent_during = await command("during the cut")
    await broker_proxy.restore()
    assert [e["data"]["text"] for e in await read_new_events(queues, seen_events)] == [
        "during the cut"
    ]
    assert await result_subjects(1) == [sent_during]
    async with callback_client.get(roles.operations.base_url + "/readyz") as response:
        assert response.status == 200
    await results.close()


async def test_bridge_run_starts_while_the_broker_is_away_and_rides_out_a_cut(
    make_settings: Callable[..., Settings],
    broker_proxy: BrokerProxy,
    amqp: AbstractRobustConnection,
    callback_client: aiohttp.ClientSession,
    event_queues: Callable[[Settings], Any],
) -> None:
    settings = make_settings(broker=quick_reconnect(broker_proxy))
    broker = settings.broker
    env = {
        **{k: v for k, v in os.environ.items() if not k.startswith("BRIDGE_")},
        "BRIDGE_BROKER__URL": broker.url.get_secret_value(),
        "BRIDGE_BROKER__RECONNECT_DELAY_S": "0.05",
        "BRIDGE_BROKER__RECONNECT_MAX_DELAY_S": "0.2",
        "BRIDGE_BROKER__CONNECT_TIMEOUT_S": "1",
        "BRIDGE_BROKER__EVENTS_EXCHANGE": broker.events_exchange,
        "BRIDGE_BROKER__DEAD_LETTER_EXCHANGE": broker.dead_letter_exchange,
        "BRIDGE_BROKER__INBOUND_QUEUE": broker.inbound_queue,
        "BRIDGE_BROKER__STATUS_QUEUE": broker.status_queue,
        "BRIDGE_BROKER__SEND_QUEUE": broker.send_queue,
        "BRIDGE_BROKER__IMPORT_QUEUE": broker.import_queue,
        "BRIDGE_RECEIVER__HOST": "127.0.0.1",
        "BRIDGE_RECEIVER__PORT": "0",
        "BRIDGE_RECEIVER__USERNAME": CREDENTIALS["username"],
        "BRIDGE_RECEIVER__PASSWORD": CREDENTIALS["password"],
        "BRIDGE_RECEIVER__SPOOL_DIR": str(settings.receiver.spool_dir),
        "BRIDGE_SIMULATOR__PORT": "0",
        "BRIDGE_OPERATIONS__PORT": "0",
    }
    await broker_proxy.cut()
    process = await asyncio.create_subprocess_exec(
        sys.executable, "-m", "bridge.cli", "run",
        env=env,
        stdin=asyncio.subprocess.DEVNULL,
        stdout=asyncio.subprocess.DEVNULL,
        stderr=asyncio.subprocess.PIPE,
    )  # fmt: skip
    assert process.stderr is not None
    lines: list[str] = []
    callback_url = ""
    try:
        async with asyncio.timeout(20):
            while "bridge running" not in (line := (await process.stderr.readline()).decode()):
                assert line, "bridge run exited:\n" + "".join(lines)
                lines.append(line)
                if found := re.search(r"receiver listening on (\S+)", line):
                    callback_url = found.group(1)
        assert callback_url, "".join(lines)
        reader = asyncio.create_task(process.stderr.read())

        inbound = {
            "eventType": "sms",
            "direction": "in",
            "messageId": "m-away0001",
            "from": "+15555550123",
            "to": "+19195550100",
            "text": "posted while RabbitMQ was away",
            "time": "2026-01-01T00:00:00Z",
            "state": "received",
        }
        async with callback_client.post(callback_url, json=inbound, headers=AUTH_HEADERS) as answer:
            assert answer.status == 200
            assert (await answer.json())["status"] == "spooled"
        await broker_proxy.restore()

        channel = await amqp.channel(publisher_confirms=True)
        await declare_topology(channel, Topology.from_settings(settings))
        command = {"from": "+19195550100", "to": "+15555550123", "text": "published after"}
        await channel.default_exchange.publish(
            aio_pika.Message(orjson.dumps(command), message_id="cmd-after-away"),
            routing_key=broker.send_queue,
        )
        results = await channel.get_queue(broker.send_queue + broker.results_suffix, ensure=False)

        async def result_subject() -> str:
            async with asyncio.timeout(15), results.iterator() as messages:
                async for message in messages:
                    await message.ack()
                    return str(orjson.loads(message.body)["subject"])
            raise AssertionError("the results queue was cancelled")

        assert await result_subject() == "cmd-after-away"
        queues: EventQueues = await event_queues(settings)
        [event] = await read_events(queues, 1)
        assert event["data"]["text"] == "posted while RabbitMQ was away"

        # The broker cut while it runs: callbacks are spooled, commands wait in their queue,
        # and both go through once it is back. The test's own connection is direct.
        await broker_proxy.cut()
        during = {**inbound, "messageId": "m-cut00001", "text": "posted during the cut"}
        async with callback_client.post(callback_url, json=during, headers=AUTH_HEADERS) as answer:
            assert answer.status == 200
            assert (await answer.json())["status"] == "spooled"
        command = {**command, "text": "published during the cut"}
        await channel.default_exchange.publish(
            aio_pika.Message(orjson.dumps(command), message_id="cmd-during-cut"),
            routing_key=broker.send_queue,
        )
        await broker_proxy.restore()
        assert await result_subject() == "cmd-during-cut"
        [event] = await read_events(queues, 1)
        assert event["data"]["text"] == "posted during the cut"
        await channel.close()

        process.send_signal(signal.SIGTERM)
        async with asyncio.timeout(30):
            code = await process.wait()
            rest = (await reader).decode()
    finally:
        if process.returncode is None:
            process.kill()
            await process.wait()
    assert code == 0, "".join(lines) + rest
    assert "cannot start" not in "".join(lines) + rest

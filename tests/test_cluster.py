"""The tests' own three-node RabbitMQ cluster, and what the bridge relies on it for.

Quorum queues keep every confirmed message when a node goes (the leader included), and a stopped
node rejoins the cluster when it starts again. The bridge's own failover tests build on these.

The bridge on the cluster: the worker and the receiver are given every node (``broker.urls``)
and connect to the first; the test publishes commands and reads results and status events
through the third. Under load the first node is stopped: both roles move to the next node, the
quorum queues elect new leaders and keep what they confirmed, and every command is sent exactly
once (what the lost connection held unacked is redelivered and looked up before anything is
sent), with its result and the status callbacks of its message in their queues. (One file, so
that a parallel run starts the cluster once.)
"""

from __future__ import annotations

import asyncio
import uuid
from collections.abc import AsyncIterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import aio_pika
import orjson
import pytest
from aio_pika.abc import AbstractChannel, AbstractIncomingMessage, AbstractRobustConnection

from bridge.broker import Topology, declare_topology
from bridge.catapult import CatapultClient
from bridge.events.tag import decode_tag
from bridge.receiver import ReceiverServer
from bridge.settings import Settings, load_settings
from bridge.simulator import Simulator
from bridge.worker import Worker
from tests.fixtures.broker import delete_topology, link_log
from tests.fixtures.receiver import CREDENTIALS, PASSWORD, USERNAME
from tests.fixtures.simulator import MakeSimulator
from tests.fixtures.worker import TEST_WORKER, catapult_settings_for, send_body
from tests.rabbitmq_nodes import RabbitCluster

QUORUM: dict[str, Any] = {"x-queue-type": "quorum"}


async def test_the_cluster_runs_three_nodes_that_share_one_quorum_queue(
    cluster: RabbitCluster,
) -> None:
    assert sorted(cluster.running_nodes()) == [n.name for n in cluster.nodes]
    name = f"t-{uuid.uuid4().hex[:10]}.members"
    connection = await aio_pika.connect(cluster.urls[0], timeout=10)
    try:
        channel = await connection.channel()
        await channel.declare_queue(name, durable=True, arguments=QUORUM)
        status = await asyncio.to_thread(
            cluster.nodes[0].ctl, "list_queues", "name", "members", "--quiet", "--no-table-headers"
        )
        members = next(line for line in status.splitlines() if line.startswith(name))
        assert all(node.name in members for node in cluster.nodes), members
        await channel.queue_delete(name)
    finally:
        await connection.close()


async def test_a_quorum_queue_keeps_confirmed_messages_when_its_leader_node_stops(
    cluster: RabbitCluster,
) -> None:
    name = f"t-{uuid.uuid4().hex[:10]}.leader-loss"
    first = await aio_pika.connect(cluster.urls[0], timeout=10)
    channel = await first.channel(publisher_confirms=True)
    # Declared through node 1: its leader is on node 1 (the default leader locator is the
    # client's node).
    await channel.declare_queue(name, durable=True, arguments=QUORUM)
    bodies = [f"m{i}".encode() for i in range(200)]
    await asyncio.gather(
        *(
            channel.default_exchange.publish(
                aio_pika.Message(b, delivery_mode=aio_pika.DeliveryMode.PERSISTENT),
                routing_key=name,
            )
            for b in bodies
        )
    )
    closed = asyncio.Event()
    first.close_callbacks.add(lambda *_: closed.set())
    await asyncio.to_thread(cluster.stop_node, 0)
    async with asyncio.timeout(30):
        await closed.wait()  # the client sees its node go

    second = await aio_pika.connect(cluster.urls[1], timeout=10)
    try:
        channel = await second.channel()
        queue = await channel.get_queue(name, ensure=False)
        got: list[bytes] = []
        async with asyncio.timeout(30):
            # The other two members elect a new leader; until then the queue does not answer.
            async with queue.iterator() as messages:
                async for message in messages:
                    got.append(message.body)
                    await message.ack()
                    if len(got) == len(bodies):
                        break
        assert got == bodies
        await channel.queue_delete(name)
    finally:
        await second.close()

    await asyncio.to_thread(cluster.start_node, 0)
    assert sorted(cluster.running_nodes()) == [n.name for n in cluster.nodes]


COMMANDS = 60
STOP_AFTER = 20  # results in before the node stops: the rest are sent across the failover
SENDER = "+19195550301"


@dataclass
class Seen:
    """Messages of one queue by a key, and an event set whenever one arrives."""

    by_key: dict[str, list[AbstractIncomingMessage]] = field(default_factory=dict)
    arrived: asyncio.Event = field(default_factory=asyncio.Event)

    def key_of(self, message: AbstractIncomingMessage) -> str:
        headers = message.headers or {}
        command = headers.get("x-bridge-command-id")
        if command is not None:
            return str(command)
        return str(orjson.loads(message.body)["subject"])

    async def on_message(self, message: AbstractIncomingMessage) -> None:
        self.by_key.setdefault(self.key_of(message), []).append(message)
        await message.ack()
        self.arrived.set()

    async def wait_until(self, count: int, *, timeout_s: float) -> None:
        async with asyncio.timeout(timeout_s):
            while len(self.by_key) < count:
                self.arrived.clear()
                await self.arrived.wait()


@pytest.fixture
async def on_third_node(cluster: RabbitCluster) -> AsyncIterator[AbstractRobustConnection]:
    connection = await aio_pika.connect_robust(cluster.urls[2], timeout=10)
    yield connection
    await connection.close()


def cluster_settings(cluster: RabbitCluster, simulator: Simulator, tmp_path: Path) -> Settings:
    unique = uuid.uuid4().hex[:10]
    return load_settings(
        broker={
            "urls": cluster.urls,
            "events_exchange": f"t-{unique}.events",
            "dead_letter_exchange": f"t-{unique}.dead-letter",
            "inbound_queue": f"t-{unique}.inbound.sms",
            "status_queue": f"t-{unique}.outbound.status",
            "send_queue": f"t-{unique}.outbound.sms",
            "import_queue": f"t-{unique}.outbound.import",
            "reconnect_delay_s": 0.05,
            "reconnect_max_delay_s": 0.5,
            "connect_timeout_s": 5.0,
            "confirm_timeout_s": 5.0,
        },
        receiver={**CREDENTIALS, "spool_dir": str(tmp_path / "spool")},
        worker={**TEST_WORKER, "concurrency": 4, "batch_max": 1},
        catapult=catapult_settings_for(simulator),
    )


async def test_sends_and_callbacks_go_on_when_the_connected_node_stops(
    cluster: RabbitCluster,
    on_third_node: AbstractRobustConnection,
    make_simulator: MakeSimulator,
    tmp_path: Path,
) -> None:
    simulator = await make_simulator()
    settings = cluster_settings(cluster, simulator, tmp_path)
    topology = Topology.from_settings(settings)
    channel: AbstractChannel = await on_third_node.channel(publisher_confirms=True)
    await declare_topology(channel, topology)
    results, statuses = Seen(), Seen()
    for name, seen in (
        (topology.results_queue(topology.send_queue), results),
        (settings.broker.status_queue, statuses),
    ):
        queue = await channel.get_queue(name, ensure=False)
        await queue.consume(seen.on_message)

    receiver = ReceiverServer(settings, host="127.0.0.1", port=0)
    await receiver.start()
    host = receiver.base_url.removeprefix("http://")
    app = simulator.add_application(
        incoming_message_url=f"http://{USERNAME}:{PASSWORD}@{host}{settings.receiver.path}"
    )
    simulator.add_number(SENDER, application_id=app.id)
    client = CatapultClient.from_settings(settings.catapult)
    worker = Worker(settings, client)
    ids = [uuid.uuid4().hex for _ in range(COMMANDS)]
    try:
        with link_log() as log:
            await worker.start()
            assert worker.is_ready
            assert ":5690" in log.matching("connected to RabbitMQ")[0].getMessage()

            async def publish_all() -> None:
                for n, command_id in enumerate(ids):
                    await channel.default_exchange.publish(
                        aio_pika.Message(
                            orjson.dumps(send_body(f"failover {n}", sender=SENDER)),
                            message_id=command_id,
                            delivery_mode=aio_pika.DeliveryMode.PERSISTENT,
                        ),
                        routing_key=topology.send_queue,
                    )

            publishing = asyncio.create_task(publish_all())
            await results.wait_until(STOP_AFTER, timeout_s=30)
            assert len(results.by_key) < COMMANDS  # the node stops under load
            await asyncio.to_thread(cluster.stop_node, 0)
            await log.wait_for("lost the connection", 2, timeout_s=30)  # worker and receiver
            await publishing
            await results.wait_until(COMMANDS, timeout_s=90)
            # Every outbound message's status callbacks, published through the receiver.
            await statuses.wait_until(COMMANDS, timeout_s=60)
            reconnected = log.matching("connected to RabbitMQ")
            assert any(":5691" in r.getMessage() for r in reconnected), [
                r.getMessage() for r in reconnected
            ]
    finally:
        await worker.stop()
        await client.close()
        await receiver.stop()

    sent: dict[str, int] = {}
    for message in simulator.state.messages.values():
        command_id = decode_tag(message.tag).command_id
        if command_id is not None:
            sent[command_id] = sent.get(command_id, 0) + 1
    assert sent == dict.fromkeys(ids, 1)  # each sent once, none lost
    for command_id in ids:
        events: list[dict[str, Any]] = [orjson.loads(m.body) for m in results.by_key[command_id]]
        # A result confirmed just before the node went may come twice: the same event id.
        assert {e["id"] for e in events} == {events[0]["id"]}
        assert events[0]["data"]["outcome"] == "succeeded"
    message_ids = {str(m.id) for m in simulator.state.messages.values()}
    assert set(statuses.by_key) == message_ids
    await channel.close()
    await delete_topology(on_third_node, topology)

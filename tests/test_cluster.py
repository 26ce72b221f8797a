"""The tests' own three-node RabbitMQ cluster, and what the bridge relies on it for.

Quorum queues keep every confirmed message when a node goes (the leader included), and a stopped
node rejoins the cluster when it starts again. The bridge's own failover tests build on these.
"""

from __future__ import annotations

import asyncio
import uuid
from typing import Any

import aio_pika

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

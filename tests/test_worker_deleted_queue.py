"""A queue the worker settles into is deleted under it: no hot loop, and the command still ends.

Deleting the results queue makes every result unroutable. The worker must not give the command
back at once (it would come back redelivered, be looked up at Catapult and fail the same way, in
a loop): it declares the topology again, once for every settle waiting on it, and tries again
after pauses that grow while the queue cannot come back. Here it cannot for a while: another
connection holds an exclusive queue of that name, so the declaration is refused; the test counts
look-ups and give-backs meanwhile, then lets the queue come back.
"""

from __future__ import annotations

import asyncio

import aio_pika
import orjson
import pytest
from aio_pika.abc import AbstractRobustConnection

from tests.fixtures.broker import link_log
from tests.fixtures.worker import MakeWorkerEnv, WorkerEnv, send_body

pytestmark = pytest.mark.fault


def lookups(env: WorkerEnv) -> int:
    requests = env.simulator.state.requests
    return sum(1 for r in requests if r.method == "GET" and r.path.endswith("/messages"))


@pytest.mark.parametrize("queue_kind", ["results", "dead letters"])
async def test_a_deleted_queue_is_declared_again_without_a_hot_loop(
    make_worker_env: MakeWorkerEnv,
    amqp: AbstractRobustConnection,
    amqp_url: str,
    queue_kind: str,
) -> None:
    env = await make_worker_env(broker={"reconnect_delay_s": 0.05, "reconnect_max_delay_s": 0.4})
    topology = env.topology
    if queue_kind == "results":
        queue = topology.results_queue(topology.send_queue)
        body = send_body("a result with nowhere to go")
    else:
        queue = topology.dead_letter_queue(topology.send_queue)
        body = {"from": "+19195550001", "to": "+19195559999"}  # no text: dead-lettered
    registry = env.worker.metrics.registry

    blocker = await aio_pika.connect(amqp_url)
    with link_log() as log:
        try:
            channel = await blocker.channel()
            await channel.queue_delete(queue)
            # An exclusive queue of that name, on another connection: declaring it is refused.
            await channel.declare_queue(
                queue, exclusive=True, arguments={"x-queue-type": "classic"}
            )
            command_id = await env.publish(body)
            assert command_id is not None
            await log.wait_for("cannot declare the topology again", 4, timeout_s=20)
            assert lookups(env) == 0  # never given back, so never redelivered and looked up
            assert registry.get_sample_value("bridge_worker_given_back_total") == 0
            if queue_kind == "results":
                assert env.result_count(command_id) == 0
        finally:
            await blocker.close()  # the exclusive queue goes with its connection
        await log.wait_for("declared the topology again", timeout_s=20)

    # The env's own consumer of the deleted queue went with it: read the queue back directly.
    channel = await amqp.channel()
    arrived = await channel.get_queue(queue, ensure=False)
    async with asyncio.timeout(20), arrived.iterator() as messages:
        async for message in messages:
            await message.ack()
            break
    await channel.close()
    if queue_kind == "results":
        event = orjson.loads(message.body)
        assert (event["subject"], event["data"]["outcome"]) == (command_id, "succeeded")
    else:
        assert message.headers["x-bridge-command-id"] == command_id
        assert (await env.result(command_id))["data"]["outcome"] == "failed"
    assert lookups(env) == 0
    assert len(env.sent_with_tag_of(command_id)) == (1 if queue_kind == "results" else 0)

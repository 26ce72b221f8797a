"""What RabbitMQ dead-letters itself (its delivery limit, an expired command) still ends as a
result and a redacted dead letter, and no raw body lands in a queue an application reads."""

from __future__ import annotations

import asyncio
from collections.abc import Callable

import orjson
from aio_pika.abc import AbstractIncomingMessage, AbstractRobustConnection, ExchangeType

from bridge.broker import Topology
from bridge.events.cloudevents import EventType
from bridge.logs import RESULTS_LOGGER
from bridge.settings import Settings
from tests.fixtures.worker import MakeWorkerEnv, WorkerEnv, send_body, watch_log

PASSWORD = "limit-test-dashboard-password"
ACCOUNT = "4455667"
USER = "limit-test-user"
IMPORT = {"number": "+19195550100", "applicationId": "a-1", "name": "n"}


async def _give_back(env: WorkerEnv, queue: str, times: int) -> None:
    """Take the command and give it back ``times`` times, as a crashing consumer would."""
    deliveries: asyncio.Queue[AbstractIncomingMessage] = asyncio.Queue()
    channel = await env.connection.channel()
    try:
        amqp_queue = await channel.get_queue(queue, ensure=False)
        tag = await amqp_queue.consume(deliveries.put)
        for _ in range(times):
            message = await asyncio.wait_for(deliveries.get(), 5)
            await message.nack(requeue=True)
        await amqp_queue.cancel(tag)
    finally:
        await channel.close()


async def test_the_broker_delivery_limit_ends_in_a_result_and_a_redacted_dead_letter(
    make_worker_env: MakeWorkerEnv,
) -> None:
    env = await make_worker_env(start=False, broker={"delivery_limit": 1})
    command = {
        "number": "+19195550100",
        "applicationId": env.application_id,
        "name": "n",
        "accountId": ACCOUNT,
        "userName": USER,
        "password": PASSWORD,
    }
    imported = await env.publish(command, queue=env.topology.import_queue)
    sent = await env.publish(send_body("given back too often"))
    assert imported is not None
    assert sent is not None
    # Delivered twice and given back twice: over the limit of 1, the broker dead-letters both.
    await _give_back(env, env.topology.import_queue, 2)
    await _give_back(env, env.topology.send_queue, 2)
    with watch_log(RESULTS_LOGGER, "command dead-lettered") as dead_lines:
        await env.worker.start()
        for command_id, kind in (
            (imported, EventType.IMPORT_FAILED),
            (sent, EventType.SEND_FAILED),
        ):
            event = await env.result(command_id)
            assert event["type"] == kind
            assert event["data"]["reason"] == "delivery-limit"
            assert event["data"]["error"]["code"] == "delivery_limit"
            dead = await env.dead_letter(command_id)
            assert (dead.headers or {})["x-bridge-reason"] == "delivery-limit"
        # Each ends as every dead-lettered command does: its one line, and counted.
        lines = await dead_lines.seen_times(2)
    assert sorted(r.command_id for r in lines) == sorted((imported, sent))  # type: ignore[attr-defined]
    assert {r.reason for r in lines} == {"delivery-limit"}  # type: ignore[attr-defined]
    metrics = env.worker.metrics.registry
    dead_letters = {"reason": "delivery-limit"}
    assert metrics.get_sample_value("bridge_worker_dead_letters_total", dead_letters) == 2
    for kind_label in ("import", "send"):
        failed = {"command": kind_label, "outcome": "failed"}
        assert metrics.get_sample_value("bridge_worker_results_total", failed) == 1
    dead_import = await env.dead_letter(imported)
    assert orjson.loads(dead_import.body) == {
        "number": "+19195550100",
        "applicationId": env.application_id,
        "name": "n",
    }
    assert env.dead.count == 2
    for messages in env.dead.by_key.values():
        for message in messages:
            for secret in (PASSWORD, ACCOUNT, USER):
                assert secret.encode() not in message.body
    assert not env.simulator.state.requests  # nothing was sent late
    for queue in (env.topology.backstop_queue(q) for q in env.topology.command_queues):
        assert await env.queue_depth(queue) == 0


async def test_queues_of_the_previous_version_are_taken_as_they_are(
    make_worker_env: MakeWorkerEnv,
    make_settings: Callable[..., Settings],
    amqp: AbstractRobustConnection,
) -> None:
    """A deployment upgrading keeps its command queues: their arguments cannot change on a live
    queue (RabbitMQ refuses a declaration that differs), so the bridge must start on them, and
    a dead letter RabbitMQ makes itself must still not land raw where applications read."""
    topology = Topology.from_settings(make_settings(broker={"delivery_limit": 1}))
    channel = await amqp.channel()
    # What the previous version declared: the command queues dead-letter to the dead-letter
    # exchange under their own name, and the dead queues are bound to it under that name.
    await channel.declare_exchange(topology.dead_letter_exchange, ExchangeType.DIRECT, durable=True)
    for queue in topology.command_queues:
        await channel.declare_queue(
            queue,
            durable=True,
            arguments={
                "x-queue-type": "quorum",
                "x-dead-letter-exchange": topology.dead_letter_exchange,
                "x-dead-letter-routing-key": queue,
                "x-delivery-limit": 1,
                "x-dead-letter-strategy": "at-least-once",
                "x-overflow": "reject-publish",
            },
        )
        dead = await channel.declare_queue(
            topology.dead_letter_queue(queue), durable=True, arguments={"x-queue-type": "quorum"}
        )
        await dead.bind(topology.dead_letter_exchange, routing_key=queue)
    await channel.close()

    env = await make_worker_env(start=False, broker={"delivery_limit": 1})
    imported = await env.publish(
        {**IMPORT, "accountId": ACCOUNT, "userName": USER, "password": PASSWORD},
        queue=env.topology.import_queue,
    )
    assert imported is not None
    await _give_back(env, env.topology.import_queue, 2)
    await env.worker.start()
    assert (await env.result(imported))["data"]["reason"] == "delivery-limit"
    dead_letter = await env.dead_letter(imported)
    assert orjson.loads(dead_letter.body) == IMPORT
    assert env.dead.count == 1  # the redacted one only: the raw command went to the backstop

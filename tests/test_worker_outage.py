"""A Catapult outage: the worker stops taking commands, probes, resumes, and spends no attempt."""

from __future__ import annotations

import logging
from collections.abc import AsyncIterator

import orjson
import pytest

from bridge.worker.health import worker_readiness
from bridge.worker.outage import CatapultState
from tests.fixtures.proxy import TcpProxy
from tests.fixtures.worker import (
    OTHER_SENDER,
    SENDER,
    MakeWorkerEnv,
    WorkerEnv,
    send_body,
    watch_log,
)

pytestmark = pytest.mark.fault

OUTAGE: dict[str, object] = {
    "outage_after_failures": 3,
    "outage_probe_initial_s": 0.05,
    "outage_probe_max_s": 0.5,
}
OUTAGE_LOGGER = "bridge.worker.outage"


@pytest.fixture
async def catapult_proxy() -> AsyncIterator[TcpProxy]:
    proxy = TcpProxy()
    await proxy.restore()
    yield proxy
    await proxy.cut()


async def _env_cut_off(
    make_worker_env: MakeWorkerEnv, proxy: TcpProxy, worker: dict[str, object]
) -> WorkerEnv:
    """A worker env that reaches Catapult through ``proxy``, cut for now."""
    env = await make_worker_env(
        catapult={"base_url": f"http://127.0.0.1:{proxy.port}/v1", "connect_timeout_s": 1},
        worker=worker,
    )
    proxy.target = ("127.0.0.1", env.simulator.port)
    await proxy.cut()
    return env


def _two_senders(prefix: str, count: int) -> list[tuple[str, bytes]]:
    """``count`` send bodies by message id, from two numbers in turn."""
    return [
        (
            f"{prefix}-{n}",
            orjson.dumps(send_body(f"wait {n}", sender=(SENDER, OTHER_SENDER)[n % 2])),
        )
        for n in range(count)
    ]


async def test_commands_wait_out_a_catapult_outage_and_are_each_sent_once(
    make_worker_env: MakeWorkerEnv, catapult_proxy: TcpProxy
) -> None:
    # Catapult refuses connections while 200 sends wait: before, every one of them used its
    # attempts up on the refusals and was dead-lettered as retries-exhausted within seconds.
    env = await _env_cut_off(make_worker_env, catapult_proxy, OUTAGE)
    registry = env.worker.metrics.registry
    with (
        watch_log(OUTAGE_LOGGER, "Catapult is down") as down,
        watch_log(OUTAGE_LOGGER, "Catapult answers again") as back,
    ):
        bodies = _two_senders("outage", 200)
        await env.publish_many(bodies, queue=env.topology.send_queue)
        record = await down.seen(timeout_s=10)
        assert record.levelno == logging.WARNING
        assert env.worker.catapult_state is CatapultState.DOWN
        readiness = worker_readiness(env.worker)
        assert not readiness.is_ready
        assert readiness.report["catapult"] == "down"
        assert any("catapult down" in p for p in readiness.report["problems"])
        assert registry.get_sample_value("bridge_worker_catapult_up") == 0
        # What the worker had taken went back to RabbitMQ: nothing held, the queue not consumed.
        assert not await env.worker._in_flight.wait(10)
        assert env.worker._flow is not None
        assert env.worker._flow.held_count == 0
        channel = await env.connection.channel()
        try:
            queue = await channel.declare_queue(env.topology.send_queue, passive=True)
            assert queue.declaration_result.consumer_count == 0
        finally:
            await channel.close()
        assert env.dead.count == 0

        await catapult_proxy.restore()
        results = await env.results_for([mid for mid, _ in bodies], timeout_s=30)
        assert (await back.seen(timeout_s=1)).levelno == logging.INFO
    for command_id, event in results.items():
        data = event["data"]
        assert data["outcome"] == "succeeded", data
        # The refusals were not the command's. 2: a look-up, then the send. A quorum queue puts
        # back what was on its way to a consumer it cancels (rabbitmq-server#3746), marked
        # redelivered, and a redelivered send is looked up before it is sent.
        assert data["attempts"] in (1, 2)
        assert data["recovered"] is False
        assert len(env.sent_with_tag_of(command_id)) == 1
        assert env.result_count(command_id) == 1
    assert len(env.simulator.state.messages) == 200
    assert env.dead.count == 0
    assert len(down.records) == 1
    assert len(back.records) == 1
    assert registry.get_sample_value("bridge_worker_catapult_outages_total") == 1
    assert registry.get_sample_value("bridge_worker_catapult_up") == 1
    readiness = worker_readiness(env.worker)
    assert readiness.is_ready
    assert readiness.report["catapult"] == "up"


async def test_5xx_across_commands_is_an_outage_and_costs_them_nothing(
    make_worker_env: MakeWorkerEnv,
) -> None:
    # Every request answered 500 or 503 (without effect), for one send per request: after three
    # commands met it, Catapult is down; the probes meet it too, until the faults are cleared.
    # Only the first two spent an attempt on it, before it was known for an outage: the others
    # are at most looked up (their send may have been carried out) and sent.
    env = await make_worker_env(
        simulator={"error_rate": 1.0}, worker={**OUTAGE, "batch_max": 1, "max_attempts": 3}
    )
    with watch_log(OUTAGE_LOGGER, "Catapult is down") as down:
        ids = [await env.publish(send_body(f"5xx {n}")) for n in range(20)]
        await down.seen(timeout_s=10)
        assert not await env.worker._in_flight.wait(10)
        assert env.dead.count == 0
        env.simulator.clear_faults()
        results = await env.results_for([i for i in ids if i is not None], timeout_s=30)
    spent = 0
    for command_id, event in results.items():
        data = event["data"]
        assert data["outcome"] == "succeeded", data
        assert len(env.sent_with_tag_of(command_id)) == 1
        assert data["attempts"] <= 3
        spent += data["attempts"] == 3  # a 5xx counted, its look-up, its send
    assert spent <= 2
    assert env.dead.count == 0
    assert len(down.records) == 1


async def test_one_command_failing_alone_is_not_an_outage(make_worker_env: MakeWorkerEnv) -> None:
    # The same command answered 5xx again and again is that command's trouble: it uses its
    # attempts up as before, and Catapult is not held down.
    env = await make_worker_env(simulator={"error_rate": 1.0}, worker={**OUTAGE, "max_attempts": 4})
    command_id = await env.publish(send_body("alone"))
    assert command_id is not None
    data = (await env.result(command_id))["data"]
    assert data["reason"] == "unknown-outcome"
    assert data["attempts"] == 4
    assert env.worker.catapult_state is CatapultState.UP
    assert env.worker.metrics.registry.get_sample_value("bridge_worker_catapult_outages_total") == 0


async def test_a_sharded_worker_leaves_the_commands_in_their_shards_until_catapult_is_back(
    make_worker_env: MakeWorkerEnv, catapult_proxy: TcpProxy
) -> None:
    # Before, the shard queues were consumed all through the outage: every command taken was sent
    # back through the shortest delay tier, came back through the router and was taken again, in
    # a loop as long as the outage, each turn through the worker's memory.
    shards = 4
    env = await _env_cut_off(
        make_worker_env, catapult_proxy, {**OUTAGE, "shards": shards, "shard_warmup_s": 0}
    )
    topology = env.topology
    registry = env.worker.metrics.registry
    outage = {"command": "send", "why": "outage"}
    with (
        watch_log(OUTAGE_LOGGER, "Catapult is down") as down,
        watch_log(OUTAGE_LOGGER, "probe of Catapult failed") as probes,
    ):
        bodies = _two_senders("sharded-outage", 40)
        await env.publish_many(bodies, queue=topology.send_queue)
        await down.seen(timeout_s=10)
        assert not await env.worker._in_flight.wait(10)
        sharding = env.worker.shards
        assert sharding is not None
        assert sharding.is_paused
        assert sharding.held == []
        assert not worker_readiness(env.worker).is_ready
        # It let go of what it held; it routes all the same (routing calls no Catapult).
        assert registry.get_sample_value("bridge_worker_shards_held") == 0
        given_up = {"why": "outage"}
        assert (
            registry.get_sample_value("bridge_worker_shards_given_up_total", given_up) or 0
        ) >= 1
        assert registry.get_sample_value("bridge_worker_shard_router") == 1
        # What was on its way at the pause went back once; then nothing is taken any more.
        taken = registry.get_sample_value("bridge_worker_republished_total", outage) or 0
        assert taken <= len(bodies)
        # Six probes later (0.9 s at least, each longer than the shortest delay tier), every
        # command waits in its shard queue, none of them consumed.
        await probes.seen_times(len(probes.records) + 6, timeout_s=10)
        assert registry.get_sample_value("bridge_worker_republished_total", outage) == taken
        for i in range(shards):
            assert await env.consumer_count(topology.shard_queue(i)) == 0
        depths = [await env.queue_depth(topology.shard_queue(i)) for i in range(shards)]
        assert sum(depths) == len(bodies), depths
        assert env.worker._flow is not None
        assert env.worker._flow.held_count == 0

        await catapult_proxy.restore()
        results = await env.results_for([mid for mid, _ in bodies], timeout_s=30)
    for command_id, event in results.items():
        assert event["data"]["outcome"] == "succeeded", event["data"]
        assert len(env.sent_with_tag_of(command_id)) == 1
        assert env.result_count(command_id) == 1
    assert env.dead.count == 0
    assert not sharding.is_paused
    assert sharding.warm
    assert registry.get_sample_value("bridge_worker_shards_held") == len(sharding.held) >= 1
    assert worker_readiness(env.worker).is_ready

"""Settling on the transactional command channels: a copy and its original's ack, or neither.

A copy republished inside a transaction to a queue that does not exist is dropped by RabbitMQ at
the commit while the ack commits with it (RabbitMQ routes a transaction's publishes at the commit,
and its basic.return for a mandatory one arrives only then, after the ack has taken effect): the
command would be gone. These tests delete a delay tier under a running worker and make the next
settle need it.
"""

from __future__ import annotations

from tests.fixtures.worker import MakeWorkerEnv, send_body
from tests.test_worker_failures import _seed_failing_first


async def test_a_retry_through_a_deleted_delay_tier_is_not_lost(
    make_worker_env: MakeWorkerEnv,
) -> None:
    # The first send is answered 500/503 (no effect): the command goes through a delay tier to be
    # looked up, then sent again.
    seed = _seed_failing_first(1, then_ok=2)
    env = await make_worker_env(simulator={"error_rate": 0.5, "fault_seed": seed})
    topology = env.topology
    for delay_s in topology.retry_delays_s:
        await env.channel.queue_delete(topology.retry_queue(topology.send_queue, delay_s))
    command_id = await env.publish(send_body("through a tier that was deleted"))
    assert command_id is not None
    data = (await env.result(command_id))["data"]
    assert data["outcome"] == "succeeded"
    assert len(env.sent_with_tag_of(command_id)) == 1
    assert env.result_count(command_id) == 1


async def test_a_park_through_a_deleted_delay_tier_is_not_lost(
    make_worker_env: MakeWorkerEnv,
) -> None:
    # One number at 20 sends/s with 0.05 s held: most of 20 sends are parked.
    env = await make_worker_env(
        worker={"number_messages_per_s": 20, "hold_s": 0.05, "batch_max": 1},
    )
    topology = env.topology
    for delay_s in topology.retry_delays_s:
        await env.channel.queue_delete(topology.retry_queue(topology.send_queue, delay_s))
    ids = [await env.publish(send_body(f"parked {n}")) for n in range(20)]
    results = await env.results_for([i for i in ids if i is not None], timeout_s=15)
    assert all(r["data"]["outcome"] == "succeeded" for r in results.values())
    assert sum(env.result_count(i) for i in results) == len(ids)

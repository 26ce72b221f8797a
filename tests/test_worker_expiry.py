"""Commands with an expiry or past the maximum age are dead-lettered as expired, never sent late."""

from __future__ import annotations

import time
from datetime import UTC, datetime, timedelta

from bridge.events.cloudevents import EventType
from tests.fixtures.worker import MakeWorkerEnv, WorkerEnv, send_body


async def _expired(env: WorkerEnv, command_id: str) -> None:
    event = await env.result(command_id)
    assert event["type"] == EventType.SEND_FAILED
    assert event["data"]["reason"] == "expired"
    dead = await env.dead_letter(command_id)
    assert (dead.headers or {})["x-bridge-reason"] == "expired"
    assert not env.sent_with_tag_of(command_id)


async def test_each_way_of_expiring_a_command(make_worker_env: MakeWorkerEnv) -> None:
    env = await make_worker_env(worker={"max_age_s": 600})
    hour_ago = datetime.now(UTC) - timedelta(hours=1)
    past_ms = round((time.time() - 5) * 1000)
    by_header = await env.publish(send_body("late"), headers={"x-bridge-expires-at-ms": past_ms})
    by_expiration = await env.publish(
        send_body("late"), expiration=3600 * 2, timestamp=datetime.now(UTC) - timedelta(hours=3)
    )
    by_age = await env.publish(send_body("old"), timestamp=hour_ago)
    in_time = await env.publish(
        send_body("fresh"), expiration=60, timestamp=datetime.now(UTC), headers={}
    )
    for command_id in (by_header, by_expiration, by_age):
        assert command_id is not None
        await _expired(env, command_id)
    assert in_time is not None
    assert (await env.result(in_time))["data"]["outcome"] == "succeeded"


async def test_a_command_that_expires_while_it_waits_for_its_turn_is_not_sent(
    make_worker_env: MakeWorkerEnv,
) -> None:
    # One send every 2 s from this number: the second and third wait (held or parked in the
    # delay tiers) past their expiry of 1 s, and must not go out late.
    env = await make_worker_env(
        worker={"number_messages_per_s": 0.5, "hold_s": 0.5, "retry_delays_s": [0.2, 0.5, 1.0]}
    )
    expires = {"x-bridge-expires-at-ms": round((time.time() + 1.0) * 1000)}
    ids = [await env.publish(send_body(f"turn {n}"), headers=expires) for n in range(3)]
    first, *later = [i for i in ids if i is not None]
    assert (await env.result(first))["data"]["outcome"] == "succeeded"
    for command_id in later:
        await _expired(env, command_id)
    assert len(env.simulator.state.messages) == 1

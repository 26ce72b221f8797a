"""Look-ups before a resend: where they start, and what they cost under Catapult's read limit.

The worker runs in process against the simulator. Commands arrive as the worker's own copies do
(``x-bridge-lookup``, ``x-bridge-queued-at-ms``), and the messages an earlier, killed worker sent
for some of them are put into the simulator first, with their tags: a look-up must find those and
send nothing, and send the others once.
"""

from __future__ import annotations

import time

import orjson
import pytest

from bridge.events import headers as h
from bridge.events.tag import encode_tag
from bridge.simulator.store import MessageRecord
from bridge.worker.ambiguous import Pacer
from tests.fixtures.worker import RECIPIENT, SENDER, MakeWorkerEnv, WorkerEnv, send_body


def _sent_before(env: WorkerEnv, command_id: str, *, ago_s: float) -> None:
    """A message Catapult stored ``ago_s`` seconds ago for ``command_id`` (a killed worker's)."""
    state = env.simulator.state
    state.add_message(
        MessageRecord(
            id=f"m-{command_id}",
            sort_key=time.time_ns() - round(ago_s * 1e9),
            direction="out",
            from_=SENDER,
            to=RECIPIENT,
            text="sent before the crash",
            tag=encode_tag(command_id, None),
        )
    )


def _lookups(env: WorkerEnv) -> list[int]:
    """The status of every look-up request the simulator answered."""
    return [
        r.status
        for r in env.simulator.state.requests
        if r.method == "GET" and r.path.endswith("/messages")
    ]


async def test_a_look_up_starts_where_the_command_was_first_queued(
    make_worker_env: MakeWorkerEnv,
) -> None:
    # Sent 20 minutes ago by a worker that died before acking; its copy has been parked behind
    # the rest of its number since, longer than worker.lookup_window_s (900 s).
    env = await make_worker_env()
    _sent_before(env, "long-parked", ago_s=1200)
    queued_ms = round((time.time() - 1300) * 1000)
    await env.publish(
        send_body("parked for long"),
        message_id="long-parked",
        headers={h.LOOKUP: 1, h.QUEUED_AT_MS: queued_ms},
    )
    data = (await env.result("long-parked", timeout_s=10))["data"]
    assert (data["outcome"], data["recovered"]) == ("succeeded", True)
    assert len(env.sent_with_tag_of("long-parked")) == 1


async def test_look_ups_of_one_number_are_shared_and_paced_under_the_read_limit(
    make_worker_env: MakeWorkerEnv,
) -> None:
    env = await make_worker_env(
        simulator={"resource_requests_per_s": 1.0},
        worker={"concurrency": 4, "batch_max": 10, "max_attempts": 6},
    )
    ids = [f"again-{n:03d}" for n in range(60)]
    for command_id in ids[::2]:
        _sent_before(env, command_id, ago_s=30)
    queued_ms = round((time.time() - 60) * 1000)
    await env.publish_many(
        ((i, orjson.dumps(send_body(i))) for i in ids),
        queue=env.topology.send_queue,
        headers={h.LOOKUP: 1, h.QUEUED_AT_MS: queued_ms},
    )
    results = await env.results_for(ids, timeout_s=30)
    recovered = {i for i, r in results.items() if r["data"]["recovered"]}
    assert recovered == set(ids[::2])
    assert all(len(env.sent_with_tag_of(i)) == 1 for i in ids)
    assert all(env.result_count(i) == 1 for i in ids)
    statuses = _lookups(env)
    # Paced under the limit, one listing for the commands that wait together: not a request per
    # batch of look-ups with most of them refused (15 of 20 were, before).
    assert statuses.count(429) <= 1, statuses
    assert len(statuses) <= 8, statuses


@pytest.mark.parametrize(
    ("reset_in_s", "pause_s"),
    [(None, 1.0), (-30.0, 1.0), (0.2, 1.0), (4.0, 4.0), (3600.0, 60.0)],
)
def test_a_429_pauses_look_ups_until_its_reset_kept_within_bounds(
    reset_in_s: float | None, pause_s: float
) -> None:
    pacer = Pacer(1.0, margin=0.0, reset_min_s=1.0, reset_max_s=60.0, wall_clock=lambda: 1e9)
    retry_at = None if reset_in_s is None else 1e9 + reset_in_s
    assert pacer.refused(retry_at) == pytest.approx(pause_s)

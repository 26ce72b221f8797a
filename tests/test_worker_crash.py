"""Kill -9 of the worker, twice, mid-run, with limits on: nothing lost, nothing sent twice.

Sends from one number are paced by the worker's limits, so most of them are parked (republished
to a delay tier, the original acked) over and over while they wait: a kill lands among those
settles. Before the copy and its ack were one transaction, a kill between the two left both, and
the command went out twice (1 in 2 runs here). The look-ups after each crash meet Catapult's read
limit (1 request/s, 429 with ``X-RateLimit-Reset``). The worker runs as a subprocess and is
killed with SIGKILL whenever another share of the results has come out, then started again.
Messages are counted at the simulator by the command id in their tag.
"""

from __future__ import annotations

import signal
from collections import Counter
from collections.abc import Callable
from functools import partial

import pytest

from bridge.events.tag import decode_tag
from bridge.settings import Settings
from tests.fixtures.worker import MakeWorkerEnv, WorkerEnv, WorkerProcess, send_body

pytestmark = pytest.mark.fault

COMMANDS = 150


def _at_least(env: WorkerEnv, count: int) -> bool:
    return env.results.count >= count


RATE_PER_S = 10.0


async def test_two_kills_mid_run_send_nothing_twice(
    make_worker_env: MakeWorkerEnv, worker_process: Callable[[Settings], WorkerProcess]
) -> None:
    env = await make_worker_env(
        start=False,
        simulator={"resource_requests_per_s": 1.0, "latency_ms": 20},
        worker={
            "account_messages_per_s": 0,
            "number_messages_per_s": RATE_PER_S,
            "hold_s": 0.2,
            "retry_delays_s": [0.2, 0.5, 1.0, 2.0],
            "max_attempts": 12,
            "concurrency": 4,
            "batch_max": 10,
        },
    )
    bodies = [(f"crash-{n:04d}", send_body(f"crash {n}")) for n in range(COMMANDS)]
    ids = [command_id for command_id, _ in bodies]
    for command_id, body in bodies:
        await env.publish(body, message_id=command_id)
    for share in (COMMANDS // 4, COMMANDS // 2):
        process = worker_process(env.settings)
        await process.start()
        await env.results.wait_for(partial(_at_least, env, share), 60)
        process.signal(signal.SIGKILL)
        assert await process.wait() == -signal.SIGKILL
    last = worker_process(env.settings)
    await last.start()
    results = await env.results_for(ids, timeout_s=90)
    last.signal(signal.SIGTERM)
    assert await last.wait() == 0
    sent = Counter(decode_tag(m.tag).command_id for m in env.simulator.state.messages.values())
    twice = {command_id: n for command_id, n in sent.items() if n > 1}
    assert twice == {}
    assert {command_id: sent[command_id] for command_id in ids} == dict.fromkeys(ids, 1)
    assert all(r["data"]["outcome"] == "succeeded" for r in results.values())

"""Kill -9 of the worker, three times, with batches and many sends in flight: each command once.

Unlike ``test_worker_crash.py`` the sends are not paced: up to ``concurrency`` batches of up to
``batch_max`` sends are at Catapult at each kill, and the worker holds a full prefetch besides.
Every command the broker delivers again after a kill is looked up before it is sent, and those
look-ups meet Catapult's read limit (1 request/s, 429 with ``X-RateLimit-Reset``). Counted by
command id: the messages at the simulator (by the id in their tag), once each; the result
events, exactly one each.
"""

from __future__ import annotations

import signal
from collections import Counter
from collections.abc import Callable

import orjson
import pytest

from bridge.events.tag import decode_tag
from bridge.settings import Settings
from tests.fixtures.worker import MakeWorkerEnv, WorkerEnv, WorkerProcess, send_body

pytestmark = pytest.mark.fault

COMMANDS = 300
KILLS = 3


def _results_at_least(env: WorkerEnv, count: int) -> Callable[[], bool]:
    return lambda: env.results.count >= count


async def test_kills_with_batches_in_flight_send_and_finish_each_command_once(
    make_worker_env: MakeWorkerEnv, worker_process: Callable[[Settings], WorkerProcess]
) -> None:
    env = await make_worker_env(
        start=False,
        simulator={
            "account_messages_per_s": 0,
            "number_messages_per_s": 0,
            "resource_requests_per_s": 1.0,
            "latency_ms": 40,
        },
        worker={
            "concurrency": 4,
            "batch_max": 10,
            "hold_s": 0.05,
            "retry_delays_s": [0.1, 0.3, 1.0],
            "max_attempts": 20,
        },
    )
    ids = [f"kill-{n:04d}" for n in range(COMMANDS)]
    await env.publish_many(
        ((i, orjson.dumps(send_body(f"kill {n}"))) for n, i in enumerate(ids)),
        queue=env.topology.send_queue,
    )
    for kill in range(1, KILLS + 1):
        process = worker_process(env.settings)
        await process.start()
        try:
            await env.results.wait_for(_results_at_least(env, COMMANDS * kill // (KILLS + 1)), 30)
        except TimeoutError:
            raise AssertionError(
                f"{env.results.count} results; the worker said:\n" + "\n".join(process.lines[-40:])
            ) from None
        process.signal(signal.SIGKILL)
        assert await process.wait() == -signal.SIGKILL
    last = worker_process(env.settings)
    await last.start()
    await env.results_for(ids, timeout_s=45)
    last.signal(signal.SIGTERM)
    assert await last.wait() == 0

    sent = Counter(decode_tag(m.tag).command_id for m in env.simulator.state.messages.values())
    assert {i: n for i, n in sent.items() if n != 1} == {}
    assert set(sent) == set(ids)
    results = {i: len(env.results.by_key.get(i, ())) for i in ids}
    assert {i: n for i, n in results.items() if n != 1} == {}
    assert env.results.count == COMMANDS
    assert env.dead.count == 0

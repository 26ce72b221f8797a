"""Shutdown and crashes: SIGTERM drains within the deadline, kill -9 loses nothing, nothing twice.

The simulator answers sends slowly (its latency is applied after the message is stored), so a test
knows calls are in flight when the simulator has delivered the messages' status callbacks, and can
stop or kill the worker at that moment. The prefetch is pinned to the call slots so that exactly
that many commands are in flight and the rest wait in the queue.
"""

from __future__ import annotations

import signal
import time
from collections import Counter
from collections.abc import Callable

from bridge.events.tag import decode_tag
from bridge.settings import Settings
from bridge.simulator import CallbackAttempt
from tests.fixtures.simulator import CallbackSink
from tests.fixtures.worker import (
    MakeWorkerEnv,
    WorkerEnv,
    WorkerProcess,
    send_body,
)


def _sent(attempt: CallbackAttempt) -> bool:
    return attempt.event.get("state") == "sent"


async def _in_flight(env: WorkerEnv, count: int) -> None:
    """Until ``count`` messages exist in the simulator while their answers are still delayed."""
    await env.simulator.wait_for_callbacks(count, predicate=_sent, timeout_s=10)


async def _publish(env: WorkerEnv, sink: CallbackSink, count: int) -> list[str]:
    ids = []
    for n in range(count):
        command_id = await env.publish(send_body(f"drain {n}", callbackUrl=sink.url()))
        assert command_id is not None
        ids.append(command_id)
    return ids


def _assert_each_sent_once(env: WorkerEnv, ids: list[str]) -> None:
    tags = Counter(decode_tag(m.tag).command_id for m in env.simulator.state.messages.values())
    assert {i: tags[i] for i in ids} == dict.fromkeys(ids, 1)
    assert all(env.result_count(i) == 1 for i in ids)


async def test_stop_finishes_the_calls_in_flight(
    make_worker_env: MakeWorkerEnv, callback_sink: CallbackSink
) -> None:
    env = await make_worker_env(
        simulator={"latency_ms": 500}, worker={"concurrency": 2, "prefetch": 2}
    )
    ids = await _publish(env, callback_sink, 5)
    await _in_flight(env, 2)
    started = time.monotonic()
    await env.worker.stop()
    assert time.monotonic() - started < 3
    # The two calls in flight finished and were settled; nothing else was started.
    assert env.results.count == 2
    assert await env.queue_depth(env.topology.send_queue) == 3
    env.simulator.set_faults(latency_ms=0)
    await env.restart_worker()
    await env.results_for(ids)
    _assert_each_sent_once(env, ids)


async def test_held_commands_are_given_back_at_once(
    make_worker_env: MakeWorkerEnv, callback_sink: CallbackSink
) -> None:
    # One call slot, one command per call, five delivered: one in flight, four held.
    env = await make_worker_env(
        simulator={"latency_ms": 500},
        worker={"concurrency": 1, "prefetch": 5, "batch_max": 1},
        start=False,
    )
    ids = await _publish(env, callback_sink, 5)
    await env.worker.start()  # the five are delivered together
    await _in_flight(env, 1)
    await env.worker.stop()
    registry = env.worker.metrics.registry
    assert registry.get_sample_value("bridge_worker_given_back_total") == 4
    assert env.results.count == 1
    assert await env.queue_depth(env.topology.send_queue) == 4
    env.simulator.set_faults(latency_ms=0)
    await env.restart_worker()
    results = await env.results_for(ids)
    assert not any(r["data"]["recovered"] for r in results.values())  # looked up, not found
    _assert_each_sent_once(env, ids)


async def test_calls_outliving_the_drain_are_given_back_and_not_sent_twice(
    make_worker_env: MakeWorkerEnv, callback_sink: CallbackSink
) -> None:
    env = await make_worker_env(
        simulator={"latency_ms": 1500},
        worker={"concurrency": 2, "prefetch": 2, "drain_timeout_s": 0.3},
    )
    ids = await _publish(env, callback_sink, 4)
    await _in_flight(env, 2)
    started = time.monotonic()
    await env.worker.stop()
    assert time.monotonic() - started < 2
    assert env.results.count == 0
    assert await env.queue_depth(env.topology.send_queue) == 4  # every command is back
    env.simulator.set_faults(latency_ms=0)
    await env.restart_worker()
    results = await env.results_for(ids)
    # The two that Catapult had stored were found, not sent again.
    assert sum(r["data"]["recovered"] for r in results.values()) == 2
    _assert_each_sent_once(env, ids)


async def test_sigterm_drains_the_worker_process(
    make_worker_env: MakeWorkerEnv,
    callback_sink: CallbackSink,
    worker_process: Callable[[Settings], WorkerProcess],
) -> None:
    env = await make_worker_env(
        simulator={"latency_ms": 1000}, worker={"concurrency": 2, "prefetch": 2}, start=False
    )
    process = worker_process(env.settings)
    await process.start()
    ids = await _publish(env, callback_sink, 4)
    await _in_flight(env, 2)
    process.signal(signal.SIGTERM)
    assert await process.wait() == 0
    assert not [line for line in process.lines if "Traceback" in line]
    assert any("worker stopped" in line for line in process.lines)
    assert env.results.count == 2  # the calls in flight were finished and settled
    assert await env.queue_depth(env.topology.send_queue) == 2
    env.simulator.set_faults(latency_ms=0)
    await env.worker.start()
    await env.results_for(ids)
    _assert_each_sent_once(env, ids)


async def test_kill_9_and_restart_loses_nothing(
    make_worker_env: MakeWorkerEnv,
    callback_sink: CallbackSink,
    worker_process: Callable[[Settings], WorkerProcess],
) -> None:
    env = await make_worker_env(
        simulator={"latency_ms": 1000}, worker={"concurrency": 4, "prefetch": 4}, start=False
    )
    first = worker_process(env.settings)
    await first.start()
    ids = await _publish(env, callback_sink, 12)
    await _in_flight(env, 4)
    first.signal(signal.SIGKILL)
    assert await first.wait() == -signal.SIGKILL
    env.simulator.set_faults(latency_ms=0)
    second = worker_process(env.settings)
    await second.start()
    results = await env.results_for(ids, timeout_s=20)
    # The four stored before the crash were looked up after their redelivery, not sent again.
    assert sum(r["data"]["recovered"] for r in results.values()) == 4
    _assert_each_sent_once(env, ids)
    second.signal(signal.SIGTERM)
    assert await second.wait() == 0
    assert await env.queue_depth(env.topology.send_queue) == 0

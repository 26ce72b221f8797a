"""Several workers on one broker hold Catapult's limits together (``worker.shards``).

Worker processes (``bridge run --role worker``) share one RabbitMQ and one simulated account whose
limits match the workers' settings: each of ten numbers may send 1 message/s, the account 10/s,
both averaged over 10 s as on the platform. Applications publish to the send queue as ever. What
must hold: the simulator refuses nothing (no 403 rate limit), no number sends more than 10 in any
10 s window, every command is sent exactly once and has its result, and one number's sends to
one destination leave in the order they were published; also when a worker stops (SIGTERM) or
is killed (SIGKILL) under load.
"""

from __future__ import annotations

import asyncio
import bisect
import contextlib
import signal
import uuid
from collections import Counter
from collections.abc import AsyncIterator, Awaitable, Callable, Sequence
from dataclasses import dataclass, field
from typing import Any

import aio_pika
import orjson
import pytest
from aio_pika.abc import AbstractIncomingMessage, AbstractRobustConnection

from bridge.broker import Topology, declare_topology
from bridge.catapult import RATE_WINDOW_S
from bridge.events.tag import decode_tag
from bridge.settings import Settings
from bridge.simulator import Simulator
from bridge.worker import Worker, WorkerState
from tests.fixtures.broker import link_log
from tests.fixtures.receiver import BrokerProxy
from tests.fixtures.simulator import MakeSimulator
from tests.fixtures.worker import (
    OTHER_SENDER,
    SENDER,
    TEST_WORKER,
    MakeWorkerEnv,
    WorkerEnv,
    WorkerProcess,
    catapult_settings_for,
    send_body,
    watch_log,
)

SHARDS_LOGGER = "bridge.worker.shards"
# What a worker logs once shards it holds are warm and it sends from them ("holding shard N ...;
# sending from it in 10 s" comes before the warm-up, and does not say so).
SENDING = "of the account's limit"
NUMBERS = [f"+1919555{n:04d}" for n in range(700, 710)]
RECIPIENTS = ["+19195559001", "+19195559002"]
SHARDED: dict[str, Any] = {
    **TEST_WORKER,
    "shards": 8,
    "number_messages_per_s": 1.0,
    "account_messages_per_s": 10.0,
    "retry_delays_s": [0.5, 1.0, 2.0],
    "max_attempts": 6,
}


def most_in_window(times: Sequence[float], window_s: float = RATE_WINDOW_S) -> int:
    """The most of ``times`` (sorted) in any window (t - window_s, t]."""
    best = 0
    for i, t in enumerate(times):
        best = max(best, i + 1 - bisect.bisect_right(times, t - window_s, 0, i + 1))
    return best


@dataclass
class Results:
    by_command: dict[str, list[AbstractIncomingMessage]] = field(default_factory=dict)
    arrived: asyncio.Event = field(default_factory=asyncio.Event)

    async def on_message(self, message: AbstractIncomingMessage) -> None:
        command = str(orjson.loads(message.body)["subject"])
        self.by_command.setdefault(command, []).append(message)
        await message.ack()
        self.arrived.set()

    async def wait_for(self, count: int, *, timeout_s: float) -> None:
        async with asyncio.timeout(timeout_s):
            while len(self.by_command) < count:
                self.arrived.clear()
                await self.arrived.wait()


class Sending(WorkerProcess):
    """A worker process that is ready once it sends from shards of its own (after the warm-up,
    so after the shards were balanced between the workers started with it)."""

    READY = SENDING


@dataclass
class Fleet:
    settings: Settings
    simulator: Simulator
    topology: Topology
    results: Results
    channel: aio_pika.abc.AbstractChannel
    make_worker: Callable[[Settings], WorkerProcess]
    workers: list[WorkerProcess] = field(default_factory=list)
    published: list[tuple[str, str, str, int]] = field(default_factory=list)

    async def start(self, count: int, *, until_sending: bool = False) -> None:
        """``count`` workers; with ``until_sending``, each has taken its shards and warmed up."""
        for _ in range(count):
            worker = Sending(self.settings) if until_sending else self.make_worker(self.settings)
            self.workers.append(worker)
        await asyncio.gather(*(w.start(ready_timeout_s=60) for w in self.workers))

    async def publish(self, per_number: int) -> list[str]:
        """``per_number`` commands from each number, interleaved; their ids."""
        ids = []
        for n in range(per_number):
            for sender in NUMBERS:
                command_id = uuid.uuid4().hex
                to = RECIPIENTS[n % 2]
                body = {"from": sender, "to": to, "text": f"{n}"}
                await self.channel.default_exchange.publish(
                    aio_pika.Message(
                        orjson.dumps(body),
                        message_id=command_id,
                        delivery_mode=aio_pika.DeliveryMode.PERSISTENT,
                    ),
                    routing_key=self.topology.send_queue,
                )
                self.published.append((command_id, sender, to, n))
                ids.append(command_id)
        return ids

    async def wait_results(self, count: int, *, timeout_s: float) -> None:
        try:
            await self.results.wait_for(count, timeout_s=timeout_s)
        except TimeoutError:
            said = "\n".join(
                f"[{n}] {line}" for n, w in enumerate(self.workers) for line in w.lines[-40:]
            )
            raise AssertionError(
                f"{len(self.results.by_command)} of {count} results in {timeout_s:g} s:\n{said}"
            ) from None

    def check(self, ids: list[str]) -> None:
        sim = self.simulator
        refused = dict(sim.state.send_refusals)
        assert not {c: n for c, n in refused.items() if c.startswith("message-rate-limit")}, refused
        sent = Counter(decode_tag(m.tag).command_id for m in sim.state.messages.values())
        assert {i: sent.get(i, 0) for i in ids} == dict.fromkeys(ids, 1)  # none lost, none twice
        for command_id in ids:
            outcomes = {
                orjson.loads(m.body)["data"]["outcome"] for m in self.results.by_command[command_id]
            }
            assert outcomes == {"succeeded"}, (command_id, outcomes)
        messages = sorted(sim.state.messages.values(), key=lambda m: m.sort_key)
        for number in NUMBERS:
            times = [m.created_s for m in messages if m.from_ == number]
            assert most_in_window(times) <= 10, number
        assert most_in_window([m.created_s for m in messages]) <= 100


@pytest.fixture
async def fleet(
    make_settings: Callable[..., Settings],
    make_simulator: MakeSimulator,
    amqp: AbstractRobustConnection,
    worker_process: Callable[[Settings], WorkerProcess],
) -> AsyncIterator[Fleet]:
    simulator = await make_simulator(number_messages_per_s=1.0, account_messages_per_s=10.0)
    for number in NUMBERS:
        simulator.add_number(number)
    settings = make_settings(worker=SHARDED, catapult=catapult_settings_for(simulator))
    topology = Topology.from_settings(settings)
    channel = await amqp.channel(publisher_confirms=True)
    await declare_topology(channel, topology)
    results = Results()
    queue = await channel.get_queue(topology.results_queue(topology.send_queue), ensure=False)
    await queue.consume(results.on_message)
    fleet = Fleet(settings, simulator, topology, results, channel, worker_process)
    yield fleet
    for worker in fleet.workers:
        await worker.close()
    await channel.close()


async def test_one_sharded_worker_routes_every_command_through_the_shards(
    make_worker_env: MakeWorkerEnv,
) -> None:
    env = await make_worker_env(worker={"shards": 4, "shard_warmup_s": 0})
    ids = [
        await env.publish(send_body(f"sharded {n}", sender=(SENDER, OTHER_SENDER)[n % 2]))
        for n in range(20)
    ]
    results = await env.results_for([i for i in ids if i is not None], timeout_s=20)
    assert {r["data"]["outcome"] for r in results.values()} == {"succeeded"}
    _each_sent_once(env, ids)
    topology = env.topology
    assert await env.queue_depth(topology.send_queue) == 0
    for i in range(4):
        assert await env.queue_depth(topology.shard_queue(i)) == 0
    # This worker routes, and holds the shards the two numbers hash to.
    shards = env.worker.shards
    assert shards is not None
    assert shards.is_router
    assert 1 <= len(shards.warm) <= 4


def in_publish_order(fleet: Fleet) -> None:
    """Each number's sends to each destination reached Catapult in publish order."""

    # Retried sends are not held to it (a 5xx or a timeout under load sends one again after a
    # delay, behind later ones): only sends that went out at their first attempt count.
    def first_time(command_id: str) -> bool:
        data = orjson.loads(fleet.results.by_command[command_id][0].body)["data"]
        return bool(data.get("attempts") == 1 and not data.get("recovered"))

    by_id = {m_id: n for m_id, _, _, n in fleet.published if first_time(m_id)}
    assert len(by_id) >= len(fleet.published) // 2, "most sends should leave at once"
    sent = sorted(fleet.simulator.state.messages.values(), key=lambda m: m.sort_key)
    for number in NUMBERS:
        for to in RECIPIENTS:
            order = [
                by_id[command_id]
                for m in sent
                if m.from_ == number
                and m.to == to
                and (command_id := str(decode_tag(m.tag).command_id)) in by_id
            ]
            assert order == sorted(order), (number, to, order)


async def test_three_workers_hold_the_per_number_and_account_limits_together(fleet: Fleet) -> None:
    await fleet.start(3)
    ids = await fleet.publish(per_number=15)
    await fleet.wait_results(len(ids), timeout_s=120)
    fleet.check(ids)
    joined = "\n".join(line for w in fleet.workers for line in w.lines)
    assert joined.count("routing ") >= 1
    # Every worker ended up sending from some of the shards.
    for worker in fleet.workers:
        assert any(SENDING in line for line in worker.lines), worker.lines


async def test_one_numbers_sends_to_one_destination_leave_in_publish_order(
    fleet: Fleet,
) -> None:
    # What a worker holds of one number is never parked here (hold_s covers the whole backlog),
    # and the shards have settled before the commands come (what a worker held of a shard it
    # gives up goes back to the queue in an order RabbitMQ does not promise): order holds
    # across the workers, the router and the shard queues.
    fleet.settings = fleet.settings.model_copy(
        update={"worker": fleet.settings.worker.model_copy(update={"hold_s": 60.0})}
    )
    await fleet.start(3, until_sending=True)
    ids = await fleet.publish(per_number=8)
    await fleet.wait_results(len(ids), timeout_s=120)
    fleet.check(ids)
    in_publish_order(fleet)


@pytest.mark.parametrize("signum", [signal.SIGTERM, signal.SIGKILL], ids=["SIGTERM", "SIGKILL"])
async def test_a_worker_that_stops_or_dies_under_load_loses_and_doubles_nothing(
    fleet: Fleet, signum: signal.Signals
) -> None:
    await fleet.start(3)
    ids = await fleet.publish(per_number=15)
    await fleet.wait_results(len(ids) // 3, timeout_s=90)
    # The shards of the first worker (and the router, if it is the one) pass to the others.
    first = fleet.workers[0]
    said = "\n".join(first.lines)
    assert said.count("holding shard") > said.count("giving shard"), said
    first.signal(signum)
    code = await fleet.workers[0].wait(timeout_s=60)
    assert code == (0 if signum is signal.SIGTERM else -signal.SIGKILL)
    await fleet.wait_results(len(ids), timeout_s=120)
    fleet.check(ids)


async def test_the_sharding_metrics_follow_the_shards_the_router_and_the_workers(
    make_worker_env: MakeWorkerEnv,
) -> None:
    env = await make_worker_env(worker={"shards": 4, "shard_warmup_s": 0}, start=False)
    first = env.worker
    registry = first.metrics.registry

    def value(worker: Worker, name: str, **labels: str) -> float:
        return worker.metrics.registry.get_sample_value(name, labels) or 0.0

    with watch_log(SHARDS_LOGGER, "holding shard") as holding:
        await first.start()
        shards = first.shards
        assert shards is not None
        # Alone, it takes every shard (a probe finds those with nothing queued) and routes.
        await holding.seen_times(4, timeout_s=10)
        command_id = await env.publish(send_body("counted"))
        assert command_id is not None
        await env.result(command_id, timeout_s=10)
        await shards.check()
        assert value(first, "bridge_worker_shards_held") == 4
        assert value(first, "bridge_worker_shards_warm") == len(shards.warm) >= 1
        assert value(first, "bridge_worker_shard_router") == 1
        assert value(first, "bridge_worker_shard_workers") == 1
        assert (
            registry.get_sample_value("bridge_worker_shards_given_up_total", {"why": "balance"})
            is None
        )

        # A second worker comes: the first gives it the two newest shards up to balance.
        second = Worker(env.settings, env.client)
        with watch_log(SHARDS_LOGGER, "giving shard") as giving:
            try:
                await second.start()
                await holding.seen_times(6, timeout_s=15)
                await giving.seen_times(2, timeout_s=5)
                assert second.shards is not None
                assert value(first, "bridge_worker_shards_given_up_total", why="balance") == 2
                assert value(first, "bridge_worker_shards_held") == 2
                assert value(first, "bridge_worker_shard_workers") == 2
                assert value(second, "bridge_worker_shards_held") == 2
                assert value(second, "bridge_worker_shards_warm") == len(second.shards.warm)
                assert value(second, "bridge_worker_shard_router") == 0
            finally:
                await second.stop()
    assert value(second, "bridge_worker_shards_given_up_total", why="stop") == 2
    assert len(giving.records) == 2


async def _until(predicate: Callable[[], Awaitable[bool]], *, timeout_s: float) -> None:
    """Ask ``predicate`` (a broker round trip: a queue's depth or consumers, read by a passive
    declare, have no event to wait on) again until it is true, for ``timeout_s``."""
    async with asyncio.timeout(timeout_s):
        while not await predicate():
            pass


async def test_a_worker_counts_itself_only_once_it_is_in_every_shards_line(
    make_worker_env: MakeWorkerEnv,
) -> None:
    # Others count the workers on the presence queue and give a newcomer its share up to balance;
    # a shard given up before the newcomer consumes it goes straight back to its holder (single
    # active consumer hands it to the next in line). So a worker is present only once it
    # consumes every shard, as it is on resume.
    shards = 16
    env = await make_worker_env(worker={"shards": shards}, start=False)
    topology = env.topology
    queues = [topology.shard_queue(i) for i in range(shards)]
    seen = await _consumers_once_present(env, queues, while_=env.worker.start)
    assert all(counts == [1] * shards for counts in seen), seen


async def _consumers_once_present(
    env: WorkerEnv, queues: list[str], *, while_: Callable[[], Awaitable[object]]
) -> list[list[int]]:
    """While ``while_()`` runs (a worker starts, or comes back) and after: each time the presence
    queue has a consumer, how many consume each of ``queues`` (three times at least)."""
    seen: list[list[int]] = []
    enough = asyncio.Event()

    async def watch() -> None:
        while True:
            if await env.consumer_count(env.topology.presence_queue):
                seen.append([await env.consumer_count(q) for q in queues])
                if len(seen) >= 3:
                    enough.set()

    watcher = asyncio.create_task(watch())
    try:
        await while_()
        async with asyncio.timeout(10):
            await enough.wait()
    finally:
        watcher.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await watcher
    return seen


async def _alone_on_two_shards(make_worker_env: MakeWorkerEnv, *, warmup_s: float) -> WorkerEnv:
    """A worker env on two shards with NUMBERS on the account, its worker started and holding
    both shards."""
    env = await make_worker_env(worker={"shards": 2, "shard_warmup_s": warmup_s}, start=False)
    for number in NUMBERS:
        env.simulator.add_number(number)
    with watch_log(SHARDS_LOGGER, "holding shard") as holding:
        await env.worker.start()
        await holding.seen_times(2, timeout_s=10)
    return env


def _each_sent_once(env: WorkerEnv, ids: Sequence[str | None]) -> None:
    for command_id in ids:
        assert command_id is not None
        assert len(env.sent_with_tag_of(command_id)) == 1


async def _ack(message: AbstractIncomingMessage) -> None:
    await message.ack()


async def test_after_a_balance_a_reconnected_worker_is_counted_last_too(
    make_worker_env: MakeWorkerEnv, broker_proxy: BrokerProxy, amqp: AbstractRobustConnection
) -> None:
    # A shard given up is consumed again by a new consumer, which a new session used to consume
    # after the presence queue: on a reconnect the worker was counted before it was in that
    # shard's line.
    shards = 16
    env = await make_worker_env(
        worker={"shards": shards},
        broker={"url": broker_proxy.url(), "reconnect_delay_s": 0.05, "connect_timeout_s": 2.0},
        start=False,
    )
    topology = env.topology
    worker = env.worker
    with watch_log(SHARDS_LOGGER, "holding shard") as holding:
        await worker.start()
        await holding.seen_times(shards, timeout_s=10)
    # Someone else on the presence queue: the worker counts two, and gives half its shards up.
    channel = await amqp.channel()
    presence = await channel.get_queue(topology.presence_queue, ensure=False)
    with watch_log(SHARDS_LOGGER, "giving shard") as giving:
        tag = await presence.consume(_ack)
        await giving.seen_times(shards // 2, timeout_s=10)
        await presence.cancel(tag)
    given = sorted({int(str(r.args[0])) for r in giving.records if isinstance(r.args, tuple)})
    await channel.close()
    assert worker.shards is not None
    await worker.shards.check()  # alone again: it gives up nothing more

    # The shards given up first: they are the ones consumed anew.
    queues = [topology.shard_queue(i) for i in given]
    queues += [topology.shard_queue(i) for i in range(shards) if i not in given]
    with link_log() as links:
        await broker_proxy.cut()
        await links.wait_for("lost the connection")

    async def gone() -> bool:
        return not await env.consumer_count(topology.presence_queue)

    await _until(gone, timeout_s=10)  # the broker has dropped the old connection too
    seen = await _consumers_once_present(env, queues, while_=broker_proxy.restore)
    assert all(counts == [1] * shards for counts in seen), seen


async def test_a_shard_given_up_to_balance_is_neither_sent_from_nor_held_again_here(
    make_worker_env: MakeWorkerEnv,
) -> None:
    # The first worker holds both shards alone, and its warm-up outlasts the test, so every
    # command waits in it. A second comes: the first gives it the newest shard up. What the first
    # held of that shard goes back to its queue, to the second; before, the release woke those
    # deliveries and they were sent from here at once (in the newcomer's warm-up), and a delivery
    # arriving while the channel closed held the shard again on the consumer going away.
    env = await _alone_on_two_shards(make_worker_env, warmup_s=60)
    topology = env.topology
    cold = env.worker
    ids = [await env.publish(send_body(f"{n}", sender=number)) for n, number in enumerate(NUMBERS)]

    async def all_taken() -> bool:
        queues = [topology.send_queue, topology.shard_queue(0), topology.shard_queue(1)]
        return not any([await env.queue_depth(q) for q in queues])

    await _until(all_taken, timeout_s=10)
    assert not env.simulator.state.messages

    warm_settings = env.settings.model_copy(
        update={"worker": env.settings.worker.model_copy(update={"shard_warmup_s": 2.0})}
    )
    warm = Worker(warm_settings, env.client)
    try:
        with (
            watch_log(SHARDS_LOGGER, "giving shard") as giving,
            watch_log(SHARDS_LOGGER, SENDING) as sending,
        ):
            await warm.start()
            given = (await giving.seen(timeout_s=10)).args
            assert isinstance(given, tuple)
            index = int(str(given[0]))
            await sending.seen(timeout_s=10)  # the newcomer's warm-up is over: it sends
            assert not env.simulator.state.messages, "sent from a shard given up"
            assert cold.shards is not None
            assert warm.shards is not None
            assert cold.shards.held == [1 - index]
            assert warm.shards.held == [index]
        # The first stops: the second takes the other shard too and sends everything once.
        await cold.stop()
        results = await env.results_for([i for i in ids if i is not None], timeout_s=30)
    finally:
        await warm.stop()
    assert {r["data"]["outcome"] for r in results.values()} == {"succeeded"}
    _each_sent_once(env, ids)


async def test_a_worker_stopped_while_it_gives_a_shard_up_stops_cleanly(
    make_worker_env: MakeWorkerEnv,
) -> None:
    # Before, the stop cancelled the balance in the middle of its broker calls: the cancelled
    # call closed its channel, the connection dropped, and the stop raised CancelledError.
    env = await _alone_on_two_shards(make_worker_env, warmup_s=0.5)
    first = env.worker
    second = Worker(env.settings, env.client)
    try:
        with watch_log(SHARDS_LOGGER, "giving shard") as giving:
            await second.start()
            await giving.seen(timeout_s=10)
            await first.stop()
        assert first.state is WorkerState.STOPPED
        ids = [
            await env.publish(send_body(f"{n}", sender=number)) for n, number in enumerate(NUMBERS)
        ]
        results = await env.results_for([i for i in ids if i is not None], timeout_s=30)
        assert second.shards is not None
        assert sorted(second.shards.held) == [0, 1]
    finally:
        await second.stop()
    assert {r["data"]["outcome"] for r in results.values()} == {"succeeded"}
    _each_sent_once(env, ids)


async def test_each_shard_hands_its_holder_a_whole_prefetch(make_worker_env: MakeWorkerEnv) -> None:
    # Before, each shard queue's prefetch was worker.prefetch / shards, so all the workers
    # together held one worker's prefetch however many there were: with Catapult's answer time
    # the bound, the fleet sent no faster than one worker.
    env = await make_worker_env(
        worker={"shards": 2, "shard_warmup_s": 0, "prefetch": 4, "batch_max": 1}, start=False
    )
    for number in NUMBERS:
        env.simulator.add_number(number)
    env.simulator.set_faults(latency_ms=2000)
    # All queued before the worker starts: it takes them as fast as the prefetch lets it.
    ids = [
        await env.publish(send_body(f"{n}", sender=NUMBERS[n % len(NUMBERS)])) for n in range(20)
    ]
    await env.worker.start()
    results = await env.results_for([i for i in ids if i is not None], timeout_s=30)
    assert {r["data"]["outcome"] for r in results.values()} == {"succeeded"}
    # Every send waits two seconds for its answer: the sends of the first second are what the
    # worker had in hand at once, the prefetch of each of the two shards.
    created = sorted(m.created_s for m in env.simulator.state.messages.values())
    assert len(created) == 20
    first_wave = [t for t in created if t < created[0] + 1.0]
    assert len(first_wave) == 8, created

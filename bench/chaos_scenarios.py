"""The chaos scenarios: each runs the real processes, drives load, injects its fault.

Every scenario is an async function of a ``Stage`` and ends when its load and faults are over;
the runner then settles, stops and counts (``Stage.settle``, ``collect``, ``finish``). Times are
seconds from the scenario's start; durations come from the runner's flags (``Options``).
"""

from __future__ import annotations

import asyncio
import signal
from collections.abc import Awaitable

from chaos_stage import Scenario, Stage

# Load goes on this long after the last fault: the recovery is measured under load.
AFTER_FAULTS_S = 5.0


async def _receiver_and_worker(stage: Stage, *, amqp_port: int | None = None) -> bool:
    """A receiver and a worker process (as a deployment with one container per role)."""
    await stage.start_simulator(wire_receiver=True)
    settings = stage.settings(amqp_port=amqp_port)
    receiver = stage.bridge("receiver", "receiver", settings)
    worker = stage.bridge("worker", "worker", settings)
    return await stage.start_bridge(receiver, "receiver") and await stage.start_bridge(
        worker, "worker"
    )


async def _with_load(stage: Stage, faults: Awaitable[None], *, callbacks: bool = True) -> None:
    """Callbacks and sends for ``load_s`` and until ``faults`` is over, plus a few seconds of
    load after the last fault (the recovery is under load too)."""
    o = stage.options
    over = asyncio.Event()
    async with stage.callback_load() as inbound, stage.command_load() as sends:
        stage.begin()
        loads = [sends.run(rate_per_s=o.send_rate, duration_s=o.load_s, until=over)]
        if callbacks:
            loads.append(inbound.run(rate_per_s=o.callback_rate, duration_s=o.load_s, until=over))
        running = asyncio.gather(*loads)
        try:
            await faults
            await asyncio.sleep(AFTER_FAULTS_S)
            over.set()
            await running
        finally:
            running.cancel()
        stage.note("load over")


async def rabbitmq_restart(stage: Stage) -> None:
    """RabbitMQ stopped and started twice during callbacks and a stream of sends."""
    if not await _receiver_and_worker(stage):
        return
    o = stage.options

    async def faults() -> None:
        up_since = -o.load_s  # the first outage comes early
        for at in (0.12 * o.load_s, 0.5 * o.load_s):
            # Up for a while between the two outages, whatever the node's start-up time.
            await stage.until(max(at, up_since + 0.25 * o.load_s))
            stage.note("stopping RabbitMQ")
            took = await stage.node.stop()
            stage.note(f"RabbitMQ stopped ({took:.1f} s)")
            await asyncio.sleep(o.broker_down_s)
            stage.note("starting RabbitMQ")
            took = await stage.node.start()
            stage.note(f"RabbitMQ started ({took:.1f} s)")
            up_since = stage.now() - stage.t0

    await _with_load(stage, faults())


async def rabbitmq_connections_closed(stage: Stage) -> None:
    """Every client connection force-closed by RabbitMQ, twice, during callbacks and sends."""
    if not await _receiver_and_worker(stage):
        return
    o = stage.options

    async def faults() -> None:
        for at in (0.3 * o.load_s, 0.7 * o.load_s):
            await stage.until(at)
            count = await stage.node.close_all_connections("chaos: connections force-closed")
            stage.note(f"RabbitMQ closed {count} connections")

    await _with_load(stage, faults())


async def worker_kill(stage: Stage) -> None:
    """Sends from one number queued; the worker SIGKILLed twice, then SIGTERMed, mid-run."""
    o = stage.options
    await stage.start_simulator(wire_receiver=False)
    await stage.sim("PUT", "/faults", {"latency_ms": o.kill_latency_ms})
    settings = stage.settings()
    worker = stage.bridge("worker", "worker", settings)
    t = stage.topology
    results = t.results_queue(t.send_queue)
    async with stage.command_load(senders=stage.senders[:1]) as sends:
        await sends.publish_batch(o.kill_commands)
    stage.note(f"{o.kill_commands} send commands queued from {stage.senders[0]}")
    if not await stage.start_bridge(worker, "worker"):
        return
    deadline = stage.now() + o.settle_s
    for share, signum in ((0.25, signal.SIGKILL), (0.5, signal.SIGKILL), (0.75, signal.SIGTERM)):
        while stage.now() < deadline:
            done = await stage.rabbit.depth(results)
            if done is not None and done >= share * o.kill_commands:
                break
            await asyncio.sleep(0.05)
        name = signal.Signals(signum).name
        stage.note(f"{name} to the worker at {share:.0%} of the results")
        worker.signal(signum)
        code = await worker.wait_exit(o.settle_s)
        stage.note(f"worker exited ({code})")
        if not await stage.start_bridge(worker, "worker"):
            return
        stage.note("worker restarted")


async def receiver_kill(stage: Stage) -> None:
    """The receiver SIGKILLed while its spool holds events, and again while it drains them."""
    o = stage.options
    proxy = await stage.proxy(stage.node.amqp_port)
    receiver = stage.bridge("receiver", "receiver", stage.settings(amqp_port=proxy.port))
    if not await stage.start_bridge(receiver, "receiver"):
        return
    await proxy.cut()
    stage.note("network to RabbitMQ cut: the receiver spools")
    duration = max(8.0, 0.4 * o.load_s)

    async def faults() -> None:
        await stage.until(0.35 * duration)
        await receiver.kill()
        stage.note("receiver SIGKILLed (spool holds events)")
        await stage.start_bridge(receiver, "receiver")
        stage.note("receiver restarted")
        await stage.until(0.7 * duration)
        await proxy.restore()
        stage.note("network to RabbitMQ restored")
        await asyncio.sleep(0.3)
        await receiver.kill()
        stage.note("receiver SIGKILLed while draining")
        await stage.start_bridge(receiver, "receiver")
        stage.note("receiver restarted")

    async with stage.callback_load() as inbound:
        stage.begin()
        await asyncio.gather(inbound.run(rate_per_s=o.callback_rate, duration_s=duration), faults())
        stage.note("load over")


async def start_without_rabbitmq(stage: Stage) -> None:
    """``bridge run`` (role all) started while RabbitMQ is away; callbacks come meanwhile."""
    o = stage.options
    await stage.start_simulator(wire_receiver=True)
    await stage.node.stop()
    stage.note("RabbitMQ stopped before the start")
    bridge = stage.bridge("bridge", "all", stage.settings())
    await bridge.start()
    stage.note("bridge run --role all started")
    listening = await bridge.wait_for("receiver listening", timeout_s=30)
    if listening is None:
        stage.fail(f"the receiver never listened: {' | '.join(bridge.tail(3))}")
    away = max(6.0, 0.3 * o.load_s)
    async with stage.callback_load() as inbound:
        posting = asyncio.ensure_future(
            inbound.run(rate_per_s=o.callback_rate, duration_s=away + 5)
        )
        await asyncio.sleep(away)
        stage.note("starting RabbitMQ")
        took = await stage.node.start()
        stage.note(f"RabbitMQ started ({took:.1f} s)")
        async with stage.command_load() as sends:
            await sends.run(rate_per_s=o.send_rate, duration_s=max(5.0, 0.3 * o.load_s))
        await posting
        stage.note("load over")


async def catapult_away(stage: Stage) -> None:
    """Catapult unreachable (connection refused) for ``outage_s`` during a stream of sends."""
    o = stage.options
    await stage.start_simulator(wire_receiver=True)
    proxy = await stage.proxy(stage.sim_port)
    bridge = stage.bridge("bridge", "all", stage.settings(catapult_port=proxy.port))
    if not await stage.start_bridge(bridge, "all"):
        return
    begin = 5.0
    duration = begin + o.outage_s + 10

    async def faults() -> None:
        await stage.until(begin)
        await proxy.cut()
        stage.note("Catapult away (connections refused)")
        await stage.until(begin + o.outage_s)
        await proxy.restore()
        stage.note("Catapult back")

    async with stage.command_load() as sends:
        stage.begin()
        await asyncio.gather(sends.run(rate_per_s=o.send_rate, duration_s=duration), faults())
        stage.note("load over")


async def _catapult_faults(
    stage: Stage, phases: list[tuple[float, float, str, dict[str, object]]]
) -> None:
    """Sends for ``fault_s`` against the simulator with ``phases`` of faults set at run time:
    (from share, to share of the load, what, the faults)."""
    o = stage.options
    await stage.start_simulator(wire_receiver=True)
    bridge = stage.bridge("bridge", "all", stage.settings())
    if not await stage.start_bridge(bridge, "all"):
        return

    async def faults() -> None:
        for begin, end, what, values in phases:
            await stage.until(begin * o.fault_s)
            await stage.set_faults(what, **values)
            await stage.until(end * o.fault_s)
            await stage.clear_faults()

    async with stage.command_load() as sends:
        stage.begin()
        await asyncio.gather(sends.run(rate_per_s=o.send_rate, duration_s=o.fault_s), faults())
        stage.note("load over")


async def catapult_5xx(stage: Stage) -> None:
    """20 % of Catapult's answers are 500 or 503 (without effect)."""
    await _catapult_faults(stage, [(0.0, 1.0, "20 % 5xx", {"error_rate": 0.2})])


async def catapult_403_storm(stage: Stage) -> None:
    """A storm of 403 message-rate-limit answers (80 % of sends) in the middle of the stream."""
    await _catapult_faults(
        stage, [(0.25, 0.65, "403 rate-limit storm", {"rate_limit_storm_rate": 0.8})]
    )


async def catapult_429(stage: Stage) -> None:
    """Look-ups refused with 429 and X-RateLimit-Reset: ambiguous sends under the read limit."""
    await stage.start_simulator(wire_receiver=True)
    await stage.sim("PUT", "/limits", {"resource_requests_per_s": 1.0, "resource_burst": 1})
    stage.note("Catapult reads limited to 1/s (429 with reset times)")
    o = stage.options
    bridge = stage.bridge("bridge", "all", stage.settings())
    if not await stage.start_bridge(bridge, "all"):
        return

    async def faults() -> None:
        await stage.set_faults("30 % ambiguous 503 (look-ups follow)", ambiguous_rate=0.3)
        await stage.until(o.fault_s)
        await stage.clear_faults()

    async with stage.command_load() as sends:
        stage.begin()
        await asyncio.gather(sends.run(rate_per_s=o.send_rate, duration_s=o.fault_s), faults())
        stage.note("load over")


async def catapult_ambiguous_503(stage: Stage) -> None:
    """503 message-gateway-unavailable: 15 % sent anyway, 10 % not sent."""
    await _catapult_faults(
        stage,
        [(0.0, 1.0, "ambiguous 503: 15 % sent, 10 % not",
          {"ambiguous_rate": 0.15, "gateway_unavailable_rate": 0.1})],
    )  # fmt: skip


async def catapult_latency(stage: Stage) -> None:
    """Three 2 s latency spikes."""
    spike = 2000.0
    await _catapult_faults(
        stage,
        [
            (start, start + 0.15, "2 s latency spike", {"latency_ms": spike})
            for start in (0.1, 0.4, 0.7)
        ],
    )


async def network_cut(stage: Stage) -> None:
    """The network between the bridge and RabbitMQ cut twice (the runner's TCP proxy)."""
    proxy = await stage.proxy(stage.node.amqp_port)
    if not await _receiver_and_worker(stage, amqp_port=proxy.port):
        return
    o = stage.options

    async def faults() -> None:
        for at in (0.25 * o.load_s, 0.6 * o.load_s):
            await stage.until(at)
            await proxy.cut()
            stage.note("network to RabbitMQ cut")
            await asyncio.sleep(o.broker_down_s + 2)
            await proxy.restore()
            stage.note("network to RabbitMQ restored")

    await _with_load(stage, faults())


async def network_stall(stage: Stage) -> None:
    """The network between the bridge and RabbitMQ stalls (no byte either way) for stall_s."""
    proxy = await stage.proxy(stage.node.amqp_port)
    if not await _receiver_and_worker(stage, amqp_port=proxy.port):
        return
    o = stage.options

    async def faults() -> None:
        await stage.until(0.3 * o.load_s)
        proxy.stall()
        stage.note("network to RabbitMQ stalled")
        await asyncio.sleep(o.stall_s)
        proxy.resume()
        stage.note("network to RabbitMQ flows again")

    await _with_load(stage, faults())


SCENARIOS: dict[str, Scenario] = {
    "rabbitmq-restart": rabbitmq_restart,
    "rabbitmq-connections-closed": rabbitmq_connections_closed,
    "worker-kill": worker_kill,
    "receiver-kill": receiver_kill,
    "start-without-rabbitmq": start_without_rabbitmq,
    "catapult-away": catapult_away,
    "catapult-5xx": catapult_5xx,
    "catapult-403-storm": catapult_403_storm,
    "catapult-429": catapult_429,
    "catapult-ambiguous-503": catapult_ambiguous_503,
    "catapult-latency": catapult_latency,
    "network-cut": network_cut,
    "network-stall": network_stall,
}

"""Worker benchmark: the worker against the simulator, a naive baseline, and the ideal rate.

One run, everything real: RabbitMQ, the simulator (``bridge simulator --no-limits``) and each
consumer in its own process. For each simulated latency (0 ms and 50 ms) the same number of send
commands is queued first, then one consumer drains the queue with the same concurrency:

- naive: aio-pika consume (prefetch = concurrency), one aiohttp POST per message, ack. No result
  events, no limits, no retries: the least a bridge can do.
- worker: ``bridge run --role worker`` (call slots = concurrency, prefetch = concurrency x 50,
  batch sends, a confirmed result event per command before its ack).
- floor (reference, at 0 ms): aio-pika consume with the worker's prefetch, one small persistent
  confirmed result per command into the results queue (the worker's ``Publisher``), ack; no
  Catapult call, no validation. What reporting every command's outcome costs by itself.
- ideal: concurrency / latency (every slot always waiting on Catapult; undefined at 0 ms).

Rates are sends per second from the consumer's "ready" to its last command done (the worker's
and the floor's last result in their queue, the naive consumer's last ack). Peak memory is the
consumer process's VmHWM; CPU per send is read from /proc for the consumer, the simulator and
RabbitMQ.
Figures are printed, with each target met or not; the script does not fail on them.

    uv run --frozen python bench/worker_bench.py [--messages 10000] [--concurrency 16]
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import signal
import socket
import sys
import time
import uuid
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import aio_pika
import aiohttp
import orjson
from machine import broker_pid, cpu_seconds, describe

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from bridge.broker import Envelope, Publisher, Topology, declare_topology  # noqa: E402
from bridge.settings import SimulatorSettings, load_settings  # noqa: E402

SENDERS = tuple(f"+1919555{n:04d}" for n in range(200, 204))
SIM = SimulatorSettings()
TARGET_VS_NAIVE = 1.5
TARGET_VS_IDEAL = 0.95
TARGET_RSS_MB = 150.0


@dataclass
class Run:
    name: str
    latency_ms: float
    sends_per_s: float
    peak_rss_mb: float
    cpu_ms_per_send: dict[str, float]  # consumer, simulator, broker


class CpuMeter:
    """CPU used by the consumer, the simulator and the broker between start() and stop()."""

    def __init__(self, pids: dict[str, int | None]) -> None:
        self.pids = pids
        self.start = {name: cpu_seconds(pid) for name, pid in pids.items()}

    def per_send_ms(self, sends: int) -> dict[str, float]:
        used = {name: cpu_seconds(pid) - self.start[name] for name, pid in self.pids.items()}
        return {name: seconds * 1000 / sends for name, seconds in used.items()}


def _free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return int(probe.getsockname()[1])


def _peak_rss_mb(pid: int) -> float:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmHWM:"):
            return int(line.split()[1]) / 1024
    return float("nan")


class Child:
    """A subprocess whose stderr/stdout lines are read as they come; ``wait_for`` awaits one."""

    def __init__(self, argv: Sequence[str], env: dict[str, str] | None = None) -> None:
        self.argv = list(argv)
        self.env = env
        self.lines: list[tuple[float, str]] = []
        self._changed = asyncio.Condition()
        self.process: asyncio.subprocess.Process | None = None
        self._readers: list[asyncio.Task[None]] = []

    async def start(self) -> None:
        self.process = await asyncio.create_subprocess_exec(
            *self.argv,
            env=self.env,
            stdin=asyncio.subprocess.DEVNULL,
            stdout=asyncio.subprocess.PIPE,
            stderr=asyncio.subprocess.PIPE,
        )
        assert self.process.stdout is not None
        assert self.process.stderr is not None
        self._readers = [
            asyncio.create_task(self._read(self.process.stdout)),
            asyncio.create_task(self._read(self.process.stderr)),
        ]

    async def _read(self, stream: asyncio.StreamReader) -> None:
        async for raw in stream:
            async with self._changed:
                self.lines.append((time.monotonic(), raw.decode(errors="replace").rstrip()))
                self._changed.notify_all()

    async def wait_for(self, text: str, timeout_s: float = 60.0) -> float:
        """When the first line containing ``text`` was read."""

        def found() -> bool:
            return any(text in line for _, line in self.lines)

        try:
            async with asyncio.timeout(timeout_s), self._changed:
                await self._changed.wait_for(found)
        except TimeoutError:
            tail = "\n".join(line for _, line in self.lines[-20:])
            raise RuntimeError(f"{self.argv[:4]} did not print {text!r}:\n{tail}") from None
        return next(t for t, line in self.lines if text in line)

    async def stop(self) -> int:
        assert self.process is not None
        if self.process.returncode is None:
            self.process.send_signal(signal.SIGTERM)
        code = await asyncio.wait_for(self.process.wait(), 60)
        await asyncio.gather(*self._readers)
        return code


class Bench:
    def __init__(self, args: argparse.Namespace) -> None:
        self.args = args
        self.sim_port = _free_port()
        self.sim_url = f"http://127.0.0.1:{self.sim_port}"
        self.simulator = Child(
            [sys.executable, "-m", "bridge.cli", "simulator", "--host", "127.0.0.1",
             "--port", str(self.sim_port), "--no-limits", "--log-level", "WARNING"],
            env=_environ({}),
        )  # fmt: skip
        self.http: aiohttp.ClientSession | None = None
        self.amqp: aio_pika.abc.AbstractConnection | None = None

    async def __aenter__(self) -> Bench:
        await self.simulator.start()
        self.http = aiohttp.ClientSession()
        deadline = time.monotonic() + 30
        while True:  # the simulator is another process: probe until it answers
            try:
                async with self.http.get(f"{self.sim_url}/_sim/health") as answer:
                    if answer.status == 200:
                        break
            except aiohttp.ClientError:
                if time.monotonic() > deadline:
                    raise
            await asyncio.sleep(0.1)
        self.amqp = await aio_pika.connect(self.args.amqp_url)
        return self

    async def __aexit__(self, *exc: object) -> None:
        if self.amqp is not None:
            await self.amqp.close()
        if self.http is not None:
            await self.http.close()
        await self.simulator.stop()

    async def control(self, method: str, path: str, body: Any = None) -> None:
        assert self.http is not None
        async with self.http.request(method, f"{self.sim_url}/_sim{path}", json=body) as answer:
            if answer.status >= 300:
                raise RuntimeError(f"{method} {path}: {answer.status} {await answer.text()}")

    async def prepare(self, latency_ms: float) -> None:
        await self.control("POST", "/reset")
        await self.control("DELETE", "/limits")
        await self.control("PUT", "/faults", {"latency_ms": latency_ms})
        for number in SENDERS:
            await self.control("POST", "/numbers", {"number": number})

    def settings_for(self, name: str) -> dict[str, Any]:
        prefix = f"bench-{name}-{uuid.uuid4().hex[:6]}"
        return {
            "broker": {
                "url": self.args.amqp_url,
                "events_exchange": f"{prefix}.events",
                "dead_letter_exchange": f"{prefix}.dead-letter",
                "inbound_queue": f"{prefix}.inbound",
                "status_queue": f"{prefix}.status",
                "send_queue": f"{prefix}.outbound.sms",
                "import_queue": f"{prefix}.outbound.import",
                "queue_type": self.args.queue_type,
            },
            "catapult": {
                "base_url": f"{self.sim_url}/v1",
                "user_id": SIM.user_id,
                "api_token": SIM.api_token,
                "api_secret": SIM.api_secret.get_secret_value(),
            },
            "worker": {
                "concurrency": self.args.concurrency,
                "account_messages_per_s": 0,
                "number_messages_per_s": 0,
                "number_requests_per_min": 0,
            },
            "operations": {"port": _free_port(), "host": "127.0.0.1"},
            "log": {"level": "INFO"},
        }

    async def queue_commands(self, topology: Topology) -> None:
        assert self.amqp is not None
        channel = await self.amqp.channel(publisher_confirms=True)
        await declare_topology(channel, topology)
        exchange = channel.default_exchange
        total = self.args.messages
        for start in range(0, total, 1000):
            await asyncio.gather(
                *(
                    exchange.publish(
                        aio_pika.Message(
                            orjson.dumps(
                                {"from": SENDERS[n % len(SENDERS)], "to": "+19195559999",
                                 "text": f"benchmark message {n}"}
                            ),
                            message_id=f"bench-{n}",
                            content_type="application/json",
                            delivery_mode=aio_pika.DeliveryMode.PERSISTENT,
                        ),
                        routing_key=topology.send_queue,
                    )
                    for n in range(start, min(total, start + 1000))
                )
            )  # fmt: skip
        await channel.close()

    async def delete(self, topology: Topology) -> None:
        assert self.amqp is not None
        channel = await self.amqp.channel()
        plan = topology.declarations()  # everything declare_topology made, nothing left behind
        for queue in plan.queues:
            await channel.queue_delete(queue.name)
        for exchange in plan.exchanges:
            await channel.exchange_delete(exchange.name)
        await channel.close()

    async def run_naive(self, latency_ms: float) -> Run:
        return await self.run_reference("naive", latency_ms)

    async def run_floor(self) -> Run:
        return await self.run_reference("floor", 0.0)

    async def run_reference(self, mode: str, latency_ms: float) -> Run:
        """One of this script's own consumers (``naive`` or ``floor``) in a child process."""
        overrides = self.settings_for(mode)
        topology = Topology.from_settings(load_settings(**overrides))
        await self.prepare(latency_ms)
        await self.queue_commands(topology)
        results = topology.results_queue(topology.send_queue)
        child = Child(
            [sys.executable, __file__, mode, "--amqp-url", self.args.amqp_url,
             "--queue", topology.send_queue, "--base-url", f"{self.sim_url}/v1",
             "--results", results, "--concurrency", str(self.args.concurrency),
             "--messages", str(self.args.messages)],
            env=_environ({}),
        )  # fmt: skip
        await child.start()
        try:
            ready = await child.wait_for("READY")
            meter = self.meter(child)
            if mode == "floor":  # done when every result is in its queue, as for the worker
                done = await self.until_depth(results, self.args.messages)
            else:
                done = await child.wait_for("DONE", timeout_s=600)
            cpu = meter.per_send_ms(self.args.messages)
            assert child.process is not None
            rss = _peak_rss_mb(child.process.pid)
        finally:
            await child.stop()
            await self.delete(topology)
        return Run(mode, latency_ms, self.args.messages / (done - ready), rss, cpu)

    async def run_worker(self, latency_ms: float) -> Run:
        overrides = self.settings_for("worker")
        topology = Topology.from_settings(load_settings(**overrides))
        await self.prepare(latency_ms)
        await self.queue_commands(topology)
        child = Child(
            [sys.executable, "-m", "bridge.cli", "run", "--role", "worker"],
            env=_environ(overrides),
        )
        await child.start()
        try:
            ready = await child.wait_for("worker consuming")
            meter = self.meter(child)
            # The results stay in their queue (nobody consumes them, as nobody consumes the
            # naive consumer's output): done when all of them are there.
            finished_at = await self.until_depth(
                topology.results_queue(topology.send_queue), self.args.messages
            )
            cpu = meter.per_send_ms(self.args.messages)
            assert child.process is not None
            rss = _peak_rss_mb(child.process.pid)
        finally:
            await child.stop()
            await self.delete(topology)
        failed = [line for _, line in child.lines if "Traceback" in line or "ERROR" in line]
        if failed:
            raise RuntimeError("the worker logged errors:\n" + "\n".join(failed))
        return Run("worker", latency_ms, self.args.messages / (finished_at - ready), rss, cpu)

    def meter(self, child: Child) -> CpuMeter:
        assert child.process is not None
        assert self.simulator.process is not None
        return CpuMeter(
            {
                "consumer": child.process.pid,
                "simulator": self.simulator.process.pid,
                "broker": broker_pid(),
            }
        )

    async def until_depth(self, queue: str, count: int) -> float:
        """When ``queue`` first holds ``count`` messages (polled every 10 ms)."""
        assert self.amqp is not None
        channel = await self.amqp.channel()
        try:
            async with asyncio.timeout(600):
                while True:
                    declared = await channel.declare_queue(queue, passive=True)
                    if (declared.declaration_result.message_count or 0) >= count:
                        return time.monotonic()
                    await asyncio.sleep(0.01)
        finally:
            await channel.close()


def _environ(overrides: dict[str, Any]) -> dict[str, str]:
    environ = {k: v for k, v in os.environ.items() if not k.startswith("BRIDGE_")}
    for section, values in overrides.items():
        for key, value in values.items():
            name = f"BRIDGE_{section.upper()}__{key.upper()}"
            environ[name] = value if isinstance(value, str) else json.dumps(value)
    return environ


async def naive(args: argparse.Namespace) -> None:
    """The baseline consumer: one POST per message, ack, nothing else."""
    connection = await aio_pika.connect(args.amqp_url)
    channel = await connection.channel()
    await channel.set_qos(prefetch_count=args.concurrency)
    queue = await channel.get_queue(args.queue)
    url = f"{args.base_url}/users/{SIM.user_id}/messages"
    auth = aiohttp.BasicAuth(SIM.api_token, SIM.api_secret.get_secret_value())
    connector = aiohttp.TCPConnector(limit=args.concurrency)
    done = asyncio.Event()
    count = 0
    async with aiohttp.ClientSession(auth=auth, connector=connector) as session:

        async def on_message(message: aio_pika.abc.AbstractIncomingMessage) -> None:
            nonlocal count
            async with session.post(
                url, data=message.body, headers={"Content-Type": "application/json"}
            ) as answer:
                await answer.read()
            await message.ack()
            count += 1
            if count == args.messages:
                done.set()

        stop = asyncio.Event()
        asyncio.get_running_loop().add_signal_handler(signal.SIGTERM, stop.set)
        await queue.consume(on_message)
        print("READY", flush=True)
        await done.wait()
        print("DONE", flush=True)
        await stop.wait()  # stay alive until the driver has read this process's CPU and memory
    await connection.close()


async def floor(args: argparse.Namespace) -> None:
    """Reference: what a consumer costs that only publishes one confirmed result per command.

    aio-pika consume with the worker's prefetch (concurrency x 50), then for each command a
    small persistent result, mandatory and confirmed, straight into the results queue through
    the worker's own ``Publisher``, then the ack. No Catapult call, no validation, no
    CloudEvent: the least any worker that reports every command's outcome does through aio-pika
    and RabbitMQ.
    """
    connection = await aio_pika.connect(args.amqp_url)
    channel = await connection.channel(publisher_confirms=True, on_return_raises=True)
    await channel.set_qos(prefetch_count=args.concurrency * 50)
    queue = await channel.get_queue(args.queue)
    # The worker's own publish path.
    publisher = Publisher(await channel.get_underlay_channel(), confirm_timeout_s=60)
    body = orjson.dumps({"outcome": "succeeded"})

    async def on_message(message: aio_pika.abc.AbstractIncomingMessage) -> None:
        result = Envelope(body, args.results, str(message.message_id), "result", "application/json")
        await publisher.publish(result, exchange="")
        await message.ack()

    stop = asyncio.Event()
    asyncio.get_running_loop().add_signal_handler(signal.SIGTERM, stop.set)
    await queue.consume(on_message)
    print("READY", flush=True)
    await stop.wait()
    await connection.close()


async def main(args: argparse.Namespace) -> int:
    runs: list[Run] = []
    machine = describe()
    async with Bench(args) as bench:
        for latency_ms in (0.0, 50.0):
            runs.append(await bench.run_naive(latency_ms))
            runs.append(await bench.run_worker(latency_ms))
            if latency_ms == 0.0:
                runs.append(await bench.run_floor())
    by = {(r.name, r.latency_ms): r for r in runs}
    c, n = args.concurrency, args.messages
    print(f"\nworker benchmark: {n} send commands queued, concurrency {c}, limits off")
    print(f"machine: {machine}")
    print(
        f"{'latency':>8} {'consumer':>8} {'sends/s':>9} {'peak RSS':>9}   "
        "CPU ms per send: consumer / simulator / broker"
    )
    for run in runs:
        cpu = run.cpu_ms_per_send
        print(
            f"{run.latency_ms:>6.0f}ms {run.name:>8} {run.sends_per_s:>9.1f} "
            f"{run.peak_rss_mb:>7.1f}MB   "
            f"{cpu['consumer']:.3f} / {cpu['simulator']:.3f} / {cpu['broker']:.3f}"
        )
    ideal = c / 0.050
    print(f"{50:>6}ms {'ideal':>8} {ideal:>9.1f}   (concurrency / latency)")
    vs_naive = by[("worker", 0.0)].sends_per_s / by[("naive", 0.0)].sends_per_s
    vs_ideal = by[("worker", 50.0)].sends_per_s / ideal
    naive_50 = by[("naive", 50.0)].sends_per_s / ideal
    floor_vs_naive = by[("floor", 0.0)].sends_per_s / by[("naive", 0.0)].sends_per_s
    rss = max(r.peak_rss_mb for r in runs if r.name == "worker")
    checks = [
        (f"worker / naive at 0 ms = {vs_naive:.2f}x", vs_naive >= TARGET_VS_NAIVE,
         f">= {TARGET_VS_NAIVE}x"),
        (f"worker / ideal at 50 ms = {vs_ideal:.1%} (naive: {naive_50:.1%})",
         vs_ideal >= TARGET_VS_IDEAL, f">= {TARGET_VS_IDEAL:.0%}"),
        (f"worker peak RSS = {rss:.1f} MB", rss < TARGET_RSS_MB, f"< {TARGET_RSS_MB:.0f} MB"),
    ]  # fmt: skip
    print()
    for text, ok, target in checks:
        print(f"  {'met' if ok else 'NOT MET'}  {text}  (target {target})")
    print(
        f"  reference: floor / naive at 0 ms = {floor_vs_naive:.2f}x (consume, one confirmed "
        "result, ack; no Catapult call, no validation)"
    )
    return 0


def parse_args(argv: Sequence[str] | None = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("mode", nargs="?", default="bench", choices=["bench", "naive", "floor"])
    parser.add_argument("--messages", type=int, default=10_000)
    parser.add_argument("--concurrency", type=int, default=16)
    parser.add_argument(
        "--amqp-url",
        default=os.environ.get("BRIDGE_TEST_AMQP_URL", "amqp://guest:guest@127.0.0.1:5672/"),
    )
    parser.add_argument("--queue-type", choices=["quorum", "classic"], default="quorum")
    parser.add_argument("--queue", help=argparse.SUPPRESS)
    parser.add_argument("--base-url", help=argparse.SUPPRESS)
    parser.add_argument("--results", help=argparse.SUPPRESS)
    return parser.parse_args(argv)


if __name__ == "__main__":
    arguments = parse_args()
    if arguments.mode in ("naive", "floor"):
        asyncio.run(naive(arguments) if arguments.mode == "naive" else floor(arguments))
        raise SystemExit(0)
    raise SystemExit(asyncio.run(main(arguments)))

"""Worker benchmark: the rows of the worker's targets, each beside its baseline and its target.

One run, everything real: RabbitMQ, the simulator (``bridge simulator``, limits and latency set
through its control API) and each consumer in a process of its own. Per scenario the send
commands are queued first, then one consumer drains the queue:

- ``off``: limits off, 0 ms answers, 10 numbers. The naive consumer (aio-pika consume with
  prefetch 16, one aiohttp POST per message, ack; no results, no limits, no retries: the least a
  bridge can do) and ``bridge run --role worker`` (a confirmed result event per command before its
  ack, batch sends). Rate and CPU per send of both.
- ``high``: the worker with limits on but far above what is sent (100,000/s for the account and
  each number), same load: what the limiter's bookkeeping costs per send.
- ``reach``: how close the worker comes to what Catapult allows, the simulator enforcing the same
  limits (its 403s are counted, ``GET /_sim/refusals``): one A2P number with 250/s allowed and
  20 ms answers; the same at 1,000/s; 100 person-to-person numbers at 1/s each with the account
  at 100/s and 50 ms answers. ``--reach-s`` seconds of sending at the allowed rate are queued.
- ``memory``: 100,000 commands queued, limits off: the worker's peak RSS, and its RSS sampled
  while the queue drains (flat: no growth with what is still queued).
- ``limiter``: in this process, no I/O: the limiter and the scheduler alone, microseconds of CPU
  per send at allowed rates from 100/s to 1,000,000/s (amortised constant: flat across rates).

A rate is sends per second from the consumer's "ready" (the worker's ``worker consuming`` log
line, the naive consumer's ``READY``) to its last command done (the last result in the results
queue, polled every 10 ms without consuming it; the naive consumer's last ack). CPU is user +
system time from /proc over the same interval for every process involved: the consumer, the
simulator, RabbitMQ and this script (which polls), per send. Peak memory is the consumer's
VmHWM. Figures are printed with each target met or not; the script does not fail on them.

    uv run --frozen python bench/worker_bench.py                   # every scenario (~6 min)
    uv run --frozen python bench/worker_bench.py -s off -s reach   # some of them
    uv run --frozen python bench/worker_bench.py --help
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
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import aio_pika
import aiohttp
import orjson
from machine import broker_pid, cpu_seconds, describe, top_of_profile

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from bridge.broker import Topology, declare_topology  # noqa: E402
from bridge.settings import SimulatorSettings, WorkerSettings, load_settings  # noqa: E402
from bridge.simulator.store import SimulatorState  # noqa: E402
from bridge.worker.limits import Limits  # noqa: E402
from bridge.worker.scheduler import Park, SendScheduler  # noqa: E402

SIM = SimulatorSettings()
TEN = tuple(f"+1919555{n:04d}" for n in range(200, 210))
A2P = "+19195550300"
P2P = tuple(f"+1919556{n:04d}" for n in range(100))
SCENARIOS = ("off", "high", "reach", "memory", "limiter")
TARGET_RSS_MB = 150.0
FLAT_MB = 10.0  # "flat while draining": RSS at 90 % drained at most this above RSS at 10 %


@dataclass(frozen=True)
class Case:
    """One drain of a queue: the load, the limits on both sides, and what is allowed."""

    name: str
    latency_ms: float
    senders: tuple[str, ...]
    messages: int
    worker: dict[str, Any] = field(default_factory=dict)  # worker settings over the limits off
    sim_limits: dict[str, Any] | None = None  # None: the simulator's limits off
    allowed_per_s: float | None = None
    target_reach: float | None = None


# How many requests the simulator keeps for ``GET /_sim/requests``.
SIMULATOR_REQUESTS_KEPT = SimulatorState.max_requests


@dataclass
class Run:
    case: Case
    consumer: str
    sends_per_s: float
    peak_rss_mb: float
    cpu_ms_per_send: dict[str, float]  # consumer, simulator, broker, driver
    refused: dict[str, int] = field(default_factory=dict)
    rss_samples: list[tuple[float, float]] = field(default_factory=list)  # (share done, MB)
    send_requests: int | None = None  # POST /messages the simulator answered (None: not read)
    lookups: int | None = None  # GET /messages (look-ups)

    @property
    def cpu_total(self) -> float:
        return sum(self.cpu_ms_per_send.values())


class CpuMeter:
    """CPU used by each process of a run between its creation and ``per_send_ms``."""

    def __init__(self, pids: dict[str, int | None]) -> None:
        self.pids = pids
        self.start = {name: cpu_seconds(pid) for name, pid in pids.items()}
        self.driver_start = time.process_time()

    def per_send_ms(self, sends: int) -> dict[str, float]:
        used = {name: cpu_seconds(pid) - self.start[name] for name, pid in self.pids.items()}
        used["driver"] = time.process_time() - self.driver_start
        return {name: seconds * 1000 / sends for name, seconds in used.items()}


def _free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return int(probe.getsockname()[1])


def _status_mb(pid: int, field_name: str) -> float:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith(field_name):
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
        self.profiles: dict[str, Path] = {}

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

    async def control(self, method: str, path: str, body: Any = None) -> Any:
        assert self.http is not None
        async with self.http.request(method, f"{self.sim_url}/_sim{path}", json=body) as answer:
            if answer.status >= 300:
                raise RuntimeError(f"{method} {path}: {answer.status} {await answer.text()}")
            return await answer.json() if answer.status == 200 else None

    async def prepare(self, case: Case) -> None:
        await self.control("POST", "/reset")
        await self.control("DELETE", "/limits")
        if case.sim_limits is not None:
            await self.control("PUT", "/limits", case.sim_limits)
        await self.control("PUT", "/faults", {"latency_ms": case.latency_ms})
        for number in case.senders:
            await self.control("POST", "/numbers", {"number": number})

    def settings_for(self, name: str, case: Case) -> dict[str, Any]:
        prefix = f"bench-{name}-{uuid.uuid4().hex[:6]}"
        worker: dict[str, Any] = {
            "account_messages_per_s": 0,
            "number_messages_per_s": 0,
            "number_requests_per_min": 0,
        }
        if self.args.worker_concurrency:
            worker["concurrency"] = self.args.worker_concurrency
        worker.update(case.worker)
        for setting in self.args.set or ():
            key, _, value = setting.partition("=")
            worker[key] = json.loads(value)
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
            "worker": worker,
            "operations": {"port": _free_port(), "host": "127.0.0.1"},
            "log": {"level": "INFO", "per_message": False},
        }

    async def queue_commands(self, topology: Topology, case: Case) -> None:
        assert self.amqp is not None
        channel = await self.amqp.channel(publisher_confirms=True)
        await declare_topology(channel, topology)
        exchange = channel.default_exchange
        senders = case.senders
        for start in range(0, case.messages, 1000):
            await asyncio.gather(
                *(
                    exchange.publish(
                        aio_pika.Message(
                            orjson.dumps(
                                {"from": senders[n % len(senders)], "to": "+19195559999",
                                 "text": f"benchmark message {n}"}
                            ),
                            message_id=f"bench-{n}",
                            content_type="application/json",
                            delivery_mode=aio_pika.DeliveryMode.PERSISTENT,
                        ),
                        routing_key=topology.send_queue,
                    )
                    for n in range(start, min(case.messages, start + 1000))
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

    async def run_naive(self, case: Case) -> Run:
        """The naive consumer (this script's own ``naive`` mode) in a child process."""
        overrides = self.settings_for("naive", case)
        topology = Topology.from_settings(load_settings(**overrides))
        await self.prepare(case)
        await self.queue_commands(topology, case)
        child = Child(
            [sys.executable, __file__, "naive", "--amqp-url", self.args.amqp_url,
             "--queue", topology.send_queue, "--base-url", f"{self.sim_url}/v1",
             "--naive-concurrency", str(self.args.naive_concurrency),
             "--messages", str(case.messages)],
            env=_environ({}),
        )  # fmt: skip
        await child.start()
        try:
            ready = await child.wait_for("READY")
            meter = self.meter(child)
            done = await child.wait_for("DONE", timeout_s=900)
            cpu = meter.per_send_ms(case.messages)
            assert child.process is not None
            rss = _status_mb(child.process.pid, "VmHWM:")
        finally:
            await child.stop()
            await self.delete(topology)
        return Run(case, "naive", case.messages / (done - ready), rss, cpu)

    async def run_worker(self, case: Case) -> Run:
        overrides = self.settings_for("worker", case)
        topology = Topology.from_settings(load_settings(**overrides))
        await self.prepare(case)
        await self.queue_commands(topology, case)
        child = Child(
            [sys.executable, "-m", "bridge.cli", "run", "--role", "worker"],
            env=_environ(overrides),
        )
        await child.start()
        samples: list[tuple[float, float]] = []
        profiler: asyncio.subprocess.Process | None = None
        try:
            ready = await child.wait_for("worker consuming")
            meter = self.meter(child)
            assert child.process is not None
            pid = child.process.pid
            if self.args.py_spy:
                profiler = await self.profile(pid, case)
            # The results stay in their queue (nobody consumes them, as nobody consumes the
            # naive consumer's output): done when all of them are there.
            finished_at = await self.until_depth(
                topology.results_queue(topology.send_queue),
                case.messages,
                sample=lambda depth: samples.append(
                    (depth / case.messages, _status_mb(pid, "VmRSS:"))
                ),
            )
            cpu = meter.per_send_ms(case.messages)
            rss = _status_mb(pid, "VmHWM:")
            refused = await self.control("GET", "/refusals")
            # The simulator keeps its last SIMULATOR_REQUESTS_KEPT requests: enough for batches.
            requests = await self.control("GET", "/requests")
        finally:
            if profiler is not None:
                profiler.send_signal(signal.SIGINT)  # py-spy writes its file on SIGINT
                await profiler.wait()
            await child.stop()
            await self.delete(topology)
            if self.args.logs:
                log_path = Path(self.args.logs) / f"{_file_name(case)}.log"
                log_path.write_text("".join(f"{t:.3f} {line}\n" for t, line in child.lines))
        failed = [line for _, line in child.lines if "Traceback" in line or "ERROR" in line]
        if failed:
            raise RuntimeError("the worker logged errors:\n" + "\n".join(failed[:20]))
        rate = case.messages / (finished_at - ready)
        messages = [r for r in requests or [] if str(r["path"]).endswith("/messages")]
        if len(requests or []) >= SIMULATOR_REQUESTS_KEPT:
            messages = []  # some were dropped: no count rather than a wrong one
        return Run(
            case,
            "worker",
            rate,
            rss,
            cpu,
            refused=refused or {},
            rss_samples=samples,
            send_requests=sum(1 for r in messages if r["method"] == "POST") or None,
            lookups=sum(1 for r in messages if r["method"] == "GET") if messages else None,
        )

    async def profile(self, pid: int, case: Case) -> asyncio.subprocess.Process:
        """py-spy sampling ``pid`` until SIGINT, into ``--py-spy``/<case>.txt (collapsed
        stacks; ``top_of_profile`` reads it). The sampler's own CPU is not the worker's."""
        directory = Path(self.args.py_spy)  # made by main()
        self.profiles[case.name] = path = directory / f"{_file_name(case)}.txt"
        return await asyncio.create_subprocess_exec(
            "py-spy", "record", "--pid", str(pid), "--rate", "200", "--format", "raw",
            "--output", str(path), "--nonblocking",
            stdout=asyncio.subprocess.DEVNULL, stderr=asyncio.subprocess.DEVNULL,
        )  # fmt: skip

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

    async def until_depth(
        self, queue: str, count: int, *, sample: Any = None, sample_every_s: float = 0.5
    ) -> float:
        """When ``queue`` first holds ``count`` messages (polled every 10 ms)."""
        assert self.amqp is not None
        channel = await self.amqp.channel()
        next_sample = 0.0
        try:
            async with asyncio.timeout(900):
                while True:
                    declared = await channel.declare_queue(queue, passive=True)
                    depth = declared.declaration_result.message_count or 0
                    if depth >= count:
                        return time.monotonic()
                    if sample is not None and time.monotonic() >= next_sample:
                        sample(depth)
                        next_sample = time.monotonic() + sample_every_s
                    await asyncio.sleep(0.01)
        finally:
            await channel.close()


def _file_name(case: Case) -> str:
    return "".join(c if c.isalnum() else "-" for c in case.name).strip("-")


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
    await channel.set_qos(prefetch_count=args.naive_concurrency)
    queue = await channel.get_queue(args.queue)
    url = f"{args.base_url}/users/{SIM.user_id}/messages"
    auth = aiohttp.BasicAuth(SIM.api_token, SIM.api_secret.get_secret_value())
    connector = aiohttp.TCPConnector(limit=args.naive_concurrency)
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


# The limiter alone -----------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class _Item:
    sender: str
    needs_lookup: bool = False


def limiter_cost(rate_per_s: float, *, sends: int = 20_000, latency_s: float = 0.02) -> Any:
    """CPU microseconds per send of the limits and the scheduler alone, on a simulated clock:
    10 person-to-person numbers, the account and each number allowed ``rate_per_s``, answers
    after ``latency_s``; up to 50 deliveries arrive between two takes, fewer when one is parked.
    Returns (us per send, mean batch, commands parked per send)."""
    settings = WorkerSettings(
        account_messages_per_s=rate_per_s,
        number_messages_per_s=rate_per_s,
        number_requests_per_min=0,
    )
    limits = Limits(settings)
    window = settings.send_prefetch
    scheduler: SendScheduler[_Item] = SendScheduler(
        limits,
        hold_s=settings.hold_s,
        park_tiers_s=settings.retry_delays_s,
        batch_max=settings.batch_max,
        window=window,
    )
    items = [_Item(TEN[n % len(TEN)]) for n in range(len(TEN))]
    answers: list[tuple[float, list[str]]] = []
    now, sent, requests, parked, n = 1000.0, 0, 0, 0, 0
    started = time.process_time()
    while sent < sends:
        for _ in range(50):
            if scheduler.held_count >= window:
                break
            n += 1
            if isinstance(scheduler.admit(items[n % len(items)], now), Park):
                parked += 1  # acked and republished: the next delivery comes after a take
                break
        while answers and answers[0][0] <= now:
            limits.sends_answered(answers.pop(0)[1], now)
        batch = scheduler.take(now)
        if batch:
            sent += len(batch)
            requests += 1
            answers.append((now + latency_s, [item.sender for item in batch]))
            continue
        due = [t for t in (scheduler.next_ready_at(), answers[0][0] if answers else None) if t]
        due = [t for t in due if t != float("inf")]
        now = max(now + 1e-6, min(due)) if due else now + 0.001
    used_s = time.process_time() - started
    return used_s * 1e6 / sent, sent / requests, parked / sent


# The run ----------------------------------------------------------------------------------------


def build_cases(args: argparse.Namespace) -> dict[str, list[Case]]:
    def a2p(rate: float, target: float) -> Case:
        limits = {"account_messages_per_s": rate, "number_messages_per_s": 1, "a2p_numbers": [A2P]}
        return Case(
            f"reach: 1 A2P number, {rate:,.0f}/s allowed, 20 ms answers",
            20.0,
            (A2P,),
            int(rate * args.reach_s),
            worker=limits,
            sim_limits=limits,
            allowed_per_s=rate,
            target_reach=target,
        )

    p2p_limits = {"account_messages_per_s": 100, "number_messages_per_s": 1}
    high = {"account_messages_per_s": 100_000, "number_messages_per_s": 100_000}
    return {
        "off": [Case("limits off, 0 ms answers, 10 numbers", 0.0, TEN, args.messages)],
        "high": [Case("limits on at 100,000/s, 0 ms, 10 numbers", 0.0, TEN, args.messages, high)],
        "reach": [
            a2p(250, 0.95),
            a2p(1000, 0.90),
            Case(
                "reach: 100 P2P numbers at 1/s, account 100/s, 50 ms answers",
                50.0,
                P2P,
                int(100 * args.reach_s),
                worker=p2p_limits,
                sim_limits=p2p_limits,
                allowed_per_s=100,
                target_reach=0.95,
            ),
        ],
        "memory": [Case("memory: limits off, 0 ms, 10 numbers", 0.0, TEN, args.memory_messages)],
    }


def _line(run: Run) -> str:
    cpu = run.cpu_ms_per_send
    refused = sum(run.refused.values())
    line = (
        f"  {run.consumer:>6} {run.sends_per_s:>9.1f}/s {run.peak_rss_mb:>7.1f} MB   "
        f"{cpu['consumer']:.3f} / {cpu['simulator']:.3f} / {cpu['broker']:.3f} / "
        f"{cpu['driver']:.3f} = {run.cpu_total:.3f}   403s: {refused}"
    )
    if run.send_requests:
        batch = run.case.messages / run.send_requests
        line += f"   requests: {run.send_requests} (batch {batch:.1f}), look-ups: {run.lookups}"
    return line


def _met(ok: bool) -> str:
    return "met" if ok else "NOT MET"


async def main(args: argparse.Namespace) -> int:
    machine = describe()
    chosen = args.scenario or list(SCENARIOS)
    cases = build_cases(args)
    runs: dict[tuple[str, str], Run] = {}
    profiles: dict[str, Path] = {}
    limiter: list[tuple[float, tuple[float, float, float]]] = []
    if any(name != "limiter" for name in chosen):
        async with Bench(args) as bench:
            for name in chosen:
                for case in cases.get(name, []):
                    if args.only and args.only not in case.name:
                        continue
                    print(case.name, flush=True)
                    if name == "off":
                        runs[(case.name, "naive")] = run = await bench.run_naive(case)
                        print(_line(run), flush=True)
                    runs[(case.name, "worker")] = run = await bench.run_worker(case)
                    print(_line(run), flush=True)
            profiles = dict(bench.profiles)
    if "limiter" in chosen:
        for rate in (100.0, 1_000.0, 10_000.0, 100_000.0, 1_000_000.0):
            limiter.append((rate, limiter_cost(rate)))

    print(f"\nworker benchmark, {args.queue_type} queues; machine: {machine}, ", end="")
    print(f"load average {os.getloadavg()[0]:.2f} after")
    print("per send, CPU ms: consumer / simulator / broker / this script = all processes\n")
    for run in runs.values():
        print(f"{run.case.name}, {run.case.messages} commands")
        print(_line(run))
    rows: list[tuple[str, str, str, str, str]] = []
    off_case, high_case, memory_case = cases["off"][0], cases["high"][0], cases["memory"][0]
    naive_run = runs.get((off_case.name, "naive"))
    off = runs.get((off_case.name, "worker"))
    high = runs.get((high_case.name, "worker"))
    if naive_run and off:
        rows.append(
            ("worker sends/s, limits off, 0 ms answers, 10 numbers", f"{off.sends_per_s:,.0f}",
             f"naive {naive_run.sends_per_s:,.0f}", ">= naive",
             _met(off.sends_per_s >= naive_run.sends_per_s)),
        )  # fmt: skip
        for label, key in (("consumer", "consumer"), ("all processes", None)):
            mine = off.cpu_ms_per_send["consumer"] if key else off.cpu_total
            base = naive_run.cpu_ms_per_send["consumer"] if key else naive_run.cpu_total
            rows.append(
                (f"worker CPU ms per send, limits off ({label})", f"{mine:.3f}",
                 f"naive {base:.3f}", "<= naive", _met(mine <= base)),
            )  # fmt: skip
    if high:
        base_run = naive_run or off
        base = base_run.cpu_ms_per_send["consumer"] if base_run else float("nan")
        mine = high.cpu_ms_per_send["consumer"]
        shown = f"{base_run.consumer} {base:.3f}" if base_run else "?"
        rows.append(
            ("worker CPU ms per send, limits on at 100,000/s (consumer)", f"{mine:.3f}",
             shown, "<= naive", _met(mine <= base)),
        )  # fmt: skip
    for case in cases["reach"]:
        reached = runs.get((case.name, "worker"))
        if reached is None or case.allowed_per_s is None or case.target_reach is None:
            continue
        share = reached.sends_per_s / case.allowed_per_s
        refused = sum(reached.refused.values())
        rows.append(
            (case.name.removeprefix("reach: "), f"{reached.sends_per_s:,.1f}/s = {share:.1%}, "
             f"{refused} x 403", f"allowed {case.allowed_per_s:,.0f}/s",
             f">= {case.target_reach:.0%}, no 403",
             _met(share >= case.target_reach and refused == 0)),
        )  # fmt: skip
    memory = runs.get((memory_case.name, "worker"))
    if memory:
        rows.append(
            (f"worker peak RSS, {memory.case.messages:,} commands queued",
             f"{memory.peak_rss_mb:.1f} MB", "", f"<= {TARGET_RSS_MB:.0f} MB",
             _met(memory.peak_rss_mb <= TARGET_RSS_MB)),
        )  # fmt: skip
        at = {share: _rss_at(memory, share) for share in (0.1, 0.5, 0.9)}
        flat = at[0.9] - at[0.1] <= FLAT_MB
        shown = ", ".join(f"{mb:.1f} MB at {share:.0%}" for share, mb in at.items())
        rows.append(
            ("worker RSS while the queue drains", shown, "", f"flat (+{FLAT_MB:.0f} MB at most)",
             _met(flat)),
        )  # fmt: skip
    if limiter:
        costs = [cost for _, (cost, _, _) in limiter]
        text = ", ".join(f"{cost:.1f} at {rate:,.0f}/s" for rate, (cost, _, _) in limiter)
        rows.append(
            ("limiter + scheduler CPU us per send (no I/O)", text, "", "flat across rates",
             _met(max(costs) <= 2 * min(costs))),
        )  # fmt: skip
        for rate, (cost, batch, parked) in limiter:
            print(f"limiter at {rate:>9,.0f}/s: {cost:6.1f} us per send, mean batch {batch:.1f}, "
                  f"parked per send {parked:.2f}")  # fmt: skip
    for name, path in profiles.items():
        print(f"\npy-spy, {name} ({path}):")
        for line in top_of_profile(path):
            print("  " + line)
    print("\n| row | bridge | baseline | target | met? |\n|---|---|---|---|---|")
    for row in rows:
        print("| " + " | ".join(row) + " |")
    return 0


def _rss_at(run: Run, share: float) -> float:
    """RSS of the first sample taken once ``share`` of the commands were done."""
    later = [mb for done, mb in run.rss_samples if done >= share]
    return later[0] if later else float("nan")


def parse_args(argv: Sequence[str] | None = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("mode", nargs="?", default="bench", choices=["bench", "naive"])
    parser.add_argument(
        "-s", "--scenario", action="append", choices=SCENARIOS, help="repeatable; default: all"
    )
    parser.add_argument("--only", metavar="TEXT", help="only the cases whose name has TEXT")
    parser.add_argument("--messages", type=int, default=10_000, help="off and high")
    parser.add_argument("--memory-messages", type=int, default=100_000)
    parser.add_argument(
        "--reach-s", type=float, default=15.0, help="seconds of sending at the allowed rate"
    )
    parser.add_argument(
        "--py-spy", metavar="DIR", help="profile each worker run with py-spy into DIR"
    )
    parser.add_argument(
        "--logs", metavar="DIR", help="write each worker run's log lines into DIR/<case>.log"
    )
    parser.add_argument(
        "--set", action="append", metavar="KEY=JSON", help="a worker setting for every worker run"
    )
    parser.add_argument("--naive-concurrency", type=int, default=16)
    parser.add_argument(
        "--worker-concurrency", type=int, default=None, help="worker.concurrency (default: its own)"
    )
    parser.add_argument(
        "--amqp-url",
        default=os.environ.get("BRIDGE_TEST_AMQP_URL", "amqp://guest:guest@127.0.0.1:5672/"),
    )
    parser.add_argument("--queue-type", choices=["quorum", "classic"], default="quorum")
    parser.add_argument("--queue", help=argparse.SUPPRESS)
    parser.add_argument("--base-url", help=argparse.SUPPRESS)
    return parser.parse_args(argv)


if __name__ == "__main__":
    arguments = parse_args()
    if arguments.mode == "naive":
        asyncio.run(naive(arguments))
        raise SystemExit(0)
    for directory in (arguments.py_spy, arguments.logs):
        if directory:
            Path(directory).mkdir(parents=True, exist_ok=True)
    raise SystemExit(asyncio.run(main(arguments)))

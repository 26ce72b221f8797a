"""Receiver benchmark: the full receiver against a naive publisher and a bare handler, same load.

    uv run --frozen python bench/receiver_bench.py            # every server, both loads (~4 min)
    uv run --frozen python bench/receiver_bench.py --quick    # shorter, for a smoke run

Each server runs in a process of its own and takes the same Catapult v1 inbound SMS callback
(JSON POST, every request a new message id so duplicate detection never short-cuts a publish):

- ``receiver``: ``bridge.receiver`` with every feature on (Basic auth, validation, canonical
  CloudEvent, dedup window, spool enabled, metrics), publishing persistent, mandatory and
  confirmed into its quorum queue; 200 only after the confirm.
- ``naive``: an aiohttp handler that publishes each body with aio-pika (persistent, mandatory) on
  one confirm channel and awaits that publish's confirm before answering; no validation.
- ``bare``: an aiohttp handler that reads the body and answers 200; publishes nothing.
- ``serial`` (reference, not a baseline): ``naive`` with one publish in flight at a time, as a
  blocking client would do it. aio-pika already lets concurrent handlers share one channel with
  their confirms in flight together, so ``naive`` above gets that pipelining for free; this row
  shows what it is worth.
- ``dry`` (diagnostic): ``receiver`` with the publish replaced by nothing; with ``bare`` and
  ``naive`` it splits the receiver's cost into HTTP, its own work, and publishing.
- ``x2`` (shown as ``receiver x2``): ``receiver`` with ``receiver.processes = 2``, two receiver
  processes on the one port; its CPU is that of every process of it (the two and the bridge's
  own, which only watches them), and each receiver process's share is shown apart.

The load generator is this script's own process (aiohttp client, 127.0.0.1 only), bounded in
count and in time:

1. saturation: ``--connections`` keep-alive connections, each sending its next request as soon as
   the last is answered, until ``--requests`` answers or ``--seconds`` pass: callbacks/s, p50, p99;
2. offered rate: ``--rate`` callbacks/s (default: half of the naive receiver's saturated rate,
   the naive server runs first) on a fixed schedule (open loop, so a slow answer does not
   slow the offer down) for ``--rate-seconds``; latency is counted from each request's scheduled
   time, so queueing behind a slow answer counts too: p50, p99, and how many were not 200.

For both, the server process's CPU time per answered callback is shown (from /proc): on a small
machine where the broker and the load generator share the CPUs, it is what throughput follows.

The last lines are the receiver's targets, each beside its baseline: saturated rate at least
1.1 x naive's, CPU per callback of its process at most 0.75 x naive's, p99 at most 50 ms at half
of naive's saturated rate.

Each variant's queue is purged before each phase, so no phase meets a backlog left by another.
RabbitMQ must run at ``--amqp-url`` (default: the local broker). Queues and exchanges are named
``bench-<random>.*`` and deleted afterwards. Results go to stdout as a table.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import os
import signal
import socket
import statistics
import subprocess
import sys
import tempfile
import time
import uuid
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import aio_pika
import aiohttp
import orjson
from aiohttp import web
from machine import broker_pid, cpu_seconds, describe, top_of_profile

USERNAME = "catapult"
PASSWORD = "bench-password"
AUTH = aiohttp.encode_basic_auth(USERNAME, PASSWORD)
PATH = "/catapult/messages"
# naive first: it sets the offer
VARIANTS = ("naive", "receiver", "x2", "bare", "serial", "dry")
LABELS = {"x2": "receiver x2"}


def callback_body(n: int) -> bytes:
    return orjson.dumps(
        {
            "eventType": "sms",
            "direction": "in",
            "messageId": f"m-bench{n:018d}",
            "messageUri": f"https://api.catapult.inetwork.com/v1/users/u-1/messages/m-bench{n:018d}",
            "from": "+13233326955",
            "to": "+13865245000",
            "text": "Example",
            "applicationId": "a-rj7jf3fz7teaqupveqpug3i",
            "time": "2012-11-14T16:13:06.076Z",
            "state": "received",
            "segmentCount": 1,
        }
    )


# Servers (run in a child process: ``receiver_bench.py serve VARIANT PORT PREFIX SPOOL``) ---------


def bench_settings(
    amqp_url: str, prefix: str, spool_dir: str, port: int, *, processes: int = 1
) -> Any:
    from bridge.settings import load_settings

    return load_settings(
        broker={
            "url": amqp_url,
            "events_exchange": f"{prefix}.events",
            "dead_letter_exchange": f"{prefix}.dead-letter",
            "inbound_queue": f"{prefix}.inbound.sms",
            "status_queue": f"{prefix}.outbound.status",
            "send_queue": f"{prefix}.outbound.sms",
            "import_queue": f"{prefix}.outbound.import",
        },
        receiver={
            "username": USERNAME,
            "password": PASSWORD,
            "spool_dir": spool_dir,
            "host": "127.0.0.1",
            "port": port,
            "processes": processes,
        },
        log={"level": "WARNING"},
    )


async def serve_receiver(
    amqp_url: str, port: int, prefix: str, spool_dir: str, *, dry: bool = False
) -> None:
    """The receiver as a runner serves it: ``ReceiverServer`` with the settings' host and port.

    ``dry``: the publish (and its confirm) replaced by nothing, to see what the rest costs.
    """
    from bridge.logs import configure_logging
    from bridge.operations import OperationsServer
    from bridge.receiver import ReceiverServer

    if dry:
        from bridge.broker import BrokerLink, Envelope

        async def publish_nothing(self: BrokerLink, envelope: Envelope, **_: object) -> None:
            return None

        BrokerLink.publish = publish_nothing  # type: ignore[method-assign]

    settings = bench_settings(amqp_url, prefix, spool_dir, port)
    configure_logging(settings.log)
    async with (
        ReceiverServer(settings) as server,
        # Its metrics, on the operations port as `bridge run` serves them: the next port up.
        OperationsServer(
            server.registry, {"receiver": server.readiness}, host="127.0.0.1", port=port + 1
        ),
    ):
        await wait_for_signal()


async def serve_processes(amqp_url: str, port: int, prefix: str, spool_dir: str) -> None:
    """Two receiver processes on ``port``, as `bridge run` starts them, metrics added up."""
    from prometheus_client import CollectorRegistry

    from bridge.logs import configure_logging
    from bridge.operations import OperationsServer
    from bridge.receiver.supervisor import ReceiverSupervisor

    settings = bench_settings(amqp_url, prefix, spool_dir, port, processes=2)
    configure_logging(settings.log)
    processes = ReceiverSupervisor(settings)
    await processes.start()
    registry = CollectorRegistry()
    processes.collect_into(registry)
    try:
        async with OperationsServer(
            registry, {"receiver": processes.readiness}, host="127.0.0.1", port=port + 1
        ):
            await wait_for_signal()
    finally:
        await processes.stop()


async def serve_naive(amqp_url: str, port: int, prefix: str, *, serial: bool = False) -> None:
    connection = await aio_pika.connect_robust(amqp_url)
    channel = await connection.channel(publisher_confirms=True, on_return_raises=True)
    exchange = await channel.declare_exchange(
        f"{prefix}.naive", aio_pika.ExchangeType.TOPIC, durable=True
    )
    queue = await channel.declare_queue(
        f"{prefix}.naive.inbound", durable=True, arguments={"x-queue-type": "quorum"}
    )
    await queue.bind(exchange, "inbound.*")

    one_at_a_time = asyncio.Lock()

    async def publish(body: bytes) -> None:
        await exchange.publish(
            aio_pika.Message(body, delivery_mode=aio_pika.DeliveryMode.PERSISTENT),
            routing_key="inbound.sms",
            mandatory=True,
        )

    async def handle(request: web.Request) -> web.Response:
        body = await request.read()
        if serial:
            async with one_at_a_time:
                await publish(body)
        else:
            await publish(body)
        return web.Response(text="ok")

    await serve_handler(handle, port)
    await connection.close()


async def serve_bare(port: int) -> None:
    async def handle(request: web.Request) -> web.Response:
        await request.read()
        return web.Response(text="ok")

    await serve_handler(handle, port)


async def serve_handler(handle: Any, port: int) -> None:
    app = web.Application()
    app.router.add_post(PATH, handle)
    runner = web.AppRunner(app, access_log=None)
    await runner.setup()
    await web.TCPSite(runner, "127.0.0.1", port).start()
    await wait_for_signal()
    await runner.cleanup()


async def wait_for_signal() -> None:
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for signum in (signal.SIGINT, signal.SIGTERM):
        loop.add_signal_handler(signum, stop.set)
    print("ready", flush=True)
    await stop.wait()


def serve(argv: list[str]) -> None:
    variant, port, prefix, spool_dir, amqp_url = argv
    from bridge import eventloop

    if variant == "x2":
        eventloop.run(serve_processes(amqp_url, int(port), prefix, spool_dir))
    elif variant in ("receiver", "dry"):
        # The receiver runs on the loop `bridge run` uses (uvloop); the baselines on asyncio's.
        eventloop.run(serve_receiver(amqp_url, int(port), prefix, spool_dir, dry=variant == "dry"))
    elif variant in ("naive", "serial"):
        asyncio.run(serve_naive(amqp_url, int(port), prefix, serial=variant == "serial"))
    else:
        asyncio.run(serve_bare(int(port)))


# Load -----------------------------------------------------------------------------------------


@dataclass
class Result:
    answered: int
    failed: int
    seconds: float
    latencies_s: list[float]
    server_cpu_s: float = float("nan")
    broker_cpu_s: float = float("nan")
    load_cpu_s: float = float("nan")
    per_process_cpu_s: list[float] = field(default_factory=list)  # children of the server

    def per_callback_ms(self, cpu_s: float) -> float:
        return cpu_s * 1000 / self.answered if self.answered else float("nan")

    @property
    def cpu_ms_per_callback(self) -> float:
        return self.per_callback_ms(self.server_cpu_s)

    @property
    def rate(self) -> float:
        return self.answered / self.seconds if self.seconds else 0.0

    def percentile(self, share: float) -> float:
        if not self.latencies_s:
            return float("nan")
        ordered = sorted(self.latencies_s)
        return ordered[min(len(ordered) - 1, int(share * len(ordered)))] * 1000


class HttpConnection(asyncio.Protocol):
    """One keep-alive HTTP/1.1 connection sending prepared requests, one at a time.

    The load generator shares the machine with the server under test and the broker, so it
    must cost little: requests are bytes made in advance and an answer is only split into its
    status line, headers and ``Content-Length`` body (aiohttp's servers always send one).
    """

    def __init__(self) -> None:
        self.transport: asyncio.Transport | None = None
        self.buffer = bytearray()
        self.waiter: asyncio.Future[int] | None = None
        self.closed = False

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self.transport = transport  # type: ignore[assignment]  # uvloop's is not a subclass

    def data_received(self, data: bytes) -> None:
        self.buffer += data
        end = self.buffer.find(b"\r\n\r\n")
        if end < 0 or self.waiter is None or self.waiter.done():
            return
        head = self.buffer[:end].decode("latin-1").split("\r\n")
        length = 0
        for line in head[1:]:
            name, _, value = line.partition(":")
            if name.lower() == "content-length":
                length = int(value)
            elif name.lower() == "connection" and value.strip().lower() == "close":
                self.closed = True  # the answer is the last on this connection
        if len(self.buffer) < end + 4 + length:
            return
        del self.buffer[: end + 4 + length]
        self.waiter.set_result(int(head[0].split(" ", 2)[1]))

    def connection_lost(self, exc: Exception | None) -> None:
        self.closed = True
        if self.waiter is not None and not self.waiter.done():
            self.waiter.set_exception(ConnectionError("the server closed the connection"))

    async def request(self, data: bytes) -> int:
        assert self.transport is not None
        if self.closed or self.transport.is_closing():
            raise ConnectionError("the connection is closed")
        self.waiter = asyncio.get_running_loop().create_future()
        self.transport.write(data)
        return await self.waiter

    def close(self) -> None:
        if self.transport is not None:
            self.transport.close()


class Load:
    """Requests made in advance, numbered from ``first`` so every run has new message ids."""

    def __init__(self, port: int, first: int) -> None:
        self.port = port
        self.next = first
        self.idle: list[HttpConnection] = []

    def requests(self, count: int) -> list[bytes]:
        start, self.next = self.next, self.next + count
        return [self.request(callback_body(n)) for n in range(start, start + count)]

    def request(self, body: bytes) -> bytes:
        head = (
            f"POST {PATH} HTTP/1.1\r\nHost: 127.0.0.1:{self.port}\r\nAuthorization: {AUTH}\r\n"
            f"Content-Type: application/json\r\nContent-Length: {len(body)}\r\n\r\n"
        )
        return head.encode("latin-1") + body

    async def connect(self) -> HttpConnection:
        loop = asyncio.get_running_loop()
        _, connection = await loop.create_connection(HttpConnection, "127.0.0.1", self.port)
        return connection

    async def post(self, data: bytes) -> bool:
        """Send one request on an idle connection (or a new one); True if answered 200."""
        try:
            connection = self.idle.pop() if self.idle else await self.connect()
        except OSError:
            return False
        try:
            status = await connection.request(data)
        except (ConnectionError, RuntimeError):  # RuntimeError: uvloop, writing to a closed one
            connection.close()
            return False
        if connection.closed:
            connection.close()
        else:
            self.idle.append(connection)
        return status == 200

    def close(self) -> None:
        while self.idle:
            self.idle.pop().close()

    async def saturate(self, *, connections: int, requests: int, seconds: float) -> Result:
        """``connections`` users, each sending its next request as soon as the last is answered."""
        pending = self.requests(requests)
        latencies: list[float] = []
        failed = 0
        deadline = time.perf_counter() + seconds

        async def user() -> None:
            nonlocal failed
            while pending and time.perf_counter() < deadline:
                data = pending.pop()
                sent = time.perf_counter()
                if await self.post(data):
                    latencies.append(time.perf_counter() - sent)
                else:
                    failed += 1

        for _ in range(connections - len(self.idle)):
            self.idle.append(await self.connect())
        started = time.perf_counter()
        await asyncio.gather(*(user() for _ in range(connections)))
        elapsed = time.perf_counter() - started
        self.close()
        return Result(len(latencies), failed, elapsed, latencies)

    async def offer(self, *, rate: float, seconds: float, max_in_flight: int = 512) -> Result:
        """``rate`` requests a second on a fixed schedule, whatever the answers' pace."""
        pending = self.requests(int(rate * seconds))
        latencies: list[float] = []
        failed = 0
        in_flight = asyncio.Semaphore(max_in_flight)

        async def one(data: bytes, scheduled: float) -> None:
            nonlocal failed
            try:
                if await self.post(data):
                    latencies.append(time.perf_counter() - scheduled)
                else:
                    failed += 1
            finally:
                in_flight.release()

        tasks = []
        started = time.perf_counter()
        for index, data in enumerate(pending):
            scheduled = started + index / rate
            delay = scheduled - time.perf_counter()
            if delay > 0:
                await asyncio.sleep(delay)
            await in_flight.acquire()
            tasks.append(asyncio.create_task(one(data, scheduled)))
        await asyncio.gather(*tasks)
        elapsed = time.perf_counter() - started
        self.close()
        return Result(len(latencies), failed, elapsed, latencies)


# Orchestration ---------------------------------------------------------------------------------


def children(pid: int) -> list[int]:
    """The child processes of ``pid`` (the receiver processes of ``x2``)."""
    try:
        return [int(c) for c in Path(f"/proc/{pid}/task/{pid}/children").read_text().split()]
    except OSError:
        return []


class CpuMeter:
    """CPU seconds used by the server (with its children), the broker and this process (the
    load) over a phase; ``per_process`` keeps each server process's own."""

    def __init__(self, server_pid: int, broker: int | None) -> None:
        self.server = [server_pid, *children(server_pid)]
        self.broker = broker
        self.start = {pid: cpu_seconds(pid) for pid in [*self.server, broker] if pid}
        self.load_start = time.process_time()

    def charge(self, result: Result) -> Result:
        used = {pid: cpu_seconds(pid) - self.start[pid] for pid in self.server}
        result.server_cpu_s = sum(used.values())
        result.per_process_cpu_s = [used[pid] for pid in self.server[1:]]
        broker = self.broker
        result.broker_cpu_s = cpu_seconds(broker) - self.start[broker] if broker else float("nan")
        result.load_cpu_s = time.process_time() - self.load_start
        return result


def free_port() -> int:
    """A free port whose next one is free too (the receiver's operations server takes it)."""
    while True:
        with socket.socket() as sock, socket.socket() as above:
            sock.bind(("127.0.0.1", 0))
            port = int(sock.getsockname()[1])
            try:
                above.bind(("127.0.0.1", port + 1))
            except (OSError, OverflowError):
                continue
            return port


def start_server(variant: str, port: int, prefix: str, spool_dir: str, amqp_url: str) -> Any:
    process = subprocess.Popen(
        [sys.executable, __file__, "serve", variant, str(port), prefix, spool_dir, amqp_url],
        stdout=subprocess.PIPE,
        text=True,
    )
    assert process.stdout is not None
    line = process.stdout.readline()  # the server prints "ready" once it listens
    if line.strip() != "ready":
        process.kill()
        raise SystemExit(f"{variant} server did not start")
    return process


def start_profiler(directory: str | None, variant: str, pid: int) -> Any:
    """py-spy recording ``pid`` (raw collapsed stacks) into ``directory``/<variant>.txt."""
    if directory is None:
        return None
    return subprocess.Popen(
        ["py-spy", "record", "--pid", str(pid), "--subprocesses", "--rate", "200",
         "--format", "raw", "--output", f"{directory}/{variant}.txt", "--nonblocking"],
        stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
    )  # fmt: skip


def stop_server(process: Any) -> None:
    process.send_signal(signal.SIGTERM)
    try:
        process.wait(timeout=30)
    except subprocess.TimeoutExpired:
        process.kill()


# Where each variant's events go; emptied between phases so no run meets another's backlog.
QUEUES = {
    "receiver": "inbound.sms",
    "x2": "inbound.sms",
    "naive": "naive.inbound",
    "serial": "naive.inbound",
}


async def purge(amqp_url: str, queue: str, prefix: str) -> None:
    if not queue:
        return
    connection = await aio_pika.connect(amqp_url)
    channel = await connection.channel()
    declared = await channel.get_queue(f"{prefix}.{queue}", ensure=False)
    await declared.purge()
    await connection.close()


async def delete_bench_names(amqp_url: str, prefix: str) -> None:
    connection = await aio_pika.connect(amqp_url)
    channel = await connection.channel()
    for queue in (
        "inbound.sms",
        "outbound.status",
        "outbound.sms",
        "outbound.import",
        "outbound.sms.results",
        "outbound.import.results",
        "outbound.sms.dead",
        "outbound.import.dead",
        "naive.inbound",
    ):
        await channel.queue_delete(f"{prefix}.{queue}")
    for delay in ("1s", "5s", "30s", "120s", "600s"):
        for command in ("outbound.sms", "outbound.import"):
            await channel.queue_delete(f"{prefix}.{command}.retry.{delay}")
    for exchange in ("events", "dead-letter", "naive"):
        await channel.exchange_delete(f"{prefix}.{exchange}")
    await connection.close()


async def receiver_outcomes(metrics_url: str) -> dict[str, float]:
    """How the receiver answered, from its /metrics (published, spooled, duplicate, ...)."""
    async with aiohttp.ClientSession() as session, session.get(metrics_url) as response:
        text = await response.text()
    prefix = 'bridge_receiver_callbacks_total{outcome="'
    counts = {}
    for line in text.splitlines():
        if line.startswith(prefix):
            name, _, value = line[len(prefix) :].partition('"} ')
            counts[name] = float(value)
    return counts


def row(variant: str, load: str, result: Result) -> str:
    name = LABELS.get(variant, variant)
    broker = result.per_callback_ms(result.broker_cpu_s)
    generator = result.per_callback_ms(result.load_cpu_s)
    return (
        f"| {name:<11} | {load:<15} | {result.rate:>11.0f} | {result.percentile(0.50):>6.1f} "
        f"| {result.percentile(0.99):>6.1f} | {result.failed:>7} "
        f"| {result.cpu_ms_per_callback:>6.3f} / {broker:>6.3f} / {generator:>6.3f} |"
    )


def print_targets(saturation: dict[str, Result], offered: dict[str, Result], rate: float) -> None:
    """The receiver's rows of the targets: bridge, baseline, target, met."""
    mine, naive = saturation["receiver"], saturation["naive"]
    ratio = mine.rate / naive.rate
    cpu_ratio = mine.cpu_ms_per_callback / naive.cpu_ms_per_callback
    everything = {
        name: sum(r.per_callback_ms(s) for s in (r.server_cpu_s, r.broker_cpu_s, r.load_cpu_s))
        for name, r in (("receiver", mine), ("naive", naive))
    }
    p99 = offered["receiver"].percentile(0.99)
    naive_p99 = offered["naive"].percentile(0.99) if "naive" in offered else float("nan")
    rows = [
        ("receiver callbacks/s, saturated, every feature on", f"{mine.rate:,.0f} = {ratio:.2f}x",
         f"naive {naive.rate:,.0f}", ">= 1.1x naive", ratio >= 1.1),
        ("receiver CPU ms per callback (its process), saturated",
         f"{mine.cpu_ms_per_callback:.3f} = {cpu_ratio:.2f}x",
         f"naive {naive.cpu_ms_per_callback:.3f}", "<= 0.75x naive", cpu_ratio <= 0.75),
        ("CPU ms per callback, all processes (server + broker + load)",
         f"{everything['receiver']:.3f}", f"naive {everything['naive']:.3f}", "(reference)", None),
        (f"receiver p99 at half naive's rate ({rate:g}/s offered)", f"{p99:.1f} ms",
         f"naive {naive_p99:.1f} ms", "<= 50 ms", p99 <= 50),
    ]  # fmt: skip
    print("\n| row | bridge | baseline | target | met? |\n|---|---|---|---|---|")
    for name, bridge, baseline, target, ok in rows:
        met = "" if ok is None else ("met" if ok else "NOT MET")
        print(f"| {name} | {bridge} | {baseline} | {target} | {met} |")


async def run(args: argparse.Namespace) -> int:
    prefix = f"bench-{uuid.uuid4().hex[:8]}"
    machine = describe()
    saturation: dict[str, Result] = {}
    outcomes: dict[str, float] = {}
    offered: dict[str, Result] = {}
    first = 0
    broker = broker_pid()
    rate: float | None = args.rate
    with tempfile.TemporaryDirectory(prefix="receiver-bench-") as spool_dir:
        try:
            for variant in args.variants:
                port = free_port()
                process = start_server(variant, port, prefix, spool_dir, args.amqp_url)
                try:
                    load = Load(port, first)
                    await load.saturate(connections=args.connections, requests=500, seconds=5)
                    await purge(args.amqp_url, QUEUES.get(variant, ""), prefix)
                    meter = CpuMeter(process.pid, broker)
                    profiler = start_profiler(args.py_spy, variant, process.pid)
                    saturation[variant] = meter.charge(
                        await load.saturate(
                            connections=args.connections,
                            requests=args.requests,
                            seconds=args.seconds,
                        )
                    )
                    if profiler is not None:
                        profiler.send_signal(signal.SIGINT)  # py-spy writes its file on SIGINT
                        profiler.wait(timeout=30)
                    if rate is None:  # half of the naive receiver's saturated rate
                        naive = saturation.get("naive")
                        rate = round(naive.rate / 2) if naive else 1000.0
                    await purge(args.amqp_url, QUEUES.get(variant, ""), prefix)
                    meter = CpuMeter(process.pid, broker)
                    offered[variant] = meter.charge(
                        await load.offer(rate=rate, seconds=args.rate_seconds)
                    )
                    await purge(args.amqp_url, QUEUES.get(variant, ""), prefix)
                    first = load.next
                    if variant == "receiver":
                        outcomes = await receiver_outcomes(f"http://127.0.0.1:{port + 1}/metrics")
                finally:
                    stop_server(process)
                print(row(variant, "saturation", saturation[variant]), flush=True)
        finally:
            await delete_bench_names(args.amqp_url, prefix)

    rate = rate or 0.0
    print()
    print(
        f"machine: {machine} before the run, {os.getloadavg()[0]:.2f} after; "
        f"saturation: {args.connections} connections, up to {args.requests} requests or "
        f"{args.seconds:g} s; offered: {rate:g}/s for {args.rate_seconds:g} s"
    )
    print()
    print(
        "| server      | load            | callbacks/s | p50 ms | p99 ms | not 200 "
        "| CPU ms/cb: server / broker / load |"
    )
    print(
        "|-------------|-----------------|------------:|-------:|-------:|--------:"
        "|----------------------------------:|"
    )
    for variant in args.variants:
        print(row(variant, "saturation", saturation[variant]))
    for variant in args.variants:
        print(row(variant, f"offered {rate:g}/s", offered[variant]))
    print()
    for load_name, results in (("saturation", saturation), (f"offered {rate:g}/s", offered)):
        x2 = results.get("x2")
        if x2 is not None and x2.per_process_cpu_s:
            shares = " + ".join(f"{x2.per_callback_ms(s):.3f}" for s in x2.per_process_cpu_s)
            watcher = x2.per_callback_ms(x2.server_cpu_s - sum(x2.per_process_cpu_s))
            print(
                f"receiver x2, {load_name}: CPU ms per callback by process: {shares} "
                f"(receiver processes) + {watcher:.3f} (the bridge's process, watching)"
            )
    if {"receiver", "serial"} <= set(saturation):
        ratio = saturation["receiver"].rate / saturation["serial"].rate
        print(f"receiver / serial throughput: {ratio:.2f}x (reference)")
    if {"receiver", "bare"} <= set(saturation):
        ratio = saturation["receiver"].rate / saturation["bare"].rate
        print(f"receiver / bare throughput:  {ratio:.2f}x")
    if args.py_spy:
        for variant in args.variants:
            path = Path(args.py_spy) / f"{variant}.txt"
            if path.exists():
                print(f"\npy-spy, {variant} at saturation ({path}):")
                for line in top_of_profile(path):
                    print("  " + line)
    if {"receiver", "naive"} <= set(saturation):
        print_targets(saturation, offered, rate)
    if {"x2", "receiver"} <= set(saturation):
        mine, two = saturation["receiver"], saturation["x2"]
        print(
            f"receiver x2 / receiver: {two.rate / mine.rate:.2f}x the rate, "
            f"{two.cpu_ms_per_callback / mine.cpu_ms_per_callback:.2f}x the CPU per callback"
        )
    if outcomes:
        shown = ", ".join(f"{name} {count:.0f}" for name, count in outcomes.items() if count)
        print(f"receiver answers (warm-up included): {shown}")
    lat = saturation.get("receiver")
    if lat is not None and lat.latencies_s:
        print(
            f"receiver mean latency at saturation: {statistics.mean(lat.latencies_s) * 1000:.1f} ms"
        )
    return 0


def main() -> int:
    if len(sys.argv) > 1 and sys.argv[1] == "serve":
        serve(sys.argv[2:])
        return 0
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument(
        "--amqp-url",
        default=os.environ.get("BRIDGE_TEST_AMQP_URL", "amqp://guest:guest@127.0.0.1:5672/"),
    )
    parser.add_argument("--variants", nargs="+", choices=VARIANTS, default=list(VARIANTS))
    parser.add_argument("--connections", type=int, default=64)
    parser.add_argument("--requests", type=int, default=30_000)
    parser.add_argument("--seconds", type=float, default=20.0)
    parser.add_argument(
        "--rate", type=float, default=None, help="offered callbacks/s (default: half naive's)"
    )
    parser.add_argument("--rate-seconds", type=float, default=15.0)
    parser.add_argument("--quick", action="store_true", help="short runs (smoke test)")
    parser.add_argument(
        "--py-spy", metavar="DIR", help="profile each server's saturation phase with py-spy"
    )
    args = parser.parse_args()
    if args.quick:
        args.requests, args.seconds, args.rate_seconds = 3000, 5.0, 3.0
    if args.py_spy:
        os.makedirs(args.py_spy, exist_ok=True)
    with contextlib.suppress(KeyboardInterrupt):
        from bridge import eventloop

        return eventloop.run(run(args))  # the load generator on uvloop too: it must cost little
    return 130


if __name__ == "__main__":
    raise SystemExit(main())

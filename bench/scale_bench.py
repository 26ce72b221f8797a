"""Scale benchmark: 1, 2 and 4 worker processes sharing one broker and one Catapult account.

Everything real: RabbitMQ (the local node; with ``--own-node`` a node this script starts on port
5699; with ``--cluster`` a three-node cluster it starts on ports 5690-5692; both stopped at the
end), the simulator (``bridge simulator`` in a process of its own) and each worker (``bridge run
--role worker``, one process each). For each number of workers, two scenarios:

- spread: limits off on both sides, commands over many sending numbers, a fixed answer latency:
  sends per second, which should grow with the workers while the machine has CPU to spare.
- hot: a few person-to-person numbers and the account limited as on the platform (the
  simulator's limits equal to the workers' settings): sends per second (held at the limit),
  the 403s the simulator answered, and the most sends of one number and of the account in any
  10 s window (Catapult allows rate x 10).

The workers start together; once each has said it is ready (``--ready-line``) and, with
``worker.shards``, once they hold every shard between them and send from all they hold (their
warm-up and balance done, from their log lines), the commands are
published, and the time runs from the first publish to the last result in the results queue.
Every run also counts sends that reached the simulator twice (by the command id in their tag).
CPU per send is read from /proc for each worker, the simulator and RabbitMQ.

    uv run --frozen python bench/scale_bench.py [--workers 1,2,4] [--cluster] [--scenario spread]
        [--spread-commands 6000] [--hot-commands 300] [--set worker.KEY=VALUE ...]

``--set`` passes any setting to the workers (and, for ``simulator.*``, to the simulator), e.g.
``--set worker.shards=8``. Figures are printed; the script fails only when a run does not finish.
"""

from __future__ import annotations

import argparse
import asyncio
import bisect
import json
import re
import shutil
import sys
import tempfile
import time
import uuid
from collections import Counter, defaultdict
from collections.abc import Sequence
from dataclasses import dataclass, field
from datetime import datetime
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

import aio_pika
import aiohttp
import orjson
from machine import broker_pid, cpu_seconds, describe
from worker_bench import Child, _environ, _free_port

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from bridge.broker import Topology, declare_topology  # noqa: E402
from bridge.catapult import RATE_WINDOW_S  # noqa: E402
from bridge.events.tag import decode_tag  # noqa: E402
from bridge.settings import SimulatorSettings, load_settings  # noqa: E402
from tests.fixtures.broker import delete_topology  # noqa: E402
from tests.rabbitmq_nodes import ClusterLayout, RabbitCluster, RabbitNode  # noqa: E402

SIM = SimulatorSettings()
RECIPIENT = "+19195559999"


@dataclass(frozen=True)
class Scenario:
    name: str
    numbers: tuple[str, ...]
    commands: int
    account_per_s: float  # 0: off
    number_per_s: float  # 0: off
    latency_ms: float


@dataclass
class Figures:
    scenario: str
    workers: int
    commands: int
    seconds: float
    sends: int
    refusals: dict[str, int]
    duplicates: int
    max_number_window: int
    max_account_window: int
    cpu_ms_per_send: list[float]  # each worker
    simulator_cpu_ms: float
    broker_cpu_ms: float
    notes: list[str] = field(default_factory=list)

    @property
    def sends_per_s(self) -> float:
        return self.sends / self.seconds if self.seconds > 0 else float("nan")

    @property
    def rate_limit_refusals(self) -> int:
        return sum(n for code, n in self.refusals.items() if code.startswith("message-rate-limit"))


def most_in_window(times: Sequence[float], window_s: float = RATE_WINDOW_S) -> int:
    """The most of ``times`` (sorted) in any half-open window (t - window_s, t]."""
    best = 0
    for i, t in enumerate(times):
        first = bisect.bisect_right(times, t - window_s, 0, i + 1)
        best = max(best, i + 1 - first)
    return best


def _epoch_s(iso: str) -> float:
    return datetime.fromisoformat(iso.replace("Z", "+00:00")).timestamp()


class ScaleBench:
    def __init__(
        self, args: argparse.Namespace, amqp_url: str, broker_pids: list[int | None]
    ) -> None:
        self.args = args
        self.amqp_url = amqp_url
        self.broker_pids = broker_pids
        self.sim_port = _free_port()
        self.sim_url = f"http://127.0.0.1:{self.sim_port}"
        self.worker_sets, simulator_sets = _settings_overrides(args.set)
        self.simulator = Child(
            [sys.executable, "-m", "bridge.cli", "simulator", "--host", "127.0.0.1",
             "--port", str(self.sim_port), "--log-level", "WARNING"],
            env=_environ({"simulator": {"max_messages": 1_000_000, **simulator_sets}}),
        )  # fmt: skip
        self.http: aiohttp.ClientSession | None = None
        self.amqp: aio_pika.abc.AbstractConnection | None = None

    async def __aenter__(self) -> ScaleBench:
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
        # Not a robust connection: its channels answer a passive declare from a cache.
        self.amqp = await aio_pika.connect(self.amqp_url)
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
            return await answer.json(content_type=None)

    def settings_for(self, scenario: Scenario) -> dict[str, Any]:
        prefix = f"scale-{scenario.name}-{uuid.uuid4().hex[:6]}"
        worker: dict[str, Any] = {
            "account_messages_per_s": scenario.account_per_s,
            "number_messages_per_s": scenario.number_per_s,
            "number_requests_per_min": 0,
        }
        worker.update(self.worker_sets)
        return {
            "broker": {
                "url": self.amqp_url,
                "events_exchange": f"{prefix}.events",
                "dead_letter_exchange": f"{prefix}.dead-letter",
                "inbound_queue": f"{prefix}.inbound",
                "status_queue": f"{prefix}.status",
                "send_queue": f"{prefix}.outbound.sms",
                "import_queue": f"{prefix}.outbound.import",
            },
            "catapult": {
                "base_url": f"{self.sim_url}/v1",
                "user_id": SIM.user_id,
                "api_token": SIM.api_token,
                "api_secret": SIM.api_secret.get_secret_value(),
            },
            "worker": worker,
            "log": {"level": "INFO"},
        }

    async def prepare_simulator(self, scenario: Scenario) -> None:
        await self.control("POST", "/reset")
        await self.control("DELETE", "/limits")
        await self.control(
            "PUT",
            "/limits",
            {
                "account_messages_per_s": scenario.account_per_s,
                "number_messages_per_s": scenario.number_per_s,
            },
        )
        await self.control("PUT", "/faults", {"latency_ms": scenario.latency_ms})
        for number in scenario.numbers:
            await self.control("POST", "/numbers", {"number": number})

    async def declare(self, topology: Topology) -> None:
        assert self.amqp is not None
        channel = await self.amqp.channel()
        await declare_topology(channel, topology)
        await channel.close()

    async def queue_commands(self, topology: Topology, scenario: Scenario) -> None:
        assert self.amqp is not None
        channel = await self.amqp.channel(publisher_confirms=True)
        exchange = channel.default_exchange
        numbers = scenario.numbers
        for start in range(0, scenario.commands, 1000):
            await asyncio.gather(
                *(
                    exchange.publish(
                        aio_pika.Message(
                            orjson.dumps({"from": numbers[n % len(numbers)], "to": RECIPIENT,
                                          "text": f"scale {n}"}),
                            message_id=f"scale-{n}",
                            content_type="application/json",
                            delivery_mode=aio_pika.DeliveryMode.PERSISTENT,
                        ),
                        routing_key=topology.send_queue,
                    )
                    for n in range(start, min(scenario.commands, start + 1000))
                )
            )  # fmt: skip
        await channel.close()

    async def run(self, scenario: Scenario, workers: int) -> Figures:
        overrides = self.settings_for(scenario)
        topology = Topology.from_settings(load_settings(**overrides))
        await self.prepare_simulator(scenario)
        await self.declare(topology)
        children = []
        for _ in range(workers):
            env = {**overrides, "operations": {"host": "127.0.0.1", "port": _free_port()}}
            children.append(
                Child(
                    [sys.executable, "-m", "bridge.cli", "run", "--role", "worker"], _environ(env)
                )
            )
        assert self.simulator.process is not None
        sim_pid = self.simulator.process.pid
        try:
            await asyncio.gather(*(child.start() for child in children))
            await asyncio.gather(*(c.wait_for(self.args.ready_line) for c in children))
            shards = int(overrides.get("worker", {}).get("shards") or 0)
            if shards:
                await _sending_from_every_shard(children, shards, self.args.timeout_s)
            pids = [c.process.pid for c in children if c.process is not None]
            cpu_before = [cpu_seconds(pid) for pid in pids]
            sim_before, rabbit_before = cpu_seconds(sim_pid), self.broker_cpu_s()
            started = time.monotonic()
            await self.queue_commands(topology, scenario)
            try:
                done = await self.until_depth(
                    topology.results_queue(topology.send_queue), scenario.commands
                )
            except TimeoutError:
                tails = "\n".join(line for c in children for _, line in c.lines[-10:])
                requests = await self.control("GET", "/requests?limit=5")
                refusals = await self.control("GET", "/refusals")
                raise RuntimeError(
                    f"{scenario.name} with {workers} workers did not finish within "
                    f"{self.args.timeout_s:g} s; the simulator's last requests: {requests}, "
                    f"refusals: {refusals}; the workers' last lines:\n{tails}"
                ) from None
            cpu_used = [cpu_seconds(pid) - b for pid, b in zip(pids, cpu_before, strict=True)]
            sim_used = cpu_seconds(sim_pid) - sim_before
            rabbit_used = self.broker_cpu_s() - rabbit_before
        finally:
            await asyncio.gather(*(c.stop() for c in children if c.process is not None))
            assert self.amqp is not None
            await delete_topology(self.amqp, topology)
        figures = await self.read_simulator(scenario, workers)
        figures.seconds = done - started
        sends = max(1, figures.sends)
        figures.cpu_ms_per_send = [used * 1000 / sends for used in cpu_used]
        figures.simulator_cpu_ms = sim_used * 1000 / sends
        figures.broker_cpu_ms = rabbit_used * 1000 / sends
        for child in children:
            figures.notes += [line for _, line in child.lines if "Traceback" in line]
        return figures

    def broker_cpu_s(self) -> float:
        return sum(cpu_seconds(pid) for pid in self.broker_pids)

    async def read_simulator(self, scenario: Scenario, workers: int) -> Figures:
        messages = await self.control("GET", "/messages")
        refusals = await self.control("GET", "/refusals")
        by_number: dict[str, list[float]] = defaultdict(list)
        all_times: list[float] = []
        commands: Counter[str] = Counter()
        for message in messages:
            if message.get("direction") != "out":
                continue
            moment = _epoch_s(message["time"])
            by_number[message["from"]].append(moment)
            all_times.append(moment)
            command_id = decode_tag(message.get("tag")).command_id
            if command_id is not None:
                commands[command_id] += 1
        return Figures(
            scenario=scenario.name,
            workers=workers,
            commands=scenario.commands,
            seconds=0.0,
            sends=len(all_times),
            refusals=dict(refusals),
            duplicates=sum(n - 1 for n in commands.values() if n > 1),
            max_number_window=max(map(most_in_window, map(sorted, by_number.values())), default=0),
            max_account_window=most_in_window(sorted(all_times)),
            cpu_ms_per_send=[],
            simulator_cpu_ms=0.0,
            broker_cpu_ms=0.0,
        )  # fmt: skip

    async def until_depth(self, queue: str, count: int) -> float:
        """When ``queue`` first holds ``count`` messages (polled every 20 ms)."""
        assert self.amqp is not None
        channel = await self.amqp.channel()
        try:
            async with asyncio.timeout(self.args.timeout_s):
                while True:
                    declared = await channel.declare_queue(queue, passive=True)
                    if (declared.declaration_result.message_count or 0) >= count:
                        return time.monotonic()
                    await asyncio.sleep(0.02)
        finally:
            await channel.close()


def _settings_overrides(items: Sequence[str]) -> tuple[dict[str, Any], dict[str, Any]]:
    worker: dict[str, Any] = {}
    simulator: dict[str, Any] = {}
    for item in items:
        key, _, raw = item.partition("=")
        section, _, name = key.partition(".")
        if section not in ("worker", "simulator") or not name or not raw:
            raise SystemExit(f"--set {item!r}: expected worker.NAME=VALUE or simulator.NAME=VALUE")
        try:
            value: Any = json.loads(raw)
        except json.JSONDecodeError:
            value = raw
        (worker if section == "worker" else simulator)[name] = value
    return worker, simulator


_HOLDING = re.compile(r"holding shard (\d+) of ")
_GIVING_UP = re.compile(r"giving shard (\d+) of .* up")
_SENDING_FROM = re.compile(r"sending from (\d+) of \d+ shards")


def shard_state(lines: Sequence[str]) -> tuple[set[int], int]:
    """The shards a worker holds and how many it sends from, from its log lines."""
    held: set[int] = set()
    warm = 0
    for line in lines:
        if match := _HOLDING.search(line):
            held.add(int(match[1]))
        elif match := _GIVING_UP.search(line):
            held.discard(int(match[1]))
        elif match := _SENDING_FROM.search(line):
            warm = int(match[1])
    return held, warm


async def _sending_from_every_shard(
    children: Sequence[Child], shards: int, timeout_s: float
) -> None:
    """Until the workers hold every shard between them and send from all they hold: the warm-up
    (``worker.shard_warmup_s``) and the balance of a start stay out of the figures."""
    async with asyncio.timeout(timeout_s):
        while True:
            states = [shard_state([line for _, line in c.lines]) for c in children]
            held = sum(len(h) for h, _ in states)
            if held == shards and all(len(h) == warm for h, warm in states):
                return
            await asyncio.sleep(0.05)


def scenarios(args: argparse.Namespace) -> list[Scenario]:
    spread = tuple(f"+1919556{n:04d}" for n in range(args.spread_numbers))
    hot = tuple(f"+1919557{n:04d}" for n in range(args.hot_numbers))
    every = [
        Scenario("spread", spread, args.spread_commands, 0.0, 0.0, args.latency_ms),
        Scenario("hot", hot, args.hot_commands, args.hot_account_per_s, args.hot_number_per_s, 0.0),
    ]
    return [s for s in every if not args.scenario or s.name in args.scenario]


def print_table(runs: list[Figures], args: argparse.Namespace, header: list[str]) -> None:
    print()
    for line in header:
        print(line)
    print(
        "| scenario | workers | commands | sends | sends/s | 403 rate-limit | duplicates "
        "| most of one number in 10 s | most of the account in 10 s "
        "| CPU ms/send per worker | simulator | broker |"
    )
    print("|---|---:|---:|---:|---:|---:|---:|---:|---:|---|---:|---:|")
    for r in runs:
        per_worker = " / ".join(f"{c:.2f}" for c in r.cpu_ms_per_send)
        print(
            f"| {r.scenario} | {r.workers} | {r.commands} | {r.sends} | {r.sends_per_s:.1f} "
            f"| {r.rate_limit_refusals} | {r.duplicates} | {r.max_number_window} "
            f"| {r.max_account_window} | {per_worker} | {r.simulator_cpu_ms:.2f} "
            f"| {r.broker_cpu_ms:.2f} |"
        )
    for r in runs:
        other = {k: v for k, v in r.refusals.items() if not k.startswith("message-rate-limit")}
        if other:
            print(f"  {r.scenario}, {r.workers} workers: other refusals {other}")
        for note in r.notes:
            print(f"  {r.scenario}, {r.workers} workers: {note}")


async def main(args: argparse.Namespace) -> int:
    workers = [int(n) for n in args.workers.split(",")]
    header = [f"machine: {describe()}"]
    cluster: RabbitCluster | None = None
    node: RabbitNode | None = None
    base: Path | None = None
    amqp_url = args.amqp_url
    if args.cluster:
        base = Path(tempfile.mkdtemp(prefix="scale-bench-cluster-"))
        cluster = RabbitCluster(base, ClusterLayout())
        took = await asyncio.to_thread(cluster.start)
        header.append(f"broker: a three-node cluster of our own, started in {took:.1f} s")
        amqp_url = cluster.urls[0]
        broker_pids = [n.os_pid() for n in cluster.nodes]
    elif args.own_node:
        base = Path(tempfile.mkdtemp(prefix="scale-bench-node-"))
        node = RabbitNode(base, name="scalebench@localhost", amqp_port=5699, dist_port=25699)
        took = await asyncio.to_thread(node.start)
        header.append(f"broker: a node of our own (5699), started in {took:.1f} s")
        amqp_url = node.url
        broker_pids = [node.os_pid()]
    else:
        header.append(f"broker: {amqp_url.split('@')[-1]}")
        broker_pids = [broker_pid(urlsplit(amqp_url).port or 5672)]
    header.append(
        f"spread: {args.spread_commands} commands over {args.spread_numbers} numbers, limits off, "
        f"answers after {args.latency_ms:g} ms; hot: {args.hot_commands} commands over "
        f"{args.hot_numbers} numbers at {args.hot_number_per_s:g}/s each, account "
        f"{args.hot_account_per_s:g}/s (allowed in 10 s: "
        f"{args.hot_number_per_s * RATE_WINDOW_S:g} a number, "
        f"{args.hot_account_per_s * RATE_WINDOW_S:g} the account)"
    )
    if args.set:
        header.append(f"settings: {' '.join(args.set)}")
    runs: list[Figures] = []
    try:
        async with ScaleBench(args, amqp_url, broker_pids) as bench:
            for scenario in scenarios(args):
                for count in workers:
                    figures = await bench.run(scenario, count)
                    runs.append(figures)
                    print(
                        f"{scenario.name} x{count}: {figures.sends_per_s:.1f} sends/s, "
                        f"{figures.rate_limit_refusals} 403s, {figures.duplicates} duplicates",
                        flush=True,
                    )
    finally:
        if cluster is not None:
            await asyncio.to_thread(cluster.discard)
        if node is not None:
            await asyncio.to_thread(node.discard)
        if base is not None:
            shutil.rmtree(base, ignore_errors=True)
    print_table(runs, args, header)
    return 0


def parse_args(argv: Sequence[str] | None = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=(__doc__ or "").splitlines()[0])
    parser.add_argument("--workers", default="1,2,4", help="worker counts, comma-separated")
    parser.add_argument(
        "--scenario",
        action="append",
        choices=("spread", "hot"),
        default=[],
        help="run only this scenario (repeat for both; default: both)",
    )
    parser.add_argument("--spread-commands", type=int, default=6000)
    parser.add_argument("--spread-numbers", type=int, default=100)
    parser.add_argument("--latency-ms", type=float, default=20.0, help="spread: answer latency")
    parser.add_argument("--hot-commands", type=int, default=300)
    parser.add_argument("--hot-numbers", type=int, default=10)
    parser.add_argument("--hot-number-per-s", type=float, default=1.0)
    parser.add_argument("--hot-account-per-s", type=float, default=10.0)
    parser.add_argument("--timeout-s", type=float, default=600.0, help="per run")
    parser.add_argument(
        "--ready-line",
        default="worker consuming",
        help="the log line each worker prints when it is ready; the commands go after it",
    )
    parser.add_argument("--cluster", action="store_true", help="a three-node cluster of our own")
    parser.add_argument(
        "--own-node", action="store_true", help="a single RabbitMQ node of our own (port 5699)"
    )
    parser.add_argument("--set", action="append", default=[], metavar="SECTION.NAME=VALUE")
    parser.add_argument("--amqp-url", default="amqp://guest:guest@127.0.0.1:5672/")
    return parser.parse_args(argv)


if __name__ == "__main__":
    raise SystemExit(asyncio.run(main(parse_args())))

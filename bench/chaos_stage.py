"""One chaos scenario's stage: its processes, its names, its load, and the count at the end.

A ``Stage`` gives a scenario what it needs and cleans it up: unique queue and exchange names on
the runner's RabbitMQ node, a simulator process (its sending numbers on the account, wired to the
receiver when there is one), ``bridge run`` processes with settings of the scenario, TCP proxies,
the callback and command loads, a timeline of the faults. After the faults it waits for the bridge
to settle (every command answered, every stored callback published, or a deadline), stops the
processes, reads every queue empty and the simulator's messages and callback attempts, and hands
the ledger to ``chaos_ledger.tally``. The diagnosis adds what the logs say about each finding.
"""

from __future__ import annotations

import asyncio
import base64
import contextlib
import secrets
import time
from collections import Counter
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from datetime import datetime
from pathlib import Path
from typing import Any

import aio_pika
import aiohttp
import orjson
from chaos_ledger import Callback, Figures, Finding, Ledger, Result, SentMessage, tally
from chaos_load import CallbackLoad, CommandLoad, Rabbit, expected_event_id
from chaos_procs import Child, bridge_child, free_port, simulator_child
from chaos_proxy import TcpProxy
from chaos_rabbit import PrivateNode

from bridge.broker import Topology, declare_topology
from bridge.events.tag import decode_tag
from bridge.settings import SimulatorSettings, load_settings

SIM = SimulatorSettings()
RECEIVER_USER = "chaos"
SENDERS = tuple(f"+1919555{n:04d}" for n in range(300, 308))
READY = {"receiver": "receiver listening", "worker": "worker consuming", "all": "bridge running"}


@dataclass
class Options:
    callback_rate: float
    send_rate: float
    load_s: float
    fault_s: float
    outage_s: float
    broker_down_s: float
    stall_s: float
    kill_commands: int
    kill_latency_ms: float
    senders: int
    settle_s: float
    quiet_s: float
    retry_delays_s: list[float]
    log_level: str
    seed: int


@dataclass
class Outcome:
    name: str
    figures: Figures
    findings: list[Finding]
    notes: list[str]
    duration_s: float
    timeline: list[tuple[float, str]] = field(default_factory=list)

    @property
    def is_clean(self) -> bool:
        return (
            not self.findings
            and not self.figures.pending
            and not any(n.startswith("FAIL") for n in self.notes)
        )


class Stage:
    def __init__(
        self, name: str, *, options: Options, node: PrivateNode, out_dir: Path, run_id: str
    ) -> None:
        self.name = name
        self.options = options
        self.node = node
        self.run_id = run_id
        self.dir = out_dir / name
        self.dir.mkdir(parents=True, exist_ok=True)
        self.epoch = time.monotonic()
        self.wall_epoch = time.time()
        self.t0 = 0.0
        self.ledger = Ledger()
        self.prefix = f"chaos.{run_id}.{name}"
        self.password = secrets.token_urlsafe(12)
        self.authorization = (
            "Basic " + base64.b64encode(f"{RECEIVER_USER}:{self.password}".encode()).decode()
        )
        self.senders = SENDERS[: max(1, options.senders)]
        self.children: list[Child] = []
        self.proxies: list[TcpProxy] = []
        self.notes: list[str] = []
        self.tasks: list[asyncio.Task[Any]] = []
        self.rabbit = Rabbit(node.url)
        self.http: aiohttp.ClientSession | None = None
        self.simulator: Child | None = None
        self.sim_port = 0
        self.receiver_port = free_port()
        self.worker_retry = options.retry_delays_s
        topology_settings = load_settings(broker=self.broker_names(), worker=self.worker())
        self.topology = Topology.from_settings(topology_settings)

    async def open(self) -> None:
        """Declare the scenario's topology on the node, as the bridge will (idempotent): the load
        may start before a bridge process has declared it."""
        connection = await aio_pika.connect(self.node.url, timeout=10)
        try:
            await declare_topology(await connection.channel(), self.topology)
        finally:
            await connection.close()

    # -- time ------------------------------------------------------------------------------------

    def now(self) -> float:
        return time.monotonic() - self.epoch

    def note(self, what: str) -> None:
        at = self.now()
        self.ledger.note(at, what)
        print(f"  {at:6.1f} s  {what}", flush=True)

    def begin(self) -> None:
        """The load starts now: ``until`` counts from here."""
        self.t0 = self.now()
        self.note("load starts")

    async def until(self, at_s: float) -> None:
        """Wait until ``at_s`` seconds after ``begin``."""
        delay = self.t0 + at_s - self.now()
        if delay > 0:
            await asyncio.sleep(delay)

    def spawn(self, coro: Awaitable[Any]) -> asyncio.Task[Any]:
        task = asyncio.ensure_future(coro)
        self.tasks.append(task)
        return task

    # -- settings --------------------------------------------------------------------------------

    def broker_names(self) -> dict[str, Any]:
        p = self.prefix
        return {
            "events_exchange": f"{p}.events",
            "dead_letter_exchange": f"{p}.dead-letter",
            "inbound_queue": f"{p}.inbound.sms",
            "status_queue": f"{p}.outbound.status",
            "send_queue": f"{p}.outbound.sms",
            "import_queue": f"{p}.outbound.import",
        }

    def worker(self) -> dict[str, Any]:
        return {
            "account_messages_per_s": 0,
            "number_messages_per_s": 0,
            "number_requests_per_min": 0,
            "retry_delays_s": self.worker_retry,
        }

    def settings(
        self, *, amqp_port: int | None = None, catapult_port: int | None = None
    ) -> dict[str, Any]:
        """``bridge run`` settings of this scenario: its names, the node (or a proxy's port),
        the simulator (or a proxy's port), the receiver's port and credentials."""
        port = self.node.amqp_port if amqp_port is None else amqp_port
        sim_port = self.sim_port if catapult_port is None else catapult_port
        return {
            "broker": {"url": f"amqp://guest:guest@127.0.0.1:{port}/", **self.broker_names()},
            "receiver": {
                "host": "127.0.0.1",
                "port": self.receiver_port,
                "username": RECEIVER_USER,
                "password": self.password,
                "spool_dir": str(self.dir / "spool"),
            },
            "worker": self.worker(),
            "catapult": {
                "base_url": f"http://127.0.0.1:{sim_port}/v1",
                "user_id": SIM.user_id,
                "api_token": SIM.api_token,
                "api_secret": SIM.api_secret.get_secret_value(),
                "dashboard_account_id": SIM.dashboard_account_id,
                "dashboard_user_name": SIM.dashboard_user_name,
                "dashboard_password": SIM.dashboard_password.get_secret_value(),
            },
            "log": {"level": self.options.log_level, "format": "json"},
        }

    @property
    def receiver_url(self) -> str:
        return f"http://127.0.0.1:{self.receiver_port}/catapult/messages"

    # -- processes -------------------------------------------------------------------------------

    async def start_simulator(self, *, wire_receiver: bool, extra: list[str] | None = None) -> None:
        self.sim_port = free_port()
        self.simulator = simulator_child(
            self.sim_port, seed=self.options.seed, log_dir=self.dir, epoch=self.epoch, extra=extra
        )
        self.children.append(self.simulator)
        await self.simulator.start()
        if await self.simulator.wait_for("Catapult v1 simulator at", timeout_s=30) is None:
            raise RuntimeError("the simulator did not start:\n" + "\n".join(self.simulator.tail()))
        application_id = None
        if wire_receiver:
            url = f"http://{RECEIVER_USER}:{self.password}@127.0.0.1:{self.receiver_port}"
            app = await self.sim("POST", "/applications", {
                "name": "chaos", "incomingMessageUrl": url + "/catapult/messages",
            })  # fmt: skip
            application_id = app["id"]
        for number in self.senders:
            body: dict[str, Any] = {"number": number}
            if application_id is not None:
                body["applicationId"] = application_id
            await self.sim("POST", "/numbers", body)

    async def sim(self, method: str, path: str, body: Any = None) -> Any:
        if self.http is None:
            self.http = aiohttp.ClientSession(timeout=aiohttp.ClientTimeout(total=60))
        url = f"http://127.0.0.1:{self.sim_port}/_sim{path}"
        async with self.http.request(method, url, json=body) as answer:
            data = await answer.read()
            if answer.status >= 300:
                raise RuntimeError(f"{method} /_sim{path}: {answer.status} {data[:300]!r}")
            return orjson.loads(data) if data else None

    async def set_faults(self, what: str, **faults: Any) -> None:
        await self.sim("PUT", "/faults", faults)
        self.note(what)

    async def clear_faults(self) -> None:
        await self.sim("DELETE", "/faults")
        self.note("Catapult faults off")

    def bridge(self, name: str, role: str, settings: dict[str, Any]) -> Child:
        """A ``bridge run`` process; its operations server on a port of its own (kept across
        restarts)."""
        own = {**settings, "operations": {"host": "127.0.0.1", "port": free_port()}}
        child = bridge_child(name, role, own, log_dir=self.dir, epoch=self.epoch)
        self.children.append(child)
        return child

    async def start_bridge(self, child: Child, role: str, *, wait: bool = True) -> bool:
        """Start it; with ``wait``, until it says it is ready (False if it did not in 30 s)."""
        since = len(child.lines)
        await child.start()
        if not wait:
            return True
        line = await child.wait_for(READY[role], timeout_s=30, since=since)
        if line is None:
            state = "exited" if not child.is_running else "is not ready after 30 s"
            self.fail(f"{child.name} {state}: {' | '.join(child.tail(3))}")
            return False
        return True

    def fail(self, text: str) -> None:
        self.notes.append("FAIL " + text)
        print(f"  {self.now():6.1f} s  FAIL {text}", flush=True)

    async def proxy(self, target_port: int) -> TcpProxy:
        proxy = TcpProxy(target_port)
        await proxy.start()
        self.proxies.append(proxy)
        return proxy

    # -- load ------------------------------------------------------------------------------------

    def callback_load(self) -> CallbackLoad:
        return CallbackLoad(
            ledger=self.ledger,
            url=self.receiver_url,
            authorization=self.authorization,
            to_number=self.senders[0],
            run_id=self.prefix,
            now=self.now,
        )

    def command_load(self, senders: tuple[str, ...] | None = None) -> CommandLoad:
        return CommandLoad(
            ledger=self.ledger,
            url=self.node.url,
            queue=self.topology.send_queue,
            senders=senders or self.senders,
            prefix=f"{self.name}-{self.run_id}",
            now=self.now,
        )

    # -- the end ---------------------------------------------------------------------------------

    def _command_queues(self) -> list[str]:
        t = self.topology
        return [t.send_queue, *(t.retry_queue(t.send_queue, d) for d in t.retry_delays_s)]

    async def _sim_ok_callbacks(self) -> int:
        if self.simulator is None or not self.simulator.is_running:
            return 0
        try:
            attempts = await self.sim("GET", "/callbacks")
        except (aiohttp.ClientError, RuntimeError, TimeoutError):
            return 0
        return len({expected_event_id(a["event"]) for a in attempts if a["outcome"] == "ok"})

    def _bridge_running(self) -> bool:
        return any(c.is_running for c in self.children if c is not self.simulator)

    async def settle(self) -> None:
        """Wait until every command has a result and every stored callback its event; or no
        progress for ``quiet_s`` with nothing queued, or for ``stuck_s`` at all; or no bridge
        process left; or ``settle_s`` passed."""
        options = self.options
        self.note("settling")
        deadline = self.now() + options.settle_s
        # Longer than the longest retry tier: a command waiting in one is progress to come.
        stuck_s = max(options.quiet_s, 2 * max(self.worker_retry, default=0) + 10)
        t = self.topology
        results_queue = t.results_queue(t.send_queue)
        last: tuple[int, int] | None = None
        last_change = self.now()
        why = "deadline"
        while self.now() < deadline:
            if not self._bridge_running():
                why = "no bridge process running"
                break
            commands = sum(1 for c in self.ledger.commands.values() if c.confirmed)
            callbacks = sum(1 for c in self.ledger.callbacks.values() if c.is_2xx)
            # Every command ends in a result (a failed one has a dead letter besides): a dead
            # letter without its result is a command not done, left to the stuck rule.
            results = await self.rabbit.depths([results_queue])
            events = await self.rabbit.depths([t.inbound_queue, t.status_queue])
            queued = await self.rabbit.depths(self._command_queues())
            if results is not None and events is not None:
                quiet_for = self.now() - last_change
                # The simulator's callbacks are counted only when the rest is done: the list of
                # every attempt is the one costly question here.
                if (
                    results >= commands
                    and events >= callbacks
                    and events >= callbacks + await self._sim_ok_callbacks()
                ):
                    why = "everything answered"
                    break
                if (results, events) != last:
                    last, last_change = (results, events), self.now()
                elif queued == 0 and quiet_for > options.quiet_s:
                    why = f"no progress for {options.quiet_s:.0f} s, nothing queued"
                    break
                elif quiet_for > stuck_s:
                    why = f"no progress for {stuck_s:.0f} s, {queued} commands queued"
                    break
            await asyncio.sleep(0.5)
        if self.simulator is not None and self.simulator.is_running:
            with contextlib.suppress(aiohttp.ClientError, RuntimeError, TimeoutError):
                await self.sim("POST", "/idle", {"timeoutMs": 10000})
        self.note(f"settled: {why}")

    async def stop_all(self) -> None:
        for task in self.tasks:
            if not task.done():
                task.cancel()
        if self.tasks:
            await asyncio.gather(*self.tasks, return_exceptions=True)
        for proxy in self.proxies:
            proxy.resume()
            await proxy.restore()
        for child in reversed(self.children):
            if child is not self.simulator:
                await child.stop()

    async def collect(self) -> None:
        """Read everything the scenario left: queues, the simulator's messages and callbacks."""
        ledger = self.ledger
        t = self.topology
        if not self.node.is_running():
            await self.node.start()
            self.note("RabbitMQ started to read the queues")
        for queue in (t.inbound_queue, t.status_queue):
            for message in await self.rabbit.drain(queue):
                ledger.events[message.message_id or ""] += 1
        for message in await self.rabbit.drain(t.results_queue(t.send_queue)):
            data = orjson.loads(message.body).get("data", {})
            ledger.results[str(data.get("commandId"))].append(
                Result(
                    outcome=str(data.get("outcome")),
                    message_id=data.get("messageId"),
                    reason=data.get("reason"),
                    recovered=bool(data.get("recovered")),
                )
            )
        for message in await self.rabbit.drain(t.dead_letter_queue(t.send_queue)):
            headers = message.headers or {}
            command_id = str(headers.get("x-bridge-command-id") or message.message_id)
            reason = headers.get("x-bridge-reason")
            if reason is None:
                reason = "broker-" + str(headers.get("x-first-death-reason", "unknown"))
            ledger.dead_letters[command_id].append(str(reason))
        for queue in self._command_queues():
            for message in await self.rabbit.drain(queue):
                ledger.pending.add(message.message_id or "")
        await self.rabbit.close()
        if self.simulator is None:
            return
        for resource in await self.sim("GET", "/messages"):
            if resource.get("direction") != "out":
                continue
            tagged = decode_tag(resource.get("tag")).command_id
            if tagged is None:
                ledger.untagged_sends += 1
                continue
            ledger.sent[tagged].append(
                SentMessage(resource["id"], self._relative(resource.get("time")))
            )
        for attempt in await self.sim("GET", "/callbacks"):
            eid = expected_event_id(attempt["event"])
            if eid is None:
                continue
            at = self._relative(attempt.get("time"))
            record = ledger.callbacks.get(eid)
            if record is None:
                record = Callback(
                    event_id=eid,
                    source="simulator",
                    sent_at_s=at or 0.0,
                    message_id=attempt["messageId"],
                )
                ledger.callbacks[eid] = record
            if record.source != "simulator" or record.is_2xx:
                continue
            record.attempts += 1
            record.status = attempt.get("status") if attempt["outcome"] == "ok" else None
            record.error = attempt.get("error")
            record.answered_at_s = at

    def _relative(self, iso: str | None) -> float | None:
        if not iso:
            return None
        with contextlib.suppress(ValueError):
            return datetime.fromisoformat(iso.replace("Z", "+00:00")).timestamp() - self.wall_epoch
        return None

    async def close(self) -> None:
        for child in self.children:
            await child.stop()
        for proxy in self.proxies:
            await proxy.close()
        if self.http is not None:
            await self.http.close()
        await self.rabbit.close()

    # -- the diagnosis ---------------------------------------------------------------------------

    def diagnose(self, finding: Finding) -> str:
        """What the processes logged about the finding's ids (the first lines, with times)."""
        needles = {finding.id}
        if finding.kind == "lost-callback":
            record = self.ledger.callbacks.get(finding.id)
            if record is not None:
                needles.add(record.message_id)
        else:
            needles.update(m.catapult_id for m in self.ledger.sent.get(finding.id, []))
        seen: list[str] = []
        for child in self.children:
            for line in child.lines:
                if any(n and line.mentions(n) for n in needles):
                    seen.append(f"{child.name} {line.at_s:.1f} s: {line.message[:160]}")
                    if len(seen) >= 3:
                        return "; ".join(seen)
        return "; ".join(seen) if seen else "no log line names it"

    def log_summary(self) -> list[str]:
        """Per process: its warnings and errors, grouped, the most frequent first."""
        lines = []
        for child in self.children:
            counts: Counter[str] = Counter()
            for line in child.lines:
                if line.level in ("WARNING", "ERROR", "CRITICAL"):
                    counts[f"{line.level} {_shape(line.message)}"] += 1
            for text, count in counts.most_common(3):
                lines.append(f"{child.name}: {count} x {text[:150]}")
            for exit_ in child.unexpected_exits():
                lines.append(f"{child.name}: exited by itself with status {exit_.code} at "
                             f"{exit_.at_s:.1f} s")  # fmt: skip
        return lines

    async def finish(self) -> Outcome:
        for child in self.children:
            for exit_ in child.unexpected_exits():
                self.fail(
                    f"{child.name} exited by itself (status {exit_.code}) at {exit_.at_s:.1f} s"
                )
        figures, findings = tally(self.ledger)
        if self.ledger.untagged_sends:
            self.notes.append(
                f"{self.ledger.untagged_sends} messages at Catapult carry no command id"
            )
        if self.ledger.publish_failures:
            self.notes.append(
                f"{self.ledger.publish_failures} sends not published (RabbitMQ away; not counted)"
            )
        if figures.pending:
            self.notes.append(
                f"FAIL {figures.pending} commands still queued when the run settled: the worker "
                "did not finish them"
            )
        unconfirmed = sum(1 for c in self.ledger.commands.values() if not c.confirmed)
        if unconfirmed:
            self.notes.append(f"{unconfirmed} publishes unconfirmed (not counted as sent)")
        for finding in findings:
            finding.detail += " | log: " + self.diagnose(finding)
        return Outcome(
            name=self.name,
            figures=figures,
            findings=findings,
            notes=self.notes + self.log_summary(),
            duration_s=self.now(),
            timeline=list(self.ledger.timeline),
        )


def _shape(message: str) -> str:
    """A log message with its ids and numbers blanked, to group lines of one kind."""
    out = []
    for word in message.split():
        out.append("#" if any(ch.isdigit() for ch in word) else word)
    return " ".join(out)


Scenario = Callable[[Stage], Awaitable[None]]

"""``bridge import-numbers``: Dashboard numbers from a CSV file, one import command each.

The whole file is read first (``numbers_csv.py``): every bad row is reported with its line, and
with ``--strict`` nothing is imported when there is one. Then one import command per number goes
to the import queue, each with the command id derived from its number and application, at most
``--in-flight`` of them waiting for their result at a time, so an interrupt leaves few behind.
The results come back through a queue of its own bound to the events exchange
(``result.import.*``), matched by command id. Catapult allows ``worker.number_requests_per_min``
number calls a minute and the worker keeps to it: when results come at that pace the progress
says it is waiting on that limit.

A terminal gets a progress bar (done, failed, already imported, remaining, rate, time left); any
other output one line per result. Ctrl-C stops publishing and ends cleanly: the commands already
published are still imported by the worker, and ``--resume`` (reading the results file) imports
what is left; a number imported meanwhile answers ``already-imported``, never a second import.
The run ends with a summary table and the results file (``--out``, default next to the input).

Exit status: 0 every number imported (or already there); 1 some failed or bad rows were
skipped, or no result came for ``--idle-timeout``; 2 bad usage (with ``--strict``, a bad row);
130 interrupted.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import signal
import sys
import time
from collections import deque
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import orjson
from rich.console import Console, Group
from rich.live import Live
from rich.progress import (
    BarColumn,
    MofNCompleteColumn,
    Progress,
    TaskProgressColumn,
    TextColumn,
    TimeRemainingColumn,
)
from rich.table import Table

from bridge import eventloop
from bridge.broker.errors import PublishFailed
from bridge.broker.subscription import Subscription, subscribe
from bridge.broker.topology import Topology
from bridge.cli.connection import confirmed_publisher, connected
from bridge.cli.errors import CliError, UsageError
from bridge.cli.numbers_csv import (
    FINAL,
    NumberList,
    ResultRow,
    ResultsFile,
    Row,
    read_numbers,
    read_results,
)
from bridge.cli.options import add_settings_options, load
from bridge.events.envelope import IMPORT_RESULT_PREFIX, Envelope
from bridge.settings import Settings

IMPORT_TYPE = "io.catapult-bridge.command.import.v1"
RATE_WINDOW_S = 60.0
# Results arriving at this share of the configured number-call rate or more: the limit paces.
PACED_SHARE = 0.8
QUIET_S = 10.0  # no result for this long: the progress says it is waiting


def add_parser(commands: Any) -> None:
    parser = commands.add_parser(
        "import-numbers",
        help="import Dashboard numbers from a CSV file",
        description="Import Dashboard numbers listed in a CSV file (a header with a 'number' "
        "column; optional 'applicationId' and 'name' columns), one import command each, "
        "followed to their results. Ctrl-C stops; --resume goes on.",
    )
    parser.add_argument("file", type=Path, metavar="FILE.csv")
    parser.add_argument(
        "--application-id", help="application for rows without an applicationId column value"
    )
    parser.add_argument("--name-column", metavar="C", help="column holding each number's name")
    parser.add_argument("--strict", action="store_true", help="import nothing when any row is bad")
    parser.add_argument(
        "--resume", action="store_true", help="skip numbers the results file says are done"
    )
    parser.add_argument(
        "--out", type=Path, metavar="RESULTS.csv", help="results file (default FILE.results.csv)"
    )
    parser.add_argument(
        "--in-flight",
        type=int,
        default=10,
        metavar="N",
        help="commands waiting for their result at most (default 10)",
    )
    parser.add_argument(
        "--idle-timeout",
        type=float,
        default=120.0,
        metavar="S",
        help="give up when no result comes for S seconds (default 120)",
    )
    add_settings_options(parser, broker=True)
    parser.set_defaults(handler=_handle)


@dataclass
class Tally:
    """What is known so far; ``remaining`` counts what has no result yet."""

    total: int
    done: int = 0
    failed: int = 0
    already: int = 0
    started_at: float = field(default_factory=time.monotonic)
    last_result_at: float = field(default_factory=time.monotonic)
    recent: deque[float] = field(default_factory=deque)

    @property
    def finished(self) -> int:
        return self.done + self.failed + self.already

    @property
    def remaining(self) -> int:
        return self.total - self.finished

    def count(self, outcome: str, now: float) -> None:
        if outcome == "succeeded":
            self.done += 1
        elif outcome == "already-imported":
            self.already += 1
        else:
            self.failed += 1
        self.last_result_at = now
        self.recent.append(now)
        while self.recent and self.recent[0] < now - RATE_WINDOW_S:
            self.recent.popleft()

    def per_min(self, now: float) -> float:
        span = min(RATE_WINDOW_S, now - self.started_at)
        return 60.0 * len(self.recent) / span if span > 1.0 else 0.0


def status(tally: Tally, *, now: float, limit_per_min: float, window_full: bool) -> str:
    """A few words on what the run waits for (pure: the bar and the plain lines show it)."""
    rate = tally.per_min(now)
    if now - tally.last_result_at > QUIET_S:
        return f"no result for {now - tally.last_result_at:.0f} s: waiting for the worker"
    if limit_per_min and window_full and rate >= PACED_SHARE * limit_per_min:
        return f"waiting on Catapult's number-call limit ({limit_per_min:g}/min)"
    return "importing"


def _handle(args: argparse.Namespace) -> int:
    if args.in_flight < 1:
        raise UsageError("--in-flight must be at least 1")
    if args.idle_timeout <= 0:
        raise UsageError("--idle-timeout must be above 0")
    settings = load(args)
    numbers = read_numbers(
        args.file, application_id=args.application_id, name_column=args.name_column
    )
    for problem in numbers.problems:
        print(f"{args.file}: {problem}", file=sys.stderr)
    if numbers.problems and args.strict:
        raise UsageError(
            f"{len(numbers.problems)} bad row(s) in {args.file}: nothing imported (--strict)"
        )
    out: Path = args.out or args.file.with_suffix(".results.csv")
    previous = read_results(out) if args.resume else {}
    console = Console(stderr=False)
    return eventloop.run(
        import_numbers(settings, numbers, out=out, previous=previous, args=args, console=console)
    )


async def import_numbers(
    settings: Settings,
    numbers: NumberList,
    *,
    out: Path,
    previous: dict[str, ResultRow],
    args: argparse.Namespace,
    console: Console,
) -> int:
    topology = Topology.from_settings(settings)
    todo = deque(
        row for row in numbers.rows if previous.get(row.number, _NONE).outcome not in FINAL
    )
    skipped = len(numbers.rows) - len(todo)
    if skipped:
        console.print(f"resuming: {skipped} number(s) already done in {out}")
    results = ResultsFile(out, keep=previous.values())
    known: dict[str, ResultRow] = dict(previous)
    for problem in numbers.problems:
        row = ResultRow(problem.number or f"(line {problem.line})", "invalid", "", problem.reason)
        results.add(row)
        known[row.number] = row
    tally = Tally(total=len(todo))
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for signum in (signal.SIGINT, signal.SIGTERM):
        loop.add_signal_handler(signum, stop.set)
    interrupted = False
    try:
        async with connected(settings, command="import-numbers") as session:
            subscription = await subscribe(
                session, exchange=topology.events_exchange, patterns=(f"{IMPORT_RESULT_PREFIX}.*",)
            )
            publisher = await confirmed_publisher(session, settings)
            runner = _Run(
                settings=settings,
                topology=topology,
                subscription=subscription,
                publisher=publisher,
                todo=todo,
                tally=tally,
                results=results,
                known=known,
                args=args,
                console=console,
                stop=stop,
            )
            interrupted = await runner.run()
            if interrupted:
                runner.note_interrupted()
    finally:
        for signum in (signal.SIGINT, signal.SIGTERM):
            with contextlib.suppress(ValueError, RuntimeError):
                loop.remove_signal_handler(signum)
        results.finish(_in_order(numbers, known))
    _summary(console, numbers, known, out=out, interrupted=interrupted)
    if interrupted:
        return 130
    bad = [r for r in known.values() if r.outcome not in FINAL]
    return 1 if bad else 0


_NONE = ResultRow("", "")


def _in_order(numbers: NumberList, known: dict[str, ResultRow]) -> Any:
    seen: set[str] = set()
    lines = sorted(
        [(row.line, row.number) for row in numbers.rows]
        + [(p.line, p.number or f"(line {p.line})") for p in numbers.problems]
    )
    for _, number in lines:
        if number in seen:
            continue
        seen.add(number)
        yield known.get(number) or ResultRow(number, "not-imported", "", "not published")


class _Run:
    def __init__(
        self,
        *,
        settings: Settings,
        topology: Topology,
        subscription: Subscription,
        publisher: Any,
        todo: deque[Row],
        tally: Tally,
        results: ResultsFile,
        known: dict[str, ResultRow],
        args: argparse.Namespace,
        console: Console,
        stop: asyncio.Event,
    ) -> None:
        self.settings = settings
        self.topology = topology
        self.subscription = subscription
        self.publisher = publisher
        self.todo = todo
        self.tally = tally
        self.results = results
        self.known = known
        self.args = args
        self.console = console
        self.stop = stop
        self.in_flight: dict[str, Row] = {}
        self.limit_per_min = settings.worker.number_requests_per_min
        self.progress: Progress | None = None
        self.task_id: Any = None
        self._said = ""

    async def run(self) -> bool:
        """Import until everything has a result; True when interrupted."""
        live: Live | None = None
        if self.console.is_terminal:
            # The bar, the counts and what it waits on: three lines that fit 80 columns.
            self.progress = Progress(
                TextColumn("importing"),
                BarColumn(),
                MofNCompleteColumn(),
                TaskProgressColumn(),
                TimeRemainingColumn(),
                console=self.console,
            )
            self.task_id = self.progress.add_task("importing", total=self.tally.total)
            live = Live(
                Group(self.progress, _Counts(self)), console=self.console, refresh_per_second=4
            )
            live.start()
        try:
            return await self._loop()
        finally:
            self._refresh()
            if live is not None:
                live.stop()

    async def _loop(self) -> bool:
        while self.todo or self.in_flight:
            if self.stop.is_set():
                return True
            while self.todo and len(self.in_flight) < self.args.in_flight:
                await self._publish(self.todo.popleft())
            self._refresh()
            if time.monotonic() - self.tally.last_result_at > self.args.idle_timeout:
                raise CliError(
                    f"no import result for {self.args.idle_timeout:g} s: is the worker running "
                    f"(`bridge run`)? {self.tally.remaining} number(s) left; --resume goes on"
                )
            try:
                message = await self._next_or_stop(timeout_s=1.0)
            except TimeoutError:
                continue
            if message is None:
                return True
            await self.subscription.ack(message)
            self._take(message.body)
        return False

    def note_interrupted(self) -> None:
        """What an interrupt left: published commands without a result, and unpublished ones."""
        for row in self.in_flight.values():
            self.known[row.number] = ResultRow(
                row.number, "interrupted", "", "published; no result before the interrupt"
            )
        for row in self.todo:
            self.known.setdefault(
                row.number, ResultRow(row.number, "not-imported", "", "not published (interrupted)")
            )

    async def _next_or_stop(self, *, timeout_s: float) -> Any:
        stopping = asyncio.ensure_future(self.stop.wait())
        taking = asyncio.ensure_future(self.subscription.next(timeout_s=timeout_s))
        try:
            done, _ = await asyncio.wait({taking, stopping}, return_when=asyncio.FIRST_COMPLETED)
        finally:
            stopping.cancel()
        if taking in done:
            return taking.result()
        taking.cancel()
        with contextlib.suppress(asyncio.CancelledError, TimeoutError):
            await taking
        return None

    async def _publish(self, row: Row) -> None:
        body = orjson.dumps(
            {"number": row.number, "applicationId": row.application_id, "name": row.name}
        )
        envelope = Envelope(
            body=body,
            routing_key=self.topology.import_queue,
            message_id=row.command_id,
            type=IMPORT_TYPE,
            content_type="application/json",
        )
        try:
            await self.publisher.publish(envelope, exchange="")
        except PublishFailed as exc:
            if exc.reason == "unroutable":
                raise CliError(
                    f"no queue {self.topology.import_queue!r} on RabbitMQ: start the bridge once "
                    "(`bridge run` declares its queues) or check broker.import_queue"
                ) from None
            raise
        self.in_flight[row.command_id] = row

    def _take(self, body: bytes) -> None:
        try:
            event = orjson.loads(body)
        except orjson.JSONDecodeError:
            return
        if not isinstance(event, dict):
            return
        data: dict[str, Any] = event["data"] if isinstance(event.get("data"), dict) else {}
        command_id = event.get("correlationid") or data.get("commandId")
        row = self.in_flight.pop(str(command_id), None)
        if row is None:
            return  # another command's result
        error: dict[str, Any] = data["error"] if isinstance(data.get("error"), dict) else {}
        reason = ""
        if data.get("outcome") == "failed":
            parts = [data.get("reason"), error.get("code"), error.get("message")]
            reason = ": ".join(str(p) for p in parts if p)
        result = ResultRow(
            row.number,
            str(data.get("outcome") or "failed"),
            str(data.get("numberId") or ""),
            reason,
        )
        self.known[row.number] = result
        self.results.add(result)
        self.tally.count(result.outcome, time.monotonic())
        if self.progress is None:
            shown = " ".join(p for p in (result.number_id, result.reason) if p)
            print(
                f"{self.tally.finished}/{self.tally.total} {row.number} {result.outcome}"
                f"{' ' + shown if shown else ''}",
                flush=True,
            )

    def _refresh(self) -> None:
        now = time.monotonic()
        tally = self.tally
        said = status(
            tally,
            now=now,
            limit_per_min=self.limit_per_min,
            window_full=len(self.in_flight) >= self.args.in_flight or not self.todo,
        )
        if self.progress is not None:
            self.progress.update(self.task_id, completed=tally.finished)
        elif said != self._said and said != "importing":
            print(f"{tally.finished}/{tally.total} {said}", flush=True)
        self._said = said

    def counts_line(self) -> str:
        now = time.monotonic()
        tally = self.tally
        return (
            f"done {tally.done}  failed {tally.failed}  already imported {tally.already}  "
            f"remaining {tally.remaining}  {tally.per_min(now):.0f}/min\n{self._said}"
        )


class _Counts:
    """The lines under the bar, rendered afresh at every refresh."""

    def __init__(self, run: _Run) -> None:
        self._run = run

    def __rich__(self) -> str:
        return self._run.counts_line()


def _summary(
    console: Console,
    numbers: NumberList,
    known: dict[str, ResultRow],
    *,
    out: Path,
    interrupted: bool,
) -> None:
    counts: dict[str, int] = {}
    for row in _in_order(numbers, known):
        counts[row.outcome] = counts.get(row.outcome, 0) + 1
    table = Table("outcome", "numbers", title="Import summary", title_justify="left")
    for outcome in (
        "succeeded", "already-imported", "failed", "invalid", "interrupted", "not-imported"
    ):  # fmt: skip
        if counts.get(outcome):
            table.add_row(outcome, str(counts[outcome]))
    table.add_row("total", str(sum(counts.values())))
    console.print(table)
    console.print(f"results: {out}")
    if interrupted:
        console.print(
            "interrupted: the commands already published are still imported by the worker; "
            "run again with --resume to import the rest"
        )


__all__ = ["Tally", "add_parser", "import_numbers", "status"]

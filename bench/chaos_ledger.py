"""What a chaos scenario did and what came out, counted by id: the figures and the findings.

Definitions (printed with every table, and in bench/README.md):

- lost: a callback answered 2xx whose event never reached its queue; a command published (its
  publish confirmed by RabbitMQ) that has no result and is not waiting in any queue at the end;
  a command whose result says it was sent while Catapult has no message with its id.
- duplicate: a command whose message reached Catapult more than once (counted by the command id
  the worker puts in the message's tag), or a command with two different results.
- redelivered (tolerated): the same event id twice in an event queue, or the same result twice.
- pending: a command with no result that is still in its queue or a retry queue when the
  scenario settled (or its deadline passed): not lost, but the bridge did not finish it in time,
  which fails the scenario too.

Pure code: the runner fills a ``Ledger`` while it runs and ``tally`` reads it. No I/O here.
"""

from __future__ import annotations

from collections import Counter, defaultdict
from dataclasses import dataclass, field
from typing import Any

DEFINITIONS = """\
lost        a callback answered 2xx whose event never reached its queue; a command whose publish
            RabbitMQ confirmed that has no result (and is not waiting in a queue at the end); a
            command whose result says "sent" while Catapult has no message with its id
duplicates  a command whose message reached Catapult more than once (by the command id in the
            message's tag), or a command with two different results
redelivered the same event id twice in an event queue, or the same result twice (tolerated:
            consumers drop them by id)
pending     a command still in its queue or a retry queue when the run settled: not lost, but
            not done in time either (fails the scenario)"""


@dataclass
class Callback:
    """One callback (one event of one message), by whom it was sent and how it was answered."""

    event_id: str
    source: str  # runner | simulator
    sent_at_s: float
    message_id: str
    status: int | None = None  # the last answer's HTTP status; None: no answer
    answer: str | None = None  # the receiver's "status" field (published, spooled...)
    error: str | None = None
    attempts: int = 0
    answered_at_s: float | None = None

    @property
    def is_2xx(self) -> bool:
        return self.status is not None and 200 <= self.status < 300


@dataclass
class Command:
    command_id: str
    published_at_s: float
    confirmed: bool


@dataclass
class Result:
    outcome: str
    message_id: str | None
    reason: str | None
    recovered: bool

    @property
    def key(self) -> tuple[str, str | None]:
        return (self.outcome, self.message_id)


@dataclass
class SentMessage:
    catapult_id: str
    at_s: float | None


@dataclass
class Finding:
    kind: str  # lost-callback | lost-command | false-success | duplicate-send | two-results
    id: str
    detail: str


@dataclass
class Ledger:
    """Everything a scenario records; filled by the runner, read by ``tally``."""

    callbacks: dict[str, Callback] = field(default_factory=dict)  # by event id
    commands: dict[str, Command] = field(default_factory=dict)
    publish_failures: int = 0  # publishes refused before they left (not counted as sent)
    events: Counter[str] = field(default_factory=Counter)  # event id -> copies in event queues
    event_subjects: dict[str, str] = field(default_factory=dict)
    results: dict[str, list[Result]] = field(default_factory=lambda: defaultdict(list))
    dead_letters: dict[str, list[str]] = field(default_factory=lambda: defaultdict(list))
    pending: set[str] = field(default_factory=set)
    sent: dict[str, list[SentMessage]] = field(default_factory=lambda: defaultdict(list))
    untagged_sends: int = 0
    timeline: list[tuple[float, str]] = field(default_factory=list)

    def note(self, at_s: float, what: str) -> None:
        self.timeline.append((at_s, what))

    def after_which_fault(self, at_s: float | None) -> str:
        """``"1.2 s after 'rabbitmq stopped'"`` for the last timeline entry before ``at_s``."""
        if at_s is None:
            return "at an unknown time"
        before = [(t, what) for t, what in self.timeline if t <= at_s]
        if not before:
            return f"at {at_s:.1f} s, before any fault"
        t, what = before[-1]
        return f"at {at_s:.1f} s, {at_s - t:.1f} s after '{what}'"


@dataclass
class Figures:
    callbacks_sent: int
    answered_2xx: int
    answered_other: int
    stored: int
    commands_sent: int
    results: int
    dead_letters: dict[str, int]
    at_catapult: int
    redelivered: int
    pending: int
    lost: int
    duplicates: int

    def as_dict(self) -> dict[str, Any]:
        return dict(vars(self))


def tally(ledger: Ledger) -> tuple[Figures, list[Finding]]:
    findings: list[Finding] = []
    for callback in ledger.callbacks.values():
        if callback.is_2xx and ledger.events[callback.event_id] == 0:
            findings.append(
                Finding(
                    "lost-callback",
                    callback.event_id,
                    f"{callback.source} callback for {callback.message_id} answered "
                    f"{callback.status} ({callback.answer or 'no status'}) "
                    f"{ledger.after_which_fault(callback.answered_at_s)}; "
                    "its event is in no queue",
                )
            )
    catapult_ids = {m.catapult_id for sends in ledger.sent.values() for m in sends}
    for command in ledger.commands.values():
        cid = command.command_id
        results = ledger.results.get(cid, [])
        sends = ledger.sent.get(cid, [])
        if not results and command.confirmed and cid not in ledger.pending:
            dead = ledger.dead_letters.get(cid)
            findings.append(
                Finding(
                    "lost-command",
                    cid,
                    f"published {ledger.after_which_fault(command.published_at_s)}; no result, "
                    f"in no queue; {len(sends)} message(s) at Catapult"
                    + (f"; dead-lettered ({', '.join(dead)}) without a result" if dead else ""),
                )
            )
        for result in results:
            if result.outcome == "succeeded" and result.message_id not in catapult_ids:
                findings.append(
                    Finding(
                        "false-success",
                        cid,
                        f"result 'succeeded' with {result.message_id}, which Catapult does not "
                        f"have ({len(sends)} message(s) with this command id)",
                    )
                )
                break
        if len(sends) > 1:
            when = ", ".join(
                f"{m.catapult_id} {ledger.after_which_fault(m.at_s)}" for m in sends[:4]
            )
            findings.append(
                Finding("duplicate-send", cid, f"{len(sends)} messages at Catapult: {when}")
            )
        distinct = {r.key for r in results}
        if len(distinct) > 1:
            shown = "; ".join(f"{o} {m or ''}".strip() for o, m in sorted(distinct, key=str))
            findings.append(
                Finding("two-results", cid, f"{len(distinct)} different results: {shown}")
            )

    lost = sum(1 for f in findings if f.kind in ("lost-callback", "lost-command", "false-success"))
    duplicates = len({f.id for f in findings if f.kind in ("duplicate-send", "two-results")})
    redelivered = sum(n - 1 for n in ledger.events.values() if n > 1) + sum(
        len(rs) - len({r.key for r in rs}) for rs in ledger.results.values()
    )
    reasons: Counter[str] = Counter()
    for reasons_of_one in ledger.dead_letters.values():
        for reason in set(reasons_of_one):
            reasons[reason] += 1
    figures = Figures(
        callbacks_sent=len(ledger.callbacks),
        answered_2xx=sum(1 for c in ledger.callbacks.values() if c.is_2xx),
        answered_other=sum(1 for c in ledger.callbacks.values() if not c.is_2xx),
        stored=sum(1 for n in ledger.events.values() if n),
        commands_sent=sum(1 for c in ledger.commands.values() if c.confirmed),
        results=sum(1 for cid in ledger.commands if ledger.results.get(cid)),
        dead_letters=dict(sorted(reasons.items())),
        at_catapult=sum(len(s) for s in ledger.sent.values()),
        redelivered=redelivered,
        pending=len(ledger.pending - {cid for cid, rs in ledger.results.items() if rs}),
        lost=lost,
        duplicates=duplicates,
    )
    return figures, findings

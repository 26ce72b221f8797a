"""What the broker must be told for each outcome: pure plans for the one function that acks.

``Planner`` turns a delivery and its outcome into a ``Disposition``:

    Finish     publish the result event (events exchange, and ``reply_to`` when set), the dead
               letter too for failures, and ack, in one transaction
    Republish  publish a copy to a delay tier (a retry, a parked send, or a command sent back to
               wait in its queue while Catapult is down) and ack, in one transaction
    GiveBack   nack with requeue (shutdown): the broker delivers it again, to be looked up first

Results are CloudEvents whose id is derived from the command id: should a second copy ever reach
a consumer, it carries the same id and can be dropped. Dead letters keep the body (an import's
without its Dashboard credentials) and say in headers why, with Catapult's last error and the
attempts made.

No I/O here; ``consumer.settle`` carries the plans out.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime
from typing import Any, Literal

from bridge.broker.intake import Inbound
from bridge.broker.topology import Topology
from bridge.events import headers as h
from bridge.events.cloudevents import CloudEvent, EventType, deterministic_id
from bridge.events.commands import (
    CommandKind,
    IdSource,
    ImportCommand,
    SendCommand,
    redacted_body,
)
from bridge.events.envelope import Envelope
from bridge.events.results import FailureReason, ImportResult, ResultError, SendResult
from bridge.worker.decisions import AlreadyImported, Ambiguous, Done, Fail, Retry
from bridge.worker.deliveries import DeadLettered, Delivery, Rejected
from bridge.worker.scheduler import Park

SOURCE = "catapult-bridge/worker"
JSON = "application/json"

Settled = Done | AlreadyImported | Retry | Ambiguous | Fail


@dataclass(frozen=True, slots=True)
class Finish:
    result: Envelope
    reply_to: str | None
    dead_letter: Envelope | None
    outcome: str  # succeeded | failed | already-imported, for logs and metrics
    resource_id: str | None = None  # the message or number id Catapult gave, for the log line


@dataclass(frozen=True, slots=True)
class Republish:
    queue: str
    envelope: Envelope
    why: str  # retry | ambiguous | park


@dataclass(frozen=True, slots=True)
class GiveBack:
    pass


Disposition = Finish | Republish | GiveBack
GIVE_BACK = GiveBack()

_EVENT_TYPES = {
    (CommandKind.SEND, "succeeded"): EventType.SEND_SUCCEEDED,
    (CommandKind.SEND, "failed"): EventType.SEND_FAILED,
    (CommandKind.IMPORT, "succeeded"): EventType.IMPORT_SUCCEEDED,
    (CommandKind.IMPORT, "already-imported"): EventType.IMPORT_ALREADY_IMPORTED,
    (CommandKind.IMPORT, "failed"): EventType.IMPORT_FAILED,
}


_IMPORT_OUTCOMES: dict[str, Literal["succeeded", "already-imported", "failed"]] = {
    "succeeded": "succeeded",
    "already-imported": "already-imported",
    "failed": "failed",
}


class Planner:
    def __init__(self, topology: Topology) -> None:
        self._topology = topology

    def for_outcome(self, delivery: Delivery, outcome: Settled, *, now: datetime) -> Disposition:
        match outcome:
            case Done() | AlreadyImported() | Fail():
                return self._finish(delivery, outcome, now=now)
            case Retry(delay_s=delay_s, error=error):
                return self._again(delivery, delay_s, error, lookup=False, why="retry", now=now)
            case Ambiguous(delay_s=delay_s, error=error):
                return self._again(delivery, delay_s, error, lookup=True, why="ambiguous", now=now)

    def for_outage(self, delivery: Delivery, *, now: datetime, lookup: bool = False) -> Republish:
        """Back to wait in its queue while Catapult is down: a copy through the shortest tier.

        A copy and not a nack: a quorum queue counts every requeue toward its delivery limit
        (``broker.delivery_limit``), and an outage must not bring a command nearer that end. The
        copy keeps its attempts and its own last error; ``lookup`` (or an earlier mark) makes it
        looked up before it is sent, for a request that may have been carried out.
        """
        headers = h.copy_headers(
            delivery.message.headers,
            delivery.round(lookup=lookup or delivery.needs_lookup),
            now_epoch_s=now.timestamp(),
        )
        tier_s = self._topology.retry_delays_s[0]
        return self._republish(delivery, tier_s, headers, why="outage", now=now)

    def for_park(self, delivery: Delivery, park: Park, *, now: datetime) -> Republish:
        headers = h.copy_headers(
            delivery.message.headers,
            delivery.round(lookup=delivery.needs_lookup),
            due_in_s=park.due_in_s,
            now_epoch_s=now.timestamp(),
        )
        return self._republish(delivery, park.delay_s, headers, why="park", now=now)

    def for_rejected(self, rejected: Rejected, *, now: datetime) -> Finish:
        error = ResultError(
            category="invalid-command", code=rejected.poison.reason, message=rejected.poison.detail
        )
        return self._failed_unread(
            rejected.message,
            kind=rejected.kind,
            queue=rejected.queue,
            command_id=rejected.command_id,
            id_source=rejected.id_source,
            attempts=0,
            reason=FailureReason.INVALID_COMMAND,
            error=error,
            now=now,
        )

    def for_dead_lettered(self, dead: DeadLettered, *, now: datetime) -> Finish:
        """A command the broker dead-lettered itself: its result, and the redacted dead letter."""
        expired = dead.reason == "expired"
        if expired:
            text = "the command expired in its queue before the worker could take it"
        else:
            text = (
                f"RabbitMQ gave up on the command ({dead.reason}) after the worker had it "
                f"broker.delivery_limit ({self._topology.delivery_limit}) times without "
                "settling it (a crash or a give-back each time)"
            )
            if dead.kind is CommandKind.SEND:
                text += "; it may have been sent: look for its command id in Catapult's tags"
        error = ResultError(category="broker", code=dead.reason, message=text)
        return self._failed_unread(
            dead.message,
            kind=dead.kind,
            queue=dead.queue,
            command_id=dead.command_id,
            id_source=dead.id_source,
            attempts=dead.attempts,
            reason=FailureReason.EXPIRED if expired else FailureReason.DELIVERY_LIMIT,
            error=error,
            now=now,
        )

    def _failed_unread(
        self,
        message: Inbound,
        *,
        kind: CommandKind,
        queue: str,
        command_id: str,
        id_source: IdSource,
        attempts: int,
        reason: FailureReason,
        error: ResultError,
        now: datetime,
    ) -> Finish:
        """The failed result and dead letter of a message known only by its AMQP side."""
        data = (SendResult if kind is CommandKind.SEND else ImportResult)(
            command_id=command_id,
            command_id_source=id_source,
            attempts=attempts,
            outcome="failed",
            reason=reason,
            error=error,
        )
        result = self._result(
            kind,
            queue,
            command_id,
            "failed",
            data.to_data(),
            correlation_id=message.correlation_id,
            now=now,
        )
        headers = h.dead_letter_headers(
            message.headers,
            reason=reason.value,
            detail=error.message,
            attempts=attempts,
            queue=queue,
            command_id=command_id,
            error=error,
        )
        dead = _copy_of(
            message,
            body=redacted_body(kind, message.body),
            routing_key=self._topology.dead_letter_routing_key(queue),
            command_id=command_id,
            headers=headers,
            now=now,
        )
        return Finish(result, message.reply_to, dead, "failed")

    # -- finishing -------------------------------------------------------------------------------

    def _finish(
        self, delivery: Delivery, outcome: Done | AlreadyImported | Fail, *, now: datetime
    ) -> Finish:
        word = {Done: "succeeded", AlreadyImported: "already-imported", Fail: "failed"}[
            type(outcome)
        ]
        data = _result_data(delivery, outcome, word)
        result = self._result(
            delivery.kind,
            delivery.queue,
            delivery.command_id,
            word,
            data,
            correlation_id=delivery.message.correlation_id,
            now=now,
        )
        dead = self._dead_letter(delivery, outcome, now=now) if isinstance(outcome, Fail) else None
        resource_id = outcome.resource_id if isinstance(outcome, Done) else None
        return Finish(result, delivery.message.reply_to, dead, word, resource_id)

    def _result(
        self,
        kind: CommandKind,
        queue: str,
        command_id: str,
        word: str,
        data: dict[str, Any],
        *,
        correlation_id: str | None,
        now: datetime,
    ) -> Envelope:
        event = CloudEvent(
            id=deterministic_id("result", str(kind), command_id),
            source=SOURCE,
            type=_EVENT_TYPES[(kind, word)],
            subject=command_id,
            time=now,
            # As in the receiver's status events: the command id, so that one attribute joins
            # a command's result and every callback of its message.
            correlationid=command_id,
            data=data,
        )
        return event.to_envelope(
            routing_key=f"{self._topology.result_prefix(queue)}.{word}",
            correlation_id=correlation_id or None,
        )

    def _dead_letter(self, delivery: Delivery, outcome: Fail, *, now: datetime) -> Envelope:
        message = delivery.message
        headers = h.dead_letter_headers(
            message.headers,
            reason=outcome.reason.value,
            attempts=delivery.attempts,
            queue=delivery.queue,
            command_id=delivery.command_id,
            id_source=delivery.parsed.id_source,
            error=outcome.error,
        )
        return _copy_of(
            message,
            body=redacted_body(delivery.kind, message.body),
            routing_key=self._topology.dead_letter_routing_key(delivery.queue),
            command_id=delivery.command_id,
            headers=headers,
            now=now,
        )

    # -- republishing ----------------------------------------------------------------------------

    def _again(
        self,
        delivery: Delivery,
        delay_s: float,
        error: ResultError,
        *,
        lookup: bool,
        why: str,
        now: datetime,
    ) -> Republish:
        # A delivery still to be looked up keeps the mark on every copy, whatever the outcome:
        # a copy without it would be sent without the look-up its original was owed.
        headers = h.copy_headers(
            delivery.message.headers,
            delivery.round(lookup=lookup or delivery.needs_lookup),
            error=error,
            now_epoch_s=now.timestamp(),
        )
        tier_s = self._topology.retry_tier(delay_s)
        return self._republish(delivery, tier_s, headers, why=why, now=now)

    def _republish(
        self,
        delivery: Delivery,
        tier_s: float,
        headers: dict[str, Any],
        *,
        why: str,
        now: datetime,
    ) -> Republish:
        queue = self._topology.retry_queue(delivery.queue, tier_s)
        envelope = _copy_of(
            delivery.message,
            body=delivery.message.body,
            routing_key=queue,
            command_id=delivery.command_id,
            headers=headers,
            now=now,
        )
        return Republish(queue, envelope, why)


def _copy_of(
    message: Inbound,
    *,
    body: bytes,
    routing_key: str,
    command_id: str,
    headers: dict[str, Any],
    now: datetime,
) -> Envelope:
    """A command's message as a new envelope (a copy to a delay tier, or a dead letter): its
    properties kept, the command id as ``message_id``, its timestamp or ``now``."""
    return Envelope(
        body=body,
        routing_key=routing_key,
        message_id=command_id,
        type=message.type or "",
        content_type=message.content_type or JSON,
        headers=headers,
        correlation_id=message.correlation_id,
        reply_to=message.reply_to,
        timestamp=message.timestamp or now,
    )


def _result_data(
    delivery: Delivery, outcome: Done | AlreadyImported | Fail, word: str
) -> dict[str, Any]:
    error = None if isinstance(outcome, Done) else outcome.error
    reason = outcome.reason if isinstance(outcome, Fail) else None
    resource_id = outcome.resource_id if isinstance(outcome, Done) else None
    location = outcome.location or None if isinstance(outcome, Done) else None
    command = delivery.parsed.command
    common: dict[str, Any] = {
        "command_id": delivery.command_id,
        "command_id_source": delivery.parsed.id_source,
        "attempts": delivery.attempts,
        "reason": reason,
        "error": error,
    }
    if isinstance(command, SendCommand):
        return SendResult(
            **common,
            outcome="succeeded" if word == "succeeded" else "failed",
            message_id=resource_id,
            location=location,
            from_=command.from_,
            to=command.to,
            tag=command.tag,
            recovered=isinstance(outcome, Done) and outcome.recovered,
        ).to_data()
    assert isinstance(command, ImportCommand)
    return ImportResult(
        **common,
        outcome=_IMPORT_OUTCOMES[word],
        number=command.number,
        number_id=resource_id,
        location=location,
        application_id=command.application_id,
        name=command.name,
    ).to_data()


__all__ = ["GIVE_BACK", "Disposition", "Finish", "GiveBack", "Planner", "Republish", "Settled"]

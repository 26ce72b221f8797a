"""One command delivery as the worker carries it, read from its message.

``read_delivery`` turns an AMQP message from a command queue into a ``Delivery`` (the parsed
command plus what earlier rounds recorded in headers: attempts made, whether the message must be
looked up before it is sent, when it was first sent, its reserved slot if it was parked, the last
Catapult error) or a ``Rejected`` (poison input, with the reason). Retry counts live in these
headers (``bridge.events.headers`` reads and writes them), never in process memory, so a restarted
worker continues where the last one stopped.

A redelivered message (the ``redelivered`` flag, or a quorum queue's ``x-delivery-count``) may have
been sent by a worker that died before acking it, so a send delivered again is always looked up
before it is sent.

No I/O here: the message is only read.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Protocol

from bridge.broker.intake import Inbound, is_stale
from bridge.events import headers as h
from bridge.events.cloudevents import deterministic_id
from bridge.events.commands import (
    CommandKind,
    IdSource,
    ParsedCommand,
    Poison,
    SendCommand,
    parse_command,
    redacted_body,
)
from bridge.events.results import ResultError


@dataclass(eq=False, slots=True)
class Delivery:
    """A valid command in flight. Mutable only in what one round changes: attempts and look-up."""

    message: Inbound
    queue: str
    parsed: ParsedCommand
    attempts: int
    needs_lookup: bool
    sent_at_epoch_s: float | None
    due_at_epoch_s: float | None
    last_error: ResultError | None
    expires_at_epoch_s: float | None = None
    queued_at_epoch_s: float | None = None  # see ``queued_at``; set at intake
    # A look-up of it went through since its outcome was last recorded (``Limits.record``).
    looked_up: bool = False

    def is_expired(self, now_epoch_s: float) -> bool:
        return self.expires_at_epoch_s is not None and now_epoch_s >= self.expires_at_epoch_s

    @property
    def kind(self) -> CommandKind:
        return self.parsed.kind

    @property
    def command_id(self) -> str:
        return self.parsed.command_id

    @property
    def sender(self) -> str:
        """The sending number of a send (the lane it waits in); empty for an import."""
        command = self.parsed.command
        return command.from_ if isinstance(command, SendCommand) else ""

    @property
    def is_stale(self) -> bool:
        """Its channel is gone: it can no longer be acked, and the broker will deliver it again."""
        return is_stale(self.message)

    def round(self, *, lookup: bool) -> h.Round:
        """What a copy of it carries to the next round (``lookup``: looked up before it is sent)."""
        return h.Round(
            attempts=self.attempts,
            lookup=lookup,
            sent_at_epoch_s=self.sent_at_epoch_s,
            queued_at_epoch_s=self.queued_at_epoch_s,
            expires_at_epoch_s=self.expires_at_epoch_s,
            id_source=self.parsed.id_source,
            last_error=self.last_error,
        )


@dataclass(eq=False, slots=True)
class Rejected:
    """A message on a command queue that is not a valid command."""

    message: Inbound
    queue: str
    kind: CommandKind
    poison: Poison
    command_id: str
    id_source: IdSource
    attempts: int = 0


@dataclass(eq=False, slots=True)
class Unread:
    """A message the worker failed to take in (a bug): it can only be given back."""

    message: Inbound
    queue: str
    kind: CommandKind
    command_id: str
    attempts: int = 0


class Taken(Protocol):
    """What the flow settles: a message of a command or backstop queue, read as far as it went.

    A ``Delivery``, a ``Rejected``, a ``DeadLettered`` or an ``Unread``: each names its message,
    its queue, its kind, its command and the attempts made, which is all that settling it, its
    metrics and its log line need.
    """

    @property
    def message(self) -> Inbound: ...
    @property
    def queue(self) -> str: ...
    @property
    def kind(self) -> CommandKind: ...
    @property
    def command_id(self) -> str: ...
    @property
    def attempts(self) -> int: ...


@dataclass(eq=False, slots=True)
class DeadLettered:
    """A command RabbitMQ dead-lettered itself into a backstop queue, raw.

    ``reason`` is the broker's word (``delivery_limit``, ``expired``, ``rejected``); ``parsed`` is
    None when the body is no valid command (it never reached the worker's own check).
    """

    message: Inbound
    queue: str  # the command queue it came from
    kind: CommandKind
    reason: str
    parsed: ParsedCommand | None
    command_id: str
    id_source: IdSource
    attempts: int


def read_dead_lettered(message: Inbound, *, queue: str, kind: CommandKind) -> DeadLettered:
    """Read a message of ``queue``'s backstop queue: which command, and why the broker gave up."""
    reason = h.death_reason(message.headers)
    read = read_delivery(message, queue=queue, kind=kind)
    if isinstance(read, Rejected):
        return DeadLettered(message, queue, kind, reason, None, read.command_id, read.id_source, 0)
    return DeadLettered(
        message,
        queue,
        kind,
        reason,
        read.parsed,
        read.command_id,
        read.parsed.id_source,
        read.attempts,
    )


def expires_at(message: Inbound, *, now_epoch_s: float, max_age_s: float | None) -> float | None:
    """When ``message`` expires (epoch seconds), or None (``headers.expires_at``)."""
    return h.expires_at(
        message.headers,
        timestamp=message.timestamp,
        expiration=message.expiration,
        now_epoch_s=now_epoch_s,
        max_age_s=max_age_s,
    )


def queued_at(
    message: Inbound, *, needs_lookup: bool, now_epoch_s: float, window_s: float
) -> float:
    """The earliest ``message``'s command can have been sent (``headers.queued_at``)."""
    return h.queued_at(
        message.headers,
        timestamp=message.timestamp,
        needs_lookup=needs_lookup,
        now_epoch_s=now_epoch_s,
        window_s=window_s,
    )


def read_delivery(message: Inbound, *, queue: str, kind: CommandKind) -> Delivery | Rejected:
    parsed = parse_command(
        kind, message.body, message_id=message.message_id, message_type=message.type
    )
    if isinstance(parsed, Poison):
        if message.message_id:
            command_id, source = message.message_id, IdSource.MESSAGE_ID
        else:
            # The body is hashed without any Dashboard credential it may carry.
            command_id = deterministic_id(
                "poison", str(kind), redacted_body(kind, message.body).hex()
            )
            source = IdSource.DERIVED
        return Rejected(message, queue, kind, parsed, command_id, source)
    headers = message.headers
    state = h.read_round(headers)
    if state.id_source is not None and parsed.id_source is IdSource.MESSAGE_ID:
        # A copy the worker republished carries the command id as its message_id; the header
        # remembers where the id first came from.
        parsed = ParsedCommand(parsed.kind, parsed.command, parsed.command_id, state.id_source)
    redelivered = bool(message.redelivered) or h.was_delivered_before(headers)
    return Delivery(
        message=message,
        queue=queue,
        parsed=parsed,
        attempts=state.attempts,
        needs_lookup=kind is CommandKind.SEND and (redelivered or state.lookup),
        sent_at_epoch_s=state.sent_at_epoch_s,
        due_at_epoch_s=state.due_at_epoch_s,
        last_error=state.last_error,
    )


__all__ = [
    "DeadLettered",
    "Delivery",
    "Rejected",
    "Taken",
    "Unread",
    "expires_at",
    "queued_at",
    "read_dead_lettered",
    "read_delivery",
]

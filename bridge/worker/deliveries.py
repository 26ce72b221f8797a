"""One command delivery as the worker carries it, and the broker headers it travels with.

``read_delivery`` turns an AMQP message from a command queue into a ``Delivery`` (the parsed
command plus what earlier rounds recorded in headers: attempts made, whether the message must be
looked up before it is sent, when it was first sent, its reserved slot if it was parked, the last
Catapult error) or a ``Rejected`` (poison input, with the reason). Retry counts live in these
headers, never in process memory, so a restarted worker continues where the last one stopped.

A redelivered message (the ``redelivered`` flag, or a quorum queue's ``x-delivery-count``) may have
been sent by a worker that died before acking it, so a send delivered again is always looked up
before it is sent.

No I/O here: the message is only read.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Any

from bridge.broker.intake import Inbound, is_stale
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

# Headers the worker writes on the copies it republishes (retries, parked commands) and on dead
# letters. Applications may read them; they should not set them.
ATTEMPTS = "x-bridge-attempts"
LOOKUP = "x-bridge-lookup"
# Times are integer epoch milliseconds: pamqp writes a Python float as a 32-bit float, which
# would round an epoch time to the nearest 128 s.
SENT_AT_MS = "x-bridge-sent-at-ms"
DUE_AT_MS = "x-bridge-due-at-ms"
# The earliest the command can have been sent (epoch ms), where a look-up starts when no first
# send is recorded: when it was first queued (``queued_at``), kept on every copy.
QUEUED_AT_MS = "x-bridge-queued-at-ms"
# When the command expires (epoch ms). An application may set it; the worker writes it on its
# copies, from this header, the AMQP ``expiration`` and ``worker.max_age_s``, whichever is first.
EXPIRES_AT_MS = "x-bridge-expires-at-ms"
ID_SOURCE = "x-bridge-command-id-source"
COMMAND_ID = "x-bridge-command-id"
QUEUE = "x-bridge-queue"
REASON = "x-bridge-reason"
DETAIL = "x-bridge-detail"
ERROR_CATEGORY = "x-bridge-error-category"
ERROR_CODE = "x-bridge-error-code"
ERROR_MESSAGE = "x-bridge-error-message"
ERROR_STATUS = "x-bridge-error-status"
# Set by ``bridge dlq replay`` on the copy it puts back; carried like the application's headers,
# so a letter dead again says how often it was replayed.
REPLAYS = "x-bridge-replays"
_OWN = "x-bridge-"
# Set by RabbitMQ when it redelivers or dead-letters; a republished copy starts without them.
_BROKER = ("x-death", "x-delivery-count", "x-first-death-", "x-last-death-")


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


@dataclass(eq=False, slots=True)
class Rejected:
    """A message on a command queue that is not a valid command."""

    message: Inbound
    queue: str
    kind: CommandKind
    poison: Poison
    command_id: str
    id_source: IdSource


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
    headers: dict[str, Any] = dict(message.headers or {})
    reason = _text(headers.get("x-first-death-reason")) or "unknown"
    deaths = headers.get("x-death")
    if isinstance(deaths, list) and deaths and isinstance(deaths[0], dict):
        reason = _text(deaths[0].get("reason")) or reason
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
    """When ``message`` expires (epoch seconds), or None: the earliest of its
    ``x-bridge-expires-at-ms`` header, its AMQP ``expiration`` and ``max_age_s``, the last two
    counted from its AMQP ``timestamp`` (else from ``now_epoch_s``, its first intake)."""
    candidates = []
    header = _epoch_s((message.headers or {}).get(EXPIRES_AT_MS))
    if header is not None:
        candidates.append(header)
    timestamp = message.timestamp
    origin = now_epoch_s if timestamp is None else timestamp.timestamp()
    expiration = message.expiration
    if isinstance(expiration, int | float):
        candidates.append(origin + float(expiration))
    if max_age_s is not None:
        candidates.append(origin + max_age_s)
    return min(candidates) if candidates else None


def queued_at(
    message: Inbound, *, needs_lookup: bool, now_epoch_s: float, window_s: float
) -> float:
    """The earliest ``message``'s command can have been sent (epoch seconds).

    Its ``x-bridge-queued-at-ms`` header (a copy's), else the earlier of its AMQP ``timestamp``
    and now. A command that was never delivered before cannot have been sent before now; one
    the broker gives again with neither (``needs_lookup``) may have been sent at any time since
    it was queued: ``window_s`` back is the bound then, written on its copies so that it stays.
    """
    header = _epoch_s((message.headers or {}).get(QUEUED_AT_MS))
    if header is not None:
        return min(header, now_epoch_s)
    timestamp = message.timestamp
    if timestamp is not None:
        return min(timestamp.timestamp(), now_epoch_s)
    return now_epoch_s - window_s if needs_lookup else now_epoch_s


def read_delivery(message: Inbound, *, queue: str, kind: CommandKind) -> Delivery | Rejected:
    headers: dict[str, Any] = dict(message.headers or {})
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
    own_source = _text(headers.get(ID_SOURCE))
    if own_source in {s.value for s in IdSource} and parsed.id_source is IdSource.MESSAGE_ID:
        # A copy the worker republished carries the command id as its message_id; the header
        # remembers where the id first came from.
        parsed = ParsedCommand(parsed.kind, parsed.command, parsed.command_id, IdSource(own_source))
    redelivered = bool(message.redelivered) or (_number(headers.get("x-delivery-count")) or 0) > 0
    return Delivery(
        message=message,
        queue=queue,
        parsed=parsed,
        attempts=max(0, int(_number(headers.get(ATTEMPTS)) or 0)),
        needs_lookup=kind is CommandKind.SEND and (redelivered or bool(headers.get(LOOKUP))),
        sent_at_epoch_s=_epoch_s(headers.get(SENT_AT_MS)),
        due_at_epoch_s=_epoch_s(headers.get(DUE_AT_MS)),
        last_error=_last_error(headers),
    )


def carried_headers(message: Inbound) -> dict[str, Any]:
    """The application's own headers of ``message``: without the broker's and the worker's."""
    return {
        key: value
        for key, value in (message.headers or {}).items()
        if (not key.startswith(_OWN) or key == REPLAYS) and not key.startswith(_BROKER)
    }


def error_headers(error: ResultError | None) -> dict[str, Any]:
    if error is None:
        return {}
    values = {
        ERROR_CATEGORY: error.category,
        ERROR_CODE: error.code,
        ERROR_MESSAGE: error.message,
        ERROR_STATUS: error.status,
    }
    return {k: v for k, v in values.items() if v is not None}


def epoch_ms(epoch_s: float) -> int:
    """A header value for a time (see ``SENT_AT_MS``)."""
    return round(epoch_s * 1000)


def _epoch_s(value: Any) -> float | None:
    ms = _number(value)
    return None if ms is None else ms / 1000.0


def _last_error(headers: dict[str, Any]) -> ResultError | None:
    message = _text(headers.get(ERROR_MESSAGE))
    if message is None:
        return None
    status = _number(headers.get(ERROR_STATUS))
    return ResultError(
        category=_text(headers.get(ERROR_CATEGORY)),
        code=_text(headers.get(ERROR_CODE)),
        message=message,
        status=None if status is None else int(status),
    )


def _text(value: Any) -> str | None:
    if isinstance(value, bytes):
        return value.decode("utf-8", errors="replace")
    return value if isinstance(value, str) else None


def _number(value: Any) -> float | None:
    """A header's number; anything else, ``nan`` and the infinities too, reads as absent."""
    if isinstance(value, bool):
        return None
    if isinstance(value, int | float):
        number = float(value)
    else:
        text = _text(value)
        try:
            number = float("nan") if text is None else float(text)
        except (ValueError, OverflowError):
            return None
    return number if math.isfinite(number) else None


__all__ = [
    "ATTEMPTS",
    "COMMAND_ID",
    "DETAIL",
    "DUE_AT_MS",
    "ERROR_CATEGORY",
    "ERROR_CODE",
    "ERROR_MESSAGE",
    "ERROR_STATUS",
    "EXPIRES_AT_MS",
    "ID_SOURCE",
    "LOOKUP",
    "QUEUE",
    "QUEUED_AT_MS",
    "REASON",
    "REPLAYS",
    "SENT_AT_MS",
    "DeadLettered",
    "Delivery",
    "Rejected",
    "carried_headers",
    "epoch_ms",
    "error_headers",
    "expires_at",
    "queued_at",
    "read_dead_lettered",
    "read_delivery",
]

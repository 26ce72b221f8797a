"""The ``x-bridge-*`` headers: the one module that names, reads and writes them.

The worker keeps what one round of a command hands the next in headers, never in process memory,
so that a restarted worker goes on where the last one stopped: the attempts made, whether the
command must be looked up before it is sent, when it was first sent and first queued, when it
expires, the slot a parked send reserved, Catapult's last error (``Round``). Its dead letters say
why in headers (``dead_letter_headers``), which ``bridge dlq`` reads (``read_dead_letter``) and
replays (``replay_headers``); the router marks a copy that may have been taken before sharding
(``mark_lookup``); a shard probe is told by its header (``is_probe``). Applications may read
these headers; they should not set them, except ``x-bridge-expires-at-ms``.

Times are integer epoch milliseconds on the wire (pamqp writes a Python float as a 32-bit
float, which would round an epoch time to the nearest 128 s) and epoch seconds here. Times are
passed in: no clock and no I/O here.
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from dataclasses import dataclass
from datetime import datetime
from typing import Any

from bridge.events.commands import IdSource
from bridge.events.results import ResultError

OWN_PREFIX = "x-bridge-"
ATTEMPTS = "x-bridge-attempts"
LOOKUP = "x-bridge-lookup"
SENT_AT_MS = "x-bridge-sent-at-ms"
DUE_AT_MS = "x-bridge-due-at-ms"
# The earliest the command can have been sent, where a look-up starts when no first send is
# recorded: when it was first queued (``queued_at``), kept on every copy.
QUEUED_AT_MS = "x-bridge-queued-at-ms"
# When the command expires. An application may set it; the worker writes it on its copies, from
# this header, the AMQP ``expiration`` and ``worker.max_age_s``, whichever is first.
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
# On the empty messages that find out which worker holds a shard (``bridge.worker.shards``).
PROBE = "x-bridge-probe"
# Set by RabbitMQ when it redelivers or dead-letters; a copy starts without them.
DELIVERY_COUNT = "x-delivery-count"
_BROKER = ("x-death", DELIVERY_COUNT, "x-first-death-", "x-last-death-")
# Kept on a replayed dead letter: where the command id first came from.
_KEPT_ON_REPLAY = (ID_SOURCE,)


@dataclass(frozen=True, slots=True)
class Round:
    """What the rounds of a command so far recorded, as a copy carries it to the next one."""

    attempts: int = 0
    lookup: bool = False
    sent_at_epoch_s: float | None = None
    due_at_epoch_s: float | None = None
    queued_at_epoch_s: float | None = None
    expires_at_epoch_s: float | None = None
    id_source: IdSource | None = None
    last_error: ResultError | None = None


def read_round(headers: Mapping[str, Any]) -> Round:
    """The round state in a message's headers; anything unreadable reads as absent."""
    source = _text(headers.get(ID_SOURCE))
    return Round(
        attempts=max(0, int(_number(headers.get(ATTEMPTS)) or 0)),
        lookup=bool(headers.get(LOOKUP)),
        sent_at_epoch_s=_epoch_s(headers.get(SENT_AT_MS)),
        due_at_epoch_s=_epoch_s(headers.get(DUE_AT_MS)),
        queued_at_epoch_s=_epoch_s(headers.get(QUEUED_AT_MS)),
        expires_at_epoch_s=_epoch_s(headers.get(EXPIRES_AT_MS)),
        id_source=IdSource(source) if source in _ID_SOURCES else None,
        last_error=_last_error(headers),
    )


def was_delivered_before(headers: Mapping[str, Any]) -> bool:
    """A quorum queue delivered the message before (its ``x-delivery-count``)."""
    return (_number(headers.get(DELIVERY_COUNT)) or 0) > 0


def death_reason(headers: Mapping[str, Any]) -> str:
    """Why RabbitMQ dead-lettered the message itself (``x-death``), or ``unknown``."""
    reason = _text(headers.get("x-first-death-reason")) or "unknown"
    deaths = headers.get("x-death")
    if isinstance(deaths, list) and deaths and isinstance(deaths[0], dict):
        reason = _text(deaths[0].get("reason")) or reason
    return reason


def expires_at(
    headers: Mapping[str, Any],
    *,
    timestamp: datetime | None,
    expiration: float | None,
    now_epoch_s: float,
    max_age_s: float | None,
) -> float | None:
    """When a message expires (epoch seconds), or None: the earliest of its
    ``x-bridge-expires-at-ms`` header, its AMQP ``expiration`` and ``max_age_s``, the last two
    counted from its AMQP ``timestamp`` (else from ``now_epoch_s``, its first intake)."""
    candidates = []
    header = _epoch_s(headers.get(EXPIRES_AT_MS))
    if header is not None:
        candidates.append(header)
    origin = now_epoch_s if timestamp is None else timestamp.timestamp()
    if isinstance(expiration, int | float):
        candidates.append(origin + float(expiration))
    if max_age_s is not None:
        candidates.append(origin + max_age_s)
    return min(candidates) if candidates else None


def queued_at(
    headers: Mapping[str, Any],
    *,
    timestamp: datetime | None,
    needs_lookup: bool,
    now_epoch_s: float,
    window_s: float,
) -> float:
    """The earliest a message's command can have been sent (epoch seconds).

    Its ``x-bridge-queued-at-ms`` header (a copy's), else the earlier of its AMQP ``timestamp``
    and now. A command that was never delivered before cannot have been sent before now; one
    the broker gives again with neither (``needs_lookup``) may have been sent at any time since
    it was queued: ``window_s`` back is the bound then, written on its copies so that it stays.
    """
    header = _epoch_s(headers.get(QUEUED_AT_MS))
    if header is not None:
        return min(header, now_epoch_s)
    if timestamp is not None:
        return min(timestamp.timestamp(), now_epoch_s)
    return now_epoch_s - window_s if needs_lookup else now_epoch_s


def carried(headers: Mapping[str, Any]) -> dict[str, Any]:
    """The application's own headers: without the broker's and the worker's (replays stay)."""
    return {
        key: value
        for key, value in headers.items()
        if (not key.startswith(OWN_PREFIX) or key == REPLAYS) and not key.startswith(_BROKER)
    }


def copy_headers(
    headers: Mapping[str, Any],
    state: Round,
    *,
    error: ResultError | None = None,
    due_in_s: float | None = None,
    now_epoch_s: float,
) -> dict[str, Any]:
    """The headers of a command's copy (a retry, a parked send, a send waiting out an outage):
    the application's own, and ``state`` for the next round.

    ``error``: this round's error, written over the fields of ``state.last_error`` it has (those
    it lacks are kept). ``due_in_s``: a parked send's slot, that far from ``now_epoch_s``;
    ``state.due_at_epoch_s`` is not carried (a copy that is not parked has no slot).
    """
    out = {
        **carried(headers),
        ATTEMPTS: state.attempts,
        **({} if state.id_source is None else {ID_SOURCE: state.id_source.value}),
        **error_headers(state.last_error),
    }
    if state.lookup:
        out[LOOKUP] = 1
    if state.sent_at_epoch_s is not None:
        out[SENT_AT_MS] = epoch_ms(state.sent_at_epoch_s)
    if state.queued_at_epoch_s is not None:
        out[QUEUED_AT_MS] = epoch_ms(state.queued_at_epoch_s)
    if state.expires_at_epoch_s is not None:
        # Absolute: a copy's own timestamp and age start again, its expiry must not.
        out[EXPIRES_AT_MS] = epoch_ms(state.expires_at_epoch_s)
    if due_in_s is not None:
        out[DUE_AT_MS] = epoch_ms(now_epoch_s + due_in_s)
    out.update(error_headers(error))
    return out


def dead_letter_headers(
    headers: Mapping[str, Any],
    *,
    reason: str,
    queue: str,
    command_id: str,
    attempts: int,
    error: ResultError | None,
    id_source: IdSource | None = None,
    detail: str | None = None,
) -> dict[str, Any]:
    """The headers of a dead letter: the application's own, and why the command ended there."""
    out: dict[str, Any] = {**carried(headers), REASON: reason}
    if detail is not None:
        out[DETAIL] = detail
    out.update({ATTEMPTS: attempts, QUEUE: queue, COMMAND_ID: command_id})
    if id_source is not None:
        out[ID_SOURCE] = id_source.value
    out.update(error_headers(error))
    return out


def mark_lookup(headers: dict[str, Any]) -> None:
    """Mark a copy to be looked up at Catapult before it is sent (it may have left already)."""
    headers[LOOKUP] = True


def replay_headers(headers: Mapping[str, Any], *, lookup: bool) -> dict[str, Any]:
    """The headers of a dead letter's replayed copy: the application's own and where the id
    came from, none of the worker's round headers (the attempts start again), the replays
    counted, and the look-up mark for a send that may have left already."""
    out: dict[str, Any] = {
        key: value
        for key, value in headers.items()
        if (not key.startswith(OWN_PREFIX) or key in _KEPT_ON_REPLAY)
        and not key.startswith(_BROKER)
    }
    out[REPLAYS] = read_dead_letter(headers).replays + 1
    if lookup:
        out[LOOKUP] = 1
    return out


@dataclass(frozen=True, slots=True)
class DeadLetterHeaders:
    """What a dead letter's headers say, as ``bridge dlq`` shows them (any value as text)."""

    command_id: str | None
    reason: str | None
    error_code: str | None
    error_message: str | None
    attempts: int
    replays: int
    queue: str | None


def read_dead_letter(headers: Mapping[str, Any]) -> DeadLetterHeaders:
    return DeadLetterHeaders(
        command_id=header_text(headers, COMMAND_ID),
        reason=header_text(headers, REASON),
        error_code=header_text(headers, ERROR_CODE),
        error_message=header_text(headers, ERROR_MESSAGE),
        attempts=_shown_int(headers, ATTEMPTS),
        replays=_shown_int(headers, REPLAYS),
        queue=header_text(headers, QUEUE),
    )


def own_headers(headers: Mapping[str, Any]) -> dict[str, Any]:
    """The ``x-bridge-*`` headers alone, bytes decoded (for showing them)."""
    return {
        key: (value.decode("utf-8", errors="replace") if isinstance(value, bytes) else value)
        for key, value in headers.items()
        if key.startswith(OWN_PREFIX)
    }


def header_text(headers: Mapping[str, Any], name: str) -> str | None:
    """A header as text for showing it: bytes decoded, any other value as ``str``."""
    value = headers.get(name)
    if isinstance(value, bytes):
        return value.decode("utf-8", errors="replace")
    return None if value is None else str(value)


def is_probe(headers: Mapping[str, Any]) -> bool:
    return bool(headers.get(PROBE))


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
    """A header value for a time (see the module docstring)."""
    return round(epoch_s * 1000)


_ID_SOURCES = frozenset(s.value for s in IdSource)


def _epoch_s(value: Any) -> float | None:
    ms = _number(value)
    return None if ms is None else ms / 1000.0


def _last_error(headers: Mapping[str, Any]) -> ResultError | None:
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


def _shown_int(headers: Mapping[str, Any], name: str) -> int:
    try:
        return int(float(header_text(headers, name) or 0))
    except ValueError:
        return 0


__all__ = [
    "ATTEMPTS",
    "COMMAND_ID",
    "DELIVERY_COUNT",
    "DETAIL",
    "DUE_AT_MS",
    "ERROR_CATEGORY",
    "ERROR_CODE",
    "ERROR_MESSAGE",
    "ERROR_STATUS",
    "EXPIRES_AT_MS",
    "ID_SOURCE",
    "LOOKUP",
    "OWN_PREFIX",
    "PROBE",
    "QUEUE",
    "QUEUED_AT_MS",
    "REASON",
    "REPLAYS",
    "SENT_AT_MS",
    "DeadLetterHeaders",
    "Round",
    "carried",
    "copy_headers",
    "dead_letter_headers",
    "death_reason",
    "epoch_ms",
    "error_headers",
    "expires_at",
    "header_text",
    "is_probe",
    "mark_lookup",
    "own_headers",
    "queued_at",
    "read_dead_letter",
    "read_round",
    "replay_headers",
    "was_delivered_before",
]

"""Reading dead letters for ``bridge dlq``: what each one is, which to pick, how to replay it.

A dead letter is what the worker put on a ``.dead`` queue: the command's body (an import's
without its Dashboard credentials) and ``x-bridge-*`` headers saying why (``x-bridge-reason``,
Catapult's ``x-bridge-error-code`` and message, ``x-bridge-attempts``, ``x-bridge-queue``: the
command queue it came from). ``DeadLetter`` reads those; ``Selection`` picks by reason, code and
age; ``replay_envelope`` builds the copy that goes back to the command queue: the same body and
command id, the application's own headers, none of the worker's round headers (so the attempts
start again), ``x-bridge-replays`` counting the replays, and for a send that may have left
already (``MAY_HAVE_LEFT``), the look-up flag (the worker looks it up before it sends it again).

``redacted`` is how ``show`` prints a body: Dashboard credential keys dropped at any depth,
passwords in URLs masked, and the configured secrets replaced wherever they appear.

Pure code; no I/O here.
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

import orjson

from bridge.catapult.redaction import Redactor
from bridge.cli.errors import UsageError
from bridge.events import headers as h
from bridge.events.commands import CommandKind, redacted_body
from bridge.events.envelope import Envelope
from bridge.settings import Settings, masked_url

# Reasons after which a send may be at Catapult already (any other one was surely not sent).
MAY_HAVE_LEFT = frozenset({"unknown-outcome", "delivery-limit", "retries-exhausted"})
_URL = re.compile(r"[a-z][a-z0-9+.-]*://[^\s\"']+", re.IGNORECASE)
_DURATION = re.compile(r"^\s*(\d+(?:\.\d+)?)\s*([smhd]?)\s*$")
_UNIT_S = {"": 1, "s": 1, "m": 60, "h": 3600, "d": 86400}


def duration_s(text: str) -> float:
    """``90``, ``90s``, ``15m``, ``2h``, ``1d`` in seconds (``UsageError`` otherwise)."""
    match = _DURATION.match(text.lower())
    if match is None:
        raise UsageError(f"--older-than {text!r}: give a duration such as 90s, 15m, 2h or 1d")
    return float(match.group(1)) * _UNIT_S[match.group(2)]


@dataclass(frozen=True, slots=True)
class DeadLetter:
    """One dead letter as read (its body, headers and properties), nothing changed."""

    body: bytes
    headers: Mapping[str, Any]
    message_id: str | None
    type: str | None
    content_type: str | None
    correlation_id: str | None
    reply_to: str | None
    timestamp: datetime | None

    @property
    def says(self) -> h.DeadLetterHeaders:
        """What its ``x-bridge-*`` headers say."""
        return h.read_dead_letter(self.headers)

    @property
    def command_id(self) -> str:
        return self.says.command_id or self.message_id or "(no id)"

    @property
    def reason(self) -> str:
        return self.says.reason or "unknown"

    @property
    def code(self) -> str:
        return self.says.error_code or ""

    @property
    def error_message(self) -> str:
        return self.says.error_message or ""

    @property
    def attempts(self) -> int:
        return self.says.attempts

    @property
    def replays(self) -> int:
        return self.says.replays

    @property
    def source_queue(self) -> str | None:
        return self.says.queue

    def age_s(self, now: datetime) -> float | None:
        if self.timestamp is None:
            return None
        stamp = self.timestamp if self.timestamp.tzinfo else self.timestamp.replace(tzinfo=UTC)
        return max(0.0, (now - stamp).total_seconds())

    def summary(self) -> str:
        """What the command asked for, in a few words (never a credential)."""
        try:
            data = orjson.loads(self.body)
        except orjson.JSONDecodeError:
            return f"(a body of {len(self.body)} bytes, not JSON)"
        if not isinstance(data, dict):
            return "(not a JSON object)"
        if "number" in data:
            return f"import {data.get('number')}"
        text = data.get("text")
        shown = ""
        if isinstance(text, str):
            shown = " " + orjson.dumps(text if len(text) <= 30 else text[:29] + "…").decode()
        return f"{data.get('from', '?')} -> {data.get('to', '?')}{shown}"


def show_age(seconds: float | None) -> str:
    if seconds is None:
        return "?"
    for unit, size in (("d", 86400), ("h", 3600), ("m", 60)):
        if seconds >= size:
            return f"{seconds / size:.0f}{unit}"
    return f"{seconds:.0f}s"


@dataclass(frozen=True, slots=True)
class Selection:
    reason: str | None = None
    code: str | None = None
    older_than_s: float | None = None
    command_id: str | None = None

    def matches(self, letter: DeadLetter, *, now: datetime) -> bool:
        if self.reason is not None and letter.reason != self.reason:
            return False
        if self.code is not None and letter.code != self.code:
            return False
        if self.command_id is not None and letter.command_id != self.command_id:
            return False
        if self.older_than_s is not None:
            age = letter.age_s(now)
            if age is None or age < self.older_than_s:
                return False
        return True


def command_queue_of(letter: DeadLetter, *, dead_queue: str, settings: Settings) -> str | None:
    """The command queue a dead letter goes back to: its ``x-bridge-queue``, else the one whose
    dead queue it is; only ever one of the bridge's command queues."""
    broker = settings.broker
    commands = (broker.send_queue, broker.import_queue)
    named = letter.source_queue
    if named in commands:
        return named
    for queue in commands:
        if dead_queue == queue + broker.dead_letter_suffix:
            return queue
    return None


def replay_envelope(letter: DeadLetter, *, queue: str, kind: CommandKind) -> Envelope:
    # A send may have left on an earlier attempt: the worker looks it up before sending.
    lookup = kind is CommandKind.SEND and letter.reason in MAY_HAVE_LEFT
    headers = h.replay_headers(letter.headers, lookup=lookup)
    return Envelope(
        body=letter.body,
        routing_key=queue,
        message_id=letter.command_id,
        type=letter.type or "",
        content_type=letter.content_type or "application/json",
        headers=headers,
        correlation_id=letter.correlation_id,
        reply_to=letter.reply_to,
        timestamp=datetime.now(UTC),
    )


def redactor_for(settings: Settings) -> Redactor:
    """Every secret the settings hold, to be replaced wherever it shows."""
    secrets = [
        settings.catapult.api_token,
        settings.catapult.api_secret,
        settings.catapult.dashboard_password,
        settings.receiver.password,
        settings.receiver.path_token,
    ]
    return Redactor(s.get_secret_value() for s in secrets if s is not None)


def redacted(body: bytes, redactor: Redactor) -> str:
    """The body as ``show`` prints it: JSON pretty-printed, no credential, no URL password."""
    cleaned = redacted_body(CommandKind.IMPORT, body)  # credential keys dropped, any command
    if not cleaned and body:
        return f"(a body of {len(body)} bytes, not JSON: not shown)"
    text = orjson.dumps(orjson.loads(cleaned), option=orjson.OPT_INDENT_2).decode()
    text = _URL.sub(lambda m: masked_url(m.group(0)), text)
    return redactor.redact(text)


def redacted_headers(headers: Mapping[str, Any], redactor: Redactor) -> dict[str, str]:
    return {
        key: redactor.redact(
            _URL.sub(lambda m: masked_url(m.group(0)), h.header_text(headers, key) or "")
        )
        for key in headers
    }


__all__ = [
    "DeadLetter",
    "Selection",
    "command_queue_of",
    "duration_s",
    "redacted",
    "redacted_headers",
    "redactor_for",
    "replay_envelope",
    "show_age",
]

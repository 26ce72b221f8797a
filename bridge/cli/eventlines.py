"""How the command line shows an event or a queued message: one readable line, or JSON.

``event_line`` gives the time, the routing key, the ids (command, message, number), from and to,
the text shortened and, for a failure or a dead letter, the reason. ``event_json`` gives the
event itself with its routing key (``routingkey``) and the bridge's ``x-bridge-*`` headers, for
one JSON object a line. Whatever the body is (not JSON, not an object), a line comes out.

Pure code; no I/O here.
"""

from __future__ import annotations

from collections.abc import Mapping
from datetime import datetime
from typing import Any

import orjson

from bridge.events import headers as h

TEXT_CHARS = 40


def shorten(text: str, chars: int = TEXT_CHARS) -> str:
    one_line = " ".join(text.split())
    return one_line if len(one_line) <= chars else one_line[: chars - 1] + "…"


def _decoded(body: bytes) -> dict[str, Any] | None:
    try:
        value = orjson.loads(body)
    except orjson.JSONDecodeError:
        return None
    return value if isinstance(value, dict) else None


def _clock(value: Any, fallback: datetime | None) -> str:
    if isinstance(value, str):
        try:
            return datetime.fromisoformat(value).strftime("%H:%M:%S")
        except ValueError:
            pass
    return fallback.strftime("%H:%M:%S") if fallback is not None else "--:--:--"


def event_line(
    routing_key: str,
    body: bytes,
    *,
    headers: Mapping[str, Any] | None = None,
    timestamp: datetime | None = None,
) -> str:
    """One line for one message of the events exchange (or of a command or dead queue)."""
    headers = headers or {}
    event = _decoded(body)
    if event is None:
        return f"{_clock(None, timestamp)} {routing_key} (a body of {len(body)} bytes, not JSON)"
    is_event = "specversion" in event and isinstance(event.get("data"), dict)
    data: dict[str, Any] = event["data"] if is_event else event
    parts = [_clock(event.get("time"), timestamp), routing_key]
    command_id = (
        (event.get("correlationid") if is_event else None)
        or data.get("commandId")
        or h.header_text(headers, h.COMMAND_ID)
    )
    if command_id:
        parts.append(f"command={command_id}")
    message_id = data.get("messageId")
    if message_id:
        parts.append(f"message={message_id}")
    if data.get("number"):
        parts.append(f"number={data['number']}")
    if data.get("numberId"):
        parts.append(f"number_id={data['numberId']}")
    if data.get("from") or data.get("to"):
        parts.append(f"{data.get('from') or '?'} -> {data.get('to') or '?'}")
    text = data.get("text")
    if isinstance(text, str):
        parts.append(orjson.dumps(shorten(text)).decode())
    reason = data.get("reason") or h.header_text(headers, h.REASON)
    if reason:
        parts.append(f"reason={reason}")
    error = data.get("error")
    code = (error.get("code") if isinstance(error, dict) else None) or h.header_text(
        headers, h.ERROR_CODE
    )
    if code:
        parts.append(f"code={code}")
    for key in ("deliveryCode", "deliveryDescription"):
        value = data.get(key)
        if value is not None:
            shown = str(value)
            parts.append(f"{key}={orjson.dumps(shown).decode() if ' ' in shown else shown}")
    return " ".join(str(part) for part in parts)


def event_json(routing_key: str, body: bytes, *, headers: Mapping[str, Any] | None = None) -> str:
    """One JSON object for one message: the event, with ``routingkey`` (and the bridge's
    headers, when it carries some, as ``bridgeheaders``)."""
    event = _decoded(body)
    out: dict[str, Any] = {"routingkey": routing_key}
    if event is None:
        out["body"] = body.decode("utf-8", errors="replace")
    else:
        out.update(event)
    own = h.own_headers(headers or {})
    if own:
        out["bridgeheaders"] = own
    return orjson.dumps(out, default=str).decode()


__all__ = ["TEXT_CHARS", "event_json", "event_line", "shorten"]

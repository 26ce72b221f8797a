"""The message callback endpoint: from an HTTP request to a stored canonical event and an answer.

One handler serves GET (query parameters) and POST (JSON, or form-encoded) at ``receiver.path``
(and ``receiver.path/{token}`` when a path token is configured). In order: authenticate, bound the
size, read the fields, validate them (``bridge.events.callbacks``), build the event
(``bridge.events.receiver_events``), store it (``publishing``), answer 200 with the event id. Any
refusal is a ``ReceiverError`` that the problem middleware renders; nothing is published for a
refused callback.
"""

from __future__ import annotations

import asyncio
import codecs
import logging
import time
from datetime import UTC, datetime
from typing import Any
from urllib.parse import parse_qsl

import orjson
from aiohttp import hdrs, web

from bridge.events.callbacks import (
    FieldProblem,
    InvalidCallback,
    fields_from_pairs,
    is_text,
    parse_callback,
    shown,
)
from bridge.events.receiver_events import build_event
from bridge.logs import CALLBACKS_LOGGER
from bridge.receiver.errors import (
    BadCallback,
    PayloadTooLarge,
    ReceiverUnavailable,
    RequestTimeout,
    Unauthorized,
    UnsupportedMediaType,
)
from bridge.receiver.keys import AUTH, METRICS, PUBLISHER, SETTINGS
from bridge.settings import ReceiverSettings

log = logging.getLogger(__name__)
# One INFO line per callback stored (``log.per_message`` switches it off).
stored_log = logging.getLogger(CALLBACKS_LOGGER)

FORM = "application/x-www-form-urlencoded"
_ESCAPE_CODECS = frozenset({"unicode-escape", "raw-unicode-escape"})


def _is_json(content_type: str) -> bool:
    return content_type == "application/json" or (
        content_type.startswith("application/") and content_type.endswith("+json")
    )


async def _read_body(request: web.Request, timeout_s: float) -> bytes:
    try:
        if request.content.is_eof():  # all of it came with the head, as with most callbacks
            return await request.read()
        async with asyncio.timeout(timeout_s):
            return await request.read()
    except TimeoutError as exc:
        raise RequestTimeout(f"the body did not arrive within {timeout_s:g} s") from exc
    except web.RequestPayloadError as exc:
        # A body that ends before its length, a broken chunk, gzip that does not decompress.
        raise BadCallback(
            [FieldProblem("(body)", f"cannot be read: {exc.__cause__ or exc}")]
        ) from exc


def _decode(body: bytes, charset: str) -> str:
    """A form body as text; ``BadCallback`` unless ``charset`` made Unicode text of it."""
    if charset == "utf-8":
        try:
            return body.decode()  # strict UTF-8 never yields a lone surrogate
        except UnicodeDecodeError:
            pass
    else:
        try:
            # The escape codecs read backslashes, not a charset; they can make lone surrogates.
            if codecs.lookup(charset).name not in _ESCAPE_CODECS:
                text = body.decode(charset)
                if is_text(text):
                    return text
        except (UnicodeError, LookupError):  # punycode and idna raise a bare UnicodeError
            pass
    raise BadCallback([FieldProblem("(body)", f"is not text in charset {shown(charset)}")])


async def _read_fields(request: web.Request, settings: ReceiverSettings) -> Any:
    """The callback's fields as a JSON-like value (validated later) from the query or the body."""
    max_bytes = settings.max_body_bytes
    if request.method == hdrs.METH_GET:
        if len(request.query_string) > max_bytes:
            raise PayloadTooLarge(f"the query is longer than the limit of {max_bytes} bytes")
        try:
            return fields_from_pairs(request.query.items())
        except InvalidCallback as exc:
            raise BadCallback(exc.problems) from exc
    length = request.content_length
    if length is not None and length > max_bytes:
        raise PayloadTooLarge(f"the body of {length} bytes is over the limit of {max_bytes} bytes")
    content_type = request.content_type
    if _is_json(content_type):
        body = await _read_body(request, settings.body_timeout_s)
        try:
            return orjson.loads(body)
        except orjson.JSONDecodeError as exc:
            raise BadCallback([FieldProblem("(body)", f"is not valid JSON: {exc}")]) from exc
    if content_type == FORM:
        body = await _read_body(request, settings.body_timeout_s)
        text = _decode(body, request.charset or "utf-8")
        try:
            return fields_from_pairs(parse_qsl(text, keep_blank_values=True))
        except InvalidCallback as exc:
            raise BadCallback(exc.problems) from exc
    raise UnsupportedMediaType(
        f"content type {content_type!r} is not accepted; send application/json "
        f"or {FORM} (or use GET with query parameters)"
    )


async def handle_callback(request: web.Request) -> web.Response:
    app = request.app
    settings = app[SETTINGS].receiver
    started = time.perf_counter()
    outcome = "rejected"
    try:
        app[AUTH].check(request.headers.get(hdrs.AUTHORIZATION), request.match_info.get("token"))
        fields = await _read_fields(request, settings)
        try:
            callback = parse_callback(fields)
        except InvalidCallback as exc:
            raise BadCallback(exc.problems) from exc
        event = build_event(callback, fields, source=settings.source, received_at=datetime.now(UTC))
        disposition = await app[PUBLISHER].deliver(event)
        outcome = disposition.value
        if stored_log.isEnabledFor(logging.INFO):  # the one check: nothing is built when off
            stored_log.info(
                "callback stored",
                extra={
                    "outcome": outcome,
                    "routing_key": event.routing_key,
                    "event_id": event.id,
                    "message_id": callback.message_id,
                    "command_id": event.event.correlationid,
                },
            )
        return web.Response(
            body=orjson.dumps({"status": outcome, "id": event.id}),
            content_type="application/json",
        )
    except Unauthorized:
        outcome = "unauthorized"
        raise
    except BadCallback as exc:
        log.warning("callback rejected with 400: %s", exc)
        raise
    except ReceiverUnavailable as exc:
        outcome = "unavailable"
        log.error("callback refused with 503: %s", exc)
        raise
    finally:
        app[METRICS].observe(outcome, time.perf_counter() - started)

"""Reading Catapult v1's answers: pure functions from status, headers and body to values or errors.

What lives here: the error classification (status + Catapult's ``{category, code, message,
details}`` body to one class of ``errors.py``), per-item batch results, id extraction from an
absolute or relative ``Location``, ``Link`` header parsing and the next-page URL, and the date
format of message list filters. Every function is pure and deterministic: no I/O, no clock, no
logging; the client (``client.py``) is the only caller that touches sockets.

Known secrets (the API token and secret, the ``Authorization`` value, an import's Dashboard
credentials) travel with the request as a ``Redactor`` and are replaced by ``***`` in every text
taken from an answer, in every form a server could echo them in (``redaction.py``), before any
text is folded or cut, so an error can never carry one, or the start of one, even if a server
echoes the request back. Texts taken from an answer are bounded (``SNIPPET_CHARS``,
``MESSAGE_CHARS``, ``DETAIL_CHARS``, ``MAX_DETAILS``).
"""

from __future__ import annotations

import re
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any
from urllib.parse import unquote

import orjson
from yarl import URL

from bridge.catapult.errors import (
    AmbiguousError,
    ApiError,
    AuthError,
    BadRequestError,
    CatapultError,
    ConflictError,
    ErrorDetail,
    ForbiddenError,
    NotFoundError,
    RateLimitedError,
    RateLimitScope,
    ServerError,
)
from bridge.catapult.models import BatchItem, MessageRef
from bridge.catapult.redaction import NO_SECRETS, Redactor
from bridge.catapult.redaction import REDACTED as REDACTED

SNIPPET_CHARS = 200
MESSAGE_CHARS = 1000
DETAIL_CHARS = 200
MAX_DETAILS = 20
MAX_BATCH = 50
# Catapult counts accepted sends per account and per sending number over (now - 10 s, now] and
# refuses the one that would make more than ``rate * RATE_WINDOW_S`` (403 message-rate-limit*).
RATE_WINDOW_S = 10.0

# 503 codes after which the message may exist: look it up before sending again.
AMBIGUOUS_CODES = frozenset({"message-gateway-unavailable", "gateway-unavailable"})
ACCOUNT_RATE_LIMIT_CODES = frozenset({"message-rate-limit", "message-rate-limit-overall"})
NUMBER_RATE_LIMIT_CODES = frozenset({"message-rate-limit-per-tn"})
# Detail names that may carry the sending number of a per-number rate limit, most specific first.
NUMBER_DETAIL_NAMES = ("number", "telephoneNumber", "tn", "from")

# A batch item's error has a body but no status of its own; the status its category stands for
# (AP-DOCS errors.md) lets it go through the same classification as a whole answer.
CATEGORY_STATUS: Mapping[str, int] = {
    "bad-request": 400,
    "authentication": 401,
    "authorization": 401,
    "credit": 403,
    "limit": 403,
    "forbidden": 403,
    "not-found": 404,
    "conflict": 409,
    "too-many-requests": 429,
    "payment": 500,
    "backend": 500,
    "unavailable": 503,
}


@dataclass(frozen=True, slots=True)
class ErrorBody:
    """Catapult's error body, or what could be made of an answer that is not one."""

    message: str
    category: str | None = None
    code: str | None = None
    details: tuple[ErrorDetail, ...] = ()


@dataclass(frozen=True, slots=True)
class RequestContext:
    """What an error may say about the request: never headers, never a body, never a secret."""

    method: str
    path: str
    sender: str | None = None  # the message's ``from``, the number of a per-number rate limit
    redactor: Redactor = NO_SECRETS


def snippet(body: bytes, redactor: Redactor = NO_SECRETS) -> str:
    """The first part of a body as one line of text, for an error message; never a secret."""
    # Folded before it is searched: the redactor knows each secret with its whitespace folded.
    text = " ".join(body.decode("utf-8", errors="replace").split())
    return redactor.clip(text, SNIPPET_CHARS)


def _details(raw: Any, redactor: Redactor) -> tuple[ErrorDetail, ...]:
    if not isinstance(raw, list):
        return ()
    return tuple(
        ErrorDetail(
            name=redactor.clip(str(item["name"]), DETAIL_CHARS),
            value=redactor.clip(str(item.get("value")), DETAIL_CHARS),
        )
        for item in raw[:MAX_DETAILS]
        if isinstance(item, dict) and "name" in item
    )


def error_body_from_json(data: Any, redactor: Redactor = NO_SECRETS) -> ErrorBody | None:
    """Catapult's error object, or None when ``data`` is not shaped like one."""
    if not isinstance(data, dict):
        return None
    category, code, message = data.get("category"), data.get("code"), data.get("message")
    if not any(isinstance(v, str) for v in (category, code, message)):
        return None
    text = message if isinstance(message, str) else str(code or category)
    return ErrorBody(
        message=redactor.clip(text, MESSAGE_CHARS),
        category=redactor.clip(category, DETAIL_CHARS) if isinstance(category, str) else None,
        code=redactor.clip(code, DETAIL_CHARS) if isinstance(code, str) else None,
        details=_details(data.get("details"), redactor),
    )


def parse_error_body(status: int, body: bytes, redactor: Redactor = NO_SECRETS) -> ErrorBody:
    """Read an error answer; a body that is not Catapult's JSON still gives a useful message."""
    if not body.strip():
        return ErrorBody(message=f"HTTP {status} with an empty body")
    try:
        data = orjson.loads(body)
    except orjson.JSONDecodeError:
        return ErrorBody(message=f"HTTP {status} with a non-JSON body: {snippet(body, redactor)}")
    parsed = error_body_from_json(data, redactor)
    if parsed is None:
        shown = snippet(body, redactor)
        return ErrorBody(message=f"HTTP {status} with an unexpected body: {shown}")
    return parsed


def error_class_for(status: int | None, code: str | None) -> type[CatapultError]:
    """The one table from an answer to the class of error it is."""
    if code in AMBIGUOUS_CODES and (status is None or status == 503):
        return AmbiguousError
    if code in ACCOUNT_RATE_LIMIT_CODES or code in NUMBER_RATE_LIMIT_CODES:
        return RateLimitedError
    if status is None:
        return ApiError
    by_status: dict[int, type[CatapultError]] = {
        400: BadRequestError,
        401: AuthError,
        403: ForbiddenError,
        404: NotFoundError,
        409: ConflictError,
        429: RateLimitedError,
    }
    if status in by_status:
        return by_status[status]
    if status >= 500:
        return ServerError
    if 400 <= status < 500:
        # Another refusal of the request as it stands (405, 413, 415, ...): sending it again
        # unchanged cannot succeed, which is what a bad request means to a caller.
        return BadRequestError
    return ApiError


def reset_epoch_s(headers: Mapping[str, str], details: Sequence[ErrorDetail]) -> float | None:
    """``X-RateLimit-Reset`` (epoch ms) as epoch seconds; the body's detail as a backup."""
    candidates = [v for k, v in headers.items() if k.lower() == "x-ratelimit-reset"]
    candidates += [d.value for d in details if d.name == "rateLimitResetTime"]
    for raw in candidates:
        try:
            return int(raw.strip()) / 1000.0
        except ValueError:
            continue
    return None


def build_error(
    status: int | None,
    body: ErrorBody,
    request: RequestContext,
    *,
    headers: Mapping[str, str] | None = None,
) -> CatapultError:
    cls = error_class_for(status, body.code)
    common: dict[str, Any] = {
        "message": body.message,
        "status": status,
        "category": body.category,
        "code": body.code,
        "details": body.details,
        "method": request.method,
        "path": request.path,
    }
    if cls is not RateLimitedError:
        return cls(**common)
    if status == 429:
        return RateLimitedError(
            **common,
            scope=RateLimitScope.RESOURCE,
            retry_at=reset_epoch_s(headers or {}, body.details),
        )
    if body.code in NUMBER_RATE_LIMIT_CODES:
        number = next(
            (d.value for name in NUMBER_DETAIL_NAMES for d in body.details if d.name == name),
            request.sender,
        )
        return RateLimitedError(**common, scope=RateLimitScope.NUMBER, number=number)
    return RateLimitedError(**common, scope=RateLimitScope.ACCOUNT)


def error_from_response(
    status: int, headers: Mapping[str, str], body: bytes, request: RequestContext
) -> CatapultError:
    """The error for a non-2xx answer."""
    return build_error(
        status, parse_error_body(status, body, request.redactor), request, headers=headers
    )


def unreadable_response(
    status: int, reason: str, body: bytes, request: RequestContext
) -> CatapultError:
    """The error for a 2xx answer that cannot be read.

    After a POST Catapult has acted (a message or a resource exists) but we do not know its id,
    so the caller must look before repeating: ambiguous. After a GET nothing happened and asking
    again is safe: a server error.
    """
    cls = AmbiguousError if request.method == "POST" else ServerError
    text = f"HTTP {status} answer could not be read: {reason}"
    if body.strip():
        text += f"; body: {snippet(body, request.redactor)}"
    return cls(message=text, status=status, method=request.method, path=request.path)


def id_from_location(location: str, collection: str) -> str:
    """The id at the end of an absolute or relative ``Location`` under ``.../{collection}/``.

    Raises ``ValueError`` when the URL does not name one resource of that collection.
    """
    if not location or not location.strip():
        raise ValueError("empty Location header")
    segments = [s for s in URL(location.strip()).raw_path.split("/") if s]
    if len(segments) < 2 or segments[-2] != collection:
        raise ValueError(f"Location {location!r} does not name a resource under /{collection}/")
    return unquote(segments[-1])


_LINK = re.compile(r'<([^>]*)>((?:[^,<"]|"[^"]*")*)')
_PARAM = re.compile(r';\s*([A-Za-z0-9!#$&+.^_`|~-]+)\s*=\s*(?:"([^"]*)"|([^;,\s]*))')


def parse_link_header(value: str | None) -> dict[str, str]:
    """``Link: <url>; rel="next", <url>; rel="last"`` as ``{"next": url, "last": url}``."""
    links: dict[str, str] = {}
    for target, params in _LINK.findall(value or ""):
        for name, quoted, bare in _PARAM.findall(params):
            if name.lower() == "rel":
                for rel in (quoted or bare).split():
                    links.setdefault(rel.lower(), target.strip())
    return links


def next_page_url(link_header: str | None, *, current: URL, base: URL) -> URL | None:
    """Where the next page is, on the client's own origin, or None on the last page.

    A relative link is resolved against the page it came with. Only the path and query of the link
    are used, on the scheme, host and port of ``base``: the client's credentials never go to
    another host, and a Catapult that prints its public host name still works behind a proxy.
    """
    target = parse_link_header(link_header).get("next")
    if not target:
        return None
    resolved = current.join(URL(target))
    return URL(str(base.origin()) + resolved.raw_path_qs, encoded=True)


def batch_items(data: Any, request: RequestContext, senders: Sequence[str]) -> list[BatchItem]:
    """Per-item results of a batch send, in request order.

    Raises ``ValueError`` when the answer is not a list of one entry per message. An entry that
    cannot be read becomes an ``AmbiguousError`` for that item alone: it may have been sent.
    """
    if not isinstance(data, list) or len(data) != len(senders):
        raise ValueError(f"expected a list of {len(senders)} results")
    items: list[BatchItem] = []
    for index, (entry, sender) in enumerate(zip(data, senders, strict=True)):
        item_request = RequestContext(request.method, request.path, sender, request.redactor)
        items.append(_batch_item(index, entry, item_request))
    return items


def _batch_item(index: int, entry: Any, request: RequestContext) -> BatchItem:
    result = entry.get("result") if isinstance(entry, dict) else None
    if result == "accepted":
        location = entry.get("location")
        try:
            message_id = id_from_location(location if isinstance(location, str) else "", "messages")
        except ValueError as exc:
            return BatchItem(error=_unknown_item(index, str(exc), request))
        return BatchItem(ref=MessageRef(id=message_id, location=location))
    if result == "error":
        body = error_body_from_json(entry.get("error"), request.redactor)
        if body is None:
            return BatchItem(error=_unknown_item(index, "error entry without a body", request))
        status = CATEGORY_STATUS.get(body.category or "")
        return BatchItem(error=build_error(status, body, request))
    return BatchItem(error=_unknown_item(index, f"unknown result {result!r}", request))


def _unknown_item(index: int, reason: str, request: RequestContext) -> AmbiguousError:
    return AmbiguousError(
        message=f"batch item {index} could not be read ({reason}); it may have been sent",
        method=request.method,
        path=request.path,
    )


def format_date_time(value: datetime | str) -> str:
    """A list filter time as Catapult reads it: ``yyyy-MM-dd HH:mm:ss.SSS`` in UTC."""
    if isinstance(value, str):
        return value
    if value.tzinfo is not None:
        value = value.astimezone(UTC)
    return value.strftime("%Y-%m-%d %H:%M:%S.") + f"{value.microsecond // 1000:03d}"


def batch_too_large(count: int, request: RequestContext) -> ForbiddenError:
    """Refused before sending, with the same code Catapult would answer (no status: not sent)."""
    return ForbiddenError(
        message=(
            f"a batch holds at most {MAX_BATCH} messages, this one has {count}; "
            f"split it into batches of {MAX_BATCH} or fewer"
        ),
        category="limit",
        code="multi-message-limit",
        method=request.method,
        path=request.path,
    )

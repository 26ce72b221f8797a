"""Everything the receiver can refuse, as one tree; each error knows the HTTP answer it becomes.

    ReceiverError
     ├── CallbackRejected          4xx: the request is wrong; nothing is published or spooled
     │    ├── BadCallback          400: a field, the body or the query is invalid (names the field)
     │    ├── Unauthorized         401: credentials or path token wrong (never says which)
     │    ├── MethodNotAllowed     405
     │    ├── RequestTimeout       408: the body came too slowly (the connection is closed)
     │    ├── PayloadTooLarge      413
     │    └── UnsupportedMediaType 415
     └── ReceiverUnavailable       503: the callback could not be stored safely; Catapult then
          ├── SpoolFull                 calls the fallback URL. Spool at its size limit,
          └── SpoolFailed               or the disk refused the write.

``problems.py`` renders them as RFC 9457 problem documents; foreign exceptions (pydantic, aiohttp,
aio-pika, OS errors) are translated into this tree where they are caught, with ``raise ... from``.
A failed publish is not here: ``bridge.broker.PublishFailed`` is an expected outcome the
publishing code turns into a spool write or a ``ReceiverUnavailable``.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping

from bridge.events.callbacks import FieldProblem


class ReceiverError(Exception):
    """Base of the receiver's refusals; ``status``, ``code`` and ``title`` shape the answer."""

    status = 500
    code = "internal-error"
    title = "Internal error"

    def __init__(self, detail: str, *, headers: Mapping[str, str] | None = None) -> None:
        super().__init__(detail)
        self.detail = detail
        self.headers = dict(headers or {})


class CallbackRejected(ReceiverError):
    """The request itself is wrong: retrying it unchanged cannot succeed."""

    status = 400
    code = "bad-request"
    title = "Bad request"


class BadCallback(CallbackRejected):
    code = "invalid-callback"
    title = "Invalid callback"

    def __init__(self, problems: Iterable[FieldProblem]) -> None:
        self.problems = tuple(problems)
        super().__init__("; ".join(f"'{p.field}' {p.problem}" for p in self.problems))


class Unauthorized(CallbackRejected):
    status = 401
    code = "unauthorized"
    title = "Unauthorized"


class MethodNotAllowed(CallbackRejected):
    status = 405
    code = "method-not-allowed"
    title = "Method not allowed"


class RequestTimeout(CallbackRejected):
    status = 408
    code = "request-timeout"
    title = "Request timeout"


class PayloadTooLarge(CallbackRejected):
    status = 413
    code = "payload-too-large"
    title = "Payload too large"


class UnsupportedMediaType(CallbackRejected):
    status = 415
    code = "unsupported-media-type"
    title = "Unsupported media type"


class ReceiverUnavailable(ReceiverError):
    """The callback was not stored; answering 503 sends Catapult to the fallback URL."""

    status = 503
    code = "unavailable"
    title = "Service unavailable"


class SpoolFull(ReceiverUnavailable):
    code = "spool-full"


class SpoolFailed(ReceiverUnavailable):
    code = "spool-failed"

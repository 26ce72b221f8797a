"""Catapult v1's error model as one exception hierarchy.

Every non-2xx answer, unreadable body and transport failure of the client becomes one of these;
aiohttp's exceptions never leave the client. The tree, and what each means for a caller::

    CatapultError                  anything that went wrong talking to Catapult
    ├── TransportError             not sent: refused, reset or timed out before the request left
    ├── AmbiguousError             maybe done: 503 message-gateway-unavailable, or a timeout after
    │                              the request was sent; look the result up before repeating it
    └── ApiError                   Catapult answered with an error status and body
        ├── AuthError              401 (category authorization): bad token/secret/user, or no right
        │                          to a number, application or Dashboard account
        ├── RateLimitedError       403 message-rate-limit* (scope account or number) or
        │                          429 rate-limit-reached (scope resource, ``retry_at`` set)
        ├── BadRequestError        400 (missing-property, blank-property, validation-error, ...)
        ├── ForbiddenError         403 other than rate limits (multi-message-limit, credit, ...)
        ├── NotFoundError          404
        ├── ConflictError          409 (duplicate-number, ...)
        └── ServerError            other 5xx (and 503s that are not ambiguous)

Messages never contain the API token or secret, the ``Authorization`` value or an import's
Dashboard credentials, in any form: the client builds them only from the status, Catapult's own
body and the request's method and path, with every known secret redacted (``redaction.py``).
No I/O here.
"""

from __future__ import annotations

from dataclasses import dataclass
from enum import StrEnum
from typing import Any


@dataclass(frozen=True, slots=True)
class ErrorDetail:
    name: str
    value: str


class RateLimitScope(StrEnum):
    ACCOUNT = "account"  # message-rate-limit, message-rate-limit-overall
    NUMBER = "number"  # message-rate-limit-per-tn
    RESOURCE = "resource"  # 429: a resource family such as /phoneNumbers or GET /messages


@dataclass(eq=False)
class CatapultError(Exception):
    """Base of every client error. ``status`` is None when no HTTP answer was read."""

    message: str
    status: int | None = None
    category: str | None = None
    code: str | None = None
    details: tuple[ErrorDetail, ...] = ()
    method: str | None = None
    path: str | None = None

    def __post_init__(self) -> None:
        Exception.__init__(self, self.message)

    def __str__(self) -> str:
        parts = []
        if self.status is not None:
            parts.append(str(self.status))
        if self.code:
            parts.append(self.code)
        where = f" ({self.method} {self.path})" if self.method and self.path else ""
        prefix = " ".join(parts)
        return f"{prefix + ': ' if prefix else ''}{self.message}{where}"

    def detail(self, name: str) -> str | None:
        return next((d.value for d in self.details if d.name == name), None)

    def as_dict(self) -> dict[str, Any]:
        """What a result event or a dead-letter header may carry (no secrets by construction)."""
        return {
            "status": self.status,
            "category": self.category,
            "code": self.code,
            "message": self.message,
        }


class TransportError(CatapultError):
    """The request did not reach Catapult; repeating it cannot create a duplicate."""


class AmbiguousError(CatapultError):
    """Catapult may have acted; check (for a message: look it up) before repeating."""


class ApiError(CatapultError):
    """Catapult answered with an error status."""


class AuthError(ApiError):
    pass


@dataclass(eq=False)
class RateLimitedError(ApiError):
    scope: RateLimitScope = RateLimitScope.ACCOUNT
    number: str | None = None  # the sending number, for scope NUMBER
    retry_at: float | None = None  # epoch seconds, from X-RateLimit-Reset (429 only)


class BadRequestError(ApiError):
    pass


class ForbiddenError(ApiError):
    pass


class NotFoundError(ApiError):
    pass


class ConflictError(ApiError):
    pass


class ServerError(ApiError):
    pass


__all__ = [
    "AmbiguousError",
    "ApiError",
    "AuthError",
    "BadRequestError",
    "CatapultError",
    "ConflictError",
    "ErrorDetail",
    "ForbiddenError",
    "NotFoundError",
    "RateLimitScope",
    "RateLimitedError",
    "ServerError",
    "TransportError",
]

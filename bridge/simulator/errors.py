"""Catapult v1's error answers, as the simulator produces them.

Every error the simulated API returns is a ``Problem``: an HTTP status plus Catapult's body
``{"category", "code", "message", "details": [{"name", "value"}]}``. Handlers raise a ``Problem``;
one middleware (``app.py``) renders it and appends the request details the real platform adds
(``requestMethod``, ``remoteAddress``, ``requestPath`` without the leading ``/v1/``). Inside a batch
send, a ``Problem`` becomes a per-item ``error`` entry whose ``details`` stay as built here.

The constructors below carry the real platform's codes and message texts (AP-DOCS ``errors.md``
and the 2015 wire captures); where the docs are silent the text follows the project's decisions
table. No I/O here, and never a secret in a message or detail.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any


class Problem(Exception):
    """An error answer of the simulated API: status, Catapult body, optional extra headers."""

    def __init__(
        self,
        status: int,
        category: str,
        code: str,
        message: str | None,
        details: tuple[tuple[str, str], ...] = (),
        headers: Mapping[str, str] | None = None,
    ) -> None:
        super().__init__(f"{status} {code}: {message}")
        self.status = status
        self.category = category
        self.code = code
        self.message = message
        self.details = details
        self.headers = dict(headers or {})

    def body(self, request_details: tuple[tuple[str, str], ...] = ()) -> dict[str, Any]:
        """The JSON body; ``message`` is left out when None (the real 429 body has none)."""
        body: dict[str, Any] = {"category": self.category, "code": self.code}
        if self.message is not None:
            body["message"] = self.message
        body["details"] = [
            {"name": name, "value": value} for name, value in (*self.details, *request_details)
        ]
        return body


def access_denied() -> Problem:
    return Problem(
        401,
        "authorization",
        "access-denied",
        "The authenticated user does not have sufficient permissions to access this resource",
    )


def missing_property(resource: str, name: str) -> Problem:
    return Problem(
        400,
        "bad-request",
        "missing-property",
        f"The '{resource}' resource property '{name}' is required but was not specified",
    )


def blank_property(resource: str, name: str) -> Problem:
    return Problem(
        400,
        "bad-request",
        "blank-property",
        f"The '{resource}' resource property '{name}' must contain at least one "
        "non-whitespace character",
    )


def validation_error(message: str, *details: tuple[str, str]) -> Problem:
    return Problem(400, "bad-request", "validation-error", message, details)


def wrong_type(resource: str, name: str, expected: str) -> Problem:
    return validation_error(f"The '{resource}' resource property '{name}' must be {expected}")


def not_one_of(resource: str, name: str, values: tuple[str, ...]) -> Problem:
    return validation_error(
        f"The '{resource}' resource property '{name}' must be one of the following values: "
        f"{', '.join(values)}"
    )


def exceeds_limit(resource: str, name: str, limit: int) -> Problem:
    return validation_error(
        f"The '{resource}' resource property '{name}' exceeds the limit of '{limit}'"
    )


def text_too_long() -> Problem:
    return validation_error("The message text must be 2,048 characters or less")


def invalid_callback_url(url: str) -> Problem:
    return Problem(
        400,
        "bad-request",
        "callback-invalid-url",
        f"The URL {url} is not a valid callbackUrl/fallbackUrl",
    )


def invalid_json(reason: str) -> Problem:
    return validation_error(f"Bad parameters: the request body is not valid JSON ({reason})")


def number_access_denied(user_id: str, number: str) -> Problem:
    return Problem(
        401,
        "authorization",
        "number-access-denied",
        f"User {user_id} does not have permission to use number {number}",
        (("userId", user_id), ("number", number)),
    )


def multi_message_limit(count: int, limit: int) -> Problem:
    return Problem(
        403,
        "limit",
        "multi-message-limit",
        f"The number of messages [{count}] in the multi message request is greater than the "
        f"limit [{limit}].",
    )


def message_rate_limit(code: str, *, limit_per_s: float, rate: float) -> Problem:
    return Problem(
        403,
        "limit",
        code,
        f"You can send {limit_per_s:g} messages per 1 seconds, calculated as the average over "
        f"10 seconds. Your rate is: {rate:g}",
    )


def message_rate_limit_per_tn(number: str, *, limit_per_s: float, rate: float) -> Problem:
    return Problem(
        403,
        "limit",
        "message-rate-limit-per-tn",
        f"You can send {limit_per_s:g} messages per 1 seconds for telephone number {number}, "
        f"calculated as the average over 10 seconds. Your rate is: {rate:g}",
        (("number", number),),
    )


def rate_limit_reached(reset_ms: int) -> Problem:
    return Problem(
        429,
        "too-many-requests",
        "rate-limit-reached",
        None,
        (("rateLimitResetTime", str(reset_ms)),),
        {"X-RateLimit-Reset": str(reset_ms)},
    )


def message_not_found(message_id: str) -> Problem:
    return Problem(
        404,
        "not-found",
        "message-not-found",
        f"The message '{message_id}' could not be found",
        (("messageId", message_id),),
    )


def number_not_found(number: str) -> Problem:
    return Problem(404, "not-found", "number-not-found", f"The number {number} could not be found")


def application_not_found(application_id: str) -> Problem:
    return Problem(
        404,
        "not-found",
        "application-not-found",
        f"The application {application_id} could not be found",
        (("applicationId", application_id),),
    )


def resource_not_found() -> Problem:
    return Problem(
        404, "not-found", "resource-not-found", "The requested resource could not be found."
    )


def method_not_allowed(method: str) -> Problem:
    return Problem(
        405,
        "bad-request",
        "method-not-allowed",
        f"The request method {method} is not supported by this resource",
    )


def duplicate_number(number_id: str, number: str) -> Problem:
    return Problem(
        409,
        "conflict",
        "duplicate-number",
        f"Cannot create another instance of number resource {number_id} for number {number}",
    )


def provider_access_denied(account_id: str) -> Problem:
    # Names the Dashboard account, never the user name's password.
    return Problem(
        401,
        "authorization",
        "provider-access-denied",
        f"The Bandwidth Dashboard credentials for account {account_id} were rejected",
        (("accountId", account_id),),
    )


def message_gateway_unavailable(message_id: str) -> Problem:
    return Problem(
        503,
        "unavailable",
        "message-gateway-unavailable",
        "The message gateway was temporarily unavailable. Check the state of your message "
        f"{message_id} to determine if it was successfully sent",
    )


def internal_server_error() -> Problem:
    return Problem(500, "backend", "internal-server-error", "An internal server error occurred")


def service_unavailable() -> Problem:
    return Problem(
        503, "unavailable", "service-unavailable", "The service is temporarily unavailable"
    )


def media_invalid_url(url: str) -> Problem:
    return Problem(403, "forbidden", "media-invalid-url", f"The media URL {url} is invalid.")

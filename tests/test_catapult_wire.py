"""Table tests of the pure answer reading in ``bridge.catapult.wire`` (milliseconds, no I/O)."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta, timezone
from typing import Any

import orjson
import pytest
from yarl import URL

from bridge.catapult import wire
from bridge.catapult.errors import (
    AmbiguousError,
    ApiError,
    AuthError,
    BadRequestError,
    CatapultError,
    ConflictError,
    ForbiddenError,
    NotFoundError,
    RateLimitedError,
    RateLimitScope,
    ServerError,
)
from bridge.catapult.redaction import Redactor

SECRET = "s3cr3t-api-secret"
PASSWORD = "dashboard-pa55word"
REQUEST = wire.RequestContext(
    method="POST",
    path="/v1/users/u-1/messages",
    sender="+19195550100",
    redactor=Redactor((SECRET, PASSWORD)),
)


def body(category: str, code: str, message: str = "text", **details: str) -> bytes:
    return orjson.dumps(
        {
            "category": category,
            "code": code,
            "message": message,
            "details": [{"name": k, "value": v} for k, v in details.items()],
        }
    )


@pytest.mark.parametrize(
    ("status", "raw", "expected", "code"),
    [
        (400, body("bad-request", "missing-property"), BadRequestError, "missing-property"),
        (400, body("bad-request", "message-delay-limit"), BadRequestError, "message-delay-limit"),
        (401, body("authorization", "access-denied"), AuthError, "access-denied"),
        (401, body("authorization", "number-access-denied"), AuthError, "number-access-denied"),
        (401, body("authorization", "provider-access-denied"), AuthError, "provider-access-denied"),
        (403, body("limit", "multi-message-limit"), ForbiddenError, "multi-message-limit"),
        (403, body("credit", "insufficient-available-balance"), ForbiddenError, None),
        (403, body("forbidden", "application-access-denied"), ForbiddenError, None),
        (403, body("limit", "message-rate-limit"), RateLimitedError, "message-rate-limit"),
        (404, body("not-found", "message-not-found"), NotFoundError, "message-not-found"),
        (404, body("not-found", "number-not-found"), NotFoundError, "number-not-found"),
        (409, body("conflict", "duplicate-number"), ConflictError, "duplicate-number"),
        (429, body("too-many-requests", "rate-limit-reached"), RateLimitedError, None),
        (503, body("unavailable", "message-gateway-unavailable"), AmbiguousError, None),
        (503, body("unavailable", "gateway-unavailable"), AmbiguousError, None),
        (503, body("unavailable", "number-allocator-unavailable"), ServerError, None),
        (500, body("backend", "internal-error"), ServerError, "internal-error"),
        (502, b"<html><body>Bad Gateway</body></html>", ServerError, None),
        (500, b"", ServerError, None),
        (405, b"Method Not Allowed", BadRequestError, None),
        (413, b"too big", BadRequestError, None),
        (302, b"", ApiError, None),
    ],
)
def test_error_class_by_status_and_code(
    status: int, raw: bytes, expected: type[CatapultError], code: str | None
) -> None:
    error = wire.error_from_response(status, {}, raw, REQUEST)
    assert type(error) is expected
    assert error.status == status
    assert error.method == "POST"
    assert error.path == "/v1/users/u-1/messages"
    if code is not None:
        assert error.code == code
    assert str(status) in str(error)


@pytest.mark.parametrize(
    ("code", "details", "scope", "number"),
    [
        ("message-rate-limit", {}, RateLimitScope.ACCOUNT, None),
        ("message-rate-limit-overall", {}, RateLimitScope.ACCOUNT, None),
        (
            "message-rate-limit-per-tn",
            {"number": "+19195550199"},
            RateLimitScope.NUMBER,
            "+19195550199",
        ),
        (
            "message-rate-limit-per-tn",
            {"telephoneNumber": "+1919555"},
            RateLimitScope.NUMBER,
            "+1919555",
        ),
        ("message-rate-limit-per-tn", {}, RateLimitScope.NUMBER, "+19195550100"),
    ],
)
def test_message_rate_limits_have_a_scope(
    code: str, details: dict[str, str], scope: RateLimitScope, number: str | None
) -> None:
    error = wire.error_from_response(403, {}, body("limit", code, **details), REQUEST)
    assert isinstance(error, RateLimitedError)
    assert (error.scope, error.number, error.retry_at) == (scope, number, None)


@pytest.mark.parametrize(
    ("headers", "details", "retry_at"),
    [
        ({"X-RateLimit-Reset": "1479308598680"}, {}, 1479308598.68),
        ({"x-ratelimit-reset": " 1479308598000 "}, {}, 1479308598.0),
        ({}, {"rateLimitResetTime": "1479308599000"}, 1479308599.0),
        ({"X-RateLimit-Reset": "soon"}, {"rateLimitResetTime": "1479308599000"}, 1479308599.0),
        ({"X-RateLimit-Reset": "soon"}, {}, None),
        ({}, {}, None),
    ],
)
def test_429_turns_the_reset_header_into_epoch_seconds(
    headers: dict[str, str], details: dict[str, str], retry_at: float | None
) -> None:
    raw = body("too-many-requests", "rate-limit-reached", **details)
    error = wire.error_from_response(429, headers, raw, REQUEST)
    assert isinstance(error, RateLimitedError)
    assert error.scope is RateLimitScope.RESOURCE
    assert error.retry_at == (pytest.approx(retry_at) if retry_at is not None else None)


def test_catapult_body_is_kept() -> None:
    raw = body(
        "not-found", "message-not-found", "The message 'm-x' could not be found", messageId="m-x"
    )
    error = wire.error_from_response(404, {}, raw, REQUEST)
    assert error.category == "not-found"
    assert error.message == "The message 'm-x' could not be found"
    assert error.detail("messageId") == "m-x"
    assert error.as_dict() == {
        "status": 404,
        "category": "not-found",
        "code": "message-not-found",
        "message": "The message 'm-x' could not be found",
    }
    assert str(error) == (
        "404 message-not-found: The message 'm-x' could not be found (POST /v1/users/u-1/messages)"
    )


@pytest.mark.parametrize(
    ("raw", "fragment"),
    [
        (
            b"<html>\n  <h1>502 Bad Gateway</h1>\n</html>",
            "non-JSON body: <html> <h1>502 Bad Gateway",
        ),
        (b"", "empty body"),
        (b"   \n", "empty body"),
        (b'{"error": "boom"}', 'unexpected body: {"error": "boom"}'),
        (b"[1, 2]", "unexpected body: [1, 2]"),
        (b"null", "unexpected body: null"),
        (b"\xff\xfe not utf-8", "non-JSON body"),
    ],
)
def test_a_body_that_is_not_catapults_still_says_something(raw: bytes, fragment: str) -> None:
    error = wire.error_from_response(502, {}, raw, REQUEST)
    assert type(error) is ServerError
    assert fragment in error.message
    assert error.message.startswith("HTTP 502")


def test_long_non_json_body_is_cut() -> None:
    error = wire.error_from_response(500, {}, b"x" * 10_000, REQUEST)
    assert len(error.message) < 300
    assert error.message.endswith("…")


@pytest.mark.parametrize(
    ("status", "raw"),
    [
        (400, body("bad-request", "validation-error", f"bad secret {SECRET}", echo=PASSWORD)),
        (401, body("authorization", "provider-access-denied", f"password {PASSWORD} rejected")),
        (403, body("limit", "message-rate-limit-per-tn", SECRET, number=PASSWORD)),
        (429, body("too-many-requests", "rate-limit-reached", SECRET)),
        (500, f"<html>{SECRET} {PASSWORD}</html>".encode()),
        (503, body("unavailable", "message-gateway-unavailable", SECRET)),
        (404, orjson.dumps({"code": SECRET})),
    ],
)
def test_secrets_echoed_by_a_server_are_redacted(status: int, raw: bytes) -> None:
    error = wire.error_from_response(status, {}, raw, REQUEST)
    for rendered in (str(error), repr(error), str(error.as_dict()), repr(error.details)):
        assert SECRET not in rendered
        assert PASSWORD not in rendered
    assert wire.REDACTED in error.message + "".join(d.value for d in error.details)


@pytest.mark.parametrize(
    ("location", "collection", "expected"),
    [
        (
            "https://api.catapult.inetwork.com/v1/users/u-1/messages/m-lkb6bomtaz7z2rauff3h6by",
            "messages",
            "m-lkb6bomtaz7z2rauff3h6by",
        ),
        ("/v1/users/u-1/messages/m-abc", "messages", "m-abc"),
        ("v1/users/u-1/messages/m-abc", "messages", "m-abc"),
        ("/v1/users/u-1/messages/m-abc/", "messages", "m-abc"),
        ("/v1/users/u-1/messages/m-abc?x=1#f", "messages", "m-abc"),
        (
            "  /v1/users/u-1/phoneNumbers/n-id3x6rblp4jrkih2u7zxjdy ",
            "phoneNumbers",
            "n-id3x6rblp4jrkih2u7zxjdy",
        ),
        ("http://127.0.0.1:1/v1/users/u-1/applications/a-x%2Fy", "applications", "a-x/y"),
    ],
)
def test_id_from_location(location: str, collection: str, expected: str) -> None:
    assert wire.id_from_location(location, collection) == expected


@pytest.mark.parametrize(
    ("location", "collection"),
    [
        ("", "messages"),
        ("   ", "messages"),
        ("m-abc", "messages"),
        ("/v1/users/u-1/messages", "messages"),
        ("/v1/users/u-1/messages/", "messages"),
        ("/v1/users/u-1/phoneNumbers/n-1", "messages"),
    ],
)
def test_id_from_location_refuses_what_names_no_resource(location: str, collection: str) -> None:
    with pytest.raises(ValueError, match="Location"):
        wire.id_from_location(location, collection)


CATAPULT_PAGE = (
    "https://api.catapult.inetwork.com/v1/users/u-d/messages?sortKeyLT=1458576004287000989&size=1"
)


@pytest.mark.parametrize(
    ("header", "expected"),
    [
        (
            f'<{CATAPULT_PAGE}>; rel="next"',
            {"next": CATAPULT_PAGE},
        ),
        (
            '<https://x/a?page=0&size=2>; rel="first", <https://x/a?page=1&size=2>; rel="next",'
            ' <https://x/a?page=9&size=2>; rel="last"',
            {
                "first": "https://x/a?page=0&size=2",
                "next": "https://x/a?page=1&size=2",
                "last": "https://x/a?page=9&size=2",
            },
        ),
        ("</a?p=1>;rel=next", {"next": "/a?p=1"}),
        ('</a?p=1>; title="x, y"; REL="Next"', {"next": "/a?p=1"}),
        ('</a?p=9>; rel="next last"', {"next": "/a?p=9", "last": "/a?p=9"}),
        ('</a?p=1>; rel="previous"', {"previous": "/a?p=1"}),
        ('</a?p=1>; type="json"', {}),
        ("", {}),
        (None, {}),
        ("garbage", {}),
    ],
)
def test_parse_link_header(header: str | None, expected: dict[str, str]) -> None:
    assert wire.parse_link_header(header) == expected


BASE = URL("http://127.0.0.1:8090/v1")
CURRENT = URL("http://127.0.0.1:8090/v1/users/u-1/messages?from=%2B1919&size=2")


@pytest.mark.parametrize(
    ("header", "expected"),
    [
        (
            "<https://api.catapult.inetwork.com/v1/users/u-1/messages?sortKeyLT=12&size=2&from=%2B1919>;"
            ' rel="next"',
            "http://127.0.0.1:8090/v1/users/u-1/messages?sortKeyLT=12&size=2&from=%2B1919",
        ),
        (
            '</v1/users/u-1/messages?sortKeyLT=1&fromDateTime=2020-01-01%2010:00:00>; rel="next"',
            "http://127.0.0.1:8090/v1/users/u-1/messages?sortKeyLT=1&fromDateTime=2020-01-01%2010:00:00",
        ),
        ('<messages?page=2>; rel="next"', "http://127.0.0.1:8090/v1/users/u-1/messages?page=2"),
        ('<https://x/v1/a?page=9>; rel="last"', None),
        (None, None),
    ],
)
def test_next_page_stays_on_the_clients_origin(header: str | None, expected: str | None) -> None:
    url = wire.next_page_url(header, current=CURRENT, base=BASE)
    assert (str(url) if url is not None else None) == expected


def test_next_page_keeps_encoded_query_values() -> None:
    header = '</v1/users/u-1/messages?from=%2B19195550100&sortKeyLT=5>; rel="next"'
    url = wire.next_page_url(header, current=CURRENT, base=BASE)
    assert url is not None
    assert url.query["from"] == "+19195550100"


ACCEPTED = {"result": "accepted", "location": "https://h/v1/users/u-1/messages/m-one"}


def item_error(category: str, code: str, **details: str) -> dict[str, Any]:
    return {"result": "error", "error": orjson.loads(body(category, code, "why", **details))}


def test_batch_items_in_request_order() -> None:
    # AP-DOCS' own example, plus a per-number rate limit that names no number.
    data = [
        ACCEPTED,
        {"result": "accepted", "location": "/v1/users/u-1/messages/m-two"},
        item_error("bad-request", "blank-property"),
        item_error("limit", "message-rate-limit-per-tn"),
    ]
    senders = ["+1", "+2", "+3", "+4"]
    items = wire.batch_items(data, REQUEST, senders)
    assert [i.ref.id if i.ref else None for i in items] == ["m-one", "m-two", None, None]
    assert items[0].ref is not None
    assert items[0].ref.location == ACCEPTED["location"]
    assert items[0].is_accepted
    assert not items[2].is_accepted
    assert isinstance(items[2].error, BadRequestError)
    assert items[2].error.status == 400
    assert items[2].error.code == "blank-property"
    limited = items[3].error
    assert isinstance(limited, RateLimitedError)
    assert (limited.scope, limited.number, limited.status) == (RateLimitScope.NUMBER, "+4", 403)


@pytest.mark.parametrize(
    ("entry", "expected"),
    [
        (item_error("limit", "message-rate-limit"), RateLimitedError),
        (item_error("authorization", "number-access-denied"), AuthError),
        (item_error("limit", "multi-message-limit"), ForbiddenError),
        (item_error("unavailable", "message-gateway-unavailable"), AmbiguousError),
        (item_error("unavailable", "internal-error"), ServerError),
        (item_error("too-many-requests", "rate-limit-reached"), RateLimitedError),
        (item_error("something-new", "new-code"), ApiError),
        ({"result": "error"}, AmbiguousError),
        ({"result": "accepted"}, AmbiguousError),
        ({"result": "accepted", "location": "/v1/users/u-1/phoneNumbers/n-1"}, AmbiguousError),
        ({"result": "queued"}, AmbiguousError),
        ("accepted", AmbiguousError),
    ],
)
def test_batch_item_errors(entry: Any, expected: type[CatapultError]) -> None:
    (item,) = wire.batch_items([entry], REQUEST, ["+1"])
    assert item.ref is None
    assert type(item.error) is expected


@pytest.mark.parametrize("data", [[], [ACCEPTED] * 3, {"result": "accepted"}, None, "x"])
def test_batch_answer_of_the_wrong_shape_is_refused(data: Any) -> None:
    with pytest.raises(ValueError, match="expected a list of 2 results"):
        wire.batch_items(data, REQUEST, ["+1", "+2"])


@pytest.mark.parametrize(("method", "expected"), [("POST", AmbiguousError), ("GET", ServerError)])
def test_unreadable_2xx(method: str, expected: type[CatapultError]) -> None:
    request = wire.RequestContext(method, "/v1/users/u-1/messages", redactor=Redactor((SECRET,)))
    error = wire.unreadable_response(201, "no Location", f"oops {SECRET}".encode(), request)
    assert type(error) is expected
    assert error.status == 201
    assert "no Location" in str(error)
    assert SECRET not in str(error) + repr(error)


def test_batch_too_large_is_a_forbidden_multi_message_limit() -> None:
    error = wire.batch_too_large(51, REQUEST)
    assert isinstance(error, ForbiddenError)
    assert (error.status, error.code) == (None, "multi-message-limit")
    assert "at most 50" in str(error)
    assert "51" in str(error)


@pytest.mark.parametrize(
    ("value", "expected"),
    [
        (datetime(2024, 3, 5, 7, 8, 9, 123456, tzinfo=UTC), "2024-03-05 07:08:09.123"),
        (
            datetime(2024, 3, 5, 9, 8, 9, tzinfo=timezone(timedelta(hours=2))),
            "2024-03-05 07:08:09.000",
        ),
        (datetime(2024, 3, 5, 7, 8, 9), "2024-03-05 07:08:09.000"),
        ("2024-03-05 07:08", "2024-03-05 07:08"),
    ],
)
def test_format_date_time(value: datetime | str, expected: str) -> None:
    assert wire.format_date_time(value) == expected

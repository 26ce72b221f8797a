"""The simulator's pure parts as tables: validation, limits, paging, event walks, store bounds."""

from __future__ import annotations

from typing import Any

import pytest

from bridge.simulator.errors import Problem
from bridge.simulator.events import (
    Outcome,
    outbound_steps,
    query_params,
)
from bridge.simulator.paging import page_of, parse_date_time_ms
from bridge.simulator.payloads import parse_message, segment_count
from bridge.simulator.ratelimit import (
    Limits,
    MessageRateLimiter,
    ResourceRateLimiter,
    resource_family,
)
from bridge.simulator.store import MessageQuery, MessageRecord, SimulatorState, new_id


class Clock:
    def __init__(self) -> None:
        self.now = 0.0

    def __call__(self) -> float:
        return self.now


def test_ids_have_the_platforms_shape() -> None:
    ids = {new_id("m") for _ in range(200)}
    assert len(ids) == 200
    for value in ids:
        prefix, rest = value.split("-")
        assert prefix == "m"
        assert len(rest) == 23
        assert set(rest) <= set("abcdefghijklmnopqrstuvwxyz234567")


@pytest.mark.parametrize(
    ("raw", "code"),
    [
        ({"from": "+1", "to": "+19195551234", "text": "x"}, None),
        ({"from": "+1", "to": "12345", "text": "x"}, None),  # short code
        ({"from": "+1", "to": "919555", "text": "x"}, None),
        ({"from": "+1", "to": "+442071838750", "text": "x"}, None),
        ({"from": "+1", "to": "5555", "text": "x"}, "validation-error"),
        ({"from": "+1", "to": "1234567", "text": "x"}, "validation-error"),
        ({"from": "+1", "to": "+1919555123", "text": "x"}, "validation-error"),
        ({"from": "+1", "to": "+191955512345", "text": "x"}, "validation-error"),
        ({"from": "+1", "to": "+1555", "text": "x"}, "validation-error"),
        ({"from": "+1", "to": "+0123", "text": "x"}, "validation-error"),
        ({"from": "", "to": "+19195551234", "text": "x"}, "blank-property"),
        ({"to": "+19195551234", "text": "x"}, "missing-property"),
        ({"from": "+1", "to": "+19195551234", "text": " "}, "blank-property"),
        (
            {"from": "+1", "to": "+19195551234", "text": "x", "callbackTimeout": True},
            "validation-error",
        ),
        (
            {"from": "+1", "to": "+19195551234", "text": "x", "callbackTimeout": 0},
            "validation-error",
        ),
        (
            {"from": "+1", "to": "+19195551234", "text": "x", "callbackHttpMethod": "put"},
            "validation-error",
        ),
        ({"from": "+1", "to": "+19195551234", "text": "x", "tag": 5}, "validation-error"),
        ({"from": "+1", "to": "+19195551234", "media": [1]}, "validation-error"),
        ({"from": "+1", "to": "+19195551234", "media": []}, "missing-property"),
        ({"from": "+1", "to": "+19195551234", "text": "x", "unknown": {"a": 1}}, None),
        ([], "validation-error"),
        ("x", "validation-error"),
    ],
)
def test_parse_message(raw: Any, code: str | None) -> None:
    if code is None:
        parse_message(raw)
        return
    with pytest.raises(Problem) as caught:
        parse_message(raw)
    assert caught.value.code == code
    assert caught.value.status == 400


def test_parse_message_normalises() -> None:
    request = parse_message(
        {
            "from": "+19195550100",
            "to": "+19195551234",
            "text": "x",
            "callbackHttpMethod": "get",
            "callbackTimeout": " 2500 ",
            "media": "https://example.com/a.png",
        }
    )
    assert request.callback_http_method == "GET"
    assert request.callback_timeout == 2500
    assert request.media == ("https://example.com/a.png",)
    assert request.receipt_requested == "none"


@pytest.mark.parametrize(
    ("text", "is_mms", "segments"),
    [("", False, 1), ("a" * 160, False, 1), ("a" * 161, False, 2), ("a" * 307, False, 3),
     ("é" * 70, False, 1), ("é" * 71, False, 2), ("a" * 2000, True, 1)],
)  # fmt: skip
def test_segment_count(text: str, is_mms: bool, segments: int) -> None:
    assert segment_count(text, is_mms=is_mms) == segments


def test_message_window_counts_only_accepted_sends() -> None:
    clock = Clock()
    limiter = MessageRateLimiter(clock)
    limits = Limits(account_messages_per_s=0.3, number_messages_per_s=0)
    assert [limiter.admit(limits, "+1") is None for _ in range(4)] == [True] * 3 + [False]
    clock.now = 9.99
    refused = limiter.admit(limits, "+1")
    assert refused is not None
    assert refused.status == 403
    assert refused.message is not None
    assert refused.message.endswith("Your rate is: 0.4")
    clock.now = 10.0
    assert limiter.admit(limits, "+1") is None


def test_message_limits_off_record_nothing() -> None:
    limiter = MessageRateLimiter(Clock())
    for _ in range(10_000):
        assert limiter.admit(Limits.off(), "+1") is None


def test_per_number_refusal_does_not_count_against_the_account() -> None:
    limiter = MessageRateLimiter(Clock())
    limits = Limits(account_messages_per_s=0.2, number_messages_per_s=0.1)
    assert limiter.admit(limits, "+1") is None
    refused = limiter.admit(limits, "+1")
    assert refused is not None
    assert refused.code == "message-rate-limit-per-tn"
    assert limiter.admit(limits, "+2") is None  # the account has room for exactly one more
    refused = limiter.admit(limits, "+3")
    assert refused is not None
    assert refused.code == "message-rate-limit"


def test_token_bucket_reset_time() -> None:
    clock = Clock()
    limiter = ResourceRateLimiter(clock, wall_clock=lambda: 1_000.0)
    limits = Limits(resource_requests_per_s=2.0, resource_burst=2)
    assert limiter.admit(limits, "messages") is None
    assert limiter.admit(limits, "messages") is None
    refused = limiter.admit(limits, "messages")
    assert refused is not None
    assert refused.headers == {"X-RateLimit-Reset": "1000500"}
    clock.now = 0.5
    assert limiter.admit(limits, "messages") is None


def test_a_vanishing_rate_still_gives_a_finite_reset_time() -> None:
    limiter = ResourceRateLimiter(Clock(), wall_clock=lambda: 1_000.0)
    limits = Limits(resource_requests_per_s=1e-320)
    assert limiter.admit(limits, "account") is None
    refused = limiter.admit(limits, "account")
    assert refused is not None
    assert refused.headers == {"X-RateLimit-Reset": str((1_000 + 86_400) * 1000)}


@pytest.mark.parametrize(
    ("method", "resource", "family"),
    [
        ("POST", "messages", None),
        ("GET", "messages", "messages"),
        ("POST", "phoneNumbers", "number-orders"),
        ("GET", "phoneNumbers", "number-reads"),
        ("DELETE", "phoneNumbers", "phoneNumbers"),
        ("POST", "applications", "applications"),
    ],
)
def test_resource_families(method: str, resource: str, family: str | None) -> None:
    assert resource_family(method, resource) == family


@pytest.mark.parametrize(
    ("raw", "expected_ms"),
    [
        ("2024-05-25", 1716595200000),
        ("2024-05-25 12:00", 1716638400000),
        ("2024-05-25 12:00:00", 1716638400000),
        ("2024-05-25 12:00:00.250", 1716638400250),
        ("2024-05-25T12:00:00.250Z", 1716638400250),
    ],
)
def test_date_time_parameters(raw: str, expected_ms: int) -> None:
    assert parse_date_time_ms({"fromDateTime": raw}, "fromDateTime") == expected_ms


def test_page_links() -> None:
    items = list(range(5))
    page, link = page_of(items, "http://h/x", {"size": "2", "page": "1", "name": "n"})
    assert page == [2, 3]
    assert '<http://h/x?name=n&page=0&size=2>; rel="first"' in link
    assert 'page=0&size=2>; rel="previous"' in link
    assert 'page=2&size=2>; rel="next"' in link
    assert 'page=2&size=2>; rel="last"' in link


def _record(state: SimulatorState, sender: str) -> MessageRecord:
    record = MessageRecord(
        id=new_id("m"),
        sort_key=state.next_sort_key(),
        direction="out",
        from_=sender,
        to="+2",
        text="",
    )
    state.add_message(record)
    return record


def test_store_evicts_oldest_messages_and_keeps_indexes_consistent() -> None:
    state = SimulatorState(max_messages=5)
    records = [_record(state, "+1" if i % 2 else "+3") for i in range(8)]
    assert list(state.messages) == [r.id for r in records[3:]]
    assert [r.id for r in state.messages_of("+1")] == [records[i].id for i in (3, 5, 7)]
    page = state.query_messages(MessageQuery(from_="+3", size=10))
    assert [r.id for r in page] == [records[6].id, records[4].id]


def test_query_cursor_and_time_bounds() -> None:
    state = SimulatorState()
    records = [_record(state, "+1") for _ in range(6)]
    page = state.query_messages(MessageQuery(sort_key_lt=records[3].sort_key, size=2))
    assert page == [records[2], records[1]]
    page = state.query_messages(
        MessageQuery(sort_key_gt=records[3].sort_key, descending=False, size=10)
    )
    assert page == records[4:]


@pytest.mark.parametrize(
    ("receipt", "outcome", "media", "states"),
    [
        ("all", Outcome(), (), ["sending", "sent", "sent:delivered"]),
        ("all", Outcome("error", 610), (), ["sending", "error", "error:not-delivered"]),
        ("error", Outcome(), (), ["sending", "sent"]),
        ("none", Outcome("not-delivered", 720), (), ["sending", "sent"]),
        ("none", Outcome(), ("https://x/y.png",), ["sending", "sent"]),
    ],
)
def test_outbound_steps(
    receipt: str, outcome: Outcome, media: tuple[str, ...], states: list[str]
) -> None:
    record = MessageRecord(
        id="m-x", sort_key=1, direction="out", from_="+1", to="+2", text="",
        media=media, receipt_requested=receipt,
    )  # fmt: skip
    steps = outbound_steps(record, outcome)
    assert [s.state + (f":{s.delivery_state}" if s.delivery_state else "") for s in steps] == states


def test_query_params_repeat_lists_and_stringify() -> None:
    params = query_params({"a": ["x", "y"], "n": 1, "b": True, "none": None, "s": "+1"})
    assert params == [("a", "x"), ("a", "y"), ("n", "1"), ("b", "true"), ("s", "+1")]


@pytest.mark.parametrize(("value", "expected"), [(2000, 2000), (2000.0, 2000), ("2000", 2000)])
def test_callback_timeout_forms(value: Any, expected: int) -> None:
    request = parse_message(
        {"from": "+1", "to": "+19195551234", "text": "x", "callbackTimeout": value}
    )
    assert request.callback_timeout == expected

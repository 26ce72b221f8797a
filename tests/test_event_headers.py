"""The ``x-bridge-*`` header codec: what a copy carries reads back the same, and nothing more.

Pure code: no broker, no clock (every time is passed in).
"""

from __future__ import annotations

import math
from datetime import UTC, datetime
from typing import Any

import pytest

from bridge.events import headers as h
from bridge.events.commands import IdSource
from bridge.events.results import ResultError

NOW_S = 1_700_000_000.0
ERROR = ResultError(category="server", code="gateway", message="gateway down", status=503)


def test_a_round_written_on_a_copy_reads_back_the_same() -> None:
    state = h.Round(
        attempts=3,
        lookup=True,
        sent_at_epoch_s=NOW_S - 5.25,
        queued_at_epoch_s=NOW_S - 60.0,
        expires_at_epoch_s=NOW_S + 3600.0,
        id_source=IdSource.DERIVED,
        last_error=ERROR,
    )
    written = h.copy_headers({"app": "kept"}, state, due_in_s=2.5, now_epoch_s=NOW_S)
    assert written["app"] == "kept"
    assert h.read_round(written) == h.Round(
        attempts=3,
        lookup=True,
        sent_at_epoch_s=NOW_S - 5.25,
        due_at_epoch_s=NOW_S + 2.5,
        queued_at_epoch_s=NOW_S - 60.0,
        expires_at_epoch_s=NOW_S + 3600.0,
        id_source=IdSource.DERIVED,
        last_error=ERROR,
    )


def test_times_are_whole_milliseconds_on_the_wire() -> None:
    written = h.copy_headers({}, h.Round(sent_at_epoch_s=NOW_S + 0.0004), now_epoch_s=NOW_S)
    assert written[h.SENT_AT_MS] == 1_700_000_000_000
    assert isinstance(written[h.SENT_AT_MS], int)


def test_a_copy_drops_the_broker_and_the_worker_headers_of_the_last_round() -> None:
    incoming: dict[str, Any] = {
        "app": 1,
        h.REPLAYS: 2,
        h.DUE_AT_MS: 1,
        h.LOOKUP: 1,
        "x-death": [],
        h.DELIVERY_COUNT: 4,
        "x-first-death-reason": "rejected",
    }
    written = h.copy_headers(incoming, h.Round(attempts=1), now_epoch_s=NOW_S)
    assert written == {"app": 1, h.REPLAYS: 2, h.ATTEMPTS: 1}


def test_this_rounds_error_is_written_over_the_last_one_field_by_field() -> None:
    # A field the new error lacks (here the status) keeps the last error's value, as it always
    # has: the copy's last error is read back from these headers.
    new = ResultError(category="transport", code="reset", message="connection reset")
    written = h.copy_headers({}, h.Round(last_error=ERROR), error=new, now_epoch_s=NOW_S)
    assert h.read_round(written).last_error == ResultError(
        category="transport", code="reset", message="connection reset", status=503
    )


@pytest.mark.parametrize(
    ("value", "expected"),
    [
        (2, 2),
        (2.9, 2),
        (b"3", 3),
        ("4", 4),
        (-1, 0),
        (True, 0),
        ("nan", 0),
        (math.inf, 0),
        ("many", 0),
        (None, 0),
        ([1], 0),
    ],
)
def test_attempts_read_from_anything_a_header_may_hold(value: Any, expected: int) -> None:
    assert h.read_round({h.ATTEMPTS: value}).attempts == expected


@pytest.mark.parametrize(
    ("headers", "expected"),
    [
        ({}, None),
        ({h.ID_SOURCE: "derived"}, IdSource.DERIVED),
        ({h.ID_SOURCE: b"message-id"}, IdSource.MESSAGE_ID),
        ({h.ID_SOURCE: "nonsense"}, None),
    ],
)
def test_the_id_source_is_one_the_bridge_knows_or_none(
    headers: dict[str, Any], expected: IdSource | None
) -> None:
    assert h.read_round(headers).id_source is expected


def test_no_last_error_without_its_message() -> None:
    assert h.read_round({h.ERROR_CODE: "x", h.ERROR_STATUS: 500}).last_error is None


@pytest.mark.parametrize(
    ("header_ms", "timestamp_s", "expiration_s", "max_age_s", "expected"),
    [
        (None, None, None, None, None),
        (None, None, None, 60.0, NOW_S + 60.0),  # counted from now: the first intake
        (None, NOW_S - 10, None, 60.0, NOW_S + 50.0),  # counted from the AMQP timestamp
        (None, NOW_S - 10, 5.0, 60.0, NOW_S - 5.0),  # the AMQP expiration comes first
        ((NOW_S + 1) * 1000, NOW_S - 10, 5.0, 60.0, NOW_S - 5.0),
        ((NOW_S - 100) * 1000, None, None, 60.0, NOW_S - 100.0),  # the header comes first
    ],
)
def test_a_command_expires_at_the_first_of_its_limits(
    header_ms: float | None,
    timestamp_s: float | None,
    expiration_s: float | None,
    max_age_s: float | None,
    expected: float | None,
) -> None:
    headers = {} if header_ms is None else {h.EXPIRES_AT_MS: int(header_ms)}
    timestamp = None if timestamp_s is None else datetime.fromtimestamp(timestamp_s, UTC)
    found = h.expires_at(
        headers,
        timestamp=timestamp,
        expiration=expiration_s,
        now_epoch_s=NOW_S,
        max_age_s=max_age_s,
    )
    assert found == (None if expected is None else pytest.approx(expected))


@pytest.mark.parametrize(
    ("headers", "timestamp_s", "needs_lookup", "expected"),
    [
        ({h.QUEUED_AT_MS: int((NOW_S - 30) * 1000)}, NOW_S - 99, True, NOW_S - 30),
        ({h.QUEUED_AT_MS: int((NOW_S + 30) * 1000)}, None, False, NOW_S),  # never after now
        ({}, NOW_S - 99, True, NOW_S - 99),
        ({}, None, False, NOW_S),  # never delivered before: not sent before now
        ({}, None, True, NOW_S - 600),  # delivered again with nothing known: the window back
    ],
)
def test_where_a_look_up_starts(
    headers: dict[str, Any], timestamp_s: float | None, needs_lookup: bool, expected: float
) -> None:
    timestamp = None if timestamp_s is None else datetime.fromtimestamp(timestamp_s, UTC)
    found = h.queued_at(
        headers,
        timestamp=timestamp,
        needs_lookup=needs_lookup,
        now_epoch_s=NOW_S,
        window_s=600.0,
    )
    assert found == pytest.approx(expected)


@pytest.mark.parametrize(
    ("headers", "expected"),
    [
        ({}, False),
        ({h.DELIVERY_COUNT: 0}, False),
        ({h.DELIVERY_COUNT: 1}, True),
        ({h.DELIVERY_COUNT: b"2"}, True),
    ],
)
def test_a_quorum_queue_says_it_delivered_before(headers: dict[str, Any], expected: bool) -> None:
    assert h.was_delivered_before(headers) is expected


@pytest.mark.parametrize(
    ("headers", "expected"),
    [
        ({}, "unknown"),
        ({"x-first-death-reason": b"expired"}, "expired"),
        ({"x-first-death-reason": "expired", "x-death": [{"reason": "delivery_limit"}]},
         "delivery_limit"),
    ],
)  # fmt: skip
def test_why_the_broker_dead_lettered_it(headers: dict[str, Any], expected: str) -> None:
    assert h.death_reason(headers) == expected


def test_a_dead_letter_says_why_and_reads_back_for_the_command_line() -> None:
    written = h.dead_letter_headers(
        {"app": "kept", h.ATTEMPTS: 9, "x-death": []},
        reason="rejected",
        detail="the number is not valid",
        queue="outbound.sms",
        command_id="c-1",
        attempts=2,
        id_source=IdSource.MESSAGE_ID,
        error=ERROR,
    )
    assert written["app"] == "kept"
    assert "x-death" not in written
    assert written[h.DETAIL] == "the number is not valid"
    assert written[h.ID_SOURCE] == "message-id"
    assert written[h.ERROR_STATUS] == 503
    assert h.read_dead_letter(written) == h.DeadLetterHeaders(
        command_id="c-1",
        reason="rejected",
        error_code="gateway",
        error_message="gateway down",
        attempts=2,
        replays=0,
        queue="outbound.sms",
    )


def test_a_dead_letter_without_an_id_source_or_detail_has_neither_header() -> None:
    written = h.dead_letter_headers(
        {}, reason="expired", queue="q", command_id="c", attempts=0, error=None
    )
    assert written == {h.REASON: "expired", h.ATTEMPTS: 0, h.QUEUE: "q", h.COMMAND_ID: "c"}


@pytest.mark.parametrize("lookup", [False, True])
def test_a_replayed_copy_starts_its_rounds_again_and_counts_the_replay(lookup: bool) -> None:
    letter: dict[str, Any] = {
        "app": "kept",
        h.REASON: "retries-exhausted",
        h.ATTEMPTS: 5,
        h.ID_SOURCE: "derived",
        h.REPLAYS: b"1",
        "x-death": [],
    }
    replayed = h.replay_headers(letter, lookup=lookup)
    expected: dict[str, Any] = {"app": "kept", h.ID_SOURCE: "derived", h.REPLAYS: 2}
    if lookup:
        expected[h.LOOKUP] = 1
    assert replayed == expected
    assert h.read_round(replayed).lookup is lookup


def test_the_router_marks_a_copy_for_a_look_up() -> None:
    headers: dict[str, Any] = {"app": 1}
    h.mark_lookup(headers)
    assert h.read_round(headers).lookup


@pytest.mark.parametrize(
    ("value", "expected"), [(None, None), (b"abc", "abc"), ("abc", "abc"), (7, "7")]
)
def test_a_header_shown_as_text(value: Any, expected: str | None) -> None:
    assert h.header_text({} if value is None else {h.REASON: value}, h.REASON) == expected


def test_only_the_bridges_own_headers_are_shown_as_its_own() -> None:
    shown = h.own_headers({"app": 1, h.REASON: b"expired", h.ATTEMPTS: 2})
    assert shown == {h.REASON: "expired", h.ATTEMPTS: 2}


def test_a_probe_is_told_by_its_header() -> None:
    assert h.is_probe({h.PROBE: True})
    assert not h.is_probe({})

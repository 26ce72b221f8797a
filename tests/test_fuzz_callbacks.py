"""Property-based tests of the callback parser (``bridge.events.callbacks``), no I/O.

Generated callbacks (``tests/strategies.py``): mostly well-formed, with any field missing, of the
wrong type, junk text, lone surrogates, huge numbers or nested up to past what the JSON libraries
take, plus unknown fields. Properties:

- the parser either accepts or raises ``InvalidCallback`` naming each bad field, and the 400
  answer naming them can be written; nothing else ever escapes;
- an accepted callback becomes an event that can be published (its AMQP properties marshal, its
  body is JSON) and read back: the stored raw callback parses to the same callback and event id,
  and normalising twice changes nothing.

Inputs tried per run (derandomized, so every run tries the same ones; ``BRIDGE_FUZZ_SCALE=20``
explores twenty times more with fresh seeds): JSON objects 1,500, query/form pairs 1,000,
arbitrary JSON values 500.
"""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any

import orjson
from hypothesis import example, given
from hypothesis import strategies as st
from pamqp.header import ContentHeader

from bridge.events.callbacks import (
    FieldProblem,
    InvalidCallback,
    MessageCallback,
    fields_from_pairs,
    parse_callback,
)
from bridge.events.receiver_events import build_event, event_id
from bridge.receiver.errors import BadCallback
from bridge.receiver.problems import problem_body
from tests.fuzzing import fuzz_settings
from tests.strategies import callback_fields, callback_pairs, json_values, nested

RECEIVED_AT = datetime(2026, 1, 2, 3, 4, 5, tzinfo=UTC)


def accepted_or_named(fields: Any) -> MessageCallback | None:
    """The callback, or None after checking the refusal names every fault and can be answered."""
    try:
        return parse_callback(fields)
    except InvalidCallback as exc:
        problems = exc.problems
    assert problems, "a refusal names at least one field"
    for problem in problems:
        assert isinstance(problem.field, str)
        # Named by its key: empty only for a key that is the empty string.
        assert problem.field or (isinstance(fields, dict) and "" in fields)
        assert isinstance(problem.problem, str)
        assert problem.problem
    # What the receiver answers: a problem document, JSON all the way down.
    body = orjson.dumps(problem_body(BadCallback(problems)))
    assert orjson.loads(body)["errors"]
    return None


def assert_round_trips(callback: MessageCallback, fields: dict[str, Any]) -> None:
    event = build_event(callback, fields, source="fuzz", received_at=RECEIVED_AT)
    envelope = event.to_envelope()
    # What the publisher hands to the broker: the properties must marshal (short strings fit,
    # the timestamp is an unsigned count of seconds, every header value has an AMQP type).
    ContentHeader(0, len(envelope.body), envelope.to_properties()).marshal()
    document = orjson.loads(envelope.body)
    assert document["id"] == event.id == event_id(callback)
    assert document["subject"] == callback.message_id
    data = document["data"]
    assert data["raw"] == fields
    assert data["messageId"] == callback.message_id
    again = parse_callback(data["raw"])
    assert again == callback
    assert event_id(again) == event.id
    # Normalised values are fixed points: parsing what the model holds changes nothing.
    assert parse_callback(callback.model_dump(mode="json", by_alias=True)) == callback


VALID: dict[str, Any] = {
    "eventType": "sms",
    "direction": "in",
    "state": "received",
    "messageId": "m-fuzzparser2345abcdefghij",
    "from": "+13233326955",
    "to": "+13865245000",
}


@fuzz_settings(max_examples=1500)
# Always tried, besides the drawn ones: an unknown field nested deeper than orjson writes.
@example(fields={**VALID, "extra": nested(300, "list")})
@example(fields={**VALID, "extra": nested(300, "dict")})
@given(fields=callback_fields())
def test_json_callbacks_are_accepted_and_round_trip_or_refused_naming_the_field(
    fields: dict[str, Any],
) -> None:
    callback = accepted_or_named(fields)
    if callback is not None:
        assert_round_trips(callback, fields)


@fuzz_settings(max_examples=1000)
# Always tried: a lone surrogate (what a lenient decoder of a form body can hand over).
@example(pairs=[*((k, str(v)) for k, v in VALID.items()), ("text", "a\udc80b")])
@given(pairs=callback_pairs())
def test_query_and_form_pairs_are_accepted_and_round_trip_or_refused(
    pairs: list[tuple[str, str]],
) -> None:
    problems: tuple[FieldProblem, ...] = ()
    try:
        fields = fields_from_pairs(pairs)
    except InvalidCallback as exc:
        problems = exc.problems
    if problems:  # a single-valued field given twice: named, with how often
        assert all("given" in p.problem for p in problems)
        return
    callback = accepted_or_named(fields)
    if callback is not None:
        assert_round_trips(callback, fields)


@fuzz_settings(max_examples=500)
@given(value=json_values | st.lists(json_values) | st.binary().map(list))
def test_any_json_value_is_refused_cleanly_unless_it_is_a_callback(value: Any) -> None:
    callback = accepted_or_named(value)
    assert callback is None or isinstance(value, dict)

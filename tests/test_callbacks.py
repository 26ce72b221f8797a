"""Parsing, normalising and classifying Catapult v1 message callbacks: pure tables, no I/O.

The verbatim examples are the reference's Appendix B (AP-DOCS apiCallbacks/sms.md, mms.md,
get-sms.md).
"""

from __future__ import annotations

from datetime import UTC, datetime, timedelta, timezone
from typing import Any
from urllib.parse import parse_qsl

import orjson
import pytest
from pydantic import BaseModel

from bridge.broker.topology import INBOUND_MMS, INBOUND_SMS
from bridge.events.callbacks import (
    InvalidCallback,
    MessageCallback,
    fields_from_pairs,
    normalise_number,
    parse_callback,
)
from bridge.events.cloudevents import CloudEvent, EventType
from bridge.events.receiver_events import (
    EVENT_MODELS,
    SCHEMA_MODELS,
    _parse_tag,
    build_event,
    classify,
    event_id,
)
from bridge.events.tag import encode_tag

RECEIVED_AT = datetime(2026, 1, 2, 3, 4, 5, tzinfo=UTC)

B1_INBOUND_SMS: dict[str, Any] = {
    "eventType": "sms",
    "direction": "in",
    "messageId": "m-lkb6bomtaz7z2rauff3h6by",
    "messageUri": "https://api.catapult.inetwork.com/v1/users/u-1/messages/m-lkb6bomtaz7z2rauff3h6by",
    "from": "+13233326955",
    "to": "+13865245000",
    "text": "Example",
    "applicationId": "a-rj7jf3fz7teaqupveqpug3i",
    "time": "2012-11-14T16:13:06.076Z",
    "state": "received",
    "segmentCount": 1,
}
B2_OUTBOUND_SENT: dict[str, Any] = {
    "eventType": "sms",
    "direction": "out",
    "messageId": "m-ckobmmd4fgqumyhssgd6lqy",
    "messageUri": "https://api.catapult.inetwork.com/v1/users/u-1/messages/m-ckobmmd4fgqumyhssgd6lqy",
    "from": "+13233326955",
    "to": "+13865245000",
    "text": "Example",
    "time": "2012-11-14T16:13:06.076Z",
    "state": "sent",
    "segmentCount": 1,
}
B3_INBOUND_MMS: dict[str, Any] = {
    "eventType": "mms",
    "to": "+12534483100",
    "from": "+15035555555",
    "time": "2015-08-04T21:50:12Z",
    "text": "Hello MMS!",
    "direction": "in",
    "applicationId": "a-rj7jf3fz7teaqupveqpug3i",
    "state": "received",
    "messageId": "m-dr4mcch2wfb6frcls677glq",
    "media": [
        "https://api.catapult.inetwork.com/v1/users/u-1/media/A3087419-m-dr4mcch2wfb6frcls677glq.jpg",
        "https://api.catapult.inetwork.com/v1/users/u-1/media/123_1-m-dr4mcch2wfb6frcls677glq.smil",
    ],
    "messageUri": "https://api.catapult.inetwork.com/v1/users/u-1/messages/m-dr4mcch2wfb6frcls677glq",
    "segmentCount": 1,
}
B4_GET_QUERY = (
    "messageId=m-asdf&from=%2B19191231111&eventType=sms&text=test&time=2016-12-01T16:04:49Z"
    "&to=%2B13204601164&state=received&applicationId=a-yr3jpxasdfh5xh5e35saoi&direction=in"
    "&segmentCount=1&messageUri=https%3A%2F%2Fapi.catapult.inetwork.com%2Fv1%2Fusers%2Fu-123"
    "%2Fmessages%2Fm-asdf"
)
MEDIA_A = "https://api.catapult.inetwork.com/v1/users/u-1/media/giphy-m-asdf.gif"
MEDIA_B = "https://api.catapult.inetwork.com/v1/users/u-1/media/123_1-m-asdf.smil"


def query(text: str) -> dict[str, Any]:
    return fields_from_pairs(parse_qsl(text, keep_blank_values=True))


def with_(base: dict[str, Any], **changes: Any) -> dict[str, Any]:
    fields = dict(base)
    for name, value in changes.items():
        key = name.rstrip("_")
        if value is ...:
            fields.pop(key, None)
        else:
            fields[key] = value
    return fields


def test_verbatim_examples_parse() -> None:
    sms = parse_callback(B1_INBOUND_SMS)
    assert (sms.event_type, sms.direction, sms.state, sms.segment_count) == (
        "sms",
        "in",
        "received",
        1,
    )
    assert sms.time == datetime(2012, 11, 14, 16, 13, 6, 76000, tzinfo=UTC)
    mms = parse_callback(B3_INBOUND_MMS)
    assert mms.media == tuple(B3_INBOUND_MMS["media"])
    get = parse_callback(query(B4_GET_QUERY))
    assert (get.from_, get.to, get.segment_count) == ("+19191231111", "+13204601164", 1)
    assert get.message_uri == "https://api.catapult.inetwork.com/v1/users/u-123/messages/m-asdf"
    assert parse_callback(B2_OUTBOUND_SENT).application_id is None


@pytest.mark.parametrize(
    ("given", "expected"),
    [
        ("+13233326955", "+13233326955"),
        (" 13233326955", "+13233326955"),  # a query's unescaped "+" decodes as a space
        ("13233326955", "+13233326955"),
        ("3233326955", "+13233326955"),
        ("(323) 332-6955", "+13233326955"),
        ("+1 323.332.6955", "+13233326955"),
        ("+442071838750", "+442071838750"),
        ("12345", "12345"),  # short code
        ("839", "839"),
    ],
)
def test_numbers_normalise_to_e164(given: str, expected: str) -> None:
    assert normalise_number(given) == expected


@pytest.mark.parametrize("given", ["abc", "+0123456789", "+12", "123456789", "", "+1-800-FLOWERS"])
def test_not_numbers(given: str) -> None:
    with pytest.raises(ValueError, match="not a"):
        normalise_number(given)


@pytest.mark.parametrize(
    ("pairs", "expected"),
    [
        ([("media", MEDIA_A), ("media", MEDIA_B)], (MEDIA_A, MEDIA_B)),  # one parameter per URL
        ([("media", f"{MEDIA_A},{MEDIA_B}")], (MEDIA_A, MEDIA_B)),  # one comma-separated value
        ([("media", f"[{MEDIA_A}, {MEDIA_B}]")], (MEDIA_A, MEDIA_B)),  # as the docs print it
        ([("media", f'["{MEDIA_A}","{MEDIA_B}"]')], (MEDIA_A, MEDIA_B)),  # JSON text
        ([("media", MEDIA_A)], (MEDIA_A,)),
        ([("media", "https://x.test/a,b.jpg")], ("https://x.test/a,b.jpg",)),  # comma in a URL
        ([("media", "")], ()),
        ([("media", "[]")], ()),
        ([], ()),
    ],
)
def test_get_media_in_every_form(pairs: list[tuple[str, str]], expected: tuple[str, ...]) -> None:
    fields = fields_from_pairs([*parse_qsl(B4_GET_QUERY), *pairs])
    assert parse_callback(fields).media == expected


@pytest.mark.parametrize(
    ("media", "expected"),
    [
        ([MEDIA_A, MEDIA_B], (MEDIA_A, MEDIA_B)),
        (MEDIA_A, (MEDIA_A,)),
        (None, ()),
        ([], ()),
    ],
)
def test_json_media(media: Any, expected: tuple[str, ...]) -> None:
    assert parse_callback(with_(B3_INBOUND_MMS, media=media)).media == expected


@pytest.mark.parametrize(
    ("code", "expected"), [("0", 0), (0, 0), (" 775 ", 775), (902, 902), (None, None), ("", None)]
)
def test_delivery_code_string_or_integer(code: Any, expected: int | None) -> None:
    fields = with_(B2_OUTBOUND_SENT, deliveryState="not-delivered", deliveryCode=code)
    assert parse_callback(fields).delivery_code == expected


def test_unknown_fields_are_kept_and_never_fatal() -> None:
    callback = parse_callback(
        with_(B1_INBOUND_SMS, carrier="T-Mobile", skipMMSCarrierValidation=None)
    )
    assert callback.model_extra == {"carrier": "T-Mobile", "skipMMSCarrierValidation": None}


def test_time_without_zone_is_utc_and_blank_time_is_absent() -> None:
    naive = parse_callback(with_(B1_INBOUND_SMS, time="2016-12-01T16:04:49"))
    assert naive.time == datetime(2016, 12, 1, 16, 4, 49, tzinfo=UTC)
    assert parse_callback(with_(B1_INBOUND_SMS, time="")).time is None


@pytest.mark.parametrize(
    ("fields", "field", "fault"),
    [
        (with_(B1_INBOUND_SMS, eventType=...), "eventType", "is required"),
        (with_(B1_INBOUND_SMS, eventType="voice"), "eventType", "'sms' or 'mms'"),
        (with_(B1_INBOUND_SMS, direction="sideways"), "direction", "'in' or 'out'"),
        (with_(B1_INBOUND_SMS, state="lost"), "state", "input should be"),
        (with_(B1_INBOUND_SMS, messageId=""), "messageId", "at least 1 character"),
        (with_(B1_INBOUND_SMS, messageId=...), "messageId", "is required"),
        (with_(B1_INBOUND_SMS, messageId=42), "messageId", "valid string"),
        (with_(B1_INBOUND_SMS, from_="abc"), "from", "not a phone number"),
        (with_(B1_INBOUND_SMS, from_=...), "from", "is required"),
        (with_(B1_INBOUND_SMS, to="+0123"), "to", "not a valid E.164"),
        (with_(B1_INBOUND_SMS, text=5), "text", "valid string"),
        (with_(B1_INBOUND_SMS, segmentCount="many"), "segmentCount", "valid integer"),
        (with_(B1_INBOUND_SMS, segmentCount=-1), "segmentCount", "greater than or equal to 0"),
        (with_(B1_INBOUND_SMS, time="yesterday"), "time", "valid datetime"),
        (
            with_(B2_OUTBOUND_SENT, deliveryCode="abc"),
            "deliveryCode",
            "integer or a string of digits",
        ),
        (
            with_(B2_OUTBOUND_SENT, deliveryCode=True),
            "deliveryCode",
            "integer or a string of digits",
        ),
        (with_(B2_OUTBOUND_SENT, deliveryCode=-1), "deliveryCode", "greater than or equal to 0"),
        (with_(B2_OUTBOUND_SENT, deliveryState="lost"), "deliveryState", "input should be"),
        (with_(B3_INBOUND_MMS, media="ftp://x.test/a.jpg"), "media", "not an http or https URL"),
        (with_(B3_INBOUND_MMS, media=[MEDIA_A, 1]), "media", "must hold URLs"),
        (with_(B3_INBOUND_MMS, media={"url": MEDIA_A}), "media", "a URL or a list of URLs"),
        (with_(B3_INBOUND_MMS, media="https://"), "media", "not an http or https URL"),
        (with_(B1_INBOUND_SMS, state="sent"), "state", "inbound message callback"),
        (with_(B2_OUTBOUND_SENT, state="received"), "state", "outbound message callback"),
    ],
)
def test_invalid_callbacks_name_the_field(fields: dict[str, Any], field: str, fault: str) -> None:
    with pytest.raises(InvalidCallback) as caught:
        parse_callback(fields)
    assert [p.field for p in caught.value.problems] == [field]
    assert fault in caught.value.problems[0].problem


def nested(depth: int) -> Any:
    value: Any = "leaf"
    for level in range(depth):
        value = [value] if level % 2 else {"k": value}
    return value


@pytest.mark.parametrize(
    ("fields", "field", "fault"),
    [
        # What the event cannot carry verbatim in data.raw: it must be refused, never published.
        (with_(B1_INBOUND_SMS, extra=nested(32)), "extra", "nested deeper than 32"),
        (with_(B1_INBOUND_SMS, extra=nested(3000)), "extra", "nested deeper than 32"),
        (with_(B3_INBOUND_MMS, media=nested(500)), "media", "nested deeper than 32"),
        (with_(B1_INBOUND_SMS, text="a\ud800b"), "text", "lone surrogate"),
        (with_(B1_INBOUND_SMS, extra=["ok", {"k": "\udfff"}]), "extra", "lone surrogate"),
        (with_(B1_INBOUND_SMS, extra={"\ud800": 1}), "extra", "name that is not Unicode"),
        (with_(B1_INBOUND_SMS, extra={1: 1}), "extra", "name that is not Unicode"),
        (with_(B1_INBOUND_SMS, extra=2**64), "extra", "beyond 64 bits"),
        (with_(B1_INBOUND_SMS, extra=-(2**63) - 1), "extra", "beyond 64 bits"),
        (with_(B1_INBOUND_SMS, segmentCount=10**30), "segmentCount", "beyond 64 bits"),
        (with_(B1_INBOUND_SMS, extra=b"bytes"), "extra", "not a JSON value"),
        (with_(B1_INBOUND_SMS, extra=("a", "b")), "extra", "not a JSON value"),
        ({**B1_INBOUND_SMS, "\ud800": "x"}, "(body)", "field name"),
    ],
)
def test_a_callback_the_event_cannot_carry_is_invalid(
    fields: dict[str, Any], field: str, fault: str
) -> None:
    with pytest.raises(InvalidCallback) as caught:
        parse_callback(fields)
    assert [p.field for p in caught.value.problems] == [field]
    assert fault in caught.value.problems[0].problem


@pytest.mark.parametrize(
    "extra",
    [nested(31), 2**64 - 1, -(2**63), 1.5, float("inf"), True, None, "émoji 🐀", {"ü": ["ß"]}],
)
def test_what_the_event_can_carry_is_accepted_and_published_as_it_came(extra: Any) -> None:
    fields = with_(B1_INBOUND_SMS, extra=extra)
    callback = parse_callback(fields)
    event = build_event(callback, fields, source="test", received_at=RECEIVED_AT)
    body = orjson.loads(event.to_envelope().body)
    assert body["data"]["raw"]["extra"] == orjson.loads(orjson.dumps(extra))


@pytest.mark.parametrize("body", [[B1_INBOUND_SMS], "sms", 3, None])
def test_a_callback_is_one_object(body: Any) -> None:
    with pytest.raises(InvalidCallback) as caught:
        parse_callback(body)
    assert caught.value.problems[0].field == "(body)"


def test_every_bad_field_is_named_at_once() -> None:
    with pytest.raises(InvalidCallback) as caught:
        parse_callback({"eventType": "fax", "from": "x"})
    fields = {p.field for p in caught.value.problems}
    assert fields == {"eventType", "direction", "state", "messageId", "from", "to"}
    assert next(p.value for p in caught.value.problems if p.field == "eventType") == "fax"


def test_a_single_valued_field_given_twice_in_a_query_is_invalid() -> None:
    with pytest.raises(InvalidCallback) as caught:
        query(B4_GET_QUERY + "&to=%2B13204601165")
    assert [(p.field, p.problem) for p in caught.value.problems] == [
        ("to", "is given 2 times; it must be given once")
    ]


def test_repeated_unknown_query_fields_become_lists() -> None:
    fields = query(B4_GET_QUERY + "&x=1&x=2")
    assert fields["x"] == ["1", "2"]
    assert parse_callback(fields).model_extra == {"x": ["1", "2"]}


@pytest.mark.parametrize(
    ("changes", "event_type", "routing_key"),
    [
        ({}, EventType.MESSAGE_RECEIVED, INBOUND_SMS),
        ({"eventType": "mms"}, EventType.MESSAGE_RECEIVED, INBOUND_MMS),
        (
            {"direction": "out", "state": "queued"},
            EventType.MESSAGE_SENDING,
            "outbound.status.sending",
        ),
        (
            {"direction": "out", "state": "sending"},
            EventType.MESSAGE_SENDING,
            "outbound.status.sending",
        ),
        ({"direction": "out", "state": "sent"}, EventType.MESSAGE_SENT, "outbound.status.sent"),
        (
            {"direction": "out", "state": "error"},
            EventType.MESSAGE_FAILED,
            "outbound.status.failed",
        ),
        (
            {"direction": "out", "state": "sent", "deliveryState": "waiting"},
            EventType.MESSAGE_SENT,
            "outbound.status.sent",
        ),
        (
            {"direction": "out", "state": "sent", "deliveryState": "delivered", "deliveryCode": 0},
            EventType.MESSAGE_DELIVERED,
            "outbound.receipt.delivered",
        ),
        (
            {"direction": "out", "state": "error", "deliveryState": "not-delivered"},
            EventType.MESSAGE_NOT_DELIVERED,
            "outbound.receipt.not-delivered",
        ),
    ],
)
def test_each_callback_becomes_its_event(
    changes: dict[str, Any], event_type: EventType, routing_key: str
) -> None:
    fields = {**B1_INBOUND_SMS, **changes}
    callback = parse_callback(fields)
    assert classify(callback) == (event_type, routing_key)
    built = build_event(callback, fields, source="test", received_at=RECEIVED_AT)
    assert (built.event.type, built.routing_key) == (event_type, routing_key)
    # What goes on the wire is what the published JSON Schema describes.
    body = built.to_envelope().body
    EVENT_MODELS[event_type].model_validate_json(body)
    assert orjson.loads(body)["data"]["raw"] == fields


def id_of(fields: dict[str, Any]) -> str:
    return event_id(parse_callback(fields))


def test_the_same_callback_twice_has_the_same_id() -> None:
    assert id_of(B1_INBOUND_SMS) == id_of(dict(B1_INBOUND_SMS))
    # The same event by GET and by POST: the id comes from normalised values.
    get = query(B4_GET_QUERY)
    post = {**get, "segmentCount": 1, "from": "+19191231111"}
    assert id_of(get) == id_of(post)
    # The fallback delivery may come later; its arrival time is not part of the identity.
    assert id_of(with_(B2_OUTBOUND_SENT, time="2012-11-14T16:13:09Z")) == id_of(B2_OUTBOUND_SENT)


def test_every_state_transition_has_its_own_id() -> None:
    states = [
        with_(B2_OUTBOUND_SENT, state="queued"),
        with_(B2_OUTBOUND_SENT, state="sending"),
        B2_OUTBOUND_SENT,
        with_(B2_OUTBOUND_SENT, state="error"),
        with_(B2_OUTBOUND_SENT, deliveryState="waiting"),
        with_(B2_OUTBOUND_SENT, deliveryState="delivered", deliveryCode="0"),
        with_(B2_OUTBOUND_SENT, deliveryState="not-delivered", deliveryCode=775),
        with_(B2_OUTBOUND_SENT, deliveryState="not-delivered", deliveryCode=902),
        with_(B2_OUTBOUND_SENT, messageId="m-other"),
    ]
    assert len({id_of(fields) for fields in states}) == len(states)
    assert id_of(with_(B2_OUTBOUND_SENT, deliveryState="delivered", deliveryCode="0")) == id_of(
        with_(B2_OUTBOUND_SENT, deliveryState="delivered", deliveryCode=0)
    )


@pytest.mark.parametrize(
    ("tag", "correlation", "user_tag"),
    [
        (encode_tag("cmd-42", None), "cmd-42", None),
        (encode_tag("cmd:7/x", "my: own tag"), "cmd:7/x", "my: own tag"),
        ("order-17", None, "order-17"),
        (None, None, None),
    ],
)
def test_the_command_id_in_the_tag_becomes_the_correlation_id(
    tag: str | None, correlation: str | None, user_tag: str | None
) -> None:
    fields = with_(B2_OUTBOUND_SENT, tag=tag if tag is not None else ...)
    built = build_event(parse_callback(fields), fields, source="test", received_at=RECEIVED_AT)
    assert built.event.correlationid == correlation
    assert built.event.data.get("tag") == user_tag
    assert built.event.data.get("commandId") == correlation
    envelope = built.to_envelope()
    assert envelope.correlation_id == correlation
    assert envelope.headers.get("command-id") == correlation
    assert envelope.headers.get("ce-correlationid") == correlation


def test_event_envelope_and_data() -> None:
    fields = query(B4_GET_QUERY.replace("%2B19191231111", "+19191231111"))  # "+" arrives as " "
    callback = parse_callback(fields)
    built = build_event(
        callback, fields, source="catapult-bridge/receiver", received_at=RECEIVED_AT
    )
    envelope = built.to_envelope()
    assert envelope.message_id == built.id == built.event.id
    assert envelope.type == EventType.MESSAGE_RECEIVED
    assert envelope.content_type == "application/cloudevents+json"
    assert envelope.timestamp == datetime(2016, 12, 1, 16, 4, 49, tzinfo=UTC)
    assert envelope.headers["direction"] == "in"
    assert envelope.headers["catapult-event-type"] == "sms"
    assert envelope.headers["state"] == "received"
    assert envelope.headers["ce-subject"] == "m-asdf"
    event = orjson.loads(envelope.body)
    assert event["specversion"] == "1.0"
    assert event["subject"] == "m-asdf"
    assert event["source"] == "catapult-bridge/receiver"
    assert event["data"]["from"] == "+19191231111"
    assert event["data"]["raw"]["from"] == " 19191231111"  # the raw callback as it came
    assert event["data"]["media"] == []


def test_event_time_falls_back_to_arrival() -> None:
    fields = with_(B1_INBOUND_SMS, time=...)
    built = build_event(parse_callback(fields), fields, source="test", received_at=RECEIVED_AT)
    assert built.event.time == RECEIVED_AT


def test_raw_keeps_nulls_and_unknown_fields() -> None:
    fields = with_(B1_INBOUND_SMS, tag=None, carrier={"name": "x"})
    built = build_event(parse_callback(fields), fields, source="test", received_at=RECEIVED_AT)
    raw = orjson.loads(built.to_envelope().body)["data"]["raw"]
    assert raw["tag"] is None
    assert raw["carrier"] == {"name": "x"}


def test_schema_models_cover_every_receiver_event() -> None:
    assert set(SCHEMA_MODELS) == {
        "event-message-received",
        "event-message-sending",
        "event-message-sent",
        "event-message-failed",
        "event-message-delivered",
        "event-message-not-delivered",
    }
    assert set(SCHEMA_MODELS.values()) == set(EVENT_MODELS.values())
    for model in SCHEMA_MODELS.values():
        schema = model.model_json_schema(mode="serialization")
        assert "data" in schema["properties"]


def test_model_is_frozen() -> None:
    callback = parse_callback(B1_INBOUND_SMS)
    assert isinstance(callback, MessageCallback)
    with pytest.raises(ValueError, match="frozen"):
        callback.text = "changed"  # type: ignore[misc]


ODD_VALUES: list[Any] = [
    None,
    "",
    " ",
    0,
    -1,
    1.5,
    True,
    [],
    {},
    [None],
    ["x", 2],
    "x" * 300,
    "\x00",
    "+",
    "[",
    "[,]",
    ",",
    "https://",
    "1e400",
    2**70,
    1.2e21,
    -(2**70),
    float("nan"),
    float("inf"),
    "2**70",
    str(2**70),
    "1" * 400,
]


def test_no_value_makes_parsing_fail_other_than_invalid_callback() -> None:
    """Every known field with every odd value: either a callback or ``InvalidCallback``."""
    names = [*B3_INBOUND_MMS, "tag", "deliveryState", "deliveryCode", "deliveryDescription"]
    for base in (B1_INBOUND_SMS, B2_OUTBOUND_SENT, B3_INBOUND_MMS):
        for name in names:
            for value in ODD_VALUES:
                fields = {**base, name: value}
                try:
                    callback = parse_callback(fields)
                except InvalidCallback as exc:
                    problems = exc.problems
                    assert problems, (name, value)
                    continue
                built = build_event(callback, fields, source="t", received_at=RECEIVED_AT)
                EVENT_MODELS[built.event.type].model_validate_json(built.to_envelope().body)


def _data_by_model(event: Any, fields: dict[str, Any]) -> dict[str, Any]:
    """``data`` the way the event's data model makes it: validated, then dumped."""
    callback = parse_callback(fields)
    parsed = _parse_tag(callback.tag)
    model = EVENT_MODELS[event.type].model_fields["data"].annotation
    assert isinstance(model, type)
    assert issubclass(model, BaseModel)
    values = {
        name: getattr(callback, name)
        for name in model.model_fields
        if name not in ("message_type", "command_id", "tag", "raw", "media")
    }
    return model(
        **values,
        message_type=callback.event_type,
        media=list(callback.media),
        tag=parsed.user_tag,
        command_id=parsed.command_id,
        raw=fields,
    ).model_dump(mode="json", by_alias=True, exclude_none=True)


def test_event_data_and_body_are_what_the_models_dump() -> None:
    """``build_event`` writes ``data`` and ``to_json`` the body without pydantic: same output."""
    changes: list[dict[str, Any]] = [
        {},
        {"time": ...},
        {"time": "2012-11-14T16:13:06.5+05:30"},
        {"tag": encode_tag("cmd:7/x", "my: own tag"), "extra": {"n": None, "l": [1, None]}},
        {"direction": "out", "state": "sending", "deliveryState": "waiting", "deliveryCode": "0"},
        {"direction": "out", "state": "sent", "deliveryState": "delivered", "deliveryCode": 0},
        {"direction": "out", "state": "error", "deliveryState": "not-delivered", "tag": "t"},
        {"direction": "out", "state": "error", "deliveryDescription": "x", "segmentCount": ""},
    ]
    for base in (B1_INBOUND_SMS, B2_OUTBOUND_SENT, B3_INBOUND_MMS, query(B4_GET_QUERY)):
        for change in changes:
            fields = with_(base, **change)
            try:
                callback = parse_callback(fields)
            except InvalidCallback:
                continue
            event = build_event(callback, fields, source="test", received_at=RECEIVED_AT).event
            assert event.data == _data_by_model(event, fields)
            assert event.to_json() == orjson.dumps(event.model_dump(mode="json", exclude_none=True))


def test_cloudevent_body_is_what_the_model_dumps() -> None:
    """Every attribute set or not, any time zone: ``to_json`` is pydantic's JSON-mode dump."""
    plus_two = timezone(timedelta(hours=2))
    for subject, correlationid, time in [
        (None, None, datetime(2024, 1, 2, 3, 4, 5, 678, tzinfo=plus_two)),
        ("cmd-1", "cmd-1", datetime(2024, 1, 2, 3, 4, 5, tzinfo=UTC)),
        ("m-1", None, datetime(2024, 1, 2, 3, 4, 5, tzinfo=timezone(timedelta(seconds=30)))),
    ]:
        event = CloudEvent(
            id="e-1",
            source="test",
            type=EventType.SEND_FAILED,
            subject=subject,
            time=time,
            correlationid=correlationid,
            data={"commandId": "cmd-1", "error": {"message": "x", "status": None}, "n": [1.5, "ü"]},
        )
        assert event.to_json() == orjson.dumps(event.model_dump(mode="json", exclude_none=True))

"""The receiver over real HTTP on a real socket, publishing to the real RabbitMQ.

The receiver answers 200 only after the broker's confirm (or a spool flush), so a test reads the
queue right after the answer. "Nothing published" is checked by sending a valid callback last
and finding it first in the queue.
"""

from __future__ import annotations

import asyncio
import random
from collections.abc import Awaitable, Callable
from typing import Any
from urllib.parse import urlencode

import aiohttp
import orjson
import pytest
import yarl

from bridge.events.cloudevents import EventType
from bridge.events.tag import encode_tag
from bridge.receiver import ReceiverServer, create_receiver_app
from bridge.settings import Settings, SettingsError
from tests.fixtures.receiver import (
    AUTH_HEADERS,
    CREDENTIALS,
    EventQueues,
    MakeReceiver,
    ServeOperations,
)

OpenQueues = Callable[[Settings], Awaitable[EventQueues]]
FORM = "application/x-www-form-urlencoded"

INBOUND_SMS: dict[str, Any] = {
    "eventType": "sms",
    "direction": "in",
    "messageId": "m-inboundsms2345abcdefghij",
    "messageUri": "https://api.catapult.inetwork.com/v1/users/u-1/messages/m-inboundsms2345abcdefghij",
    "from": "+13233326955",
    "to": "+13865245000",
    "text": "Example",
    "applicationId": "a-rj7jf3fz7teaqupveqpug3i",
    "time": "2012-11-14T16:13:06.076Z",
    "state": "received",
    "segmentCount": 1,
}
MEDIA = [
    "https://api.catapult.inetwork.com/v1/users/u-1/media/A3087419-m-dr4mcch2wfb6frcls677glq.jpg",
    "https://api.catapult.inetwork.com/v1/users/u-1/media/123_1-m-dr4mcch2wfb6frcls677glq.smil",
]
INBOUND_MMS: dict[str, Any] = {
    **INBOUND_SMS,
    "eventType": "mms",
    "messageId": "m-dr4mcch2wfb6frcls677glq",
    "text": "Hello MMS!",
    "media": MEDIA,
}
OUTBOUND: dict[str, Any] = {
    "eventType": "sms",
    "direction": "out",
    "messageId": "m-outbound2345abcdefghijkl",
    "from": "+13865245000",
    "to": "+13233326955",
    "text": "Example",
    "time": "2012-11-14T16:13:06.076Z",
    "state": "sending",
    "tag": encode_tag("cmd-7f3a", "order-1"),
}


@pytest.fixture
def settings(make_settings: Callable[..., Settings]) -> Settings:
    return make_settings(receiver=CREDENTIALS)


async def send(
    client: aiohttp.ClientSession,
    url: str,
    fields: dict[str, Any],
    *,
    how: str = "json",
    headers: dict[str, str] | None = None,
) -> tuple[int, dict[str, Any]]:
    """Send one callback the way Catapult would: JSON POST, GET query, or form POST."""
    headers = AUTH_HEADERS if headers is None else headers
    if how == "json":
        request = client.post(
            url,
            data=orjson.dumps(fields),
            headers={**headers, "Content-Type": "application/json; charset=utf-8"},
        )
    elif how == "get":
        request = client.get(url + "?" + urlencode(fields, doseq=True), headers=headers)
    else:
        request = client.post(
            url,
            data=urlencode(fields, doseq=True),
            headers={**headers, "Content-Type": "application/x-www-form-urlencoded"},
        )
    async with request as response:
        return response.status, orjson.loads(await response.read())


@pytest.mark.parametrize("how", ["json", "get", "form"])
async def test_inbound_sms_and_mms_arrive_in_the_inbound_queue(
    how: str,
    settings: Settings,
    make_receiver: MakeReceiver,
    callback_client: aiohttp.ClientSession,
    event_queues: OpenQueues,
) -> None:
    server = await make_receiver(settings)
    queues = await event_queues(settings)
    answers = [
        await send(callback_client, server.callback_url, f, how=how)
        for f in (INBOUND_SMS, INBOUND_MMS)
    ]
    assert [(status, body["status"]) for status, body in answers] == [(200, "published")] * 2

    sms, mms = await queues.take(queues.inbound, 2)
    assert (sms.routing_key, mms.routing_key) == ("inbound.sms", "inbound.mms")
    assert [sms.message_id, mms.message_id] == [body["id"] for _, body in answers]
    for message in (sms, mms):
        assert message.type == EventType.MESSAGE_RECEIVED
        assert message.content_type == "application/cloudevents+json"
        assert message.delivery_mode == 2
        assert message.timestamp is not None
        assert message.headers["direction"] == "in"
    event = orjson.loads(mms.body)
    assert event["type"] == EventType.MESSAGE_RECEIVED
    assert event["subject"] == INBOUND_MMS["messageId"]
    assert event["data"]["media"] == MEDIA
    assert event["data"]["from"] == "+13233326955"
    assert mms.headers["catapult-event-type"] == "mms"
    assert await queues.count(queues.status) == 0


async def test_status_events_and_receipts_arrive_in_the_status_queue(
    settings: Settings,
    make_receiver: MakeReceiver,
    callback_client: aiohttp.ClientSession,
    event_queues: OpenQueues,
) -> None:
    server = await make_receiver(settings)
    queues = await event_queues(settings)
    failing = {**OUTBOUND, "messageId": "m-failing2345abcdefghijklm", "tag": "plain-user-tag"}
    sequence: list[tuple[dict[str, Any], str, EventType, str]] = [
        (OUTBOUND, "json", EventType.MESSAGE_SENDING, "outbound.status.sending"),
        ({**OUTBOUND, "state": "sent"}, "get", EventType.MESSAGE_SENT, "outbound.status.sent"),
        (
            {
                **OUTBOUND,
                "state": "sent",
                "deliveryState": "delivered",
                "deliveryCode": "0",
                "deliveryDescription": "Message delivered to carrier",
            },
            "form",
            EventType.MESSAGE_DELIVERED,
            "outbound.receipt.delivered",
        ),
        ({**failing, "state": "error"}, "json", EventType.MESSAGE_FAILED, "outbound.status.failed"),
        (
            {**failing, "state": "error", "deliveryState": "not-delivered", "deliveryCode": 775},
            "get",
            EventType.MESSAGE_NOT_DELIVERED,
            "outbound.receipt.not-delivered",
        ),
    ]
    for fields, how, _, _ in sequence:
        status, body = await send(callback_client, server.callback_url, fields, how=how)
        assert (status, body["status"]) == (200, "published"), body

    messages = await queues.take(queues.status, len(sequence))
    assert [(m.type, m.routing_key) for m in messages] == [(t, k) for _, _, t, k in sequence]
    assert len({m.message_id for m in messages}) == len(sequence)
    first, _, delivered, _, not_delivered = (orjson.loads(m.body) for m in messages)
    assert first["correlationid"] == "cmd-7f3a"
    assert first["data"]["tag"] == "order-1"
    assert messages[0].correlation_id == "cmd-7f3a"
    assert messages[0].headers["command-id"] == "cmd-7f3a"
    assert delivered["data"]["deliveryCode"] == 0
    assert not_delivered["data"]["deliveryCode"] == 775
    assert not_delivered["data"]["tag"] == "plain-user-tag"
    assert "correlationid" not in not_delivered
    assert messages[4].headers["delivery-state"] == "not-delivered"
    assert await queues.count(queues.inbound) == 0


async def test_duplicates_are_answered_200_and_published_once(
    settings: Settings,
    make_receiver: MakeReceiver,
    callback_client: aiohttp.ClientSession,
    event_queues: OpenQueues,
) -> None:
    server = await make_receiver(settings)
    queues = await event_queues(settings)
    first = await send(callback_client, server.callback_url, INBOUND_SMS)
    again = await send(callback_client, server.callback_url, INBOUND_SMS, how="get")
    assert (first[0], first[1]["status"]) == (200, "published")
    assert (again[0], again[1]["status"]) == (200, "duplicate")
    assert again[1]["id"] == first[1]["id"]
    # Concurrent copies (the callback URL and the fallback URL at once): one publish.
    burst = await asyncio.gather(
        *(send(callback_client, server.callback_url, INBOUND_MMS) for _ in range(8))
    )
    assert {status for status, _ in burst} == {200}
    assert sorted(body["status"] for _, body in burst) == ["duplicate"] * 7 + ["published"]
    await send(callback_client, server.callback_url, {**INBOUND_SMS, "messageId": "m-last"})

    messages = await queues.take(queues.inbound, 3)
    assert [orjson.loads(m.body)["subject"] for m in messages] == [
        INBOUND_SMS["messageId"],
        INBOUND_MMS["messageId"],
        "m-last",
    ]
    assert await queues.count(queues.inbound) == 0


WRONG_CREDENTIALS = [
    {},
    {"Authorization": "Basic " + "Y2F0YXB1bHQ6d3Jvbmc="},  # catapult:wrong
    {"Authorization": AUTH_HEADERS["Authorization"].replace("Basic", "Bearer")},
    {"Authorization": "Basic !!!not-base64"},
    {"Authorization": "Basic"},
]


async def test_authentication_failures_are_401_and_say_nothing_more(
    make_settings: Callable[..., Settings],
    make_receiver: MakeReceiver,
    callback_client: aiohttp.ClientSession,
    event_queues: OpenQueues,
) -> None:
    settings = make_settings(receiver={**CREDENTIALS, "path_token": "s3cret-path-t0ken"})
    server = await make_receiver(settings)
    queues = await event_queues(settings)
    good_url = server.callback_url + "/s3cret-path-t0ken"
    attempts = [(good_url, headers) for headers in WRONG_CREDENTIALS] + [
        (server.callback_url, AUTH_HEADERS),  # right credentials, no token
        (server.callback_url + "/wrong-token", AUTH_HEADERS),
        (server.callback_url + "/S3CRET-PATH-T0KEN", AUTH_HEADERS),
    ]
    bodies = set()
    for url, headers in attempts:
        for how in ("json", "get"):
            status, body = await send(callback_client, url, INBOUND_SMS, how=how, headers=headers)
            assert status == 401, (url, headers)
            bodies.add(orjson.dumps(body))
    assert len(bodies) == 1  # the same answer whatever was wrong
    async with callback_client.post(good_url, json=INBOUND_SMS) as response:
        assert (
            response.headers["WWW-Authenticate"] == 'Basic realm="catapult-bridge", charset="UTF-8"'
        )
        assert response.content_type == "application/problem+json"

    assert (await send(callback_client, good_url, INBOUND_SMS))[0] == 200
    (message,) = await queues.take(queues.inbound)
    assert orjson.loads(message.body)["subject"] == INBOUND_SMS["messageId"]
    assert await queues.count(queues.inbound) == 0


async def test_no_credentials_refuses_to_start_unless_allowed(
    make_settings: Callable[..., Settings],
    make_receiver: MakeReceiver,
    callback_client: aiohttp.ClientSession,
) -> None:
    with pytest.raises(SettingsError, match="allow_unauthenticated"):
        create_receiver_app(make_settings())
    server = await make_receiver(make_settings(receiver={"allow_unauthenticated": True}))
    status, body = await send(callback_client, server.callback_url, INBOUND_SMS, headers={})
    assert (status, body["status"]) == (200, "published")


MALFORMED: list[tuple[str, str, Any, str]] = [
    # how, content type, payload, the field the answer names
    ("json", "application/json", b"{not json", "(body)"),
    ("json", "application/json", b"", "(body)"),
    ("json", "application/json", b"[]", "(body)"),
    ("json", "application/json", orjson.dumps([INBOUND_SMS]), "(body)"),
    ("json", "application/json", b'"sms"', "(body)"),
    ("json", "application/json", b"\xff\xfe", "(body)"),
    ("json", "application/json", orjson.dumps({**INBOUND_SMS, "eventType": "fax"}), "eventType"),
    ("json", "application/json", orjson.dumps({**INBOUND_SMS, "direction": None}), "direction"),
    ("json", "application/json", orjson.dumps({**INBOUND_SMS, "from": "nobody"}), "from"),
    ("json", "application/json", orjson.dumps({**INBOUND_SMS, "to": 13865245000}), "to"),
    ("json", "application/json", orjson.dumps({**INBOUND_SMS, "state": "sent"}), "state"),
    ("json", "application/json", orjson.dumps({**INBOUND_SMS, "time": "soon"}), "time"),
    # Before 1970: no AMQP timestamp can carry it (the publish would fail for ever).
    (
        "json",
        "application/json",
        orjson.dumps({**INBOUND_SMS, "time": "1969-12-31T23:59:59Z"}),
        "time",
    ),
    ("json", "application/json", orjson.dumps({**INBOUND_SMS, "time": -1}), "time"),
    ("get", "", {**INBOUND_SMS, "time": "1900-01-01T00:00:00Z"}, "time"),
    (
        "json",
        "application/json",
        orjson.dumps({**INBOUND_SMS, "segmentCount": 2**40}),
        "segmentCount",
    ),
    (
        "json",
        "application/json",
        orjson.dumps({**INBOUND_MMS, "media": "file:///etc/passwd"}),
        "media",
    ),
    ("json", "application/json", orjson.dumps({**OUTBOUND, "deliveryCode": "n/a"}), "deliveryCode"),
    ("get", "", {**INBOUND_SMS, "messageId": ""}, "messageId"),
    ("get", "", {k: v for k, v in INBOUND_SMS.items() if k != "to"}, "to"),
    ("get", "", [*INBOUND_SMS.items(), ("from", "+13233326956")], "from"),
    ("get", "", {**INBOUND_MMS, "media": "[ftp://x.test/a.gif]"}, "media"),
    ("form", FORM, {**OUTBOUND, "deliveryState": "maybe"}, "deliveryState"),
    ("form", FORM, {**INBOUND_SMS, "segmentCount": "-2"}, "segmentCount"),
    ("form", FORM + "; charset=latin-9000", INBOUND_SMS, "(body)"),
    ("form", FORM, b"from=%FF%FE", "from"),
    ("form", FORM, b"from=\xff\xfe", "(body)"),
]


@pytest.mark.parametrize(("how", "content_type", "payload", "field"), MALFORMED)
async def test_malformed_callbacks_are_400_naming_the_field_and_publish_nothing(
    how: str,
    content_type: str,
    payload: Any,
    field: str,
    settings: Settings,
    make_receiver: MakeReceiver,
    callback_client: aiohttp.ClientSession,
    event_queues: OpenQueues,
) -> None:
    server = await make_receiver(settings)
    queues = await event_queues(settings)
    if how == "get":
        request = callback_client.get(
            server.callback_url + "?" + urlencode(payload, doseq=True), headers=AUTH_HEADERS
        )
    else:
        data = payload if isinstance(payload, bytes) else urlencode(payload, doseq=True)
        request = callback_client.post(
            server.callback_url, data=data, headers={**AUTH_HEADERS, "Content-Type": content_type}
        )
    async with request as response:
        assert response.status == 400
        assert response.content_type == "application/problem+json"
        problem = orjson.loads(await response.read())
    assert problem["status"] == 400
    assert problem["type"] == "urn:catapult-bridge:problem:invalid-callback"
    assert field in [error["field"] for error in problem["errors"]], problem
    assert all(error["problem"] for error in problem["errors"])

    await send(callback_client, server.callback_url, {**INBOUND_SMS, "messageId": "m-valid"})
    (message,) = await queues.take(queues.inbound)
    assert orjson.loads(message.body)["subject"] == "m-valid"


def nested(depth: int, leaf: Any = 1) -> Any:
    """``leaf`` inside ``depth`` levels of lists and objects."""
    value = leaf
    for level in range(depth):
        value = [value] if level % 2 else {"k": value}
    return value


def deep_json(depth: int) -> bytes:
    """A list nested ``depth`` levels deep, written out (orjson.dumps stops at 254 levels)."""
    return b"[" * depth + b"1" + b"]" * depth


# Input that once gave a 500, and others of the kind. Each must get a 4xx naming the fault.
HOSTILE: list[tuple[str, str, bytes, int, str, str]] = [
    # how, content type, body or query, status, the field named, words of the problem
    (
        "json",
        "application/json",
        orjson.dumps(INBOUND_SMS)[:-1] + b',"x":' + deep_json(300) + b"}",
        400,
        "x",
        "nested",
    ),
    (
        "json",
        "application/json",
        orjson.dumps(INBOUND_SMS)[:-1] + b',"x":' + deep_json(1000) + b"}",
        400,
        "x",
        "nested",
    ),
    (
        "json",
        "application/json",
        orjson.dumps({**INBOUND_MMS, "media": nested(200, "https://x.test/a.gif")}),
        400,
        "media",
        "nested",
    ),
    (
        "json",
        "application/json",
        orjson.dumps(INBOUND_MMS)[:-1] + b',"media":' + deep_json(900) + b"}",
        400,
        "media",
        "nested",
    ),
    ("json", "application/json", deep_json(1020), 400, "(body)", "one JSON object"),
    (
        "json",
        "application/json",
        orjson.dumps({**INBOUND_SMS, "x": nested(31)}),
        200,
        "",
        "",
    ),
    (
        "json",
        "application/json",
        orjson.dumps({**INBOUND_SMS, "x": nested(32)}),
        400,
        "x",
        "nested deeper than 32",
    ),
    ("json", "application/gzip+json", b"\x1f\x8b" + b"\x00" * 20, 400, "(body)", "JSON"),
    (
        "form",
        FORM + "; charset=utf-7",
        urlencode({**INBOUND_SMS, "text": "x"}).encode().replace(b"text=x", b"text=+2AA-"),
        400,
        "(body)",
        "utf-7",
    ),
    ("form", FORM + "; charset=punycode", b"a-9", 400, "(body)", "punycode"),
    ("json", "application/json", deep_json(2000), 400, "(body)", "JSON"),
    (
        "form",
        FORM + "; charset=unicode_escape",
        urlencode({**INBOUND_SMS, "text": "x"}).encode().replace(b"text=x", b"text=\\ud800"),
        400,
        "(body)",
        "unicode_escape",
    ),
    (
        "form",
        FORM + "; charset=raw_unicode_escape",
        urlencode({**INBOUND_SMS, "text": "x"}).encode().replace(b"text=x", b"text=\\udfff"),
        400,
        "(body)",
        "raw_unicode_escape",
    ),
    ("form", FORM + "; charset=rot13", urlencode(INBOUND_SMS).encode(), 400, "(body)", "rot13"),
    ("form", FORM + "; charset=hex", b"6672", 400, "(body)", "hex"),
    ("json", "application/json", b'{"segmentCount": NaN}', 400, "(body)", "JSON"),
    ("json", "application/json", b'{"segmentCount": Infinity}', 400, "(body)", "JSON"),
    ("json", "application/json", b'{"segmentCount": 1e400}', 400, "(body)", "JSON"),
    (
        "json",
        "application/json",
        orjson.dumps(INBOUND_SMS)[:-1] + b',"segmentCount":' + b"9" * 30 + b"}",
        400,
        "segmentCount",
        "integer",
    ),
    (
        "json",
        "application/json",
        orjson.dumps(INBOUND_SMS)[:-1] + b',"to":"+1","to":13865245000}',
        400,
        "to",
        "string",
    ),
    (
        "get",
        "",
        urlencode({**INBOUND_SMS, "text": "x"}).encode() + b"&text=%ED%A0%80",
        400,
        "text",
        "once",
    ),
    (
        "get",
        "",
        urlencode({**INBOUND_SMS, "text": "x"}).encode().replace(b"text=x", b"text=%ED%A0%80%FF"),
        200,
        "",
        "",
    ),
]


@pytest.mark.parametrize(("how", "content_type", "payload", "status", "field", "words"), HOSTILE)
async def test_hostile_input_gets_a_4xx_naming_the_fault_never_a_500(
    how: str,
    content_type: str,
    payload: bytes,
    status: int,
    field: str,
    words: str,
    settings: Settings,
    make_receiver: MakeReceiver,
    callback_client: aiohttp.ClientSession,
) -> None:
    server = await make_receiver(settings)
    if how == "get":
        request = callback_client.get(
            yarl.URL(server.callback_url + "?" + payload.decode(), encoded=True),
            headers=AUTH_HEADERS,
        )
    else:
        request = callback_client.post(
            server.callback_url,
            data=payload,
            headers={**AUTH_HEADERS, "Content-Type": content_type},
        )
    async with request as response:
        body = await response.read()
        assert response.status == status, body[:500]
    answer = orjson.loads(body)
    if status == 200:
        return
    assert answer["status"] == status
    problems = {error["field"]: error["problem"] for error in answer["errors"]}
    assert field in problems, answer
    assert words in problems[field], answer


@pytest.mark.parametrize("encoding", ["gzip", "deflate"])
async def test_a_body_that_does_not_decompress_is_400(
    encoding: str,
    settings: Settings,
    make_receiver: MakeReceiver,
    callback_client: aiohttp.ClientSession,
) -> None:
    server = await make_receiver(settings)
    headers = {**AUTH_HEADERS, "Content-Type": "application/json", "Content-Encoding": encoding}
    async with callback_client.post(
        server.callback_url, data=b"not compressed", headers=headers
    ) as response:
        assert response.status == 400
        problem = orjson.loads(await response.read())
    assert problem["errors"][0]["field"] == "(body)"
    assert "cannot be read" in problem["errors"][0]["problem"]


async def test_a_tag_with_an_id_too_long_for_amqp_is_kept_as_the_users_tag(
    settings: Settings,
    make_receiver: MakeReceiver,
    callback_client: aiohttp.ClientSession,
    event_queues: OpenQueues,
) -> None:
    # The worker's command ids fit an AMQP short string (255 bytes); a longer one in a tag is
    # not the bridge's, and as a correlation_id it could never be published.
    server = await make_receiver(settings)
    queues = await event_queues(settings)
    tag = "cbr1:" + "x" * 300 + ":mine"
    status, body = await send(callback_client, server.callback_url, {**OUTBOUND, "tag": tag})
    assert (status, body["status"]) == (200, "published")
    (message,) = await queues.take(queues.status)
    event = orjson.loads(message.body)
    assert event["data"]["tag"] == tag
    assert "correlationid" not in event
    assert "commandId" not in event["data"]
    assert message.correlation_id is None


async def test_size_method_and_content_type_refusals(
    make_settings: Callable[..., Settings],
    make_receiver: MakeReceiver,
    callback_client: aiohttp.ClientSession,
    event_queues: OpenQueues,
) -> None:
    settings = make_settings(receiver={**CREDENTIALS, "max_body_bytes": 2048})
    server = await make_receiver(settings)
    queues = await event_queues(settings)
    url = server.callback_url
    big = {**INBOUND_SMS, "text": "x" * 3000}
    json_headers = {**AUTH_HEADERS, "Content-Type": "application/json"}

    async def chunked() -> Any:
        yield orjson.dumps(big)

    cases: list[tuple[Any, int]] = [
        (callback_client.post(url, data=orjson.dumps(big), headers=json_headers), 413),
        (callback_client.post(url, data=chunked(), headers=json_headers), 413),
        (callback_client.get(url + "?" + urlencode(big), headers=AUTH_HEADERS), 413),
        (callback_client.put(url, json=INBOUND_SMS, headers=AUTH_HEADERS), 405),
        (callback_client.delete(url, headers=AUTH_HEADERS), 405),
        (callback_client.patch(url, json=INBOUND_SMS, headers=AUTH_HEADERS), 405),
        (
            callback_client.post(
                url, data=b"x", headers={**AUTH_HEADERS, "Content-Type": "text/plain"}
            ),
            415,
        ),
        (
            callback_client.post(
                url, data=b"x", headers={**AUTH_HEADERS, "Content-Type": "application/xml"}
            ),
            415,
        ),
        (callback_client.post(url, data=b"{}", headers=AUTH_HEADERS), 415),
        (
            callback_client.post(
                url,
                data=aiohttp.FormData({"from": "+1"}, quote_fields=True, default_to_multipart=True),
                headers=AUTH_HEADERS,
            ),
            415,
        ),
        (callback_client.get(server.base_url + "/catapult/elsewhere", headers=AUTH_HEADERS), 404),
    ]
    for request, expected in cases:
        async with request as response:
            assert response.status == expected
            assert response.content_type == "application/problem+json"
            problem = orjson.loads(await response.read())
            assert problem["status"] == expected
            assert problem["detail"]
            if expected == 405:
                assert response.headers["Allow"] == "GET, POST"

    await send(callback_client, url, {**INBOUND_SMS, "messageId": "m-valid"})
    (message,) = await queues.take(queues.inbound)
    assert orjson.loads(message.body)["subject"] == "m-valid"


async def test_random_input_never_gets_a_500(
    settings: Settings, make_receiver: MakeReceiver, callback_client: aiohttp.ClientSession
) -> None:
    server = await make_receiver(settings)
    rng = random.Random(20260101)
    alphabet = [*INBOUND_SMS, "media", "deliveryCode", "deliveryState", "tag", "x"]
    junk: list[Any] = ["", "0", "-1", "+", "[", "]", ",", "%00", "\u0000", "1" * 500, "null", "{}"]
    statuses = set()
    for _ in range(120):
        fields = {**INBOUND_SMS}
        for name in rng.sample(alphabet, 3):
            fields[name] = rng.choice(junk)
        how = rng.choice(["json", "get", "form"])
        status, _ = await send(callback_client, server.callback_url, fields, how=how)
        statuses.add(status)
        raw = bytes(rng.getrandbits(8) for _ in range(rng.randrange(1, 64)))
        async with callback_client.post(
            server.callback_url,
            data=raw,
            headers={**AUTH_HEADERS, "Content-Type": rng.choice(["application/json", FORM])},
        ) as response:
            statuses.add(response.status)
    assert statuses <= {200, 400}


async def test_health_readiness_and_metrics(
    settings: Settings,
    make_receiver: MakeReceiver,
    serve_operations: ServeOperations,
    callback_client: aiohttp.ClientSession,
) -> None:
    server = await make_receiver(settings)
    ops = await serve_operations(server)
    await send(callback_client, server.callback_url, INBOUND_SMS)
    await send(callback_client, server.callback_url, INBOUND_SMS)
    await send(callback_client, server.callback_url, {**INBOUND_SMS, "from": "x"})
    for base in (server.base_url, ops.base_url):
        async with callback_client.get(base + "/healthz") as response:
            assert response.status == 200
    async with callback_client.get(ops.base_url + "/readyz") as response:
        assert response.status == 200
        report = await response.json()
    assert (report["status"], report["problems"]) == ("ready", [])
    assert report["receiver"]["broker"] == "ready"
    assert report["receiver"]["spool"]["state"] == "empty"
    async with callback_client.get(ops.base_url + "/metrics") as response:
        text = await response.text()
    assert 'bridge_receiver_callbacks_total{outcome="published"} 1.0' in text
    assert 'bridge_receiver_callbacks_total{outcome="duplicate"} 1.0' in text
    assert 'bridge_receiver_callbacks_total{outcome="rejected"} 1.0' in text
    assert "bridge_receiver_spool_records 0.0" in text
    assert "bridge_receiver_broker_ready 1.0" in text
    assert "bridge_receiver_callback_duration_seconds_count 3.0" in text


async def test_readiness_and_metrics_are_not_served_on_the_callback_port(
    settings: Settings,
    make_receiver: MakeReceiver,
    callback_client: aiohttp.ClientSession,
) -> None:
    # Whoever can reach the callback URL (the internet, for Catapult) learns nothing of the
    # broker, the spool or the traffic: those are on the operations port.
    server = await make_receiver(settings)
    for path in ("/readyz", "/metrics"):
        for headers in ({}, AUTH_HEADERS):
            async with callback_client.get(server.base_url + path, headers=headers) as response:
                assert response.status == 404, path
                assert "bridge_receiver" not in await response.text()
    async with callback_client.get(server.base_url + "/healthz") as response:
        assert (response.status, await response.json()) == (200, {"status": "ok"})


async def test_secrets_never_appear_in_answers_or_logs(
    make_settings: Callable[..., Settings],
    make_receiver: MakeReceiver,
    serve_operations: ServeOperations,
    callback_client: aiohttp.ClientSession,
    caplog: pytest.LogCaptureFixture,
) -> None:
    caplog.set_level("DEBUG")
    settings = make_settings(receiver={**CREDENTIALS, "path_token": "t0ken-Zq81"})
    server: ReceiverServer = await make_receiver(settings)
    texts = []
    for url in (server.callback_url, server.callback_url + "/t0ken-Zq81"):
        async with callback_client.post(url, json=INBOUND_SMS) as response:
            texts.append(await response.text())
    ops = await serve_operations(server)
    for path in ("/readyz", "/metrics"):
        async with callback_client.get(ops.base_url + path) as response:
            texts.append(await response.text())
    await server.stop()
    everything = "\n".join(texts) + caplog.text + repr(settings)
    for secret in (CREDENTIALS["password"], "t0ken-Zq81"):
        assert secret not in everything

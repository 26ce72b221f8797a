"""Property-based tests of the receiver's callback endpoint over real HTTP, with the real broker.

One receiver on a free port, publishing to the real RabbitMQ, takes generated requests:
JSON bodies (callback objects from ``tests/strategies.py``, any JSON, invalid bytes, nesting past
what the JSON libraries take) under every JSON media type; form bodies in many charsets, including
codecs that are not text encodings (``rot13``, ``base64``) and ones that can yield lone surrogates
(``unicode_escape``); GET query strings with any text, repeated names and broken percent-escapes;
other media types. Properties:

- the answer is 200 or the documented refusal (400 naming the field, 413, 415), never a 5xx, with
  the documented body (``{"status", "id"}``, or an RFC 9457 problem document);
- a callback answered 200 and published is in its queue, and the raw callback stored with the
  event parses back to the event's id.

Inputs tried per run (derandomized): JSON bodies 250, form bodies 200, query strings 200.
"""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from typing import Any
from urllib.parse import quote, urlencode

import aiohttp
import orjson
import pytest
from aio_pika.abc import AbstractQueue
from hypothesis import example, given
from hypothesis import strategies as st
from yarl import URL

from bridge.events.callbacks import InvalidCallback, parse_callback
from bridge.events.receiver_events import event_id
from bridge.receiver import ReceiverServer
from bridge.settings import Settings
from tests.fixtures.receiver import AUTH_HEADERS, CREDENTIALS, EventQueues, MakeReceiver
from tests.fuzzing import fuzz_settings
from tests.strategies import (
    ANY_TEXT,
    CHARSETS,
    ESCAPES,
    FORM,
    JSON_TYPES,
    OTHER_TYPES,
    WILD_TEXT,
    callback_fields,
    callback_pairs,
    json_values,
)

OpenQueues = Callable[[Settings], Awaitable[EventQueues]]
# What the endpoint may answer an authenticated request (README, "Callbacks"): never a 5xx.
DOCUMENTED = {200, 400, 413, 415}
ANSWER_TIMEOUT_S = 15


@dataclass
class Target:
    server: ReceiverServer
    queues: EventQueues
    client: aiohttp.ClientSession

    async def answer(
        self,
        method: str,
        *,
        url: str | URL | None = None,
        body: bytes | None = None,
        headers: dict[str, str],
    ) -> tuple[int, str, bytes]:
        async with (
            asyncio.timeout(ANSWER_TIMEOUT_S),
            self.client.request(
                method,
                url or self.server.callback_url,
                data=body,
                headers={**AUTH_HEADERS, **headers},
            ) as response,
        ):
            return response.status, response.content_type, await response.read()

    async def check(self, status: int, content_type: str, body: bytes) -> None:
        assert status in DOCUMENTED, (status, body[:300])
        document = orjson.loads(body)
        if status != 200:
            assert content_type == "application/problem+json"
            assert document["status"] == status
            assert {"type", "title", "detail"} <= set(document)
            if status == 400 and document["type"].endswith("invalid-callback"):
                assert document["errors"]
                assert all(e["field"] and e["problem"] for e in document["errors"])
            return
        assert content_type == "application/json"
        assert document["status"] in ("published", "duplicate", "spooled")
        if document["status"] == "published":
            await self.find(document["id"])

    async def find(self, wanted: str) -> None:
        """The event is in one of the event queues; its raw callback gives its id back."""
        for queue in (self.queues.inbound, self.queues.status):
            message = await _next(queue)
            if message is None:
                continue
            assert message.message_id == wanted
            raw = orjson.loads(message.body)["data"]["raw"]
            assert event_id(parse_callback(raw)) == wanted
            return
        raise AssertionError(f"event {wanted} answered 200 is in no queue")


async def _next(queue: AbstractQueue) -> Any:
    # The receiver answers after the broker's confirm: the event is already in its queue.
    return await queue.get(no_ack=True, fail=False, timeout=5)


@pytest.fixture
async def target(
    make_settings: Callable[..., Settings],
    make_receiver: MakeReceiver,
    event_queues: OpenQueues,
    callback_client: aiohttp.ClientSession,
) -> Target:
    settings = make_settings(receiver={**CREDENTIALS, "dedup_window_s": 0})
    server = await make_receiver(settings)
    return Target(server, await event_queues(settings), callback_client)


VALID: dict[str, Any] = {
    "eventType": "sms",
    "direction": "in",
    "state": "received",
    "messageId": "m-fuzzreceiver234abcdefghi",
    "from": "+13233326955",
    "to": "+13865245000",
    "text": "fuzz",
}


def _valid_with_deep_field(depth: int, kind: str) -> bytes:
    """A valid callback with one unknown field nested ``depth`` levels (written by hand:
    deeper than orjson writes)."""
    opening, closing = (b"[", b"]") if kind == "list" else (b'{"k":', b"}")
    deep = opening * depth + b"0" + closing * depth
    return orjson.dumps({**VALID, "extra": 0})[:-2] + deep + b"}"


json_bodies = st.one_of(
    callback_fields(deep=False).map(orjson.dumps),
    json_values.map(orjson.dumps),
    st.builds(
        _valid_with_deep_field,
        st.sampled_from([200, 254, 255, 256, 1000, 1023, 1024, 1025, 5000]),
        st.sampled_from(["list", "dict"]),
    ),
    st.binary(max_size=64),
    st.sampled_from([b"", b"{", b'{"a":1e400}', b"\xff\xfe{}", b'"\\ud800"', b"[" * 2000]),
)


def _with_charset(media_type: str, charset: str) -> str:
    return f"{media_type}; charset={charset}" if charset else media_type


@fuzz_settings(max_examples=250)
# Always tried: a valid callback with an unknown field nested deeper than orjson writes.
@example(body=_valid_with_deep_field(300, "list"), media_type="application/json", charset="")
@given(body=json_bodies, media_type=st.sampled_from(JSON_TYPES), charset=st.sampled_from(CHARSETS))
async def test_json_bodies_get_200_or_a_documented_refusal(
    target: Target, body: bytes, media_type: str, charset: str
) -> None:
    headers = {"Content-Type": _with_charset(media_type, charset)}
    await target.check(*await target.answer("POST", body=body, headers=headers))


def _encode(text: str, charset: str) -> bytes:
    try:
        return text.encode(charset or "utf-8")
    except (LookupError, UnicodeError, TypeError):
        return text.encode("utf-8", "surrogatepass")


VALID_PAIRS = [(k, str(v)) for k, v in VALID.items()]


@pytest.mark.parametrize("charset", CHARSETS)
@fuzz_settings(max_examples=30)
# Always tried, besides the drawn ones: an escape that unicode_escape turns into a lone surrogate.
@example(pairs=VALID_PAIRS, raw="x=\\ud800", honest=False)
@given(
    pairs=callback_pairs(),
    raw=st.none()
    | WILD_TEXT
    | st.binary(max_size=32).map(lambda b: b.decode("latin-1"))
    # A backslash escape left as it is in the body: text to most codecs, a lone surrogate (or
    # an error) to unicode_escape.
    | st.tuples(st.sampled_from(["x", "text", "tag", "from"]), ESCAPES).map("=".join),
    honest=st.booleans(),
)
async def test_form_bodies_in_any_charset_get_200_or_a_documented_refusal(
    target: Target, pairs: list[tuple[str, str]], charset: str, raw: str | None, honest: bool
) -> None:
    """``honest``: the body is encoded in the charset it declares; otherwise it is UTF-8 bytes
    under any declared charset (a sender that lies, or a codec that reads escapes)."""
    text = urlencode([(k, v.encode("utf-8", "surrogatepass")) for k, v in pairs])
    if raw is not None:
        text += "&" + raw
    body = _encode(text, charset) if honest else text.encode("utf-8", "surrogatepass")
    headers = {"Content-Type": _with_charset(FORM, charset)}
    await target.check(*await target.answer("POST", body=body, headers=headers))


query_text = st.one_of(
    callback_pairs().map(
        lambda pairs: urlencode([(k, v.encode("utf-8", "surrogatepass")) for k, v in pairs])
    ),
    st.lists(st.tuples(ANY_TEXT, ANY_TEXT)).map(
        lambda pairs: "&".join(f"{k}={v}" for k, v in pairs)
    ),
    st.sampled_from(["%", "%zz", "a=%ff%fe", "=&=&", "media=%5Bhttp%3A%2F%2Fa%5D", "a" * 3000]),
)


@fuzz_settings(max_examples=200)
@given(query=query_text)
async def test_get_queries_get_200_or_a_documented_refusal(target: Target, query: str) -> None:
    # As given, percent-escapes and all (``encoded=True``: not normalised by the client).
    url = URL(target.server.callback_url + "?" + quote(query, safe="=&%+"), encoded=True)
    await target.check(*await target.answer("GET", url=url, headers={}))


@fuzz_settings(max_examples=60)
@given(media_type=st.sampled_from(OTHER_TYPES), body=st.binary(max_size=64))
async def test_other_media_types_are_415(target: Target, media_type: str, body: bytes) -> None:
    status, content_type, answer = await target.answer(
        "POST", body=body, headers={"Content-Type": media_type}
    )
    await target.check(status, content_type, answer)
    assert status == 415


async def test_every_documented_refusal_parses_as_the_parser_says(target: Target) -> None:
    """The endpoint and the parser agree: a body the parser refuses is a 400 naming the field."""
    fields = {"eventType": "sms", "direction": "in", "state": "received", "messageId": ""}
    with pytest.raises(InvalidCallback) as refused:
        parse_callback(fields)
    status, _, body = await target.answer(
        "POST", body=orjson.dumps(fields), headers={"Content-Type": "application/json"}
    )
    assert status == 400
    named = {e["field"] for e in orjson.loads(body)["errors"]}
    assert named == {p.field for p in refused.value.problems}

"""Hypothesis strategies for the fuzz tests: JSON values, callbacks, request encodings, commands.

Each strategy mixes what the bridge must accept (values shaped as Catapult sends them, in every
encoding the reference shows) with what it must refuse cleanly (wrong types, junk text, lone
surrogates, huge numbers, deep nesting), so one property covers both sides. Nothing here does
I/O; the tests decide what a drawn value is sent through.
"""

from __future__ import annotations

from datetime import UTC, datetime, timedelta, timezone
from typing import Any

from hypothesis import strategies as st

from bridge.events.callbacks import SCALAR_FIELDS
from bridge.events.tag import encode_tag

# -- JSON --------------------------------------------------------------------------------------

# What ``orjson.loads`` can give: integers of 64 bits (signed or not), finite floats.
JSON_INTEGERS = st.integers(min_value=-(2**63), max_value=2**64 - 1)
ANY_TEXT = st.text(max_size=30)
# Text with lone surrogates and controls: what a lenient decoder (surrogateescape, unicode_escape)
# can hand over from bytes.
WILD_TEXT = st.text(
    st.characters(codec=None, exclude_categories=()) | st.characters(categories=["Cs"]),
    min_size=1,
    max_size=20,
)
# Backslash escapes: text to most codecs, lone surrogates or errors to ``unicode_escape``.
ESCAPES = st.sampled_from(["\\ud800", "\\udfff", "a\\udc80b", "\\x00", "\\N{bogus}", "\\"])
JSON_SCALARS = (
    st.none()
    | st.booleans()
    | JSON_INTEGERS
    | st.floats(allow_nan=False, allow_infinity=False)
    | ANY_TEXT
)
json_values = st.recursive(
    JSON_SCALARS,
    lambda inner: st.lists(inner, max_size=4) | st.dictionaries(ANY_TEXT, inner, max_size=4),
    max_leaves=10,
)


def nested(depth: int, kind: str) -> Any:
    """A list or object nested ``depth`` levels deep (built, not drawn: cheap at any depth)."""
    value: Any = 0
    for _ in range(depth):
        value = [value] if kind == "list" else {"k": value}
    return value


# Depths around what the JSON libraries take: orjson reads 1,024 levels and writes 255.
deep_values = st.builds(
    nested,
    st.one_of(st.integers(0, 300), st.sampled_from([254, 255, 256, 257, 1023, 1024, 1025])),
    st.sampled_from(["list", "dict"]),
)

# -- callback fields ---------------------------------------------------------------------------

phone_numbers = st.one_of(
    st.from_regex(r"\+1[2-9][0-9]{9}", fullmatch=True),
    st.from_regex(r"[2-9][0-9]{9}", fullmatch=True),
    st.from_regex(r"[0-9]{3,8}", fullmatch=True),
    st.from_regex(r"\+[1-9][0-9]{6,14}", fullmatch=True),
    st.from_regex(r"\(?[2-9][0-9]{2}\)? ?[0-9]{3}[-. ][0-9]{4}", fullmatch=True),
    st.from_regex(r" ?1?[2-9][0-9]{9} ?", fullmatch=True),
)
OFFSETS = st.sampled_from([UTC, timezone(timedelta(hours=-5)), timezone(timedelta(hours=14))])
times = st.one_of(
    st.datetimes(
        min_value=datetime(1971, 1, 1), max_value=datetime(2200, 1, 1), timezones=OFFSETS
    ).map(lambda d: d.isoformat()),
    st.datetimes(min_value=datetime(1971, 1, 1), max_value=datetime(2100, 1, 1)).map(
        lambda d: d.isoformat(timespec="milliseconds") + "Z"
    ),
    st.sampled_from(["", " ", "2012-11-14T16:13:06.076Z", "1970-01-01T00:00:00Z"]),
)
urls = st.from_regex(r"https?://[a-z]{1,8}\.example/[A-Za-z0-9_./,-]{0,20}", fullmatch=True)
media_values = st.one_of(
    st.lists(urls, max_size=3),
    urls,
    st.lists(urls, min_size=1, max_size=3).map(", ".join),
    st.lists(urls, min_size=1, max_size=3).map(lambda u: "[" + ", ".join(u) + "]"),
)
tags = st.one_of(
    st.none(),
    ANY_TEXT,
    st.builds(encode_tag, st.text(min_size=1, max_size=40), st.none() | ANY_TEXT),
    st.builds(encode_tag, st.text(min_size=256, max_size=300), st.none()),
    st.sampled_from(["cbr1:", "cbr1::", "cbr1:%zz", "cbr1:%ff:x"]),
)
counts = st.one_of(
    st.integers(0, 2**31 - 1), st.from_regex(r"[0-9]{1,9}", fullmatch=True), st.just("")
)

# direction, state and delivery state as Catapult pairs them.
kinds = st.one_of(
    st.just(("in", "received", None)),
    st.tuples(
        st.just("out"),
        st.sampled_from(["queued", "sending", "sent", "error"]),
        st.sampled_from([None, "waiting", "delivered", "not-delivered"]),
    ),
)

# What each field may hold in a callback the bridge must accept.
FIELD_VALUES: dict[str, st.SearchStrategy[Any]] = {
    "eventType": st.sampled_from(["sms", "mms"]),
    "messageId": st.one_of(
        st.from_regex(r"m-[a-z2-7]{23}", fullmatch=True), st.text(min_size=1, max_size=256)
    ),
    "messageUri": st.none() | urls,
    "from": phone_numbers,
    "to": phone_numbers,
    "text": st.text(max_size=200),
    "applicationId": st.none() | ANY_TEXT,
    "time": times,
    "tag": tags,
    "segmentCount": counts,
    "deliveryCode": counts,
    "deliveryDescription": st.none() | ANY_TEXT,
    "media": media_values,
}
REQUIRED = ("eventType", "messageId", "from", "to")
# What a field may hold instead: another type, junk, numbers past every bound.
junk = st.one_of(
    json_values,
    st.sampled_from(
        ["", " ", "+", "0", "-1", "1e400", "null", "[", "+0123", "ftp://a/b", "http://"]
    ),
    JSON_INTEGERS,
    st.integers(min_value=2**31, max_value=2**64 - 1),
)


@st.composite
def callback_fields(draw: st.DrawFn, *, wild: bool = True, deep: bool = True) -> dict[str, Any]:
    """A callback object as a JSON body holds it: mostly one the bridge must accept; with
    ``wild``, sometimes a field missing or holding junk, and unknown fields; with ``deep``, values
    nested past what orjson writes (such an object cannot be written with orjson)."""
    nested_too = (junk | deep_values) if deep else junk
    direction, state, delivery_state = draw(kinds)
    fields: dict[str, Any] = {"direction": direction, "state": state}
    if delivery_state is not None:
        fields["deliveryState"] = delivery_state
    for name, values in FIELD_VALUES.items():
        if name not in REQUIRED and draw(st.booleans()):
            continue  # an optional field left out
        fields[name] = draw(values)
    if wild:
        for name in draw(st.lists(st.sampled_from(sorted(fields)), max_size=2)):
            if draw(st.booleans()):
                fields.pop(name, None)
            else:
                fields[name] = draw(nested_too)
        extra = draw(st.dictionaries(ANY_TEXT, nested_too, max_size=2))
        fields.update({k: v for k, v in extra.items() if k not in fields})
    return fields


@st.composite
def callback_pairs(draw: st.DrawFn) -> list[tuple[str, str]]:
    """Query or form pairs: a callback's fields as strings, names repeated, text wild."""
    fields = draw(callback_fields(wild=False))
    pairs: list[tuple[str, str]] = []
    for name, value in fields.items():
        values = value if isinstance(value, list) else [value]
        pairs.extend((name, "" if item is None else str(item)) for item in values)
    is_wild: bool = draw(st.booleans())
    if pairs and is_wild:  # one value replaced by wild text
        index = draw(st.integers(0, len(pairs) - 1))
        pairs[index] = (pairs[index][0], draw(WILD_TEXT | ESCAPES))
    # Unknown names (kept in the event), now and then a repeated one (media may repeat, a
    # single-valued field may not).
    names = st.sampled_from(["x", "extra", "media"]) | ANY_TEXT.filter(
        lambda n: n not in SCALAR_FIELDS
    )
    if draw(st.integers(0, 9)) == 0:
        names = st.sampled_from(sorted(SCALAR_FIELDS))
    pairs.extend(draw(st.lists(st.tuples(names, WILD_TEXT | ESCAPES | ANY_TEXT), max_size=3)))
    return draw(st.permutations(pairs))


# -- request encodings -------------------------------------------------------------------------

CHARSETS = [
    "utf-8", "UTF-8", "latin-1", "iso-8859-1", "ascii", "utf-16", "utf-16-le", "utf-32", "cp1252",
    "utf-7", "unicode_escape", "raw_unicode_escape", "punycode", "idna", "rot13", "base64",
    "hex", "zlib", "bogus-charset", "",
]  # fmt: skip
JSON_TYPES = ["application/json", "application/cloudevents+json", "application/vnd.x+json"]
FORM = "application/x-www-form-urlencoded"
OTHER_TYPES = ["text/plain", "multipart/form-data; boundary=x", "application/xml", "", "*/*"]


# -- commands ----------------------------------------------------------------------------------

E164 = st.from_regex(r"\+1[2-9][0-9]{9}", fullmatch=True)
SECRET_MARK = "pw-Zq9-"  # every generated Dashboard password starts so: easy to search for

SEND_VALUES: dict[str, st.SearchStrategy[Any]] = {
    "to": E164 | st.text(min_size=1, max_size=20),
    "text": st.text(max_size=300),
    "media": st.none() | urls | st.lists(urls, max_size=3),
    "receiptRequested": st.sampled_from([None, "none", "all", "error"]),
    "callbackUrl": st.none() | urls,
    "callbackHttpMethod": st.sampled_from([None, "GET", "POST", "get", "post"]),
    "callbackTimeout": st.none() | st.integers(1, 10_000) | st.integers(1, 10_000).map(str),
    "fallbackUrl": st.none() | urls,
    "tag": st.none() | ANY_TEXT,
    "id": st.none() | st.text(min_size=1, max_size=60),
}
IMPORT_VALUES: dict[str, st.SearchStrategy[Any]] = {
    "applicationId": st.text(min_size=1, max_size=30),
    "name": st.text(min_size=1, max_size=30),
    "accountId": st.none() | st.from_regex(r"[0-9]{7}", fullmatch=True),
    "userName": st.none() | st.text(min_size=1, max_size=20),
    "password": st.none() | st.text(min_size=1, max_size=20).map(lambda p: SECRET_MARK + p),
    "id": st.none() | st.text(min_size=1, max_size=60),
}


def _command(
    required: dict[str, st.SearchStrategy[Any]], values: dict[str, st.SearchStrategy[Any]]
) -> st.SearchStrategy[dict[str, Any]]:
    @st.composite
    def build(draw: st.DrawFn) -> dict[str, Any]:
        body = {name: draw(strategy) for name, strategy in required.items()}
        for name, strategy in values.items():
            if draw(st.booleans()):
                body[name] = draw(strategy)
        for name in draw(st.lists(st.sampled_from(sorted(body)), max_size=2)):
            if draw(st.booleans()):
                body.pop(name, None)
            else:
                body[name] = draw(junk)
        if draw(st.integers(0, 9)) == 0:
            body[draw(ANY_TEXT)] = draw(json_values)  # an unknown field
        return body

    return build()


send_commands = _command({"from": E164}, SEND_VALUES)
import_commands = _command({"number": E164}, IMPORT_VALUES)
# AMQP message ids: short strings of at most 255 bytes, or none at all.
message_ids = (
    st.none()
    | st.just("")
    | st.text(st.characters(codec="utf-8"), min_size=1, max_size=80).filter(
        lambda t: len(t.encode()) <= 255
    )
)

"""The Catapult v1 message callback: one model for what arrives by GET query, form or JSON body.

Catapult v1 calls back once per event of a message (inbound received; outbound sending, sent,
error; delivery receipts) with the same flat field set, as JSON (POST) or as query parameters
(GET). ``fields_from_pairs`` turns query or form pairs into the same JSON-like object a POST body
holds, and ``parse_callback`` validates that object into a frozen ``MessageCallback`` with the
values normalised: E.164 numbers (short codes kept as digits), a tuple of media URLs from any of
the encodings the reference shows, an integer delivery code from a string or a number, an aware
time. Unknown fields are kept and never make a callback invalid. Anything wrong raises
``InvalidCallback`` naming each field and what is wrong with its value, and so does anything the
event could not carry verbatim (``check_publishable``: more than ``MAX_DEPTH`` levels, a lone
surrogate, an integer beyond 64 bits), so an accepted callback can always be published.

Pure code; no I/O here.
"""

from __future__ import annotations

import re
from collections.abc import Iterable
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Annotated, Any, Literal

from pydantic import (
    AfterValidator,
    BaseModel,
    BeforeValidator,
    ConfigDict,
    Field,
    ValidationError,
)

CallbackKind = Literal["sms", "mms"]
Direction = Literal["in", "out"]
MessageState = Literal["received", "queued", "sending", "sent", "error"]
DeliveryState = Literal["waiting", "delivered", "not-delivered"]

# Names of the fields a callback carries once; every other name may repeat in a query.
SCALAR_FIELDS = frozenset(
    {
        "eventType",
        "direction",
        "state",
        "messageId",
        "messageUri",
        "from",
        "to",
        "text",
        "applicationId",
        "time",
        "tag",
        "segmentCount",
        "deliveryState",
        "deliveryCode",
        "deliveryDescription",
    }
)
MEDIA_FIELD = "media"

_SEPARATORS = re.compile(r"[\s().\-]")
_DIGITS = re.compile(r"[0-9]+")
# One media value may hold several URLs: "a,b", "[a, b]". A comma only separates when a new URL
# follows, so a comma inside a URL's path or query never splits it.
_MEDIA_SPLIT = re.compile(r"\s*,\s*(?=[\"']?[A-Za-z][A-Za-z0-9+.\-]*://)")
_MAX_SHOWN = 80
# Levels of objects and lists a callback may nest, itself the first. Catapult's are flat (media is
# the second level); the event wraps the callback in three more, and orjson writes 254 at most.
MAX_DEPTH = 32
# What orjson writes as a JSON integer.
_INT_MIN, _INT_MAX = -(2**63), 2**64 - 1


@dataclass(frozen=True, slots=True)
class FieldProblem:
    """One thing wrong with a callback: which field, the value as received, and its fault."""

    field: str
    problem: str
    value: Any = None


class InvalidCallback(ValueError):
    """The callback cannot be accepted; ``problems`` names each bad field."""

    def __init__(self, problems: Iterable[FieldProblem]) -> None:
        self.problems = tuple(problems)
        super().__init__("; ".join(f"{p.field}: {p.problem}" for p in self.problems))


def shown(value: Any) -> Any:
    """``value`` as safe to echo in an answer: scalars as they are, long text cut short."""
    if value is None or isinstance(value, bool | int | float):
        return value
    text = value if isinstance(value, str) else repr(value)
    return text if len(text) <= _MAX_SHOWN else text[: _MAX_SHOWN - 1] + "…"


def normalise_number(value: str) -> str:
    """E.164 for a phone number; the digits of a short code (3 to 8 digits) as they are.

    Catapult v1 is a North American service: ten digits are a NANP number without its country
    code. A query string's ``+`` arrives decoded as a space when the sender did not escape it, so
    eleven to fifteen bare digits are taken as an E.164 number whose ``+`` was lost.
    """
    text = value.strip()
    has_plus = text.startswith("+")
    digits = text.removeprefix("+")
    # Most numbers are bare digits already: the regular expressions only for the others.
    if not (digits.isascii() and digits.isdigit()):
        digits = _SEPARATORS.sub("", digits)
        if not _DIGITS.fullmatch(digits):
            raise ValueError("is not a phone number (E.164 such as +13865245000, or a short code)")
    if has_plus:
        if digits.startswith("0") or not 7 <= len(digits) <= 15:
            raise ValueError("is not a valid E.164 number")
        return "+" + digits
    if 3 <= len(digits) <= 8:
        return digits
    if len(digits) == 10 and digits[0] not in "01":
        return "+1" + digits
    if 11 <= len(digits) <= 15 and not digits.startswith("0"):
        return "+" + digits
    raise ValueError("is not a phone number (E.164 such as +13865245000, or a short code)")


def _media_urls(value: Any) -> tuple[str, ...]:
    if value is None:
        return ()
    items = [value] if isinstance(value, str) else value
    if not isinstance(items, list | tuple):
        raise ValueError("must be a URL or a list of URLs")
    urls: list[str] = []
    for item in items:
        if not isinstance(item, str):
            raise ValueError(f"must hold URLs (strings), not {type(item).__name__}")
        text = item.strip()
        if text.startswith("[") and text.endswith("]"):
            text = text[1:-1]
        for part in _MEDIA_SPLIT.split(text):
            url = part.strip().strip("\"'").strip()
            if url:
                urls.append(url)
    for index, url in enumerate(urls):
        scheme, sep, rest = url.partition("://")
        if not sep or scheme.lower() not in ("http", "https") or not rest or rest[0] in "/?#":
            raise ValueError(f"item {index} ({shown(url)!r}) is not an http or https URL")
    return tuple(urls)


def _delivery_code(value: Any) -> Any:
    if value is None or (isinstance(value, int) and not isinstance(value, bool)):
        return value
    if isinstance(value, str):
        text = value.strip()
        if not text:
            return None
        if text.isascii() and text.isdigit():
            return int(text)
    raise ValueError("must be an integer or a string of digits")


def _blank_is_none(value: Any) -> Any:
    return None if isinstance(value, str) and not value.strip() else value


_EPOCH = datetime(1970, 1, 1, tzinfo=UTC)


def _utc(value: datetime | None) -> datetime | None:
    if value is not None and value.tzinfo is None:
        value = value.replace(tzinfo=UTC)
    # The time becomes the AMQP timestamp, an unsigned count of seconds: an earlier one could
    # never be published (and, spooled, would stop the drain for good). A later year is after the
    # epoch in any offset, and cheaper to see than comparing across time zones.
    if value is not None and value.year <= _EPOCH.year and value < _EPOCH:
        raise ValueError("is before 1970-01-01T00:00:00Z; Catapult sends no such time")
    return value


PhoneNumber = Annotated[str, AfterValidator(normalise_number)]
MediaUrls = Annotated[tuple[str, ...], BeforeValidator(_media_urls)]
# Bounded so that every accepted value also serialises (orjson writes 64-bit integers at most).
NonNegative = Annotated[int, Field(ge=0, le=2**31 - 1)]
DeliveryCode = Annotated[NonNegative | None, BeforeValidator(_delivery_code)]
OptionalTime = Annotated[datetime | None, BeforeValidator(_blank_is_none), AfterValidator(_utc)]


class MessageCallback(BaseModel):
    """One v1 message callback, normalised. Field names are Catapult's (``from`` is ``from_``)."""

    model_config = ConfigDict(frozen=True, extra="allow", populate_by_name=True)

    event_type: CallbackKind = Field(alias="eventType")
    direction: Direction
    state: MessageState
    message_id: str = Field(alias="messageId", min_length=1, max_length=256)
    message_uri: str | None = Field(default=None, alias="messageUri")
    from_: PhoneNumber = Field(alias="from")
    to: PhoneNumber
    text: str = ""
    application_id: str | None = Field(default=None, alias="applicationId")
    time: OptionalTime = None
    tag: str | None = None
    segment_count: Annotated[NonNegative | None, BeforeValidator(_blank_is_none)] = Field(
        default=None, alias="segmentCount"
    )
    media: MediaUrls = ()
    delivery_state: Annotated[DeliveryState | None, BeforeValidator(_blank_is_none)] = Field(
        default=None, alias="deliveryState"
    )
    delivery_code: DeliveryCode = Field(default=None, alias="deliveryCode")
    delivery_description: str | None = Field(default=None, alias="deliveryDescription")

    @property
    def is_receipt(self) -> bool:
        """A delivery receipt: an outbound event that reports the handset's final answer."""
        return self.direction == "out" and self.delivery_state in ("delivered", "not-delivered")


def fields_from_pairs(pairs: Iterable[tuple[str, str]]) -> dict[str, Any]:
    """Query or form pairs as the object a JSON body would hold.

    A name given once keeps its string; ``media`` and unknown names given several times become
    lists in arrival order. A known single-valued field given twice is invalid, because picking
    one of the values would be a guess.
    """
    fields: dict[str, Any] = {}
    repeated: dict[str, int] = {}
    for name, value in pairs:
        if name not in fields:
            fields[name] = value
            continue
        if name in SCALAR_FIELDS:
            repeated[name] = repeated.get(name, 1) + 1
            continue
        previous = fields[name]
        if isinstance(previous, list):
            previous.append(value)
        else:
            fields[name] = [previous, value]
    if repeated:
        raise InvalidCallback(
            FieldProblem(name, f"is given {count} times; it must be given once")
            for name, count in repeated.items()
        )
    return fields


def _problem_text(error: Any) -> str:
    message = str(error["msg"])
    if error["type"] == "missing":
        return "is required"
    if error["type"] == "value_error":
        return message.removeprefix("Value error, ")
    return message[0].lower() + message[1:] if message else "is invalid"


def _field_name(loc: tuple[int | str, ...]) -> str:
    name = str(loc[0]) if loc else "(callback)"
    return name + "".join(f"[{part}]" for part in loc[1:] if isinstance(part, int))


def is_text(value: str) -> bool:
    """True unless ``value`` holds a lone surrogate (no UTF-8 can carry it: not Unicode text)."""
    if value.isascii():
        return True
    try:
        value.encode("utf-8")
    except UnicodeEncodeError:
        return False
    return True


def _fault(value: Any) -> str | None:
    """What keeps one top-level field's value from being written as JSON, or None.

    Iterative, so that no depth of input can exhaust the stack; it stops at the first fault.
    """
    stack: list[tuple[Any, int]] = [(value, 2)]
    while stack:
        item, level = stack.pop()
        kind = type(item)
        if kind is str:
            if not is_text(item):
                return "holds a lone surrogate, which is not Unicode text"
        elif kind is dict or kind is list:
            if level > MAX_DEPTH:
                return f"is nested deeper than {MAX_DEPTH} levels (objects and lists)"
            if kind is dict:
                for key in item:
                    if type(key) is not str or not is_text(key):
                        return "holds a name that is not Unicode text"
                children = item.values()
            else:
                children = item
            stack.extend((child, level + 1) for child in children)
        elif kind is int:
            if not _INT_MIN <= item <= _INT_MAX:
                return "holds an integer beyond 64 bits"
        elif not (kind is float or kind is bool or item is None):
            return f"holds a {kind.__name__}, which is not a JSON value"
    return None


def check_publishable(fields: dict[Any, Any]) -> None:
    """Raise ``InvalidCallback`` unless the callback can be written into its event as it came.

    The event carries the callback verbatim (``data.raw``), so every accepted callback must be
    JSON that orjson writes: text without lone surrogates, at most ``MAX_DEPTH`` levels,
    integers within 64 bits. Most fields are short ASCII strings: they cost one ``isascii``.
    """
    problems: list[FieldProblem] = []
    for name, value in fields.items():
        kind = type(value)
        if type(name) is str and name.isascii():
            if kind is str:
                if value.isascii():
                    continue
            elif kind is int and _INT_MIN <= value <= _INT_MAX:
                continue
        elif type(name) is not str or not is_text(name):
            problems.append(FieldProblem("(body)", "holds a field name that is not Unicode text"))
            continue
        fault = _fault(value)
        if fault is not None:
            problems.append(FieldProblem(name, fault))
    if problems:
        raise InvalidCallback(problems)


def parse_callback(fields: Any) -> MessageCallback:
    """Validate one callback object; raise ``InvalidCallback`` naming every bad field.

    An accepted callback can always be published: see ``check_publishable``.
    """
    if not isinstance(fields, dict):
        raise InvalidCallback(
            [
                FieldProblem(
                    "(body)",
                    "must be one JSON object (Catapult v1 sends one event per request), "
                    f"not {'an array' if isinstance(fields, list) else type(fields).__name__}",
                )
            ]
        )
    check_publishable(fields)
    try:
        callback = MessageCallback.model_validate(fields)
    except ValidationError as exc:
        problems = []
        for error in exc.errors():
            name = _field_name(error["loc"])
            value = fields.get(str(error["loc"][0])) if error["loc"] else None
            problems.append(FieldProblem(name, _problem_text(error), shown(value)))
        raise InvalidCallback(problems) from exc
    _check_consistency(callback)
    return callback


def _check_consistency(callback: MessageCallback) -> None:
    if callback.direction == "in" and callback.state != "received":
        raise InvalidCallback(
            [
                FieldProblem(
                    "state", "an inbound message callback carries state 'received'", callback.state
                )
            ]
        )
    if callback.direction == "out" and callback.state == "received":
        raise InvalidCallback(
            [
                FieldProblem(
                    "state",
                    "an outbound message callback carries queued, sending, sent or error",
                    callback.state,
                )
            ]
        )

"""Validation of request bodies, exactly as Catapult v1 answered bad ones.

Pure functions from decoded JSON to frozen request values; anything wrong raises a ``Problem`` with
the real code (``missing-property``, ``blank-property``, ``validation-error``,
``callback-invalid-url``, ``media-invalid-url``). Optional fields sent as JSON ``null`` count as
absent (the official Python SDK sends every optional field, ``null`` when unset). Unknown fields
are ignored. No I/O and no state here: whether a number is owned is the handlers' business.
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field
from typing import Any

from yarl import URL

from bridge.simulator import errors
from bridge.simulator.errors import Problem
from bridge.simulator.paging import natural

MAX_TEXT = 2048
MAX_CALLBACK_TIMEOUT_MS = 10_000
RECEIPTS = ("none", "all", "error")
METHODS = ("GET", "POST")
E164 = re.compile(r"^\+[1-9][0-9]{6,14}$")
# North American numbers (+1) have ten digits after the country code; US and Canadian short
# codes have five or six digits.
NANP = re.compile(r"^\+1[0-9]{10}$")
SHORT_CODE = re.compile(r"^[0-9]{5,6}$")


def is_phone_number(value: str) -> bool:
    """A recipient Catapult v1 can send to: an E.164 number (a +1 one in full) or a short code."""
    if SHORT_CODE.fullmatch(value):
        return True
    if not E164.fullmatch(value):
        return False
    return not value.startswith("+1") or NANP.fullmatch(value) is not None


def is_http_url(value: str) -> bool:
    """An absolute http(s) URL whose host a connection can be opened to (IDNA-encodable)."""
    try:
        url = URL(value)
        host = url.host  # decoding a malformed ``xn--`` label raises here
        if url.scheme not in ("http", "https") or not host:
            return False
        host.encode("idna")  # an empty or over-long label only fails when connecting
    except (ValueError, TypeError):  # UnicodeError is a ValueError
        return False
    return True


def _object(resource: str, raw: object) -> dict[str, Any]:
    if not isinstance(raw, dict):
        raise errors.validation_error(f"The '{resource}' resource must be a JSON object")
    return raw


def _string(
    resource: str, body: dict[str, Any], name: str, *, required: bool = False, blank: bool = True
) -> str | None:
    value = body.get(name)
    if value is None:
        if required:
            raise errors.missing_property(resource, name)
        return None
    if not isinstance(value, str):
        raise errors.wrong_type(resource, name, "a string")
    if not blank and not value.strip():
        raise errors.blank_property(resource, name)
    return value


def _required(resource: str, body: dict[str, Any], name: str) -> str:
    """A required, non-blank string property."""
    value = _string(resource, body, name, required=True, blank=False)
    if value is None:  # unreachable: _string raised; keeps the type narrow without assert
        raise errors.missing_property(resource, name)
    return value


def _url(resource: str, body: dict[str, Any], name: str) -> str | None:
    value = _string(resource, body, name)
    if value is not None and not is_http_url(value):
        raise errors.invalid_callback_url(value)
    return value


def _as_int(value: object) -> int | None:
    """An integer given as a JSON integer, an integral number or a numeric string; else None."""
    if isinstance(value, bool):
        return None
    if isinstance(value, int):
        return value
    if isinstance(value, float) and value.is_integer():
        return int(value)
    if isinstance(value, str):
        return natural(value.strip())
    return None


def _millis(body: dict[str, Any], name: str, *, what: str, resource: str) -> int | None:
    """A timeout in ms: an integer or a numeric string (the docs' examples send ``"2000"``)."""
    raw = body.get(name)
    if raw is None:
        return None
    value = _as_int(raw)
    if value is None:
        raise errors.wrong_type(resource, name, "an integer number of milliseconds")
    if value <= 0:
        raise errors.validation_error(f"{what} must be greater than 0")
    if value > MAX_CALLBACK_TIMEOUT_MS:
        raise errors.validation_error(f"{what} must not surpass {MAX_CALLBACK_TIMEOUT_MS}")
    return value


def _method(resource: str, body: dict[str, Any], name: str) -> str | None:
    value = _string(resource, body, name)
    if value is None:
        return None
    if value.upper() not in METHODS:
        raise errors.not_one_of(resource, name, METHODS)
    return value.upper()


@dataclass(frozen=True, slots=True)
class MessageRequest:
    from_: str
    to: str
    text: str
    media: tuple[str, ...] = ()
    receipt_requested: str = "none"
    callback_url: str | None = None
    callback_http_method: str | None = None
    callback_timeout: int | None = None
    fallback_url: str | None = None
    tag: str | None = None


def parse_message(raw: object) -> MessageRequest:
    body = _object("message", raw)
    from_ = _required("message", body, "from")
    to = _required("message", body, "to")
    media = _media(body.get("media"))
    text = _string("message", body, "text", required=not media)
    if text is None:
        text = ""
    elif not media and not text.strip():
        raise errors.blank_property("message", "text")
    if len(text) > MAX_TEXT:
        raise errors.text_too_long()
    if not is_phone_number(to):
        raise errors.validation_error("Invalid phone number", ("to", to))
    receipt = _string("message", body, "receiptRequested") or "none"
    if receipt not in RECEIPTS:
        raise errors.not_one_of("message", "receiptRequested", RECEIPTS)
    if media and receipt != "none":
        raise errors.validation_error("Can not send media and receiptRequested in the same request")
    raw_timeout = body.get("callbackTimeout")
    timeout = None if raw_timeout is None else _as_int(raw_timeout)
    if raw_timeout is not None:
        if timeout is None:
            raise errors.wrong_type("message", "callbackTimeout", "an integer number of ms")
        if timeout <= 0:
            raise errors.validation_error(
                "The 'message' resource property 'callbackTimeout' must be greater than '0'"
            )
        if timeout > MAX_CALLBACK_TIMEOUT_MS:
            raise errors.exceeds_limit("message", "callbackTimeout", MAX_CALLBACK_TIMEOUT_MS)
    return MessageRequest(
        from_=from_,
        to=to,
        text=text,
        media=media,
        receipt_requested=receipt,
        callback_url=_url("message", body, "callbackUrl"),
        callback_http_method=_method("message", body, "callbackHttpMethod"),
        callback_timeout=timeout,
        fallback_url=_url("message", body, "fallbackUrl"),
        tag=_string("message", body, "tag"),
    )


def _media(value: object) -> tuple[str, ...]:
    if value is None:
        return ()
    items = [value] if isinstance(value, str) else value
    if not isinstance(items, list) or not all(isinstance(item, str) for item in items):
        raise errors.wrong_type("message", "media", "a URL or a list of URLs")
    for item in items:
        if not is_http_url(item):
            raise errors.media_invalid_url(item)
    return tuple(items)


def segment_count(text: str, *, is_mms: bool) -> int:
    """How many SMS segments ``text`` takes (GSM 160/153, otherwise UCS-2 70/67); MMS is 1."""
    if is_mms or not text:
        return 1
    single, part = (160, 153) if text.isascii() else (70, 67)
    return 1 if len(text) <= single else -(-len(text) // part)


# Applications ---------------------------------------------------------------------------------

# JSON property -> (record attribute, kind)
_APPLICATION_FIELDS: dict[str, tuple[str, str]] = {
    "name": ("name", "string"),
    "incomingMessageUrl": ("incoming_message_url", "url"),
    "incomingMessageFallbackUrl": ("incoming_message_fallback_url", "url"),
    "incomingMessageUrlCallbackTimeout": ("incoming_message_url_callback_timeout", "sms-timeout"),
    "incomingCallUrl": ("incoming_call_url", "url"),
    "incomingCallFallbackUrl": ("incoming_call_fallback_url", "url"),
    "incomingCallUrlCallbackTimeout": ("incoming_call_url_callback_timeout", "call-timeout"),
    "callbackHttpMethod": ("callback_http_method", "method"),
    "autoAnswer": ("auto_answer", "bool"),
}


def parse_application(raw: object, *, is_update: bool) -> dict[str, Any]:
    """Record attributes to set; on create ``name`` is required. Nulls leave a field as it is."""
    body = _object("application", raw)
    changes: dict[str, Any] = {}
    for prop, (attribute, kind) in _APPLICATION_FIELDS.items():
        value: Any
        if kind == "string":
            value = _string("application", body, prop, required=not is_update, blank=False)
        elif kind == "url":
            value = _string("application", body, prop)
            if value is not None and not is_http_url(value):
                raise errors.validation_error(f"Invalid {prop} URL. {value} is not a valid URL")
        elif kind in ("sms-timeout", "call-timeout"):
            what = "Incoming SMS" if kind == "sms-timeout" else "Incoming Call"
            value = _millis(body, prop, what=f"{what} callback timeout", resource="application")
        elif kind == "method":
            method = _method("application", body, prop)
            value = None if method is None else method.lower()
        else:
            value = body.get(prop)
            if value is not None and not isinstance(value, bool):
                raise errors.wrong_type("application", prop, "true or false")
        if value is not None:
            changes[attribute] = value
    return changes


def check_application(incoming_message_url: str | None, fallback_url: str | None) -> None:
    """Rules on the application as a whole (after an update is merged)."""
    if fallback_url is not None and incoming_message_url is None:
        raise errors.validation_error(
            "Your application must have a sms callback URL in order to have a fallback URL."
        )


# Phone numbers --------------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class DashboardProvider:
    account_id: str
    user_name: str
    password: str = field(repr=False)


@dataclass(frozen=True, slots=True)
class NumberRequest:
    number: str
    name: str | None = None
    application_id: str | None = None
    fallback_number: str | None = None
    provider: DashboardProvider | None = None


def parse_number(raw: object) -> NumberRequest:
    body = _object("phoneNumber", raw)
    number = _required("phoneNumber", body, "number")
    if not E164.fullmatch(number):
        raise errors.validation_error("Invalid phone number", ("number", number))
    provider_raw = body.get("provider")
    provider = None if provider_raw is None else _provider(provider_raw)
    return NumberRequest(
        number=number,
        name=_string("phoneNumber", body, "name"),
        application_id=_string("phoneNumber", body, "applicationId"),
        fallback_number=_string("phoneNumber", body, "fallbackNumber"),
        provider=provider,
    )


def parse_number_update(raw: object) -> dict[str, Any]:
    body = _object("phoneNumber", raw)
    changes: dict[str, Any] = {}
    for prop, attribute in (
        ("name", "name"),
        ("applicationId", "application_id"),
        ("fallbackNumber", "fallback_number"),
    ):
        value = _string("phoneNumber", body, prop)
        if value is not None:
            changes[attribute] = value
    return changes


def _provider(raw: object) -> DashboardProvider:
    body = _object("provider", raw)
    name = _required("provider", body, "providerName")
    if name != "bandwidth-dashboard":
        raise errors.not_one_of("provider", "providerName", ("bandwidth-dashboard",))
    properties = _object("provider", body.get("properties") or {})
    if isinstance(properties.get("accountId"), int) and not isinstance(
        properties["accountId"], bool
    ):
        properties = {**properties, "accountId": str(properties["accountId"])}
    account_id = _required("provider", properties, "accountId")
    user_name = _required("provider", properties, "userName")
    password = _required("provider", properties, "password")
    return DashboardProvider(account_id=account_id, user_name=user_name, password=password)


__all__ = [
    "DashboardProvider",
    "MessageRequest",
    "NumberRequest",
    "Problem",
    "check_application",
    "parse_application",
    "parse_message",
    "parse_number",
    "parse_number_update",
    "segment_count",
]

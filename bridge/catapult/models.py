"""Typed requests to and results from Catapult v1, as frozen pydantic models.

Python names are snake_case; the wire names are Catapult's camelCase, given as explicit aliases
(``from_`` is ``from`` on the wire). Requests (``OutboundMessage``, ``ApplicationFields``,
``ImportNumberRequest``) forbid unknown fields so a typo fails where it is made; resources read from
Catapult (``Message``, ``PhoneNumber``, ``Application``) ignore fields they do not know, because the
API grew fields over the years and a reader must not break on them. ``deliveryCode`` arrives as a
string or an integer and is read as an integer. ``BatchItem`` carries an exception, so it is a
frozen dataclass rather than a model. No I/O here.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime
from typing import Annotated, Any, Literal

from pydantic import BaseModel, BeforeValidator, ConfigDict, Field, SecretStr

from bridge.catapult.errors import CatapultError

HttpMethod = Literal["GET", "POST"]
ReceiptRequested = Literal["none", "all", "error"]
CallbackTimeoutMs = Annotated[int, Field(ge=1, le=10_000)]

DASHBOARD_PROVIDER = "bandwidth-dashboard"


def _int_or_none(value: Any) -> Any:
    """``"0"`` and ``0`` both mean 0; blank strings mean absent."""
    if isinstance(value, str):
        stripped = value.strip()
        return int(stripped) if stripped else None
    return value


def _tuple_of_urls(value: Any) -> Any:
    """``media`` may be one URL or a list of them; absent or null is no media."""
    if value is None:
        return ()
    if isinstance(value, str):
        return (value,)
    return value


LooseInt = Annotated[int | None, BeforeValidator(_int_or_none)]
MediaUrls = Annotated[tuple[str, ...], BeforeValidator(_tuple_of_urls)]


class _Request(BaseModel):
    model_config = ConfigDict(frozen=True, extra="forbid", populate_by_name=True)

    def to_wire(self) -> dict[str, Any]:
        """The JSON body: wire names, unset fields left out."""
        return self.model_dump(mode="json", by_alias=True, exclude_none=True)


class _Resource(BaseModel):
    model_config = ConfigDict(frozen=True, extra="ignore", populate_by_name=True)


class OutboundMessage(_Request):
    """One message to send (``POST /messages``); also one item of a batch."""

    from_: str = Field(alias="from")
    to: str
    text: str | None = None
    media: tuple[str, ...] | None = None
    receipt_requested: ReceiptRequested | None = Field(default=None, alias="receiptRequested")
    callback_url: str | None = Field(default=None, alias="callbackUrl")
    callback_http_method: HttpMethod | None = Field(default=None, alias="callbackHttpMethod")
    callback_timeout: CallbackTimeoutMs | None = Field(default=None, alias="callbackTimeout")
    fallback_url: str | None = Field(default=None, alias="fallbackUrl")
    tag: str | None = None


class Account(_Resource):
    """``GET /account``: the balance of the account (what SDKs called to check credentials)."""

    balance: str | None = None
    account_type: str | None = Field(default=None, alias="accountType")


class MessageRef(_Resource):
    """A message Catapult accepted: its id and the URL it lives at."""

    id: str
    location: str


@dataclass(frozen=True, slots=True)
class BatchItem:
    """The outcome of one item of a batch send: exactly one of ``ref`` and ``error`` is set."""

    ref: MessageRef | None = None
    error: CatapultError | None = None

    def __post_init__(self) -> None:
        if (self.ref is None) == (self.error is None):
            raise ValueError("a batch item has exactly one of ref and error")

    @property
    def is_accepted(self) -> bool:
        return self.ref is not None


class Message(_Resource):
    """A message resource (``GET /messages/{id}`` and the items of a message list)."""

    id: str
    from_: str = Field(alias="from")
    to: str
    direction: str | None = None
    text: str | None = None
    media: MediaUrls = ()
    state: str | None = None
    time: datetime | None = None
    callback_url: str | None = Field(default=None, alias="callbackUrl")
    callback_http_method: str | None = Field(default=None, alias="callbackHttpMethod")
    callback_timeout: LooseInt = Field(default=None, alias="callbackTimeout")
    fallback_url: str | None = Field(default=None, alias="fallbackUrl")
    tag: str | None = None
    receipt_requested: str | None = Field(default=None, alias="receiptRequested")
    delivery_state: str | None = Field(default=None, alias="deliveryState")
    delivery_code: LooseInt = Field(default=None, alias="deliveryCode")
    delivery_description: str | None = Field(default=None, alias="deliveryDescription")
    segment_count: LooseInt = Field(default=None, alias="segmentCount")


class DashboardCredentials(_Request):
    """``provider.properties`` of a Dashboard import. The password stays a ``SecretStr``."""

    account_id: str = Field(alias="accountId")
    user_name: str = Field(alias="userName")
    password: SecretStr

    def to_wire(self) -> dict[str, Any]:
        # The one place the password is revealed: the request body sent to Catapult.
        return {
            "accountId": self.account_id,
            "userName": self.user_name,
            "password": self.password.get_secret_value(),
        }


class ImportNumberRequest(_Request):
    """``POST /phoneNumbers`` with provider ``bandwidth-dashboard``: one number per request."""

    number: str
    application_id: str | None = Field(default=None, alias="applicationId")
    name: str | None = None
    credentials: DashboardCredentials

    def to_wire(self) -> dict[str, Any]:
        body: dict[str, Any] = {"number": self.number}
        if self.application_id is not None:
            body["applicationId"] = self.application_id
        if self.name is not None:
            body["name"] = self.name
        body["provider"] = {
            "providerName": DASHBOARD_PROVIDER,
            "properties": self.credentials.to_wire(),
        }
        return body


class NumberRef(_Resource):
    id: str
    location: str


class PhoneNumber(_Resource):
    """A phone number resource (``GET /phoneNumbers/{id or number}``)."""

    id: str
    number: str
    name: str | None = None
    national_number: str | None = Field(default=None, alias="nationalNumber")
    city: str | None = None
    state: str | None = None
    application_id: str | None = Field(default=None, alias="applicationId")
    application: str | None = None
    fallback_number: str | None = Field(default=None, alias="fallbackNumber")
    price: str | None = None
    created_time: datetime | None = Field(default=None, alias="createdTime")
    number_state: str | None = Field(default=None, alias="numberState")


class ApplicationFields(_Request):
    """The messaging fields of an application, for create (``name`` required) and update."""

    name: str | None = None
    incoming_message_url: str | None = Field(default=None, alias="incomingMessageUrl")
    incoming_message_fallback_url: str | None = Field(
        default=None, alias="incomingMessageFallbackUrl"
    )
    callback_http_method: HttpMethod | None = Field(default=None, alias="callbackHttpMethod")
    incoming_message_url_callback_timeout_ms: CallbackTimeoutMs | None = Field(
        default=None, alias="incomingMessageUrlCallbackTimeout"
    )


class ApplicationRef(_Resource):
    id: str
    location: str


class Application(_Resource):
    """An application resource (``GET /applications/{id}``)."""

    id: str
    name: str | None = None
    incoming_message_url: str | None = Field(default=None, alias="incomingMessageUrl")
    incoming_message_fallback_url: str | None = Field(
        default=None, alias="incomingMessageFallbackUrl"
    )
    callback_http_method: str | None = Field(default=None, alias="callbackHttpMethod")
    incoming_message_url_callback_timeout_ms: LooseInt = Field(
        default=None, alias="incomingMessageUrlCallbackTimeout"
    )
    auto_answer: bool | None = Field(default=None, alias="autoAnswer")


__all__ = [
    "DASHBOARD_PROVIDER",
    "Application",
    "ApplicationFields",
    "ApplicationRef",
    "BatchItem",
    "DashboardCredentials",
    "HttpMethod",
    "ImportNumberRequest",
    "Message",
    "MessageRef",
    "NumberRef",
    "OutboundMessage",
    "PhoneNumber",
    "ReceiptRequested",
]

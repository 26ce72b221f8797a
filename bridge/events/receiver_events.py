"""The receiver's canonical events: their ``data`` models, and how a callback becomes one.

``build_event`` turns a validated ``MessageCallback`` into a ``CanonicalEvent``: the CloudEvent
(type, deterministic id, subject = the Catapult message id, ``correlationid`` = the command id the
worker put in ``tag``), the routing key and the AMQP headers a consumer routes on without parsing
the body. Which callback becomes which event:

    direction in                          message.received       inbound.sms | inbound.mms
    direction out, state queued|sending   message.sending        outbound.status.sending
    direction out, state sent             message.sent           outbound.status.sent
    direction out, state error            message.failed         outbound.status.failed
    deliveryState delivered               message.delivered      outbound.receipt.delivered
    deliveryState not-delivered           message.not-delivered  outbound.receipt.not-delivered

The event id hashes what identifies one event of one message (message id, kind, direction, state,
delivery state and code), never the time or the text: the same callback delivered twice (to the
callback URL, then to the fallback URL) gets the same id, and each state transition a new one.

``SCHEMA_MODELS`` lists the full event models (envelope and typed ``data``) for the JSON Schemas
in ``schemas/``. Pure code; no I/O here.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field
from pydantic.alias_generators import to_camel
from pydantic_core import to_jsonable_python

from bridge.events.callbacks import CallbackKind, MessageCallback
from bridge.events.cloudevents import CloudEvent, EventType, deterministic_id
from bridge.events.envelope import (
    INBOUND_MMS,
    INBOUND_SMS,
    OUTBOUND_RECEIPT_PREFIX,
    OUTBOUND_STATUS_PREFIX,
    Envelope,
)
from bridge.events.tag import ParsedTag, decode_tag

# Versioned namespace of the id hash: changing what the id covers changes this label.
_ID_NAMESPACE = "catapult-v1-message-callback/1"
# A command id becomes the AMQP correlation_id, a short string; the worker's ids all fit.
_AMQP_SHORTSTR_BYTES = 255


class _Data(BaseModel):
    model_config = ConfigDict(
        frozen=True, extra="forbid", alias_generator=to_camel, populate_by_name=True
    )

    message_id: str = Field(description="Catapult's message id (m-...), also the event subject")
    message_uri: str | None = Field(default=None, description="The message resource in Catapult")
    message_type: CallbackKind = Field(description="sms or mms (Catapult's eventType)")
    from_: str = Field(alias="from", description="E.164 number, or the digits of a short code")
    to: str = Field(description="E.164 number, or the digits of a short code")
    text: str = ""
    media: list[str] = Field(default_factory=list, description="Media URLs, in callback order")
    application_id: str | None = None
    time: datetime | None = Field(default=None, description="Catapult's time of the event")
    segment_count: int | None = None
    tag: str | None = Field(
        default=None, description="The sender's own tag, without the bridge's command id"
    )
    command_id: str | None = Field(
        default=None, description="The send command this message came from (also correlationid)"
    )
    raw: dict[str, Any] = Field(
        description="The callback exactly as it came: JSON body, or query/form fields "
        "(a repeated name as a list)"
    )


class MessageReceivedData(_Data):
    """``data`` of message.received: an SMS or MMS sent to one of the account's numbers."""

    direction: Literal["in"] = "in"
    state: Literal["received"] = "received"


class MessageStatusData(_Data):
    """``data`` of message.sending / sent / failed: a state transition of an outbound message."""

    direction: Literal["out"] = "out"
    state: Literal["queued", "sending", "sent", "error"]
    delivery_state: Literal["waiting"] | None = None
    delivery_code: int | None = None
    delivery_description: str | None = None


class DeliveryReceiptData(_Data):
    """``data`` of message.delivered / not-delivered: the carrier's receipt for an outbound SMS."""

    direction: Literal["out"] = "out"
    state: Literal["queued", "sending", "sent", "error"]
    delivery_state: Literal["delivered", "not-delivered"]
    delivery_code: int | None = Field(default=None, description="Catapult's delivery code")
    delivery_description: str | None = None


@dataclass(frozen=True, slots=True)
class CanonicalEvent:
    """One event ready to publish: the CloudEvent, where it goes and how consumers route it."""

    event: CloudEvent
    routing_key: str
    headers: dict[str, str]

    @property
    def id(self) -> str:
        return self.event.id

    def to_envelope(self) -> Envelope:
        return self.event.to_envelope(routing_key=self.routing_key, headers=self.headers)


_STATUS = {
    "queued": (EventType.MESSAGE_SENDING, "sending"),
    "sending": (EventType.MESSAGE_SENDING, "sending"),
    "sent": (EventType.MESSAGE_SENT, "sent"),
    "error": (EventType.MESSAGE_FAILED, "failed"),
}
_RECEIPT = {
    "delivered": (EventType.MESSAGE_DELIVERED, "delivered"),
    "not-delivered": (EventType.MESSAGE_NOT_DELIVERED, "not-delivered"),
}


def classify(callback: MessageCallback) -> tuple[EventType, str]:
    """The event type and routing key of a callback (see the table in the module docstring)."""
    if callback.direction == "in":
        return (
            EventType.MESSAGE_RECEIVED,
            INBOUND_MMS if callback.event_type == "mms" else INBOUND_SMS,
        )
    if callback.delivery_state in _RECEIPT:
        event_type, word = _RECEIPT[callback.delivery_state]
        return event_type, f"{OUTBOUND_RECEIPT_PREFIX}.{word}"
    event_type, word = _STATUS[callback.state]
    return event_type, f"{OUTBOUND_STATUS_PREFIX}.{word}"


def event_id(callback: MessageCallback) -> str:
    """Deterministic: same callback, same id; another state of the same message, another id."""
    return deterministic_id(
        _ID_NAMESPACE,
        callback.message_id,
        callback.event_type,
        callback.direction,
        callback.state,
        callback.delivery_state or "",
        "" if callback.delivery_code is None else str(callback.delivery_code),
    )


def _parse_tag(tag: str | None) -> ParsedTag:
    """The command id and user tag; an id too long for AMQP is not the worker's: a user tag."""
    parsed = decode_tag(tag)
    command_id = parsed.command_id
    if command_id is not None and len(command_id.encode("utf-8", "surrogatepass")) > (
        _AMQP_SHORTSTR_BYTES
    ):
        return ParsedTag(None, tag)
    return parsed


def _data(
    callback: MessageCallback, raw: dict[str, Any], event_type: EventType, parsed: ParsedTag
) -> dict[str, Any]:
    """The event's ``data``: what its model (``EVENT_MODELS``) dumps in JSON mode, by alias,
    without None values.

    Written out rather than validated and dumped, which costs a good part of a callback: the
    callback is validated already, so every value fits its data model as it is (a test holds the
    two ways equal, and the body to the JSON Schemas).
    """
    data: dict[str, Any] = {
        "messageId": callback.message_id,
        "messageUri": callback.message_uri,
        "messageType": callback.event_type,
        "from": callback.from_,
        "to": callback.to,
        "text": callback.text,
        "media": list(callback.media),
        "applicationId": callback.application_id,
        "time": None if callback.time is None else to_jsonable_python(callback.time),
        "segmentCount": callback.segment_count,
        "tag": parsed.user_tag,
        "commandId": parsed.command_id,
        "raw": raw,
        "direction": callback.direction,
        "state": callback.state,
    }
    if event_type is not EventType.MESSAGE_RECEIVED:
        data["deliveryState"] = callback.delivery_state
        data["deliveryCode"] = callback.delivery_code
        data["deliveryDescription"] = callback.delivery_description
    return {name: value for name, value in data.items() if value is not None}


def build_event(
    callback: MessageCallback, raw: dict[str, Any], *, source: str, received_at: datetime
) -> CanonicalEvent:
    """The canonical event of one validated callback; ``raw`` is the callback as it came."""
    event_type, routing_key = classify(callback)
    parsed = _parse_tag(callback.tag)
    command_id = parsed.command_id
    event = CloudEvent(
        id=event_id(callback),
        source=source,
        type=event_type,
        subject=callback.message_id,
        time=callback.time or received_at,
        correlationid=command_id,
        data=_data(callback, raw, event_type, parsed),
    )
    # What a consumer routes on without parsing the body (to_envelope adds the ce-* attributes).
    headers: dict[str, str] = {
        "catapult-event-type": callback.event_type,
        "direction": callback.direction,
        "state": callback.state,
    }
    if callback.delivery_state is not None:
        headers["delivery-state"] = callback.delivery_state
    if command_id is not None:
        headers["command-id"] = command_id
    return CanonicalEvent(event=event, routing_key=routing_key, headers=headers)


class _Event(BaseModel):
    """The structured CloudEvents 1.0 JSON body of a receiver event."""

    model_config = ConfigDict(frozen=True, extra="forbid")

    specversion: Literal["1.0"] = "1.0"
    id: str = Field(description="Deterministic: a repeated callback has the same id")
    source: str
    subject: str = Field(description="The Catapult message id")
    time: datetime
    datacontenttype: Literal["application/json"] = "application/json"
    correlationid: str | None = Field(
        default=None, description="The command id of the send command this message came from"
    )


class MessageReceivedEvent(_Event):
    type: Literal[EventType.MESSAGE_RECEIVED]
    data: MessageReceivedData


class MessageSendingEvent(_Event):
    type: Literal[EventType.MESSAGE_SENDING]
    data: MessageStatusData


class MessageSentEvent(_Event):
    type: Literal[EventType.MESSAGE_SENT]
    data: MessageStatusData


class MessageFailedEvent(_Event):
    type: Literal[EventType.MESSAGE_FAILED]
    data: MessageStatusData


class MessageDeliveredEvent(_Event):
    type: Literal[EventType.MESSAGE_DELIVERED]
    data: DeliveryReceiptData


class MessageNotDeliveredEvent(_Event):
    type: Literal[EventType.MESSAGE_NOT_DELIVERED]
    data: DeliveryReceiptData


EVENT_MODELS: dict[EventType, type[_Event]] = {
    EventType.MESSAGE_RECEIVED: MessageReceivedEvent,
    EventType.MESSAGE_SENDING: MessageSendingEvent,
    EventType.MESSAGE_SENT: MessageSentEvent,
    EventType.MESSAGE_FAILED: MessageFailedEvent,
    EventType.MESSAGE_DELIVERED: MessageDeliveredEvent,
    EventType.MESSAGE_NOT_DELIVERED: MessageNotDeliveredEvent,
}


def _stem(event_type: EventType) -> str:
    """``io.catapult-bridge.message.not-delivered.v1`` -> ``event-message-not-delivered``."""
    name = str(event_type).removeprefix("io.catapult-bridge.").rsplit(".", 1)[0]
    return "event-" + name.replace(".", "-")


# File stem -> model of the whole event (envelope and typed data), for ``bridge schemas``.
SCHEMA_MODELS: dict[str, type[BaseModel]] = {_stem(t): m for t, m in EVENT_MODELS.items()}

"""The callback events of the v1 platform, and the status walk of an outbound message.

An outbound message walks ``sending`` then ``sent`` (or ``error``); with ``receiptRequested``
``all`` a further receipt event carries ``deliveryState`` ``delivered`` (code 0) or
``not-delivered`` (a code from the table); with ``error`` only the failure receipts are sent; MMS
gets no receipt. Which way a message goes is the ``Outcome`` configured for its destination
(default: delivered).

Events are single JSON objects (never arrays). For ``GET`` callbacks the same fields become query
parameters, with one ``media=`` parameter per URL. Pure functions; no I/O here.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Literal

from bridge.simulator.store import MessageRecord

DELIVERY_DESCRIPTIONS: dict[int, str] = {
    0: "Message delivered to carrier",
    100: "Message not delivered to carrier",
    187: "Spam detected",
    188: "Spam detected",
    189: "Spam detected",
    482: "Loop detected",
    600: "Destination carrier queue full",
    610: "Submit_sm or submit_multi failed",
    620: "Destination app error",
    630: "NACK",
    650: "Destination failure",
    700: "Invalid service type",
    720: "Invalid destination address",
    740: "Invalid source address",
    750: "Destination rejected message",
    751: "Destination rejected message: too large",
    770: "Destination rejected message due to spam",
    775: "Destination rejected due to user opt out",
    902: "Message expired",
    999: "Unknown error",
}

OutcomeKind = Literal["delivered", "not-delivered", "error"]


@dataclass(frozen=True, slots=True)
class Outcome:
    """How messages to one destination end: delivered, sent but not delivered, or failed."""

    kind: OutcomeKind = "delivered"
    delivery_code: int = 0

    @property
    def description(self) -> str:
        return DELIVERY_DESCRIPTIONS.get(self.delivery_code, "Unknown error")


DELIVERED = Outcome()


@dataclass(frozen=True, slots=True)
class Step:
    """One state change of an outbound message, and the event that reports it."""

    state: str
    delivery_state: str | None = None
    delivery_code: int | None = None
    delivery_description: str | None = None

    @property
    def is_receipt(self) -> bool:
        return self.delivery_state is not None


def initial_delivery_state(receipt_requested: str, *, is_mms: bool) -> str | None:
    """``waiting`` while a receipt may still come, None when none was asked for."""
    return None if receipt_requested == "none" or is_mms else "waiting"


def outbound_steps(record: MessageRecord, outcome: Outcome) -> list[Step]:
    final = "error" if outcome.kind == "error" else "sent"
    steps = [Step("sending"), Step(final)]
    if record.is_mms or record.receipt_requested == "none":
        return steps
    delivered = outcome.kind == "delivered"
    if delivered and record.receipt_requested == "error":
        return steps
    steps.append(
        Step(
            final,
            delivery_state="delivered" if delivered else "not-delivered",
            delivery_code=outcome.delivery_code,
            delivery_description=outcome.description,
        )
    )
    return steps


def apply_step(record: MessageRecord, step: Step) -> None:
    if step.is_receipt:
        record.delivery_state = step.delivery_state
        record.delivery_code = step.delivery_code
        record.delivery_description = step.delivery_description
    else:
        record.state = step.state


def final_state(record: MessageRecord, outcome: Outcome) -> None:
    """Walk every step at once (no callbacks to make)."""
    for step in outbound_steps(record, outcome):
        apply_step(record, step)


def _base(record: MessageRecord, message_uri: str) -> dict[str, Any]:
    event: dict[str, Any] = {
        "eventType": "mms" if record.is_mms else "sms",
        "direction": record.direction,
        "messageId": record.id,
        "messageUri": message_uri,
        "from": record.from_,
        "to": record.to,
        "text": record.text,
    }
    if record.application_id is not None:
        event["applicationId"] = record.application_id
    event["time"] = record.time
    return event


def outbound_event(record: MessageRecord, step: Step, message_uri: str) -> dict[str, Any]:
    event = _base(record, message_uri)
    event["state"] = step.state
    if step.is_receipt:
        event["deliveryState"] = step.delivery_state
        event["deliveryCode"] = step.delivery_code
        event["deliveryDescription"] = step.delivery_description
    if record.is_mms:
        event["media"] = list(record.media)
    if record.tag is not None:
        event["tag"] = record.tag
    event["segmentCount"] = record.segment_count
    return event


def inbound_event(record: MessageRecord, message_uri: str) -> dict[str, Any]:
    event = _base(record, message_uri)
    event["state"] = record.state
    if record.is_mms:
        event["media"] = list(record.media)
    event["segmentCount"] = record.segment_count
    return event


def query_params(event: dict[str, Any]) -> list[tuple[str, str]]:
    """The event as GET query parameters: strings, one ``media=`` per URL."""
    params: list[tuple[str, str]] = []
    for name, value in event.items():
        if isinstance(value, list):
            params.extend((name, str(item)) for item in value)
        elif isinstance(value, bool):
            params.append((name, "true" if value else "false"))
        elif value is not None:
            params.append((name, str(value)))
    return params

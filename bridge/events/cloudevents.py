"""The CloudEvents 1.0 envelope (structured JSON mode) of every event the bridge publishes.

The receiver (callbacks) and the worker (command results) both publish ``CloudEvent``s with a type
from ``EventType``; this module is the one place that turns an event into AMQP bytes and
properties. Pure code; no I/O here.

On the wire (see ``CloudEvent.to_envelope``): the body is the whole event in structured JSON
mode; ``message_id`` is the event ``id``, ``type`` its ``type``, ``timestamp`` its ``time``. Of
the CloudEvents attributes only the ones a consumer routes on without parsing the body are
repeated as ``ce-`` headers: ``ce-type``, and ``ce-subject`` and ``ce-correlationid`` when set.
``ce-id``, ``ce-specversion``, ``ce-source`` and ``ce-time`` are not sent as headers: they
duplicate ``message_id``, the body and ``timestamp``.
"""

from __future__ import annotations

import hashlib
from datetime import datetime
from enum import StrEnum
from typing import Any, Literal

import orjson
from pydantic import BaseModel, ConfigDict, Field
from pydantic_core import to_jsonable_python

from bridge.events.envelope import CLOUDEVENTS_JSON, Envelope

_PREFIX = "io.catapult-bridge"


class EventType(StrEnum):
    """What happened, versioned. A breaking change to an event's ``data`` bumps the suffix."""

    MESSAGE_RECEIVED = f"{_PREFIX}.message.received.v1"
    MESSAGE_SENDING = f"{_PREFIX}.message.sending.v1"
    MESSAGE_SENT = f"{_PREFIX}.message.sent.v1"
    MESSAGE_FAILED = f"{_PREFIX}.message.failed.v1"
    MESSAGE_DELIVERED = f"{_PREFIX}.message.delivered.v1"
    MESSAGE_NOT_DELIVERED = f"{_PREFIX}.message.not-delivered.v1"
    SEND_SUCCEEDED = f"{_PREFIX}.command.send.succeeded.v1"
    SEND_FAILED = f"{_PREFIX}.command.send.failed.v1"
    IMPORT_SUCCEEDED = f"{_PREFIX}.command.import.succeeded.v1"
    IMPORT_ALREADY_IMPORTED = f"{_PREFIX}.command.import.already-imported.v1"
    IMPORT_FAILED = f"{_PREFIX}.command.import.failed.v1"


class CloudEvent(BaseModel):
    """A CloudEvents 1.0 event; ``correlationid`` is an extension attribute."""

    model_config = ConfigDict(frozen=True, extra="forbid")

    specversion: Literal["1.0"] = "1.0"
    id: str = Field(min_length=1)
    source: str = Field(min_length=1)
    type: EventType
    subject: str | None = None
    time: datetime
    datacontenttype: Literal["application/json"] = "application/json"
    correlationid: str | None = None
    data: dict[str, Any]

    def to_json(self) -> bytes:
        """The structured JSON body: what ``model_dump(mode="json", exclude_none=True)`` gives.

        Built directly, as that walk of ``data`` costs more than the rest of an event: ``data``
        is JSON-like already (every producer dumps its model in JSON mode), and whatever orjson
        would write differently from pydantic (a datetime, a type it lacks) goes to pydantic's
        own ``to_jsonable_python``.
        """
        body: dict[str, Any] = {
            "specversion": self.specversion,
            "id": self.id,
            "source": self.source,
            "type": self.type.value,
        }
        if self.subject is not None:
            body["subject"] = self.subject
        body["time"] = self.time
        body["datacontenttype"] = self.datacontenttype
        if self.correlationid is not None:
            body["correlationid"] = self.correlationid
        body["data"] = self.data
        return orjson.dumps(
            body, default=to_jsonable_python, option=orjson.OPT_PASSTHROUGH_DATETIME
        )

    def to_envelope(
        self,
        *,
        routing_key: str,
        headers: dict[str, Any] | None = None,
        correlation_id: str | None = None,
    ) -> Envelope:
        """AMQP message for this event: ``message_id`` is the event id, ``type`` its type.

        ``headers`` carry what consumers route on without parsing the body: ``ce-type``, plus
        ``ce-subject`` and ``ce-correlationid`` when set (``ce-`` prefix, as the AMQP binding
        names them), then the caller's ``headers``. The other attributes are in the body (and
        in ``message_id`` and ``timestamp``).
        """
        event_type = str(self.type)
        all_headers: dict[str, Any] = {"ce-type": event_type}
        if self.subject is not None:
            all_headers["ce-subject"] = self.subject
        if self.correlationid is not None:
            all_headers["ce-correlationid"] = self.correlationid
        if headers:
            all_headers.update(headers)
        return Envelope(
            body=self.to_json(),
            routing_key=routing_key,
            message_id=self.id,
            type=event_type,
            content_type=CLOUDEVENTS_JSON,
            headers=all_headers,
            correlation_id=correlation_id or self.correlationid,
            timestamp=self.time,
        )


def deterministic_id(*parts: str) -> str:
    """A stable event id from the parts that identify what happened (same input, same id)."""
    digest = hashlib.sha256("\x1f".join(parts).encode()).hexdigest()
    return digest[:32]

"""What an event or a command copy is on AMQP: the ``Envelope``, and the events exchange's keys.

An ``Envelope`` is one message ready to publish: the body and the properties consumers route on
(``message_id``, ``type``, headers, correlation and reply addresses, timestamp). The CloudEvents
envelope (``cloudevents.py``), the receiver's events and the worker's results, dead letters and
retry copies are all built as one; ``bridge.broker`` publishes it. The routing keys below are the
ones the events exchange routes on (``bridge.broker.topology`` binds the queues to them).

Pure code: no I/O here, and nothing that opens a socket is imported (pamqp is the AMQP codec,
used only to build the properties frame).
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any

from pamqp.commands import Basic

CLOUDEVENTS_JSON = "application/cloudevents+json"
APP_ID = "catapult-bridge"
PERSISTENT = 2  # AMQP delivery mode: written to disk by the broker

# Routing keys on the events exchange. The receiver and the worker publish with these;
# consumers of the bridge may bind their own queues with the same keys.
INBOUND_SMS = "inbound.sms"
INBOUND_MMS = "inbound.mms"
OUTBOUND_STATUS_PREFIX = "outbound.status"
OUTBOUND_RECEIPT_PREFIX = "outbound.receipt"
SEND_RESULT_PREFIX = "result.send"
IMPORT_RESULT_PREFIX = "result.import"


@dataclass(frozen=True, slots=True)
class Envelope:
    """One AMQP message ready to publish: the body and the properties consumers route on."""

    body: bytes
    routing_key: str
    message_id: str
    type: str
    content_type: str = CLOUDEVENTS_JSON
    headers: Mapping[str, Any] = field(default_factory=dict)
    correlation_id: str | None = None
    reply_to: str | None = None
    timestamp: datetime = field(default_factory=lambda: datetime.now(UTC))

    def to_properties(self) -> Basic.Properties:
        """The AMQP properties: persistent, stamped with the bridge's ``app_id``.

        The same properties aio-pika's ``Message`` would send for these fields (``priority=0``
        and an empty ``headers`` table included), built directly.
        """
        headers = self.headers
        return Basic.Properties(
            content_type=self.content_type,
            headers=headers if type(headers) is dict else dict(headers),
            delivery_mode=PERSISTENT,
            priority=0,
            correlation_id=self.correlation_id,
            reply_to=self.reply_to,
            message_id=self.message_id,
            timestamp=self.timestamp,
            message_type=self.type,
            app_id=APP_ID,
        )


__all__ = [
    "APP_ID",
    "CLOUDEVENTS_JSON",
    "IMPORT_RESULT_PREFIX",
    "INBOUND_MMS",
    "INBOUND_SMS",
    "OUTBOUND_RECEIPT_PREFIX",
    "OUTBOUND_STATUS_PREFIX",
    "PERSISTENT",
    "SEND_RESULT_PREFIX",
    "Envelope",
]

"""The simulator's in-memory state: records, ids, indexes and bounded logs.

Messages are indexed by id and by sender (``from``), both in creation order, so a send, a get and
the worker's "recent messages of this sender" lookup never scan the whole store. Everything that
could grow without bound under a benchmark is capped: messages (oldest evicted first), the request
log, callback attempts and user errors are bounded deques. No I/O here; records never hold a secret
(callback URLs are stored as given by the API user and answered as given by the v1 API, as the
platform did; reprs leave them out and the control endpoints mask their passwords).
"""

from __future__ import annotations

import base64
import os
import time
from bisect import bisect_left, bisect_right
from collections import Counter, deque
from collections.abc import Iterator
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any

ID_LENGTH = 23  # characters after the prefix, lower-case base32 alphabet [a-z2-7]


def new_id(prefix: str) -> str:
    """A Catapult-style id: ``prefix-`` and 23 characters of ``[a-z2-7]``."""
    return prefix + "-" + base64.b32encode(os.urandom(15)).decode("ascii").lower()[:ID_LENGTH]


def iso_time(epoch_s: float) -> str:
    """UTC ISO-8601 with milliseconds and ``Z``, as in Catapult's callbacks."""
    moment = datetime.fromtimestamp(epoch_s, UTC)
    return moment.strftime("%Y-%m-%dT%H:%M:%S.") + f"{moment.microsecond // 1000:03d}Z"


@dataclass(slots=True)
class MessageRecord:
    id: str
    sort_key: int  # nanoseconds since the epoch, strictly increasing: the list cursor
    direction: str  # "in" | "out"
    from_: str
    to: str
    text: str
    media: tuple[str, ...] = ()
    state: str = "sending"
    receipt_requested: str = "none"
    # URLs may carry callback credentials (user:password@): kept out of reprs.
    callback_url: str | None = field(default=None, repr=False)
    callback_http_method: str | None = None
    callback_timeout: int | None = None
    fallback_url: str | None = field(default=None, repr=False)
    tag: str | None = None
    delivery_state: str | None = None
    delivery_code: int | None = None
    delivery_description: str | None = None
    segment_count: int = 1
    application_id: str | None = None

    @property
    def created_s(self) -> float:
        return self.sort_key / 1e9

    @property
    def time(self) -> str:
        return iso_time(self.created_s)

    @property
    def is_mms(self) -> bool:
        return bool(self.media)

    def resource(self) -> dict[str, Any]:
        """The body of ``GET /messages/{id}`` (unset optional fields are left out)."""
        body: dict[str, Any] = {
            "id": self.id,
            "messageId": self.id,
            "from": self.from_,
            "to": self.to,
            "direction": self.direction,
            "text": self.text,
            "media": list(self.media),
            "state": self.state,
            "time": self.time,
            "receiptRequested": self.receipt_requested,
            "segmentCount": self.segment_count,
            "skipMMSCarrierValidation": False,
        }
        optional = {
            "callbackUrl": self.callback_url,
            "callbackTimeout": self.callback_timeout,
            "fallbackUrl": self.fallback_url,
            "tag": self.tag,
            "applicationId": self.application_id,
            "deliveryState": self.delivery_state,
            # The real API returned the code as a string ("0"); readers normalise it.
            "deliveryCode": None if self.delivery_code is None else str(self.delivery_code),
            "deliveryDescription": self.delivery_description,
        }
        body.update({k: v for k, v in optional.items() if v is not None})
        return body


@dataclass(slots=True)
class NumberRecord:
    id: str
    number: str
    created_s: float
    name: str | None = None
    application_id: str | None = None
    fallback_number: str | None = None
    provider: str | None = None  # "bandwidth-dashboard" when imported

    @property
    def national_number(self) -> str:
        digits = self.number.removeprefix("+1")
        if self.number.startswith("+1") and len(digits) == 10:
            return f"({digits[:3]}) {digits[3:6]}-{digits[6:]}"
        return self.number

    def resource(self, user_url: str) -> dict[str, Any]:
        body: dict[str, Any] = {
            "id": self.id,
            "number": self.number,
            "nationalNumber": self.national_number,
            "price": "0.35",
            "createdTime": iso_time(self.created_s),
            "numberState": "enabled",
        }
        if self.name is not None:
            body["name"] = self.name
        if self.application_id is not None:
            body["applicationId"] = self.application_id
            body["application"] = f"{user_url}/applications/{self.application_id}"
        if self.fallback_number is not None:
            body["fallbackNumber"] = self.fallback_number
        return body


@dataclass(slots=True)
class ApplicationRecord:
    id: str
    name: str
    incoming_message_url: str | None = field(default=None, repr=False)
    incoming_message_fallback_url: str | None = field(default=None, repr=False)
    incoming_message_url_callback_timeout: int | None = None
    callback_http_method: str = "post"
    incoming_call_url: str | None = field(default=None, repr=False)
    incoming_call_fallback_url: str | None = field(default=None, repr=False)
    incoming_call_url_callback_timeout: int | None = None
    auto_answer: bool = True

    def resource(self) -> dict[str, Any]:
        body: dict[str, Any] = {
            "id": self.id,
            "name": self.name,
            "callbackHttpMethod": self.callback_http_method,
            "autoAnswer": self.auto_answer,
        }
        optional = {
            "incomingMessageUrl": self.incoming_message_url,
            "incomingMessageFallbackUrl": self.incoming_message_fallback_url,
            "incomingMessageUrlCallbackTimeout": self.incoming_message_url_callback_timeout,
            "incomingCallUrl": self.incoming_call_url,
            "incomingCallFallbackUrl": self.incoming_call_fallback_url,
            "incomingCallUrlCallbackTimeout": self.incoming_call_url_callback_timeout,
        }
        body.update({k: v for k, v in optional.items() if v is not None})
        return body


@dataclass(frozen=True, slots=True)
class RequestRecord:
    """One API request as received (never its headers or body: they may carry secrets)."""

    time_s: float
    method: str
    path: str
    query: str
    status: int
    duration_ms: float
    remote: str

    def as_dict(self) -> dict[str, Any]:
        return {
            "time": iso_time(self.time_s),
            "method": self.method,
            "path": self.path,
            "query": self.query,
            "status": self.status,
            "durationMs": round(self.duration_ms, 3),
            "remote": self.remote,
        }


@dataclass(frozen=True, slots=True)
class CallbackAttempt:
    """One HTTP attempt to deliver a callback event, with its outcome."""

    seq: int
    time_s: float
    message_id: str
    event: dict[str, Any]
    url: str  # password masked
    method: str
    is_fallback: bool
    is_ok: bool
    status: int | None
    error: str | None
    duration_ms: float

    def as_dict(self) -> dict[str, Any]:
        return {
            "seq": self.seq,
            "time": iso_time(self.time_s),
            "messageId": self.message_id,
            "event": self.event,
            "url": self.url,
            "method": self.method,
            "isFallback": self.is_fallback,
            "outcome": "ok" if self.is_ok else "failed",
            "status": self.status,
            "error": self.error,
            "durationMs": round(self.duration_ms, 3),
        }


@dataclass(frozen=True, slots=True)
class UserError:
    """An entry of ``GET /errors`` (e.g. a callback that failed at the URL and the fallback)."""

    id: str
    time_s: float
    category: str
    code: str
    message: str
    details: tuple[tuple[str, str], ...]

    def resource(self) -> dict[str, Any]:
        return {
            "id": self.id,
            "time": iso_time(self.time_s),
            "category": self.category,
            "code": self.code,
            "message": self.message,
            "details": [{"name": n, "value": v} for n, v in self.details],
        }


@dataclass(frozen=True, slots=True)
class MessageQuery:
    """Filters of ``GET /messages``; time bounds are inclusive, in epoch milliseconds."""

    from_: str | None = None
    to: str | None = None
    direction: str | None = None
    state: str | None = None
    delivery_state: str | None = None
    from_ms: int | None = None
    to_ms: int | None = None
    sort_key_lt: int | None = None
    sort_key_gt: int | None = None
    descending: bool = True
    size: int = 25

    def matches(self, record: MessageRecord) -> bool:
        return (
            (self.to is None or record.to == self.to)
            and (self.direction is None or record.direction == self.direction)
            and (self.state is None or record.state == self.state)
            and (self.delivery_state is None or record.delivery_state == self.delivery_state)
        )


def _sort_key(record: MessageRecord) -> int:
    return record.sort_key


@dataclass
class SimulatorState:
    """Everything the simulated platform holds. Reset by ``clear()``."""

    max_messages: int = 200_000
    max_requests: int = 10_000
    max_attempts: int = 20_000
    max_user_errors: int = 1_000
    messages: dict[str, MessageRecord] = field(default_factory=dict)
    numbers: dict[str, NumberRecord] = field(default_factory=dict)
    applications: dict[str, ApplicationRecord] = field(default_factory=dict)
    requests: deque[RequestRecord] = field(init=False)
    callback_attempts: deque[CallbackAttempt] = field(init=False)
    user_errors: deque[UserError] = field(init=False)
    # Send requests (and batch items) refused, by error code: what a client was told "no".
    send_refusals: Counter[str] = field(default_factory=Counter)
    _order: deque[MessageRecord] = field(default_factory=deque)
    _by_sender: dict[str, deque[MessageRecord]] = field(default_factory=dict)
    _by_number: dict[str, NumberRecord] = field(default_factory=dict)
    _last_key: int = 0
    _attempt_seq: int = 0

    def __post_init__(self) -> None:
        self.requests = deque(maxlen=self.max_requests)
        self.callback_attempts = deque(maxlen=self.max_attempts)
        self.user_errors = deque(maxlen=self.max_user_errors)

    def clear(self) -> None:
        self.messages.clear()
        self.numbers.clear()
        self.applications.clear()
        self.requests.clear()
        self.callback_attempts.clear()
        self.user_errors.clear()
        self.send_refusals.clear()
        self._order.clear()
        self._by_sender.clear()
        self._by_number.clear()

    # Messages ---------------------------------------------------------------------------------

    def next_sort_key(self) -> int:
        self._last_key = max(time.time_ns(), self._last_key + 1)
        return self._last_key

    def add_message(self, record: MessageRecord) -> None:
        self.messages[record.id] = record
        self._order.append(record)
        self._by_sender.setdefault(record.from_, deque()).append(record)
        while len(self._order) > self.max_messages:
            oldest = self._order.popleft()
            del self.messages[oldest.id]
            sent = self._by_sender[oldest.from_]
            sent.popleft()  # creation order: the oldest overall is the oldest of its sender
            if not sent:
                del self._by_sender[oldest.from_]

    def query_messages(self, query: MessageQuery) -> list[MessageRecord]:
        """One page of messages matching ``query``, newest first unless ascending."""
        if query.from_ is not None:
            source: deque[MessageRecord] = self._by_sender.get(query.from_, deque())
        else:
            source = self._order
        low = query.from_ms * 1_000_000 if query.from_ms is not None else None
        high = (query.to_ms + 1) * 1_000_000 - 1 if query.to_ms is not None else None
        if query.sort_key_gt is not None:
            low = max(low or 0, query.sort_key_gt + 1)
        if query.sort_key_lt is not None:
            high = query.sort_key_lt - 1 if high is None else min(high, query.sort_key_lt - 1)
        start = 0 if low is None else bisect_left(source, low, key=_sort_key)
        stop = len(source) if high is None else bisect_right(source, high, key=_sort_key)
        indexes = range(stop - 1, start - 1, -1) if query.descending else range(start, stop)
        page: list[MessageRecord] = []
        for index in indexes:
            record = source[index]
            if query.matches(record):
                page.append(record)
                if len(page) >= query.size:
                    break
        return page

    def messages_of(self, sender: str) -> Iterator[MessageRecord]:
        return iter(self._by_sender.get(sender, ()))

    # Numbers ----------------------------------------------------------------------------------

    def add_number(self, record: NumberRecord) -> None:
        self.numbers[record.id] = record
        self._by_number[record.number] = record

    def remove_number(self, record: NumberRecord) -> None:
        self.numbers.pop(record.id, None)
        self._by_number.pop(record.number, None)

    def number(self, number: str) -> NumberRecord | None:
        return self._by_number.get(number)

    def find_number(self, id_or_number: str) -> NumberRecord | None:
        return self.numbers.get(id_or_number) or self._by_number.get(id_or_number)

    def application_for(self, number: str) -> ApplicationRecord | None:
        record = self._by_number.get(number)
        if record is None or record.application_id is None:
            return None
        return self.applications.get(record.application_id)

    # Logs -------------------------------------------------------------------------------------

    def next_attempt_seq(self) -> int:
        self._attempt_seq += 1
        return self._attempt_seq

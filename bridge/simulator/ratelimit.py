"""Catapult v1's two rate-limit mechanisms, as decisions over an injected clock.

Message sends (403, ``limit``): the platform counts accepted messages per account and per sending
number over the half-open window (now - 10 s, now]; a send is rejected when the count including
itself would exceed ``limit_per_s * 10``. Rejected sends do not count. Numbers listed as A2P
(application-to-person) have no per-number limit, only the account's. This is the agreement the
worker's token buckets are built never to break.

Every other resource family (429 ``rate-limit-reached`` with ``X-RateLimit-Reset`` in epoch ms): a
token bucket per family, refilled at the family's rate up to its burst. Defaults mirror AP-DOCS
``rateLimits/resourceRateLimits.md`` (1 request per 1000 ms) and ``futureChanges.md`` (number
orders 100/min burst 800; number reads 2000/s burst 3000). A limit of 0 is off.

No I/O; the only state is the windows and buckets.
"""

from __future__ import annotations

import math
import time
from collections import deque
from collections.abc import Callable
from dataclasses import dataclass
from typing import Annotated, Literal

from pydantic import BaseModel, ConfigDict, Field

from bridge.catapult import RATE_WINDOW_S
from bridge.settings import SimulatorSettings
from bridge.simulator import errors
from bridge.simulator.errors import Problem

MAX_WAIT_S = 86_400.0

NonNegative = Annotated[float, Field(ge=0)]
Burst = Annotated[int, Field(ge=1)]


class Limits(BaseModel):
    """The limits in force; replaced as a whole when changed at run time."""

    model_config = ConfigDict(frozen=True, extra="forbid")

    account_messages_per_s: NonNegative = 1.0
    number_messages_per_s: NonNegative = 1.0
    a2p_numbers: frozenset[str] = frozenset()
    account_limit_code: Literal["message-rate-limit", "message-rate-limit-overall"] = (
        "message-rate-limit"
    )
    resource_requests_per_s: NonNegative = 1.0
    resource_burst: Burst = 1
    number_orders_per_min: NonNegative = 100.0
    number_orders_burst: Burst = 800
    number_reads_per_s: NonNegative = 2000.0
    number_reads_burst: Burst = 3000

    @classmethod
    def from_settings(cls, settings: SimulatorSettings) -> Limits:
        return cls.model_validate({name: getattr(settings, name) for name in cls.model_fields})

    @classmethod
    def off(cls) -> Limits:
        return cls(
            account_messages_per_s=0,
            number_messages_per_s=0,
            resource_requests_per_s=0,
            number_orders_per_min=0,
            number_reads_per_s=0,
        )

    def bucket(self, family: str) -> tuple[float, int]:
        """(tokens per second, burst) of a resource family; rate 0 means unlimited."""
        if family == "number-orders":
            return self.number_orders_per_min / 60.0, self.number_orders_burst
        if family == "number-reads":
            return self.number_reads_per_s, self.number_reads_burst
        return self.resource_requests_per_s, self.resource_burst


def resource_family(method: str, resource: str) -> str | None:
    """The 429 family of a request under ``/users/{id}/<resource>``; None for message sends."""
    if resource == "messages":
        return None if method == "POST" else "messages"
    if resource == "phoneNumbers":
        if method == "POST":
            return "number-orders"
        if method == "GET":
            return "number-reads"
    return resource


class MessageRateLimiter:
    """Sliding 10-second windows of accepted sends, for the account and per sending number."""

    def __init__(self, clock: Callable[[], float] = time.monotonic) -> None:
        self._clock = clock
        self._account: deque[float] = deque()
        self._numbers: dict[str, deque[float]] = {}

    def clear(self) -> None:
        self._account.clear()
        self._numbers.clear()

    def admit(self, limits: Limits, sender: str) -> Problem | None:
        """Count one send from ``sender`` and return None, or return the 403 without counting."""
        account_limit = limits.account_messages_per_s
        number_limit = 0.0 if sender in limits.a2p_numbers else limits.number_messages_per_s
        if not account_limit and not number_limit:
            return None
        now = self._clock()
        horizon = now - RATE_WINDOW_S
        window = None
        if account_limit:
            _prune(self._account, horizon)
            if len(self._account) + 1 > account_limit * RATE_WINDOW_S:
                return errors.message_rate_limit(
                    limits.account_limit_code,
                    limit_per_s=account_limit,
                    rate=(len(self._account) + 1) / RATE_WINDOW_S,
                )
        if number_limit:
            window = self._numbers.setdefault(sender, deque())
            _prune(window, horizon)
            if len(window) + 1 > number_limit * RATE_WINDOW_S:
                return errors.message_rate_limit_per_tn(
                    sender, limit_per_s=number_limit, rate=(len(window) + 1) / RATE_WINDOW_S
                )
        if account_limit:
            self._account.append(now)
        if window is not None:
            window.append(now)
        return None


def _prune(window: deque[float], horizon: float) -> None:
    while window and window[0] <= horizon:
        window.popleft()


@dataclass(slots=True)
class _Bucket:
    tokens: float
    updated: float


class ResourceRateLimiter:
    """Token buckets per resource family; an empty bucket answers 429 with its reset time."""

    def __init__(
        self,
        clock: Callable[[], float] = time.monotonic,
        wall_clock: Callable[[], float] = time.time,
    ) -> None:
        self._clock = clock
        self._wall_clock = wall_clock
        self._buckets: dict[str, _Bucket] = {}

    def clear(self) -> None:
        self._buckets.clear()

    def admit(self, limits: Limits, family: str) -> Problem | None:
        rate, burst = limits.bucket(family)
        if not rate:
            return None
        now = self._clock()
        bucket = self._buckets.get(family)
        if bucket is None:
            bucket = self._buckets[family] = _Bucket(tokens=float(burst), updated=now)
        bucket.tokens = min(float(burst), bucket.tokens + (now - bucket.updated) * rate)
        bucket.updated = now
        if bucket.tokens >= 1.0:
            bucket.tokens -= 1.0
            return None
        wait_s = (1.0 - bucket.tokens) / rate
        return self.reject(wait_s)

    def reject(self, wait_s: float) -> Problem:
        # A vanishingly small rate makes the wait infinite; a day is as good as never here.
        wait_s = min(wait_s, MAX_WAIT_S)
        reset_ms = math.ceil((self._wall_clock() + wait_s) * 1000)
        return errors.rate_limit_reached(reset_ms)

"""How much send work the worker keeps in flight, from the allowed rate and the answer time.

Little's law: at ``rate`` sends per second answered after ``latency_s``, ``rate * latency_s``
sends are in flight on average. ``Pacing`` keeps a moving average of the answer time of the send
calls and allows ``rate * latency_s * headroom`` sends in flight, at least one full batch and at
most ``worker.concurrency * batch_max`` (the prefetch's default): enough that the worker sends at
the rate Catapult allows, and no more piled up when Catapult slows down. With no rate configured
(limits off) the bound is the maximum.

Sends whose limits allow them one at a time (a bucket refilling between two sends) would go out
one per request; ``gather_s`` is how long the send dispatcher waits after a take that left work
behind before it takes again, so what the buckets let go meanwhile leaves as one batch request:
half an answer time (the requests in flight then overlap), never more than ``_GATHER_MAX_S``.

No I/O and no clock: answer times are passed in.
"""

from __future__ import annotations

import math

# The first estimate, before any answer; replaced as answers come.
_INITIAL_LATENCY_S = 0.05
# Weight of a new answer time in the moving average.
_ALPHA = 0.1
_GATHER_MAX_S = 0.05


class Pacing:
    def __init__(
        self,
        *,
        rate_per_s: float,
        batch_max: int,
        max_in_flight: int,
        headroom: float = 2.0,
    ) -> None:
        self._rate_per_s = rate_per_s
        self._min = min(batch_max, max_in_flight)
        self._max = max_in_flight
        self._headroom = headroom
        self._latency_s = _INITIAL_LATENCY_S

    @property
    def latency_s(self) -> float:
        """The moving average of the send calls' answer times."""
        return self._latency_s

    def observe(self, latency_s: float) -> None:
        """A send call was answered after ``latency_s``."""
        self._latency_s += _ALPHA * (max(0.0, latency_s) - self._latency_s)

    @property
    def sends_in_flight(self) -> int:
        """How many sends may be in flight at once now."""
        if self._rate_per_s <= 0:
            return self._max
        wanted = math.ceil(self._rate_per_s * self._latency_s * self._headroom)
        return max(self._min, min(self._max, wanted))

    @property
    def gather_s(self) -> float:
        """How long to let ready sends gather after a take that left work behind."""
        if self._rate_per_s <= 0:
            return 0.0
        return min(_GATHER_MAX_S, self._latency_s / 2)


__all__ = ["Pacing"]

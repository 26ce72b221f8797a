"""Faults the simulator can inject, switchable at start (settings/flags) and at run time.

What each fault does:

- ``latency_ms``: every API answer is delayed by this much.
- ``error_rate``: this share of API requests is answered 500 ``internal-server-error`` or 503
  ``service-unavailable`` (half each) *without* any effect.
- ``ambiguous_rate``: this share of message sends is carried out (the message exists, its
  callbacks run) but answered 503 ``message-gateway-unavailable``; a batch is answered so whole.
- ``lost_answer_rate``: this share of message sends is carried out (the message exists) but answered
  with a plain server error, as a failing proxy or backend would: 500 ``internal-server-error`` or
  503 ``service-unavailable`` with Catapult's JSON body, or a 502 or 504 HTML page. A batch is
  answered so whole. The answer does not say the message may exist; a client must look first.
- ``echo_error_rate``: this share of API requests is answered 500 with an HTML error page that
  echoes the request (its method, path, query, every header and the body), as a debug backend or
  a misconfigured proxy prints it, *without* any effect. Credentials sent with the request are in
  the page: what a client takes from such an answer must be redacted.
- ``gateway_unavailable_rate``: this share of message sends is answered 503
  ``message-gateway-unavailable`` and *not* carried out (the real answer cannot tell the two apart).
- ``rate_limit_storm_rate``: this share of requests is refused as over the limit whatever the
  counters say (403 ``message-rate-limit`` for sends, 429 for the other families).
- ``duplicate_callback_rate``: this share of callback events is delivered twice.
- ``reorder_receipts_rate``: this share of outbound messages gets its delivery receipt before its
  ``sent``/``error`` status event.
- ``callback_delay_ms``: each callback attempt waits this long first (a slow platform).
- ``callback_failure_rate``: this share of callback attempts fails without reaching the target
  (as if the target were unreachable), which exercises the fallback URL.

The random source is seeded (``fault_seed``) so a run can be repeated. No I/O here.
"""

from __future__ import annotations

import random
from typing import Annotated

from pydantic import BaseModel, ConfigDict, Field

from bridge.settings import SimulatorSettings
from bridge.simulator import errors
from bridge.simulator.errors import Problem

# The plain server errors of ``lost_answer_rate``, drawn at random.
LOST_ANSWER_STATUSES = (500, 502, 503, 504)

Share = Annotated[float, Field(ge=0, le=1)]
Millis = Annotated[float, Field(ge=0)]


class Faults(BaseModel):
    """The faults in force; replaced as a whole when changed at run time."""

    model_config = ConfigDict(frozen=True, extra="forbid")

    latency_ms: Millis = 0.0
    error_rate: Share = 0.0
    ambiguous_rate: Share = 0.0
    lost_answer_rate: Share = 0.0
    echo_error_rate: Share = 0.0
    gateway_unavailable_rate: Share = 0.0
    rate_limit_storm_rate: Share = 0.0
    duplicate_callback_rate: Share = 0.0
    reorder_receipts_rate: Share = 0.0
    callback_delay_ms: Millis = 0.0
    callback_failure_rate: Share = 0.0

    @classmethod
    def from_settings(cls, settings: SimulatorSettings) -> Faults:
        return cls.model_validate({name: getattr(settings, name) for name in cls.model_fields})


class FaultInjector:
    """Rolls the dice for each fault against the current ``Faults``."""

    def __init__(self, faults: Faults, seed: int | None = None) -> None:
        self.faults = faults
        self._random = random.Random(seed)  # noqa: S311 - fault injection, not security

    def _roll(self, share: float) -> bool:
        return share > 0 and (share >= 1 or self._random.random() < share)

    def request_failure(self) -> Problem | None:
        """A 500/503 with no effect, for ``error_rate`` of requests."""
        if not self._roll(self.faults.error_rate):
            return None
        if self._random.random() < 0.5:
            return errors.internal_server_error()
        return errors.service_unavailable()

    def is_storm(self) -> bool:
        return self._roll(self.faults.rate_limit_storm_rate)

    def is_ambiguous(self) -> bool:
        return self._roll(self.faults.ambiguous_rate)

    def lost_answer(self) -> int | None:
        """For ``lost_answer_rate`` of sends: the 5xx status that hides a message carried out."""
        if not self._roll(self.faults.lost_answer_rate):
            return None
        return self._random.choice(LOST_ANSWER_STATUSES)

    def is_echo_error(self) -> bool:
        return self._roll(self.faults.echo_error_rate)

    def is_gateway_down(self) -> bool:
        return self._roll(self.faults.gateway_unavailable_rate)

    def is_duplicate(self) -> bool:
        return self._roll(self.faults.duplicate_callback_rate)

    def is_reordered(self) -> bool:
        return self._roll(self.faults.reorder_receipts_rate)

    def is_callback_failure(self) -> bool:
        return self._roll(self.faults.callback_failure_rate)

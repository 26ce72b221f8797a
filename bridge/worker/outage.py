"""Whether Catapult is there: the outage detector, and the watch that probes it until it is back.

An outage of the provider is not the commands' fault, so it must not use their attempts up or
dead-letter them. ``OutageDetector`` (pure: no clock, no I/O) is fed every request's end by the
executor and holds Catapult down after ``worker.outage_after_failures`` requests in a row failed
for want of it: a request that never reached it (refused, reset or timed out before it was sent)
counts each time; a 5xx answer counts when it comes for a command not yet counted in the run, so
one command that Catapult keeps failing on is that command's own problem, not an outage. Any
answer that is not a 5xx (a success, a 4xx, a rate limit) proves Catapult is there and ends the run
(and an outage). A timeout after the request left says nothing either way.

``CatapultWatch`` is the shell around it. When Catapult goes down it logs one WARNING, sets
``bridge_worker_catapult_up`` to 0, counts the outage, tells its listeners (the command flow stops
taking commands and sends back what it holds; ``flow.py``) and probes Catapult with the cheapest
authenticated request (``GET /account``), pausing from ``worker.outage_probe_initial_s``, twice
as long after each failed probe, up to ``worker.outage_probe_max_s``. The first answer, from a
probe or from a request still in flight, ends the outage: one INFO line, the gauge back to 1, the
listeners told again. Nothing here sends a command.
"""

from __future__ import annotations

import asyncio
import contextlib
import enum
import logging
import random
import time
from collections.abc import Callable, Iterable

from bridge.broker.backoff import Backoff
from bridge.catapult import CatapultClient, CatapultError, TransportError
from bridge.settings import WorkerSettings
from bridge.worker.decisions import is_sign_of_outage
from bridge.worker.metrics import WorkerMetrics

log = logging.getLogger(__name__)


class CatapultState(enum.Enum):
    UP = "up"
    DOWN = "down"


class OutageDetector:
    """Catapult up or down, from the ends of the requests made to it (see the module docstring)."""

    def __init__(self, *, threshold: int) -> None:
        if threshold < 1:
            raise ValueError(f"threshold must be at least 1, got {threshold}")
        self._threshold = threshold
        self.state = CatapultState.UP
        self.failures = 0  # requests of the current run that count
        self._commands: set[str] = set()
        self.last_error: CatapultError | None = None

    @property
    def is_down(self) -> bool:
        return self.state is CatapultState.DOWN

    def observe(self, error: CatapultError | None, commands: Iterable[str] = ()) -> bool:
        """One request ended: ``error`` None for a success. True when the state changed."""
        if error is None or not is_sign_of_outage(error):
            if error is not None and error.status is None:
                return False  # no answer, and no sign of an outage: nothing learnt
            return self.answered()
        return self._failed(error, commands)

    def answered(self) -> bool:
        """Catapult answered. True when that ends an outage."""
        self.failures = 0
        self._commands.clear()
        if self.state is CatapultState.DOWN:
            self.state = CatapultState.UP
            return True
        return False

    def _failed(self, error: CatapultError, commands: Iterable[str]) -> bool:
        self.last_error = error
        if self.state is CatapultState.DOWN:
            return False
        ids = set(commands)
        if isinstance(error, TransportError) or not ids or not ids <= self._commands:
            self.failures += 1
        self._commands |= ids
        if self.failures >= self._threshold:
            self.state = CatapultState.DOWN
            return True
        return False


class CatapultWatch:
    """The detector, the probes while Catapult is down, and what the operator sees of both."""

    def __init__(
        self,
        client: CatapultClient,
        *,
        settings: WorkerSettings,
        metrics: WorkerMetrics,
        draw: Callable[[], float] = random.random,
    ) -> None:
        self._client = client
        self._detector = OutageDetector(threshold=settings.outage_after_failures)
        self._probe_pauses_s = (settings.outage_probe_initial_s, settings.outage_probe_max_s)
        self._backoff = Backoff(
            initial_s=settings.outage_probe_initial_s,
            max_s=settings.outage_probe_max_s,
            draw=draw,
        )
        self._probe_timeout_s = settings.call_timeout_s
        self._metrics = metrics
        self._listeners: list[Callable[[], None]] = []
        self._probe: asyncio.Task[None] | None = None
        self._back = asyncio.Event()
        self._down_since: float | None = None
        self._closed = False
        metrics.catapult_up.set(1)

    @property
    def state(self) -> CatapultState:
        return self._detector.state

    @property
    def is_down(self) -> bool:
        return self._detector.is_down

    @property
    def down_for_s(self) -> float | None:
        """How long Catapult has been down, or None while it is up."""
        since = self._down_since
        return None if since is None else time.monotonic() - since

    def on_change(self, listener: Callable[[], None]) -> None:
        """Call ``listener`` (synchronously) each time Catapult goes down or comes back."""
        self._listeners.append(listener)

    def observe(self, error: CatapultError | None, commands: Iterable[str] = ()) -> None:
        """One request to Catapult ended (``error`` None: it succeeded)."""
        was_down = self._detector.is_down
        if not self._detector.observe(error, commands) or self._closed:
            return
        if was_down:
            self._came_back()
        else:
            self._went_down()

    async def close(self) -> None:
        """Stop probing (the worker stops)."""
        self._closed = True
        probe, self._probe = self._probe, None
        if probe is not None:
            probe.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await probe

    def _went_down(self) -> None:
        self._down_since = time.monotonic()
        self._metrics.catapult_up.set(0)
        self._metrics.catapult_outages.inc()
        log.warning(
            "Catapult is down (%s; %d requests in a row failed for want of it): taking no "
            "commands until it answers, probing it every %g s to %g s",
            self._detector.last_error,
            self._detector.failures,
            *self._probe_pauses_s,
        )
        self._back.clear()
        self._backoff.reset()
        self._probe = asyncio.create_task(self._probe_until_back(), name="catapult probe")
        self._notify()

    def _came_back(self) -> None:
        down_for_s = self.down_for_s or 0.0
        self._down_since = None
        self._metrics.catapult_up.set(1)
        log.info("Catapult answers again after %.1f s down: taking commands again", down_for_s)
        self._back.set()
        probe, self._probe = self._probe, None
        if probe is not None and probe is not asyncio.current_task():
            probe.cancel()
        self._notify()

    def _notify(self) -> None:
        for listener in self._listeners:
            listener()

    async def _probe_until_back(self) -> None:
        while self._detector.is_down:
            pause_s = self._backoff.next_pause_s()
            # Woken early when a request still in flight finds Catapult answering.
            with contextlib.suppress(TimeoutError):
                async with asyncio.timeout(pause_s):
                    await self._back.wait()
            if not self._detector.is_down:
                return
            error = await self._probe_once()
            if error is not None:
                log.debug("probe of Catapult failed: %s", error)
            self.observe(error)

    async def _probe_once(self) -> CatapultError | None:
        try:
            async with asyncio.timeout(self._probe_timeout_s):
                await self._client.get_account()
        except CatapultError as error:
            return error
        except TimeoutError:
            return TransportError(
                message=f"no answer to the probe within {self._probe_timeout_s:g} s"
            )
        except Exception as exc:  # the probe's boundary: a bug must not end the probing
            log.exception("unexpected failure probing Catapult")
            return TransportError(message=f"unexpected failure probing: {type(exc).__name__}")
        return None


__all__ = ["CatapultState", "CatapultWatch", "OutageDetector"]

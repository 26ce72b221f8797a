"""Publishing a repeated callback once: a bounded window of recently stored event ids.

Catapult v1 may deliver one event twice (the callback URL timed out after all, then the fallback
URL got it; or a proxy retried). Both deliveries give the same deterministic event id. ``once``
runs the store action for the first and answers the others as duplicates, also while the first
is still in flight (the later one waits for it, and takes over if it failed). Memory is bounded by
``max_entries`` (oldest forgotten first) and entries expire after ``window_s``; a window of 0
turns duplicate detection off. No I/O here.
"""

from __future__ import annotations

import asyncio
import time
from collections import OrderedDict
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from typing import TypeVar

T = TypeVar("T")


@dataclass(slots=True)
class _InFlight:
    # Made by the first delivery that waits: most events never meet a duplicate in flight.
    done: asyncio.Event | None = None
    succeeded: bool = False


class DedupWindow:
    """Remembers event ids stored within the last ``window_s`` seconds."""

    def __init__(
        self,
        *,
        window_s: float,
        max_entries: int,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self._window_s = window_s
        self._max_entries = max_entries
        self._clock = clock
        # id -> time it was stored; insertion order is time order, so expiry pops from the front.
        self._stored: OrderedDict[str, float] = OrderedDict()
        self._in_flight: dict[str, _InFlight] = {}

    @property
    def enabled(self) -> bool:
        return self._window_s > 0

    def __len__(self) -> int:
        return len(self._stored)

    def _expire(self, now: float) -> None:
        horizon = now - self._window_s
        stored = self._stored
        while stored:
            key, at = next(iter(stored.items()))
            if at > horizon:
                break
            del stored[key]

    def is_recent(self, key: str) -> bool:
        if not self.enabled:
            return False
        now = self._clock()
        self._expire(now)
        return key in self._stored

    def remember(self, key: str) -> None:
        if not self.enabled:
            return
        self._stored[key] = self._clock()
        self._stored.move_to_end(key)
        while len(self._stored) > self._max_entries:
            self._stored.popitem(last=False)

    async def once(self, key: str, action: Callable[[], Awaitable[T]]) -> tuple[T | None, bool]:
        """``(result, False)`` after running ``action``; ``(None, True)`` for a duplicate.

        An exception from ``action`` propagates and leaves ``key`` unremembered, so a later
        delivery of the same event runs it again.
        """
        if not self.enabled:
            return await action(), False
        while True:
            if self.is_recent(key):
                return None, True
            other = self._in_flight.get(key)
            if other is None:
                break
            if other.done is None:
                other.done = asyncio.Event()
            await other.done.wait()
            if other.succeeded:
                return None, True
        mine = _InFlight()
        self._in_flight[key] = mine
        try:
            result = await action()
            mine.succeeded = True
            self.remember(key)
            return result, False
        finally:
            del self._in_flight[key]
            if mine.done is not None:
                mine.done.set()

"""Which held command goes out next: fair per-sender lanes for sends, one FIFO lane for imports.

Memory is bounded by the broker's prefetch: every command held here is an unacked delivery, and
the consumer never asks the broker for more than the prefetch. Fairness needs one more rule, or
10,000 queued sends from one number would fill the prefetch window and starve every other number:
a sender keeps at most ``hold_s`` seconds of its own sending in memory, and at most a fair share
of the prefetch window (always at least one command; with no limit on it, everything is kept),
and ``admit`` answers ``Park`` for the rest.

Each lane keeps a reservation clock: a new command reserves the lane's next send slot (one
interval after the last reservation, at the lane's rate with the account's rate shared by the
active lanes). A command whose slot is more than ``hold_s`` away is parked: republished to a delay
tier, the largest one not longer than the wait (so it comes back a little early, never late), with
its slot in a header, and acked, which lets the broker deliver what is behind it. When it comes
back it is held if its slot is near, or parked again for the rest of the wait. A lane with nothing
held always takes what comes, so a stale reservation can delay a lane but never stall it, unless
the sender is paused (a rate-limit refusal) for longer than ``hold_s``: then even its first command
is parked, so a paused number never holds a slot of the window.

``take`` serves the ready lanes least recently served first (a number that just got work goes
before a busy one; busy ones take turns) and returns up to ``batch_max`` commands whose limits
allow them now (each take consumes the sender's tokens), so several ready sends become one batch
request.

Times are passed in (monotonic seconds). No I/O here.
"""

from __future__ import annotations

import bisect
import math
from collections import deque
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Generic, Protocol, TypeVar

from bridge.worker.decisions import PauseScope
from bridge.worker.limits import Limits


class Schedulable(Protocol):
    @property
    def sender(self) -> str: ...

    @property
    def needs_lookup(self) -> bool: ...


T = TypeVar("T", bound=Schedulable)
I = TypeVar("I")  # noqa: E741 - the import scheduler's item, anything at all


@dataclass(frozen=True, slots=True)
class Hold:
    """Keep the command in memory; it goes out when its lane's turn and tokens come."""


@dataclass(frozen=True, slots=True)
class Park:
    """Republish the command to the delay tier of ``delay_s`` and ack it (no attempt spent).

    ``due_in_s`` is how far away its send slot is; it travels with the parked command.
    """

    delay_s: float
    due_in_s: float


Admission = Hold | Park
HOLD = Hold()


@dataclass(slots=True)
class _Lane(Generic[T]):
    sender: str
    held: deque[T] = field(default_factory=deque)
    reserved_until_s: float = -math.inf  # the slot of the lane's last reservation
    served: int = -1  # when it was last served, in takes (never: -1)


class SendScheduler(Generic[T]):
    """Per-sender lanes of held sends, served round robin within the limits."""

    def __init__(
        self,
        limits: Limits,
        *,
        hold_s: float,
        park_tiers_s: Sequence[float],
        batch_max: int,
        window: int,
    ) -> None:
        if not park_tiers_s:
            raise ValueError("at least one delay tier is needed to park commands")
        self._limits = limits
        self._tiers = sorted(park_tiers_s)
        # A parked command comes back up to one tier early; holding at least that long means it
        # is back in memory before its slot, so a busy lane never idles waiting for it.
        self._hold_s = max(hold_s, self._tiers[0])
        self._batch_max = batch_max
        self._window = window  # the prefetch: how many deliveries can be held at all
        self._lanes: dict[str, _Lane[T]] = {}
        self._active: dict[str, None] = {}  # senders with held commands
        self._takes = 0
        self._held = 0
        self._gather_until_s = -math.inf

    @property
    def held_count(self) -> int:
        return self._held

    @property
    def lane_count(self) -> int:
        return len(self._lanes)

    def admit(self, item: T, now_s: float, *, due_in_s: float | None = None) -> Admission:
        """Hold ``item`` or tell the caller to park it.

        ``due_in_s``: for a command that was parked, how far away the slot it reserved is now.
        """
        lane = self._lanes.get(item.sender)
        if lane is None:
            self._prune(now_s)
            lane = self._lanes[item.sender] = _Lane(item.sender)
        per_item_s = self._per_item_s(lane)
        if due_in_s is None:
            slot = max(
                lane.reserved_until_s + per_item_s,
                self._limits.send_ready_at(item.sender, planning=True),
                now_s,
            )
            lane.reserved_until_s = slot
            due_in_s = slot - now_s
        blocked_s = self._blocked_s(item, now_s)
        if blocked_s > self._hold_s:
            # Paused (a refusal): nothing of this sender goes out soon, keep no slot for it.
            wait_s = max(due_in_s, blocked_s)
            return Park(self._park_tier(wait_s), wait_s)
        if (
            not lane.held
            or per_item_s <= 0
            or (due_in_s <= self._hold_s and len(lane.held) < self._room(lane, per_item_s))
        ):
            self._push(lane, item, front=False)
            return HOLD
        return Park(self._park_tier(due_in_s), due_in_s)

    def _room(self, lane: _Lane[T], per_item_s: float) -> float:
        """How many commands ``lane`` may hold: ``hold_s`` of its sending, and never more than
        a fair share of the prefetch window, so that the broker can always deliver what is
        queued behind it (other senders) while this lane waits for its tokens."""
        by_time = max(1.0, self._hold_s / per_item_s)
        active = len(self._active) + (0 if lane.held else 1)
        share = max(1, self._window // (active + 1))
        return min(by_time, share)

    def put_back(self, item: T, now_s: float) -> Admission:
        """A command that was refused (rate limit): first in its lane again, or parked when its
        sender is paused for longer than ``hold_s`` (its slot in memory is better used)."""
        blocked_s = self._blocked_s(item, now_s)
        if blocked_s > self._hold_s:
            return Park(self._park_tier(blocked_s), blocked_s)
        lane = self._lanes.get(item.sender)
        if lane is None:
            lane = self._lanes[item.sender] = _Lane(item.sender)
        self._push(lane, item, front=True)
        return HOLD

    def _blocked_s(self, item: T, now_s: float) -> float:
        # How long the sender is held back (a pause), not the moment a call in flight answers.
        ready_at = self._limits.send_ready_at(item.sender, lookup=item.needs_lookup, planning=True)
        return max(0.0, ready_at - now_s)

    def next_ready_at(self) -> float | None:
        """When the first held command may go out (None: nothing held), not before the end of
        the gathering a take asked for."""
        if not self._active:
            return None
        ready = min(self._head_ready_at(self._lanes[s]) for s in self._active)
        return max(ready, self._gather_until_s)

    def take(self, now_s: float, *, max_items: int | None = None, gather_s: float = 0.0) -> list[T]:
        """Up to ``batch_max`` (and ``max_items``) commands whose limits allow them now, one at a
        time from the ready lanes in turn, the lane served longest ago first (a sender that just
        got work goes before a busy one).

        Each lane's allowance is asked once per take, and the account's once: the cost is the
        active lanes plus the commands taken, however high the rates. ``gather_s``: when the
        limits left work behind, ``next_ready_at`` is not before ``now_s + gather_s``, so what
        the buckets let go meanwhile goes out together, as one batch request.
        """
        room = self._batch_max if max_items is None else min(self._batch_max, max_items)
        if room <= 0 or not self._active:
            return []
        limited = self._limits.account_sendable(now_s)
        if limited < room:
            room = limited
            self._gather_until_s = now_s + gather_s
        if room <= 0:
            return []
        ready: list[tuple[_Lane[T], int]] = []
        for sender in self._active:
            lane = self._lanes[sender]
            allowed = self._limits.number_sendable(sender, now_s, lookup=lane.held[0].needs_lookup)
            if allowed > 0:
                ready.append((lane, allowed))
        ready.sort(key=lambda pair: pair[0].served)
        batch: list[T] = []
        counts: dict[str, int] = {}
        while ready and len(batch) < room:
            still: list[tuple[_Lane[T], int]] = []
            for lane, allowed in ready:
                if len(batch) >= room:
                    break
                batch.append(lane.held.popleft())
                counts[lane.sender] = counts.get(lane.sender, 0) + 1
                self._takes += 1
                lane.served = self._takes
                if not lane.held:
                    del self._active[lane.sender]
                elif allowed > 1 and not (
                    lane.held[0].needs_lookup and self._lookups_paused(now_s)
                ):
                    still.append((lane, allowed - 1))
            ready = still
        self._held -= len(batch)
        if counts:
            self._limits.take_sends(counts, now_s)
        if len(batch) < room and self._active:  # the lanes' own limits left work behind
            self._gather_until_s = now_s + gather_s
        return batch

    def _lookups_paused(self, now_s: float) -> bool:
        return self._limits.is_paused(PauseScope.LOOKUPS, None, now_s)

    def _head_ready_at(self, lane: _Lane[T]) -> float:
        return self._limits.send_ready_at(lane.sender, lookup=lane.held[0].needs_lookup)

    def drain(self) -> list[T]:
        """Every held command, lanes emptied (shutdown gives them back to the broker)."""
        items = [item for sender in self._active for item in self._lanes[sender].held]
        for sender in self._active:
            self._lanes[sender].held.clear()
        self._active.clear()
        self._held = 0
        return items

    def _per_item_s(self, lane: _Lane[T]) -> float:
        """Seconds between two sends of ``lane``: its own rate, or its share of the account's."""
        active = len(self._active) + (0 if lane.held else 1)
        return max(
            self._limits.number_interval_s(lane.sender),
            self._limits.account_interval_s * active,
        )

    def _park_tier(self, wait_s: float) -> float:
        index = bisect.bisect_right(self._tiers, wait_s) - 1
        return self._tiers[max(0, index)]

    def _push(self, lane: _Lane[T], item: T, *, front: bool) -> None:
        if not lane.held:
            self._active[lane.sender] = None
        if front:
            lane.held.appendleft(item)
        else:
            lane.held.append(item)
        self._held += 1

    def _prune(self, now_s: float) -> None:
        # A lane with nothing held and its last reservation past carries nothing. Amortised:
        # runs when the table has grown well past the lanes in use.
        if len(self._lanes) <= 2 * len(self._active) + 64:
            return
        self._lanes = {
            s: lane for s, lane in self._lanes.items() if lane.held or lane.reserved_until_s > now_s
        }


class ImportScheduler(Generic[I]):
    """One FIFO lane for number requests, within the number-request bucket and its pauses."""

    def __init__(self, limits: Limits) -> None:
        self._limits = limits
        self._held: deque[I] = deque()

    @property
    def held_count(self) -> int:
        return len(self._held)

    def admit(self, item: I) -> None:
        self._held.append(item)

    def put_back(self, item: I) -> None:
        self._held.appendleft(item)

    def next_ready_at(self) -> float | None:
        return self._limits.import_ready_at() if self._held else None

    def take(self, now_s: float) -> list[I]:
        if not self._held or self._limits.import_ready_at() > now_s:
            return []
        self._limits.take_import(now_s)
        return [self._held.popleft()]

    def drain(self) -> list[I]:
        items = list(self._held)
        self._held.clear()
        return items


__all__ = ["HOLD", "Admission", "Hold", "ImportScheduler", "Park", "Schedulable", "SendScheduler"]

"""The worker's own limits: token buckets for sends and number requests, and pauses after refusals.

Buckets refill at the configured rate, run ``rate_margin`` under it: they pace the sends. Their
burst is what that margin leaves free in Catapult's 10 s window (``burst_for``, at most one batch
request, at least 1), so that the sends of one moment go out as one batch request. Catapult (and the
simulator) count accepted sends per account and per sending number over the window (now - 10 s, now]
and refuse one that would make more than ``rate * 10``; pacing alone cannot promise that, as a send
may reach Catapult any time between leaving and its answer coming back, and a late one shares a
window with the sends after it. So each scope also has a ``SendWindow`` that counts the sends that
may still fall into Catapult's window and holds the next send while they are ``rate * 10`` (at the
full rate, sends then go out ``rate * 10`` per 10 s plus one call's round trip). The per-number
limits apply only to person-to-person numbers (``worker.a2p_numbers`` are exempt). A rate of 0
switches them off.

Pauses come from Catapult's refusals, which ``record`` is told of with every other outcome: a 403
``message-rate-limit*`` pauses the account or one number (no reset time is given, so the pause
starts at ``rate_limit_pause_s`` and doubles while the refusals go on, up to
``rate_limit_pause_max_s``, until a request of the scope goes through); a 429 pauses its resource
family until ``X-RateLimit-Reset``, kept between ``rate_limit_reset_min_s`` and
``rate_limit_reset_max_s``.

Times are passed in (monotonic seconds; wall-clock seconds only to read a reset time). No I/O and no
clock here; every operation is constant time per send, amortised, whatever the rates (the buckets
are virtual times, the windows drop what stopped counting as they are asked). Memory: one entry per
number that sent within its last interval or whose window still counts a send, plus live pauses.
"""

from __future__ import annotations

import heapq
import itertools
import math
from collections import deque
from dataclasses import dataclass

from bridge.catapult import RATE_WINDOW_S
from bridge.events.commands import CommandKind
from bridge.settings import WorkerSettings
from bridge.worker.decisions import Done, Outcome, PauseScope, Throttle

_PRUNE_EVERY = 1024
_UNLIMITED = 1 << 30


class TokenBucket:
    """Up to ``burst`` takes at once, refilled one per ``interval_s`` (a GCRA: virtual time).

    ``_due_s`` is when the next take would be due at the paced rate; a take is allowed while it
    is at most ``(burst - 1)`` intervals ahead of now, so after a quiet spell ``burst`` sends may
    leave together (one batch request) and the long-run rate stays one per interval. Constant
    time per take, whatever the rate.
    """

    __slots__ = ("_due_s", "_tolerance_s", "interval_s")

    def __init__(self, interval_s: float, burst: int = 1) -> None:
        self.interval_s = interval_s
        self._tolerance_s = interval_s * (max(1, burst) - 1)
        self._due_s = -math.inf

    def retime(self, interval_s: float, burst: int = 1) -> None:
        """A new rate (and burst) from now on; the takes so far keep counting at the old one."""
        self.interval_s = interval_s
        self._tolerance_s = interval_s * (max(1, burst) - 1)

    @property
    def ready_at(self) -> float:
        return self._due_s - self._tolerance_s

    def available(self, now_s: float) -> int:
        """How many takes are allowed at ``now_s`` (``_UNLIMITED`` without an interval)."""
        if self.interval_s <= 0:
            return _UNLIMITED
        ahead_s = max(self._due_s, now_s) - now_s
        return max(0, math.floor((self._tolerance_s - ahead_s) / self.interval_s + 1e-9) + 1)

    def take(self, now_s: float, count: int = 1) -> None:
        self._due_s = max(self._due_s, now_s) + self.interval_s * count

    def is_full(self, now_s: float) -> bool:
        """Refilled to its burst: it behaves like a new bucket."""
        return self._due_s <= now_s


class SendWindow:
    """Sends that may still fall into one scope's Catapult window: holds a send while ``limit``.

    A send reaches Catapult between the moment it leaves and the moment its answer comes back, so
    it counts from when it leaves until ``RATE_WINDOW_S`` after its answer. A new send may leave
    once fewer than ``limit`` sends count: then no window of Catapult's, however the network
    delayed them, holds more than ``limit``. A send in flight counts until its answer, however
    long that takes: only answers make room. Answers do not say which send they belong to: the
    oldest in flight is taken as answered, which only ever counts a send for longer.
    """

    __slots__ = ("_answered", "_in_flight", "limit")

    def __init__(self, limit: int) -> None:
        self.limit = limit
        # Only the newest ``limit`` answers can ever hold a send back.
        self._answered: deque[float] = deque(maxlen=limit)
        self._in_flight: deque[float] = deque()  # when each send in flight left

    def ready_at(self, *, planning: bool = False) -> float:
        """When the next send may leave, as far as this window goes (``inf``: after an answer).

        ``planning``: an estimate for deciding what to hold, taking each send in flight as
        answered when it left; never for letting a send go.
        """
        over = len(self._answered) + len(self._in_flight) - self.limit
        if over < 0:
            return -math.inf
        if planning:
            # The (over + 1)-th earliest time a counted send stops counting.
            ends = heapq.merge(self._answered, self._in_flight)
            return next(itertools.islice(ends, over, None)) + RATE_WINDOW_S
        # Sends in flight stop counting only after their answers: after every answer so far.
        return self._answered[over] + RATE_WINDOW_S if over < len(self._answered) else math.inf

    def room(self, now_s: float) -> int:
        """How many sends may leave at ``now_s``: the same rule as ``ready_at``, as a count.

        Answers that stopped counting are dropped on the way (they never count again), so the
        cost is amortised constant per send.
        """
        answered = self._answered
        while answered and answered[0] + RATE_WINDOW_S <= now_s:
            answered.popleft()
        return max(0, self.limit - len(answered) - len(self._in_flight))

    def take(self, now_s: float, count: int = 1) -> None:
        self._in_flight.extend(itertools.repeat(now_s, count))

    def resize(self, limit: int) -> None:
        """A new ``limit``; the sends counted so far still count."""
        self.limit = limit
        self._answered = deque(self._answered, maxlen=limit)

    def answered(self, now_s: float) -> None:
        if self._in_flight:
            self._in_flight.popleft()
            self._answered.append(now_s)

    def is_idle(self, now_s: float) -> bool:
        """Nothing counts any more: the window is like a new one."""
        if self._in_flight:
            return False
        return not self._answered or self._answered[-1] <= now_s - RATE_WINDOW_S


def window_limit(rate_per_s: float) -> int:
    """Sends Catapult allows in ``RATE_WINDOW_S`` at ``rate_per_s`` (0: no limit)."""
    return 0 if rate_per_s <= 0 else max(1, math.floor(rate_per_s * RATE_WINDOW_S + 1e-9))


def interval_for(rate_per_s: float, margin: float) -> float:
    """Seconds between takes for a rate (0: unlimited), ``margin`` under the rate."""
    return 0.0 if rate_per_s <= 0 else (1.0 + margin) / rate_per_s


def burst_for(rate_per_s: float, margin: float, batch_max: int) -> int:
    """Sends a bucket may let go at once: what the margin leaves free in Catapult's window.

    Paced ``margin`` under the rate, a bucket lets ``rate * RATE_WINDOW_S / (1 + margin)`` sends
    into any window; a burst of ``rate * RATE_WINDOW_S * margin / (1 + margin)`` on top keeps the
    window within ``rate * RATE_WINDOW_S``. At most one batch request (``batch_max``), at least 1.
    """
    if rate_per_s <= 0:
        return 1
    burst = math.floor(rate_per_s * RATE_WINDOW_S * margin / (1.0 + margin) + 1e-9)
    return max(1, min(batch_max, burst))


@dataclass(slots=True)
class _Pause:
    until_s: float
    strikes: int


PauseKey = tuple[PauseScope, str | None]


class Limits:
    """Every bucket and pause of one worker; the schedulers ask it when work may go out."""

    def __init__(self, settings: WorkerSettings) -> None:
        margin = settings.rate_margin
        batch_max = settings.batch_max
        self._account = TokenBucket(
            interval_for(settings.account_messages_per_s, margin),
            burst_for(settings.account_messages_per_s, margin, batch_max),
        )
        self._number_interval_s = interval_for(settings.number_messages_per_s, margin)
        self._number_burst = burst_for(settings.number_messages_per_s, margin, batch_max)
        self._numbers: dict[str, TokenBucket] = {}
        account_limit = window_limit(settings.account_messages_per_s)
        self._account_window = SendWindow(account_limit) if account_limit else None
        self._number_limit = window_limit(settings.number_messages_per_s)
        self._number_windows: dict[str, SendWindow] = {}
        self._a2p = frozenset(settings.a2p_numbers)
        self._number_requests = TokenBucket(
            interval_for(settings.number_requests_per_min / 60.0, margin)
        )
        self._pause_s = settings.rate_limit_pause_s
        self._pause_max_s = settings.rate_limit_pause_max_s
        self._reset_min_s = settings.rate_limit_reset_min_s
        self._reset_max_s = settings.rate_limit_reset_max_s
        self._pauses: dict[PauseKey, _Pause] = {}
        self._takes = 0
        self._account_rate = settings.account_messages_per_s
        self._margin = margin
        self._batch_max = batch_max

    def share_account(self, held: int, *, of: int) -> None:
        """Take ``held / of`` of the account's limits: sharded sending, where each of several
        workers sends from ``held`` of ``of`` shards (``bridge.worker.shards``).

        The window takes the floor of its part, so the parts of all workers never add up to
        more than the account's window; the sends already counted go on counting.
        """
        if self._account_rate <= 0:
            return
        rate = self._account_rate * held / of
        self._account.retime(
            interval_for(rate, self._margin), burst_for(rate, self._margin, self._batch_max)
        )
        if self._account_window is not None:
            whole = window_limit(self._account_rate)
            self._account_window.resize(max(1, whole * held // of))

    # -- sends ---------------------------------------------------------------------------------

    @property
    def account_interval_s(self) -> float:
        return self._account.interval_s

    def number_interval_s(self, sender: str) -> float:
        return 0.0 if sender in self._a2p else self._number_interval_s

    def send_ready_at(self, sender: str, *, lookup: bool = False, planning: bool = False) -> float:
        """When a send from ``sender`` may go out (a look-up first, with ``lookup``).

        ``inf`` while sends in flight fill a window: an answer makes room. ``planning``: an
        estimate for deciding what to hold or park, with sends in flight taken as answered.
        """
        ready = max(
            self._account.ready_at,
            self._paused_until(PauseScope.ACCOUNT, None),
            self._paused_until(PauseScope.NUMBER, sender),
            self._paused_until(PauseScope.SENDS, None),
        )
        bucket = self._numbers.get(sender)
        if bucket is not None:
            ready = max(ready, bucket.ready_at)
        if self._account_window is not None:
            ready = max(ready, self._account_window.ready_at(planning=planning))
        window = self._number_windows.get(sender)
        if window is not None:
            ready = max(ready, window.ready_at(planning=planning))
        if lookup:
            ready = max(ready, self._paused_until(PauseScope.LOOKUPS, None))
        return ready

    def account_sendable(self, now_s: float) -> int:
        """How many sends the account's bucket, window and pauses let leave at ``now_s``."""
        if (
            self._paused_until(PauseScope.ACCOUNT, None) > now_s
            or self._paused_until(PauseScope.SENDS, None) > now_s
        ):
            return 0
        count = self._account.available(now_s)
        if self._account_window is not None:
            count = min(count, self._account_window.room(now_s))
        return count

    def number_sendable(self, sender: str, now_s: float, *, lookup: bool = False) -> int:
        """How many sends from ``sender`` its own bucket, window and pauses let leave at
        ``now_s`` (the account's come on top: ``account_sendable``)."""
        if self._paused_until(PauseScope.NUMBER, sender) > now_s or (
            lookup and self._paused_until(PauseScope.LOOKUPS, None) > now_s
        ):
            return 0
        if sender in self._a2p:
            return _UNLIMITED
        count = _UNLIMITED
        if self._number_interval_s > 0:
            bucket = self._numbers.get(sender)
            count = self._number_burst if bucket is None else bucket.available(now_s)
        if self._number_limit:
            window = self._number_windows.get(sender)
            count = min(count, self._number_limit if window is None else window.room(now_s))
        return count

    def take_send(self, sender: str, now_s: float) -> None:
        """A send from ``sender`` leaves now; ``sends_answered`` must follow when its call ends."""
        self.take_sends({sender: 1}, now_s)

    def take_sends(self, counts: dict[str, int], now_s: float) -> None:
        """``counts[sender]`` sends from each sender leave now (within what ``account_sendable``
        and ``number_sendable`` allowed); ``sends_answered`` must follow for each."""
        total = sum(counts.values())
        self._account.take(now_s, total)
        if self._account_window is not None:
            self._account_window.take(now_s, total)
        for sender, count in counts.items():
            interval = self.number_interval_s(sender)
            if interval > 0:
                bucket = self._numbers.get(sender)
                if bucket is None:
                    bucket = self._numbers[sender] = TokenBucket(interval, self._number_burst)
                bucket.take(now_s, count)
            window = self._number_window(sender)
            if window is not None:
                window.take(now_s, count)
        before, self._takes = self._takes, self._takes + total
        if before // _PRUNE_EVERY != self._takes // _PRUNE_EVERY:
            self._prune(now_s)

    def sends_answered(self, senders: list[str], now_s: float) -> None:
        """The calls carrying sends taken for ``senders`` ended (whatever the outcome)."""
        for sender in senders:
            if self._account_window is not None:
                self._account_window.answered(now_s)
            window = self._number_windows.get(sender)
            if window is not None:
                window.answered(now_s)

    def _number_window(self, sender: str) -> SendWindow | None:
        if not self._number_limit or sender in self._a2p:
            return None
        window = self._number_windows.get(sender)
        if window is None:
            window = self._number_windows[sender] = SendWindow(self._number_limit)
        return window

    # -- number requests -------------------------------------------------------------------------

    def import_ready_at(self) -> float:
        return max(
            self._number_requests.ready_at,
            self._paused_until(PauseScope.NUMBER_REQUESTS, None),
        )

    def take_import(self, now_s: float) -> None:
        self._number_requests.take(now_s)

    # -- outcomes and pauses ---------------------------------------------------------------------

    def record(
        self,
        outcome: Outcome,
        *,
        kind: CommandKind,
        sender: str = "",
        looked_up: bool = False,
        now_s: float,
        now_epoch_s: float,
    ) -> float | None:
        """What one command's outcome does to the limits: the only way outcomes change them.

        A refusal (``Throttle``) pauses its scope; the monotonic time the scope opens again is
        returned. A command done resets the backoff of the scopes its request went through (a
        send: the account, its number and the send family; an import: the number requests), and
        a look-up that went through for it (``looked_up``, whatever came after) that of the
        look-ups: the next refusal there starts a fresh backoff. Other outcomes change nothing.
        """
        if looked_up:
            self._succeeded(PauseScope.LOOKUPS)
        if isinstance(outcome, Throttle):
            return self._pause(outcome, now_s=now_s, now_epoch_s=now_epoch_s)
        if isinstance(outcome, Done):
            if kind is CommandKind.SEND:
                self._succeeded(PauseScope.ACCOUNT)
                self._succeeded(PauseScope.NUMBER, sender)
                self._succeeded(PauseScope.SENDS)
            else:
                self._succeeded(PauseScope.NUMBER_REQUESTS)
        return None

    def _pause(self, throttle: Throttle, *, now_s: float, now_epoch_s: float) -> float:
        """Apply a refusal; return the monotonic time the paused scope opens again."""
        key: PauseKey = (throttle.scope, throttle.key)
        pause = self._pauses.get(key)
        # Refusals a quiet while apart (longer than the longest pause) start a fresh backoff.
        if pause is not None and pause.until_s < now_s - self._pause_max_s:
            pause = None
        strikes = 1 if pause is None else pause.strikes + 1
        if throttle.until_epoch_s is not None:
            # Clamped: a reset in the past would let the next request be refused at once, one
            # far away would stop the family for as long as the header says.
            wait_s = throttle.until_epoch_s - now_epoch_s
            until = now_s + min(self._reset_max_s, max(self._reset_min_s, wait_s))
        else:
            until = now_s + min(self._pause_max_s, self._pause_s * 2.0 ** (strikes - 1))
        if pause is not None:
            until = max(until, pause.until_s)
        self._pauses[key] = _Pause(until_s=until, strikes=strikes)
        return until

    def _succeeded(self, scope: PauseScope, key: str | None = None) -> None:
        """A request in ``scope`` went through: the next refusal starts a fresh backoff."""
        pause = self._pauses.get((scope, key))
        if pause is not None:
            pause.strikes = 0

    def is_paused(self, scope: PauseScope, key: str | None, now_s: float) -> bool:
        return self._paused_until(scope, key) > now_s

    def _paused_until(self, scope: PauseScope, key: str | None) -> float:
        pause = self._pauses.get((scope, key))
        return -math.inf if pause is None else pause.until_s

    def _prune(self, now_s: float) -> None:
        # A bucket refilled to its burst behaves like a new one; a pause over for longer than
        # the longest pause would start a fresh backoff anyway.
        self._numbers = {k: b for k, b in self._numbers.items() if not b.is_full(now_s)}
        self._number_windows = {
            k: w for k, w in self._number_windows.items() if not w.is_idle(now_s)
        }
        stale = now_s - self._pause_max_s
        self._pauses = {k: p for k, p in self._pauses.items() if p.until_s > stale}


__all__ = ["Limits", "PauseKey", "SendWindow", "TokenBucket", "burst_for", "interval_for"]

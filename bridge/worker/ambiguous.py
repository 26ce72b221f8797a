"""Ambiguous outcomes: find out whether Catapult already has a message before sending it again.

Catapult v1 has no idempotency key. Any 5xx answer to a send (a 503
``message-gateway-unavailable`` says so; a 500, 502, 504 or plain 503 does not say otherwise), a
timeout or a cut connection after the request left, an unreadable 2xx, or a worker that died
before acking can each mean "sent" or "not sent". The worker never resends blindly: the command
goes through a delay tier (so the gateway has time to settle) with a look-up flag, and before it
is sent again ``SentFinder`` lists the sender's outbound messages since the command could first
have been sent (``GET /messages?from=...&fromDateTime=...&direction=out``, newest first, page by
page) and looks for the command id the worker wrote into each message's ``tag``. Found: the
command succeeded (the result says ``recovered``), nothing is sent. Not found: it is sent again.

Where a look-up starts (``lookup_since``): the command's first send, when a copy recorded it
(``x-bridge-sent-at-ms``); else when it was first queued (``x-bridge-queued-at-ms``, written on
every copy, or the AMQP ``timestamp``); else, for a delivery the broker gave again with neither,
``worker.lookup_window_s`` back from when the worker took it, a bound that the copies then keep:
a command parked for a long time behind many others of its number is still looked up from where
it could have been sent, not from a window that slid past it.

Look-ups are ``GET /messages`` requests, a resource family Catapult limits (1 request/s by
default, 429 with ``X-RateLimit-Reset`` beyond it). So they are shared and paced: the commands of
one sender waiting to be looked up at the same time are looked up by one listing (a crash leaves
many of them, all from the same numbers), every page waits for its turn under
``worker.lookup_requests_per_s`` (``Pacer``), and a 429 pauses every look-up until its reset time
(kept within ``worker.rate_limit_reset_min_s`` and ``rate_limit_reset_max_s``) and then asks for
the same page again, up to ``REFUSALS_PER_PAGE`` times before the look-up counts as refused.

What can still happen, and why it is accepted:

- A duplicate, if Catapult stores the message only after the look-up has read the list (the
  gateway was still working on it after the delay tier expired, or a killed worker's request was
  still on its way). The delay before the look-up makes this unlikely; it cannot be excluded
  without an idempotency key.
- A duplicate, if the message fell outside what the look-up reads: sent before where the look-up
  starts minus a minute (a redelivered command with no timestamp that had waited longer than
  ``worker.lookup_window_s``), beyond ``worker.lookup_max_messages`` newer messages of the same
  sender, or past Catapult's 30-day retention.
- A duplicate, if something else changed the tag (the worker's own sends always carry it).
- A look-up that keeps failing is retried like a send and, when the attempts are used up, ends
  in a failed result that says the outcome was unknown (the message may exist).
- Imports need no look-up: importing again answers 409 ``duplicate-number``, reported as
  ``already-imported`` (so an import whose first answer was lost reads as already imported).
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from datetime import UTC, datetime

from yarl import URL

from bridge.catapult import CatapultClient, CatapultError, Message, RateLimitedError, TransportError
from bridge.events.tag import decode_tag

log = logging.getLogger(__name__)

CLOCK_SKEW_S = 60.0  # Catapult's clock and ours may disagree; search a little further back
PAGE_SIZE = 1000  # the largest page Catapult serves
RETENTION_S = 30 * 86400.0  # Catapult keeps a message this long: no look-up reaches further
REFUSALS_PER_PAGE = 5  # 429s for one page before the look-up counts as refused


class Pacer:
    """Catapult's read limit, kept by every look-up of the worker together.

    ``turn`` waits until the next request may go: one every ``1 / requests_per_s`` seconds
    (``margin`` under the rate; 0: no pacing), and none while a 429 pause lasts. ``refused``
    starts such a pause, until the reset time clamped to ``[reset_min_s, reset_max_s]``.
    """

    def __init__(
        self,
        requests_per_s: float,
        *,
        margin: float,
        reset_min_s: float,
        reset_max_s: float,
        clock: Callable[[], float] = time.monotonic,
        wall_clock: Callable[[], float] = time.time,
    ) -> None:
        self._interval_s = 0.0 if requests_per_s <= 0 else (1.0 + margin) / requests_per_s
        self._reset_min_s = reset_min_s
        self._reset_max_s = reset_max_s
        self._clock = clock
        self._wall_clock = wall_clock
        self._next_at = -float("inf")
        self._paused_until = -float("inf")

    async def turn(self) -> None:
        while True:
            now = self._clock()
            ready = max(self._next_at, self._paused_until)
            if ready <= now:
                self._next_at = now + self._interval_s
                return
            await asyncio.sleep(ready - now)

    def refused(self, retry_at_epoch_s: float | None) -> float:
        """A 429: no request before its reset (clamped); returns the pause in seconds."""
        wait_s = self._reset_min_s
        if retry_at_epoch_s is not None:
            wait_s = retry_at_epoch_s - self._wall_clock()
        pause_s = min(self._reset_max_s, max(self._reset_min_s, wait_s))
        self._paused_until = max(self._paused_until, self._clock() + pause_s)
        return pause_s


@dataclass(slots=True)
class _Waiting:
    since_epoch_s: Mapping[str, float]  # command id -> where its look-up starts
    found: asyncio.Future[dict[str, Message]]


@dataclass(slots=True)
class _Sender:
    waiting: list[_Waiting] = field(default_factory=list)
    runner: asyncio.Task[None] | None = None


class SentFinder:
    """Looks commands up among their sender's messages, one listing for all that wait together.

    ``find(sender, since)`` joins the next listing of ``sender``'s messages: one that starts
    after the call (a listing already running may have read past a message stored since). The
    listing reads from the earliest start among the commands in it, newest first, until every
    one of them is found, the list ends, or ``max_messages`` were read. Every page takes its
    turn at the ``Pacer`` and has ``request_timeout_s``. Raises the client's ``CatapultError``
    when the list cannot be read (a 429 only after ``REFUSALS_PER_PAGE`` of them for one page).
    """

    def __init__(
        self,
        client: CatapultClient,
        *,
        pacer: Pacer,
        max_messages: int,
        request_timeout_s: float,
    ) -> None:
        self._client = client
        self._pacer = pacer
        self._max_messages = max_messages
        self._request_timeout_s = request_timeout_s
        self._senders: dict[str, _Sender] = {}
        self.listings = 0  # listings run, and pages read (for tests and metrics)
        self.pages = 0

    async def find(self, sender: str, since_epoch_s: Mapping[str, float]) -> dict[str, Message]:
        """The messages of ``sender`` that carry these command ids, by command id."""
        if not since_epoch_s:
            return {}
        state = self._senders.get(sender)
        if state is None:
            state = self._senders[sender] = _Sender()
        waiting = _Waiting(dict(since_epoch_s), asyncio.get_running_loop().create_future())
        state.waiting.append(waiting)
        if state.runner is None or state.runner.done():
            state.runner = asyncio.create_task(self._run(sender, state), name=f"look-up {sender}")
        # Shielded: a caller cancelled (a drain deadline) must not end the listing of the others.
        return await asyncio.shield(waiting.found)

    async def close(self) -> None:
        """Stop every listing (shutdown); their callers were cancelled or have given up."""
        runners = [s.runner for s in self._senders.values() if s.runner is not None]
        for runner in runners:
            runner.cancel()
        for runner in runners:
            with contextlib.suppress(asyncio.CancelledError):
                await runner
        self._senders.clear()

    async def _run(self, sender: str, state: _Sender) -> None:
        group: list[_Waiting] = []
        try:
            while state.waiting:
                group, state.waiting = state.waiting, []
                since: dict[str, float] = {}
                for waiting in group:
                    for command_id, start in waiting.since_epoch_s.items():
                        since[command_id] = min(start, since.get(command_id, start))
                try:
                    found = await self._list(sender, since)
                except CatapultError as error:
                    for waiting in group:
                        if not waiting.found.done():
                            waiting.found.set_exception(error)
                    continue
                for waiting in group:
                    if not waiting.found.done():
                        mine = {i: found[i] for i in waiting.since_epoch_s if i in found}
                        waiting.found.set_result(mine)
        finally:
            for waiting in group + state.waiting:
                if not waiting.found.done():  # stopped (shutdown): nobody gets an answer
                    waiting.found.cancel()
            if self._senders.get(sender) is state:
                del self._senders[sender]

    async def _list(self, sender: str, since_epoch_s: Mapping[str, float]) -> dict[str, Message]:
        wanted = set(since_epoch_s)
        earliest = max(min(since_epoch_s.values()), time.time() - RETENTION_S) - CLOCK_SKEW_S
        url = self._client.messages_url(
            from_=sender,
            from_date_time=datetime.fromtimestamp(earliest, UTC),
            direction="out",
            sort_order="desc",
            size=min(PAGE_SIZE, self._max_messages),
        )
        self.listings += 1
        found: dict[str, Message] = {}
        scanned = 0
        seen: set[URL] = set()
        next_url: URL | None = url
        while next_url is not None and next_url not in seen:
            seen.add(next_url)
            page, next_url = await self._page(next_url)
            if not page:
                break
            for message in page:
                command_id = decode_tag(message.tag).command_id
                if command_id in wanted and command_id not in found:
                    found[command_id] = message
                scanned += 1
            if len(found) == len(wanted) or scanned >= self._max_messages:
                break
        return found

    async def _page(self, url: URL) -> tuple[list[Message], URL | None]:
        refusals = 0
        while True:
            await self._pacer.turn()
            self.pages += 1
            try:
                async with asyncio.timeout(self._request_timeout_s):
                    return await self._client.messages_page(url)
            except TimeoutError:
                raise TransportError(
                    message=f"no answer to a look-up within {self._request_timeout_s:g} s "
                    "(worker.call_timeout_s)"
                ) from None
            except RateLimitedError as error:
                refusals += 1
                pause_s = self._pacer.refused(error.retry_at)
                if refusals >= REFUSALS_PER_PAGE:
                    raise
                log.debug("look-up refused (429): every look-up waits %.2f s", pause_s)


def lookup_since(
    *,
    sent_at_epoch_s: float | None,
    queued_at_epoch_s: float | None,
    now_epoch_s: float,
    window_s: float,
) -> float:
    """Where a look-up starts: the first send when known, else when the command was first
    queued, else ``window_s`` back from now (see the module docstring)."""
    for known in (sent_at_epoch_s, queued_at_epoch_s):
        if known is not None:
            return known
    return now_epoch_s - window_s


__all__ = ["CLOCK_SKEW_S", "REFUSALS_PER_PAGE", "Pacer", "SentFinder", "lookup_since"]

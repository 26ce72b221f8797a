"""Ambiguous outcomes: find out whether Catapult already has a message before sending it again.

Catapult v1 has no idempotency key. Any 5xx answer to a send (a 503
``message-gateway-unavailable`` says so; a 500, 502, 504 or plain 503 does not say otherwise), a
timeout or a cut connection after the request left, an unreadable 2xx, or a worker that died
before acking can each mean "sent" or "not sent". The worker never resends blindly: the command
goes through a delay tier (so the gateway has time to settle) with a look-up flag, and before it
is sent again ``find_sent`` lists the sender's recent outbound messages
(``GET /messages?from=...&fromDateTime=...&direction=out``, newest first) and looks for the
command id the worker wrote into each message's ``tag``. Found: the command succeeded (the result
says ``recovered``), nothing is sent. Not found: it is sent again.

What can still happen, and why it is accepted:

- A duplicate, if Catapult stores the message only after the look-up has read the list (the
  gateway was still working on it after the delay tier expired). The delay before the look-up
  makes this unlikely; it cannot be excluded without an idempotency key.
- A duplicate, if the message fell outside what the look-up reads: older than the first send
  minus a minute (or than ``worker.lookup_window_s`` when the first send time is unknown, as after
  a crash), beyond ``worker.lookup_max_messages`` newer messages of the same sender, or past
  Catapult's 30-day retention.
- A duplicate, if something else changed the tag (the worker's own sends always carry it).
- A look-up that keeps failing is retried like a send and, when the attempts are used up, ends
  in a failed result that says the outcome was unknown (the message may exist).
- Imports need no look-up: importing again answers 409 ``duplicate-number``, reported as
  ``already-imported`` (so an import whose first answer was lost reads as already imported).

Look-ups are ``GET /messages`` requests, a resource family Catapult limits with 429 and
``X-RateLimit-Reset``; the caller pauses look-ups then, not sends.
"""

from __future__ import annotations

from collections.abc import AsyncIterator, Collection
from datetime import UTC, datetime

from bridge.catapult import CatapultClient, Message
from bridge.events.tag import decode_tag

CLOCK_SKEW_S = 60.0  # Catapult's clock and ours may disagree; search a little further back
PAGE_SIZE = 1000  # the largest page Catapult serves


async def find_sent(
    client: CatapultClient,
    *,
    sender: str,
    command_ids: Collection[str],
    since_epoch_s: float,
    max_messages: int,
) -> dict[str, Message]:
    """The messages among ``sender``'s recent outbound ones that carry these command ids.

    Raises the client's ``CatapultError`` when the list cannot be read.
    """
    wanted = set(command_ids)
    found: dict[str, Message] = {}
    since = datetime.fromtimestamp(since_epoch_s - CLOCK_SKEW_S, UTC)
    messages: AsyncIterator[Message] = client.list_messages(
        from_=sender,
        from_date_time=since,
        direction="out",
        sort_order="desc",
        size=min(PAGE_SIZE, max_messages),
    )
    try:
        scanned = 0
        async for message in messages:
            command_id = decode_tag(message.tag).command_id
            if command_id in wanted and command_id not in found:
                found[command_id] = message
                if len(found) == len(wanted):
                    break
            scanned += 1
            if scanned >= max_messages:
                break
    finally:
        aclose = getattr(messages, "aclose", None)
        if aclose is not None:
            await aclose()
    return found


def lookup_since(sent_at_epoch_s: float | None, *, now_epoch_s: float, window_s: float) -> float:
    """Where a look-up starts: the first send when known, else the configured window back."""
    earliest = now_epoch_s - window_s
    return earliest if sent_at_epoch_s is None else max(earliest, sent_at_epoch_s)


__all__ = ["CLOCK_SKEW_S", "find_sent", "lookup_since"]

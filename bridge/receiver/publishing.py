"""Storing one canonical event safely: confirmed by RabbitMQ, or else flushed to the spool.

``CallbackPublisher.deliver`` decides, for one event, what a 200 will mean:

- a duplicate of an event stored within the dedup window: nothing to do (``DUPLICATE``);
- the spool holds events, or the broker link is down: append to the spool, behind them, so the
  queue receives events in arrival order (``SPOOLED``);
- otherwise publish (persistent, mandatory, confirmed within ``broker.confirm_timeout_s``) and
  answer after the confirm (``PUBLISHED``); if the broker does not take it, spool it.

When neither works (spool off, full, or failing) it raises ``ReceiverUnavailable``: the answer is
503 and Catapult calls the fallback URL. Concurrent callbacks publish concurrently on the one
channel, so their confirms are awaited together rather than one after another.
"""

from __future__ import annotations

import asyncio
import logging
from enum import StrEnum

from bridge.broker import BrokerLink, Envelope, PublishFailed
from bridge.events.receiver_events import CanonicalEvent
from bridge.receiver.dedup import DedupWindow
from bridge.receiver.errors import ReceiverUnavailable, SpoolFailed
from bridge.receiver.metrics import ReceiverMetrics
from bridge.receiver.spool import Journal

log = logging.getLogger(__name__)

# A spool write is a local fdatasync; with the confirm deadline it stays well inside the 10 s
# Catapult waits for an answer.
SPOOL_WRITE_TIMEOUT_S = 5.0


class Disposition(StrEnum):
    PUBLISHED = "published"
    SPOOLED = "spooled"
    DUPLICATE = "duplicate"


class CallbackPublisher:
    """Publishes events, spooling what the broker does not confirm; one per receiver."""

    def __init__(
        self,
        *,
        link: BrokerLink,
        journal: Journal | None,
        dedup: DedupWindow,
        metrics: ReceiverMetrics,
    ) -> None:
        self._link = link
        self._journal = journal
        self._dedup = dedup
        self._metrics = metrics

    async def deliver(self, event: CanonicalEvent) -> Disposition:
        result, duplicate = await self._dedup.once(event.id, lambda: self._store(event))
        if duplicate or result is None:
            return Disposition.DUPLICATE
        return result

    async def _store(self, event: CanonicalEvent) -> Disposition:
        envelope = event.to_envelope()
        journal = self._journal
        if journal is not None and (not journal.is_empty or not self._link.is_ready):
            await self._spool(journal, envelope)
            return Disposition.SPOOLED
        try:
            await self._link.publish(envelope)
        except PublishFailed as exc:
            self._metrics.publish_failures.labels(exc.reason).inc()
            if journal is None:
                raise ReceiverUnavailable(
                    f"RabbitMQ did not take the event ({exc.reason}) and the spool is off"
                ) from exc
            log.warning(
                "publish failed (%s), spooling event %s",
                exc,
                event.id,
                extra={"event_id": event.id},
            )
            await self._spool(journal, envelope)
            return Disposition.SPOOLED
        return Disposition.PUBLISHED

    async def _spool(self, journal: Journal, envelope: Envelope) -> None:
        try:
            async with asyncio.timeout(SPOOL_WRITE_TIMEOUT_S):
                await journal.append(envelope)
        except TimeoutError as exc:
            raise SpoolFailed(
                f"the spool did not finish the write within {SPOOL_WRITE_TIMEOUT_S:g} s"
            ) from exc

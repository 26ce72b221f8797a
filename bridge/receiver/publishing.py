"""Storing one canonical event safely: confirmed by RabbitMQ, or else flushed to the spool.

``CallbackPublisher.deliver`` decides, for one event, what a 200 will mean:

- a duplicate of an event stored within the dedup window: nothing to do (``DUPLICATE``);
- the spool holds events, or the broker link is down: append to the spool, behind them, so the
  queue receives events in arrival order (``SPOOLED``); if the spool cannot take it (full, or the
  disk fails) while the broker link is up, publish it at once instead (``PUBLISHED``);
- otherwise publish (persistent, mandatory, confirmed within ``broker.confirm_timeout_s``) and
  answer after the confirm (``PUBLISHED``); if the broker does not take it, spool it.

Order: the queue receives events in arrival order, except that an event published at once
because the spool could not take it may reach the queue before older events still in the spool
(and the drain's own exceptions, see ``drainer.py``). A full spool while RabbitMQ takes events
is no reason to refuse a callback.

When neither works (spool off, full, or failing, and the broker does not take the event) it
raises ``ReceiverUnavailable``: the answer is 503 and Catapult calls the fallback URL. Concurrent
callbacks publish concurrently on the one channel, so their confirms are awaited together rather
than one after another.
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
            try:
                await self._spool(journal, envelope)
            except ReceiverUnavailable as exc:
                if not self._link.is_ready:
                    raise
                return await self._publish_instead(envelope, exc)
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

    async def _publish_instead(
        self, envelope: Envelope, refusal: ReceiverUnavailable
    ) -> Disposition:
        """The spool cannot take the event, the broker may: publish it ahead of the spool."""
        try:
            await self._link.publish(envelope)
        except PublishFailed as exc:
            self._metrics.publish_failures.labels(exc.reason).inc()
            raise ReceiverUnavailable(
                f"{refusal.detail}, and RabbitMQ did not take the event ({exc.reason})"
            ) from exc
        return Disposition.PUBLISHED

    async def _spool(self, journal: Journal, envelope: Envelope) -> None:
        try:
            async with asyncio.timeout(SPOOL_WRITE_TIMEOUT_S):
                await journal.append(envelope)
        except TimeoutError as exc:
            raise SpoolFailed(
                f"the spool did not finish the write within {SPOOL_WRITE_TIMEOUT_S:g} s"
            ) from exc

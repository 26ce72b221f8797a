"""The background task that moves spooled events into RabbitMQ, in arrival order.

It wakes when the journal holds records and the broker link is ready, reads a batch, publishes it
with every confirm in flight at once on the one channel (the publishes are written in journal
order, so the queue receives them in that order), and commits the longest confirmed prefix. A
failure stops the batch there: the rest is read again after ``retry_interval_s`` (or at once when
the connection comes back). Events after the failed one that the broker had already taken are
published again then, as they are after a crash between publish and commit: delivery is at least
once, and the deterministic ``message_id`` lets consumers drop the repeats. An event that fails
for a reason of its own rather than the broker's (it cannot be encoded) is set aside in the
spool's ``rejected.log`` and drained past, so it can never hold back the events behind it.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import Awaitable

from bridge.broker import BrokerLink, Envelope, PublishFailed
from bridge.receiver.metrics import ReceiverMetrics
from bridge.receiver.spool import Journal, SpoolRecord

log = logging.getLogger(__name__)


async def _skip() -> None:
    """Stands in for the publish of a damaged record: it is committed past, never sent."""


class SpoolDrainer:
    """Drains one journal through one broker link; ``run`` is its task, ``stop`` ends it."""

    def __init__(
        self,
        journal: Journal,
        link: BrokerLink,
        metrics: ReceiverMetrics,
        *,
        batch_size: int,
        retry_interval_s: float,
    ) -> None:
        self._journal = journal
        self._link = link
        self._metrics = metrics
        self._batch_size = batch_size
        self._retry_interval_s = retry_interval_s
        self._task: asyncio.Task[None] | None = None
        self._busy = False
        self._stopping = False
        self.is_stalled = False

    def start(self) -> None:
        self._task = asyncio.create_task(self._run(), name="spool-drainer")

    async def stop(self, *, timeout_s: float) -> None:
        """Let a batch in progress finish (within ``timeout_s``), then end the task."""
        if self._task is None:
            return
        self._stopping = True
        if self._busy:
            await asyncio.wait({self._task}, timeout=timeout_s)
        self._task.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await self._task

    async def _run(self) -> None:
        while not self._stopping:
            await self._journal.wait_for_records()
            await self._link.wait_ready()
            self._busy = True
            try:
                succeeded = await self._drain_batch()
            finally:
                self._busy = False
            if not succeeded:
                await asyncio.sleep(self._retry_interval_s)

    async def _drain_batch(self) -> bool:
        records = await self._journal.read_batch(self._batch_size)
        if not records:
            log.error("the spool counts %d records but none could be read", self._journal.depth)
            return False
        results = await self._publish_in_order(records)
        # The longest prefix that is done with: confirmed, damaged (skipped) or set aside.
        done = 0
        failure: tuple[SpoolRecord, BaseException] | None = None
        for record, result in zip(records, results, strict=True):
            if result is None:
                done += 1
            elif record.envelope is not None and not isinstance(result, PublishFailed):
                # Not the broker: this event itself cannot be published (it cannot be encoded),
                # and retrying would hold every event behind it for ever. Set it aside, go on.
                await self._set_aside(record.envelope, result)
                done += 1
            else:
                failure = (record, result)
                break
        if done:
            await self._journal.commit(records[done - 1].end, done)
            self._metrics.spool_drained.inc(done)
        if failure is None:
            self.is_stalled = False
            return True
        record, exc = failure
        self.is_stalled = True
        reason = exc.reason if isinstance(exc, PublishFailed) else "error"
        self._metrics.publish_failures.labels(reason).inc()
        log.warning(
            "spool drain stopped at event %s (%s); %d events still spooled",
            record.envelope.message_id if record.envelope is not None else "?",
            exc,
            self._journal.depth,
        )
        if reason == "unroutable":
            await self._link.redeclare()
        return False

    async def _set_aside(self, envelope: Envelope, exc: BaseException) -> None:
        path = await self._journal.set_aside(envelope)
        self._metrics.publish_failures.labels("rejected").inc()
        log.error(
            "spooled event %s can never be published (%s: %s); kept in %s",
            envelope.message_id,
            type(exc).__name__,
            exc,
            path,
        )

    async def _publish_in_order(self, records: list[SpoolRecord]) -> list[BaseException | None]:
        """Publish every record at once, in order; each one's failure, or None once confirmed."""
        publishes: list[Awaitable[None]] = []
        for record in records:
            if record.envelope is None:
                publishes.append(_skip())
            else:
                publishes.append(self._link.publish(record.envelope))
        # Tasks start in creation order and take the channel's lock in that order, so the frames
        # go out in journal order while the confirms are awaited together.
        tasks = [asyncio.ensure_future(publish) for publish in publishes]
        results = await asyncio.gather(*tasks, return_exceptions=True)
        for result in results:
            if isinstance(result, asyncio.CancelledError):
                raise result
        return [result if isinstance(result, BaseException) else None for result in results]

"""The background tasks that move spooled events into RabbitMQ, and what they guarantee.

Two drains, each the task of one ``SpoolDrainer``: the *main* drain takes the spool in arrival
order; the *retry* drain takes the events the broker refused, from a journal of their own
(``<spool_dir>/retry``), after a pause. A round reads a batch, publishes it with every confirm
in flight at once on the one channel (in journal order), and commits the longest part of the
batch that is settled: confirmed; refused by the broker (nacked: a queue over its length limit, a
quorum queue without a leader; returned: no queue bound) and so moved to the retry journal; an
event no broker can take (it cannot be encoded), kept in ``rejected.log``; a damaged line, kept in
``damaged.log``. A failure of the broker as a whole (disconnected, or no confirm in time with
nothing after it confirmed) ends the settled part: the rest is read again once the broker is back.

Order and duplicates, as guaranteed now:

- Events reach RabbitMQ in the order they were spooled, except an event the broker refused: it
  is retried after a pause, behind the events that came after it. (Callbacks answered while the
  spool cannot take them are published at once, see ``publishing.py``.)
- A confirmed event is not published again by this process. It is published again only after a
  crash between its confirm and the commit that records it (at most one batch), or when the
  broker goes away in the middle of a batch and confirmed some of what followed the first lost
  publish (at most one batch per outage).
- A refused event is published once per retry. A queue that refuses it does not stop the others
  it is routed to from taking it, so they hold a copy per retry: retries pause from
  ``receiver.retry_interval_s``, doubling up to ``receiver.drain_retry_max_s``.
- Nothing answered 200 is dropped: rejected and damaged records stay on disk, counted.

Consumers drop repeats by ``message_id`` (the deterministic event id).

A drain never ends on an error: whatever a round raises (a disk that is full or gone, a file that
cannot be opened) is logged once when the drain stalls, counted, shown as stalled in readiness,
and the round is retried after the same pause; it logs again once it flows.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import Awaitable
from dataclasses import dataclass

from bridge.broker import BrokerLink, PublishFailed
from bridge.events.envelope import Envelope
from bridge.receiver.errors import SpoolFailed
from bridge.receiver.metrics import ReceiverMetrics
from bridge.receiver.segments import SpoolRecord
from bridge.receiver.spool import Journal

log = logging.getLogger(__name__)

# Refusals that belong to the event or its queue, not to the broker as a whole.
_REFUSED = frozenset({"nacked", "unroutable"})


async def _skip() -> None:
    """Stands in for the publish of a damaged record: it is kept aside, never sent."""


class Backoff:
    """Pauses that double from ``first_s`` up to ``max_s``; ``reset`` after a success."""

    def __init__(self, first_s: float, max_s: float) -> None:
        self._first_s = first_s
        self._max_s = max(first_s, max_s)
        self._next_s = first_s

    def next(self) -> float:
        pause = self._next_s
        self._next_s = min(pause * 2, self._max_s)
        return pause

    def reset(self) -> None:
        self._next_s = self._first_s


@dataclass(frozen=True, slots=True)
class _Round:
    """What one round came to: ``failed`` asks for a pause before the next one."""

    failed: bool
    reason: str = ""
    detail: str = ""


class SpoolDrainer:
    """Drains one journal through one broker link; ``start`` runs its task, ``stop`` ends it.

    ``refused_to`` is where events the broker refuses go: the retry journal for the main drain,
    the same journal for the retry drain (which then pauses before reading them again).
    """

    def __init__(
        self,
        journal: Journal,
        link: BrokerLink,
        metrics: ReceiverMetrics,
        *,
        name: str,
        refused_to: Journal,
        batch_size: int,
        backoff: Backoff,
    ) -> None:
        self._journal = journal
        self._link = link
        self._metrics = metrics
        self.name = name
        self._refused_to = refused_to
        self._pauses_on_refusal = refused_to is journal
        self._batch_size = batch_size
        self._backoff = backoff
        self._task: asyncio.Task[None] | None = None
        self._busy = False
        self._stopping = False
        self._stalled = asyncio.Event()
        self._flowing = asyncio.Event()
        self._flowing.set()
        self._failed_rounds = 0

    @property
    def is_stalled(self) -> bool:
        return self._stalled.is_set()

    async def wait_stalled(self, stalled: bool = True) -> None:
        """Until the drain has stalled (or, with ``stalled=False``, flows)."""
        await (self._stalled if stalled else self._flowing).wait()

    def start(self) -> None:
        self._task = asyncio.create_task(self._run(), name=f"spool-drain-{self.name}")

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
        journal = self._journal
        while not self._stopping:
            if journal.is_persisted:
                await journal.wait_for_records()
            if journal.depth:
                await self._link.wait_ready()
            self._busy = True
            try:
                result = await self._round() if journal.depth else await self._persist()
            except Exception as exc:  # the drain's boundary: it must outlive any one failure
                disk = isinstance(exc, OSError | SpoolFailed)
                result = _Round(True, "disk" if disk else "error", f"{type(exc).__name__}: {exc}")
                self._metrics.spool_drain_failures.labels(result.reason).inc()
                if not disk:
                    log.exception("spool drain (%s) round failed", self.name)
            finally:
                self._busy = False
            if not result.failed:
                self._flows()
                continue
            self._stalls(result)
            if result.reason == "disconnected" and not self._link.is_ready:
                continue  # wait_ready above: the reconnect ends the wait, not a timer
            await asyncio.sleep(self._backoff.next())

    async def _persist(self) -> _Round:
        await self._journal.persist()
        return _Round(False)

    def _stalls(self, result: _Round) -> None:
        self._failed_rounds += 1
        if self._stalled.is_set():
            log.debug("spool drain (%s) still stalled: %s", self.name, result.detail)
            return
        self._stalled.set()
        self._flowing.clear()
        log.log(
            logging.ERROR if result.reason in ("disk", "error") else logging.WARNING,
            "spool drain (%s) stalled (%s): %s; %d events wait, retrying with backoff; "
            "callbacks are still taken",
            self.name,
            result.reason,
            result.detail,
            self._journal.depth,
        )

    def _flows(self) -> None:
        self._backoff.reset()
        if not self._stalled.is_set():
            return
        self._stalled.clear()
        self._flowing.set()
        log.warning(
            "spool drain (%s) flows again after %d failed rounds", self.name, self._failed_rounds
        )
        self._failed_rounds = 0

    async def _round(self) -> _Round:
        journal = self._journal
        records = await journal.read_batch(self._batch_size)
        if not records:
            raise SpoolFailed(f"the spool counts {journal.depth} records but none could be read")
        results = await self._publish_in_order(records)
        last_confirmed = max(
            (i for i, (rec, res) in enumerate(zip(records, results, strict=True)) if res is None),
            default=-1,
        )
        settled = 0
        damaged: list[SpoolRecord] = []
        rejected: list[tuple[Envelope, BaseException]] = []
        refused: list[tuple[Envelope, PublishFailed]] = []
        lost: PublishFailed | None = None
        for index, (record, result) in enumerate(zip(records, results, strict=True)):
            if record.envelope is None:
                damaged.append(record)
            elif result is None:
                pass
            elif not isinstance(result, PublishFailed):
                rejected.append((record.envelope, result))
            elif result.reason in _REFUSED or index < last_confirmed:
                # Its own or its queue's refusal (the broker took what came after it).
                refused.append((record.envelope, result))
            else:
                lost = result
                break
            settled = index + 1
        if damaged:
            await self._keep_damaged(damaged)
        if rejected:
            await self._set_aside(rejected)
        if refused:
            await self._move_refused(refused)
        if settled:
            confirmed = settled - len(damaged) - len(rejected) - len(refused)
            self._metrics.spool_drained.inc(confirmed)
            await journal.commit(records[settled - 1].end, settled)
        if lost is not None:
            self._metrics.publish_failures.labels(lost.reason).inc()
            return _Round(True, lost.reason, str(lost))
        if refused and self._pauses_on_refusal:
            return _Round(True, refused[0][1].reason, str(refused[0][1]))
        return _Round(False)

    async def _keep_damaged(self, records: list[SpoolRecord]) -> None:
        path = await self._journal.keep_damaged(records)
        log.error(
            "%d damaged spool records (their checksum fails) cannot be published; kept in %s",
            len(records),
            path,
        )

    async def _set_aside(self, rejected: list[tuple[Envelope, BaseException]]) -> None:
        path = await self._journal.set_aside(envelope for envelope, _ in rejected)
        for envelope, exc in rejected:
            self._metrics.publish_failures.labels("rejected").inc()
            log.error(
                "spooled event %s can never be published (%s: %s); kept in %s",
                envelope.message_id,
                type(exc).__name__,
                exc,
                path,
            )

    async def _move_refused(self, refused: list[tuple[Envelope, PublishFailed]]) -> None:
        target = self._refused_to
        # One group-committed write for all of them, in their order; they count against the
        # spool already, so the bound does not refuse them.
        await asyncio.gather(*(target.append(envelope, bounded=False) for envelope, _ in refused))
        for _, exc in refused:
            self._metrics.publish_failures.labels(exc.reason).inc()
        envelope, exc = refused[0]
        log.log(
            logging.DEBUG if self._pauses_on_refusal else logging.WARNING,
            "RabbitMQ refused %d spooled events (%s, first %s); they are retried after a pause",
            len(refused),
            exc.reason,
            envelope.message_id,
        )
        if any(exc.reason == "unroutable" for _, exc in refused):
            await self._link.redeclare()

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

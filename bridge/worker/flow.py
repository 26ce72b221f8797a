"""A command's way through the worker, from its delivery to the disposition ``finish`` carries out.

Intake (``on_message``): the delivery is read; poison is dead-lettered at once; a send is admitted
to its sender's lane (held, or parked for later), an import to the number lane. The dispatchers
take ready work within the limits and the call slots; the executor calls Catapult; ``_conclude``
gives each command its end: a rate-limit refusal pauses the scope and puts the command back at the
head of its lane (no attempt spent), anything else becomes a ``Disposition`` (``Planner``) that
``finish`` carries out: the one place a command is settled, counted in the metrics and given its
log line. At shutdown, ``give_back_held`` returns what is held to the broker, and a call cancelled
at the drain deadline gives its commands back too.

The stages, in the order of this module: intake (``_on_message``, ``_take_in``), admission to a
lane (``SendScheduler.admit``), the calls (``_take_sends``, ``_run_sends``, ``_run_import``), the
conclusion (``_conclude``: ``Limits.record`` and a disposition), and ``finish``.

While Catapult is down (``outage.CatapultWatch``) the command queues are not consumed, the
dispatchers start no call, and every command held, taken in late or failing for want of Catapult
goes back to its queue through the shortest delay tier (``Planner.for_outage``: a copy, so that
neither an attempt nor a quorum queue's delivery count is spent on it); when Catapult answers
again, the queues are consumed again. With sharded sending the send queue's commands come from
the shard queues (``shards.Shards``, given by ``take_sends_from``), which are paused and resumed
with the rest.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Callable
from datetime import UTC, datetime

from bridge.broker import Inbound, Topology
from bridge.events import headers as h
from bridge.events.commands import CommandKind
from bridge.events.results import FailureReason, ResultError
from bridge.logs import RESULTS_LOGGER
from bridge.settings import WorkerSettings
from bridge.worker.consumer import CommandConsumer, OnMessage
from bridge.worker.decisions import Fail, Outcome, Throttle, Unavailable
from bridge.worker.deliveries import (
    Delivery,
    Rejected,
    Taken,
    Unread,
    expires_at,
    queued_at,
    read_dead_lettered,
    read_delivery,
)
from bridge.worker.dispatcher import Dispatcher, InFlight
from bridge.worker.executor import Executor
from bridge.worker.limits import Limits
from bridge.worker.metrics import WorkerMetrics
from bridge.worker.outage import CatapultWatch
from bridge.worker.pacing import Pacing
from bridge.worker.scheduler import ImportScheduler, Park, SendScheduler
from bridge.worker.settlement import GIVE_BACK, Disposition, Finish, Planner, Republish
from bridge.worker.shards import Shards

log = logging.getLogger(__name__)
# One line per command finished: INFO, or WARNING for a dead letter (``log.per_message``).
results_log = logging.getLogger(RESULTS_LOGGER)


class CommandFlow:
    def __init__(
        self,
        *,
        settings: WorkerSettings,
        topology: Topology,
        consumer: CommandConsumer,
        executor: Executor,
        limits: Limits,
        sends: SendScheduler[Delivery],
        imports: ImportScheduler[Delivery],
        pacing: Pacing,
        planner: Planner,
        metrics: WorkerMetrics,
        in_flight: InFlight,
        watch: CatapultWatch,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        """Wire the parts ``Worker`` built (``worker.py``: the one place they are made)."""
        self._topology = topology
        self._watch = watch
        self._following = asyncio.Lock()
        self._consumer = consumer
        self._shards: Shards | None = None
        self._executor = executor
        self._limits = limits
        self._metrics = metrics
        self._in_flight = in_flight
        self._clock = clock
        self._planner = planner
        self._max_age_s = settings.max_age_s
        self._lookup_window_s = settings.lookup_window_s
        self._accepting = True
        self._sends = sends
        self._imports = imports
        self._pacing = pacing
        self._sends_in_flight = 0
        self._held_sends = metrics.held.labels("send")
        self._held_imports = metrics.held.labels("import")
        calls = asyncio.Semaphore(settings.concurrency)
        number_calls = asyncio.Semaphore(settings.number_concurrency)
        self.send_dispatcher: Dispatcher[Delivery] = Dispatcher(
            name="send",
            next_ready_at=self._next_send_at,
            take=self._take_sends,
            run=self._run_sends,
            slots=[calls],
            in_flight=in_flight,
            clock=clock,
        )
        self.import_dispatcher: Dispatcher[Delivery] = Dispatcher(
            name="import",
            next_ready_at=lambda: None if watch.is_down else self._imports.next_ready_at(),
            take=self._imports.take,
            run=self._run_import,
            slots=[number_calls, calls],
            in_flight=in_flight,
            clock=clock,
        )
        watch.on_change(self._catapult_changed)

    @property
    def held_count(self) -> int:
        return self._sends.held_count + self._imports.held_count

    def on_message_for(self, queue: str, kind: CommandKind) -> OnMessage:
        async def on_message(message: Inbound) -> None:
            await self._on_message(message, queue=queue, kind=kind)

        return on_message

    def on_dead_lettered_for(self, queue: str, kind: CommandKind) -> OnMessage:
        """The consumer of ``queue``'s backstop queue (what RabbitMQ dead-lettered itself)."""

        async def on_message(message: Inbound) -> None:
            await self._on_dead_lettered(message, queue=queue, kind=kind)

        return on_message

    def take_sends_from(self, shards: Shards) -> None:
        """Sharded sending: the sends come from ``shards`` (built on this flow's ``on_message``),
        whose intake follows Catapult as the command queues' does."""
        self._shards = shards

    def stop_accepting(self) -> None:
        self._accepting = False

    async def give_back_held(self) -> int:
        """Nack every held command back to the broker (shutdown); return how many."""
        held = self._sends.drain() + self._imports.drain()
        self._update_gauges()
        await asyncio.gather(*(self.finish(d, GIVE_BACK) for d in held))
        return len(held)

    # -- Catapult down and back ------------------------------------------------------------------

    def _catapult_changed(self) -> None:
        self._in_flight.spawn(self._follow_catapult(), name="follow catapult")

    async def _follow_catapult(self) -> None:
        """Bring intake in line with the watch (in turn: a quick down-and-up ends consuming)."""
        queues = self._topology.command_queues
        async with self._following:
            if self._watch.is_down:
                # Cancelling the consumer keeps the commands in RabbitMQ, not in memory; what is
                # held goes back as copies (``for_outage``), never nacked. Only what is on its way
                # at the cancel may come back from a quorum queue marked redelivered (and counted
                # toward its delivery limit, rabbitmq-server#3746): such a send is looked up first.
                await self._consumer.pause(queues)
                if self._shards is not None:
                    await self._shards.pause()
                held = self._sends.drain() + self._imports.drain()
                self._update_gauges()
                if held:
                    log.info("sending %d held commands back to wait for Catapult", len(held))
                await asyncio.gather(
                    *(self.finish(d, self._planner.for_outage(d, now=_now())) for d in held)
                )
            elif self._accepting:
                await self._consumer.resume(queues)
                if self._shards is not None:
                    await self._shards.resume()
                self.send_dispatcher.wake()
                self.import_dispatcher.wake()

    # -- intake ----------------------------------------------------------------------------------

    async def _on_message(self, message: Inbound, *, queue: str, kind: CommandKind) -> None:
        task = asyncio.current_task()
        if task is not None:
            self._in_flight.track(task)
        try:
            await self._take_in(message, queue=queue, kind=kind)
        except Exception:  # the per-message boundary: a bug must neither crash nor lose it
            log.exception(
                "unexpected failure taking in message %s: giving it back", message.message_id
            )
            # Requeued; RabbitMQ's delivery limit dead-letters it if this happens every time.
            unread = Unread(message, queue, kind, command_id=message.message_id or "")
            await self.finish(unread, GIVE_BACK)

    async def _take_in(self, message: Inbound, *, queue: str, kind: CommandKind) -> None:
        delivery = read_delivery(message, queue=queue, kind=kind)
        if isinstance(delivery, Rejected):
            await self.finish(delivery, self._planner.for_rejected(delivery, now=_now()))
            return
        if not self._accepting:
            await self.finish(delivery, GIVE_BACK)
            return
        now_epoch = time.time()
        delivery.expires_at_epoch_s = expires_at(
            message, now_epoch_s=now_epoch, max_age_s=self._max_age_s
        )
        delivery.queued_at_epoch_s = queued_at(
            message,
            needs_lookup=delivery.needs_lookup,
            now_epoch_s=now_epoch,
            window_s=self._lookup_window_s,
        )
        if delivery.is_expired(now_epoch):
            await self._conclude(delivery, _expired(delivery))
            return
        if self._watch.is_down:  # delivered before the consumer was cancelled
            await self.finish(delivery, self._planner.for_outage(delivery, now=_now()))
            return
        if kind is CommandKind.IMPORT:
            self._imports.admit(delivery)
            self.import_dispatcher.wake()
        else:
            due_in_s = None
            if delivery.due_at_epoch_s is not None:
                due_in_s = delivery.due_at_epoch_s - time.time()
            admission = self._sends.admit(delivery, self._clock(), due_in_s=due_in_s)
            if isinstance(admission, Park):
                await self.finish(delivery, self._planner.for_park(delivery, admission, now=_now()))
            else:
                self.send_dispatcher.wake()

    async def _on_dead_lettered(self, message: Inbound, *, queue: str, kind: CommandKind) -> None:
        task = asyncio.current_task()
        if task is not None:
            self._in_flight.track(task)
        try:
            dead = read_dead_lettered(message, queue=queue, kind=kind)
            finish = self._planner.for_dead_lettered(dead, now=_now())
        except Exception:  # the per-message boundary, as for commands
            log.exception("unexpected failure reading dead-lettered message %s", message.message_id)
            unread = Unread(message, queue, kind, command_id=message.message_id or "")
            await self.finish(unread, GIVE_BACK)
            return
        log.info(
            "RabbitMQ dead-lettered command %s from %s itself (%s): publishing its failed result",
            dead.command_id,
            queue,
            dead.reason,
            extra={"command_id": dead.command_id, "message_id": message.message_id},
        )
        await self.finish(dead, finish)

    # -- calls -----------------------------------------------------------------------------------

    def _next_send_at(self) -> float | None:
        # None while the sends in flight are all Little's law allows (an answer wakes it), and
        # while Catapult is down (its coming back wakes it).
        if self._watch.is_down or self._sends_in_flight >= self._pacing.sends_in_flight:
            return None
        return self._sends.next_ready_at()

    def _take_sends(self, now_s: float) -> list[Delivery]:
        batch = self._sends.take(
            now_s,
            max_items=self._pacing.sends_in_flight - self._sends_in_flight,
            gather_s=self._pacing.gather_s,
        )
        self._sends_in_flight += len(batch)
        return batch

    async def _run_sends(self, batch: list[Delivery]) -> None:
        live: list[Delivery] = []
        expired: list[tuple[Delivery, Outcome]] = []
        try:
            live, expired = self._unexpired(self._live(batch))
            self._update_gauges()
            started_s = self._clock()
            results = await self._executor.run_sends(live) if live else []
            if live:
                self._pacing.observe(self._clock() - started_s)
        except asyncio.CancelledError:
            await asyncio.shield(self._give_back(live))
            raise
        finally:
            # Every send taken for this batch was answered, failed or never left: room in the
            # windows it counted in, for the sends waiting on it.
            self._sends_in_flight -= len(batch)
            self._limits.sends_answered([d.sender for d in batch], self._clock())
            self.send_dispatcher.wake()
        await self._conclude_all(expired + results)

    async def _run_import(self, batch: list[Delivery]) -> None:
        live, expired = self._unexpired(self._live(batch))
        self._update_gauges()
        try:
            results = [(d, await self._executor.run_import(d)) for d in live]
        except asyncio.CancelledError:
            await asyncio.shield(self._give_back(live))
            raise
        await self._conclude_all(expired + results)

    @staticmethod
    def _unexpired(
        batch: list[Delivery],
    ) -> tuple[list[Delivery], list[tuple[Delivery, Outcome]]]:
        """The commands still in time, and the expired ones with their outcome: never sent late."""
        now_epoch = time.time()
        live = [d for d in batch if not d.is_expired(now_epoch)]
        if len(live) == len(batch):
            return batch, []
        return live, [(d, _expired(d)) for d in batch if d.is_expired(now_epoch)]

    def _live(self, batch: list[Delivery]) -> list[Delivery]:
        # A delivery whose channel closed (connection lost) cannot be acked any more and the
        # broker delivers it again: calling Catapult for it now would only risk a duplicate.
        live = [d for d in batch if not d.is_stale]
        if len(live) < len(batch):
            log.info("dropping %d commands of a lost channel", len(batch) - len(live))
        return live

    async def _give_back(self, deliveries: list[Delivery]) -> None:
        await asyncio.gather(*(self.finish(d, GIVE_BACK) for d in deliveries))

    async def _conclude_all(self, results: list[tuple[Delivery, Outcome]]) -> None:
        done = await asyncio.gather(
            *(self._conclude(d, o) for d, o in results), return_exceptions=True
        )
        for (delivery, _), failure in zip(results, done, strict=True):
            if isinstance(failure, Exception):  # a bug: the command goes back, the worker goes on
                log.error(
                    "unexpected failure settling command %s: giving it back",
                    delivery.command_id,
                    exc_info=failure,
                    extra={"command_id": delivery.command_id},
                )
                await self.finish(delivery, GIVE_BACK)
            elif isinstance(failure, BaseException):
                raise failure

    async def _conclude(self, delivery: Delivery, outcome: Outcome) -> None:
        looked_up, delivery.looked_up = delivery.looked_up, False
        until_s = self._limits.record(
            outcome,
            kind=delivery.kind,
            sender=delivery.sender,
            looked_up=looked_up,
            now_s=self._clock(),
            now_epoch_s=time.time(),
        )
        if isinstance(outcome, Throttle):
            assert until_s is not None
            self._throttle(delivery, outcome, until_s=until_s)
            return
        if isinstance(outcome, Unavailable):
            disposition = self._planner.for_outage(delivery, lookup=outcome.lookup, now=_now())
            await self.finish(delivery, disposition)
            return
        await self.finish(delivery, self._planner.for_outcome(delivery, outcome, now=_now()))

    def _throttle(self, delivery: Delivery, throttle: Throttle, *, until_s: float) -> None:
        self._metrics.pauses.labels(throttle.scope.value).inc()
        log.info(
            "Catapult refused command %s (%s): pausing %s%s for %.2f s",
            delivery.command_id,
            throttle.error.code,
            throttle.scope.value,
            f" {throttle.key}" if throttle.key else "",
            max(0.0, until_s - self._clock()),
            extra={"command_id": delivery.command_id},
        )
        if delivery.kind is CommandKind.IMPORT:
            # One lane, paused as a whole: the imports held wait in memory (the lane's window).
            self._imports.put_back(delivery)
            self.import_dispatcher.wake()
            return
        admission = self._sends.put_back(delivery, self._clock())
        if isinstance(admission, Park):
            disposition = self._planner.for_park(delivery, admission, now=_now())
            self._in_flight.spawn(self.finish(delivery, disposition), name="park after refusal")
        self.send_dispatcher.wake()

    # -- the end of a round ----------------------------------------------------------------------

    async def finish(self, taken: Taken, disposition: Disposition) -> None:
        """Carry ``disposition`` out for ``taken``; count it, and log a command's end.

        The one way from the flow to the broker's ack (``CommandConsumer.settle``): a result or a
        dead letter, a copy through a delay tier, or the delivery given back. Counted only once
        it took effect: a commit the broker refused leaves the message to be delivered again.
        """
        settled = await self._consumer.settle(
            taken.message, disposition, command_id=taken.command_id
        )
        if not settled:
            return
        kind = taken.kind.value
        if isinstance(disposition, Finish):
            self._metrics.results.labels(kind, disposition.outcome).inc()
            if disposition.dead_letter is not None:
                reason = str(disposition.dead_letter.headers.get(h.REASON, ""))
                self._metrics.dead_letters.labels(reason).inc()
            self._log_finish(taken, disposition)
        elif isinstance(disposition, Republish):
            self._metrics.republished.labels(kind, disposition.why).inc()

    def _log_finish(self, taken: Taken, finish: Finish) -> None:
        """The command's one line: INFO when it finished, WARNING when it was dead-lettered."""
        dead = finish.dead_letter
        if dead is None:
            if not results_log.isEnabledFor(logging.INFO):
                return
            results_log.info(
                "command finished",
                extra={
                    "outcome": finish.outcome,
                    "routing_key": finish.result.routing_key,
                    "command_id": taken.command_id,
                    "resource_id": finish.resource_id,
                    "attempts": taken.attempts,
                },
            )
            return
        headers = dead.headers
        results_log.warning(
            "command dead-lettered",
            extra={
                "reason": headers.get(h.REASON),
                "detail": headers.get(h.DETAIL),
                "error_status": headers.get(h.ERROR_STATUS),
                "error_code": headers.get(h.ERROR_CODE),
                "error_message": headers.get(h.ERROR_MESSAGE),
                "outcome": finish.outcome,
                "routing_key": finish.result.routing_key,
                "command_id": taken.command_id,
                "attempts": taken.attempts,
                "dead_letter_queue": self._topology.dead_letter_queue(taken.queue),
            },
        )

    def _update_gauges(self) -> None:
        # Set when work is taken or given back (not per delivery: cheap enough, current enough).
        self._held_sends.set(self._sends.held_count)
        self._held_imports.set(self._imports.held_count)


def _now() -> datetime:
    return datetime.now(UTC)


def _expired(delivery: Delivery) -> Fail:
    text = "the command expired before it could be sent (its expiry or worker.max_age_s)"
    if delivery.needs_lookup:
        text += "; an earlier delivery may have sent it"
    return Fail(
        FailureReason.EXPIRED, ResultError(category="expired", code="expired", message=text)
    )


__all__ = ["CommandFlow"]

"""``Worker``: the composition of the command side, with its ordered start and stop.

    worker = Worker(settings, client)          # client: a CatapultClient, owned by the caller
    await worker.start()                       # connect, declare the topology, consume
    ...
    await worker.stop()                        # SIGTERM semantics, below

or ``async with Worker(settings, client): ...``.

``start`` builds the parts (all of them: the consumer, the limits, the Catapult watch, the
executor, the schedulers, the pacing, the planner; ``CommandFlow`` only wires them), starts the two
dispatchers and connects to RabbitMQ through a
``BrokerLink`` (``bridge.broker``: the connection, the shared topology, the confirm channel for
everything the worker publishes, and a consumer of the send and import queues on every
connection). Without RabbitMQ the worker starts anyway and waits, not ready, while the link keeps
trying; after a reconnect it consumes again, and what it held from the lost channels is never
sent (those deliveries are stale: the broker delivers them again, and a redelivered send is
looked up before it is sent). Calls in flight are capped by
``worker.concurrency`` (one slot per request; a batch of sends is one request) and imports by
``worker.number_concurrency`` as well; the prefetch of the send queue (``worker.send_prefetch``,
default ``concurrency x batch_max``) bounds the commands held in memory, so that every call slot
can carry a full batch.

With ``worker.shards`` the send queue is not consumed directly: ``Shards`` (``shards.py``) routes
it into shard queues by sending number and consumes those, so that several workers share
Catapult's limits; their deliveries go through the same flow.

``stop``: stop consuming; give back what is held and not yet called; let the calls in flight
finish within ``worker.drain_timeout_s`` (their commands are settled as usual); cancel the rest,
which gives their commands back (a redelivered send is looked up before it is sent again, so
nothing is sent twice); give back what a last refusal put back; close the Catapult client if the
worker was asked to own it; close the channels and the connection. Nothing is acked that was not
settled, so nothing is lost.
"""

from __future__ import annotations

import asyncio
import enum
import logging
from types import TracebackType

from prometheus_client import CollectorRegistry

from bridge.broker import BrokerLink, Session, Topology
from bridge.catapult import MAX_BATCH, CatapultClient
from bridge.events.commands import CommandKind
from bridge.settings import Settings
from bridge.worker import shards as sharding
from bridge.worker.consumer import CommandConsumer
from bridge.worker.dispatcher import InFlight
from bridge.worker.executor import Executor
from bridge.worker.flow import CommandFlow
from bridge.worker.limits import Limits
from bridge.worker.metrics import WorkerMetrics
from bridge.worker.outage import CatapultState, CatapultWatch
from bridge.worker.pacing import Pacing
from bridge.worker.scheduler import ImportScheduler, SendScheduler
from bridge.worker.settlement import Planner

log = logging.getLogger(__name__)

CONNECTION_NAME = "catapult-bridge worker"
_CLOSE_TIMEOUT_S = 5.0


class WorkerState(enum.Enum):
    CREATED = "created"
    STARTING = "starting"
    RUNNING = "running"
    STOPPING = "stopping"
    STOPPED = "stopped"


class Worker:
    """Consumes send and import commands, calls Catapult within limits, publishes their results."""

    def __init__(
        self,
        settings: Settings,
        client: CatapultClient,
        *,
        registry: CollectorRegistry | None = None,
        close_client: bool = False,
    ) -> None:
        self.settings = settings
        self.topology = Topology.from_settings(settings)
        self.metrics = WorkerMetrics(registry)
        self.state = WorkerState.CREATED
        self._client = client
        self._close_client = close_client
        self._in_flight = InFlight()
        self._link = BrokerLink(
            settings, name=CONNECTION_NAME, while_away="commands wait in their queues"
        )
        self._consumed_once = False
        # Follows is_ready at every scrape (the link may go and come back at any time).
        self.metrics.ready.set_function(lambda: 1.0 if self.is_ready else 0.0)
        self._shards: sharding.Shards | None = None  # with worker.shards: sharded sending
        self._consumer: CommandConsumer | None = None
        self._flow: CommandFlow | None = None
        self._watch: CatapultWatch | None = None
        self._executor: Executor | None = None
        self._loops: list[asyncio.Task[None]] = []

    @property
    def is_ready(self) -> bool:
        """Running with the broker connection up and intake not paused (the command queues',
        and with sharded sending the shards').

        On a new connection the intakes consume again at once; one that cannot ends the
        connection (the link is then not ready), so the link's readiness stands for theirs.
        """
        consumer = self._consumer
        shards = self._shards
        return (
            self.state is WorkerState.RUNNING
            and self._link.is_ready
            and consumer is not None
            and not consumer.is_paused
            and not (shards is not None and shards.is_paused)
        )

    @property
    def broker_state(self) -> str:
        """The broker link's state: connecting, ready, disconnected or closed."""
        return self._link.state.value

    @property
    def catapult_state(self) -> CatapultState:
        """Up, or down: the worker takes no commands and probes Catapult (``outage.py``)."""
        watch = self._watch
        return CatapultState.UP if watch is None else watch.state

    @property
    def catapult_down_for_s(self) -> float | None:
        return None if self._watch is None else self._watch.down_for_s

    @property
    def in_flight(self) -> int:
        return len(self._in_flight)

    @property
    def shards(self) -> sharding.Shards | None:
        """Its part in sharded sending (``worker.shards``), once started; None when off."""
        return self._shards

    async def start(self) -> None:
        """Connect, declare, consume. Raises (and cleans up) when the broker cannot be used."""
        if self.state is not WorkerState.CREATED:
            raise RuntimeError(f"a worker is started once; this one is {self.state.value}")
        self.state = WorkerState.STARTING
        try:
            await self._start()
        except BaseException:
            await self._close()
            self.state = WorkerState.STOPPED
            raise
        self.state = WorkerState.RUNNING
        if not self._link.is_ready:
            log.info(
                "worker started, waiting for RabbitMQ before consuming %s and %s",
                self.topology.send_queue,
                self.topology.import_queue,
            )

    async def _start(self) -> None:
        # Every part of the command side is made here, and only here; ``CommandFlow`` wires them.
        settings = self.settings
        worker = settings.worker
        batch_max = min(worker.batch_max, MAX_BATCH)
        self._consumer = CommandConsumer(link=self._link, metrics=self.metrics)
        limits = Limits(worker)
        self._watch = watch = CatapultWatch(
            self._client, settings=settings.worker, metrics=self.metrics
        )
        executor = Executor(
            self._client,
            worker=settings.worker,
            catapult=settings.catapult,
            metrics=self.metrics,
            watch=watch,
        )
        self._executor = executor
        self._flow = flow = CommandFlow(
            settings=worker,
            topology=self.topology,
            consumer=self._consumer,
            executor=executor,
            limits=limits,
            sends=SendScheduler(
                limits,
                hold_s=worker.hold_s,
                park_tiers_s=self.topology.retry_delays_s,
                batch_max=batch_max,
                window=worker.send_prefetch,
            ),
            imports=ImportScheduler(limits),
            # Sends in flight follow the allowed rate and the answer time (Little's law).
            pacing=Pacing(
                rate_per_s=worker.account_messages_per_s,
                batch_max=batch_max,
                max_in_flight=worker.concurrency * batch_max,
            ),
            planner=Planner(self.topology),
            metrics=self.metrics,
            in_flight=self._in_flight,
            watch=watch,
        )
        self._loops = [
            asyncio.create_task(flow.send_dispatcher.run_forever(), name="send dispatcher"),
            asyncio.create_task(flow.import_dispatcher.run_forever(), name="import dispatcher"),
        ]
        for queue, kind, prefetch in (
            (self.topology.send_queue, CommandKind.SEND, worker.send_prefetch),
            (self.topology.import_queue, CommandKind.IMPORT, worker.number_concurrency),
        ):
            if kind is CommandKind.SEND and worker.shards:
                # The send queue is routed into shard queues, consumed by ``Shards``; their
                # deliveries are the send queue's as far as the flow goes.
                self._shards = sharding.Shards(
                    link=self._link,
                    topology=self.topology,
                    settings=worker,
                    limits=limits,
                    metrics=self.metrics,
                    on_send=flow.on_message_for(queue, kind),
                    commit_timeout_s=settings.broker.confirm_timeout_s,
                )
                flow.take_sends_from(self._shards)
                await self._shards.start()
            else:
                await self._consumer.consume(
                    queue=queue,
                    prefetch=prefetch,
                    on_message=flow.on_message_for(queue, kind),
                )
            # What RabbitMQ dead-letters itself: each gets its result and a redacted dead letter.
            await self._consumer.consume(
                queue=self.topology.backstop_queue(queue),
                prefetch=worker.number_concurrency,
                on_message=flow.on_dead_lettered_for(queue, kind),
            )
        self._link.attach(self._on_session)
        # Returns once the first attempt is over; without RabbitMQ the link keeps trying and the
        # worker waits (not ready), it does not exit.
        await self._link.start()

    async def _on_session(self, _session: Session) -> None:
        # Run by the link on every session, after the queues are consumed again.
        if self._consumed_once:
            return
        self._consumed_once = True
        log.info(
            "worker consuming %s and %s (concurrency %d)",
            self.topology.send_queue,
            self.topology.import_queue,
            self.settings.worker.concurrency,
        )

    async def stop(self) -> None:
        """Ordered, bounded shutdown (see the module docstring). Idempotent."""
        if self.state in (WorkerState.STOPPING, WorkerState.STOPPED, WorkerState.CREATED):
            self.state = WorkerState.STOPPED if self.state is WorkerState.CREATED else self.state
            return
        self.state = WorkerState.STOPPING
        flow = self._flow
        if flow is not None:
            flow.stop_accepting()
        if self._consumer is not None:
            await self._consumer.cancel()  # 1. no new deliveries
        if self._shards is not None:
            await self._shards.cancel()  # 1. no routing; the shards pass to other workers
        await self._stop_loops()  # 2. no new calls
        if flow is not None:
            given = await flow.give_back_held()  # 3. what is held goes back now
            if given:
                log.info("gave %d held commands back to the broker", given)
        drain_s = self.settings.worker.drain_timeout_s
        pending = await self._in_flight.wait(drain_s)  # 4. calls in flight finish
        if pending:
            log.warning(
                "%d calls still running after %.1f s: cancelling them, their commands go back",
                len(pending),
                drain_s,
            )
            await self._in_flight.cancel(pending, timeout_s=_CLOSE_TIMEOUT_S)
        if flow is not None:
            await flow.give_back_held()  # 5. refused at the last moment: back too
        await self._close()  # 6. HTTP session (when owned), channels, connection
        self.state = WorkerState.STOPPED
        log.info("worker stopped")

    async def _stop_loops(self) -> None:
        loops, self._loops = self._loops, []
        for task in loops:
            task.cancel()
        if loops:
            await asyncio.gather(*loops, return_exceptions=True)

    async def _close(self) -> None:
        await self._stop_loops()
        if self._executor is not None:
            await self._executor.close()
        if self._watch is not None:
            await self._watch.close()
        if self._close_client:
            await self._client.close()
        if self._consumer is not None:
            await self._consumer.close()
        if self._shards is not None:
            await self._shards.close()
        await self._link.close()

    async def __aenter__(self) -> Worker:
        await self.start()
        return self

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        await self.stop()


__all__ = ["Worker", "WorkerState"]

"""Sharded sending: several workers on one RabbitMQ hold Catapult's limits together.

With ``worker.shards`` S > 0 every worker of one deployment (same S, same queue names) takes part:

    outbound.sms ──(one router at a time)──> outbound.sms.shards   x-consistent-hash exchange,
                                             │ routing key = the sending number
                                             ├─> outbound.sms.shard.0   quorum queues with
                                             ├─> ...                    x-single-active-consumer
                                             └─> outbound.sms.shard.<S-1>
    outbound.sms.router    single active consumer: its active consumer is the router
    outbound.sms.workers   every worker consumes it: its consumer count is how many there are

Every worker consumes every shard queue; RabbitMQ delivers each shard to one of them (its single
active consumer), so each number is sent from one worker at a time and its per-number limit is
that worker's own. A worker holds a shard from the first delivery it gets from it (a command, or
a probe: an empty message any worker publishes into a shard queue to find out who holds it,
after it starts and whenever a worker leaves) until its consumer goes. It takes the account limit
in proportion, ``rate x warm / S`` (``Limits.share_account``), counting only the shards it has
held for ``worker.shard_warmup_s``: a shard newly held is not sent from before then, so the sends
its previous holder made in Catapult's last 10 s window are not doubled against either limit.

RabbitMQ 3.10's single active consumer never moves a queue to a consumer that arrives later, so
the workers balance themselves: every second each one counts the workers (the consumer count of
the presence queue) and, holding more than ``ceil(S / workers)`` shards, gives the newest ones
up (closes their channels: what it held of them goes back to the queue and is never
sent from here) and consumes them again at the back of the line. A worker that stops gives up
everything the same way; one that dies is noticed by RabbitMQ when its connection drops (at
once for a process killed on the broker's host, else after two missed heartbeats,
``broker.heartbeat_s``) and its shards pass to the next consumers, who wait the warm-up first.

While Catapult is down the worker's flow ``pause``s the shards: this worker stops consuming
them and the presence queue, and holds nothing (each shard passes to the next worker in line,
which may well see Catapult up; the others, counting one worker fewer, probe for the shards that
came to them and take them all). The commands stay in their shard queues, not in memory; what
was on its way at the pause goes to the flow, which sends it back to wait. Routing goes on: it
moves commands from ``outbound.sms`` into the shard queues without calling Catapult, so they wait
where their holder-to-be takes them from, and a worker that sees Catapult up is not held back by
one that does not. ``resume`` consumes again, at the back of every line: the shards are held
(and warmed up) anew as their deliveries and probes come, and the workers balance as usual.

What this worker holds, warms, routes and counts, and the shards it lets go, are in the
``bridge_worker_shard*`` metrics (``metrics.py``).

Nothing here sends or acks a command: deliveries go to the worker's flow (``on_send``), which
settles them as for an unsharded queue (results, retries and parking through ``outbound.sms``'s
delay queues, back through the router). Probes are acked here.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import math
import uuid

from bridge.broker import BrokerError, BrokerLink, Envelope, Inbound, Intake, OnMessage, Session
from bridge.broker.committer import DEFAULT_EXCHANGE
from bridge.broker.intake import settle as settle_delivery
from bridge.broker.router import Router
from bridge.broker.topology import Topology
from bridge.events import headers as h
from bridge.settings import WorkerSettings
from bridge.worker.limits import Limits
from bridge.worker.metrics import WorkerMetrics

log = logging.getLogger(__name__)

PROBE_TYPE = "bridge.probe"
# How often a worker counts the workers and balances its shards.
CHECK_INTERVAL_S = 1.0
# How long a stop waits for a balance under way to end.
BALANCE_WAIT_S = 5.0


def is_probe(message: Inbound) -> bool:
    return h.is_probe(message.headers)


class _Shard:
    """One shard queue as this worker sees it: its intake, and since when it holds it."""

    def __init__(self, index: int, queue: str) -> None:
        self.index = index
        self.queue = queue
        self.intake: Intake | None = None
        # One more for every consumer of it: what an earlier one still delivers (while it is
        # given up, before its channel is closed) is no longer this worker's.
        self.consumer = 0
        self.held_at: float | None = None
        self.warm = asyncio.Event()
        self.timer: asyncio.TimerHandle | None = None

    @property
    def is_held(self) -> bool:
        return self.held_at is not None

    def release(self) -> None:
        """No longer held: wake whoever waits for the warm-up (their deliveries are stale)."""
        self.held_at = None
        if self.timer is not None:
            self.timer.cancel()
            self.timer = None
        warm, self.warm = self.warm, asyncio.Event()
        warm.set()


class Shards:
    """This worker's part in sharded sending: the router, the presence, the shard consumers."""

    def __init__(
        self,
        *,
        link: BrokerLink,
        topology: Topology,
        settings: WorkerSettings,
        limits: Limits,
        metrics: WorkerMetrics,
        on_send: OnMessage,
        commit_timeout_s: float,
    ) -> None:
        self._link = link
        self._topology = topology
        self._settings = settings
        self._limits = limits
        self._on_send = on_send
        self._count = settings.shards
        # Each shard queue as if it were the send queue: its holder may have the whole prefetch
        # of it in hand (and the scheduler's fair share of that window holds per shard). So a
        # worker holding h shards has up to h x send_prefetch commands in memory, and the
        # workers together hold more as they grow: divided by the shards, they held one
        # worker's prefetch between them, however many they were.
        self._prefetch = settings.send_prefetch
        self._shards = [_Shard(i, topology.shard_queue(i)) for i in range(self._count)]
        self._router = Router(
            link,
            queue=topology.send_queue,
            exchange=topology.shard_exchange,
            prefetch=settings.send_prefetch,
            commit_timeout_s=commit_timeout_s,
        )
        self._presence: Intake | None = None
        self._router_lock: Intake | None = None
        self._workers: int | None = None
        self._share: int | None = None
        self._checker: asyncio.Task[None] | None = None
        self._stopping = False
        self._paused = False
        # Balance, pause and resume change the intakes one at a time: a shard given up while
        # the intakes are paused must not be consumed again.
        self._lock = asyncio.Lock()
        # Read at every scrape: they change with deliveries, timers, sessions and the router.
        metrics.shards_held.set_function(lambda: len(self.held))
        metrics.shards_warm.set_function(lambda: len(self.warm))
        metrics.shard_router.set_function(lambda: 1.0 if self.is_router else 0.0)
        metrics.shard_workers.set_function(lambda: self._workers or 0)
        self._given_up = metrics.shards_given_up

    @property
    def held(self) -> list[int]:
        return [s.index for s in self._shards if s.is_held]

    @property
    def warm(self) -> list[int]:
        return [s.index for s in self._shards if s.is_held and s.warm.is_set()]

    @property
    def is_router(self) -> bool:
        return self._router.is_active

    @property
    def is_paused(self) -> bool:
        """Taking no commands until ``resume`` (Catapult is down)."""
        return self._paused

    async def start(self) -> None:
        # First: a new session holds nothing yet (its consumers are new, at the back of every
        # line); then the router's channel, then the consumers. The presence queue last, as on
        # resume: the others count this worker, and give it its share up, only once it is in
        # every shard's line (a shard given up before would go straight back to its holder).
        self._link.attach(self._on_session)
        self._link.attach(self._router.attach)
        self._router_lock = await self._link.consume(
            self._topology.router_queue, prefetch=1, on_message=self._on_router_lock
        )
        for shard in self._shards:
            shard.intake = await self._consume(shard)
        self._presence = await self._link.consume(
            self._topology.presence_queue, prefetch=1, on_message=self._on_presence
        )
        self._checker = asyncio.create_task(self._check_forever(), name="shard balance")

    async def pause(self) -> None:
        """Take no more commands until ``resume``: every shard passes to the next worker.

        For an outage of Catapult (the flow's ``_follow_catapult``). The shard consumers are
        cancelled, not their channels closed: what this worker took stays unacked for the flow
        to send back as copies (a quorum queue counts every return toward its delivery limit),
        and what arrives from before the cancel goes to the flow too. Nothing is held, so none
        of this worker's share of the account is counted while paused. The presence queue is
        not consumed either, last, once the shards have passed: the other workers then count
        one worker fewer, learn by probes which shards came to them, and keep them rather than
        give them up to balance for a worker that takes none.
        """
        async with self._lock:
            if self._paused or self._stopping:
                return
            self._paused = True
            self._workers = None  # counted again on resume, as at the start
            for intake in (*(s.intake for s in self._shards), self._presence):
                if intake is not None:
                    await intake.pause()
            self._release_all(why="outage")
        log.info("taking no commands from the shards of %s", self._topology.send_queue)

    async def resume(self) -> None:
        """Consume the shards (and the presence queue) again, at the back of every line.

        The shards that come to this worker are held from their first delivery or probe and
        sent from after the warm-up. The presence queue is consumed last, once this worker is
        in every shard's line: the others, counting it again, give it its share up to balance
        (a shard given up before it was in line would go straight back to its holder).
        """
        async with self._lock:
            if not self._paused or self._stopping:
                return
            self._paused = False
            for intake in (*(s.intake for s in self._shards), self._presence):
                if intake is not None:
                    await intake.resume()
            log.info("taking commands from the shards of %s again", self._topology.send_queue)
            await self._probe([s.queue for s in self._shards if not s.is_held])

    async def cancel(self) -> None:
        """For the shutdown: route and take no more; every shard passes to the next worker.

        The deliveries this worker holds stay unacked for the flow to finish or give back; the
        next holders wait the warm-up before they send, and learn of their shards by a probe.
        """
        self._stopping = True
        if self._checker is not None:
            # Not in the middle of a balance: a broker call cancelled half way closes its
            # channel. One stuck on the broker (an alarm blocks the connection) is cancelled
            # all the same after a while.
            with contextlib.suppress(TimeoutError):
                async with asyncio.timeout(BALANCE_WAIT_S), self._lock:
                    self._checker.cancel()
            self._checker.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._checker
        await self._router.deactivate()
        async with self._lock:
            for intake in (self._router_lock, *(s.intake for s in self._shards)):
                if intake is not None:
                    await intake.pause()
        # Still held for the flow's drain (``close`` releases them), but no longer this worker's.
        self._given_up.labels("stop").inc(len(self.held))
        await self._probe([s.queue for s in self._shards] + [self._topology.router_queue])

    async def close(self) -> None:
        await self._router.close()
        for intake in (self._presence, self._router_lock, *(s.intake for s in self._shards)):
            if intake is not None:
                await intake.close()
        for shard in self._shards:
            shard.release()

    # -- deliveries ----------------------------------------------------------------------------

    async def _on_presence(self, message: Inbound) -> None:
        await settle_delivery(message, ack=True)  # nothing is published there; just in case

    async def _on_router_lock(self, message: Inbound) -> None:
        # Only the router queue's single active consumer gets anything from it: this worker.
        await settle_delivery(message, ack=True)
        if not self._stopping and not message.is_stale:
            await self._router.activate()

    def _on_shard(self, shard: _Shard) -> OnMessage:
        consumer = shard.consumer

        def gone(message: Inbound) -> bool:
            # Its channel is closed, or closing because the shard was given up: left unsettled,
            # it goes back to its queue when the channel closes, for the next holder.
            return message.is_stale or consumer != shard.consumer

        async def on_message(message: Inbound) -> None:
            if gone(message):
                return
            # Paused, this worker holds no shard: a delivery then was on its way at the pause.
            if not shard.is_held and not self._paused:
                self._hold(shard)
            if is_probe(message):
                await settle_delivery(message, ack=True)
                return
            # Sent from only once the shard's current holding is warm: a release ends the wait
            # (a shard held again meanwhile is waited for again).
            while shard.is_held and not shard.warm.is_set():
                await shard.warm.wait()
                if gone(message):
                    return  # given up while it waited: it goes back to its queue
            # Warm; or paused (before or while it waited): Catapult is down, and the flow sends
            # it back to wait in its queue.
            await self._on_send(message)

        return on_message

    def _hold(self, shard: _Shard) -> None:
        loop = asyncio.get_running_loop()
        shard.held_at = loop.time()
        warmup_s = self._settings.shard_warmup_s
        log.info(
            "holding shard %d of %s; sending from it in %g s",
            shard.index,
            self._topology.send_queue,
            warmup_s,
        )
        event = shard.warm

        def warmed() -> None:
            event.set()
            self._share_account()

        shard.timer = loop.call_later(warmup_s, warmed)

    # -- sessions and balance ------------------------------------------------------------------

    async def _on_session(self, _session: Session) -> None:
        # Every consumer of a lost session is gone: nothing is held until deliveries say so.
        self._release_all(why="disconnected")
        self._workers = None
        self._share_account()

    def _release_all(self, *, why: str) -> None:
        """Hold nothing (counting, under ``why``, the shards that were held)."""
        held = self.held
        if held:
            self._given_up.labels(why).inc(len(held))
        for shard in self._shards:
            shard.release()

    async def _consume(self, shard: _Shard) -> Intake:
        return await self._link.consume(
            shard.queue,
            prefetch=self._prefetch,
            on_message=self._on_shard(shard),
            transactional=True,
        )

    async def _check_forever(self) -> None:
        while True:
            await asyncio.sleep(CHECK_INTERVAL_S)
            if not self._link.is_ready:
                continue
            try:
                await self.check()
            except BrokerError as exc:
                log.debug("shard balance skipped: %s", exc)
            except Exception:  # a bug must not stop the balance for good
                log.exception("shard balance failed")

    async def check(self) -> None:
        """Count the workers; probe when one left; give up shards held over the fair share.

        Paused, this worker holds nothing and is not counted: only the router's part goes on.
        """
        async with self._lock:
            await self._check()

    async def _check(self) -> None:
        if self._paused:
            if not self._router.is_active:
                await self._probe([self._topology.router_queue])
            return
        counts = await self._link.consumer_counts([self._topology.presence_queue])
        workers = max(1, counts.get(self._topology.presence_queue) or 1)
        previous, self._workers = self._workers, workers
        queues = []
        if previous is None or workers < previous:
            # Started, or a worker left: its shards have new holders, who learn of them by a
            # delivery; a probe is one for a shard with nothing queued.
            queues = [s.queue for s in self._shards if not s.is_held]
        if not self._router.is_active:
            # Whoever is the router queue's active consumer routes: it learns so from a probe
            # (one a second from each worker that is not routing; the router acks them).
            queues.append(self._topology.router_queue)
        await self._probe(queues)
        fair = math.ceil(self._count / workers)
        held = sorted((s for s in self._shards if s.is_held), key=lambda s: s.held_at or 0.0)
        for shard in held[fair:]:
            if self._stopping:
                break  # the stop gives them all up
            await self._give_up(shard)

    async def _give_up(self, shard: _Shard) -> None:
        """Close this shard's channel (what it held goes back) and line up again."""
        log.info(
            "giving shard %d of %s up to balance %d workers",
            shard.index,
            self._topology.send_queue,
            self._workers or 1,
        )
        intake, shard.intake = shard.intake, None
        shard.consumer += 1  # first: nothing the closing consumer delivers is held or sent
        shard.release()
        self._given_up.labels("balance").inc()
        self._share_account()
        if intake is not None:
            await intake.close()
        shard.intake = await self._consume(shard)
        self._presence_last()
        await self._probe([shard.queue])

    def _presence_last(self) -> None:
        """Keep the presence queue the last thing consumed on every session, after a shard
        consumed anew (see ``start``)."""
        presence = self._presence
        if presence is not None:
            self._link.detach(presence.attach)
            self._link.attach(presence.attach)

    async def _probe(self, queues: list[str]) -> None:
        for queue in queues:
            envelope = Envelope(
                body=b"",
                routing_key=queue,
                message_id=uuid.uuid4().hex,
                type=PROBE_TYPE,
                content_type="application/octet-stream",
                headers={h.PROBE: True},
            )
            try:
                await self._link.publish(envelope, exchange=DEFAULT_EXCHANGE, routing_key=queue)
            except BrokerError as exc:
                log.debug("probe of %s not published: %s", queue, exc)

    def _share_account(self) -> None:
        warm = len(self.warm)
        # Holding nothing, nothing is sent: the share last taken stands until one is warm.
        if warm and warm != self._share:
            self._share = warm
            self._limits.share_account(warm, of=self._count)
            log.info(
                "sending from %d of %d shards: %d/%d of the account's limit",
                warm,
                self._count,
                warm,
                self._count,
            )


__all__ = ["CHECK_INTERVAL_S", "Shards", "is_probe"]

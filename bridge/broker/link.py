"""``BrokerLink``: a role's one connection to RabbitMQ, kept up for as long as the role runs.

Both roles hold one: the receiver publishes its events through it; the worker publishes results,
dead letters and retry copies through it and consumes the command queues on channels it opens
(``intake.py``). No role exits because the broker is away: the link connects in the background
and keeps trying for as long as it lives.

A connection and the channels opened on it form a ``Session``. Opening one connects (within
``broker.connect_timeout_s``), opens the confirm channel everything is published on, declares the
topology (``declare_topology``, the one definition both roles share) and attaches every consumer
registered with the link (each opens its channel and consumes again: nothing is left to a
client library's own recovery). Only then is the link ready. A session ends when its connection
or any of its channels closes, or the broker cancels a consumer (a deleted queue); the link then
closes what is left of it (so every delivery of the old channels is stale: the broker delivers
them again) and opens a new one, immediately once and then after pauses that double from
``broker.reconnect_delay_s`` to ``broker.reconnect_max_delay_s``, each jittered (``backoff.py``).

A cluster is given as the list of its nodes (``broker.urls``). Each attempt tries them in turn,
starting with the one after the node last used, so when a node goes the link is on the next one
after one failed connect; a pause comes only once every node refused. Quorum queues keep what
they confirmed when a node goes; the broker redelivers what the lost connection held unacked.

``is_ready`` is true exactly while a session is open, so a callback arriving during an outage
goes to the spool at once instead of waiting for a confirm timeout, and readiness probes answer
503. The log says once that the broker went away (or was not there at start), at debug level for
each further attempt, and once that it is back.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import Awaitable, Callable, Collection
from enum import StrEnum
from typing import Any

import aiormq
from aiormq.abc import AbstractChannel, AbstractConnection
from yarl import URL

from bridge.broker.backoff import Backoff
from bridge.broker.errors import (
    AMQP_FAILURES,
    BrokerError,
    ChannelFailed,
    ConnectFailed,
    PublishFailed,
    describe,
    describe_connect_failure,
    translated,
)
from bridge.broker.intake import Intake, OnMessage
from bridge.broker.publisher import Publisher
from bridge.broker.topology import (
    Declarations,
    Topology,
    declare_plan,
    declare_topology,
    route_declarations,
)
from bridge.events.envelope import Envelope
from bridge.logs import keep_message_bodies_out
from bridge.settings import Settings, masked_url

log = logging.getLogger(__name__)

# A broker that stopped answering must not hold a shutdown.
CLOSE_TIMEOUT_S = 5.0
# Said when the broker was never reached: a first start without one.
_HOW_TO_GET_ONE = (
    "; no RabbitMQ? apt-get install rabbitmq-server (Debian/Ubuntu) or "
    "docker run -d -p 5672:5672 rabbitmq:3.13-management, or set broker.url"
)


class LinkState(StrEnum):
    CONNECTING = "connecting"  # never connected yet
    READY = "ready"
    DISCONNECTED = "disconnected"  # was connected, lost it, trying again
    CLOSED = "closed"


class Session:
    """One connection and the channels opened on it; ``ended`` resolves when any of them closes.

    ``release`` takes back a channel the caller closes on purpose, so its close ends nothing.
    """

    def __init__(self, connection: AbstractConnection, *, address: str) -> None:
        self.connection = connection
        self.address = address
        self.ended: asyncio.Future[str] = asyncio.get_running_loop().create_future()
        self._watches: dict[int, tuple[asyncio.Future[Any], Callable[[asyncio.Future[Any]], None]]]
        self._watches = {}
        self._watch(connection, "the connection")

    async def open_channel(
        self, what: str, *, confirms: bool = False, watched: bool = True
    ) -> AbstractChannel:
        """A new channel; unless ``watched`` is false its close ends the session."""
        with translated(f"opening a channel for {what}"):
            channel = await self.connection.channel(
                publisher_confirms=confirms, on_return_raises=True
            )
        if watched:
            self._watch(channel, f"the channel for {what}")
        return channel

    def end(self, reason: str) -> None:
        if not self.ended.done():
            self.ended.set_result(reason)

    def release(self, channel: AbstractChannel) -> None:
        watched = self._watches.pop(id(channel), None)
        if watched is not None:
            observer, callback = watched
            observer.remove_done_callback(callback)
            observer.cancel()

    async def close(self) -> None:
        for observer, callback in self._watches.values():
            observer.remove_done_callback(callback)
            observer.cancel()
        self._watches.clear()
        self.end("closed")
        with contextlib.suppress(*AMQP_FAILURES):
            async with asyncio.timeout(CLOSE_TIMEOUT_S):
                await self.connection.close()

    def _watch(self, resource: AbstractConnection | AbstractChannel, what: str) -> None:
        observer = resource.closing

        def closed(future: asyncio.Future[Any]) -> None:
            self.end(f"{what} closed ({_close_reason(future)})")

        observer.add_done_callback(closed)
        self._watches[id(resource)] = (observer, closed)


def _close_reason(future: asyncio.Future[Any]) -> str:
    if future.cancelled():
        return "cancelled"
    try:
        exc = future.exception()
    except BaseException as raised:  # aiormq may close with CancelledError as the exception
        exc = raised
    return "closed" if exc is None else describe(exc)


Attach = Callable[[Session], Awaitable[None]]


class _ReportedByTheLink(logging.Filter):
    """Drops aiormq's own line for each failed attempt and each lost connection.

    The link reports those itself, once per outage; aiormq would repeat them at every attempt
    (at ERROR, and with a traceback for each loss). Its other records pass.
    """

    TEMPLATES = frozenset(
        {
            "error when creating transport: %r",
            "Cancelling cause reader exited abnormally",
            "Consumer %r cancelled by the broker on %r",
        }
    )

    def filter(self, record: logging.LogRecord) -> bool:
        return record.msg not in self.TEMPLATES


_CLIENT_FILTER = _ReportedByTheLink()


def quiet_client_logs() -> None:
    """Leave failed attempts and lost connections to us: aiormq's own lines for them go."""
    for client in ("aiormq.connection", "aiormq.channel"):
        logging.getLogger(client).addFilter(_CLIENT_FILTER)  # once: filters are a set


class BrokerLink:
    """A role's connection to RabbitMQ: publishing, consuming, readiness; reconnects itself."""

    def __init__(self, settings: Settings, *, name: str, while_away: str = "") -> None:
        broker = settings.broker
        quiet_client_logs()
        self._broker = broker
        self._topology = Topology.from_settings(settings)
        self._name = name
        self._while_away = while_away
        keep_message_bodies_out()
        self._addresses = tuple(
            _amqp_url(url, heartbeat_s=broker.heartbeat_s) for url in broker.addresses
        )
        self._address = self._addresses[0]  # the node connected to, or tried last
        self._state = LinkState.CONNECTING
        self._ready = asyncio.Event()
        self._tried = asyncio.Event()
        self._session: Session | None = None
        self._publisher: Publisher | None = None
        self._attached: list[Attach] = []
        self._runner: asyncio.Task[None] | None = None
        self._backoff = Backoff(
            initial_s=broker.reconnect_delay_s, max_s=broker.reconnect_max_delay_s
        )
        self._session_seen = False  # a node has been connected to: start after it next time
        self._outage_logged = False
        self._away_since: float | None = None
        self._redeclaring: asyncio.Task[bool] | None = None
        self._redeclared_at: float | None = None
        self._redeclare_failing = False
        self._redeclare_backoff = Backoff(
            initial_s=broker.reconnect_delay_s, max_s=broker.reconnect_max_delay_s
        )
        # The side channel routes are declared on (``declare_routes``), and for which session.
        self._side: tuple[Session, AbstractChannel] | None = None
        self._side_lock = asyncio.Lock()
        self._route_plans: dict[tuple[str, str], Declarations] = {}

    @property
    def state(self) -> LinkState:
        return self._state

    @property
    def is_ready(self) -> bool:
        return self._state is LinkState.READY

    @property
    def topology(self) -> Topology:
        return self._topology

    @property
    def address(self) -> str:
        """The URL of the node connected to (or tried last), password masked."""
        return masked_url(self._address)

    async def wait_ready(self) -> None:
        await self._ready.wait()

    async def start(self) -> None:
        """Begin connecting; return once the first attempt is over, whatever its outcome.

        The link goes on trying in the background for as long as it is not closed.
        """
        if self._runner is None:
            self._runner = asyncio.create_task(self._run(), name=f"{self._name} broker link")
        await self._tried.wait()

    def attach(self, attach: Attach) -> None:
        """Run ``attach`` on every session from now on (after the topology is declared)."""
        self._attached.append(attach)

    def detach(self, attach: Attach) -> None:
        with contextlib.suppress(ValueError):
            self._attached.remove(attach)

    async def consume(
        self,
        queue: str,
        *,
        prefetch: int,
        on_message: OnMessage,
        transactional: bool = False,
        once: bool = False,
    ) -> Intake:
        """Consume ``queue`` on a channel of its own, ``prefetch`` deliveries unacked at most.

        The intake consumes on every session, this one (if the link is ready) and those after a
        reconnect. ``transactional``: the channel is in transaction mode and every settle of it
        is committed (``committer.py``), so a copy and its original's ack take effect together.
        With ``once`` it consumes on the current session only (``ChannelFailed`` if there is
        none) and is never attached again: when the session ends, it has ended too.
        """
        intake = Intake(
            self,
            queue=queue,
            prefetch=prefetch,
            on_message=on_message,
            transactional=transactional,
            commit_timeout_s=self._broker.confirm_timeout_s,
        )
        session = self._session
        if once:
            if session is None or not self.is_ready:
                raise ChannelFailed("disconnected", f"consuming {queue}: not connected")
            await intake.attach(session)
            return intake
        self.attach(intake.attach)
        if session is not None and self.is_ready:
            try:
                await intake.attach(session)
            except BrokerError as exc:
                session.end(str(exc))
        return intake

    async def consumer_counts(self, queues: list[str]) -> dict[str, int | None]:
        """How many consumers each queue has now (None: no such queue); passive declares.

        On channels of their own, outside the session's watch: a missing queue closes its
        channel (404), not the session. ``ChannelFailed`` when the link is down.
        """
        session = self._session
        if session is None or not self.is_ready:
            raise ChannelFailed("disconnected", "counting consumers: not connected")
        counts: dict[str, int | None] = {}
        channel: AbstractChannel | None = None
        try:
            for queue in queues:
                if channel is None or channel.is_closed:
                    channel = await session.open_channel("counting consumers", watched=False)
                try:
                    with translated(f"declaring {queue} passively"):
                        ok = await channel.queue_declare(queue, passive=True)
                except ChannelFailed as exc:
                    if exc.reason != "refused":
                        raise
                    counts[queue] = None
                else:
                    counts[queue] = int(ok.consumer_count or 0)
        finally:
            if channel is not None and not channel.is_closed:
                with contextlib.suppress(*AMQP_FAILURES):
                    async with asyncio.timeout(CLOSE_TIMEOUT_S):
                        await channel.close()
        return counts

    async def publish(
        self, envelope: Envelope, *, exchange: str | None = None, routing_key: str | None = None
    ) -> None:
        """Publish and wait for the confirm; ``PublishFailed`` if the broker did not take it.

        ``exchange`` defaults to the events exchange ("" is the default exchange, where the
        routing key is a queue name); ``routing_key`` to the envelope's.
        """
        # The publisher exists from the moment the session's topology is declared: consumers
        # attached to the session may settle before the link reports itself ready.
        publisher = self._publisher
        if publisher is None:
            raise PublishFailed("disconnected", "not connected to RabbitMQ")
        name = self._topology.events_exchange if exchange is None else exchange
        await publisher.publish(envelope, exchange=name, routing_key=routing_key)

    async def redeclare(self) -> bool:
        """Declare the topology again, after a publish found no queue bound (one was deleted).

        Shared: every caller waiting at the same time waits for the one declaration. Paced:
        within ``broker.reconnect_max_delay_s`` of the previous one it first waits a pause of
        the backoff, so a queue that cannot come back (its name held, its arguments refused)
        is not declared in a loop, and whoever waits on it (a settle, a spool drain) waits too.
        On a channel of its own: a refused declaration closes that channel, not the session.
        True once declared.
        """
        task = self._redeclaring
        if task is None or task.done():
            task = self._redeclaring = asyncio.create_task(
                self._redeclare(), name=f"{self._name} redeclare"
            )
        return await asyncio.shield(task)

    async def _redeclare(self) -> bool:
        loop = asyncio.get_running_loop()
        last = self._redeclared_at
        if last is not None and loop.time() - last < self._broker.reconnect_max_delay_s:
            await asyncio.sleep(self._redeclare_backoff.next_pause_s())
        else:
            self._redeclare_backoff.reset()
        self._redeclared_at = loop.time()
        session = self._session
        if session is None or not self.is_ready:
            return False
        channel: AbstractChannel | None = None
        try:
            async with asyncio.timeout(self._broker.connect_timeout_s):
                channel = await session.open_channel("declaring again", watched=False)
                await declare_topology(channel, self._topology)
        except (BrokerError, TimeoutError) as exc:
            why = str(exc) or f"no answer in {self._broker.connect_timeout_s:g} s"
            level = logging.DEBUG if self._redeclare_failing else logging.WARNING
            self._redeclare_failing = True
            log.log(level, "%s: cannot declare the topology again: %s", self._name, why)
            return False
        finally:
            if channel is not None and not channel.is_closed:
                with contextlib.suppress(*AMQP_FAILURES):
                    async with asyncio.timeout(CLOSE_TIMEOUT_S):
                        await channel.close()
        self._redeclare_failing = False
        log.info("%s: a queue was missing: declared the topology again", self._name)
        return True

    async def declare_routes(self, routes: Collection[tuple[str, str]]) -> None:
        """Declare what each ``(exchange, routing key)`` needs so that a publish on it reaches
        its queues (``route_declarations``): run before a transaction that publishes on them
        commits (``committer.py``). A no-op for what is there.

        On a side channel of the session, kept open between calls and outside the session's
        watch: a refused declaration closes that channel only, not a consumer's. Raises
        ``ChannelFailed`` (``refused`` when the broker turned a declaration down).
        """
        plans = []
        for route in routes:
            plan = self._route_plans.get(route)
            if plan is None:
                plan = self._route_plans[route] = route_declarations(self._topology, *route)
            plans.append(plan)
        if not any(p.exchanges or p.queues for p in plans):
            return
        async with self._side_lock:
            session = self._session
            if session is None or not self.is_ready:
                raise ChannelFailed("disconnected", "declaring routes: not connected")
            side = self._side
            if side is None or side[0] is not session or side[1].is_closed:
                channel = await session.open_channel("declaring routes", watched=False)
                self._side = side = (session, channel)
            channel = side[1]
            try:
                with translated("declaring the routes of a commit"):
                    async with asyncio.timeout(self._broker.connect_timeout_s):
                        for plan in plans:
                            await declare_plan(channel, plan)
            except ChannelFailed:
                # Closed by the refusal, or left with a call unanswered: a new one next time.
                self._side = None
                if not channel.is_closed:
                    with contextlib.suppress(*AMQP_FAILURES):
                        async with asyncio.timeout(CLOSE_TIMEOUT_S):
                            await channel.close()
                raise

    async def close(self) -> None:
        """Stop trying and close the session (bounded)."""
        self._state = LinkState.CLOSED
        self._ready.clear()
        self._tried.set()
        for task in (self._runner, self._redeclaring):
            if task is not None and not task.done():
                task.cancel()
                with contextlib.suppress(asyncio.CancelledError):
                    await task
        self._runner = self._redeclaring = None
        session, self._session = self._session, None
        self._publisher = None
        if session is not None:
            await session.close()

    # -- the session loop ------------------------------------------------------------------------

    async def _run(self) -> None:
        loop = asyncio.get_running_loop()
        while self._state is not LinkState.CLOSED:
            try:
                session = await self._open_session()
            except BrokerError as exc:
                pause_s = self._backoff.next_pause_s()
                self._note_unreachable(exc, pause_s)
                self._tried.set()
                await asyncio.sleep(pause_s)
                continue
            opened_at = loop.time()
            self._session = session
            self._state = LinkState.READY
            self._ready.set()
            self._note_connected()
            await self._attach_all(session)
            self._tried.set()
            reason = await session.ended
            self._session = None
            self._publisher = None
            self._state = LinkState.DISCONNECTED
            self._ready.clear()
            await session.close()
            self._note_lost(reason)
            if loop.time() - opened_at < self._broker.reconnect_max_delay_s:
                # A session that ends soon after it opened (a broker that keeps closing it) is
                # not a recovery: keep backing off rather than reopening at once every time.
                await asyncio.sleep(self._backoff.next_pause_s())
            else:
                self._backoff.reset()

    async def _connect(self) -> AbstractConnection:
        """A connection to the first node that takes one, from the one after the last used.

        With one address that is the address. With a cluster's (``broker.urls``) a lost node
        is tried last: the roles move to the next node at once, and come back round to it.
        """
        addresses = self._addresses
        start = (addresses.index(self._address) + 1) % len(addresses) if self._session_seen else 0
        failures: list[str] = []
        for offset in range(len(addresses)):
            address = addresses[(start + offset) % len(addresses)]
            self._address = address
            connection = aiormq.Connection(
                address, client_properties={"connection_name": self._name}
            )
            try:
                async with asyncio.timeout(self._broker.connect_timeout_s):
                    await connection.connect()
            except AMQP_FAILURES as exc:
                with contextlib.suppress(*AMQP_FAILURES):
                    await connection.close()
                # The connection error may carry the URL: only the masked form is told.
                why = describe_connect_failure(exc, timeout_s=self._broker.connect_timeout_s)
                failures.append(f"{self.address}: {why}")
                continue
            self._session_seen = True
            return connection
        raise ConnectFailed("unreachable", "; ".join(failures))

    async def _open_session(self) -> Session:
        """Connect, open the publish channel and declare the topology: a session ready to use."""
        connection = await self._connect()
        session = Session(connection, address=self.address)
        try:
            async with asyncio.timeout(self._broker.connect_timeout_s):
                channel = await session.open_channel("publishing", confirms=True)
                await declare_topology(channel, self._topology)
        except TimeoutError:
            await session.close()
            took = f"opening the session took over {self._broker.connect_timeout_s:g} s"
            raise ChannelFailed("disconnected", took) from None
        except BrokerError:
            await session.close()
            raise
        if session.ended.done():
            reason = session.ended.result()
            await session.close()
            raise ChannelFailed("disconnected", reason)
        self._publisher = Publisher(channel, confirm_timeout_s=self._broker.confirm_timeout_s)
        return session

    async def _attach_all(self, session: Session) -> None:
        """Run every attachment on a new session, in order; a failure ends the session."""
        try:
            async with asyncio.timeout(self._broker.connect_timeout_s):
                # In order, each once: one registered meanwhile is attached too, and one
                # detached meanwhile (an intake closed) moves none of the others past the walk.
                ran: list[Attach] = []
                while not session.ended.done():
                    attach = next((a for a in self._attached if a not in ran), None)
                    if attach is None:
                        break
                    ran.append(attach)
                    await attach(session)
        except TimeoutError:
            session.end(f"attaching consumers took over {self._broker.connect_timeout_s:g} s")
        except BrokerError as exc:
            session.end(str(exc))

    # -- what the log says -----------------------------------------------------------------------

    def _note_unreachable(self, exc: BrokerError, pause_s: float) -> None:
        if self._outage_logged:
            log.debug(
                "%s: RabbitMQ still not reachable (%s); next attempt in %.2f s",
                self._name,
                exc,
                pause_s,
            )
            return
        self._outage_logged = True
        self._away_since = asyncio.get_running_loop().time()
        log.warning(
            "%s: RabbitMQ is not reachable (%s); not ready, trying again every %g s at most%s%s",
            self._name,
            exc,
            self._broker.reconnect_max_delay_s,
            f"; {self._while_away}" if self._while_away else "",
            _HOW_TO_GET_ONE if self._state is LinkState.CONNECTING else "",
        )

    def _note_lost(self, reason: str) -> None:
        if self._state is LinkState.CLOSED:
            return
        self._outage_logged = True
        self._away_since = asyncio.get_running_loop().time()
        log.warning(
            "%s: lost the connection to RabbitMQ at %s (%s); not ready, reconnecting%s",
            self._name,
            self.address,
            reason,
            f"; {self._while_away}" if self._while_away else "",
        )

    def _note_connected(self) -> None:
        away = ""
        if self._away_since is not None:
            away = f" after {asyncio.get_running_loop().time() - self._away_since:.1f} s away"
        self._outage_logged = False
        self._away_since = None
        log.info(
            "%s: connected to RabbitMQ at %s%s, topology declared", self._name, self.address, away
        )


async def open_session(address: str, *, name: str, timeout_s: float) -> Session:
    """Connect once to ``address`` within ``timeout_s``: a session with no channel yet.

    ``ConnectFailed`` names the masked URL and why (refused, no answer, login turned down); the
    link calls it for each attempt, the command line once.
    """
    connection = aiormq.Connection(address, client_properties={"connection_name": name})
    try:
        async with asyncio.timeout(timeout_s):
            await connection.connect()
    except AMQP_FAILURES as exc:  # TimeoutError is an OSError
        with contextlib.suppress(*AMQP_FAILURES):
            await connection.close()
        # The connection error may carry the URL: only the masked form is told.
        why = describe_connect_failure(exc, timeout_s=timeout_s)
        raise ConnectFailed("unreachable", f"{masked_url(address)}: {why}") from None
    return Session(connection, address=masked_url(address))


def broker_address(settings: Settings) -> str:
    """The (first) broker URL ``settings`` name, with their heartbeat (secret: mask it to show
    it). The command line connects there once; the roles go round every node."""
    broker = settings.broker
    return _amqp_url(broker.addresses[0], heartbeat_s=broker.heartbeat_s)


def _amqp_url(url: str, *, heartbeat_s: int) -> str:
    """``url`` with the heartbeat the settings ask for, unless the URL sets its own."""
    parsed = URL(url)
    if "heartbeat" not in parsed.query:
        parsed = parsed.update_query(heartbeat=str(heartbeat_s))
    return str(parsed)


__all__ = [
    "Attach",
    "BrokerLink",
    "LinkState",
    "Session",
    "broker_address",
    "open_session",
    "quiet_client_logs",
]

"""``BrokerLink``: the one connection of a role to RabbitMQ, its topology, readiness and publishing.

Both roles hold one: the receiver publishes its events through it, the worker publishes results,
dead letters and retry copies through it and consumes the command queues on channels it opens.
A link connects, declares the topology (``declare_topology``, the one definition both roles
share), and says whether it is ready: ``is_ready`` is true exactly while publishing can work, so
a callback arriving during an outage goes to the spool at once instead of waiting for a confirm
timeout.

``start`` tries once within ``broker.connect_timeout_s`` and, if the broker cannot be reached,
keeps trying in the background every ``receiver.retry_interval_s`` (the log says so once);
``connect`` tries once and raises ``ConnectFailed``. Once connected, the robust connection
reconnects by itself and restores the channels and the topology; its close and reconnect
callbacks keep ``state`` current.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from enum import StrEnum
from typing import Any

import aio_pika
from aio_pika.abc import AbstractChannel, AbstractRobustConnection

from bridge.broker.errors import AMQP_FAILURES, BrokerError, ConnectFailed, PublishFailed
from bridge.broker.intake import Intake, OnMessage
from bridge.broker.publisher import Publisher, open_confirm_channel
from bridge.broker.topology import Topology, declare_topology
from bridge.events.envelope import Envelope
from bridge.settings import BrokerSettings, Settings

log = logging.getLogger(__name__)


class LinkState(StrEnum):
    CONNECTING = "connecting"
    READY = "ready"
    DISCONNECTED = "disconnected"
    CLOSED = "closed"


async def connect(settings: BrokerSettings, *, name: str) -> AbstractRobustConnection:
    """Open a robust (self-reconnecting) connection; raise ``ConnectFailed`` if unreachable."""
    try:
        return await aio_pika.connect_robust(
            settings.url.get_secret_value(),
            timeout=settings.connect_timeout_s,
            client_properties={"connection_name": name},
            heartbeat=settings.heartbeat_s,
        )
    except AMQP_FAILURES as exc:
        # The URL carries the password: only its masked form may reach the message.
        raise ConnectFailed(
            "unreachable", f"{settings.display_url}: {type(exc).__name__}"
        ) from None


class BrokerLink:
    """One robust connection and one confirm channel, shared by every publish of a role."""

    def __init__(self, settings: Settings, *, name: str) -> None:
        self._broker = settings.broker
        self._topology = Topology.from_settings(settings)
        self._name = name
        self._retry_interval_s = settings.receiver.retry_interval_s
        self._state = LinkState.CONNECTING
        self._ready = asyncio.Event()
        self._connection: AbstractRobustConnection | None = None
        self._channel: AbstractChannel | None = None
        self._publisher: Publisher | None = None
        self._connector: asyncio.Task[None] | None = None

    @property
    def state(self) -> LinkState:
        return self._state

    @property
    def is_ready(self) -> bool:
        return self._state is LinkState.READY

    @property
    def topology(self) -> Topology:
        return self._topology

    async def wait_ready(self) -> None:
        await self._ready.wait()

    async def start(self) -> None:
        """Try to connect once; on failure keep trying in the background and return."""
        try:
            await self.connect()
        except BrokerError as exc:
            log.warning(
                "%s: RabbitMQ is not reachable yet (%s); retrying in the background",
                self._name,
                exc,
            )
            self._connector = asyncio.create_task(
                self._keep_trying(), name=f"{self._name} broker connect"
            )

    async def connect(self) -> None:
        """Connect, open the publish channel and declare the topology; raise ``BrokerError``."""
        connection = await connect(self._broker, name=self._name)
        try:
            channel = await open_confirm_channel(connection)
            await declare_topology(channel, self._topology)
        except BrokerError:
            with contextlib.suppress(*AMQP_FAILURES):
                await connection.close()
            raise
        self._connection = connection
        self._channel = channel
        self._publisher = Publisher(channel, confirm_timeout_s=self._broker.confirm_timeout_s)
        connection.close_callbacks.add(self._on_close)
        connection.reconnect_callbacks.add(self._on_reconnect)
        self._set_ready()
        log.info(
            "%s: connected to RabbitMQ at %s, topology declared",
            self._name,
            self._broker.display_url,
        )

    async def _keep_trying(self) -> None:
        # The first failure was logged; the retries log at debug level only.
        while True:
            await asyncio.sleep(self._retry_interval_s)
            try:
                await self.connect()
            except BrokerError as exc:
                log.debug("%s: RabbitMQ is still not reachable: %s", self._name, exc)
            else:
                return

    def _set_ready(self) -> None:
        if self._state is not LinkState.CLOSED:
            self._state = LinkState.READY
            self._ready.set()

    def _on_close(self, _sender: Any, exc: BaseException | None = None) -> None:
        if self._state is LinkState.CLOSED:
            return
        self._state = LinkState.DISCONNECTED
        self._ready.clear()
        log.warning("%s: lost the connection to RabbitMQ (%s)", self._name, type(exc).__name__)

    def _on_reconnect(self, _sender: Any) -> None:
        log.info("%s: reconnected to RabbitMQ", self._name)
        self._set_ready()

    async def publish(
        self, envelope: Envelope, *, exchange: str | None = None, routing_key: str | None = None
    ) -> None:
        """Publish and wait for the confirm; ``PublishFailed`` if the broker did not take it.

        ``exchange`` defaults to the events exchange ("" is the default exchange, where the
        routing key is a queue name); ``routing_key`` to the envelope's.
        """
        if self._state is not LinkState.READY or self._publisher is None:
            raise PublishFailed("disconnected", "not connected to RabbitMQ")
        name = self._topology.events_exchange if exchange is None else exchange
        await self._publisher.publish(envelope, exchange=name, routing_key=routing_key)

    async def consume(
        self, queue: str, *, prefetch: int, on_message: OnMessage, transactional: bool = False
    ) -> Intake:
        """Consume ``queue`` on a channel of its own, ``prefetch`` deliveries unacked at most."""
        if self._connection is None:
            raise ConnectFailed("unreachable", "not connected to RabbitMQ")
        return await Intake.open(
            self._connection,
            queue=queue,
            prefetch=prefetch,
            on_message=on_message,
            transactional=transactional,
        )

    async def redeclare(self) -> None:
        """Declare the topology again (after an unroutable publish: a queue was deleted)."""
        if self._channel is None or not self.is_ready:
            return
        try:
            await declare_topology(self._channel, self._topology)
        except BrokerError as exc:
            log.error("cannot declare the topology again: %s", exc)

    async def close(self) -> None:
        """Stop trying, close the connection (bounded: a broker that stopped answering must not
        hold the shutdown)."""
        self._state = LinkState.CLOSED
        self._ready.clear()
        if self._connector is not None:
            self._connector.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._connector
        connection, self._connection = self._connection, None
        if connection is not None:
            with contextlib.suppress(*AMQP_FAILURES):
                async with asyncio.timeout(self._broker.connect_timeout_s):
                    await connection.close()


__all__ = ["BrokerLink", "LinkState", "connect"]

"""The receiver's link to RabbitMQ: connect in the background, declare the topology, say if up.

The receiver must start and answer callbacks (spooling them) while the broker is down, so the
first connection is attempted once at start, within ``broker.connect_timeout_s``, and then retried
in the background every ``receiver.retry_interval_s`` until it succeeds. After that the robust
connection reconnects by itself and restores the channel and the topology; its close and
reconnect callbacks keep ``is_ready`` true exactly while publishing can work, so a callback
arriving during an outage goes to the spool at once instead of waiting for a confirm timeout.

The topology comes from ``declare_topology`` (the one definition shared with the worker); this
module declares nothing of its own.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from enum import StrEnum
from typing import Any

import aiormq
from aio_pika.abc import AbstractChannel, AbstractRobustConnection

from bridge.broker import (
    DeclaredExchanges,
    Envelope,
    Publisher,
    PublishFailed,
    Topology,
    connect,
    declare_topology,
    open_confirm_channel,
)
from bridge.settings import Settings

log = logging.getLogger(__name__)

CONNECTION_NAME = "catapult-bridge receiver"


class LinkState(StrEnum):
    CONNECTING = "connecting"
    READY = "ready"
    DISCONNECTED = "disconnected"
    CLOSED = "closed"


class BrokerLink:
    """One robust connection and one confirm channel, shared by every publish of the receiver."""

    def __init__(self, settings: Settings) -> None:
        self._broker = settings.broker
        self._topology = Topology.from_settings(settings)
        self._retry_interval_s = settings.receiver.retry_interval_s
        self._state = LinkState.CONNECTING
        self._ready = asyncio.Event()
        self._connection: AbstractRobustConnection | None = None
        self._channel: AbstractChannel | None = None
        self._exchanges: DeclaredExchanges | None = None
        self._publisher: Publisher | None = None
        self._connector: asyncio.Task[None] | None = None

    @property
    def state(self) -> LinkState:
        return self._state

    @property
    def is_ready(self) -> bool:
        return self._state is LinkState.READY

    async def wait_ready(self) -> None:
        await self._ready.wait()

    async def start(self) -> None:
        """Try to connect once; on failure keep trying in the background and return."""
        if await self._attempt():
            return
        self._connector = asyncio.create_task(self._keep_trying(), name="receiver-broker-connect")

    async def _keep_trying(self) -> None:
        while True:
            await asyncio.sleep(self._retry_interval_s)
            if await self._attempt(quiet=True):
                return

    async def _attempt(self, *, quiet: bool = False) -> bool:
        """One try; after the first failure the retries log at debug level only."""
        level = logging.DEBUG if quiet else logging.WARNING
        try:
            connection = await connect(self._broker, name=CONNECTION_NAME)
        except PublishFailed as exc:
            log.log(level, "RabbitMQ is not reachable yet, callbacks are spooled: %s", exc.detail)
            return False
        try:
            channel = await open_confirm_channel(connection)
            exchanges = await declare_topology(channel, self._topology)
        except (aiormq.exceptions.AMQPError, ConnectionError, TimeoutError, RuntimeError) as exc:
            log.log(
                logging.DEBUG if quiet else logging.ERROR,
                "cannot declare the topology on RabbitMQ (%s): %s",
                type(exc).__name__,
                exc,
            )
            with contextlib.suppress(Exception):
                await connection.close()
            return False
        self._connection = connection
        self._channel = channel
        self._exchanges = exchanges
        self._publisher = Publisher(channel, confirm_timeout_s=self._broker.confirm_timeout_s)
        connection.close_callbacks.add(self._on_close)
        connection.reconnect_callbacks.add(self._on_reconnect)
        self._set_ready()
        log.info("connected to RabbitMQ at %s, topology declared", self._broker.display_url)
        return True

    def _set_ready(self) -> None:
        if self._state is not LinkState.CLOSED:
            self._state = LinkState.READY
            self._ready.set()

    def _on_close(self, _sender: Any, exc: BaseException | None = None) -> None:
        if self._state is LinkState.CLOSED:
            return
        self._state = LinkState.DISCONNECTED
        self._ready.clear()
        log.warning("lost the connection to RabbitMQ (%s); spooling callbacks", type(exc).__name__)

    def _on_reconnect(self, _sender: Any) -> None:
        log.info("reconnected to RabbitMQ; draining the spool")
        self._set_ready()

    async def publish(self, envelope: Envelope) -> None:
        """Publish on the events exchange and wait for the confirm; ``PublishFailed`` if not."""
        if self._state is not LinkState.READY or self._publisher is None:
            raise PublishFailed("disconnected", "not connected to RabbitMQ")
        assert self._exchanges is not None
        await self._publisher.publish(self._exchanges.events, envelope)

    async def redeclare(self) -> None:
        """Declare the topology again (after an unroutable publish: a queue was deleted)."""
        if self._channel is None or not self.is_ready:
            return
        try:
            self._exchanges = await declare_topology(self._channel, self._topology)
        except (aiormq.exceptions.AMQPError, ConnectionError, TimeoutError, RuntimeError) as exc:
            log.error("cannot declare the topology again (%s): %s", type(exc).__name__, exc)

    async def close(self) -> None:
        self._state = LinkState.CLOSED
        self._ready.clear()
        if self._connector is not None:
            self._connector.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._connector
        if self._connection is not None:
            # Bounded: a broker that stopped answering must not hold the shutdown.
            with contextlib.suppress(Exception):
                async with asyncio.timeout(self._broker.connect_timeout_s):
                    await self._connection.close()

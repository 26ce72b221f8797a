"""Serving the receiver app on a TCP socket, and stopping it in order.

``ReceiverServer`` is what a runner uses::

    server = ReceiverServer(settings, registry=registry)   # SettingsError if misconfigured
    await server.start()          # spool recovered, broker tried once, socket listening
    ...                           # server.base_url / server.callback_url / server.port
    await server.stop()           # ordered shutdown, see below

or ``async with ReceiverServer(settings) as server: ...``. ``stop()`` closes the listening
socket, waits up to ``receiver.shutdown_timeout_s`` for the callbacks in flight to be answered,
then tears down the app's cleanup contexts in reverse: the drainer, the broker connection, the
spool.

Slow or greedy clients are bounded: a request head must be complete within
``receiver.header_timeout_s`` (aiohttp's keep-alive timer), a body within
``receiver.body_timeout_s`` (the handler), and at most ``receiver.max_connections`` are open
(``connections.GatedSite``).
"""

from __future__ import annotations

import logging

from aiohttp import web
from prometheus_client import CollectorRegistry

from bridge.operations import Readiness
from bridge.receiver import health
from bridge.receiver.app import create_receiver_app
from bridge.receiver.connections import GatedSite
from bridge.receiver.keys import DRAINER, JOURNAL, LINK, METRICS, RETRY_JOURNAL
from bridge.receiver.layout import ProcessSlot
from bridge.settings import Settings, reachable_host

log = logging.getLogger(__name__)


class ReceiverServer:
    """The receiver on ``host:port`` (from the settings unless given; port 0 picks a free one).

    ``slot``: one of several receiver processes on one port (``SO_REUSEPORT``), see ``child.py``.
    """

    def __init__(
        self,
        settings: Settings,
        *,
        registry: CollectorRegistry | None = None,
        host: str | None = None,
        port: int | None = None,
        slot: ProcessSlot | None = None,
    ) -> None:
        receiver = settings.receiver
        self.app = create_receiver_app(settings, registry=registry, slot=slot)
        self._reuse_port = slot is not None
        self._path = receiver.path
        self._host = receiver.host if host is None else host
        self._port = receiver.port if port is None else port
        self._max_connections = receiver.max_connections
        # A GET callback carries its fields in the request line: let it be as long as a body may.
        line_bytes = max(8190, 2 * receiver.max_body_bytes + 8192)
        self._runner = web.AppRunner(
            self.app,
            access_log=None,
            shutdown_timeout=receiver.shutdown_timeout_s,
            max_line_size=line_bytes,
            # aiohttp's keep-alive timer runs from the connection's start and from each answer,
            # and closes the connection if no complete request head has come by then: the header
            # timeout, which also ends idle keep-alive connections.
            keepalive_timeout=receiver.header_timeout_s,
        )
        self._started = False

    async def start(self) -> None:
        try:
            await self._runner.setup()
            site = GatedSite(
                self._runner,
                self._host,
                self._port,
                limit=self._max_connections,
                metrics=self.app[METRICS],
                reuse_port=self._reuse_port,
            )
            await site.start()
        except BaseException:
            # Undo the cleanup contexts entered so far (the spool lock, a broker connection).
            await self._runner.cleanup()
            raise
        self._started = True
        log.info("receiver listening on %s%s", self.base_url, self._path)

    @property
    def port(self) -> int:
        if not self._started:
            raise RuntimeError("the receiver is not started")
        address = self._runner.addresses[0]
        return int(address[1])

    @property
    def base_url(self) -> str:
        return f"http://{reachable_host(self._host)}:{self.port}"

    @property
    def registry(self) -> CollectorRegistry:
        """Where the receiver's metrics are (served by the operations server)."""
        return self.app[METRICS].registry

    def refresh_metrics(self) -> None:
        """Write the gauges shared with other receiver processes (``ReceiverMetrics.refresh``)."""
        self.app[METRICS].refresh()

    def readiness(self) -> Readiness:
        """Ready to take callbacks: broker link up, spool draining; see ``health``."""
        app = self.app
        return health.readiness(
            app[LINK], app.get(JOURNAL), app.get(RETRY_JOURNAL), app.get(DRAINER)
        )

    @property
    def callback_url(self) -> str:
        """Where callbacks go, without credentials or the path token."""
        return self.base_url + self._path

    async def stop(self) -> None:
        if not self._started:
            return
        self._started = False
        log.info("receiver stopping")
        await self._runner.cleanup()
        log.info("receiver stopped")

    async def __aenter__(self) -> ReceiverServer:
        await self.start()
        return self

    async def __aexit__(self, *_exc: object) -> None:
        await self.stop()

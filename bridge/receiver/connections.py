"""How many connections the callback server holds, and the site that listens behind that gate.

aiohttp bounds a request's size but not the number of connections, and a client that opens many
and sends nothing (or trickles) holds each one. ``ConnectionGate`` admits at most
``receiver.max_connections`` at a time; one more is answered ``503`` at once and closed, so
Catapult turns to the fallback URL instead of waiting out its timeout. The gate wraps aiohttp's
own protocol (one extra call per read), counts what it admits and refuses, and ``GatedSite`` is
a ``TCPSite`` that listens through it. The read timeouts are the server's (``server.py``) and
the handler's; nothing here reads HTTP.
"""

from __future__ import annotations

import asyncio
from collections.abc import Callable

import orjson
from aiohttp import web

from bridge.receiver.metrics import ReceiverMetrics
from bridge.receiver.problems import PROBLEM_JSON, TYPE_PREFIX

_BUSY_BODY = orjson.dumps(
    {
        "type": TYPE_PREFIX + "too-many-connections",
        "title": "Service unavailable",
        "status": 503,
        "detail": "the receiver holds its limit of open connections; try again",
    }
)
# Written before the request is read: the answer to whatever the client sends first.
BUSY_ANSWER = (
    b"HTTP/1.1 503 Service Unavailable\r\n"
    b"Content-Type: " + PROBLEM_JSON.encode() + b"\r\n"
    b"Content-Length: " + str(len(_BUSY_BODY)).encode() + b"\r\n"
    b"Retry-After: 1\r\n"
    b"Connection: close\r\n\r\n" + _BUSY_BODY
)


class ConnectionGate:
    """A protocol factory: aiohttp's protocol for each admitted connection, at most ``limit``."""

    def __init__(
        self,
        factory: Callable[[], asyncio.Protocol],
        *,
        limit: int,
        metrics: ReceiverMetrics,
    ) -> None:
        self._factory = factory
        self.limit = limit
        self.open = 0
        self._metrics = metrics
        metrics.watch_connections(lambda: self.open)

    def __call__(self) -> asyncio.Protocol:
        return _Gated(self)

    def admit(self, transport: asyncio.BaseTransport) -> asyncio.Protocol | None:
        """The protocol of a new connection, or None when it was refused (answered, closed)."""
        if self.open >= self.limit:
            self._metrics.connections_refused.inc()
            if isinstance(transport, asyncio.WriteTransport):
                transport.write(BUSY_ANSWER)
            transport.close()
            return None
        self.open += 1
        inner = self._factory()
        inner.connection_made(transport)
        return inner

    def release(self) -> None:
        self.open -= 1


class _Gated(asyncio.Protocol):
    """One connection: refused, or passed through to aiohttp's protocol unchanged."""

    __slots__ = ("_gate", "_inner")

    def __init__(self, gate: ConnectionGate) -> None:
        self._gate = gate
        self._inner: asyncio.Protocol | None = None

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self._inner = self._gate.admit(transport)

    def data_received(self, data: bytes) -> None:
        if self._inner is not None:
            self._inner.data_received(data)

    def eof_received(self) -> bool | None:
        return None if self._inner is None else self._inner.eof_received()

    def pause_writing(self) -> None:
        if self._inner is not None:
            self._inner.pause_writing()

    def resume_writing(self) -> None:
        if self._inner is not None:
            self._inner.resume_writing()

    def connection_lost(self, exc: Exception | None) -> None:
        inner, self._inner = self._inner, None
        if inner is not None:
            self._gate.release()
            inner.connection_lost(exc)


class GatedSite(web.BaseSite):
    """Like ``web.TCPSite`` on ``host:port``, with every connection through ``ConnectionGate``."""

    __slots__ = ("_gate", "_host", "_port", "_reuse_port")

    def __init__(
        self,
        runner: web.BaseRunner,
        host: str,
        port: int,
        *,
        limit: int,
        metrics: ReceiverMetrics,
        reuse_port: bool = False,
    ) -> None:
        super().__init__(runner)
        server = runner.server
        assert server is not None  # BaseSite refuses a runner that is not set up
        self._gate = ConnectionGate(server, limit=limit, metrics=metrics)
        self._host = host
        self._port = port
        self._reuse_port = reuse_port  # SO_REUSEPORT: several receiver processes on one port

    @property
    def name(self) -> str:
        return f"http://{self._host}:{self._port}"

    async def start(self) -> None:
        await super().start()
        loop = asyncio.get_running_loop()
        self._server = await loop.create_server(
            self._gate,
            self._host,
            self._port,
            backlog=self._backlog,
            reuse_address=True,
            reuse_port=self._reuse_port or None,
        )

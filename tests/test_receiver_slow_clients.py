"""Slow and greedy clients over raw sockets: a request head or body that trickles is cut off, and
connections past ``receiver.max_connections`` are refused at once.

The trickling client sends one byte at a time and, between bytes, waits for the server to answer
or hang up with a short deadline: that deadline is its pacing (there is no other way to spread
bytes over time without sleeping), and the test ends as soon as the server closes. Every wait
has a deadline.
"""

from __future__ import annotations

import asyncio
from collections.abc import Callable
from dataclasses import dataclass

import orjson
import pytest

from bridge.receiver import ReceiverServer
from bridge.settings import Settings
from tests.fixtures.receiver import AUTH_HEADERS, CREDENTIALS, MakeReceiver
from tests.test_receiver_http import INBOUND_SMS

PACE_S = 0.05  # between two bytes of a trickling client
DEADLINE_S = 5.0


def request_head(body: bytes, *, close: bool = False) -> bytes:
    lines = [
        b"POST /catapult/messages HTTP/1.1",
        b"Host: 127.0.0.1",
        b"Authorization: " + AUTH_HEADERS["Authorization"].encode(),
        b"Content-Type: application/json",
        b"Content-Length: %d" % len(body),
    ]
    if close:
        lines.append(b"Connection: close")
    return b"\r\n".join(lines) + b"\r\n\r\n"


@dataclass
class Hangup:
    """What the server sent before it closed, and how much of ours it had taken by then."""

    answer: bytes
    sent: int
    after_s: float


class RawClient:
    def __init__(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        self.reader = reader
        self.writer = writer

    @classmethod
    async def connect(cls, server: ReceiverServer) -> RawClient:
        reader, writer = await asyncio.open_connection("127.0.0.1", server.port)
        return cls(reader, writer)

    async def send(self, data: bytes) -> None:
        self.writer.write(data)
        await self.writer.drain()

    async def until_closed(self) -> bytes:
        """Everything the server sends until it closes the connection."""
        async with asyncio.timeout(DEADLINE_S):
            return await self.reader.read()

    async def trickle(self, data: bytes) -> Hangup | None:
        """Send ``data`` byte by byte until the server hangs up (None if it never did)."""
        loop = asyncio.get_running_loop()
        started = loop.time()
        answer = bytearray()
        for sent in range(len(data)):
            try:
                await self.send(data[sent : sent + 1])
            except ConnectionError:
                return Hangup(bytes(answer), sent, loop.time() - started)
            try:
                async with asyncio.timeout(PACE_S):
                    while chunk := await self.reader.read(4096):
                        answer += chunk
            except TimeoutError:
                continue  # the server is still waiting: next byte
            except ConnectionError:
                pass
            return Hangup(bytes(answer), sent + 1, loop.time() - started)
        return None

    def close(self) -> None:
        self.writer.transport.abort()


@pytest.fixture
def settings(make_settings: Callable[..., Settings]) -> Settings:
    return make_settings(
        receiver={
            **CREDENTIALS,
            "header_timeout_s": 0.5,
            "body_timeout_s": 0.5,
            "max_connections": 3,
        }
    )


async def test_a_client_that_trickles_its_request_head_is_cut_off(
    settings: Settings, make_receiver: MakeReceiver
) -> None:
    server = await make_receiver(settings)
    body = orjson.dumps(INBOUND_SMS)
    head = request_head(body)  # some 200 bytes: 10 s at this pace
    client = await RawClient.connect(server)
    async with asyncio.timeout(DEADLINE_S):
        hangup = await client.trickle(head + body)
    assert hangup is not None, "the server waited for the whole trickle"
    assert hangup.answer == b""  # nothing was read: there is nothing to answer
    assert hangup.sent < len(head)
    assert 0.4 < hangup.after_s < 2.0
    client.close()


async def test_a_connection_that_never_sends_is_closed(
    settings: Settings, make_receiver: MakeReceiver
) -> None:
    server = await make_receiver(settings)
    client = await RawClient.connect(server)
    assert await client.until_closed() == b""
    client.close()


async def test_a_client_that_trickles_its_body_gets_408_and_is_closed(
    settings: Settings, make_receiver: MakeReceiver
) -> None:
    server = await make_receiver(settings)
    body = orjson.dumps(INBOUND_SMS)
    client = await RawClient.connect(server)
    await client.send(request_head(body))
    async with asyncio.timeout(DEADLINE_S):
        hangup = await client.trickle(body)
    assert hangup is not None, "the server waited for the whole trickle"
    assert hangup.answer.startswith(b"HTTP/1.1 408 ")
    assert b"urn:catapult-bridge:problem:request-timeout" in hangup.answer
    assert hangup.sent < len(body)
    client.close()


async def test_connections_past_the_limit_are_refused_at_once(
    settings: Settings, make_receiver: MakeReceiver
) -> None:
    server = await make_receiver(settings)
    body = orjson.dumps(INBOUND_SMS)
    held = [await RawClient.connect(server) for _ in range(3)]
    for client in held:
        await client.send(b"POST /catapult/messages HTTP/1.1\r\n")  # and then nothing

    extra = await RawClient.connect(server)
    answer = await extra.until_closed()
    assert answer.startswith(b"HTTP/1.1 503 ")
    assert b"urn:catapult-bridge:problem:too-many-connections" in answer
    registry = server.registry
    assert registry.get_sample_value("bridge_receiver_connections_refused_total") == 1.0
    assert registry.get_sample_value("bridge_receiver_connections") == 3.0

    # One of them finishes its callback: its place is free for the next one.
    first = held.pop(0)
    await first.send(b"Host: x\r\n" + request_head(body, close=True).split(b"\r\n", 2)[2] + body)
    assert (await first.until_closed()).startswith(b"HTTP/1.1 200 ")
    assert registry.get_sample_value("bridge_receiver_connections") == 2.0
    late = await RawClient.connect(server)
    await late.send(request_head(body, close=True) + body)
    assert (await late.until_closed()).startswith(b"HTTP/1.1 200 ")
    for client in (*held, extra, first, late):
        client.close()

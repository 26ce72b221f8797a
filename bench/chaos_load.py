"""The chaos runner's traffic and its window on RabbitMQ.

- ``CallbackLoad`` posts Catapult v1 inbound SMS callbacks to the receiver at a fixed rate (open
  loop: a slow answer does not slow the schedule), as Catapult does: one try, and one more (the
  fallback URL, here the same receiver) when the first is not answered 2xx. Every callback has its
  own message id; its expected event id is computed with the bridge's own rule.
- ``CommandLoad`` publishes send commands to the send queue (persistent, confirmed) at a fixed
  rate, or a batch of them at once. A publish counts as sent only once RabbitMQ confirmed it;
  while the broker is away the load keeps trying to reconnect and what could not leave is
  counted apart, never queued up in memory.
- ``Rabbit`` asks the node for queue depths and, at the end, reads every queue empty.

Everything goes to 127.0.0.1; every wait has a deadline.
"""

from __future__ import annotations

import asyncio
import base64
import contextlib
import hashlib
import time
from collections.abc import Callable
from datetime import UTC, datetime
from typing import Any

import aio_pika
import aiohttp
import orjson
from aio_pika.abc import AbstractChannel, AbstractConnection, AbstractIncomingMessage
from chaos_ledger import Callback, Command, Ledger

from bridge.events.callbacks import InvalidCallback, parse_callback
from bridge.events.receiver_events import event_id

CALLBACK_TIMEOUT_S = 10.0  # Catapult v1's longest callback timeout
INBOUND_FROM = "+15555550123"


def catapult_id(*parts: object) -> str:
    """A message id shaped like Catapult's: ``m-`` and 23 characters of ``[a-z2-7]``."""
    digest = hashlib.sha256("/".join(map(str, parts)).encode()).digest()
    return "m-" + base64.b32encode(digest).decode().lower()[:23]


def expected_event_id(fields: dict[str, Any]) -> str | None:
    """The id the receiver gives the event of this callback (None if it is not valid)."""
    try:
        return event_id(parse_callback(fields))
    except InvalidCallback:
        return None


async def paced(
    action: Callable[[], None],
    *,
    rate_per_s: float,
    duration_s: float,
    until: asyncio.Event | None,
) -> None:
    """Call ``action`` ``rate_per_s`` times a second on a fixed schedule (open loop) for at least
    ``duration_s``, and on until ``until`` is set."""
    if rate_per_s <= 0:
        return
    started = time.monotonic()
    index = 0
    while True:
        due = started + index / rate_per_s
        if due - started >= duration_s and (until is None or until.is_set()):
            return
        delay = due - time.monotonic()
        if delay > 0:
            await asyncio.sleep(delay)
        action()
        index += 1


class CallbackLoad:
    def __init__(
        self,
        *,
        ledger: Ledger,
        url: str,
        authorization: str,
        to_number: str,
        run_id: str,
        now: Callable[[], float],
    ) -> None:
        self.ledger = ledger
        self.url = url
        self.authorization = authorization
        self.to_number = to_number
        self.run_id = run_id
        self.now = now
        self.count = 0
        self._tasks: set[asyncio.Task[None]] = set()
        self._session: aiohttp.ClientSession | None = None

    async def __aenter__(self) -> CallbackLoad:
        self._session = aiohttp.ClientSession(
            timeout=aiohttp.ClientTimeout(total=CALLBACK_TIMEOUT_S),
            connector=aiohttp.TCPConnector(limit=128, force_close=False),
        )
        return self

    async def __aexit__(self, *_exc: object) -> None:
        await self.finish()
        if self._session is not None:
            await self._session.close()

    def body(self, n: int) -> dict[str, Any]:
        message_id = catapult_id(self.run_id, "inbound", n)
        return {
            "eventType": "sms",
            "direction": "in",
            "messageId": message_id,
            "messageUri": f"https://api.catapult.inetwork.com/v1/users/u-chaos/messages/{message_id}",
            "from": INBOUND_FROM,
            "to": self.to_number,
            "text": f"chaos inbound {n}",
            "applicationId": "a-chaosrunner",
            "time": datetime.now(UTC).isoformat(timespec="milliseconds").replace("+00:00", "Z"),
            "state": "received",
            "segmentCount": 1,
        }

    async def run(
        self, *, rate_per_s: float, duration_s: float, until: asyncio.Event | None = None
    ) -> None:
        """Post ``rate_per_s`` callbacks a second for ``duration_s``, and on until ``until`` is
        set (answers are awaited by ``finish``)."""
        await paced(self.post_one, rate_per_s=rate_per_s, duration_s=duration_s, until=until)

    def post_one(self) -> None:
        n = self.count
        self.count += 1
        task = asyncio.create_task(self._post(self.body(n)))
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)

    async def finish(self) -> None:
        """Wait for every callback in flight (each is bounded by its timeouts)."""
        if self._tasks:
            await asyncio.wait(self._tasks, timeout=3 * CALLBACK_TIMEOUT_S + 5)

    async def _post(self, fields: dict[str, Any]) -> None:
        assert self._session is not None
        eid = expected_event_id(fields)
        assert eid is not None, "the runner's callback must be valid"
        record = Callback(
            event_id=eid, source="runner", sent_at_s=self.now(), message_id=fields["messageId"]
        )
        self.ledger.callbacks[eid] = record
        data = orjson.dumps(fields)
        headers = {"Authorization": self.authorization, "Content-Type": "application/json"}
        for _ in range(2):  # the callback URL, then the fallback URL (the same receiver)
            record.attempts += 1
            try:
                async with self._session.post(self.url, data=data, headers=headers) as answer:
                    body = await answer.read()
                    record.status = answer.status
                    record.error = None
                    with contextlib.suppress(ValueError):
                        parsed = orjson.loads(body)
                        if isinstance(parsed, dict):
                            record.answer = str(parsed.get("status") or parsed.get("type"))
            except (aiohttp.ClientError, TimeoutError, OSError) as exc:
                record.status = None
                record.error = type(exc).__name__
            record.answered_at_s = self.now()
            if record.is_2xx:
                return


class CommandLoad:
    """Publishes send commands; see the module docstring."""

    def __init__(
        self,
        *,
        ledger: Ledger,
        url: str,
        queue: str,
        senders: tuple[str, ...],
        prefix: str,
        now: Callable[[], float],
        receipt: str = "none",
    ) -> None:
        self.ledger = ledger
        self.url = url
        self.queue = queue
        self.senders = senders
        self.prefix = prefix
        self.now = now
        self.receipt = receipt
        self.count = 0
        self._connection: AbstractConnection | None = None
        self._channel: AbstractChannel | None = None
        self._tasks: set[asyncio.Task[None]] = set()
        self._reconnecting: asyncio.Task[None] | None = None

    async def __aenter__(self) -> CommandLoad:
        with contextlib.suppress(Exception):
            await self._connect()
        return self

    async def __aexit__(self, *_exc: object) -> None:
        await self.finish()
        if self._reconnecting is not None:
            self._reconnecting.cancel()
            with contextlib.suppress(BaseException):
                await self._reconnecting
        if self._connection is not None:
            with contextlib.suppress(Exception):
                await asyncio.wait_for(self._connection.close(), 5)

    async def _connect(self) -> None:
        connection = await aio_pika.connect(self.url, timeout=5)
        self._channel = await connection.channel(publisher_confirms=True)
        self._connection = connection

    def _is_up(self) -> bool:
        return (
            self._connection is not None
            and not self._connection.is_closed
            and self._channel is not None
            and not self._channel.is_closed
        )

    def _ensure_reconnecting(self) -> None:
        if self._reconnecting is None or self._reconnecting.done():
            self._reconnecting = asyncio.create_task(self._reconnect())

    async def _reconnect(self) -> None:
        while not self._is_up():
            try:
                await self._connect()
            except Exception:
                await asyncio.sleep(0.5)

    def body(self, n: int) -> bytes:
        sender = self.senders[n % len(self.senders)]
        command = {"from": sender, "to": "+15555550199", "text": f"chaos send {n}"}
        if self.receipt != "none":
            command["receiptRequested"] = self.receipt
        return orjson.dumps(command)

    def publish_one(self) -> None:
        n = self.count
        self.count += 1
        task = asyncio.create_task(self._publish(n))
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)

    async def run(
        self, *, rate_per_s: float, duration_s: float, until: asyncio.Event | None = None
    ) -> None:
        """Publish ``rate_per_s`` commands a second for ``duration_s``, and on until ``until``."""
        await paced(self.publish_one, rate_per_s=rate_per_s, duration_s=duration_s, until=until)

    async def publish_batch(self, count: int, *, chunk: int = 500) -> None:
        """Publish ``count`` commands as fast as confirms come, ``chunk`` in flight at a time."""
        end = self.count + count
        while self.count < end:
            for _ in range(min(chunk, end - self.count)):
                self.publish_one()
            await self.finish()

    async def finish(self) -> None:
        if self._tasks:
            await asyncio.wait(self._tasks, timeout=30)

    async def _publish(self, n: int) -> None:
        command_id = f"{self.prefix}-{n:06d}"
        if not self._is_up():
            self.ledger.publish_failures += 1
            self._ensure_reconnecting()
            return
        assert self._channel is not None
        record = Command(command_id=command_id, published_at_s=self.now(), confirmed=False)
        self.ledger.commands[command_id] = record
        message = aio_pika.Message(
            self.body(n),
            message_id=command_id,
            content_type="application/json",
            delivery_mode=aio_pika.DeliveryMode.PERSISTENT,
        )
        try:
            await asyncio.wait_for(
                self._channel.default_exchange.publish(
                    message, routing_key=self.queue, mandatory=True
                ),
                10,
            )
        except Exception:
            # It may or may not be in the queue: not counted as sent, and its result (if any)
            # is not held against the bridge as a loss.
            self._ensure_reconnecting()
            return
        record.confirmed = True


class Rabbit:
    """Queue depths while a scenario runs, and every queue read empty at the end."""

    def __init__(self, url: str) -> None:
        self.url = url
        self._connection: AbstractConnection | None = None

    async def _channel(self) -> AbstractChannel:
        if self._connection is None or self._connection.is_closed:
            self._connection = await aio_pika.connect(self.url, timeout=5)
        return await self._connection.channel()

    async def depth(self, queue: str) -> int | None:
        """Messages ready in ``queue``; None while the broker cannot be asked."""
        try:
            channel = await asyncio.wait_for(self._channel(), 6)
            try:
                declared = await asyncio.wait_for(channel.declare_queue(queue, passive=True), 5)
                return int(declared.declaration_result.message_count or 0)
            finally:
                with contextlib.suppress(Exception):
                    await asyncio.wait_for(channel.close(), 3)
        except Exception:
            await self.close()
            return None

    async def depths(self, queues: list[str]) -> int | None:
        total = 0
        for queue in queues:
            depth = await self.depth(queue)
            if depth is None:
                return None
            total += depth
        return total

    async def drain(self, queue: str, *, timeout_s: float = 60) -> list[AbstractIncomingMessage]:
        """Every message of ``queue``, taken off it (the scenario is over)."""
        taken: list[AbstractIncomingMessage] = []
        channel = await self._channel()
        try:
            declared = await channel.declare_queue(queue, passive=True)
        except Exception:
            await self.close()
            return taken
        async with asyncio.timeout(timeout_s):
            while (message := await declared.get(no_ack=True, fail=False, timeout=5)) is not None:
                taken.append(message)
        with contextlib.suppress(Exception):
            await channel.close()
        return taken

    async def close(self) -> None:
        connection, self._connection = self._connection, None
        if connection is not None:
            with contextlib.suppress(Exception):
                await asyncio.wait_for(connection.close(), 3)

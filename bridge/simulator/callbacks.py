"""Delivery of callback events over HTTP, the way the v1 platform made them.

One aiohttp ``ClientSession`` (connector-limited) carries every attempt. An event goes to its URL
once, with the callback's timeout (at most 10 s); a connection error (including a URL that cannot
be connected to), a timeout or any status outside 200-299 (redirects are not followed) is a
failure, and the fallback URL is then tried once.
When both fail the event is dropped and a user error ``callback-http-failure-status`` is recorded.

Credentials written into a callback URL (``http://user:pass@host/...``) are sent as an
``Authorization: Basic`` header; URLs are recorded and logged with the password masked. Every
attempt is recorded with its outcome; tests await attempts through ``wait_for`` instead of polling.
Background tasks are tracked here and cancelled by ``close``.
"""

from __future__ import annotations

import asyncio
import base64
import logging
import time
from collections.abc import Callable, Coroutine
from dataclasses import dataclass, field
from typing import Any
from urllib.parse import urlencode

import aiohttp
import orjson
from yarl import URL

from bridge.settings import masked_url
from bridge.simulator.events import query_params
from bridge.simulator.faults import FaultInjector
from bridge.simulator.store import CallbackAttempt, SimulatorState, UserError, new_id

log = logging.getLogger(__name__)

USER_AGENT = "BandwidthAPI/v1 (catapult-bridge-simulator)"
JSON_CONTENT_TYPE = "application/json; charset=utf-8"

AttemptPredicate = Callable[[CallbackAttempt], bool]


@dataclass(frozen=True, slots=True)
class CallbackTarget:
    """Where the events of one message go: URL, method, timeout and optional fallback."""

    url: str
    method: str = "POST"  # "GET" | "POST"
    timeout_ms: int = 10_000
    fallback_url: str | None = None


@dataclass(slots=True)
class _Waiter:
    predicate: AttemptPredicate
    count: int
    found: list[CallbackAttempt]
    future: asyncio.Future[list[CallbackAttempt]]


@dataclass(slots=True)
class _Result:
    is_ok: bool
    status: int | None = None
    error: str | None = None


@dataclass
class CallbackDispatcher:
    """Delivers events and keeps every attempt; owns the HTTP session and the delivery tasks."""

    state: SimulatorState
    injector: FaultInjector
    max_connections: int = 100
    # How a URL is shown in attempts and logs (passwords and secrets masked).
    shown_url: Callable[[str], str] = masked_url
    _session: aiohttp.ClientSession | None = None
    _tasks: set[asyncio.Task[None]] = field(default_factory=set)
    _waiters: list[_Waiter] = field(default_factory=list)

    async def open(self) -> None:
        connector = aiohttp.TCPConnector(limit=self.max_connections)
        self._session = aiohttp.ClientSession(connector=connector, raise_for_status=False)

    async def close(self) -> None:
        await self.cancel_all()
        if self._session is not None:
            await self._session.close()
            self._session = None

    @property
    def pending(self) -> int:
        return len(self._tasks)

    def spawn(self, coro: Coroutine[Any, Any, None], *, name: str) -> None:
        task = asyncio.get_running_loop().create_task(coro, name=name)
        self._tasks.add(task)
        task.add_done_callback(self._finished)

    def _finished(self, task: asyncio.Task[None]) -> None:
        self._tasks.discard(task)
        if not task.cancelled() and task.exception() is not None:
            log.error("callback task %s failed", task.get_name(), exc_info=task.exception())

    async def cancel_all(self) -> None:
        tasks = list(self._tasks)
        for task in tasks:
            task.cancel()
        if tasks:
            await asyncio.gather(*tasks, return_exceptions=True)

    async def wait_idle(self, timeout_s: float) -> None:
        """Until no delivery task is left (tasks started meanwhile are waited for too)."""
        async with asyncio.timeout(timeout_s):
            while self._tasks:
                await asyncio.wait(list(self._tasks))

    # Delivery ---------------------------------------------------------------------------------

    async def deliver(self, message_id: str, event: dict[str, Any], target: CallbackTarget) -> bool:
        """Deliver one event (twice under the duplicate fault); True when the last try got 2xx."""
        is_ok = await self._deliver_once(message_id, event, target)
        if self.injector.is_duplicate():
            is_ok = await self._deliver_once(message_id, event, target)
        return is_ok

    async def _deliver_once(
        self, message_id: str, event: dict[str, Any], target: CallbackTarget
    ) -> bool:
        result = await self._attempt(message_id, event, target, target.url, is_fallback=False)
        if result.is_ok:
            return True
        if target.fallback_url is not None:
            fallback = await self._attempt(
                message_id, event, target, target.fallback_url, is_fallback=True
            )
            if fallback.is_ok:
                return True
            result = fallback
        self._record_failure(message_id, event, target, result)
        return False

    async def _attempt(
        self,
        message_id: str,
        event: dict[str, Any],
        target: CallbackTarget,
        raw_url: str,
        *,
        is_fallback: bool,
    ) -> _Result:
        delay_ms = self.injector.faults.callback_delay_ms
        if delay_ms:
            await asyncio.sleep(delay_ms / 1000)
        started = time.perf_counter()
        if self.injector.is_callback_failure():
            result = _Result(False, error="injected failure: target unreachable")
        else:
            result = await self._request(event, target, raw_url)
        attempt = CallbackAttempt(
            seq=self.state.next_attempt_seq(),
            time_s=time.time(),
            message_id=message_id,
            event=event,
            url=self.shown_url(raw_url),
            method=target.method,
            is_fallback=is_fallback,
            is_ok=result.is_ok,
            status=result.status,
            error=result.error,
            duration_ms=(time.perf_counter() - started) * 1000,
        )
        self._record(attempt)
        return result

    async def _request(
        self, event: dict[str, Any], target: CallbackTarget, raw_url: str
    ) -> _Result:
        if self._session is None:
            raise RuntimeError("the callback dispatcher is not open")
        url = URL(raw_url)
        headers = {"User-Agent": USER_AGENT}
        if url.user is not None:
            credentials = f"{url.user}:{url.password or ''}".encode()
            headers["Authorization"] = "Basic " + base64.b64encode(credentials).decode("ascii")
            url = url.with_user(None)
        data: bytes | None = None
        if target.method == "GET":
            query = urlencode(query_params(event))
            separator = "&" if url.raw_query_string else "?"
            url = URL(str(url) + separator + query, encoded=True)
        else:
            headers["Content-Type"] = JSON_CONTENT_TYPE
            data = orjson.dumps(event)
        try:
            async with (
                asyncio.timeout(target.timeout_ms / 1000),
                self._session.request(
                    target.method,
                    url,
                    data=data,
                    headers=headers,
                    allow_redirects=False,
                ) as response,
            ):
                await response.read()
                status = response.status
        except TimeoutError:
            return _Result(False, error=f"timeout after {target.timeout_ms} ms")
        except (aiohttp.ClientError, ValueError) as exc:
            # ValueError: a URL the API accepted but the connection cannot use (a host name that
            # does not IDNA-encode, say). It is a failed attempt like any other: the walk goes on.
            return _Result(False, error=f"{type(exc).__name__}: {exc}")
        if 200 <= status <= 299:
            return _Result(True, status=status)
        return _Result(False, status=status, error=f"HTTP {status}")

    def _record_failure(
        self, message_id: str, event: dict[str, Any], target: CallbackTarget, result: _Result
    ) -> None:
        url = self.shown_url(target.fallback_url or target.url)
        log.warning(
            "callback for %s failed at %s (%s)",
            message_id,
            url,
            result.error,
            extra={"message_id": message_id},
        )
        self.state.user_errors.append(
            UserError(
                id=new_id("ue"),
                time_s=time.time(),
                category="unavailable",
                code="callback-http-failure-status",
                message="The callback returned an HTTP failure status",
                details=(
                    ("callbackStatusCode", "" if result.status is None else str(result.status)),
                    ("callbackUrl", url),
                    ("callbackMethod", target.method),
                    ("callbackEvent", str(event.get("eventType", ""))),
                    ("messageId", message_id),
                    ("error", result.error or ""),
                ),
            )
        )

    # Waiting ----------------------------------------------------------------------------------

    def _record(self, attempt: CallbackAttempt) -> None:
        self.state.callback_attempts.append(attempt)
        if not self._waiters:
            return
        for waiter in list(self._waiters):
            if waiter.predicate(attempt):
                waiter.found.append(attempt)
                if len(waiter.found) >= waiter.count:
                    self._waiters.remove(waiter)
                    if not waiter.future.done():
                        waiter.future.set_result(waiter.found)

    async def wait_for(
        self, count: int, predicate: AttemptPredicate, timeout_s: float
    ) -> list[CallbackAttempt]:
        """The first ``count`` attempts (recorded so far or later) matching ``predicate``."""
        found = [a for a in self.state.callback_attempts if predicate(a)]
        if len(found) >= count:
            return found[:count]
        future: asyncio.Future[list[CallbackAttempt]] = asyncio.get_running_loop().create_future()
        waiter = _Waiter(predicate, count, found, future)
        self._waiters.append(waiter)
        try:
            return await asyncio.wait_for(future, timeout_s)
        except TimeoutError:
            raise TimeoutError(
                f"only {len(waiter.found)} of {count} callback attempts within {timeout_s} s"
            ) from None
        finally:
            if waiter in self._waiters:
                self._waiters.remove(waiter)

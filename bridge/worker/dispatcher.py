"""The loop that turns held commands into calls: wait for work the limits allow, take a slot, run.

A ``Dispatcher`` serves one scheduler (sends, or imports). It sleeps until the scheduler has
something ready (woken by ``wake()`` when a command arrives, a call ends or a pause is set, or by a
timer at the next token time: never a polling loop), takes one slot of each of its semaphores (the
global cap on calls in flight, and the lane's own cap), takes the ready work and runs it as a
tracked task that gives the slots back when it ends. Stopping it cancels only the waiting; the
calls it started are the caller's to drain (``InFlight``).
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import math
import time
from collections.abc import Callable, Coroutine, Sequence
from typing import Any, Generic, TypeVar

log = logging.getLogger(__name__)

W = TypeVar("W")


class InFlight:
    """Every task the worker started that must end before the broker connection closes."""

    def __init__(self) -> None:
        self._tasks: set[asyncio.Task[Any]] = set()

    def __len__(self) -> int:
        return len(self._tasks)

    def spawn(self, coro: Coroutine[Any, Any, None], *, name: str) -> asyncio.Task[None]:
        task = asyncio.create_task(coro, name=name)
        self.track(task)
        return task

    def track(self, task: asyncio.Task[Any]) -> None:
        self._tasks.add(task)
        task.add_done_callback(self._done)

    def _done(self, task: asyncio.Task[Any]) -> None:
        self._tasks.discard(task)
        if not task.cancelled() and task.exception() is not None:
            log.error("worker task %s failed", task.get_name(), exc_info=task.exception())

    async def wait(self, timeout_s: float) -> set[asyncio.Task[Any]]:
        """Wait up to ``timeout_s`` for every tracked task; return those still running."""
        current = asyncio.current_task()
        tasks = {t for t in self._tasks if t is not current}
        if not tasks:
            return set()
        _, pending = await asyncio.wait(tasks, timeout=timeout_s)
        return pending

    async def cancel(self, tasks: set[asyncio.Task[Any]], *, timeout_s: float) -> None:
        """Cancel ``tasks`` and give their clean-up (a nack each) up to ``timeout_s``."""
        for task in tasks:
            task.cancel()
        if tasks:
            await asyncio.wait(tasks, timeout=timeout_s)


class Dispatcher(Generic[W]):
    def __init__(
        self,
        *,
        name: str,
        next_ready_at: Callable[[], float | None],
        take: Callable[[float], list[W]],
        run: Callable[[list[W]], Coroutine[Any, Any, None]],
        slots: Sequence[asyncio.Semaphore],
        in_flight: InFlight,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self._name = name
        self._next_ready_at = next_ready_at
        self._take = take
        self._run = run
        self._slots = slots
        self._in_flight = in_flight
        self._clock = clock
        self._wake = asyncio.Event()
        self._started = 0

    def wake(self) -> None:
        self._wake.set()

    async def run_forever(self) -> None:
        while True:
            await self._until_ready()
            await self._acquire()
            work = self._take(self._clock())
            if not work:
                self._release()
                continue
            self._started += 1
            task = self._in_flight.spawn(self._run(work), name=f"{self._name} {self._started}")
            task.add_done_callback(self._finished)

    def _finished(self, _task: asyncio.Task[None]) -> None:
        self._release()
        self._wake.set()

    async def _until_ready(self) -> None:
        while True:
            self._wake.clear()
            ready_at = self._next_ready_at()
            now = self._clock()
            if ready_at is not None and ready_at <= now:
                return
            # None or inf: nothing is due by the clock; a wake() (a command, an answer) will come.
            timeout_s = None if ready_at is None or math.isinf(ready_at) else ready_at - now
            with contextlib.suppress(TimeoutError):
                async with asyncio.timeout(timeout_s):
                    await self._wake.wait()

    async def _acquire(self) -> None:
        taken: list[asyncio.Semaphore] = []
        try:
            for slot in self._slots:
                await slot.acquire()
                taken.append(slot)
        except BaseException:
            for slot in taken:
                slot.release()
            raise

    def _release(self) -> None:
        for slot in self._slots:
            slot.release()


__all__ = ["Dispatcher", "InFlight"]

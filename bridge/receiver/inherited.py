"""Draining a spool left by a receiver process that no longer runs (see ``layout.py``).

``InheritedSpool`` opens the directory's journal and its retry journal (taking their locks, so
two processes never drain one), drains both through this process's broker link, and closes them
once both are empty. What the broker refuses goes to this process's own retry journal, so the
inherited directory empties even then. The drain is the same ``SpoolDrainer`` as the process's
own: the same order, the same guarantees, the same metrics.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from pathlib import Path

from bridge.broker import BrokerLink
from bridge.receiver.drainer import Backoff, SpoolDrainer
from bridge.receiver.metrics import ReceiverMetrics
from bridge.receiver.spool import Journal
from bridge.settings import ReceiverSettings, SettingsError

log = logging.getLogger(__name__)

RELEASE_TIMEOUT_S = 5.0


class InheritedSpool:
    """One left-over spool directory, drained until empty; ``open`` then ``start``, ``close``."""

    def __init__(self, directory: Path, journals: tuple[Journal, Journal]) -> None:
        self.directory = directory
        self._journals = journals
        self._drainers: list[SpoolDrainer] = []
        self._task: asyncio.Task[None] | None = None
        self._closed = False
        self.drained = asyncio.Event()

    @classmethod
    async def open(
        cls, directory: Path, *, retry_dir: str, max_bytes: int
    ) -> InheritedSpool | None:
        """The spool in ``directory``, or None when another process holds it (it drains it)."""
        try:
            journal = await Journal.open(directory, max_bytes=max_bytes)
        except SettingsError as exc:
            log.warning("left-over spool %s not drained here: %s", directory, exc)
            return None
        try:
            retry = await Journal.open(directory / retry_dir, max_bytes=max_bytes)
        except BaseException:
            await journal.close()
            raise
        return cls(directory, (journal, retry))

    @property
    def depth(self) -> int:
        return sum(journal.depth for journal in self._journals)

    def start(
        self,
        link: BrokerLink,
        metrics: ReceiverMetrics,
        *,
        refused_to: Journal,
        settings: ReceiverSettings,
        batch_size: int,
    ) -> None:
        if self.depth:
            log.warning(
                "spool %s, left by a receiver process that no longer runs, holds %d events; "
                "draining them",
                self.directory,
                self.depth,
            )
        for name, journal in zip(("inherited", "inherited-retry"), self._journals, strict=True):
            drainer = SpoolDrainer(
                journal,
                link,
                metrics,
                name=f"{name} {self.directory}",
                refused_to=refused_to,
                batch_size=batch_size,
                backoff=Backoff(settings.retry_interval_s, settings.drain_retry_max_s),
            )
            drainer.start()
            self._drainers.append(drainer)
        self._task = asyncio.create_task(self._until_empty(), name=f"inherited {self.directory}")

    async def _until_empty(self) -> None:
        for journal in self._journals:
            await journal.wait_empty()
        log.info("left-over spool %s is drained", self.directory)
        self.drained.set()
        # The round that emptied it is writing its cursor: let it finish.
        await self._release(timeout_s=RELEASE_TIMEOUT_S)

    async def close(self, *, timeout_s: float) -> None:
        if self._task is not None:
            if not self.drained.is_set():
                self._task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._task
        await self._release(timeout_s=timeout_s)

    async def _release(self, *, timeout_s: float) -> None:
        if self._closed:
            return
        self._closed = True
        for drainer in self._drainers:
            await drainer.stop(timeout_s=timeout_s)
        for journal in reversed(self._journals):
            await journal.close()

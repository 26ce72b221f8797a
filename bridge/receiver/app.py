"""The receiver's composition root: ``create_receiver_app`` builds the whole aiohttp application.

Resources live in cleanup contexts, in dependency order, each stored under its ``web.AppKey``:

    spool_ctx     open (and recover) the journal and the     close: finish writes, persist cursors
                  retry journal of refused events
    broker_ctx    connect (or keep trying in the background) close: the AMQP connection
    delivery_ctx  dedup window, publisher, the main and the  close: let a drain batch finish
                  retry drainer
    inherited_ctx drain the spools left by receiver         close: let a drain batch finish
                  processes that no longer run (layout.py)

aiohttp tears them down in reverse order after the server has stopped accepting connections and
the requests in flight have been answered (see ``server.py``), so shutdown is: stop accepting,
finish in-flight callbacks, stop draining, close the broker connection, flush the spool state.
Nothing here is module-level; everything comes from the ``Settings`` passed in.
"""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator

from aiohttp import hdrs, web
from prometheus_client import CollectorRegistry

from bridge.broker import BrokerLink
from bridge.operations import healthz
from bridge.receiver import handlers
from bridge.receiver.auth import CallbackAuth
from bridge.receiver.dedup import DedupWindow
from bridge.receiver.drainer import Backoff, SpoolDrainer
from bridge.receiver.inherited import InheritedSpool
from bridge.receiver.keys import (
    AUTH,
    DRAINER,
    INHERITED,
    JOURNAL,
    LINK,
    METRICS,
    PUBLISHER,
    RETRY_DRAINER,
    RETRY_JOURNAL,
    SETTINGS,
    SLOT,
)
from bridge.receiver.layout import ProcessSlot, find_left_over, own_spool_dir
from bridge.receiver.metrics import ReceiverMetrics
from bridge.receiver.problems import problem_middleware
from bridge.receiver.publishing import CallbackPublisher
from bridge.receiver.spool import Journal
from bridge.settings import Settings

# Spooled events published per drain round, all confirms in flight at once.
DRAIN_BATCH = 256
# Under the spool directory: the journal of events the broker refused, retried after a pause.
RETRY_DIR = "retry"
CONNECTION_NAME = "catapult-bridge receiver"


async def spool_ctx(app: web.Application) -> AsyncIterator[None]:
    settings = app[SETTINGS].receiver
    if not settings.spool_enabled:
        yield
        return
    directory = own_spool_dir(settings.spool_dir, app.get(SLOT))
    journal = await Journal.open(directory, max_bytes=settings.spool_max_bytes)
    try:
        retry = await Journal.open(directory / RETRY_DIR, max_bytes=settings.spool_max_bytes)
    except BaseException:
        await journal.close()
        raise
    journal.count_with(retry)  # one bound for both: refused events are still spooled events
    app[JOURNAL] = journal
    app[RETRY_JOURNAL] = retry
    app[METRICS].watch_spool(journal, retry)
    yield
    await retry.close()
    await journal.close()


async def broker_ctx(app: web.Application) -> AsyncIterator[None]:
    link = BrokerLink(app[SETTINGS], name=CONNECTION_NAME, while_away="callbacks are spooled")
    app[LINK] = link
    app[METRICS].watch_link(link)
    await link.start()
    yield
    await link.close()


async def delivery_ctx(app: web.Application) -> AsyncIterator[None]:
    settings = app[SETTINGS]
    journal = app.get(JOURNAL)
    dedup = DedupWindow(
        window_s=settings.receiver.dedup_window_s,
        max_entries=settings.receiver.dedup_max_entries,
    )
    app[PUBLISHER] = CallbackPublisher(
        link=app[LINK], journal=journal, dedup=dedup, metrics=app[METRICS]
    )
    drainers: list[SpoolDrainer] = []
    if journal is not None:
        retry = app[RETRY_JOURNAL]
        receiver = settings.receiver
        for key, name, source in ((DRAINER, "main", journal), (RETRY_DRAINER, "retry", retry)):
            drainer = SpoolDrainer(
                source,
                app[LINK],
                app[METRICS],
                name=name,
                refused_to=retry,
                batch_size=DRAIN_BATCH,
                backoff=Backoff(receiver.retry_interval_s, receiver.drain_retry_max_s),
            )
            app[key] = drainer
            drainers.append(drainer)
        app[METRICS].watch_drain(drainers[0])
        for drainer in drainers:
            drainer.start()
    yield
    for drainer in drainers:
        await drainer.stop(timeout_s=settings.broker.confirm_timeout_s)


async def inherited_ctx(app: web.Application) -> AsyncIterator[None]:
    settings = app[SETTINGS]
    receiver = settings.receiver
    if not receiver.spool_enabled:
        yield
        return
    inherited: list[InheritedSpool] = []
    try:
        left_over = await asyncio.to_thread(find_left_over, receiver.spool_dir, app.get(SLOT))
        for directory in left_over:
            spool = await InheritedSpool.open(
                directory, retry_dir=RETRY_DIR, max_bytes=receiver.spool_max_bytes
            )
            if spool is None:
                continue
            inherited.append(spool)
            spool.start(
                app[LINK],
                app[METRICS],
                refused_to=app[RETRY_JOURNAL],
                settings=receiver,
                batch_size=DRAIN_BATCH,
            )
        app[INHERITED] = inherited
        yield
    finally:
        for spool in inherited:
            await spool.close(timeout_s=settings.broker.confirm_timeout_s)


def create_receiver_app(
    settings: Settings,
    *,
    registry: CollectorRegistry | None = None,
    slot: ProcessSlot | None = None,
) -> web.Application:
    """The receiver app; raises ``SettingsError`` at once if it has no credentials (and may not).

    ``registry`` is where its metrics go (a new one if None; the runner passes one shared with
    the worker). ``slot``: this is one of several receiver processes (``receiver.processes``),
    with its spool in a directory of its own and its metrics shared with the others. Serve it
    with ``ReceiverServer``.
    """
    receiver = settings.receiver
    auth = CallbackAuth(receiver)
    app = web.Application(middlewares=[problem_middleware], client_max_size=receiver.max_body_bytes)
    app[SETTINGS] = settings
    app[METRICS] = ReceiverMetrics(registry, shared=slot is not None)
    app[AUTH] = auth
    if slot is not None:
        app[SLOT] = slot
    app.cleanup_ctx.extend([spool_ctx, broker_ctx, delivery_ctx, inherited_ctx])

    paths = [receiver.path]
    if auth.uses_path_token:
        paths.append(receiver.path + "/{token}")
    for path in paths:
        app.router.add_route(hdrs.METH_GET, path, handlers.handle_callback)
        app.router.add_route(hdrs.METH_POST, path, handlers.handle_callback)
    # Liveness only: readiness and metrics tell an operator's secrets (operations server).
    app.router.add_get("/healthz", healthz)
    return app

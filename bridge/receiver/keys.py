"""The typed ``web.AppKey``s under which the receiver app keeps its parts.

The composition root (``app.py``) stores each part as its cleanup context creates it; handlers
read them. Parts that exist only with the spool switched on (``JOURNAL``, ``RETRY_JOURNAL``,
``DRAINER``, ``RETRY_DRAINER``, ``INHERITED``) and ``SLOT`` (one of several receiver
processes) are read with ``app.get``.
"""

from __future__ import annotations

from aiohttp import web

from bridge.broker import BrokerLink
from bridge.receiver.auth import CallbackAuth
from bridge.receiver.drainer import SpoolDrainer
from bridge.receiver.inherited import InheritedSpool
from bridge.receiver.layout import ProcessSlot
from bridge.receiver.metrics import ReceiverMetrics
from bridge.receiver.publishing import CallbackPublisher
from bridge.receiver.spool import Journal
from bridge.settings import Settings

SETTINGS = web.AppKey("settings", Settings)
METRICS = web.AppKey("metrics", ReceiverMetrics)
AUTH = web.AppKey("auth", CallbackAuth)
JOURNAL = web.AppKey("journal", Journal)
RETRY_JOURNAL = web.AppKey("retry_journal", Journal)
LINK = web.AppKey("link", BrokerLink)
DRAINER = web.AppKey("drainer", SpoolDrainer)
RETRY_DRAINER = web.AppKey("retry_drainer", SpoolDrainer)
PUBLISHER = web.AppKey("publisher", CallbackPublisher)
SLOT = web.AppKey("slot", ProcessSlot)  # only in one of several receiver processes
INHERITED = web.AppKey("inherited", list[InheritedSpool])  # left-over spools being drained

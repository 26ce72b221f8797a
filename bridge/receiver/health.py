"""``/healthz``, ``/readyz`` and ``/metrics`` of the receiver.

``/healthz`` answers 200 while the process serves. ``/readyz`` answers 200 only when the broker
link is up with the topology declared and the spool drains normally (not stalled on failed
publishes, not nearly full); otherwise 503. Both bodies are JSON that says which part is not
ready. ``/metrics`` is the Prometheus text of the receiver's registry. The readiness decision is a
pure function of a few numbers, tested by table.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import orjson
from aiohttp import web
from prometheus_client import CONTENT_TYPE_LATEST, generate_latest

from bridge.broker import BrokerLink
from bridge.receiver.drainer import SpoolDrainer
from bridge.receiver.keys import DRAINER, JOURNAL, LINK, METRICS
from bridge.receiver.spool import Journal

# Above this share of its bound the spool is "nearly full": new callbacks may soon get 503.
NEARLY_FULL = 0.9


@dataclass(frozen=True, slots=True)
class Readiness:
    is_ready: bool
    report: dict[str, Any]


def assess(
    *,
    broker_state: str,
    spool_enabled: bool,
    spool_records: int = 0,
    spool_bytes: int = 0,
    spool_max_bytes: int = 1,
    drain_stalled: bool = False,
) -> Readiness:
    problems = []
    if broker_state != "ready":
        problems.append(f"broker {broker_state}")
    spool: dict[str, Any] = {"enabled": spool_enabled}
    if spool_enabled:
        if spool_bytes >= NEARLY_FULL * spool_max_bytes:
            state = "nearly-full"
        elif drain_stalled:
            state = "stalled"
        elif spool_records:
            state = "draining"
        else:
            state = "empty"
        if state in ("nearly-full", "stalled"):
            problems.append(f"spool {state}")
        spool |= {
            "state": state,
            "records": spool_records,
            "bytes": spool_bytes,
            "max_bytes": spool_max_bytes,
        }
    report = {
        "status": "ready" if not problems else "not-ready",
        "problems": problems,
        "broker": broker_state,
        "spool": spool,
    }
    return Readiness(is_ready=not problems, report=report)


def readiness(link: BrokerLink, journal: Journal | None, drainer: SpoolDrainer | None) -> Readiness:
    if journal is None:
        return assess(broker_state=link.state, spool_enabled=False)
    return assess(
        broker_state=link.state,
        spool_enabled=True,
        spool_records=journal.depth,
        spool_bytes=journal.size_bytes,
        spool_max_bytes=journal.max_bytes,
        drain_stalled=drainer is not None and drainer.is_stalled,
    )


def _json(body: dict[str, Any], status: int = 200) -> web.Response:
    return web.Response(status=status, body=orjson.dumps(body), content_type="application/json")


async def healthz(_request: web.Request) -> web.Response:
    return _json({"status": "ok"})


async def readyz(request: web.Request) -> web.Response:
    app = request.app
    result = readiness(app[LINK], app.get(JOURNAL), app.get(DRAINER))
    return _json(result.report, 200 if result.is_ready else 503)


async def metrics(request: web.Request) -> web.Response:
    response = web.Response(body=generate_latest(request.app[METRICS].registry))
    response.headers["Content-Type"] = CONTENT_TYPE_LATEST
    return response

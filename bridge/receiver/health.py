"""The receiver's readiness, as the operations server's ``/readyz`` reports it.

Ready only when the broker link is up with the topology declared and the spool drains normally
(not stalled on failed publishes or disk errors, not nearly full). Events the broker refused and
that wait for their retry are reported (``retrying``) but do not make it unready: they hold
nothing else back. The report is JSON that says
which part is not ready. The decision is a pure function of a few numbers, tested by table; the
probes themselves are served by ``bridge.operations``, never on the callback port.
"""

from __future__ import annotations

from typing import Any

from bridge.broker import BrokerLink
from bridge.operations import Readiness
from bridge.receiver.drainer import SpoolDrainer
from bridge.receiver.spool import Journal

# Above this share of its bound the spool is "nearly full": new callbacks may soon get 503.
NEARLY_FULL = 0.9


def assess(
    *,
    broker_state: str,
    spool_enabled: bool,
    spool_records: int = 0,
    spool_bytes: int = 0,
    spool_max_bytes: int = 1,
    retry_records: int = 0,
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
            "retrying": retry_records,
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


def readiness(
    link: BrokerLink, journal: Journal | None, retry: Journal | None, drainer: SpoolDrainer | None
) -> Readiness:
    """``retry`` (events the broker refused) is reported; it stalls nothing else, so it does not
    make the receiver unready, while a stalled main drain does."""
    if journal is None:
        return assess(broker_state=link.state, spool_enabled=False)
    return assess(
        broker_state=link.state,
        spool_enabled=True,
        spool_records=journal.depth,
        spool_bytes=journal.used_bytes,
        spool_max_bytes=journal.max_bytes,
        retry_records=0 if retry is None else retry.depth,
        drain_stalled=drainer is not None and drainer.is_stalled,
    )

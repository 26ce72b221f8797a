"""The worker's readiness, and its probes as an app of their own.

``worker_readiness(worker)`` is what the operations server's ``/readyz`` reports for the worker
(``bridge.operations`` serves ``/healthz``, ``/readyz`` and ``/metrics`` for every role of the
process). ``create_health_app(worker)`` is the operations app for a worker alone::

    /healthz   200 while the process serves requests
    /readyz    200 while the worker consumes with its broker connection up, else 503 (also
               while Catapult is down: the worker then takes no commands and probes it)
    /metrics   Prometheus text of the worker's registry
"""

from __future__ import annotations

from aiohttp import web

from bridge.operations import Readiness, create_operations_app
from bridge.worker.worker import Worker


def worker_readiness(worker: Worker) -> Readiness:
    ready = worker.is_ready
    problems = []
    catapult = worker.catapult_state
    down_for_s = worker.catapult_down_for_s
    if down_for_s is not None:
        problems.append(
            f"catapult down for {down_for_s:.0f} s: commands wait in their queues, probing it"
        )
    if not ready:
        broker = worker.broker_state
        if broker != "ready":
            problems.append(f"broker {broker}")
        elif down_for_s is None:
            problems.append(f"not consuming (state {worker.state.value})")
    report = {
        "status": "ready" if ready else "not-ready",
        "problems": problems,
        "state": worker.state.value,
        "broker": worker.broker_state,
        "catapult": catapult.value,
    }
    return Readiness(ready, report)


def create_health_app(worker: Worker) -> web.Application:
    return create_operations_app(
        worker.metrics.registry, {"worker": lambda: worker_readiness(worker)}
    )


__all__ = ["create_health_app", "worker_readiness"]

"""The worker's readiness, and its probes as an app of their own.

``worker_readiness(worker)`` is what the operations server's ``/readyz`` reports for the worker
(``bridge.operations`` serves ``/healthz``, ``/readyz`` and ``/metrics`` for every role of the
process). ``create_health_app(worker)`` is the operations app for a worker alone::

    /healthz   200 while the process serves requests
    /readyz    200 while the worker consumes with its broker connection up, else 503
    /metrics   Prometheus text of the worker's registry
"""

from __future__ import annotations

from aiohttp import web

from bridge.operations import Readiness, create_operations_app
from bridge.worker.worker import Worker


def worker_readiness(worker: Worker) -> Readiness:
    ready = worker.is_ready
    problems = []
    if not ready:
        broker = worker.broker_state
        problems.append(
            f"broker {broker}"
            if broker != "ready"
            else f"not consuming (state {worker.state.value})"
        )
    report = {
        "status": "ready" if ready else "not-ready",
        "problems": problems,
        "state": worker.state.value,
        "broker": worker.broker_state,
    }
    return Readiness(ready, report)


def create_health_app(worker: Worker) -> web.Application:
    return create_operations_app(
        worker.metrics.registry, {"worker": lambda: worker_readiness(worker)}
    )


__all__ = ["create_health_app", "worker_readiness"]

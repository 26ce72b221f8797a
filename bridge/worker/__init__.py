"""The worker: send and import commands from RabbitMQ to Catapult, within limits, one result each.

Public API (for the runner and for tests)::

    Worker(settings, client, *, registry=None, close_client=False)   start() / stop() / async with
    create_health_app(worker)                                         /healthz /readyz /metrics

Parts, from pure to I/O: ``decisions`` (what an answer means), ``limits`` (token buckets and
pauses), ``scheduler`` (fair per-sender lanes, parking), ``deliveries`` (a delivery and its
headers), ``settlement`` (what the broker is told), ``ambiguous`` (look a message up before sending
it again), ``executor`` (the calls to Catapult), ``dispatcher`` (the loop that starts calls),
``consumer`` (AMQP, and ``settle``: the only ack), ``flow`` (a command from delivery to settle),
``metrics``, ``worker`` (composition, ordered start and stop), ``health`` (the probes).
"""

from bridge.worker.health import create_health_app, worker_readiness
from bridge.worker.metrics import WorkerMetrics
from bridge.worker.worker import Worker, WorkerState

__all__ = [
    "Worker",
    "WorkerMetrics",
    "WorkerState",
    "create_health_app",
    "worker_readiness",
]

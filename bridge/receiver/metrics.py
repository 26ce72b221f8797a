"""The receiver's Prometheus metrics, on a registry of its own or one shared by the runner.

Never the global default registry: tests build many receivers in one process, and the runner
gives the receiver and the worker one registry so that one ``/metrics`` shows both. The spool's
depth and size are read at scrape time from the journal, so the hot path pays nothing for them.

    bridge_receiver_callbacks_total{outcome}        published | spooled | duplicate | rejected |
                                                     unauthorized | unavailable
    bridge_receiver_callback_duration_seconds        time to answer a callback
    bridge_receiver_publish_failures_total{reason}   timeout | unroutable | nacked | disconnected |
                                                     rejected (an event set aside by the drain)
    bridge_receiver_spool_records                    events on disk, not yet confirmed by the broker
    bridge_receiver_spool_bytes / _spool_max_bytes   spool size and its bound
    bridge_receiver_spool_drained_total              spooled events later confirmed by the broker
    bridge_receiver_spool_retry_records              events the broker refused, waiting for a retry
    bridge_receiver_spool_damaged_records            damaged records kept aside (since the start)
    bridge_receiver_spool_drain_stalled              1 while the spool drain fails and retries
    bridge_receiver_spool_drain_failures_total{reason}  disk | error: failed drain rounds
    bridge_receiver_broker_ready                     1 while connected with the topology declared
    bridge_receiver_connections                      connections open to the callback server
    bridge_receiver_connections_refused_total        refused at once: max_connections were open
    bridge_receiver_processes                        receiver processes running (receiver.processes)

With several receiver processes (``receiver.processes``) every process writes its metrics to
the directory of prometheus_client's multiprocess mode (``PROMETHEUS_MULTIPROC_DIR``, set by the
supervisor) and the operations port adds them up: counters and histograms sum over every process
that has run; gauges sum over the live ones (``livesum``), except broker readiness (the lowest:
1 only if every process is connected) and the stalled drain (the highest). Gauges cannot be
read at scrape time there, so ``refresh`` writes them; the process calls it on a short period.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import TYPE_CHECKING

from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram

if TYPE_CHECKING:
    from bridge.broker import BrokerLink
    from bridge.receiver.drainer import SpoolDrainer
    from bridge.receiver.spool import Journal

OUTCOMES = ("published", "spooled", "duplicate", "rejected", "unauthorized", "unavailable")
_BUCKETS_S = (0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0)


class ReceiverMetrics:
    """``shared``: one of several receiver processes (gauges written by ``refresh``)."""

    def __init__(self, registry: CollectorRegistry | None = None, *, shared: bool = False) -> None:
        self.registry = registry if registry is not None else CollectorRegistry()
        self.is_shared = shared
        self._watched: list[tuple[Gauge, Callable[[], float]]] = []
        self.callbacks = Counter(
            "bridge_receiver_callbacks",
            "Message callbacks answered, by outcome",
            ["outcome"],
            registry=self.registry,
        )
        self.by_outcome = {outcome: self.callbacks.labels(outcome) for outcome in OUTCOMES}
        self.duration = Histogram(
            "bridge_receiver_callback_duration_seconds",
            "Time from a callback's arrival to its answer",
            buckets=_BUCKETS_S,
            registry=self.registry,
        )
        self.publish_failures = Counter(
            "bridge_receiver_publish_failures",
            "Publishes RabbitMQ did not confirm, by reason",
            ["reason"],
            registry=self.registry,
        )
        self.spool_records = Gauge(
            "bridge_receiver_spool_records",
            "Events in the spool, not yet confirmed by RabbitMQ",
            multiprocess_mode="livesum",
            registry=self.registry,
        )
        self.spool_bytes = Gauge(
            "bridge_receiver_spool_bytes",
            "Bytes the spool holds on disk",
            multiprocess_mode="livesum",
            registry=self.registry,
        )
        self.spool_max_bytes = Gauge(
            "bridge_receiver_spool_max_bytes",
            "Bound of the spool; at it callbacks are answered 503",
            multiprocess_mode="livesum",
            registry=self.registry,
        )
        self.spool_drained = Counter(
            "bridge_receiver_spool_drained",
            "Spooled events later confirmed by RabbitMQ",
            registry=self.registry,
        )
        self.connections = Gauge(
            "bridge_receiver_connections",
            "Connections open to the callback server",
            multiprocess_mode="livesum",
            registry=self.registry,
        )
        self.connections_refused = Counter(
            "bridge_receiver_connections_refused",
            "Connections answered 503 and closed at once: receiver.max_connections were open",
            registry=self.registry,
        )
        self.spool_retry_records = Gauge(
            "bridge_receiver_spool_retry_records",
            "Spooled events RabbitMQ refused (nacked, unroutable), waiting for their retry",
            multiprocess_mode="livesum",
            registry=self.registry,
        )
        self.spool_damaged_records = Gauge(
            "bridge_receiver_spool_damaged_records",
            "Damaged spool records (checksum failed, cut short) kept in damaged.log since start",
            multiprocess_mode="livesum",
            registry=self.registry,
        )
        self.spool_drain_stalled = Gauge(
            "bridge_receiver_spool_drain_stalled",
            "1 while the spool drain fails (the broker or the disk) and retries with backoff",
            multiprocess_mode="livemax",
            registry=self.registry,
        )
        self.spool_drain_failures = Counter(
            "bridge_receiver_spool_drain_failures",
            "Spool drain rounds that failed other than on the broker, by reason (disk, error)",
            ["reason"],
            registry=self.registry,
        )
        self.broker_ready = Gauge(
            "bridge_receiver_broker_ready",
            "1 while connected to RabbitMQ with the topology declared",
            multiprocess_mode="livemin",
            registry=self.registry,
        )

        self.processes = Gauge(
            "bridge_receiver_processes",
            "Receiver processes running",
            multiprocess_mode="livesum",
            registry=self.registry,
        )
        self.processes.set(1)

    def _watch(self, gauge: Gauge, read: Callable[[], float]) -> None:
        """``gauge`` shows ``read()``: at scrape time, or when shared as of the last refresh."""
        if self.is_shared:
            self._watched.append((gauge, read))
            gauge.set(read())
        else:
            gauge.set_function(read)

    def refresh(self) -> None:
        """Write the watched gauges (shared metrics are read from files, not from this process)."""
        for gauge, read in self._watched:
            gauge.set(read())

    def watch_connections(self, read: Callable[[], float]) -> None:
        self._watch(self.connections, read)

    def observe(self, outcome: str, duration_s: float) -> None:
        self.by_outcome[outcome].inc()
        self.duration.observe(duration_s)

    def watch_spool(self, journal: Journal, retry: Journal) -> None:
        self._watch(self.spool_records, lambda: journal.depth)
        self._watch(self.spool_bytes, lambda: journal.used_bytes)
        self.spool_max_bytes.set(journal.max_bytes)
        self._watch(self.spool_retry_records, lambda: retry.depth)
        self._watch(self.spool_damaged_records, lambda: journal.damaged + retry.damaged)

    def watch_drain(self, drainer: SpoolDrainer) -> None:
        self._watch(self.spool_drain_stalled, lambda: 1.0 if drainer.is_stalled else 0.0)

    def watch_link(self, link: BrokerLink) -> None:
        self._watch(self.broker_ready, lambda: 1.0 if link.is_ready else 0.0)

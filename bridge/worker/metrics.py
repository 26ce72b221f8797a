"""The worker's Prometheus metrics, registered on a registry the caller may share.

Never the global default registry: tests build many workers in one process, and the runner gives
the receiver and the worker one registry for one ``/metrics``. Names start with
``bridge_worker_`` so they cannot clash with the receiver's. No I/O here.
"""

from __future__ import annotations

from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram


class WorkerMetrics:
    def __init__(self, registry: CollectorRegistry | None = None) -> None:
        self.registry = registry if registry is not None else CollectorRegistry()
        r = self.registry
        self.results = Counter(
            "bridge_worker_results",
            "Commands finished, by command and outcome.",
            ["command", "outcome"],
            registry=r,
        )
        self.republished = Counter(
            "bridge_worker_republished",
            "Commands sent through a delay tier: retry, ambiguous (look up first) or park.",
            ["command", "why"],
            registry=r,
        )
        self.dead_letters = Counter(
            "bridge_worker_dead_letters", "Commands dead-lettered, by reason.", ["reason"],
            registry=r,
        )  # fmt: skip
        self.given_back = Counter(
            "bridge_worker_given_back", "Deliveries nacked back to the broker.", registry=r
        )
        self.settle_failures = Counter(
            "bridge_worker_settle_failures",
            "Deliveries that could not be settled (broker refused or unreachable).",
            registry=r,
        )
        self.calls = Counter(
            "bridge_worker_catapult_calls",
            "Requests made to Catapult, by operation and result.",
            ["operation", "result"],
            registry=r,
        )
        self.errors = Counter(
            "bridge_worker_catapult_errors",
            "Error answers commands met from Catapult, by operation, HTTP status and Catapult's "
            "code ('none' when no answer was read; the client's error class when no code came).",
            ["operation", "status", "code"],
            registry=r,
        )
        self.call_seconds = Histogram(
            "bridge_worker_catapult_call_seconds",
            "Duration of requests to Catapult.",
            ["operation"],
            registry=r,
        )
        self.batch_size = Histogram(
            "bridge_worker_batch_size",
            "Messages per send request.",
            buckets=(1, 2, 5, 10, 20, 30, 40, 50),
            registry=r,
        )
        self.pauses = Counter(
            "bridge_worker_pauses", "Pauses after Catapult rate limits, by scope.", ["scope"],
            registry=r,
        )  # fmt: skip
        self.calls_in_flight = Gauge(
            "bridge_worker_calls_in_flight", "Requests to Catapult in flight.", registry=r
        )
        self.held = Gauge(
            "bridge_worker_held_commands",
            "Commands held in memory waiting for their turn or their tokens.",
            ["command"],
            registry=r,
        )
        self.catapult_up = Gauge(
            "bridge_worker_catapult_up",
            "1 while Catapult answers, 0 while the worker holds it down and probes it.",
            registry=r,
        )
        self.catapult_outages = Counter(
            "bridge_worker_catapult_outages",
            "Outages of Catapult: times the worker stopped taking commands until it answered.",
            registry=r,
        )
        self.ready = Gauge(
            "bridge_worker_ready", "1 while the worker consumes commands, else 0.", registry=r
        )
        # Sharded sending (``worker.shards``); all 0 with it off.
        self.shards_held = Gauge(
            "bridge_worker_shards_held",
            "Shard queues this worker holds (is the single active consumer of).",
            registry=r,
        )
        self.shards_warm = Gauge(
            "bridge_worker_shards_warm",
            "Shards held past the warm-up: those sent from, this worker's share of the account.",
            registry=r,
        )
        self.shard_router = Gauge(
            "bridge_worker_shard_router",
            "1 while this worker routes the send queue into the shard queues, else 0.",
            registry=r,
        )
        self.shard_workers = Gauge(
            "bridge_worker_shard_workers",
            "Workers sharing the shards, as this worker last counted them (0: not counted, "
            "for instance while paused for an outage of Catapult).",
            registry=r,
        )
        self.shards_given_up = Counter(
            "bridge_worker_shards_given_up",
            "Shards this worker held and let go, by why: balance (held over the fair share), "
            "outage (Catapult down), stop, disconnected (the broker connection was lost).",
            ["why"],
            registry=r,
        )


__all__ = ["WorkerMetrics"]

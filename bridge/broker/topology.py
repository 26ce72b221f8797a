"""Names, routing keys and arguments of everything the bridge declares on RabbitMQ.

The receiver and the worker both declare it (through ``BrokerLink``) with the same ``Topology``,
so the queue arguments they declare can never conflict (RabbitMQ closes the channel with
PRECONDITION_FAILED when two declarations of one queue differ). This module holds the one
definition; nothing else passes queue arguments.

Layout (default names):

    bridge.events (topic)
      inbound.*            -> inbound.sms               inbound SMS and MMS
      outbound.status.*    -> outbound.status           sending / sent / failed
      outbound.receipt.*   -> outbound.status           delivered / not delivered
      result.send.*        -> outbound.sms.results      one result per send command
      result.import.*      -> outbound.import.results   one result per import command
    (default exchange)     -> outbound.sms, outbound.import       commands from applications
    bridge.dead-letter (direct)
      outbound.sms.dead    -> outbound.sms.dead         the worker's dead letters (redacted)
      outbound.import.dead -> outbound.import.dead
      outbound.sms         -> outbound.sms.backstop     what RabbitMQ itself dead-letters from
      outbound.import      -> outbound.import.backstop  outbound.sms (its delivery limit, an
                                                        expired message): raw commands, consumed
                                                        by the worker, which publishes a result
                                                        and a redacted dead letter for each
    outbound.sms.retry.5s  (TTL 5 s, dead-letters back to outbound.sms), one per delay tier

The command queues dead-letter to ``bridge.dead-letter`` under their own name, as every version
declared them (a live queue's arguments cannot change: RabbitMQ refuses a declaration that
differs, so a changed argument would stop every existing deployment at start). Where those dead
letters land is decided by the bindings, which can change on a live exchange: the backstop queue
takes that key, and the binding earlier versions made from it to the dead queue, which would let
raw bodies (an import's Dashboard password) reach it, is removed at every start
(``Declarations.obsolete_bindings``).
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

import aiormq
from aio_pika.abc import AbstractChannel as AioPikaChannel
from aio_pika.abc import ExchangeType

from bridge.broker.errors import translated
from bridge.events.envelope import (
    IMPORT_RESULT_PREFIX,
    INBOUND_MMS,
    INBOUND_SMS,
    OUTBOUND_RECEIPT_PREFIX,
    OUTBOUND_STATUS_PREFIX,
    SEND_RESULT_PREFIX,
)
from bridge.settings import Settings


def _delay_label(delay_s: float) -> str:
    return f"{delay_s:g}s"


@dataclass(frozen=True, slots=True)
class ExchangeDeclaration:
    name: str
    type: ExchangeType
    holds: str  # what flows through it, for people


@dataclass(frozen=True, slots=True)
class QueueDeclaration:
    name: str
    arguments: Mapping[str, Any]
    holds: str  # what waits in it, for people


@dataclass(frozen=True, slots=True)
class BindingDeclaration:
    exchange: str
    routing_key: str
    queue: str


@dataclass(frozen=True, slots=True)
class Declarations:
    """Everything ``declare_topology`` declares, in the order it declares it (all durable)."""

    exchanges: tuple[ExchangeDeclaration, ...]
    queues: tuple[QueueDeclaration, ...]
    bindings: tuple[BindingDeclaration, ...]
    # Bindings earlier versions declared that must not stay: removed after the bindings are made
    # (removing one that is not there is a no-op).
    obsolete_bindings: tuple[BindingDeclaration, ...] = ()


@dataclass(frozen=True, slots=True)
class Topology:
    events_exchange: str
    dead_letter_exchange: str
    inbound_queue: str
    status_queue: str
    send_queue: str
    import_queue: str
    results_suffix: str
    dead_letter_suffix: str
    queue_type: str
    delivery_limit: int
    retry_delays_s: tuple[float, ...]
    shards: int = 0

    @classmethod
    def from_settings(cls, settings: Settings) -> Topology:
        broker = settings.broker
        return cls(
            events_exchange=broker.events_exchange,
            dead_letter_exchange=broker.dead_letter_exchange,
            inbound_queue=broker.inbound_queue,
            status_queue=broker.status_queue,
            send_queue=broker.send_queue,
            import_queue=broker.import_queue,
            results_suffix=broker.results_suffix,
            dead_letter_suffix=broker.dead_letter_suffix,
            queue_type=broker.queue_type,
            delivery_limit=broker.delivery_limit,
            retry_delays_s=tuple(sorted(set(settings.worker.retry_delays_s))),
            shards=settings.worker.shards,
        )

    @property
    def command_queues(self) -> tuple[str, str]:
        return (self.send_queue, self.import_queue)

    def results_queue(self, command_queue: str) -> str:
        return command_queue + self.results_suffix

    def dead_letter_queue(self, command_queue: str) -> str:
        return command_queue + self.dead_letter_suffix

    def dead_letter_routing_key(self, command_queue: str) -> str:
        """The key of the worker's own dead letters on the dead-letter exchange: the dead queue's
        name (the command queue's name is the broker's own dead-lettering, to the backstop)."""
        return self.dead_letter_queue(command_queue)

    def backstop_queue(self, command_queue: str) -> str:
        """Where the broker dead-letters a command itself: never the user-facing dead queue,
        as the raw body (an import's Dashboard password) must not land there."""
        return command_queue + ".backstop"

    def retry_queue(self, command_queue: str, delay_s: float) -> str:
        return f"{command_queue}.retry.{_delay_label(delay_s)}"

    def retry_tier(self, wanted_delay_s: float) -> float:
        """The smallest declared delay tier at least ``wanted_delay_s`` (or the largest tier)."""
        for tier in self.retry_delays_s:
            if tier >= wanted_delay_s:
                return tier
        return self.retry_delays_s[-1]

    # -- sharded sending (``worker.shards``; bridge/worker/shards.py) ---------------------------

    @property
    def shard_exchange(self) -> str:
        return f"{self.send_queue}.shards"

    def shard_queue(self, index: int) -> str:
        return f"{self.send_queue}.shard.{index}"

    @property
    def router_queue(self) -> str:
        return f"{self.send_queue}.router"

    @property
    def presence_queue(self) -> str:
        return f"{self.send_queue}.workers"

    def shard_queue_arguments(self) -> dict[str, Any]:
        # As the send queue's (a shard's commands are the send queue's: the broker's own dead
        # letters go to its backstop), with one consumer at a time.
        args = self.command_queue_arguments(self.send_queue)
        args["x-single-active-consumer"] = True
        return args

    def _shard_declarations(
        self,
    ) -> tuple[list[ExchangeDeclaration], list[QueueDeclaration], list[BindingDeclaration]]:
        if not self.shards:
            return [], [], []
        exchanges = [
            ExchangeDeclaration(
                self.shard_exchange,
                ExchangeType.X_CONSISTENT_HASH,
                "send commands, hashed by sending number onto the shard queues",
            )
        ]
        queues = [
            QueueDeclaration(
                self.shard_queue(i),
                self.shard_queue_arguments(),
                f"send commands of the sending numbers hashed to shard {i}",
            )
            for i in range(self.shards)
        ]
        sac = self.plain_queue_arguments() | {"x-single-active-consumer": True}
        queues.append(
            QueueDeclaration(self.router_queue, sac, "probes; its active consumer routes")
        )
        queues.append(
            QueueDeclaration(
                self.presence_queue,
                self.plain_queue_arguments(),
                "nothing; every worker consumes it, so its consumers are the workers",
            )
        )
        # The consistent-hash exchange reads a binding's key as the queue's weight.
        bindings = [
            BindingDeclaration(self.shard_exchange, "1", self.shard_queue(i))
            for i in range(self.shards)
        ]
        return exchanges, queues, bindings

    def result_prefix(self, command_queue: str) -> str:
        return SEND_RESULT_PREFIX if command_queue == self.send_queue else IMPORT_RESULT_PREFIX

    def plain_queue_arguments(self) -> dict[str, Any]:
        return {"x-queue-type": self.queue_type}

    def command_queue_arguments(self, command_queue: str) -> dict[str, Any]:
        args = self.plain_queue_arguments()
        # A message that keeps crashing consumers (or expires) is dead-lettered by the broker
        # itself, raw; the dead-letter exchange routes it to the backstop queue the worker
        # consumes. Unchanged since the first version (see the module docstring).
        args["x-dead-letter-exchange"] = self.dead_letter_exchange
        args["x-dead-letter-routing-key"] = command_queue
        if self.queue_type == "quorum":
            args["x-delivery-limit"] = self.delivery_limit
            args["x-dead-letter-strategy"] = "at-least-once"
            args["x-overflow"] = "reject-publish"
        return args

    def retry_queue_arguments(self, command_queue: str, delay_s: float) -> dict[str, Any]:
        # A per-queue TTL (not per message): every message in one tier expires in arrival order,
        # so a long delay never holds a short one behind it.
        args = self.plain_queue_arguments()
        args["x-message-ttl"] = round(delay_s * 1000)
        args["x-dead-letter-exchange"] = ""
        args["x-dead-letter-routing-key"] = command_queue
        if self.queue_type == "quorum":
            args["x-dead-letter-strategy"] = "at-least-once"
            args["x-overflow"] = "reject-publish"
        return args

    def event_queue_bindings(self) -> dict[str, tuple[str, ...]]:
        return {
            self.inbound_queue: ("inbound.*",),
            self.status_queue: (f"{OUTBOUND_STATUS_PREFIX}.*", f"{OUTBOUND_RECEIPT_PREFIX}.*"),
            self.results_queue(self.send_queue): (f"{SEND_RESULT_PREFIX}.*",),
            self.results_queue(self.import_queue): (f"{IMPORT_RESULT_PREFIX}.*",),
        }

    def declarations(self) -> Declarations:
        """The exchanges, queues (with their arguments) and bindings, as data: the definition
        ``declare_topology`` carries out, and what ``bridge topology`` and ``bridge check`` show."""
        events_holds = {
            self.inbound_queue: "inbound SMS and MMS events",
            self.status_queue: "status and delivery-receipt events of sent messages",
            self.results_queue(self.send_queue): "one result event per send command",
            self.results_queue(self.import_queue): "one result event per import command",
        }
        command_holds = {self.send_queue: "send commands", self.import_queue: "import commands"}
        queues: list[QueueDeclaration] = []
        bindings: list[BindingDeclaration] = []
        obsolete: list[BindingDeclaration] = []
        for queue_name, keys in self.event_queue_bindings().items():
            queues.append(
                QueueDeclaration(queue_name, self.plain_queue_arguments(), events_holds[queue_name])
            )
            bindings.extend(
                BindingDeclaration(self.events_exchange, key, queue_name) for key in keys
            )
        for command_queue in self.command_queues:
            what = command_holds[command_queue]
            queues.append(
                QueueDeclaration(
                    command_queue,
                    self.command_queue_arguments(command_queue),
                    f"{what} from applications",
                )
            )
            backstop = self.backstop_queue(command_queue)
            queues.append(
                QueueDeclaration(
                    backstop,
                    self.plain_queue_arguments(),
                    f"{what} RabbitMQ dead-lettered itself (raw, for the worker to finish)",
                )
            )
            bindings.append(BindingDeclaration(self.dead_letter_exchange, command_queue, backstop))
            dead = self.dead_letter_queue(command_queue)
            queues.append(
                QueueDeclaration(
                    dead, self.plain_queue_arguments(), f"{what} that cannot succeed (dead letters)"
                )
            )
            bindings.append(
                BindingDeclaration(
                    self.dead_letter_exchange, self.dead_letter_routing_key(command_queue), dead
                )
            )
            obsolete.append(BindingDeclaration(self.dead_letter_exchange, command_queue, dead))
            queues.extend(
                QueueDeclaration(
                    self.retry_queue(command_queue, delay_s),
                    self.retry_queue_arguments(command_queue, delay_s),
                    f"{what} waiting {_delay_label(delay_s)} for their next attempt",
                )
                for delay_s in self.retry_delays_s
            )
        exchanges = [
            ExchangeDeclaration(self.events_exchange, ExchangeType.TOPIC, "every event, by type"),
            ExchangeDeclaration(
                self.dead_letter_exchange,
                ExchangeType.DIRECT,
                "dead letters: the worker's, and what RabbitMQ dead-letters itself",
            ),
        ]
        shard_exchanges, shard_queues, shard_bindings = self._shard_declarations()
        exchanges.extend(shard_exchanges)
        queues.extend(shard_queues)
        bindings.extend(shard_bindings)
        return Declarations(tuple(exchanges), tuple(queues), tuple(bindings), tuple(obsolete))


def route_declarations(topology: Topology, exchange: str, routing_key: str) -> Declarations:
    """What must exist for a publish to ``exchange`` under ``routing_key`` to reach its queues:
    the exchange, every queue of the topology bound for that key (on the default exchange: the
    queue of that name), and those bindings. Empty for a route the topology does not hold."""
    plan = topology.declarations()
    queues = {q.name: q for q in plan.queues}
    if exchange == "":
        queue = queues.get(routing_key)
        return Declarations((), (queue,) if queue is not None else (), ())
    exchanges = [e for e in plan.exchanges if e.name == exchange]
    if not exchanges:
        return Declarations((), (), ())
    topic = exchanges[0].type is ExchangeType.TOPIC
    bindings = tuple(
        b
        for b in plan.bindings
        if b.exchange == exchange
        and (_topic_matches(b.routing_key, routing_key) if topic else b.routing_key == routing_key)
    )
    bound = tuple(queues[name] for name in dict.fromkeys(b.queue for b in bindings))
    return Declarations(tuple(exchanges), bound, bindings)


def _topic_matches(pattern: str, key: str) -> bool:
    """A topic exchange's match: ``*`` is one word, ``#`` zero or more."""
    words, parts = pattern.split("."), key.split(".")

    def match(i: int, j: int) -> bool:
        if i == len(words):
            return j == len(parts)
        if words[i] == "#":
            return any(match(i + 1, k) for k in range(j, len(parts) + 1))
        return j < len(parts) and words[i] in ("*", parts[j]) and match(i + 1, j + 1)

    return match(0, 0)


async def declare_topology(
    channel: aiormq.abc.AbstractChannel | AioPikaChannel, topology: Topology
) -> None:
    """Declare every exchange, queue and binding; idempotent, safe to run at every start.

    Declared through aiormq (an aio-pika channel is used through its underlying channel, so
    nothing is remembered for aio-pika's own recovery). Raises ``ChannelFailed`` when the channel
    fails or the broker refuses a declaration (a queue declared elsewhere with other arguments).
    """
    with translated("declaring the topology"):
        if isinstance(channel, AioPikaChannel):
            channel = await channel.get_underlay_channel()
        await _declare(channel, topology)


async def _declare(channel: aiormq.abc.AbstractChannel, topology: Topology) -> None:
    await declare_plan(channel, topology.declarations())


async def declare_plan(channel: aiormq.abc.AbstractChannel, plan: Declarations) -> None:
    """Declare what ``plan`` holds on an aiormq channel (aiormq errors are the caller's)."""
    for exchange in plan.exchanges:
        await channel.exchange_declare(
            exchange.name, exchange_type=exchange.type.value, durable=True
        )
    for queue in plan.queues:
        await channel.queue_declare(queue.name, durable=True, arguments=dict(queue.arguments))
    for binding in plan.bindings:
        await channel.queue_bind(binding.queue, binding.exchange, routing_key=binding.routing_key)
    for binding in plan.obsolete_bindings:
        await channel.queue_unbind(binding.queue, binding.exchange, routing_key=binding.routing_key)


__all__ = [
    "IMPORT_RESULT_PREFIX",
    "INBOUND_MMS",
    "INBOUND_SMS",
    "OUTBOUND_RECEIPT_PREFIX",
    "OUTBOUND_STATUS_PREFIX",
    "SEND_RESULT_PREFIX",
    "BindingDeclaration",
    "Declarations",
    "ExchangeDeclaration",
    "QueueDeclaration",
    "Topology",
    "declare_plan",
    "declare_topology",
    "route_declarations",
]

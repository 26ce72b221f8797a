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
      outbound.sms         -> outbound.sms.dead
      outbound.import      -> outbound.import.dead
    outbound.sms.retry.5s  (TTL 5 s, dead-letters back to outbound.sms), one per delay tier
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from aio_pika.abc import AbstractChannel, ExchangeType

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
        )

    @property
    def command_queues(self) -> tuple[str, str]:
        return (self.send_queue, self.import_queue)

    def results_queue(self, command_queue: str) -> str:
        return command_queue + self.results_suffix

    def dead_letter_queue(self, command_queue: str) -> str:
        return command_queue + self.dead_letter_suffix

    def retry_queue(self, command_queue: str, delay_s: float) -> str:
        return f"{command_queue}.retry.{_delay_label(delay_s)}"

    def retry_tier(self, wanted_delay_s: float) -> float:
        """The smallest declared delay tier at least ``wanted_delay_s`` (or the largest tier)."""
        for tier in self.retry_delays_s:
            if tier >= wanted_delay_s:
                return tier
        return self.retry_delays_s[-1]

    def result_prefix(self, command_queue: str) -> str:
        return SEND_RESULT_PREFIX if command_queue == self.send_queue else IMPORT_RESULT_PREFIX

    def plain_queue_arguments(self) -> dict[str, Any]:
        return {"x-queue-type": self.queue_type}

    def command_queue_arguments(self, command_queue: str) -> dict[str, Any]:
        args = self.plain_queue_arguments()
        # A message that keeps crashing consumers is dead-lettered by the broker itself.
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


async def declare_topology(channel: AbstractChannel, topology: Topology) -> None:
    """Declare every exchange, queue and binding; idempotent, safe to run at every start.

    Raises ``ChannelFailed`` when the channel fails or the broker refuses a declaration (a queue
    declared elsewhere with other arguments).
    """
    with translated("declaring the topology"):
        await _declare(channel, topology)


async def _declare(channel: AbstractChannel, topology: Topology) -> None:
    events = await channel.declare_exchange(
        topology.events_exchange, ExchangeType.TOPIC, durable=True
    )
    dead_letter = await channel.declare_exchange(
        topology.dead_letter_exchange, ExchangeType.DIRECT, durable=True
    )
    for queue_name, keys in topology.event_queue_bindings().items():
        queue = await channel.declare_queue(
            queue_name, durable=True, arguments=topology.plain_queue_arguments()
        )
        for key in keys:
            await queue.bind(events, routing_key=key)
    for command_queue in topology.command_queues:
        await channel.declare_queue(
            command_queue,
            durable=True,
            arguments=topology.command_queue_arguments(command_queue),
        )
        dead = await channel.declare_queue(
            topology.dead_letter_queue(command_queue),
            durable=True,
            arguments=topology.plain_queue_arguments(),
        )
        await dead.bind(dead_letter, routing_key=command_queue)
        for delay_s in topology.retry_delays_s:
            await channel.declare_queue(
                topology.retry_queue(command_queue, delay_s),
                durable=True,
                arguments=topology.retry_queue_arguments(command_queue, delay_s),
            )


__all__ = [
    "IMPORT_RESULT_PREFIX",
    "INBOUND_MMS",
    "INBOUND_SMS",
    "OUTBOUND_RECEIPT_PREFIX",
    "OUTBOUND_STATUS_PREFIX",
    "SEND_RESULT_PREFIX",
    "Topology",
    "declare_topology",
]

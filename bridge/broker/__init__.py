"""RabbitMQ plumbing shared by the receiver and the worker: topology and confirmed publishing."""

from bridge.broker.publisher import (
    CLOUDEVENTS_JSON,
    Envelope,
    Publisher,
    PublishFailed,
    connect,
    open_confirm_channel,
)
from bridge.broker.topology import DeclaredExchanges, Topology, declare_topology

__all__ = [
    "CLOUDEVENTS_JSON",
    "DeclaredExchanges",
    "Envelope",
    "PublishFailed",
    "Publisher",
    "Topology",
    "connect",
    "declare_topology",
    "open_confirm_channel",
]

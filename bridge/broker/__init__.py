"""RabbitMQ plumbing shared by the receiver and the worker: the one AMQP boundary.

``link`` (``BrokerLink``: a role's connection, its readiness, its publishing and consuming),
``topology`` (everything the bridge declares), ``publisher`` (confirmed publishing), ``intake``
(consuming a queue and settling its deliveries) and ``errors`` (the one error tree; aio-pika and
aiormq exceptions are translated here and nowhere else). The messages themselves are pure data
in ``bridge.events.envelope``, which imports nothing of this package.
"""

from bridge.broker.errors import BrokerError, ChannelFailed, ConnectFailed, PublishFailed
from bridge.broker.intake import Inbound, Intake, OnMessage
from bridge.broker.link import BrokerLink, LinkState, Session
from bridge.broker.publisher import Publisher, open_confirm_channel
from bridge.broker.topology import Topology, declare_topology
from bridge.events.envelope import CLOUDEVENTS_JSON, Envelope

__all__ = [
    "CLOUDEVENTS_JSON",
    "BrokerError",
    "BrokerLink",
    "ChannelFailed",
    "ConnectFailed",
    "Envelope",
    "Inbound",
    "Intake",
    "LinkState",
    "OnMessage",
    "PublishFailed",
    "Publisher",
    "Session",
    "Topology",
    "declare_topology",
    "open_confirm_channel",
]

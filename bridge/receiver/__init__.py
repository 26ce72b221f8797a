"""The receiver: Catapult v1 message callbacks in, canonical events on RabbitMQ out, none lost.

Public surface: ``create_receiver_app`` (the aiohttp app) and ``ReceiverServer`` (serving it
with an ordered shutdown).
"""

from bridge.receiver.app import create_receiver_app
from bridge.receiver.server import ReceiverServer

__all__ = ["ReceiverServer", "create_receiver_app"]

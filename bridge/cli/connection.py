"""The command line's connection to RabbitMQ: one session, no reconnect, closed at the end.

A command does one thing and exits, so a broker that is away is a one-line failure
(``ConnectFailed``, naming the masked URL and why), not a wait. Publishing is confirmed
(``Publisher``): a command is said to be sent only once RabbitMQ has it.
"""

from __future__ import annotations

import contextlib
from collections.abc import AsyncIterator

from bridge.broker.link import Session, broker_address, open_session, quiet_client_logs
from bridge.broker.publisher import Publisher
from bridge.settings import Settings


@contextlib.asynccontextmanager
async def connected(settings: Settings, *, command: str) -> AsyncIterator[Session]:
    quiet_client_logs()
    session = await open_session(
        broker_address(settings),
        name=f"bridge {command}",
        timeout_s=settings.broker.connect_timeout_s,
    )
    try:
        yield session
    finally:
        await session.close()


async def confirmed_publisher(session: Session, settings: Settings) -> Publisher:
    channel = await session.open_channel("publishing", confirms=True)
    return Publisher(channel, confirm_timeout_s=settings.broker.confirm_timeout_s)


__all__ = ["confirmed_publisher", "connected"]

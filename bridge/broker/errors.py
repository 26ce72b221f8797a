"""The one error tree of the AMQP boundary, and the one place foreign exceptions become it.

    BrokerError                   ``reason``: a stable word (logs, metric labels); ``detail``: what
    │                             happened, never a password (broker URLs are shown masked)
    ├── ConnectFailed             no connection could be opened: refused, timed out, or the
    │                             handshake turned down (credentials, vhost)  reason "unreachable"
    ├── PublishFailed             one message was not confirmed by the broker:
    │                               "unroutable"    returned: no queue bound for its routing key
    │                               "nacked"        refused (a queue over its length limit, a
    │                                               quorum queue without a leader)
    │                               "timeout"       no confirm within broker.confirm_timeout_s
    │                               "disconnected"  the channel or the connection closed, or was
    │                                               not up when the publish began
    └── ChannelFailed             any other operation failed (declare, consume, ack, nack, cancel,
                                  close): "disconnected" when the channel or the connection is
                                  gone, "refused" when the broker closed the channel over it
                                  (a declaration that differs, a queue that does not exist)

aio-pika, aiormq and pamqp exceptions are caught only inside ``bridge.broker`` and re-raised as
one of these, always ``from`` the original (``ConnectFailed`` from nothing: the original may
carry the URL with its password). Callers decide on these types and on ``reason``: the receiver
spools what was not published, the worker gives back what it could not settle.
"""

from __future__ import annotations

import asyncio
import contextlib
import os
from collections.abc import Iterator

import aiormq
import pamqp.exceptions
from aiormq.exceptions import ProbableAuthenticationError

# Everything aio-pika, aiormq and the socket underneath raise when the broker, the connection or
# a channel fails. OSError covers ConnectionError and TimeoutError; RuntimeError is what aio-pika
# and aiormq raise on a closed channel or connection (``ChannelInvalidStateError`` among them).
AMQP_FAILURES: tuple[type[BaseException], ...] = (
    aiormq.exceptions.AMQPError,
    pamqp.exceptions.PAMQPException,
    OSError,
    RuntimeError,
)


class BrokerError(Exception):
    """Something asked of RabbitMQ was not done; ``reason`` is one of a few stable words."""

    kind = "broker operation failed"

    def __init__(self, reason: str, detail: str = "") -> None:
        self.reason = reason
        self.detail = detail
        super().__init__(f"{self.kind} ({reason}){': ' + detail if detail else ''}")


class ConnectFailed(BrokerError):
    """No connection to the broker could be opened."""

    kind = "cannot connect"


class PublishFailed(BrokerError):
    """The broker did not confirm a message."""

    kind = "publish failed"


class ChannelFailed(BrokerError):
    """A declaration, consumer, ack, nack or cancel failed on its channel."""

    kind = "channel failed"


# The broker closed the channel over what was asked (its reply text says why).
_REFUSALS = (
    aiormq.exceptions.ChannelAccessRefused,
    aiormq.exceptions.ChannelNotFoundEntity,
    aiormq.exceptions.ChannelLockedResource,
    aiormq.exceptions.ChannelPreconditionFailed,
)


def describe(exc: BaseException) -> str:
    """A short text for a foreign exception: its type, and the broker's reply when it sent one."""
    if (
        isinstance(exc, aiormq.exceptions.ChannelClosed)
        and exc.args
        and isinstance(exc.args[-1], str)
    ):
        return f"{type(exc).__name__}: {exc.args[-1]}"
    return type(exc).__name__


def describe_connect_failure(exc: BaseException, *, timeout_s: float) -> str:
    """Why a connection could not be opened, in words a person can act on."""
    if isinstance(exc, aiormq.exceptions.AuthenticationError | ProbableAuthenticationError):
        return "the broker refused the login (wrong user name or password?)"
    if isinstance(exc, TimeoutError):
        return f"no answer within {timeout_s:g} s"
    if isinstance(exc, aiormq.exceptions.ProtocolSyntaxError):
        # RabbitMQ closes the connection at Connection.Open for a vhost it does not have (or
        # that the user may not use).
        return (
            "the broker closed the connection at open (does the vhost exist, may the user use it?)"
        )
    cause = exc.args[0] if exc.args else None
    if isinstance(exc, ConnectionError) and isinstance(cause, int):
        return os.strerror(cause).lower()
    return describe(exc)


def publish_failed(exc: BaseException, *, routing_key: str, timeout_s: float) -> PublishFailed:
    """The ``PublishFailed`` a foreign exception raised by a confirmed publish stands for."""
    if isinstance(exc, TimeoutError):
        return PublishFailed("timeout", f"no confirm in {timeout_s:g} s")
    if isinstance(exc, aiormq.exceptions.PublishError):
        # Basic.Return on a channel where returned messages raise.
        return PublishFailed("unroutable", f"no queue is bound for {routing_key!r}")
    if isinstance(exc, aiormq.exceptions.DeliveryError):
        return PublishFailed("nacked", "the broker refused the message")
    return PublishFailed("disconnected", describe(exc))


def channel_failed(exc: BaseException, doing: str) -> ChannelFailed:
    """The ``ChannelFailed`` a foreign exception raised while ``doing`` something stands for."""
    reason = "refused" if isinstance(exc, _REFUSALS) else "disconnected"
    return ChannelFailed(reason, f"{doing}: {describe(exc)}")


@contextlib.contextmanager
def translated(doing: str) -> Iterator[None]:
    """Run a channel operation; its foreign failure becomes ``ChannelFailed`` naming ``doing``.

    aiormq ends the calls in flight on a channel or connection it closes by throwing into them
    what it closes with: ``CancelledError`` (one of its calls was cancelled), or the bare
    ``Exception`` class when it closes with no cause (``aiormq.base``). Both are a channel gone,
    not a cancellation of the task that waits, nor a bug; a cancellation of its own propagates.
    """
    try:
        yield
    except AMQP_FAILURES as exc:
        raise channel_failed(exc, doing) from exc
    except asyncio.CancelledError as exc:
        task = asyncio.current_task()
        if task is None or task.cancelling():
            raise
        raise ChannelFailed("disconnected", f"{doing}: the channel was closed under it") from exc
    except Exception as exc:
        if type(exc) is not Exception:
            raise
        raise ChannelFailed("disconnected", f"{doing}: the channel was closed under it") from exc


__all__ = [
    "AMQP_FAILURES",
    "BrokerError",
    "ChannelFailed",
    "ConnectFailed",
    "PublishFailed",
    "channel_failed",
    "describe",
    "describe_connect_failure",
    "publish_failed",
    "translated",
]

"""The one place that configures logging handlers: plain text for people, JSON lines for machines.

Modules log through ``logging.getLogger(__name__)`` with ``%``-style arguments and pass ids in
``extra`` (``message_id``, ``command_id``, ``event_id``...); the JSON formatter emits those as
fields, the plain one appends them as ``key=value`` (quoted when they hold spaces). Extras that are
None are left out of both. Secrets never reach a log call in the first place; this module does not
try to scrub them, with one exception: the AMQP client logs some messages it was handed whole, and
``MessageBodyFilter`` takes their bodies out (``keep_message_bodies_out``, run by every broker
link and by ``configure_logging``).

Two loggers carry one line per message at INFO, so that a person sees the traffic flow:
``bridge.receiver.callbacks`` (each callback stored) and ``bridge.worker.results`` (each command
finished). ``log.per_message = false`` raises both to WARNING: the lines about dead letters (a
warning each) stay, the rest go, and the hot paths skip them after one ``isEnabledFor``.
"""

from __future__ import annotations

import logging
import re
import sys
from datetime import UTC, datetime
from typing import Any

import orjson
from aiormq.abc import DeliveredMessage

from bridge.settings import LogSettings

# One INFO line per callback stored / per command finished (``log.per_message``).
CALLBACKS_LOGGER = "bridge.receiver.callbacks"
RESULTS_LOGGER = "bridge.worker.results"
PER_MESSAGE_LOGGERS = (CALLBACKS_LOGGER, RESULTS_LOGGER)

# Attributes every LogRecord has; anything else on a record came from ``extra=``.
_STANDARD = set(vars(logging.makeLogRecord({}))) | {"message", "asctime", "taskName"}


def _extras(record: logging.LogRecord) -> dict[str, Any]:
    return {k: v for k, v in vars(record).items() if k not in _STANDARD and v is not None}


# A value that would not read as one ``key=value`` field: empty, or with a space, quote or ``=``.
_NEEDS_QUOTES = re.compile(r"^$|[\s\"'=]")


def _plain_value(value: Any) -> str:
    text = value if type(value) is str else str(value)
    if _NEEDS_QUOTES.search(text):
        return orjson.dumps(text).decode()  # quoted, with escapes: one field stays one field
    return text


class JsonFormatter(logging.Formatter):
    def format(self, record: logging.LogRecord) -> str:
        entry: dict[str, Any] = {
            "time": datetime.fromtimestamp(record.created, UTC).isoformat(),
            "level": record.levelname,
            "logger": record.name,
            "message": record.getMessage(),
        }
        entry.update(_extras(record))
        if record.exc_info:
            entry["exception"] = self.formatException(record.exc_info)
        return orjson.dumps(entry, default=str).decode()


class PlainFormatter(logging.Formatter):
    def __init__(self) -> None:
        super().__init__("%(asctime)s %(levelname)-7s %(name)s: %(message)s")

    def format(self, record: logging.LogRecord) -> str:
        text = super().format(record)
        extras = _extras(record)
        if extras:
            text += " " + " ".join(f"{k}={_plain_value(v)}" for k, v in extras.items())
        return text


class MessageBodyFilter(logging.Filter):
    """Keeps message bodies out of the AMQP client's own log lines.

    aiormq logs a returned message it cannot match to a publish (``Unhandled message %r
    returning``, e.g. a mandatory publish on a channel without confirms) with its whole repr, body
    included, and a command's body can hold a Dashboard password. Such an argument is replaced by
    what identifies the message without its content.
    """

    def filter(self, record: logging.LogRecord) -> bool:
        args = record.args
        if isinstance(args, tuple) and any(isinstance(a, DeliveredMessage) for a in args):
            record.args = tuple(
                _described(a) if isinstance(a, DeliveredMessage) else a for a in args
            )
        elif isinstance(args, DeliveredMessage):  # a lone argument, unwrapped by ``logging``
            record.args = (_described(args),)
        return True


def _described(message: DeliveredMessage) -> str:
    properties = message.header.properties
    return (
        f"<message {properties.message_id or '(no id)'} to "
        f"{message.exchange or '(default exchange)'}/{message.routing_key}, "
        f"{len(message.body)} bytes, body not logged>"
    )


# Every logger of the AMQP client that logs a message it was given (filters are not inherited).
_AMQP_LOGGERS = ("aiormq", "aiormq.channel", "aiormq.connection", "aio_pika")
_BODY_FILTER = MessageBodyFilter()


def keep_message_bodies_out() -> None:
    """Install ``MessageBodyFilter`` on the AMQP client's loggers; idempotent."""
    for name in _AMQP_LOGGERS:
        logger = logging.getLogger(name)
        if _BODY_FILTER not in logger.filters:
            logger.addFilter(_BODY_FILTER)


def apply_levels(settings: LogSettings) -> None:
    """Set the levels ``settings`` asks for (without touching handlers)."""
    root = logging.getLogger()
    root.setLevel(settings.level)
    # aiormq and aio_pika log every reconnect attempt at WARNING with tracebacks; ours say enough.
    for noisy in ("aiormq", "aio_pika"):
        logging.getLogger(noisy).setLevel(max(logging.WARNING, root.level))
    per_message = logging.NOTSET if settings.per_message else logging.WARNING
    for name in PER_MESSAGE_LOGGERS:
        logging.getLogger(name).setLevel(per_message)


def configure_logging(settings: LogSettings) -> None:
    handler = logging.StreamHandler(sys.stderr)
    handler.setFormatter(JsonFormatter() if settings.format == "json" else PlainFormatter())
    logging.getLogger().handlers[:] = [handler]
    keep_message_bodies_out()
    apply_levels(settings)

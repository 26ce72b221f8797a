"""The AsyncAPI 3.0 document of the bridge: its queues, exchanges, routing keys and messages.

Generated, never written by hand: the channels come from the ``Topology`` of the default settings
(the names each ``broker.*`` setting gives), the routing keys from the events and results the
parts publish, and each message's payload refers to the JSON Schema of ``schemas/`` that the
models generate (``bridge.schemas``). ``bridge schemas`` writes it to ``schemas/asyncapi.json``
with the schemas, and ``bridge schemas --check`` fails when it drifts. No I/O here.
"""

from __future__ import annotations

import json
from importlib.metadata import version
from typing import Any

from bridge.broker.topology import (
    IMPORT_RESULT_PREFIX,
    INBOUND_MMS,
    INBOUND_SMS,
    OUTBOUND_RECEIPT_PREFIX,
    OUTBOUND_STATUS_PREFIX,
    SEND_RESULT_PREFIX,
    Topology,
)
from bridge.events import headers as h
from bridge.events.cloudevents import EventType
from bridge.events.results import ImportResult, SendResult
from bridge.settings import Settings

FILE_NAME = "asyncapi.json"
_SCHEMA_FORMAT = "application/schema+json;version=draft-2020-12"
_EVENT_PREFIX = "io.catapult-bridge."
_CLOUDEVENTS_JSON = "application/cloudevents+json"


def _literal_values(model: type[Any], field: str) -> tuple[str, ...]:
    annotation = model.model_fields[field].annotation
    return tuple(annotation.__args__)


def _event_type(name: str) -> EventType:
    """``command.send.failed`` -> the ``EventType`` of that name (its version suffix included)."""
    matches = [t for t in EventType if str(t).removeprefix(_EVENT_PREFIX).rsplit(".", 1)[0] == name]
    if len(matches) != 1:
        raise ValueError(f"no single event type is named {name!r}")
    return matches[0]


def event_routes() -> list[tuple[str, EventType, str]]:
    """(routing key on the events exchange, event type, schema file stem) of every event."""
    routes: list[tuple[str, EventType, str]] = [
        (INBOUND_SMS, EventType.MESSAGE_RECEIVED, "event-message-received"),
        (INBOUND_MMS, EventType.MESSAGE_RECEIVED, "event-message-received"),
    ]
    for word, name in (("sending", "sending"), ("sent", "sent"), ("failed", "failed")):
        routes.append(
            (
                f"{OUTBOUND_STATUS_PREFIX}.{word}",
                _event_type(f"message.{name}"),
                f"event-message-{name}",
            )
        )
    for word in ("delivered", "not-delivered"):
        routes.append(
            (
                f"{OUTBOUND_RECEIPT_PREFIX}.{word}",
                _event_type(f"message.{word}"),
                f"event-message-{word}",
            )
        )
    for prefix, kind, model in (
        (SEND_RESULT_PREFIX, "send", SendResult),
        (IMPORT_RESULT_PREFIX, "import", ImportResult),
    ):
        for outcome in _literal_values(model, "outcome"):
            routes.append(
                (f"{prefix}.{outcome}", _event_type(f"command.{kind}.{outcome}"), f"result-{kind}")
            )
    return routes


def _key(name: str, kind: str = "") -> str:
    """A component key (AsyncAPI keys are ``^[a-zA-Z0-9.\\-_]+$``); ``kind`` keeps a queue and
    a routing key of the same name (``inbound.sms``) apart."""
    key = "".join(c if c.isalnum() or c in ".-_" else "_" for c in name)
    return f"{kind}.{key}" if kind else key


def _queue_binding(name: str, arguments: dict[str, Any]) -> dict[str, Any]:
    return {
        "amqp": {
            "is": "queue",
            "queue": {"name": name, "durable": True, "exclusive": False, "autoDelete": False},
            "x-arguments": arguments,
            "bindingVersion": "0.3.0",
        }
    }


def _exchange_binding(name: str, kind: str) -> dict[str, Any]:
    return {
        "amqp": {
            "is": "routingKey",
            "exchange": {"name": name, "type": kind, "durable": True, "autoDelete": False},
            "bindingVersion": "0.3.0",
        }
    }


def _payload(stem: str) -> dict[str, Any]:
    return {"schemaFormat": _SCHEMA_FORMAT, "schema": {"$ref": f"./{stem}.json"}}


_RESULT_ENVELOPE: dict[str, Any] = {
    "type": "object",
    "description": "A CloudEvents 1.0 event in structured mode; its data is the command's result.",
    "required": ["specversion", "id", "source", "type", "time", "datacontenttype", "data"],
    "properties": {
        "specversion": {"const": "1.0"},
        "id": {"type": "string", "description": "Derived from the command id: a copy has it too."},
        "source": {"type": "string"},
        "type": {"type": "string"},
        "subject": {"type": "string", "description": "The command id."},
        "time": {"type": "string", "format": "date-time"},
        "datacontenttype": {"const": "application/json"},
        "correlationid": {"type": "string", "description": "The command id."},
    },
}


def _event_message(event_type: EventType, stem: str) -> dict[str, Any]:
    payload = _payload(stem)
    if stem.startswith("result-"):
        payload = {
            "schemaFormat": _SCHEMA_FORMAT,
            "schema": {
                "allOf": [
                    _RESULT_ENVELOPE,
                    {"properties": {"data": {"$ref": f"./{stem}.json"}}},
                ]
            },
        }
    return {
        "name": str(event_type),
        "title": str(event_type).removeprefix(_EVENT_PREFIX),
        "contentType": _CLOUDEVENTS_JSON,
        "correlationId": {
            "description": "The command id (for a sent message's events and for results).",
            "location": "$message.header#/ce-correlationid",
        },
        "headers": {
            "type": "object",
            "properties": {
                "ce-type": {"const": str(event_type)},
                "ce-subject": {"type": "string", "description": "Message id, or the command id"},
                "ce-correlationid": {"type": "string", "description": "The command id"},
            },
            "required": ["ce-type"],
        },
        "payload": payload,
        "bindings": {
            "amqp": {
                "contentEncoding": "utf-8",
                "messageType": str(event_type),
                "bindingVersion": "0.3.0",
            }
        },
    }


_DEAD_LETTER_HEADERS: dict[str, Any] = {
    "type": "object",
    "description": "Why the command was dead-lettered; its body is the command as it came "
    "(an import's without Dashboard credentials).",
    "properties": {
        h.REASON: {"type": "string", "description": "The result's failure reason."},
        h.DETAIL: {"type": "string"},
        h.ATTEMPTS: {"type": "integer", "description": "Requests made to Catapult."},
        h.QUEUE: {"type": "string", "description": "The command queue it came from."},
        h.COMMAND_ID: {"type": "string"},
        h.ERROR_STATUS: {"type": "integer"},
        h.ERROR_CATEGORY: {"type": "string"},
        h.ERROR_CODE: {"type": "string", "description": "Catapult's error code."},
        h.ERROR_MESSAGE: {"type": "string"},
    },
    "required": [h.REASON, h.QUEUE, h.COMMAND_ID],
}


def build_document(settings: Settings | None = None) -> dict[str, Any]:
    """The document for ``settings`` (the defaults: the names the README documents)."""
    settings = settings or Settings()
    topology = Topology.from_settings(settings)
    channels: dict[str, Any] = {}
    messages: dict[str, Any] = {}
    operations: dict[str, Any] = {}
    routes = event_routes()

    for command_queue, kind in ((topology.send_queue, "send"), (topology.import_queue, "import")):
        message_key = f"{kind}Command"
        messages[message_key] = {
            "name": message_key,
            "title": f"{kind} command",
            "summary": f"A {kind} command; the AMQP message_id is the command id.",
            "contentType": "application/json",
            "correlationId": {"location": "$message.header#/message_id"},
            "payload": _payload(f"command-{kind}"),
        }
        messages[f"{kind}DeadLetter"] = {
            "name": f"{kind}DeadLetter",
            "title": f"dead {kind} command",
            "contentType": "application/json",
            "headers": _DEAD_LETTER_HEADERS,
            "payload": _payload(f"command-{kind}"),
        }
        channel = _key(command_queue, "queue")
        channels[channel] = {
            "address": command_queue,
            "title": f"{kind} commands",
            "description": f"Publish {kind} commands here through the default exchange (routing "
            "key = the queue's name); the worker consumes them.",
            "messages": {message_key: {"$ref": f"#/components/messages/{message_key}"}},
            "bindings": _queue_binding(
                command_queue, topology.command_queue_arguments(command_queue)
            ),
        }
        operations[f"consume_{kind}_commands"] = {
            "action": "receive",
            "channel": {"$ref": f"#/channels/{channel}"},
            "summary": f"The worker takes {kind} commands and calls Catapult.",
        }
        dead = topology.dead_letter_queue(command_queue)
        dead_key = topology.dead_letter_routing_key(command_queue)
        dead_channel = _key(dead, "queue")
        channels[dead_channel] = {
            "address": dead,
            "title": f"dead {kind} commands",
            "description": f"{kind.capitalize()} commands that cannot succeed, routed by "
            f"{topology.dead_letter_exchange} (routing key {dead_key}).",
            "messages": {f"{kind}DeadLetter": {"$ref": f"#/components/messages/{kind}DeadLetter"}},
            "bindings": _queue_binding(dead, topology.plain_queue_arguments()),
        }
        operations[f"dead_letter_{kind}_commands"] = {
            "action": "send",
            "channel": {"$ref": f"#/channels/{dead_channel}"},
            "summary": "A command that cannot succeed goes here with the reason in its headers.",
        }

    for routing_key, event_type, stem in routes:
        message_key = _key(str(event_type).removeprefix(_EVENT_PREFIX))
        messages[message_key] = _event_message(event_type, stem)
        channel = _key(routing_key, "key")
        channels[channel] = {
            "address": routing_key,
            "title": routing_key,
            "description": f"Routing key {routing_key} on the topic exchange "
            f"{topology.events_exchange}.",
            "messages": {message_key: {"$ref": f"#/components/messages/{message_key}"}},
            "bindings": _exchange_binding(topology.events_exchange, "topic"),
        }
        publisher = "worker" if stem.startswith("result-") else "receiver"
        operations[f"publish_{_key(routing_key)}"] = {
            "action": "send",
            "channel": {"$ref": f"#/channels/{channel}"},
            "summary": f"The {publisher} publishes {event_type} (persistent, confirmed).",
        }

    for queue, patterns in topology.event_queue_bindings().items():
        held = {
            _key(str(t).removeprefix(_EVENT_PREFIX))
            for key, t, _ in routes
            if any(_matches(pattern, key) for pattern in patterns)
        }
        channels[_key(queue, "queue")] = {
            "address": queue,
            "title": queue,
            "description": f"Bound to {topology.events_exchange} with "
            f"{', '.join(patterns)}: consume events here, or bind a queue of your own.",
            "messages": {m: {"$ref": f"#/components/messages/{m}"} for m in sorted(held)},
            "bindings": _queue_binding(queue, topology.plain_queue_arguments()),
        }

    return {
        "asyncapi": "3.0.0",
        "info": {
            "title": "catapult-bridge",
            "version": version("catapult-bridge"),
            "description": "Commands to Bandwidth's Catapult v1 messaging API and its callbacks "
            "as CloudEvents, over RabbitMQ. Names are those of the default settings (each is a "
            "broker.* setting). Retry queues (<command queue>.retry.<delay>) and backstop queues "
            "(<command queue>.backstop: what RabbitMQ dead-letters itself, under the command "
            "queue's name) are the worker's own and not listed.",
        },
        "defaultContentType": "application/json",
        "servers": {
            "rabbitmq": {
                "host": "127.0.0.1:5672",
                "protocol": "amqp",
                "protocolVersion": "0.9.1",
                "description": "The broker.url setting.",
            }
        },
        "channels": channels,
        "operations": operations,
        "components": {"messages": messages},
    }


def _matches(pattern: str, key: str) -> bool:
    """AMQP topic matching for the ``*`` patterns the bridge binds with (``#`` is not used)."""
    words, keys = pattern.split("."), key.split(".")
    return len(words) == len(keys) and all(w in ("*", k) for w, k in zip(words, keys, strict=True))


def render() -> str:
    return json.dumps(build_document(), indent=2, ensure_ascii=False) + "\n"

"""The AsyncAPI document in ``schemas/asyncapi.json`` is generated, complete and consistent.

It must match what ``bridge schemas`` writes (a drift fails ``bridge schemas --check``), name every
queue and exchange the topology declares with the arguments declared, carry every event type under
the routing key the parts publish it with, and refer only to things that exist.
"""

from __future__ import annotations

import json
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import jsonschema
import pytest

from bridge.asyncapi import build_document
from bridge.broker.topology import Topology
from bridge.cli import main
from bridge.events.callbacks import parse_callback
from bridge.events.cloudevents import EventType
from bridge.events.receiver_events import build_event
from bridge.schemas import check_schemas
from bridge.settings import Settings

SCHEMAS = Path(__file__).resolve().parent.parent / "schemas"
DOCUMENT = SCHEMAS / "asyncapi.json"
NOT_DELIVERED = "not-delivered"


@pytest.fixture(scope="module")
def document() -> dict[str, Any]:
    return dict(json.loads(DOCUMENT.read_text(encoding="utf-8")))


def _addresses(document: dict[str, Any], kind: str) -> dict[str, dict[str, Any]]:
    return {
        channel["address"]: channel
        for channel in document["channels"].values()
        if channel["bindings"]["amqp"]["is"] == kind
    }


def test_the_kept_document_is_the_generated_one() -> None:
    assert "asyncapi.json" not in check_schemas(SCHEMAS), "run `uv run --frozen bridge schemas`"


def test_check_fails_when_the_document_drifts(tmp_path: Path) -> None:
    assert main(["schemas", "--out", str(tmp_path)]) == 0
    stale = json.loads((tmp_path / "asyncapi.json").read_text())
    del stale["channels"]["queue.outbound.sms"]
    (tmp_path / "asyncapi.json").write_text(json.dumps(stale))
    assert main(["schemas", "--check", "--out", str(tmp_path)]) == 1


def test_every_declared_queue_is_a_channel_with_its_arguments(document: dict[str, Any]) -> None:
    topology = Topology.from_settings(Settings())
    queues = _addresses(document, "queue")
    expected: dict[str, dict[str, Any]] = {
        queue: topology.plain_queue_arguments() for queue in topology.event_queue_bindings()
    }
    for command_queue in topology.command_queues:
        expected[command_queue] = topology.command_queue_arguments(command_queue)
        expected[topology.dead_letter_queue(command_queue)] = topology.plain_queue_arguments()
    assert {q: c["bindings"]["amqp"]["x-arguments"] for q, c in queues.items()} == expected


def test_every_event_type_is_published_under_a_bound_routing_key(
    document: dict[str, Any],
) -> None:
    topology = Topology.from_settings(Settings())
    keys = _addresses(document, "routingKey")
    messages = document["components"]["messages"]
    typed = {
        messages[ref["$ref"].rsplit("/", 1)[1]]["name"]
        for channel in keys.values()
        for ref in channel["messages"].values()
    }
    assert typed == {str(t) for t in EventType}
    for channel in keys.values():
        assert channel["bindings"]["amqp"]["exchange"]["name"] == topology.events_exchange
    queue_of_key = {
        key: queue
        for queue, channel in _addresses(document, "queue").items()
        for key in channel["messages"]
    }
    for key, channel in keys.items():
        for message in channel["messages"]:
            assert message in queue_of_key, f"{key}: no queue of the bridge is bound to it"


@pytest.mark.parametrize(
    "callback",
    [
        {"direction": "in", "eventType": "sms", "state": "received"},
        {"direction": "in", "eventType": "mms", "state": "received", "media": ["https://x.y/a"]},
        {"direction": "out", "eventType": "sms", "state": "queued"},
        {"direction": "out", "eventType": "sms", "state": "sending"},
        {"direction": "out", "eventType": "sms", "state": "sent"},
        {"direction": "out", "eventType": "sms", "state": "error"},
        {"direction": "out", "eventType": "sms", "state": "sent", "deliveryState": "delivered"},
        {"direction": "out", "eventType": "sms", "state": "error", "deliveryState": NOT_DELIVERED},
    ],
)
def test_the_receivers_events_are_in_the_document(
    document: dict[str, Any], callback: dict[str, Any]
) -> None:
    fields = {
        "messageId": "m-asyncapi2345abcdefghijkl",
        "from": "+13233326955",
        "to": "+13865245000",
        "text": "x",
        "time": "2012-11-14T16:13:06.076Z",
        **callback,
    }
    event = build_event(
        parse_callback(fields), fields, source="test", received_at=datetime.now(UTC)
    )
    channel = _addresses(document, "routingKey")[event.routing_key]
    messages = document["components"]["messages"]
    names = {messages[r["$ref"].rsplit("/", 1)[1]]["name"] for r in channel["messages"].values()}
    assert names == {str(event.event.type)}
    # The payload's schema (a file of schemas/) accepts the event the receiver builds.
    [ref] = channel["messages"].values()
    payload = messages[ref["$ref"].rsplit("/", 1)[1]]["payload"]["schema"]["$ref"]
    schema = json.loads((SCHEMAS / payload.removeprefix("./")).read_text())
    jsonschema.validate(json.loads(event.event.to_json()), schema)


def test_every_reference_resolves(document: dict[str, Any]) -> None:
    def walk(node: Any) -> list[str]:
        if isinstance(node, dict):
            found = [node["$ref"]] if isinstance(node.get("$ref"), str) else []
            return found + [r for value in node.values() for r in walk(value)]
        if isinstance(node, list):
            return [r for value in node for r in walk(value)]
        return []

    for ref in walk(document):
        if ref.startswith("#/"):
            target: Any = document
            for part in ref[2:].split("/"):
                target = target[part]
        else:
            schema = json.loads((SCHEMAS / ref.removeprefix("./")).read_text())
            jsonschema.Draft202012Validator.check_schema(schema)


def test_the_document_follows_the_settings() -> None:
    renamed = Settings(broker={"send_queue": "app.sms"})  # type: ignore[arg-type]
    addresses = {c["address"] for c in build_document(renamed)["channels"].values()}
    assert {"app.sms", "app.sms.dead", "app.sms.results"} <= addresses

"""Reading deliveries and planning what the broker is told: tables on real aio-pika objects."""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any

import orjson
import pytest
from aio_pika.abc import AbstractRobustConnection
from aiormq.abc import DeliveredMessage
from pamqp import commands as spec
from pamqp.header import ContentHeader

from bridge.broker import Inbound, Topology
from bridge.events import headers as h
from bridge.events.commands import CommandKind, IdSource
from bridge.events.results import FailureReason, ResultError
from bridge.settings import load_settings
from bridge.worker.decisions import AlreadyImported, Ambiguous, Done, Fail, Retry
from bridge.worker.deliveries import Delivery, Rejected, expires_at, read_delivery
from bridge.worker.scheduler import Park
from bridge.worker.settlement import Finish, Planner, Republish

TOPOLOGY = Topology.from_settings(load_settings(worker={"retry_delays_s": [1, 5, 30]}))
SEND_QUEUE, IMPORT_QUEUE = TOPOLOGY.send_queue, TOPOLOGY.import_queue
NOW = datetime(2026, 1, 2, 3, 4, 5, tzinfo=UTC)
SEND = {"from": "+19195550001", "to": "+19195559999", "text": "hi", "tag": "mine"}
IMPORT = {"number": "+19195550100", "applicationId": "a-1", "name": "n", "password": "pw-secret"}


def _message(
    body: dict[str, Any] | bytes,
    *,
    message_id: str | None = "m-1",
    headers: dict[str, Any] | None = None,
    redelivered: bool = False,
    reply_to: str | None = None,
) -> Inbound:
    properties = spec.Basic.Properties(
        message_id=message_id,
        headers=headers or {},
        reply_to=reply_to,
        correlation_id="corr-1",
        content_type="application/json",
    )
    data = body if isinstance(body, bytes) else orjson.dumps(body)
    delivered = DeliveredMessage(
        delivery=spec.Basic.Deliver(
            consumer_tag="c", delivery_tag=1, redelivered=redelivered, exchange="", routing_key="q"
        ),
        header=ContentHeader(body_size=len(data), properties=properties),
        body=data,
        channel=None,  # type: ignore[arg-type]  # never acked here
    )
    return Inbound(delivered)


def _send(**kwargs: Any) -> Delivery:
    delivery = read_delivery(_message(SEND, **kwargs), queue=SEND_QUEUE, kind=CommandKind.SEND)
    assert isinstance(delivery, Delivery)
    return delivery


@pytest.mark.parametrize(
    ("headers", "redelivered", "lookup"),
    [
        ({}, False, False),
        ({}, True, True),
        ({"x-delivery-count": 2}, False, True),
        ({h.LOOKUP: 1}, False, True),
        ({"x-delivery-count": "junk"}, False, False),
    ],
)
def test_which_sends_are_looked_up_first(
    headers: dict[str, Any], redelivered: bool, lookup: bool
) -> None:
    assert _send(headers=headers, redelivered=redelivered).needs_lookup is lookup


def test_imports_are_never_looked_up() -> None:
    message = _message(IMPORT, redelivered=True)
    delivery = read_delivery(message, queue=IMPORT_QUEUE, kind=CommandKind.IMPORT)
    assert isinstance(delivery, Delivery)
    assert delivery.needs_lookup is False


def test_headers_from_earlier_rounds_are_read_back() -> None:
    headers = {
        h.ATTEMPTS: 2,
        h.SENT_AT_MS: 1_700_000_000_123,
        h.DUE_AT_MS: 1_700_000_005_000,
        h.ID_SOURCE: "derived",
        h.ERROR_MESSAGE: b"gateway down",
        h.ERROR_STATUS: 503,
        h.ERROR_CODE: "message-gateway-unavailable",
    }
    delivery = _send(headers=headers)
    assert delivery.attempts == 2
    assert delivery.sent_at_epoch_s == pytest.approx(1_700_000_000.123)
    assert delivery.due_at_epoch_s == pytest.approx(1_700_000_005.0)
    assert delivery.parsed.id_source is IdSource.DERIVED  # kept across republished copies
    assert delivery.last_error == ResultError(
        code="message-gateway-unavailable", message="gateway down", status=503
    )


def test_poison_gets_an_id_without_the_credentials_in_it() -> None:
    body = orjson.dumps({"number": "bad", "password": "pw-secret"})
    one = read_delivery(
        _message(body, message_id=None), queue=IMPORT_QUEUE, kind=CommandKind.IMPORT
    )
    other = orjson.dumps({"number": "bad", "password": "another"})
    two = read_delivery(
        _message(other, message_id=None), queue=IMPORT_QUEUE, kind=CommandKind.IMPORT
    )
    assert isinstance(one, Rejected)
    assert isinstance(two, Rejected)
    assert one.command_id == two.command_id
    assert one.id_source is IdSource.DERIVED


PLANNER = Planner(TOPOLOGY)


@pytest.mark.parametrize(
    ("outcome", "key", "event_type"),
    [
        (Done("m-9", "http://x/messages/m-9"), "result.send.succeeded", "send.succeeded"),
        (Fail(FailureReason.REJECTED, ResultError(message="no")), "result.send.failed",
         "send.failed"),
    ],
)  # fmt: skip
def test_finishing_a_send(outcome: Done | Fail, key: str, event_type: str) -> None:
    finish = PLANNER.for_outcome(_send(reply_to="replies"), outcome, now=NOW)
    assert isinstance(finish, Finish)
    assert finish.result.routing_key == key
    assert event_type in finish.result.type
    assert finish.reply_to == "replies"
    assert finish.result.correlation_id == "corr-1"
    event = orjson.loads(finish.result.body)
    assert event["subject"] == "m-1"
    assert event["data"]["tag"] == "mine"
    assert (finish.dead_letter is None) is isinstance(outcome, Done)


def test_the_result_id_is_the_same_for_every_copy() -> None:
    first = PLANNER.for_outcome(_send(), Done("m-9", "l"), now=NOW)
    later = PLANNER.for_outcome(_send(), Done("m-9", "", recovered=True), now=datetime.now(UTC))
    assert isinstance(first, Finish)
    assert isinstance(later, Finish)
    assert first.result.message_id == later.result.message_id


def test_an_import_dead_letter_keeps_no_credentials() -> None:
    delivery = read_delivery(
        _message(IMPORT, headers={"app": "kept", "x-death": [{}]}),
        queue=IMPORT_QUEUE,
        kind=CommandKind.IMPORT,
    )
    assert isinstance(delivery, Delivery)
    delivery.attempts = 1
    error = ResultError(category="authorization", code="provider-access-denied", message="no")
    finish = PLANNER.for_outcome(delivery, Fail(FailureReason.REJECTED, error), now=NOW)
    assert isinstance(finish, Finish)
    dead = finish.dead_letter
    assert dead is not None
    assert dead.routing_key == IMPORT_QUEUE + ".dead"  # its dead queue, not the backstop
    assert b"pw-secret" not in dead.body
    assert dead.headers["app"] == "kept"
    assert "x-death" not in dead.headers
    assert dead.headers[h.REASON] == "rejected"
    assert dead.headers[h.ERROR_CODE] == "provider-access-denied"
    assert dead.headers[h.ATTEMPTS] == 1
    assert b"pw-secret" not in finish.result.body


def test_already_imported_is_its_own_result() -> None:
    delivery = read_delivery(_message(IMPORT), queue=IMPORT_QUEUE, kind=CommandKind.IMPORT)
    assert isinstance(delivery, Delivery)
    error = ResultError(code="duplicate-number", message="dup", status=409)
    finish = PLANNER.for_outcome(delivery, AlreadyImported(error), now=NOW)
    assert isinstance(finish, Finish)
    assert finish.result.routing_key == "result.import.already-imported"
    assert finish.dead_letter is None


@pytest.mark.parametrize(
    ("outcome", "queue_suffix", "lookup"),
    [
        (Retry(0.7, ResultError(message="500")), ".retry.1s", False),
        (Retry(3, ResultError(message="500")), ".retry.5s", False),
        (Ambiguous(3, ResultError(message="503")), ".retry.5s", True),
        (Ambiguous(999, ResultError(message="503")), ".retry.30s", True),
    ],
)
def test_retries_go_to_the_delay_tier_with_their_attempts(
    outcome: Retry | Ambiguous, queue_suffix: str, lookup: bool
) -> None:
    delivery = _send(headers={"x-delivery-count": 1, "app": "kept"})
    delivery.needs_lookup = False  # looked up: not found, sent again
    delivery.attempts = 2
    delivery.sent_at_epoch_s = 1_700_000_000.5
    plan = PLANNER.for_outcome(delivery, outcome, now=NOW)
    assert isinstance(plan, Republish)
    assert plan.queue == SEND_QUEUE + queue_suffix
    headers = plan.envelope.headers
    assert headers[h.ATTEMPTS] == 2
    assert headers[h.SENT_AT_MS] == 1_700_000_000_500
    assert (h.LOOKUP in headers) is lookup
    assert "x-delivery-count" not in headers
    assert headers["app"] == "kept"
    assert plan.envelope.message_id == "m-1"
    assert plan.envelope.body == orjson.dumps(SEND)


@pytest.mark.parametrize(
    "outcome", [Retry(1, ResultError(message="500")), Ambiguous(1, ResultError(message="503"))]
)
def test_a_copy_of_a_send_still_to_look_up_keeps_the_mark(outcome: Retry | Ambiguous) -> None:
    plan = PLANNER.for_outcome(_send(redelivered=True), outcome, now=NOW)
    assert isinstance(plan, Republish)
    assert plan.envelope.headers[h.LOOKUP] == 1
    parked = PLANNER.for_park(_send(redelivered=True), Park(delay_s=1, due_in_s=1), now=NOW)
    assert parked.envelope.headers[h.LOOKUP] == 1


@pytest.mark.parametrize("value", ["nan", "inf", "-inf", float("nan"), float("inf"), "1e999"])
def test_header_numbers_that_are_not_finite_read_as_absent(value: Any) -> None:
    headers = {
        h.ATTEMPTS: value,
        h.SENT_AT_MS: value,
        h.DUE_AT_MS: value,
        h.EXPIRES_AT_MS: value,
        h.ERROR_MESSAGE: "down",
        h.ERROR_STATUS: value,
        "x-delivery-count": value,
    }
    delivery = _send(headers=headers)
    assert (delivery.attempts, delivery.sent_at_epoch_s, delivery.due_at_epoch_s) == (0, None, None)
    assert delivery.needs_lookup is False
    assert delivery.last_error == ResultError(message="down")
    assert expires_at(delivery.message, now_epoch_s=1.0, max_age_s=None) is None


def test_a_parked_send_carries_its_slot() -> None:
    plan = PLANNER.for_park(_send(), Park(delay_s=5, due_in_s=12.5), now=NOW)
    assert plan.queue == SEND_QUEUE + ".retry.5s"
    due = plan.envelope.headers[h.DUE_AT_MS]
    assert isinstance(due, int)  # a float header would be rounded to 128 s
    assert due == round((NOW.timestamp() + 12.5) * 1000)
    assert h.ATTEMPTS in plan.envelope.headers


async def test_a_delivery_whose_channel_closed_is_stale(
    amqp: AbstractRobustConnection,
) -> None:
    """A delivery whose channel closed can no longer be settled: it is stale."""
    channel = await amqp.channel()
    underlay = await channel.get_underlay_channel()
    delivered = DeliveredMessage(
        delivery=spec.Basic.Deliver(consumer_tag="c", delivery_tag=1, routing_key="q"),
        header=ContentHeader(properties=spec.Basic.Properties(message_id="m-1")),
        body=orjson.dumps(SEND),
        channel=underlay,
    )
    delivery = read_delivery(Inbound(delivered), queue=SEND_QUEUE, kind=CommandKind.SEND)
    assert isinstance(delivery, Delivery)
    assert not delivery.is_stale
    await channel.close()
    assert delivery.is_stale

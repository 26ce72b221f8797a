"""The worker end to end: real RabbitMQ, the simulator over real sockets. Success and each error."""

from __future__ import annotations

from typing import Any

import orjson

from bridge.events.cloudevents import EventType
from bridge.events.tag import decode_tag
from tests.fixtures.worker import (
    RECIPIENT,
    SENDER,
    Collected,
    MakeWorkerEnv,
    send_body,
)

DASHBOARD_NUMBER = "+19195550105"


async def test_send_succeeds_with_the_id_from_location(make_worker_env: MakeWorkerEnv) -> None:
    env = await make_worker_env()
    reply = await env.channel.declare_queue(exclusive=True, auto_delete=True)
    command_id = await env.publish(
        send_body("hi", tag="mine"), reply_to=reply.name, correlation_id="corr-1"
    )
    assert command_id is not None
    event = await env.result(command_id)
    assert event["type"] == EventType.SEND_SUCCEEDED
    assert event["subject"] == command_id
    assert event["correlationid"] == command_id  # joins the result and the callbacks
    data = event["data"]
    assert data["outcome"] == "succeeded"
    assert data["commandIdSource"] == "message-id"
    assert data["attempts"] == 1
    [sent] = env.sent_with_tag_of(command_id)
    assert data["messageId"] == sent.id
    assert data["location"].endswith(f"/messages/{sent.id}")
    assert (sent.from_, sent.to, sent.text) == (SENDER, RECIPIENT, "hi")
    assert decode_tag(sent.tag).user_tag == "mine"  # the user's tag is kept
    # The same result, to reply_to, with the correlation id.
    replies = Collected(lambda m: "reply")
    await reply.consume(replies.on_message)
    await replies.wait_for(lambda: replies.count == 1, 5)
    [replied] = replies.by_key["reply"]
    assert replied.correlation_id == "corr-1"
    assert orjson.loads(replied.body)["id"] == event["id"]
    assert await env.queue_depth(env.topology.send_queue) == 0


async def test_the_amqp_message_id_wins_over_the_body_id(make_worker_env: MakeWorkerEnv) -> None:
    # aio-pika (aiormq) stamps a message_id on every publish, so its producers always name their
    # commands; body ids and derived ids are covered by the parsing tables.
    env = await make_worker_env()
    command_id = await env.publish(send_body("with id", id="body-id-1"), message_id="amqp-id-1")
    assert command_id == "amqp-id-1"
    data = (await env.result("amqp-id-1"))["data"]
    assert data["commandIdSource"] == "message-id"
    assert env.result_count("body-id-1") == 0


async def test_import_succeeds_with_configured_credentials(make_worker_env: MakeWorkerEnv) -> None:
    env = await make_worker_env()
    command = {"number": DASHBOARD_NUMBER, "applicationId": env.application_id, "name": "main line"}
    command_id = await env.publish(command, queue=env.topology.import_queue)
    assert command_id is not None
    event = await env.result(command_id)
    assert event["type"] == EventType.IMPORT_SUCCEEDED
    data = event["data"]
    assert data["outcome"] == "succeeded"
    record = env.simulator.state.number(DASHBOARD_NUMBER)
    assert record is not None
    assert data["numberId"] == record.id
    assert data["number"] == DASHBOARD_NUMBER
    assert "password" not in orjson.dumps(event).decode().lower()


async def test_import_of_a_number_already_there_is_its_own_outcome(
    make_worker_env: MakeWorkerEnv,
) -> None:
    env = await make_worker_env(numbers=(SENDER, DASHBOARD_NUMBER))
    command = {"number": DASHBOARD_NUMBER, "applicationId": env.application_id, "name": "again"}
    command_id = await env.publish(command, queue=env.topology.import_queue)
    assert command_id is not None
    event = await env.result(command_id)
    assert event["type"] == EventType.IMPORT_ALREADY_IMPORTED
    assert event["data"]["outcome"] == "already-imported"
    assert event["data"]["error"]["code"] == "duplicate-number"
    assert env.dead.count == 0


async def _failed(env: Any, command_id: str, *, code: str, reason: str = "rejected") -> Any:
    event = await env.result(command_id)
    assert event["data"]["outcome"] == "failed"
    assert event["data"]["reason"] == reason
    assert event["data"]["error"]["code"] == code
    dead = await env.dead_letter(command_id)
    headers = dead.headers or {}
    assert headers["x-bridge-reason"] == reason
    assert headers["x-bridge-error-code"] == code
    return event, dead


async def test_validation_errors_fail_at_once(make_worker_env: MakeWorkerEnv) -> None:
    env = await make_worker_env()
    command_id = await env.publish(send_body("x" * 2049))
    assert command_id is not None
    event, dead = await _failed(env, command_id, code="validation-error")
    assert event["type"] == EventType.SEND_FAILED
    assert event["data"]["error"]["status"] == 400
    assert event["data"]["attempts"] == 1
    assert (dead.headers or {})["x-bridge-attempts"] == 1
    assert orjson.loads(dead.body)["text"] == "x" * 2049  # the command as it was


async def test_a_number_not_on_the_account_fails_as_authorization(
    make_worker_env: MakeWorkerEnv,
) -> None:
    env = await make_worker_env()
    command_id = await env.publish(send_body(sender="+19195557777"))
    assert command_id is not None
    event, _ = await _failed(env, command_id, code="number-access-denied")
    assert event["data"]["error"]["status"] == 401


async def test_bad_dashboard_credentials_fail_and_never_show(
    make_worker_env: MakeWorkerEnv,
) -> None:
    env = await make_worker_env()
    command = {
        "number": DASHBOARD_NUMBER,
        "applicationId": env.application_id,
        "name": "n",
        "accountId": "9900000",
        "userName": "dashboard-user",
        "password": "wrong-password-value",
    }
    command_id = await env.publish(command, queue=env.topology.import_queue)
    assert command_id is not None
    event, dead = await _failed(env, command_id, code="provider-access-denied")
    assert event["type"] == EventType.IMPORT_FAILED
    for blob in (orjson.dumps(event), dead.body, orjson.dumps(dict(dead.headers or {}))):
        assert b"wrong-password-value" not in blob
        assert b"dashboard-user" not in blob
    assert orjson.loads(dead.body) == {
        "number": DASHBOARD_NUMBER,
        "applicationId": env.application_id,
        "name": "n",
    }


async def test_the_dashboard_account_and_user_never_reach_a_result_or_dead_letter(
    make_worker_env: MakeWorkerEnv,
) -> None:
    # Catapult's refusal names the Dashboard account it refused: the account id, the user name
    # and the password of the command are all redacted, in every form.
    env = await make_worker_env()
    account, user, password = "7733991", "someone-at-dashboard", "pa55/wo+rd&x"
    command = {
        "number": DASHBOARD_NUMBER,
        "applicationId": env.application_id,
        "name": "n",
        "accountId": account,
        "userName": user,
        "password": password,
    }
    command_id = await env.publish(command, queue=env.topology.import_queue)
    assert command_id is not None
    event, dead = await _failed(env, command_id, code="provider-access-denied")
    assert "***" in event["data"]["error"]["message"]
    for blob in (orjson.dumps(event), dead.body, orjson.dumps(dict(dead.headers or {}))):
        for value in (account, user, password):
            assert value.encode() not in blob


async def test_a_number_missing_from_the_dashboard_fails(make_worker_env: MakeWorkerEnv) -> None:
    env = await make_worker_env()
    command = {"number": "+14155550000", "applicationId": env.application_id, "name": "n"}
    command_id = await env.publish(command, queue=env.topology.import_queue)
    assert command_id is not None
    await _failed(env, command_id, code="number-not-found")


async def test_ready_sends_go_out_as_batches_with_per_item_results(
    make_worker_env: MakeWorkerEnv,
) -> None:
    env = await make_worker_env(worker={"concurrency": 20}, start=False)
    bodies = [(f"batch-{n}", orjson.dumps(send_body(f"n{n}"))) for n in range(19)]
    bodies.append(("too-long", orjson.dumps(send_body("x" * 2049))))
    await env.publish_many(bodies, queue=env.topology.send_queue)
    await env.worker.start()
    results = await env.results_for([mid for mid, _ in bodies])
    posts = [r for r in env.simulator.state.requests if r.method == "POST"]
    assert len(posts) < len(bodies)  # several messages per request
    assert any(r.status == 202 for r in posts)  # Catapult's batch answer
    assert results["too-long"]["data"]["error"]["code"] == "validation-error"
    del results["too-long"]
    assert {r["data"]["outcome"] for r in results.values()} == {"succeeded"}
    assert len(env.simulator.state.messages) == 19
    await env.dead_letter("too-long")

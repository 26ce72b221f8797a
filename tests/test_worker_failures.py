"""The worker when things go wrong: poison, retries, exhaustion, transport and ambiguous errors."""

from __future__ import annotations

from collections.abc import Callable

import orjson
import pytest

from bridge.events.cloudevents import EventType
from bridge.simulator import Faults
from bridge.simulator.faults import FaultInjector
from tests.fixtures.worker import SENDER, MakeWorkerEnv, send_body


def _seed(roll: Callable[[FaultInjector], bool], wanted: list[bool], **faults: float) -> int:
    """A fault seed whose first rolls come out as ``wanted``.

    Found with the simulator's own dice, so it stays right whatever they draw per roll.
    """
    for seed in range(10_000):
        dice = FaultInjector(Faults.model_validate(faults), seed)
        if [roll(dice) for _ in wanted] == wanted:
            return seed
    raise AssertionError("no seed found")


def _seed_failing_first(count: int, *, then_ok: int = 1) -> int:
    """A seed whose first ``count`` requests fail (500/503) and the next ``then_ok`` succeed."""
    return _seed(
        lambda dice: dice.request_failure() is not None,
        [True] * count + [False] * then_ok,
        error_rate=0.5,
    )


async def test_poison_is_dead_lettered_at_once_and_blocks_nothing(
    make_worker_env: MakeWorkerEnv,
) -> None:
    env = await make_worker_env(worker={"concurrency": 1})
    poison = {
        "not-json": (b"\x00 not json {", None, "not-json"),
        "array": (b"[1, 2, 3]", None, "not-an-object"),
        "wrong-types": (orjson.dumps({"from": SENDER, "to": 5, "text": ["x"]}), None,
                        "invalid-command"),
        "missing": (orjson.dumps({"from": SENDER}), None, "invalid-command"),
        "unknown-type": (orjson.dumps(send_body()), "io.example.reboot", "unknown-command-type"),
    }  # fmt: skip
    for name, (body, message_type, _) in poison.items():
        await env.publish(body, message_id=name, message_type=message_type)
    good = await env.publish(send_body("behind the poison"))
    assert good is not None
    assert (await env.result(good))["data"]["outcome"] == "succeeded"
    for name, (_, _, reason) in poison.items():
        event = await env.result(name)
        assert event["type"] == EventType.SEND_FAILED
        assert event["data"]["reason"] == "invalid-command"
        assert event["data"]["error"]["code"] == reason
        assert event["data"]["attempts"] == 0
        dead = await env.dead_letter(name)
        headers = dead.headers or {}
        assert headers["x-bridge-reason"] == "invalid-command"
        assert headers["x-bridge-error-code"] == reason
        assert headers["x-bridge-detail"]
    assert env.result_count(good) == 1
    assert len(env.simulator.state.messages) == 1  # poison never reached Catapult
    assert await env.queue_depth(env.topology.send_queue) == 0


async def test_poison_on_the_import_queue_keeps_no_credentials(
    make_worker_env: MakeWorkerEnv,
) -> None:
    env = await make_worker_env()
    body = orjson.dumps({"number": "12345", "password": "s3cret-value", "userName": "someone"})
    await env.publish(body, queue=env.topology.import_queue, message_id="bad-import")
    event = await env.result("bad-import")
    assert event["type"] == EventType.IMPORT_FAILED
    dead = await env.dead_letter("bad-import")
    assert orjson.loads(dead.body) == {"number": "12345"}
    assert b"s3cret-value" not in orjson.dumps(event)
    assert b"s3cret-value" not in orjson.dumps({k: str(v) for k, v in (dead.headers or {}).items()})


async def test_a_command_id_too_long_for_amqp_is_poison_not_a_resend_loop(
    make_worker_env: MakeWorkerEnv,
) -> None:
    # 200 characters but 400 bytes: no retry copy or dead letter can carry it as message_id,
    # so the command went back to the queue and was sent to Catapult again, forever.
    env = await make_worker_env(simulator={"error_rate": 1.0})
    await env.publish_without_message_id(
        send_body("long id", id="é" * 200), queue=env.topology.send_queue
    )
    await env.results.wait_for(lambda: env.results.count == 1, 5)
    await env.dead.wait_for(lambda: env.dead.count == 1, 5)
    [[result]] = env.results.by_key.values()
    data = orjson.loads(result.body)["data"]
    assert data["outcome"] == "failed"
    assert data["reason"] == "invalid-command"
    assert "message_id" in data["error"]["message"]
    assert not env.simulator.state.requests
    assert await env.queue_depth(env.topology.send_queue) == 0


async def test_a_server_error_is_looked_up_then_sent_again(make_worker_env: MakeWorkerEnv) -> None:
    # The send and the first look-up fail (500/503, no effect); the next look-up finds nothing,
    # so the command is sent again.
    seed = _seed_failing_first(2, then_ok=2)
    env = await make_worker_env(
        simulator={"error_rate": 0.5, "fault_seed": seed}, worker={"max_attempts": 5}
    )
    command_id = await env.publish(send_body("try again"))
    assert command_id is not None
    data = (await env.result(command_id))["data"]
    assert data["outcome"] == "succeeded"
    assert data["recovered"] is False
    assert data["attempts"] == 4
    assert len(env.sent_with_tag_of(command_id)) == 1
    requests = [(r.method, r.status) for r in env.simulator.state.requests]
    assert [m for m, _ in requests] == ["POST", "GET", "GET", "POST"]
    assert [s for _, s in requests][2:] == [200, 201]
    assert all(s in (500, 503) for _, s in requests[:2])
    assert env.dead.count == 0


async def test_server_errors_to_the_end_leave_the_outcome_unknown(
    make_worker_env: MakeWorkerEnv,
) -> None:
    # Every request fails with a 5xx: the send may have been stored, and no look-up could tell.
    env = await make_worker_env(simulator={"error_rate": 1.0}, worker={"max_attempts": 3})
    command_id = await env.publish(send_body("never"), headers={"app-header": "kept"})
    assert command_id is not None
    event = await env.result(command_id)
    data = event["data"]
    assert data["outcome"] == "failed"
    assert data["reason"] == "unknown-outcome"
    assert data["attempts"] == 3
    assert data["error"]["status"] in (500, 503)
    dead = await env.dead_letter(command_id)
    headers = dead.headers or {}
    assert headers["x-bridge-reason"] == "unknown-outcome"
    assert headers["x-bridge-attempts"] == 3
    assert headers["x-bridge-error-status"] in (500, 503)
    assert headers["x-bridge-error-category"]
    assert headers["x-bridge-error-message"]
    assert headers["app-header"] == "kept"
    assert dead.message_id == command_id
    assert [r.method for r in env.simulator.state.requests] == ["POST", "GET", "GET"]


async def test_an_ambiguous_503_is_looked_up_not_sent_twice(
    make_worker_env: MakeWorkerEnv,
) -> None:
    # Every send is carried out but answered 503 message-gateway-unavailable.
    env = await make_worker_env(simulator={"ambiguous_rate": 1.0})
    command_ids = [await env.publish(send_body(f"maybe {n}")) for n in range(5)]
    results = await env.results_for([c for c in command_ids if c is not None])
    for command_id, event in results.items():
        data = event["data"]
        assert data["outcome"] == "succeeded"
        assert data["recovered"] is True
        [sent] = env.sent_with_tag_of(command_id)
        assert data["messageId"] == sent.id
        assert env.result_count(command_id) == 1
    assert len(env.simulator.state.messages) == 5  # no duplicates
    assert env.dead.count == 0


@pytest.mark.parametrize("status", [500, 502, 503, 504])
async def test_a_plain_5xx_to_a_send_is_looked_up_not_sent_twice(
    make_worker_env: MakeWorkerEnv, status: int
) -> None:
    # The first send is carried out and answered with a plain server error (JSON for 500 and
    # 503, a proxy's HTML page for 502 and 504): the message exists, nothing says so.
    seed = _seed(lambda dice: dice.lost_answer() == status, [True], lost_answer_rate=0.5)
    env = await make_worker_env(simulator={"lost_answer_rate": 0.5, "fault_seed": seed})
    command_id = await env.publish(send_body(f"answered {status}"))
    assert command_id is not None
    data = (await env.result(command_id))["data"]
    assert data["outcome"] == "succeeded"
    assert data["recovered"] is True
    [sent] = env.sent_with_tag_of(command_id)
    assert data["messageId"] == sent.id
    requests = [(r.method, r.status) for r in env.simulator.state.requests]
    assert requests == [("POST", status), ("GET", 200)]
    assert env.dead.count == 0


async def test_a_503_that_sent_nothing_is_sent_again_after_the_lookup(
    make_worker_env: MakeWorkerEnv,
) -> None:
    # The first send is answered 503 message-gateway-unavailable and has no effect; the second
    # one (after the look-up found nothing) goes through.
    seed = _seed(lambda dice: dice.is_gateway_down(), [True, False], gateway_unavailable_rate=0.5)
    env = await make_worker_env(simulator={"gateway_unavailable_rate": 0.5, "fault_seed": seed})
    command_id = await env.publish(send_body("second time lucky"))
    assert command_id is not None
    data = (await env.result(command_id))["data"]
    assert data["outcome"] == "succeeded"
    assert data["recovered"] is False
    assert data["attempts"] == 3  # the send, the look-up, the send
    assert len(env.sent_with_tag_of(command_id)) == 1
    requests = [(r.method, r.status) for r in env.simulator.state.requests]
    assert requests == [("POST", 503), ("GET", 200), ("POST", 201)]

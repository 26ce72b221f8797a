"""``bridge tail``: events through a queue of its own (nothing taken from the bridge's queues),
or a queue read with ``--from-queue``, one line or one JSON object each."""

from __future__ import annotations

import json
from typing import Any

from bridge.runtime import Roles
from tests.fixtures.cli import CliFactory, CliRun, cli_environ

SENDER = "+19195550100"
PEER = "+15555550123"


async def _following(run: CliRun) -> None:
    await run.line(lambda line: "Ctrl-C stops" in line, stderr=True)


async def _depth(bridge: Roles, amqp: Any, queue: str) -> int:
    channel = await amqp.channel()
    try:
        declared = await channel.declare_queue(queue, passive=True)
        return int(declared.declaration_result.message_count or 0)
    finally:
        await channel.close()


async def test_tail_shows_an_inbound_sms_and_takes_nothing_from_the_bridge(
    make_bridge: Any, cli: CliFactory, amqp: Any
) -> None:
    bridge: Roles = await make_bridge()
    assert bridge.simulator is not None
    run = await cli(
        "tail", bridge.settings.broker.inbound_queue, "--count", "1",
        environ=cli_environ(bridge.settings),
    ).start()  # fmt: skip
    await _following(run)

    record = bridge.simulator.inject_inbound(from_=PEER, to=SENDER, text="hello bridge " * 10)

    assert await run.wait() == 0
    [line] = run.stdout
    assert "inbound.sms" in line
    assert f"message={record.id}" in line
    assert f"{PEER} -> {SENDER}" in line
    assert '"hello bridge hello bridge' in line
    assert "…" in line  # the text is shortened
    # The event is still in the bridge's own queue, for the application.
    assert await _depth(bridge, amqp, bridge.settings.broker.inbound_queue) == 1


async def test_tail_json_gives_the_event_with_its_routing_key(
    make_bridge: Any, cli: CliFactory
) -> None:
    bridge: Roles = await make_bridge()
    assert bridge.simulator is not None
    run = await cli(
        "tail", "inbound.*", "--json", "--count", "1", environ=cli_environ(bridge.settings)
    ).start()
    await _following(run)

    bridge.simulator.inject_inbound(from_=PEER, to=SENDER, text="as json")

    assert await run.wait() == 0
    [line] = run.stdout
    event = json.loads(line)
    assert event["routingkey"] == "inbound.sms"
    assert event["data"]["text"] == "as json"


async def test_from_queue_leaves_the_messages_unless_ack(make_bridge: Any, cli: CliFactory) -> None:
    bridge: Roles = await make_bridge()
    assert bridge.simulator is not None
    queue = bridge.settings.broker.inbound_queue
    environ = cli_environ(bridge.settings)
    bridge.simulator.inject_inbound(from_=PEER, to=SENDER, text="one")
    peek = await cli("tail", "--from-queue", queue, "--count", "1", environ=environ).start()
    assert await peek.wait() == 0
    assert '"one"' in peek.stdout[0]

    take = await cli(
        "tail", "--from-queue", queue, "--ack", "--count", "1", environ=environ
    ).start()

    assert await take.wait() == 0
    assert '"one"' in take.stdout[0]  # the peek gave it back


async def test_tail_of_a_missing_queue_is_one_line(make_settings: Any, cli: CliFactory) -> None:
    run = await cli(
        "tail", "--from-queue", "no-such-queue-here", environ=cli_environ(make_settings())
    ).start()

    assert await run.wait() == 1
    assert run.stderr == ["bridge: no queue 'no-such-queue-here' on RabbitMQ"]


async def test_ack_without_from_queue_is_bad_usage(make_settings: Any, cli: CliFactory) -> None:
    run = await cli("tail", "--ack", environ=cli_environ(make_settings())).start()

    assert await run.wait() == 2
    [line] = run.stderr
    assert "--from-queue" in line

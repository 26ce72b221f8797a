"""``bridge dlq``: dead letters listed with their reasons, shown redacted, replayed safely.

Dead letters are made the way users make them, through the running bridge: a send from a number
the account does not have (401 ``number-access-denied``) and one to a recipient that is no
number (400 ``validation-error``).
"""

from __future__ import annotations

import asyncio
import json
from typing import Any

import aio_pika
import orjson
from aio_pika.abc import AbstractQueue, AbstractRobustConnection

from bridge.broker import Topology
from bridge.runtime import Roles
from tests.fixtures.cli import CliFactory, cli_environ

NOT_ON_ACCOUNT = "+19195550150"  # in the simulator's Dashboard, not on its account
SENDER = "+19195550100"
PEER = "+15555550123"
CALLBACK_PASSWORD = "cb-pass-Wq72"


async def _dead_letter_copies(amqp: AbstractRobustConnection, topology: Topology) -> AbstractQueue:
    """A queue of the test's own that gets a copy of every dead letter of the send queue."""
    channel = await amqp.channel()
    # Exclusive, not auto-delete: it outlives each wait's consumer and goes with the connection.
    queue = await channel.declare_queue(exclusive=True)
    await queue.bind(
        topology.dead_letter_exchange,
        routing_key=topology.dead_letter_routing_key(topology.send_queue),
    )
    return queue


async def _next(queue: AbstractQueue, timeout_s: float = 20.0) -> None:
    async with asyncio.timeout(timeout_s), queue.iterator() as messages:
        async for message in messages:
            await message.ack()
            return


async def _send(cli: CliFactory, environ: dict[str, str], *args: str) -> str:
    run = await cli("send", *args, "--wait", "--timeout", "20", environ=environ).start()
    assert await run.wait() == 1, run.text()
    assert "result.send.failed" in run.stdout[-1]
    return run.stdout[0].split()[1]


async def _dead_letters(
    make_bridge: Any, cli: CliFactory
) -> tuple[Roles, dict[str, str], str, str]:
    bridge: Roles = await make_bridge()
    environ = cli_environ(bridge.settings)
    denied = await _send(cli, environ, "--from", NOT_ON_ACCOUNT, "--to", PEER, "--text", "hi")
    invalid = await _send(cli, environ, "--from", SENDER, "--to", "5555", "--text", "hello")
    return bridge, environ, denied, invalid


async def _list(cli: CliFactory, environ: dict[str, str], *args: str) -> list[dict[str, Any]]:
    run = await cli("dlq", "list", *args, "--json", environ=environ).start()
    assert await run.wait() == 0, run.text()
    return [json.loads(line) for line in run.stdout]


async def test_list_shows_reason_code_attempts_and_filters(
    make_bridge: Any, cli: CliFactory
) -> None:
    bridge, environ, denied, invalid = await _dead_letters(make_bridge, cli)
    queue = bridge.settings.broker.send_queue

    letters = await _list(cli, environ, queue)

    assert [(x["commandId"], x["reason"], x["code"]) for x in letters] == [
        (denied, "rejected", "number-access-denied"),
        (invalid, "rejected", "validation-error"),
    ]
    assert all(x["attempts"] == 1 for x in letters)
    assert letters[1]["command"] == f'{SENDER} -> 5555 "hello"'
    assert [
        x["commandId"] for x in await _list(cli, environ, queue, "--code", "validation-error")
    ] == [invalid]
    assert await _list(cli, environ, queue, "--older-than", "1h") == []
    plain = await cli("dlq", "list", queue, environ=environ).start()
    assert await plain.wait() == 0
    assert plain.stdout[0].startswith(
        f"{denied} reason=rejected code=number-access-denied attempts=1"
    )


async def test_show_gives_one_whole_with_a_url_password_masked(
    make_bridge: Any, cli: CliFactory, amqp: AbstractRobustConnection
) -> None:
    bridge: Roles = await make_bridge()
    environ = cli_environ(bridge.settings)
    topology = Topology.from_settings(bridge.settings)
    dead = await _dead_letter_copies(amqp, topology)
    body = {
        "from": SENDER,
        "to": "5555",
        "text": "hi",
        "callbackUrl": f"https://hooks:{CALLBACK_PASSWORD}@example.com/cb",
    }
    channel = await amqp.channel(publisher_confirms=True)
    await channel.default_exchange.publish(
        aio_pika.Message(orjson.dumps(body), message_id="cmd-show-1"),
        routing_key=topology.send_queue,
    )
    await channel.close()
    await _next(dead)

    show = await cli("dlq", "show", topology.send_queue, "cmd-show-1", environ=environ).start()

    assert await show.wait() == 0, show.text()
    text = "\n".join(show.stdout)
    assert text.startswith("command id: cmd-show-1")
    assert "x-bridge-reason: rejected" in text
    assert "x-bridge-error-code: validation-error" in text
    assert '"callbackUrl": "https://hooks:***@example.com/cb"' in text
    assert CALLBACK_PASSWORD not in show.text()


async def test_replay_puts_back_only_what_it_selects_and_counts_replays(
    make_bridge: Any, cli: CliFactory, amqp: AbstractRobustConnection
) -> None:
    bridge, environ, denied, invalid = await _dead_letters(make_bridge, cli)
    assert bridge.simulator is not None
    queue = bridge.settings.broker.send_queue
    dry = await cli("dlq", "replay", queue, "--dry-run", environ=environ).start()
    assert await dry.wait() == 0
    assert dry.stdout[-1] == "dry run: 2 would be replayed, nothing changed"
    assert len(await _list(cli, environ, queue)) == 2
    # The number comes onto the account: the denied send can now succeed.
    app = next(iter(bridge.simulator.state.applications))
    bridge.simulator.add_number(NOT_ON_ACCOUNT, application_id=app)
    tail = await cli("tail", "result.send.*", "--count", "1", environ=environ).start()
    await tail.line(lambda line: "Ctrl-C stops" in line, stderr=True)

    replay = await cli(
        "dlq", "replay", queue, "--code", "number-access-denied", environ=environ
    ).start()

    assert await replay.wait() == 0, replay.text()
    assert replay.stdout == [f"{denied}: back on {queue} (replay 1)", "replayed 1, skipped 0"]
    assert await tail.wait() == 0
    assert "result.send.succeeded" in tail.stdout[0]
    assert f"command={denied}" in tail.stdout[0]
    assert [x["commandId"] for x in await _list(cli, environ, queue)] == [invalid]

    # Replayed twice, dead twice: the count goes with it.
    dead = await _dead_letter_copies(amqp, Topology.from_settings(bridge.settings))
    for _ in range(2):
        again = await cli(
            "dlq", "replay", queue, "--code", "validation-error", environ=environ
        ).start()
        assert await again.wait() == 0
        await _next(dead)
    [letter] = await _list(cli, environ, queue)
    assert letter["replays"] == 2


async def test_dlq_of_a_missing_queue_is_one_line(make_settings: Any, cli: CliFactory) -> None:
    run = await cli(
        "dlq", "list", "no-such-dead-queue", environ=cli_environ(make_settings())
    ).start()

    assert await run.wait() == 1
    assert run.stderr == ["bridge: no queue 'no-such-dead-queue' on RabbitMQ"]


async def test_a_bad_duration_is_bad_usage(make_settings: Any, cli: CliFactory) -> None:
    run = await cli(
        "dlq", "list", "outbound.sms", "--older-than", "soon", environ=cli_environ(make_settings())
    ).start()

    assert await run.wait() == 2
    [line] = run.stderr
    assert "--older-than 'soon'" in line

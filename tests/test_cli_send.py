"""``bridge send`` against a running bridge: its own events only, exit status by outcome.

The command line runs as a subprocess (``tests/fixtures/cli.py``); the bridge runs in this
process on the embedded simulator, every broker name unique to the test.
"""

from __future__ import annotations

import asyncio
from typing import Any

from bridge.runtime import Roles
from tests.fixtures.cli import CliFactory, cli_environ

SENDER = "+19195550100"  # the first of the simulator's numbers on the account
PEER = "+15555550123"


def _send(*extra: str) -> tuple[str, ...]:
    return ("send", "--from", SENDER, "--to", PEER, "--text", "hello from the bridge", *extra)


async def test_send_wait_receipt_prints_its_own_events_to_the_receipt(
    make_bridge: Any, cli: CliFactory
) -> None:
    bridge: Roles = await make_bridge()
    environ = cli_environ(bridge.settings)
    # Two at once: each must show its own command's events and none of the other's.
    runs = [
        await cli(*_send("--receipt", "--wait", "--timeout", "20"), environ=environ).start()
        for _ in range(2)
    ]

    codes = await asyncio.gather(*(run.wait() for run in runs))

    assert codes == [0, 0], [run.text() for run in runs]
    ids = []
    for run in runs:
        first, *events = run.stdout
        assert first.startswith("command ")
        command_id = first.split()[1]
        ids.append(command_id)
        assert all(f"command={command_id}" in line for line in events), run.text()
        keys = [line.split()[1] for line in events]
        # The result (from the worker) and the statuses (from Catapult's callbacks) come by
        # different paths, in either order; the wait ends once both the result and the
        # receipt are in.
        assert keys.count("result.send.succeeded") == 1, keys
        assert keys.count("outbound.receipt.delivered") == 1, keys
        assert keys[-1] in {"result.send.succeeded", "outbound.receipt.delivered"}, keys
        assert "outbound.status.sent" in keys
        result = events[keys.index("result.send.succeeded")]
        assert f"{SENDER} -> {PEER}" in result
        assert run.stderr == []
    assert ids[0] != ids[1]


async def test_send_without_wait_prints_the_command_id_once_the_broker_has_it(
    make_bridge: Any, cli: CliFactory
) -> None:
    bridge: Roles = await make_bridge()

    run = await cli(*_send(), environ=cli_environ(bridge.settings)).start()

    assert await run.wait() == 0
    [line] = run.stdout
    assert line.startswith("command ")


async def test_a_refused_send_exits_1_with_the_reason(make_bridge: Any, cli: CliFactory) -> None:
    bridge: Roles = await make_bridge()
    args = ("send", "--from", SENDER, "--to", "5555", "--text", "hi", "--wait", "--timeout", "20")

    run = await cli(*args, environ=cli_environ(bridge.settings)).start()

    assert await run.wait() == 1
    assert "result.send.failed" in run.stdout[-1]
    assert "reason=rejected" in run.stdout[-1]


async def test_not_delivered_with_receipt_exits_1(make_bridge: Any, cli: CliFactory) -> None:
    bridge: Roles = await make_bridge()
    assert bridge.simulator is not None
    bridge.simulator.set_destination(PEER, "not-delivered")

    run = await cli(
        *_send("--receipt", "--wait", "--timeout", "20"), environ=cli_environ(bridge.settings)
    ).start()

    assert await run.wait() == 1
    assert "outbound.receipt.not-delivered" in run.stdout[-1]


async def test_bad_number_is_a_usage_error_in_one_line(make_settings: Any, cli: CliFactory) -> None:
    args = ("send", "--from", "919-555-0100", "--to", PEER, "--text", "hi")

    run = await cli(*args, environ=cli_environ(make_settings())).start()

    assert await run.wait() == 2
    [line] = run.stderr
    assert line.startswith("bridge: --from:")
    assert run.stdout == []


async def test_unreachable_broker_and_wrong_password_are_one_line(
    make_settings: Any, cli: CliFactory
) -> None:
    environ = cli_environ(make_settings())
    for url, why in (
        ("amqp://guest:guest@127.0.0.1:1/", "connection refused"),
        ("amqp://guest:not-the-password@127.0.0.1:5672/", "refused the login"),
    ):
        run = await cli(*_send(), environ={**environ, "BRIDGE_BROKER__URL": url}).start()

        assert await run.wait() == 1
        [line] = run.stderr
        assert why in line
        assert "not-the-password" not in line
        assert "Traceback" not in run.text()


async def test_no_send_queue_says_to_start_the_bridge(make_settings: Any, cli: CliFactory) -> None:
    run = await cli(*_send(), environ=cli_environ(make_settings())).start()

    assert await run.wait() == 1
    [line] = run.stderr
    assert "bridge run" in line

"""``bridge check`` and ``bridge topology`` against the real broker and a running bridge."""

from __future__ import annotations

import json
from typing import Any

from aio_pika.abc import AbstractRobustConnection

from bridge.broker import Topology
from bridge.cli.topology import as_json
from bridge.runtime import Roles
from tests.fixtures.cli import CliFactory, cli_environ


def _simulator_port(bridge: Roles) -> str:
    assert bridge.simulator is not None
    return bridge.simulator.base_url.rsplit(":", 1)[1].split("/")[0]


async def test_check_passes_against_a_running_bridge(make_bridge: Any, cli: CliFactory) -> None:
    bridge: Roles = await make_bridge()
    environ = cli_environ(bridge.settings, BRIDGE_SIMULATOR__PORT=_simulator_port(bridge))

    run = await cli("check", environ=environ).start()

    assert await run.wait() == 0, run.text()
    names = [line.split()[0] for line in run.stdout]
    assert names == ["settings", "rabbitmq", "topology", "catapult"]
    assert all(line.split()[1] == "ok" for line in run.stdout)


async def test_check_names_what_fails(make_bridge: Any, cli: CliFactory, amqp: Any) -> None:
    bridge: Roles = await make_bridge()
    topology = Topology.from_settings(bridge.settings)
    # A dead queue declared by someone else with other arguments, and wrong API credentials.
    channel = await amqp.channel()
    dead = topology.dead_letter_queue(topology.send_queue)
    await channel.queue_delete(dead)
    await channel.declare_queue(dead, durable=True, arguments={"x-queue-type": "classic"})
    await channel.close()
    environ = cli_environ(
        bridge.settings,
        BRIDGE_SIMULATOR__PORT=_simulator_port(bridge),
        BRIDGE_SIMULATOR__API_SECRET="not-the-secret",
        BRIDGE_RECEIVER__PUBLIC_URL="http://127.0.0.1:1",
    )

    run = await cli("check", environ=environ).start()

    assert await run.wait() == 1
    lines = {line.split()[0]: line for line in run.stdout}
    assert "FAILED" in lines["topology"]
    assert dead in lines["topology"]
    assert "credentials refused" in lines["catapult"]
    assert "not-the-secret" not in run.text()
    assert "FAILED" in lines["receiver"]
    assert "Traceback" not in run.text()


async def test_check_without_a_broker_fails_in_one_line_each(
    make_settings: Any, cli: CliFactory
) -> None:
    environ = cli_environ(make_settings(), BRIDGE_BROKER__URL="amqp://guest:guest@127.0.0.1:1/")

    run = await cli("check", environ=environ).start()

    assert await run.wait() == 1
    rabbit = next(line for line in run.stdout if line.startswith("rabbitmq"))
    assert "FAILED" in rabbit
    assert "connection refused" in rabbit


async def test_check_reports_bad_settings(make_settings: Any, cli: CliFactory) -> None:
    environ = cli_environ(make_settings(), BRIDGE_WORKER__BATCH_MAX="500")

    run = await cli("check", environ=environ).start()

    assert await run.wait() == 1
    [line] = run.stdout
    assert line.startswith("settings    FAILED")
    assert "worker.batch_max" in line


async def test_topology_json_is_the_declarations(make_settings: Any, cli: CliFactory) -> None:
    settings = make_settings()

    run = await cli("topology", "--json", environ=cli_environ(settings)).start()

    assert await run.wait() == 0
    shown = json.loads("\n".join(run.stdout))
    assert shown == as_json(Topology.from_settings(settings).declarations())


async def test_topology_declare_then_check_finds_it(
    make_settings: Any, cli: CliFactory, amqp: AbstractRobustConnection
) -> None:
    settings = make_settings()
    environ = cli_environ(settings)

    declare = await cli("topology", "--declare", environ=environ).start()

    assert await declare.wait() == 0
    assert "declared on amqp://guest:***@" in declare.stdout[-1]
    channel = await amqp.channel()
    await channel.declare_queue(settings.broker.send_queue, passive=True)
    await channel.close()

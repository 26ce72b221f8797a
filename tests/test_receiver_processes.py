"""Several receiver processes on one port (``receiver.processes``), as ``bridge run`` runs them.

The pure parts by table (which spool a process owns and which left-over ones it drains, the
setting's checks); then real ``bridge run --role receiver`` processes with two receiver
processes on one port (``SO_REUSEPORT``), real RabbitMQ (through a proxy a test can cut), real
callbacks over real sockets: both processes serve, the metrics add up, a killed process is
restarted and drains its spool, SIGTERM stops them all in order, and a spool whose process no
longer runs is drained. Waits are on log lines, answers and queues, with deadlines.
"""

from __future__ import annotations

import asyncio
import os
import re
import signal
from collections.abc import Awaitable, Callable
from contextlib import AsyncExitStack
from pathlib import Path
from typing import Any

import aiohttp
import orjson
import pytest

from bridge.broker import Envelope
from bridge.broker.topology import INBOUND_SMS
from bridge.receiver.app import RETRY_DIR
from bridge.receiver.layout import ROOT, ProcessSlot, find_left_over, left_over, own_spool_dir
from bridge.receiver.spool import Journal
from bridge.runtime import start_roles
from bridge.settings import Settings, SettingsError, load_settings
from tests.fixtures.cli import CliFactory, CliRun, cli_environ
from tests.fixtures.receiver import (
    AUTH_HEADERS,
    CREDENTIALS,
    BrokerProxy,
    EventQueues,
    MakeReceiver,
)

OpenQueues = Callable[[Settings], Awaitable[EventQueues]]

# The ports of this file's bridges (a range of their own, see the test plan).
PORTS = {"serve": 18411, "kill": 18421, "left": 18431, "all": 18441}


# Pure parts --------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("names", "slot", "root_used", "expected"),
    [
        # One process (in the bridge's own): every numbered spool is someone else's.
        (["0", "1", "retry"], None, False, ["0", "1"]),
        # 3 shrank to 2: spool 2 goes to process 2 % 2 = 0, not to process 1.
        (["0", "1", "2"], ProcessSlot(0, 2), False, ["2"]),
        (["0", "1", "2"], ProcessSlot(1, 2), False, []),
        (["0", "1", "2", "3", "5"], ProcessSlot(1, 2), False, ["3", "5"]),
        # 1 grew to 2: the spool in spool_dir itself goes to process 0.
        (["0", "1"], ProcessSlot(0, 2), True, [ROOT]),
        (["0", "1"], ProcessSlot(1, 2), True, []),
        # Not a process's directory: left alone.
        (["retry", "02", "-1", "x1"], ProcessSlot(0, 2), False, []),
    ],
)
def test_which_left_over_spools_a_process_drains(
    names: list[str], slot: ProcessSlot | None, root_used: bool, expected: list[str]
) -> None:
    assert left_over(names, slot, root_used=root_used) == expected


def test_each_process_has_a_spool_directory_of_its_own(tmp_path: Path) -> None:
    assert own_spool_dir(tmp_path, None) == tmp_path
    assert own_spool_dir(tmp_path, ProcessSlot(1, 3)) == tmp_path / "1"
    with pytest.raises(ValueError, match=re.escape("not in 0..1")):
        ProcessSlot(2, 2)


def test_only_directories_that_held_a_journal_are_left_over(tmp_path: Path) -> None:
    for name in ("2", "3"):
        (tmp_path / name).mkdir()
    (tmp_path / "2" / "lock").touch()
    assert find_left_over(tmp_path, ProcessSlot(0, 2)) == [tmp_path / "2"]
    assert find_left_over(tmp_path / "missing", ProcessSlot(0, 2)) == []


@pytest.mark.parametrize(
    ("receiver", "message"),
    [
        ({"processes": 0}, "receiver.processes: Input should be greater than 0"),
        ({"processes": 2, "port": 0}, "receiver.processes = 2 needs a fixed receiver.port"),
    ],
)
def test_the_processes_setting_is_checked(receiver: dict[str, Any], message: str) -> None:
    with pytest.raises(SettingsError, match=re.escape(message)):
        load_settings(receiver=receiver)


# Helpers -----------------------------------------------------------------------------------


def callback(n: int, tag: str) -> bytes:
    return orjson.dumps(
        {
            "eventType": "sms",
            "direction": "in",
            "messageId": f"m-{tag}{n:06d}",
            "from": "+13233326955",
            "to": "+13865245000",
            "text": f"hello {n}",
            "time": "2012-11-14T16:13:06.076Z",
            "state": "received",
        }
    )


async def post_callbacks(port: int, count: int, tag: str) -> list[str]:
    """``count`` callbacks, each on a connection of its own (so the kernel spreads them)."""
    connector = aiohttp.TCPConnector(force_close=True)
    timeout = aiohttp.ClientTimeout(total=15)
    async with aiohttp.ClientSession(connector=connector, timeout=timeout) as session:

        async def one(n: int) -> str:
            async with session.post(
                f"http://127.0.0.1:{port}/catapult/messages",
                data=callback(n, tag),
                headers={**AUTH_HEADERS, "Content-Type": "application/json"},
            ) as response:
                assert response.status == 200, await response.text()
                status: str = (await response.json())["status"]
                return status

        return list(await asyncio.gather(*(one(n) for n in range(count))))


async def get(port: int, path: str) -> tuple[int, str]:
    async with (
        aiohttp.ClientSession(timeout=aiohttp.ClientTimeout(total=10)) as session,
        session.get(f"http://127.0.0.1:{port}{path}") as response,
    ):
        return response.status, await response.text()


def sample(metrics: str, name: str) -> float:
    match = re.search(rf"^{re.escape(name)} (\S+)$", metrics, re.MULTILINE)
    assert match is not None, f"no {name} in:\n{metrics}"
    return float(match.group(1))


def subjects(messages: list[Any]) -> set[str]:
    return {orjson.loads(m.body)["subject"] for m in messages}


def processes_run(cli: CliFactory, settings: Settings, *, port: int, processes: int = 2) -> CliRun:
    """``bridge run --role receiver`` with ``processes`` receiver processes on ``port``."""
    receiver = settings.receiver
    environ = cli_environ(
        settings,
        BRIDGE_RECEIVER__PROCESSES=str(processes),
        BRIDGE_RECEIVER__HOST="127.0.0.1",
        BRIDGE_RECEIVER__PORT=str(port),
        BRIDGE_RECEIVER__SPOOL_DIR=str(receiver.spool_dir),
        BRIDGE_RECEIVER__USERNAME=CREDENTIALS["username"],
        BRIDGE_RECEIVER__PASSWORD=CREDENTIALS["password"],
        BRIDGE_RECEIVER__RETRY_INTERVAL_S="0.1",
        BRIDGE_OPERATIONS__HOST="127.0.0.1",
        BRIDGE_OPERATIONS__PORT=str(port + 1),
        BRIDGE_BROKER__RECONNECT_DELAY_S="0.05",
        BRIDGE_BROKER__RECONNECT_MAX_DELAY_S="0.2",
        BRIDGE_BROKER__CONFIRM_TIMEOUT_S="1",
        BRIDGE_BROKER__CONNECT_TIMEOUT_S="1",
        BRIDGE_CATAPULT__BASE_URL="http://127.0.0.1:9",
        BRIDGE_CATAPULT__USER_ID="u-processes",
        BRIDGE_CATAPULT__API_TOKEN="t-processes",
        BRIDGE_CATAPULT__API_SECRET="s-processes",
    )
    return cli("run", "--role", "receiver", environ=environ)


async def started(run: CliRun) -> CliRun:
    await run.start()
    await run.line(lambda line: "bridge running (role receiver)" in line, stderr=True)
    return run


def mentions(text: str) -> Callable[[str], bool]:
    return lambda line: text in line


def logged_by(index: int, text: str) -> Callable[[str], bool]:
    return lambda line: text in line and line.endswith(f"receiver_process={index}")


async def process_pids(port: int) -> list[int]:
    _, body = await get(port + 1, "/readyz")
    return [p["pid"] for p in orjson.loads(body)["receiver"]["processes"]]


# Processes ---------------------------------------------------------------------------------


async def test_two_processes_serve_one_port_and_their_metrics_add_up(
    make_settings: Callable[..., Settings], cli: CliFactory, event_queues: OpenQueues
) -> None:
    settings = make_settings()
    port = PORTS["serve"]
    run = await started(processes_run(cli, settings, port=port))
    queues = await event_queues(settings)

    statuses = await post_callbacks(port, 40, "both")

    assert statuses == ["published"] * 40
    assert len(subjects(await queues.take(queues.inbound, 40))) == 40
    # Both processes took callbacks on the one port.
    for index in (0, 1):
        await run.line(logged_by(index, "callback stored outcome=published"), stderr=True)
    status, metrics = await get(port + 1, "/metrics")
    assert status == 200
    assert sample(metrics, 'bridge_receiver_callbacks_total{outcome="published"}') == 40
    assert sample(metrics, "bridge_receiver_processes") == 2
    status, body = await get(port + 1, "/readyz")
    report = orjson.loads(body)["receiver"]
    assert [p["index"] for p in report["processes"]] == [0, 1]
    pids = [p["pid"] for p in report["processes"]]
    assert len(set(pids)) == 2

    run.signal(signal.SIGTERM)

    assert await run.wait() == 0
    for index in (0, 1):
        await run.line(logged_by(index, "receiver stopped"), stderr=True)
    for pid in pids:  # reaped by the bridge before it exited: no such process any more
        with pytest.raises(ProcessLookupError):
            os.kill(pid, 0)


async def test_a_killed_process_is_restarted_and_drains_its_spool(
    make_settings: Callable[..., Settings],
    broker_proxy: BrokerProxy,
    cli: CliFactory,
    event_queues: OpenQueues,
) -> None:
    settings = make_settings(broker={"url": broker_proxy.url()})
    port = PORTS["kill"]
    run = await started(processes_run(cli, settings, port=port))
    queues = await event_queues(settings)
    first, other = await process_pids(port)

    await broker_proxy.cut()
    statuses = await post_callbacks(port, 20, "kill")
    assert statuses == ["spooled"] * 20
    await run.line(logged_by(0, "callback stored outcome=spooled"), stderr=True)

    os.kill(first, signal.SIGKILL)
    await run.line(lambda line: "receiver process 0 restarted" in line, stderr=True)
    await broker_proxy.restore()

    assert len(subjects(await queues.take(queues.inbound, 20, timeout_s=20))) == 20
    await run.line(logged_by(0, "from before the start; draining them"), stderr=True)
    restarted, still = await process_pids(port)
    assert restarted != first
    assert still == other
    assert await queues.count(queues.inbound) == 0


def spooled(n: int, tag: str) -> Envelope:
    return Envelope(
        body=orjson.dumps({"subject": f"m-{tag}{n:04d}"}),
        routing_key=INBOUND_SMS,
        message_id=f"event-{tag}-{n}",
        type="t",
    )


async def leave_spool(directory: Path, tag: str, count: int, *, retry: int = 0) -> None:
    """A spool as a process that no longer runs left it: ``count`` events, ``retry`` refused."""
    for where, how_many in ((directory, count), (directory / RETRY_DIR, retry)):
        journal = await Journal.open(where, max_bytes=1_000_000)
        for n in range(how_many):
            await journal.append(spooled(n, f"{tag}{where.name}-"))
        await journal.close()


async def test_spools_of_processes_no_longer_running_are_drained(
    make_settings: Callable[..., Settings], cli: CliFactory, event_queues: OpenQueues
) -> None:
    settings = make_settings()
    spool_dir = settings.receiver.spool_dir
    # What 3 processes left (process 2's spool, with an event waiting for its retry), and a
    # single receiver before them (the spool in spool_dir itself).
    await leave_spool(spool_dir / "2", "left", 3, retry=1)
    await leave_spool(spool_dir, "root", 2)
    queues = await event_queues(settings)

    run = await started(processes_run(cli, settings, port=PORTS["left"]))

    assert len(subjects(await queues.take(queues.inbound, 6))) == 6
    for directory in (spool_dir / "2", spool_dir):
        await run.line(mentions(f"left-over spool {directory} is drained"), stderr=True)
    assert await queues.count(queues.inbound) == 0
    run.signal(signal.SIGTERM)
    assert await run.wait() == 0


async def test_one_receiver_drains_the_spools_of_several_processes(
    make_settings: Callable[..., Settings], make_receiver: MakeReceiver, event_queues: OpenQueues
) -> None:
    # Back to one process (in the bridge's own) from two: both their spools are drained.
    settings = make_settings(receiver=CREDENTIALS)
    spool_dir = settings.receiver.spool_dir
    await leave_spool(spool_dir / "0", "zero", 2)
    await leave_spool(spool_dir / "1", "one", 1, retry=1)
    queues = await event_queues(settings)

    await make_receiver(settings)

    assert subjects(await queues.take(queues.inbound, 4)) == {
        "m-zero0-0000",
        "m-zero0-0001",
        "m-one1-0000",
        "m-oneretry-0000",
    }
    assert await queues.count(queues.inbound) == 0


async def test_role_all_runs_the_receiver_processes_beside_the_worker(
    make_settings: Callable[..., Settings], event_queues: OpenQueues
) -> None:
    # The embedded simulator calls the receiver processes with credentials generated in the
    # bridge's process: they travel to the processes with the settings.
    settings = make_settings(
        receiver={"host": "127.0.0.1", "port": PORTS["all"], "processes": 2},
        simulator={"port": 0},
        operations={"host": "127.0.0.1", "port": 0},
    )
    async with AsyncExitStack() as stack:
        roles = await start_roles(stack, settings, role="all")
        assert roles.receiver is None
        assert roles.worker is not None
        assert roles.receiver_processes is not None
        assert roles.simulator is not None
        queues = await event_queues(roles.settings)

        record = roles.simulator.inject_inbound(from_="+15555550123", to="+19195550100", text="hi")

        [message] = await queues.take(queues.inbound)
        assert orjson.loads(message.body)["subject"] == record.id
        _, body = await get(roles.operations.port, "/readyz")
        assert set(orjson.loads(body)) >= {"receiver", "worker"}
        assert len([pid for pid in roles.receiver_processes.pids if pid]) == 2

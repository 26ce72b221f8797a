"""``bridge check``: is this deployment able to run? One line per check, ok or the reason.

In order: the settings load; RabbitMQ answers with the configured URL; every exchange and queue
of the topology is declared, with the arguments the bridge declares (each queue is declared
passively, then again with the bridge's arguments, which RabbitMQ refuses when the live queue's
differ: a queue that exists is never changed, a missing one is never created); Catapult (or,
with no ``catapult.base_url``, the embedded simulator of a running ``bridge run``) answers with
the configured credentials; the receiver's ``receiver.public_url`` answers its ``/healthz`` when
it is set. Bindings cannot be listed over AMQP and are not checked.

Exit status 1 when any check fails (the rest still run where they can), else 0.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from functools import partial
from typing import Any

import aiohttp
from aiormq.abc import AbstractChannel

from bridge import eventloop
from bridge.broker.errors import AMQP_FAILURES, BrokerError, ChannelFailed, translated
from bridge.broker.link import CLOSE_TIMEOUT_S, Session
from bridge.broker.topology import Topology
from bridge.catapult import CatapultClient
from bridge.catapult.errors import AuthError, CatapultError
from bridge.cli.connection import connected
from bridge.cli.errors import UsageError
from bridge.cli.options import add_settings_options, load
from bridge.settings import Settings, reachable_host

HTTP_TIMEOUT_S = 5.0


@dataclass(frozen=True, slots=True)
class Check:
    name: str
    ok: bool
    detail: str

    def line(self) -> str:
        return f"{self.name:<11} {'ok' if self.ok else 'FAILED'}  {self.detail}"


def add_parser(commands: Any) -> None:
    parser = commands.add_parser(
        "check",
        help="check the settings, RabbitMQ, the topology, Catapult and the receiver",
        description="Check that this deployment can run: one line per check, ok or the "
        "reason; exit status 1 when any fails.",
    )
    add_settings_options(parser, broker=True)
    parser.set_defaults(handler=_handle)


def _handle(args: argparse.Namespace) -> int:
    try:
        settings = load(args)
    except UsageError as exc:
        detail = " ".join(part.strip() for part in str(exc).splitlines())
        print(Check("settings", ok=False, detail=detail).line())
        return 1
    print(Check("settings", ok=True, detail="valid").line(), flush=True)
    checks = eventloop.run(run_checks(settings, say=lambda c: print(c.line(), flush=True)))
    return 0 if all(c.ok for c in checks) else 1


async def run_checks(settings: Settings, *, say: Callable[[Check], None]) -> list[Check]:
    checks: list[Check] = []

    def note(check: Check) -> None:
        checks.append(check)
        say(check)

    try:
        async with connected(settings, command="check") as session:
            note(Check("rabbitmq", ok=True, detail=f"connected to {settings.broker.display_url}"))
            for check in await topology_checks(session, Topology.from_settings(settings)):
                note(check)
    except BrokerError as exc:
        note(Check("rabbitmq", ok=False, detail=str(exc)))
    note(await catapult_check(settings))
    if settings.receiver.public_url is not None:
        note(await receiver_check(settings.receiver.public_url))
    return checks


async def topology_checks(session: Session, topology: Topology) -> list[Check]:
    plan = topology.declarations()
    missing: list[str] = []
    differing: list[str] = []
    for exchange in plan.exchanges:
        passive = partial(_exchange, exchange.name, passive=True, kind=exchange.type.value)
        same = partial(_exchange, exchange.name, passive=False, kind=exchange.type.value)
        if not await _declared(session, passive):
            missing.append(f"exchange {exchange.name}")
        elif not await _declared(session, same):
            differing.append(f"exchange {exchange.name} (not a durable {exchange.type.value})")
    for queue in plan.queues:
        if not await _declared(session, partial(_queue, queue.name, None)):
            missing.append(queue.name)
        elif not await _declared(session, partial(_queue, queue.name, dict(queue.arguments))):
            differing.append(queue.name)
    declared = len(plan.exchanges) + len(plan.queues)
    checks = []
    if missing:
        checks.append(
            Check(
                "topology",
                ok=False,
                detail=f"not declared: {', '.join(missing)} (`bridge run` or "
                "`bridge topology --declare` declares them)",
            )
        )
    if differing:
        checks.append(
            Check(
                "topology",
                ok=False,
                detail=f"declared with other arguments than the bridge's: {', '.join(differing)} "
                "(`bridge topology` shows the bridge's; such a queue must be deleted and "
                "declared again, or the bridge's settings changed to match it)",
            )
        )
    if not checks:
        checks.append(
            Check(
                "topology",
                ok=True,
                detail=f"{declared} exchanges and queues declared, arguments as the bridge's",
            )
        )
    return checks


async def _exchange(name: str, channel: AbstractChannel, *, passive: bool, kind: str) -> None:
    if passive:
        await channel.exchange_declare(name, passive=True)
    else:
        await channel.exchange_declare(name, exchange_type=kind, durable=True)


async def _queue(name: str, arguments: dict[str, Any] | None, channel: AbstractChannel) -> None:
    """Passive without ``arguments``; else declared as the bridge declares it."""
    if arguments is None:
        await channel.queue_declare(name, passive=True)
    else:
        await channel.queue_declare(name, durable=True, arguments=arguments)


async def _declared(
    session: Session, declare: Callable[[AbstractChannel], Awaitable[None]]
) -> bool:
    """Run one declaration on a channel of its own: False when the broker refuses it."""
    channel = await session.open_channel("checking the topology", watched=False)
    try:
        with translated("checking the topology"):
            await declare(channel)
    except ChannelFailed as exc:
        if exc.reason != "refused":
            raise
        return False
    finally:
        if not channel.is_closed:
            with contextlib.suppress(*AMQP_FAILURES):
                async with asyncio.timeout(CLOSE_TIMEOUT_S):
                    await channel.close()
    return True


def catapult_client(settings: Settings) -> tuple[CatapultClient, str]:
    """The client ``bridge run`` would use, and what it reaches (for the line)."""
    catapult = settings.catapult
    if catapult.is_embedded:
        simulator = settings.simulator
        base = f"http://{reachable_host(simulator.host)}:{simulator.port}/v1"
        client = CatapultClient.for_simulator(simulator, base_url=base, catapult=catapult)
        return client, f"the embedded simulator at {base} (no catapult.base_url)"
    return CatapultClient.from_settings(catapult), f"{catapult.base_url} as {catapult.user_id}"


async def catapult_check(settings: Settings) -> Check:
    client, what = catapult_client(settings)
    try:
        async with client:
            listing = client.list_messages(size=1)
            try:
                await anext(listing, None)
            finally:
                await listing.aclose()
    except AuthError as exc:
        return Check("catapult", ok=False, detail=f"{what}: credentials refused ({exc})")
    except CatapultError as exc:
        hint = " (is `bridge run` running?)" if settings.catapult.is_embedded else ""
        return Check("catapult", ok=False, detail=f"{what}: {exc}{hint}")
    return Check("catapult", ok=True, detail=f"{what}: credentials accepted")


async def receiver_check(public_url: str) -> Check:
    url = public_url.rstrip("/") + "/healthz"
    timeout = aiohttp.ClientTimeout(total=HTTP_TIMEOUT_S)
    try:
        async with aiohttp.ClientSession(timeout=timeout) as http, http.get(url) as answer:
            status = answer.status
    except (aiohttp.ClientError, TimeoutError) as exc:
        why = str(exc) or type(exc).__name__
        return Check("receiver", ok=False, detail=f"{url}: not reachable ({why})")
    if status != 200:
        return Check("receiver", ok=False, detail=f"{url}: answered {status}")
    return Check("receiver", ok=True, detail=f"{url}: answered 200")


__all__ = ["Check", "add_parser", "run_checks"]

"""``bridge run``: the roles composed in one process, and the embedded simulator.

Start order is dependency order, and stop order its reverse (an ``AsyncExitStack``)::

    simulator (embedded only) -> receiver -> worker -> operations server

so on SIGTERM the probes go first, then the worker stops consuming and drains, then the receiver
stops accepting and finishes its callbacks in flight, then the simulator goes. With
``receiver.processes`` above 1 the receiver runs in that many processes of its own
(``receiver/supervisor.py``), started and stopped at the same place in that order, and the
operations server adds their metrics up; the worker stays in this process. The operations
server (``operations.host:operations.port``) serves /healthz, /readyz and /metrics for the roles
that run; the callback port serves callbacks only. With no ``catapult.base_url`` the bridge
runs against an in-process Catapult simulator: this module gives the receiver generated callback
credentials (when none are configured), creates a simulator application whose incoming message URL
is the receiver, and puts the simulator's Dashboard numbers on the account, so a new user sees the
whole flow on one machine. Nothing here parses callbacks or commands; the parts do.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import secrets
import signal
from contextlib import AsyncExitStack
from dataclasses import dataclass
from urllib.parse import quote, urlsplit, urlunsplit

from prometheus_client import CollectorRegistry
from pydantic import SecretStr

from bridge.catapult import CatapultClient
from bridge.operations import OperationsServer, ReadinessCheck
from bridge.receiver import ReceiverServer
from bridge.receiver.supervisor import ReceiverSupervisor
from bridge.settings import Settings, SettingsError
from bridge.simulator import Simulator
from bridge.worker import Worker, worker_readiness

log = logging.getLogger(__name__)

ROLES = ("receiver", "worker", "all")


@dataclass(frozen=True, slots=True)
class Roles:
    """What ``start_roles`` started, and the settings it used (completed when embedded)."""

    settings: Settings
    simulator: Simulator | None
    receiver: ReceiverServer | None
    worker: Worker | None
    operations: OperationsServer
    # With receiver.processes > 1 the receiver runs in processes of its own instead.
    receiver_processes: ReceiverSupervisor | None = None


def embedded_settings(settings: Settings) -> Settings:
    """``settings`` completed for the embedded simulator.

    The receiver gets generated Basic credentials when it has none (the simulator's application
    URL carries them, as Catapult v1 users do), import commands get the simulator's Dashboard
    account, and the simulator treats the worker's application-to-person numbers as such, so that
    the worker's limits and the simulator's match.
    """
    receiver, catapult, simulator = settings.receiver, settings.catapult, settings.simulator
    if not receiver.has_credentials and not receiver.allow_unauthenticated:
        receiver = receiver.model_copy(
            update={"username": "catapult", "password": SecretStr(secrets.token_urlsafe(18))}
        )
    if catapult.dashboard_account_id is None:
        catapult = catapult.model_copy(
            update={
                "dashboard_account_id": simulator.dashboard_account_id,
                "dashboard_user_name": simulator.dashboard_user_name,
                "dashboard_password": simulator.dashboard_password,
            }
        )
    if not simulator.a2p_numbers and settings.worker.a2p_numbers:
        simulator = simulator.model_copy(update={"a2p_numbers": settings.worker.a2p_numbers})
    return settings.model_copy(
        update={"receiver": receiver, "catapult": catapult, "simulator": simulator}
    )


def callback_url(settings: Settings, receiver_base_url: str) -> str:
    """The URL Catapult should call: public base, path, path token and Basic credentials."""
    receiver = settings.receiver
    base = receiver.public_url or receiver_base_url
    url = base.rstrip("/") + receiver.path
    if receiver.path_token is not None:
        url += "/" + quote(receiver.path_token.get_secret_value(), safe="")
    if receiver.username is not None and receiver.password is not None:
        parts = urlsplit(url)
        userinfo = (
            f"{quote(receiver.username, safe='')}:"
            f"{quote(receiver.password.get_secret_value(), safe='')}"
        )
        url = urlunsplit(parts._replace(netloc=f"{userinfo}@{parts.netloc}"))
    return url


def wire_simulator(
    simulator: Simulator, settings: Settings, receiver_url: str, *, role: str = "all"
) -> None:
    """One application calling the receiver, and every Dashboard number assigned to it."""
    application = simulator.add_application(
        incoming_message_url=receiver_url, name="catapult-bridge (embedded)"
    )
    numbers = settings.simulator.dashboard_numbers[: settings.simulator.account_numbers]
    for number in numbers:
        if simulator.state.number(number) is None:
            simulator.add_number(number, application_id=application.id, name="embedded demo")
    on_account = f"numbers {numbers[0]}..{numbers[-1]}" if numbers else "no numbers"
    send = ""
    if role in ("worker", "all"):
        send = f"Send with `bridge send` (a command on {settings.broker.send_queue}); "
    log.info(
        "embedded simulator: application %s calls the receiver; %s are on the account. "
        "%sfake an inbound SMS with: curl -X POST "
        "%s/inbound -H 'Content-Type: application/json' "
        '-d \'{"from": "+15555550123", "to": "%s", "text": "hello"}\'',
        application.id,
        on_account,
        send,
        simulator.control_url,
        numbers[0] if numbers else "+19195550100",
    )


def say_callback_credentials(settings: Settings, receiver_base_url: str) -> None:
    """In embedded mode, the receiver's generated credentials: throwaway, and the only way to
    call the receiver by hand (a malformed callback with curl, say)."""
    receiver = settings.receiver
    if receiver.username is None or receiver.password is None:
        return
    log.info(
        "embedded mode: the receiver's callback credentials for this run are %s:%s "
        "(generated; try it: curl -u '%s:%s' -X POST %s%s -H 'Content-Type: application/json' "
        "-d '[]')",
        receiver.username,
        receiver.password.get_secret_value(),
        receiver.username,
        receiver.password.get_secret_value(),
        receiver_base_url.rstrip("/"),
        receiver.path,
    )


def catapult_client(settings: Settings, simulator: Simulator | None) -> CatapultClient:
    if simulator is None:
        return CatapultClient.from_settings(settings.catapult)
    return CatapultClient.for_simulator(
        settings.simulator, base_url=simulator.base_url, catapult=settings.catapult
    )


async def _serve_operations(
    stack: AsyncExitStack,
    settings: Settings,
    registry: CollectorRegistry,
    *,
    receiver: ReceiverServer | ReceiverSupervisor | None,
    worker: Worker | None,
) -> OperationsServer:
    """One operations server for the roles that run: /healthz, /readyz, /metrics."""
    checks: dict[str, ReadinessCheck] = {}
    if receiver is not None:
        checks["receiver"] = receiver.readiness
    if worker is not None:
        running = worker
        checks["worker"] = lambda: worker_readiness(running)
    server = OperationsServer(
        registry, checks, host=settings.operations.host, port=settings.operations.port
    )
    await server.start()
    stack.push_async_callback(server.stop)
    return server


async def start_roles(stack: AsyncExitStack, settings: Settings, *, role: str) -> Roles:
    """Start what ``role`` needs on ``stack`` (stopped in reverse, on the stack's exit)."""
    if role not in ROLES:
        raise ValueError(f"unknown role {role!r}: one of {', '.join(ROLES)}")
    simulator: Simulator | None = None
    generated_credentials = False
    if settings.catapult.is_embedded:
        generated_credentials = not (
            settings.receiver.has_credentials or settings.receiver.allow_unauthenticated
        )
        settings = embedded_settings(settings)
        simulator = Simulator(settings.simulator, hidden=settings.receiver.secret_values)
        await simulator.start(settings.simulator.host, settings.simulator.port)
        stack.push_async_callback(simulator.stop)
        log.info("no catapult.base_url: using the embedded simulator at %s", simulator.base_url)

    registry = CollectorRegistry()
    receiver: ReceiverServer | None = None
    processes: ReceiverSupervisor | None = None
    worker: Worker | None = None
    receiver_base = settings.receiver.public_url
    if role in ("receiver", "all") and settings.receiver.processes > 1:
        processes = ReceiverSupervisor(settings)
        await processes.start()
        stack.push_async_callback(processes.stop)
        processes.collect_into(registry)
        receiver_base = receiver_base or processes.base_url
    elif role in ("receiver", "all"):
        receiver = ReceiverServer(settings, registry=registry)
        await receiver.start()
        stack.push_async_callback(receiver.stop)
        receiver_base = receiver_base or receiver.base_url
    if simulator is not None:
        base = receiver_base or f"http://127.0.0.1:{settings.receiver.port}"
        wire_simulator(simulator, settings, callback_url(settings, base), role=role)
        if (receiver or processes) is not None and generated_credentials:
            say_callback_credentials(settings, base)

    if role in ("worker", "all"):
        worker = Worker(
            settings, catapult_client(settings, simulator), registry=registry, close_client=True
        )
        await worker.start()
        stack.push_async_callback(worker.stop)
    operations = await _serve_operations(
        stack, settings, registry, receiver=receiver or processes, worker=worker
    )
    return Roles(
        settings=settings,
        simulator=simulator,
        receiver=receiver,
        worker=worker,
        operations=operations,
        receiver_processes=processes,
    )


async def run_bridge(settings: Settings, *, role: str = "all") -> int:
    """Run ``role`` until SIGTERM or SIGINT; the exit status (0 after an orderly stop)."""
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for signum in (signal.SIGINT, signal.SIGTERM):
        loop.add_signal_handler(signum, stop.set)
    try:
        async with AsyncExitStack() as stack:
            try:
                await start_roles(stack, settings, role=role)
            except SettingsError as exc:
                log.error("bridge: %s", exc)
                return 2
            except OSError as exc:  # a port taken; RabbitMQ away is waited out, never fatal
                log.error("bridge: cannot start the %s role: %s", role, exc)
                return 1
            log.info("bridge running (role %s); SIGTERM or Ctrl-C stops it", role)
            await stop.wait()
            log.info("bridge stopping")
    finally:
        for signum in (signal.SIGINT, signal.SIGTERM):
            with contextlib.suppress(ValueError, RuntimeError):
                loop.remove_signal_handler(signum)
    log.info("bridge stopped")
    return 0

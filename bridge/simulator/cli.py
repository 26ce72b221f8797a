"""``bridge simulator``: its flags and its runner.

Every flag is an override of the ``simulator.*`` setting of the same name (``--account-mps`` is
``simulator.account_messages_per_s``); flags not given leave the lower layers (defaults, TOML file,
``BRIDGE_SIMULATOR__*``) in force. ``--no-limits`` switches every rate limit off. The runner serves
until SIGINT or SIGTERM, then stops in order and returns the exit status.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import logging
import signal
from collections.abc import Iterable
from typing import Any

from bridge.settings import SimulatorSettings
from bridge.simulator.payloads import is_http_url
from bridge.simulator.server import Simulator

log = logging.getLogger(__name__)

# flag -> (setting, type, help)
_FLAGS: dict[str, tuple[str, type, str]] = {
    "--host": ("host", str, "interface to listen on (default 127.0.0.1)"),
    "--port": ("port", int, "port to listen on (default 8090)"),
    "--user-id": ("user_id", str, "the account's user id"),
    "--api-token": ("api_token", str, "API token expected in HTTP Basic"),
    "--api-secret": ("api_secret", str, "API secret expected in HTTP Basic"),
    "--dashboard-account-id": ("dashboard_account_id", str, "Dashboard account id for imports"),
    "--dashboard-user-name": ("dashboard_user_name", str, "Dashboard user name for imports"),
    "--dashboard-password": ("dashboard_password", str, "Dashboard password for imports"),
    "--account-mps": ("account_messages_per_s", float, "messages/s per account (0: off)"),
    "--number-mps": ("number_messages_per_s", float, "messages/s per sending number (0: off)"),
    "--a2p-numbers": ("a2p_numbers", str, "comma-separated numbers without a per-number limit"),
    "--resource-rps": ("resource_requests_per_s", float, "requests/s per resource family"),
    "--number-orders-per-min": ("number_orders_per_min", float, "number orders/min (0: off)"),
    "--number-reads-per-s": ("number_reads_per_s", float, "number reads/s (0: off)"),
    "--latency-ms": ("latency_ms", float, "fault: latency added to every API answer"),
    "--error-rate": ("error_rate", float, "fault: share of requests answered 500/503"),
    "--ambiguous-rate": ("ambiguous_rate", float, "fault: share of sends done but answered 503"),
    "--lost-answer-rate": (
        "lost_answer_rate",
        float,
        "fault: share of sends done but answered 500/502/503/504",
    ),
    "--echo-error-rate": (
        "echo_error_rate",
        float,
        "fault: share of requests answered 500 with a page echoing the request",
    ),
    "--gateway-unavailable-rate": (
        "gateway_unavailable_rate",
        float,
        "fault: share of sends answered 503 and not done",
    ),
    "--rate-limit-storm-rate": (
        "rate_limit_storm_rate",
        float,
        "fault: share of requests refused as over the limit",
    ),
    "--duplicate-callback-rate": (
        "duplicate_callback_rate",
        float,
        "fault: share of callback events delivered twice",
    ),
    "--reorder-receipts-rate": (
        "reorder_receipts_rate",
        float,
        "fault: share of messages whose receipt comes before 'sent'",
    ),
    "--callback-delay-ms": ("callback_delay_ms", float, "fault: delay before each callback"),
    "--callback-failure-rate": (
        "callback_failure_rate",
        float,
        "fault: share of callback attempts that fail before reaching the target",
    ),
    "--fault-seed": ("fault_seed", int, "seed of the fault dice (repeatable runs)"),
    "--status-delay-ms": ("status_delay_ms", float, "pause between status events of a message"),
    "--application-url": (
        "application_url",
        str,
        "at start, create an application calling this URL (credentials in it) and put the "
        "Dashboard numbers on the account, assigned to it",
    ),
}

_LIMIT_SETTINGS = (
    "account_messages_per_s",
    "number_messages_per_s",
    "resource_requests_per_s",
    "number_orders_per_min",
    "number_reads_per_s",
)


def _dest(flag: str) -> str:
    return "sim_" + flag.removeprefix("--").replace("-", "_")


def add_simulator_arguments(parser: argparse.ArgumentParser) -> None:
    group = parser.add_argument_group("simulator")
    for flag, (_, kind, text) in _FLAGS.items():
        metavar = "N" if kind in (int, float) else flag.removeprefix("--").upper().replace("-", "_")
        group.add_argument(
            flag, dest=_dest(flag), type=kind, default=None, metavar=metavar, help=text
        )
    group.add_argument(
        "--no-limits",
        dest="sim_no_limits",
        action="store_true",
        help="switch every rate limit off",
    )


def simulator_overrides(args: argparse.Namespace) -> dict[str, Any]:
    """``{"simulator.<field>": value}`` for each simulator flag that was given."""
    overrides: dict[str, Any] = {}
    if getattr(args, "sim_no_limits", False):
        overrides.update({f"simulator.{name}": 0.0 for name in _LIMIT_SETTINGS})
    for flag, (setting, _, _) in _FLAGS.items():
        value = getattr(args, _dest(flag), None)
        if value is not None:
            if setting == "a2p_numbers":
                value = tuple(n.strip() for n in value.split(",") if n.strip())
            overrides[f"simulator.{setting}"] = value
    return overrides


def bootstrap(simulator: Simulator, settings: SimulatorSettings) -> str | None:
    """With ``simulator.application_url``: an account ready to use, as a bridge expects one.

    One application whose incoming message URL is ``application_url``, and the Dashboard numbers
    on the account, assigned to it, as the embedded simulator of ``bridge run`` has them. Returns
    the application's id (None without a URL).
    """
    if settings.application_url is None:
        return None
    url = settings.application_url.get_secret_value()
    if not is_http_url(url):
        shown = simulator.platform.shown_url(url)
        raise ValueError(f"simulator.application_url is not an http(s) URL: {shown}")
    application = simulator.add_application(incoming_message_url=url, name="catapult-bridge")
    numbers = settings.dashboard_numbers[: settings.account_numbers]
    for number in numbers:
        simulator.add_number(number, application_id=application.id, name="catapult-bridge")
    log.info(
        "application %s calls %s; numbers on the account: %s",
        application.id,
        simulator.platform.shown_url(url),
        f"{numbers[0]}..{numbers[-1]}" if numbers else "none",
    )
    return application.id


async def serve_simulator(settings: SimulatorSettings, *, hidden: Iterable[str] = ()) -> int:
    """Serve until SIGINT/SIGTERM; 0 after an orderly stop, 1 when the port cannot be bound.

    ``hidden``: secrets of the callback URLs it is given (``Simulator``), never shown.
    """
    simulator = Simulator(settings, hidden=hidden)
    try:
        await simulator.start(settings.host, settings.port)
    except OSError as exc:
        log.error("cannot listen on %s:%s: %s", settings.host, settings.port, exc)
        return 1
    log.info(
        "Catapult v1 simulator at %s (control endpoints at %s), user %s",
        simulator.base_url,
        simulator.control_url,
        settings.user_id,
    )
    try:
        bootstrap(simulator, settings)
    except ValueError as exc:
        log.error("%s", exc)
        await simulator.stop()
        return 2
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for signum in (signal.SIGINT, signal.SIGTERM):
        loop.add_signal_handler(signum, stop.set)
    try:
        await stop.wait()
    finally:
        for signum in (signal.SIGINT, signal.SIGTERM):
            with contextlib.suppress(ValueError, RuntimeError):
                loop.remove_signal_handler(signum)
        log.info("stopping the simulator")
        await simulator.stop()
    return 0

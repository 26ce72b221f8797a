"""``bridge run``, ``bridge simulator``, ``bridge schemas`` and ``bridge config``.

bridge run [--role receiver|worker|all]   the sidecar (embedded simulator without credentials)
bridge simulator [--host H --port P ...]  a local Catapult v1
bridge schemas [--check]                  write (or verify) the JSON Schemas in schemas/
bridge config                             print the effective settings, secrets masked
"""

from __future__ import annotations

import argparse
import contextlib
import json
from pathlib import Path
from typing import Any

from bridge import eventloop
from bridge.cli.options import add_settings_options, load
from bridge.logs import configure_logging
from bridge.settings import Settings, masked_url


def add_parsers(commands: Any) -> None:
    run = commands.add_parser("run", help="run the bridge", description="Run the bridge.")
    add_settings_options(run, broker=True)
    run.add_argument("--role", choices=["receiver", "worker", "all"], default="all")
    run.add_argument("--port", type=int, help="receiver HTTP port")
    run.set_defaults(handler=_run)

    sim = commands.add_parser(
        "simulator",
        help="run a local Catapult v1 simulator",
        description="Run a local Catapult v1 simulator (its API and its /_sim control endpoints).",
    )
    add_settings_options(sim)
    from bridge.simulator.cli import add_simulator_arguments

    add_simulator_arguments(sim)
    sim.set_defaults(handler=_simulator)

    schemas = commands.add_parser(
        "schemas",
        help="write the JSON Schemas of events and commands",
        description="Write (or check) the JSON Schemas, AsyncAPI and OpenAPI documents.",
    )
    schemas.add_argument("--out", type=Path, default=Path("schemas"))
    schemas.add_argument(
        "--check", action="store_true", help="fail if the files differ from the models"
    )
    schemas.set_defaults(handler=_schemas)

    show = commands.add_parser(
        "config",
        help="print the effective settings (secrets masked)",
        description="Print the effective settings as JSON; secrets masked, URLs without passwords.",
    )
    add_settings_options(show, broker=True)
    show.set_defaults(handler=_config)


def _run(args: argparse.Namespace) -> int:
    settings = load(args, {"receiver.port": args.port})
    configure_logging(settings.log)
    from bridge.runtime import run_bridge

    with contextlib.suppress(KeyboardInterrupt):
        return eventloop.run(run_bridge(settings, role=args.role))
    return 130


def _simulator(args: argparse.Namespace) -> int:
    from bridge.simulator.cli import serve_simulator, simulator_overrides

    settings = load(args, simulator_overrides(args))
    configure_logging(settings.log)
    with contextlib.suppress(KeyboardInterrupt):
        return eventloop.run(
            serve_simulator(settings.simulator, hidden=settings.receiver.secret_values)
        )
    return 130


def _schemas(args: argparse.Namespace) -> int:
    from bridge.schemas import check_schemas, write_schemas

    if args.check:
        stale = check_schemas(args.out)
        for name in stale:
            print(f"{args.out / name} differs from the models: run `bridge schemas`")
        return 1 if stale else 0
    for path in write_schemas(args.out):
        print(path)
    return 0


def shown_settings(settings: Settings) -> dict[str, Any]:
    """The settings as ``bridge config`` prints them: secrets masked, and the URLs that carry
    one (the broker's, the simulator's application URL) with only their password masked."""
    data: dict[str, Any] = json.loads(settings.model_dump_json())
    data["broker"]["url"] = settings.broker.display_url
    application_url = settings.simulator.application_url
    if application_url is not None:
        data["simulator"]["application_url"] = masked_url(application_url.get_secret_value())
    return data


def _config(args: argparse.Namespace) -> int:
    settings = load(args)
    print(json.dumps(shown_settings(settings), indent=2))
    return 0


__all__ = ["add_parsers", "shown_settings"]

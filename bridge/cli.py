"""The ``bridge`` command line: parses flags, loads settings once, hands over to a part's runner.

    bridge run [--role receiver|worker|all]   the sidecar (embedded simulator without credentials)
    bridge simulator [--host H --port P ...]  a local Catapult v1
    bridge schemas [--check]                  write (or verify) the JSON Schemas in schemas/
    bridge config                             print the effective settings, secrets masked

Flags are the top settings layer: each one becomes an override of the matching setting. A bad
setting stops the start with exit status 2 and the setting's name.
"""

from __future__ import annotations

import argparse
import contextlib
import os
import sys
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from bridge import eventloop
from bridge.logs import configure_logging
from bridge.settings import Settings, SettingsError, load_settings


def _set(overrides: dict[str, Any], dotted: str, value: Any) -> None:
    if value is None:
        return
    section, _, key = dotted.partition(".")
    overrides.setdefault(section, {})[key] = value


def _common(parser: argparse.ArgumentParser) -> None:
    parser.add_argument(
        "--config",
        type=Path,
        default=None,
        help="TOML settings file (default: $BRIDGE_CONFIG_FILE, else built-in defaults)",
    )
    parser.add_argument("--log-level", choices=["DEBUG", "INFO", "WARNING", "ERROR"])
    parser.add_argument("--log-format", choices=["plain", "json"])


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="bridge", description="Sidecar between RabbitMQ and Bandwidth's Catapult v1 API."
    )
    commands = parser.add_subparsers(dest="command", required=True)

    run = commands.add_parser("run", help="run the bridge")
    _common(run)
    run.add_argument("--role", choices=["receiver", "worker", "all"], default="all")
    run.add_argument("--port", type=int, help="receiver HTTP port")
    run.add_argument("--amqp-url", help="RabbitMQ URL")

    sim = commands.add_parser("simulator", help="run a local Catapult v1 simulator")
    _common(sim)
    from bridge.simulator.cli import add_simulator_arguments

    add_simulator_arguments(sim)

    schemas = commands.add_parser("schemas", help="write the JSON Schemas of events and commands")
    schemas.add_argument("--out", type=Path, default=Path("schemas"))
    schemas.add_argument(
        "--check", action="store_true", help="fail if the files differ from the models"
    )

    show = commands.add_parser("config", help="print the effective settings (secrets masked)")
    _common(show)
    return parser


def _overrides(args: argparse.Namespace) -> dict[str, Any]:
    overrides: dict[str, Any] = {}
    _set(overrides, "log.level", getattr(args, "log_level", None))
    _set(overrides, "log.format", getattr(args, "log_format", None))
    if args.command == "run":
        _set(overrides, "receiver.port", args.port)
        _set(overrides, "broker.url", args.amqp_url)
    elif args.command == "simulator":
        from bridge.simulator.cli import simulator_overrides

        for dotted, value in simulator_overrides(args).items():
            _set(overrides, dotted, value)
    return overrides


def _load(args: argparse.Namespace) -> Settings:
    config = getattr(args, "config", None)
    if config is None and os.environ.get("BRIDGE_CONFIG_FILE"):
        config = Path(os.environ["BRIDGE_CONFIG_FILE"])
    return load_settings(config, **_overrides(args))


def main(argv: Sequence[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    if args.command == "schemas":
        from bridge.schemas import check_schemas, write_schemas

        if args.check:
            stale = check_schemas(args.out)
            for name in stale:
                print(f"{args.out / name} differs from the models: run `bridge schemas`")
            return 1 if stale else 0
        for path in write_schemas(args.out):
            print(path)
        return 0
    try:
        settings = _load(args)
    except SettingsError as exc:
        print(f"bridge: {exc}", file=sys.stderr)
        return 2
    configure_logging(settings.log)
    if args.command == "config":
        print(settings.model_dump_json(indent=2))
        return 0
    if args.command == "simulator":
        from bridge.simulator.cli import serve_simulator

        coro = serve_simulator(settings.simulator, hidden=settings.receiver.secret_values)
    else:
        from bridge.runtime import run_bridge

        coro = run_bridge(settings, role=args.role)
    with contextlib.suppress(KeyboardInterrupt):
        return eventloop.run(coro)
    return 130


if __name__ == "__main__":
    raise SystemExit(main())

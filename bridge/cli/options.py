"""Flags every command shares, and the one place the command line loads the settings.

Flags are the top settings layer: each one becomes an override of the matching setting. A bad
setting is a ``UsageError`` naming it (exit status 2). ``--log-level`` takes any letter case.
"""

from __future__ import annotations

import argparse
import os
from pathlib import Path
from typing import Any

from bridge.cli.errors import UsageError
from bridge.settings import Settings, SettingsError, load_settings

LOG_LEVELS = ("DEBUG", "INFO", "WARNING", "ERROR")


def _log_level(value: str) -> str:
    level = value.upper()
    if level not in LOG_LEVELS:
        raise argparse.ArgumentTypeError(
            f"invalid choice: {value!r} (choose from {', '.join(LOG_LEVELS)}, in any case)"
        )
    return level


def add_settings_options(parser: argparse.ArgumentParser, *, broker: bool = False) -> None:
    """``--config``, ``--log-level``, ``--log-format``; with ``broker``, ``--amqp-url`` too."""
    group = parser.add_argument_group("settings")
    group.add_argument(
        "--config",
        type=Path,
        default=None,
        help="TOML settings file (default: $BRIDGE_CONFIG_FILE, else built-in defaults)",
    )
    group.add_argument("--log-level", type=_log_level, metavar="LEVEL", help="debug, info, ...")
    group.add_argument("--log-format", choices=["plain", "json"])
    if broker:
        group.add_argument("--amqp-url", help="RabbitMQ URL (broker.url)")


def set_override(overrides: dict[str, Any], dotted: str, value: Any) -> None:
    if value is None:
        return
    section, _, key = dotted.partition(".")
    overrides.setdefault(section, {})[key] = value


def load(args: argparse.Namespace, overrides: dict[str, Any] | None = None) -> Settings:
    """The settings, with the flags of ``args`` (and ``overrides``) on top."""
    layered: dict[str, Any] = {}
    set_override(layered, "log.level", getattr(args, "log_level", None))
    set_override(layered, "log.format", getattr(args, "log_format", None))
    set_override(layered, "broker.url", getattr(args, "amqp_url", None))
    for dotted, value in (overrides or {}).items():
        set_override(layered, dotted, value)
    config = getattr(args, "config", None)
    if config is None and os.environ.get("BRIDGE_CONFIG_FILE"):
        config = Path(os.environ["BRIDGE_CONFIG_FILE"])
    try:
        return load_settings(config, **layered)
    except SettingsError as exc:
        raise UsageError(str(exc)) from None


__all__ = ["LOG_LEVELS", "add_settings_options", "load", "set_override"]

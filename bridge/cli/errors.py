"""What a command of the command line can fail with, and the exit status each stands for.

    CliError          exit status 1: the command ran and its outcome is a failure (a send that
    │                 failed, a check that did not pass, an unreadable file)
    └── UsageError    exit status 2: the command was asked wrongly (a bad flag value, a bad
                      setting, a file that cannot be used as asked)

``bridge.cli.main`` prints either as one line on stderr; so are ``BrokerError`` (RabbitMQ) and
``CatapultError``-like failures the commands translate into these. No I/O here.
"""

from __future__ import annotations


class CliError(Exception):
    """A failed outcome, said in one line."""

    exit_status = 1


class UsageError(CliError):
    """The command was asked wrongly."""

    exit_status = 2


__all__ = ["CliError", "UsageError"]

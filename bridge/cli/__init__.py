"""The ``bridge`` command line: one parser, one handler per command, one way to fail.

    bridge run | simulator | schemas | config      serve.py: the bridge, the simulator, files
    bridge send                                    send.py: one message, followed if asked
    bridge tail                                    tail.py: events as they come
    bridge import-numbers                          numbers.py: Dashboard numbers from a CSV
    bridge dlq list | show | replay                dlq.py: dead letters
    bridge check                                   check.py: a deployment, one line per check
    bridge topology                                topology.py: what the bridge declares

Exit status: 0 success, 1 a failed outcome, 2 bad usage (argparse's own, and ``UsageError``),
130 after Ctrl-C. Every failure is said in one line on stderr, never a traceback: ``CliError``
(``errors.py``) and ``BrokerError`` (RabbitMQ) are caught here, and a closed stdout (``bridge
config | head``) ends the command quietly.
"""

from __future__ import annotations

import argparse
import os
import sys
from collections.abc import Callable, Sequence

from bridge.broker.errors import BrokerError
from bridge.cli.errors import CliError

Handler = Callable[[argparse.Namespace], int]
# 128 + SIGPIPE, as a shell reports a command whose reader went away.
BROKEN_PIPE_STATUS = 141


def build_parser() -> argparse.ArgumentParser:
    from bridge.cli import check, dlq, numbers, send, serve, tail, topology

    parser = argparse.ArgumentParser(
        prog="bridge",
        description="Sidecar between RabbitMQ and Bandwidth's Catapult v1 API.",
        epilog="Exit status: 0 success, 1 failed outcome, 2 bad usage. "
        "`bridge COMMAND --help` tells more.",
    )
    commands = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")
    serve.add_parsers(commands)
    send.add_parser(commands)
    tail.add_parser(commands)
    numbers.add_parser(commands)
    dlq.add_parser(commands)
    check.add_parser(commands)
    topology.add_parser(commands)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    handler: Handler = args.handler
    try:
        status = handler(args)
        sys.stdout.flush()
    except CliError as exc:
        _say(exc)
        return exc.exit_status
    except BrokerError as exc:
        _say(f"RabbitMQ: {exc}")
        return 1
    except KeyboardInterrupt:
        return 130
    except BrokenPipeError:
        # The reader of stdout went away: nothing more can be said there, and Python would
        # complain again when it flushes stdout at exit.
        devnull = os.open(os.devnull, os.O_WRONLY)
        os.dup2(devnull, sys.stdout.fileno())
        return BROKEN_PIPE_STATUS
    return status


def _say(message: object) -> None:
    text = " ".join(str(message).split()) if "\n" not in str(message) else str(message)
    print(f"bridge: {text}", file=sys.stderr)


__all__ = ["BROKEN_PIPE_STATUS", "build_parser", "main"]

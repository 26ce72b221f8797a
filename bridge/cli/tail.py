"""``bridge tail``: events as they come, one readable line each (or one JSON object a line).

By default through a queue of its own bound to the events exchange (``subscribe``), so it takes
nothing applications need. Each argument is a binding pattern (``inbound.*``, ``result.#``) or
the name of one of the bridge's event queues, which stands for that queue's bindings
(``inbound.sms`` is ``inbound.*``); none means every event (``#``). ``--from-queue Q`` reads the
queue ``Q`` itself instead: without ``--ack`` what it shows goes back to the queue when it stops,
with ``--ack`` it is taken. ``--count N`` stops after N messages; Ctrl-C stops it (status 0).
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import signal
import sys
from typing import Any

from bridge import eventloop
from bridge.broker.errors import ChannelFailed
from bridge.broker.subscription import Subscription, read_queue, subscribe
from bridge.broker.topology import Topology
from bridge.cli.connection import connected
from bridge.cli.errors import CliError, UsageError
from bridge.cli.eventlines import event_json, event_line
from bridge.cli.options import add_settings_options, load
from bridge.settings import Settings


def add_parser(commands: Any) -> None:
    parser = commands.add_parser(
        "tail",
        help="follow events as they come",
        description="Follow events through a queue of its own bound to the events exchange "
        "(nothing is taken from the bridge's queues), or read a queue with --from-queue.",
    )
    parser.add_argument(
        "selectors",
        nargs="*",
        metavar="QUEUE|PATTERN",
        help="an event queue of the bridge (inbound.sms, outbound.status, ...) or a routing "
        "key pattern (inbound.*, result.#); default: every event",
    )
    parser.add_argument("--json", action="store_true", help="one JSON object a line")
    parser.add_argument("--count", type=int, metavar="N", help="stop after N messages")
    parser.add_argument("--from-queue", metavar="QUEUE", help="read this queue itself")
    parser.add_argument(
        "--ack", action="store_true", help="with --from-queue: take what is read off the queue"
    )
    add_settings_options(parser, broker=True)
    parser.set_defaults(handler=_handle)


def patterns_for(selectors: list[str], topology: Topology) -> list[str]:
    """The binding patterns the selectors stand for (a bridge event queue: its bindings)."""
    if not selectors:
        return ["#"]
    bindings = topology.event_queue_bindings()
    patterns: list[str] = []
    for selector in selectors:
        for pattern in bindings.get(selector, (selector,)):
            if pattern not in patterns:
                patterns.append(pattern)
    return patterns


def _handle(args: argparse.Namespace) -> int:
    if args.count is not None and args.count < 1:
        raise UsageError("--count must be at least 1")
    if args.ack and not args.from_queue:
        raise UsageError("--ack reads a queue itself: give --from-queue QUEUE")
    if args.from_queue and args.selectors:
        raise UsageError("--from-queue reads one queue: give no patterns with it")
    settings = load(args)
    return eventloop.run(tail(settings, args))


async def tail(settings: Settings, args: argparse.Namespace) -> int:
    topology = Topology.from_settings(settings)
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for signum in (signal.SIGINT, signal.SIGTERM):
        loop.add_signal_handler(signum, stop.set)
    try:
        async with connected(settings, command="tail") as session:
            if args.from_queue:
                try:
                    subscription = await read_queue(
                        session, args.from_queue, prefetch=min(args.count or 200, 200)
                    )
                except ChannelFailed as exc:
                    if exc.reason == "refused":
                        raise CliError(f"no queue {args.from_queue!r} on RabbitMQ") from None
                    raise
                taken = "taking" if args.ack else "reading (and leaving)"
                print(f"{taken} {args.from_queue}; Ctrl-C stops", file=sys.stderr, flush=True)
            else:
                patterns = patterns_for(args.selectors, topology)
                try:
                    subscription = await subscribe(
                        session, exchange=topology.events_exchange, patterns=patterns
                    )
                except ChannelFailed as exc:
                    if exc.reason == "refused":
                        raise CliError(
                            f"no exchange {topology.events_exchange!r} on RabbitMQ: start the "
                            "bridge once (`bridge run` declares it) or check "
                            "broker.events_exchange"
                        ) from None
                    raise
                print(
                    f"following {topology.events_exchange} ({', '.join(patterns)}); Ctrl-C stops",
                    file=sys.stderr,
                    flush=True,
                )
            await _show(subscription, args, stop)
            await subscription.close()
    finally:
        for signum in (signal.SIGINT, signal.SIGTERM):
            with contextlib.suppress(ValueError, RuntimeError):
                loop.remove_signal_handler(signum)
    return 0


async def _show(subscription: Subscription, args: argparse.Namespace, stop: asyncio.Event) -> None:
    shown = 0
    stopping = asyncio.ensure_future(stop.wait())
    try:
        while args.count is None or shown < args.count:
            taking = asyncio.ensure_future(subscription.next())
            done, _ = await asyncio.wait({taking, stopping}, return_when=asyncio.FIRST_COMPLETED)
            if taking not in done:
                taking.cancel()
                with contextlib.suppress(asyncio.CancelledError):
                    await taking
                return
            message = taking.result()
            key = message.routing_key or ""
            if args.json:
                line = event_json(key, message.body, headers=message.headers)
            else:
                line = event_line(
                    key, message.body, headers=message.headers, timestamp=message.timestamp
                )
            print(line, flush=True)
            shown += 1
            if args.ack or not args.from_queue:
                await subscription.ack(message)
    finally:
        stopping.cancel()


__all__ = ["add_parser", "patterns_for", "tail"]

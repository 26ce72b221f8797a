"""``bridge topology``: what the bridge declares on RabbitMQ, shown, or declared.

The exchanges, queues (with their arguments) and bindings come from ``Topology.declarations()``,
the one definition ``declare_topology`` carries out, so what is shown is what is declared.
"""

from __future__ import annotations

import argparse
import json
from typing import Any

from rich.console import Console
from rich.table import Table

from bridge import eventloop
from bridge.broker.topology import Declarations, Topology, declare_topology
from bridge.cli.connection import connected
from bridge.cli.options import add_settings_options, load
from bridge.settings import Settings


def add_parser(commands: Any) -> None:
    parser = commands.add_parser(
        "topology",
        help="show (or declare) the exchanges, queues and bindings",
        description="Show the exchanges, queues (with their arguments) and bindings the bridge "
        "declares, as tables or JSON; --declare declares them on RabbitMQ.",
    )
    parser.add_argument("--json", action="store_true", help="one JSON document")
    parser.add_argument("--declare", action="store_true", help="declare them (idempotent)")
    add_settings_options(parser, broker=True)
    parser.set_defaults(handler=_handle)


def as_json(plan: Declarations) -> dict[str, Any]:
    return {
        "exchanges": [
            {"name": e.name, "type": e.type.value, "holds": e.holds} for e in plan.exchanges
        ],
        "queues": [
            {"name": q.name, "arguments": dict(q.arguments), "holds": q.holds} for q in plan.queues
        ],
        "bindings": [
            {"exchange": b.exchange, "routingKey": b.routing_key, "queue": b.queue}
            for b in plan.bindings
        ],
    }


def _arguments(arguments: Any) -> str:
    return "\n".join(f"{k}={v}" for k, v in arguments.items())


def _table(title: str, *columns: str) -> Table:
    table = Table(title=title, title_justify="left")
    for index, name in enumerate(columns):
        # Names and arguments are never cut; the descriptions wrap.
        last = index == len(columns) - 1 and name == "holds"
        table.add_column(name, no_wrap=not last, overflow="fold" if last else "ellipsis")
    return table


def plain_lines(plan: Declarations) -> list[str]:
    """The same as the tables, one line per exchange, queue and binding (for a pipe or a file)."""
    lines = ["exchanges:"]
    lines += [f"  {e.name} ({e.type.value}): {e.holds}" for e in plan.exchanges]
    lines.append("queues:")
    for q in plan.queues:
        arguments = " ".join(f"{k}={v}" for k, v in q.arguments.items())
        lines.append(f"  {q.name}: {q.holds}; {arguments}")
    lines.append("bindings:")
    lines += [f"  {b.exchange} --{b.routing_key}--> {b.queue}" for b in plan.bindings]
    return lines


def show(plan: Declarations, console: Console) -> None:
    if not console.is_terminal:
        for line in plain_lines(plan):
            print(line)
        return
    exchanges = _table("Exchanges", "exchange", "type", "holds")
    for e in plan.exchanges:
        exchanges.add_row(e.name, e.type.value, e.holds)
    queues = _table("Queues", "queue", "arguments", "holds")
    for q in plan.queues:
        queues.add_row(q.name, _arguments(q.arguments), q.holds)
    bindings = _table("Bindings", "exchange", "routing key", "queue")
    for b in plan.bindings:
        bindings.add_row(b.exchange or "(default)", b.routing_key, b.queue)
    for table in (exchanges, queues, bindings):
        console.print(table)


async def _declare(settings: Settings, topology: Topology) -> None:
    async with connected(settings, command="topology") as session:
        channel = await session.open_channel("declaring the topology", watched=False)
        await declare_topology(channel, topology)


def _handle(args: argparse.Namespace) -> int:
    settings = load(args)
    topology = Topology.from_settings(settings)
    plan = topology.declarations()
    if args.declare:
        eventloop.run(_declare(settings, topology))
    if args.json:
        print(json.dumps(as_json(plan), indent=2))
    else:
        show(plan, Console(soft_wrap=False))
    if args.declare:
        print(f"declared on {settings.broker.display_url}")
    return 0


__all__ = ["add_parser", "as_json", "plain_lines", "show"]

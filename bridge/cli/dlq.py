"""``bridge dlq list | show | replay QUEUE``: the dead letters of a command queue.

The dead queue is read by consuming it (AMQP has no other way to look into a queue): every
message read is held unacked and goes back when the command ends, except those ``replay``
takes. ``list`` shows each with its reason, Catapult's error code, attempts and age; ``show``
one whole (its headers and its body, secrets redacted); ``replay`` publishes each selected one
back to its command queue (``deadletters.replay_envelope``: a fresh attempt count, the replay
counted in ``x-bridge-replays``) and acks it on the dead queue only once RabbitMQ has confirmed
the copy, so a replay interrupted at any point loses nothing (at worst a letter is both back on
its queue and still dead, and the worker's look-up keeps a send from going twice).
``--dry-run`` shows what ``replay`` would take and changes nothing.

QUEUE is a dead queue (``outbound.sms.dead``) or the command queue it belongs to
(``outbound.sms``). At most ``SCAN_MAX`` letters are read in one go.

On quorum queues RabbitMQ 4.0 to 4.2 counts a message given back as a delivery, and drops it
after its ``x-delivery-limit`` (20 by default) deliveries: the README says how to keep reading
the dead queues there.
"""

from __future__ import annotations

import argparse
import json
import sys
from datetime import UTC, datetime
from typing import Any

from rich.console import Console
from rich.table import Table

from bridge import eventloop
from bridge.broker.errors import PublishFailed
from bridge.broker.intake import Inbound
from bridge.broker.link import Session
from bridge.broker.subscription import Subscription, queue_depth, read_queue
from bridge.broker.topology import Topology
from bridge.cli.connection import confirmed_publisher, connected
from bridge.cli.deadletters import (
    DeadLetter,
    Selection,
    command_queue_of,
    duration_s,
    redacted,
    redacted_headers,
    redactor_for,
    replay_envelope,
    show_age,
)
from bridge.cli.errors import CliError, UsageError
from bridge.cli.options import add_settings_options, load
from bridge.events.commands import CommandKind
from bridge.settings import Settings

SCAN_MAX = 10_000
# No delivery for this long while fewer than the queue's depth have come: the rest are held
# by another consumer (or gone), so the scan ends.
QUIET_S = 2.0


def add_parser(commands: Any) -> None:
    parser = commands.add_parser(
        "dlq",
        help="list, show and replay dead letters",
        description="List, show or replay the dead letters of a command queue.",
    )
    actions = parser.add_subparsers(dest="action", required=True, metavar="ACTION")
    for name, text in (
        ("list", "each dead letter: reason, Catapult code, attempts, age"),
        ("show", "one dead letter whole (secrets redacted)"),
        ("replay", "put the selected ones back on their command queue"),
    ):
        action = actions.add_parser(name, help=text, description=text[0].upper() + text[1:] + ".")
        action.add_argument(
            "queue", metavar="QUEUE", help="e.g. outbound.sms.dead (or outbound.sms)"
        )
        if name == "show":
            action.add_argument("command_id", nargs="?", metavar="COMMAND_ID", help="which one")
        action.add_argument("--reason", help="only this reason (rejected, invalid-command, ...)")
        action.add_argument("--code", help="only this Catapult error code")
        action.add_argument(
            "--older-than", metavar="D", help="only those older than D (90s, 15m, 2h, 1d)"
        )
        action.add_argument(
            "--limit", type=int, metavar="N", help="at most N (default: all; show: 1)"
        )
        if name == "replay":
            action.add_argument(
                "--dry-run", action="store_true", help="show what would be replayed, change nothing"
            )
        if name in ("list", "show"):
            action.add_argument("--json", action="store_true", help="JSON instead of text")
        add_settings_options(action, broker=True)
        action.set_defaults(handler=_handle)


def dead_queue_name(name: str, settings: Settings) -> str:
    broker = settings.broker
    if name in (broker.send_queue, broker.import_queue):
        return name + broker.dead_letter_suffix
    return name


def _letter(message: Inbound) -> DeadLetter:
    return DeadLetter(
        body=message.body,
        headers=dict(message.headers),
        message_id=message.message_id,
        type=message.type,
        content_type=message.content_type,
        correlation_id=message.correlation_id,
        reply_to=message.reply_to,
        timestamp=message.timestamp,
    )


def _handle(args: argparse.Namespace) -> int:
    if args.limit is not None and args.limit < 1:
        raise UsageError("--limit must be at least 1")
    selection = Selection(
        reason=args.reason,
        code=args.code,
        older_than_s=None if args.older_than is None else duration_s(args.older_than),
        command_id=getattr(args, "command_id", None),
    )
    settings = load(args)
    return eventloop.run(run_dlq(settings, args, selection))


async def _scan(session: Session, queue: str) -> tuple[Subscription, list[Inbound]]:
    depth = await queue_depth(session, queue)
    if depth is None:
        raise CliError(f"no queue {queue!r} on RabbitMQ")
    wanted = min(depth, SCAN_MAX)
    subscription = await read_queue(session, queue, prefetch=max(1, wanted))
    messages: list[Inbound] = []
    while len(messages) < wanted:
        try:
            messages.append(await subscription.next(timeout_s=QUIET_S))
        except TimeoutError:
            break
    return subscription, messages


async def run_dlq(settings: Settings, args: argparse.Namespace, selection: Selection) -> int:
    queue = dead_queue_name(args.queue, settings)
    now = datetime.now(UTC)
    limit = args.limit or (1 if args.action == "show" else None)
    async with connected(settings, command="dlq") as session:
        subscription, messages = await _scan(session, queue)
        try:
            picked = [
                (m, letter) for m in messages if selection.matches(letter := _letter(m), now=now)
            ][:limit]
            if args.action == "list":
                _list([letter for _, letter in picked], args=args, now=now, queue=queue)
                return 0
            if args.action == "show":
                if not picked:
                    raise CliError(f"no such dead letter in {queue}")
                _show(picked[0][1], settings=settings, args=args, now=now)
                return 0
            return await _replay(
                session, subscription, picked, settings=settings, args=args, queue=queue
            )
        finally:
            await subscription.close()


def _list(
    letters: list[DeadLetter], *, args: argparse.Namespace, now: datetime, queue: str
) -> None:
    if args.json:
        for letter in letters:
            print(json.dumps(_as_dict(letter, now=now)))
        return
    console = Console()
    if not letters:
        print(f"no dead letters in {queue}" + (" match" if _filtered(args) else ""))
        return
    if console.is_terminal:
        table = Table("command id", "reason", "code", "attempts", "age", "command", title=queue)
        for letter in letters:
            table.add_row(
                letter.command_id, letter.reason, letter.code or "-", str(letter.attempts),
                show_age(letter.age_s(now)), letter.summary(),
            )  # fmt: skip
        console.print(table)
        return
    for letter in letters:
        print(
            f"{letter.command_id} reason={letter.reason} code={letter.code or '-'} "
            f"attempts={letter.attempts} age={show_age(letter.age_s(now))} {letter.summary()}"
        )


def _filtered(args: argparse.Namespace) -> bool:
    return any(getattr(args, name, None) for name in ("reason", "code", "older_than"))


def _as_dict(letter: DeadLetter, *, now: datetime) -> dict[str, Any]:
    return {
        "commandId": letter.command_id,
        "reason": letter.reason,
        "code": letter.code or None,
        "errorMessage": letter.error_message or None,
        "attempts": letter.attempts,
        "replays": letter.replays,
        "ageSeconds": letter.age_s(now),
        "queue": letter.source_queue,
        "command": letter.summary(),
    }


def _show(
    letter: DeadLetter, *, settings: Settings, args: argparse.Namespace, now: datetime
) -> None:
    redactor = redactor_for(settings)
    headers = redacted_headers(letter.headers, redactor)
    body = redacted(letter.body, redactor)
    if args.json:
        print(json.dumps({**_as_dict(letter, now=now), "headers": headers, "body": body}, indent=2))
        return
    print(f"command id: {letter.command_id}")
    print(f"type:       {letter.type or '-'}")
    print(f"timestamp:  {letter.timestamp.isoformat() if letter.timestamp else '-'} "
          f"({show_age(letter.age_s(now))} ago)")  # fmt: skip
    print("headers:")
    for key, value in headers.items():
        print(f"  {key}: {value}")
    print("body:")
    print(body)


async def _replay(
    session: Session,
    subscription: Subscription,
    picked: list[tuple[Inbound, DeadLetter]],
    *,
    settings: Settings,
    args: argparse.Namespace,
    queue: str,
) -> int:
    if not picked:
        print(f"no dead letters in {queue}" + (" match" if _filtered(args) else ""))
        return 0
    topology = Topology.from_settings(settings)
    publisher = None if args.dry_run else await confirmed_publisher(session, settings)
    replayed = skipped = 0
    for message, letter in picked:
        target = command_queue_of(letter, dead_queue=queue, settings=settings)
        if target is None:
            print(f"{letter.command_id}: skipped: no command queue of the bridge to put it back on")
            skipped += 1
            continue
        kind = CommandKind.SEND if target == topology.send_queue else CommandKind.IMPORT
        if publisher is None:
            print(f"{letter.command_id}: would go back to {target} ({letter.reason})")
            continue
        envelope = replay_envelope(letter, queue=target, kind=kind)
        try:
            await publisher.publish(envelope, exchange="")
        except PublishFailed as exc:
            print(
                f"{letter.command_id}: not replayed ({exc}); it stays in {queue}", file=sys.stderr
            )
            skipped += 1
            continue
        await subscription.ack(message)  # only now: the copy is confirmed
        replayed += 1
        print(f"{letter.command_id}: back on {target} (replay {letter.replays + 1})")
    if publisher is None:
        print(f"dry run: {len(picked) - skipped} would be replayed, nothing changed")
        return 0
    print(f"replayed {replayed}, skipped {skipped}")
    return 1 if skipped else 0


__all__ = ["SCAN_MAX", "add_parser", "dead_queue_name", "run_dlq"]

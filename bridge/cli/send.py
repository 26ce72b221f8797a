"""``bridge send``: one send command, its id printed, and with ``--wait`` its own events.

The command gets a fresh id (a UUID, its AMQP ``message_id``), printed first. With ``--wait`` a
queue of its own, bound to the events exchange for results, statuses and receipts, is declared
before the command is published, so nothing of it can be missed; only the events whose
``correlationid`` is that id are shown (the events of other commands pass by). It ends at the
first of: a failed result, the message's final status (``sent`` or ``failed``; with
``--receipt``, its delivery receipt), or ``--timeout``.

Exit status: 0 sent (and with ``--receipt`` delivered); 1 failed, not delivered, or nothing
known within the timeout; 2 a bad flag (a ``from`` that is no E.164 number, say).
"""

from __future__ import annotations

import argparse
import asyncio
import sys
import uuid
from typing import Any

import orjson
from pydantic import ValidationError

from bridge import eventloop
from bridge.broker.errors import PublishFailed
from bridge.broker.subscription import subscribe
from bridge.broker.topology import Topology
from bridge.cli.connection import confirmed_publisher, connected
from bridge.cli.errors import CliError, UsageError
from bridge.cli.eventlines import event_json, event_line
from bridge.cli.options import add_settings_options, load
from bridge.events.commands import SendCommand
from bridge.events.envelope import (
    OUTBOUND_RECEIPT_PREFIX,
    OUTBOUND_STATUS_PREFIX,
    SEND_RESULT_PREFIX,
    Envelope,
)
from bridge.settings import Settings

SEND_TYPE = "io.catapult-bridge.command.send.v1"
# Where the wait ends, and with which exit status.
_FINAL_STATUS = {f"{OUTBOUND_STATUS_PREFIX}.sent": 0, f"{OUTBOUND_STATUS_PREFIX}.failed": 1}
_FINAL_RECEIPT = {
    f"{OUTBOUND_RECEIPT_PREFIX}.delivered": 0,
    f"{OUTBOUND_RECEIPT_PREFIX}.not-delivered": 1,
    f"{OUTBOUND_STATUS_PREFIX}.failed": 1,
}


def add_parser(commands: Any) -> None:
    parser = commands.add_parser(
        "send",
        help="send one SMS or MMS through the bridge",
        description="Publish a send command (a fresh command id, printed) and, with --wait, "
        "follow its own result and status events. Exit status: 0 sent (and delivered, with "
        "--receipt), 1 failed or not known in time, 2 bad usage.",
    )
    parser.add_argument("--from", dest="sender", required=True, metavar="NUMBER")
    parser.add_argument("--to", dest="recipient", required=True, metavar="NUMBER")
    parser.add_argument("--text", required=True)
    parser.add_argument(
        "--media", action="append", metavar="URL", help="a media URL (MMS); repeat for more"
    )
    parser.add_argument("--tag", help="your own tag, kept with the message")
    parser.add_argument(
        "--receipt", action="store_true", help="ask for a delivery receipt (and wait for it)"
    )
    parser.add_argument("--wait", action="store_true", help="follow the command's events")
    parser.add_argument(
        "--timeout",
        type=float,
        default=60.0,
        metavar="S",
        help="with --wait: seconds to wait at most (default 60)",
    )
    parser.add_argument("--json", action="store_true", help="events as JSON lines")
    add_settings_options(parser, broker=True)
    parser.set_defaults(handler=_handle)


def build_command(args: argparse.Namespace) -> SendCommand:
    body: dict[str, Any] = {"from": args.sender, "to": args.recipient, "text": args.text}
    if args.media:
        body["media"] = args.media
    if args.tag is not None:
        body["tag"] = args.tag
    if args.receipt:
        body["receiptRequested"] = "all"
    try:
        return SendCommand.model_validate(body)
    except ValidationError as exc:
        error = exc.errors(include_input=False, include_url=False)[0]
        field = {"from": "--from", "to": "--to", "text": "--text"}.get(
            str(error["loc"][0]), f"--{error['loc'][0]}"
        )
        raise UsageError(f"{field}: {error['msg']}") from None


def _handle(args: argparse.Namespace) -> int:
    if args.timeout <= 0:
        raise UsageError("--timeout must be above 0")
    command = build_command(args)
    settings = load(args)
    return eventloop.run(send(settings, command, args=args))


async def send(settings: Settings, command: SendCommand, *, args: argparse.Namespace) -> int:
    topology = Topology.from_settings(settings)
    command_id = str(uuid.uuid4())
    body = orjson.dumps(command.model_dump(mode="json", by_alias=True, exclude_none=True))
    envelope = Envelope(
        body=body,
        routing_key=topology.send_queue,
        message_id=command_id,
        type=SEND_TYPE,
        content_type="application/json",
    )
    async with connected(settings, command="send") as session:
        subscription = None
        if args.wait:
            subscription = await subscribe(
                session,
                exchange=topology.events_exchange,
                patterns=(
                    f"{SEND_RESULT_PREFIX}.*",
                    f"{OUTBOUND_STATUS_PREFIX}.*",
                    f"{OUTBOUND_RECEIPT_PREFIX}.*",
                ),
            )
        publisher = await confirmed_publisher(session, settings)
        try:
            await publisher.publish(envelope, exchange="")
        except PublishFailed as exc:
            if exc.reason == "unroutable":
                raise CliError(
                    f"no queue {topology.send_queue!r} on RabbitMQ: start the bridge once "
                    "(`bridge run` declares its queues) or check broker.send_queue"
                ) from None
            raise
        print(f"command {command_id}", flush=True)
        if subscription is None:
            return 0
        final = _FINAL_RECEIPT if args.receipt else _FINAL_STATUS
        loop = asyncio.get_running_loop()
        deadline = loop.time() + args.timeout
        # The result comes from the worker, statuses and receipts from Catapult's callbacks
        # through the receiver: either may come first. The wait ends on the final one once the
        # result is in too (or at the deadline, with the final one's status).
        ended: int | None = None
        result_seen = False
        while True:
            try:
                message = await subscription.next(timeout_s=max(0.0, deadline - loop.time()))
            except TimeoutError:
                if ended is not None:
                    return ended
                waited = "a delivery receipt" if args.receipt else "its final status"
                print(
                    f"bridge: no {waited} for command {command_id} within {args.timeout:g} s "
                    "(it may still come: `bridge tail` follows every event)",
                    file=sys.stderr,
                )
                return 1
            await subscription.ack(message)
            if _correlation(message.body) != command_id:
                continue  # another command's event
            key = message.routing_key or ""
            if args.json:
                print(event_json(key, message.body), flush=True)
            else:
                print(event_line(key, message.body, timestamp=message.timestamp), flush=True)
            if key == f"{SEND_RESULT_PREFIX}.failed":
                return 1
            result_seen = result_seen or key.startswith(f"{SEND_RESULT_PREFIX}.")
            if key in final:
                ended = final[key]
            if ended is not None and (result_seen or ended != 0):
                return ended


def _correlation(body: bytes) -> str | None:
    try:
        event = orjson.loads(body)
    except orjson.JSONDecodeError:
        return None
    value = event.get("correlationid") if isinstance(event, dict) else None
    return value if isinstance(value, str) else None


__all__ = ["add_parser", "build_command", "send"]

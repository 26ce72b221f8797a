"""What the bridge logs: the formatters, and the one line per message a person follows at INFO.

The per-message lines are checked end to end: a callback posted to a real receiver, commands run
by a real worker against the simulator, each line awaited with a deadline on the logger that
carries it.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Callable, Iterator
from typing import Any

import aiohttp
import orjson
import pytest

from bridge.logs import (
    CALLBACKS_LOGGER,
    PER_MESSAGE_LOGGERS,
    RESULTS_LOGGER,
    JsonFormatter,
    PlainFormatter,
    apply_levels,
    keep_message_bodies_out,
)
from bridge.settings import LogSettings, Settings
from tests.fixtures.receiver import AUTH_HEADERS, CREDENTIALS, MakeReceiver
from tests.fixtures.worker import MakeWorkerEnv, send_body

INBOUND_SMS: dict[str, Any] = {
    "eventType": "sms",
    "direction": "in",
    "messageId": "m-logline2345abcdefghijklm",
    "from": "+13233326955",
    "to": "+13865245000",
    "text": "Example",
    "applicationId": "a-rj7jf3fz7teaqupveqpug3i",
    "time": "2012-11-14T16:13:06.076Z",
    "state": "received",
}


def _record(msg: str, **extra: Any) -> logging.LogRecord:
    record = logging.makeLogRecord({"name": "bridge.test", "levelname": "INFO", "msg": msg})
    record.__dict__.update(extra)
    return record


def test_plain_lines_append_extras_quoting_values_with_spaces() -> None:
    record = _record(
        "command finished", outcome="failed", detail='no "text" given', empty="", missing=None
    )
    line = PlainFormatter().format(record)
    assert line.endswith(
        'bridge.test: command finished outcome=failed detail="no \\"text\\" given" empty=""'
    )
    assert "missing" not in line


def test_json_lines_carry_extras_as_fields_and_leave_out_none() -> None:
    record = _record("callback stored", event_id="e-1", routing_key="inbound.sms", command_id=None)
    entry = orjson.loads(JsonFormatter().format(record))
    assert entry["message"] == "callback stored"
    assert entry["logger"] == "bridge.test"
    assert (entry["event_id"], entry["routing_key"]) == ("e-1", "inbound.sms")
    assert "command_id" not in entry


class Lines(logging.Handler):
    """Records of the per-message loggers; ``await lines.first(predicate)`` waits for one."""

    def __init__(self) -> None:
        super().__init__(logging.DEBUG)
        self.records: list[logging.LogRecord] = []
        self._changed = asyncio.Condition()
        self._loop = asyncio.get_running_loop()

    def emit(self, record: logging.LogRecord) -> None:
        self.records.append(record)
        self._loop.create_task(self._notify())

    async def _notify(self) -> None:
        async with self._changed:
            self._changed.notify_all()

    async def first(
        self, predicate: Callable[[logging.LogRecord], bool], timeout_s: float = 10.0
    ) -> logging.LogRecord:
        def found() -> logging.LogRecord | None:
            return next((r for r in self.records if predicate(r)), None)

        async with asyncio.timeout(timeout_s), self._changed:
            await self._changed.wait_for(lambda: found() is not None)
        record = found()
        assert record is not None
        return record


def _about(command_id: str | None) -> Callable[[logging.LogRecord], bool]:
    return lambda record: getattr(record, "command_id", None) == command_id


@pytest.fixture
def levels() -> Iterator[Callable[[LogSettings], None]]:
    """``levels(LogSettings(...))`` applies those levels; the previous ones come back after."""
    names = ["", "aiormq", "aio_pika", *PER_MESSAGE_LOGGERS]
    saved = {name: logging.getLogger(name).level for name in names}
    yield apply_levels
    for name, level in saved.items():
        logging.getLogger(name).setLevel(level)


@pytest.fixture
async def lines() -> Any:
    handler = Lines()
    for name in PER_MESSAGE_LOGGERS:
        logging.getLogger(name).addHandler(handler)
    yield handler
    for name in PER_MESSAGE_LOGGERS:
        logging.getLogger(name).removeHandler(handler)


async def test_each_callback_stored_is_one_info_line(
    make_settings: Callable[..., Settings],
    make_receiver: MakeReceiver,
    levels: Callable[[LogSettings], None],
    lines: Lines,
) -> None:
    levels(LogSettings(level="INFO"))
    server = await make_receiver(make_settings(receiver=CREDENTIALS))
    async with (
        aiohttp.ClientSession(timeout=aiohttp.ClientTimeout(total=15)) as client,
        client.post(server.callback_url, json=INBOUND_SMS, headers=AUTH_HEADERS) as response,
    ):
        assert response.status == 200
        answer = await response.json()

    record = await lines.first(lambda r: r.name == CALLBACKS_LOGGER)
    assert record.levelno == logging.INFO
    assert record.getMessage() == "callback stored"
    fields = vars(record)
    assert fields["outcome"] == "published"
    assert fields["routing_key"] == "inbound.sms"
    assert fields["event_id"] == answer["id"]
    assert fields["message_id"] == INBOUND_SMS["messageId"]


async def test_each_command_result_is_one_line_and_a_dead_letter_warns_with_its_reason(
    make_worker_env: MakeWorkerEnv, levels: Callable[[LogSettings], None], lines: Lines
) -> None:
    levels(LogSettings(level="INFO"))
    env = await make_worker_env()
    sent = await env.publish(send_body("hello"))
    too_long = await env.publish(send_body("x" * 2049))
    poison = await env.publish(b"not json at all")

    record = await lines.first(_about(sent))
    assert (record.name, record.levelno, record.getMessage()) == (
        RESULTS_LOGGER,
        logging.INFO,
        "command finished",
    )
    result = await env.result(str(sent))
    assert vars(record)["outcome"] == "succeeded"
    assert vars(record)["routing_key"] == "result.send.succeeded"
    assert vars(record)["resource_id"] == result["data"]["messageId"]
    assert vars(record)["attempts"] == 1

    for command_id, reason, code in (
        (too_long, "rejected", "validation-error"),
        (poison, "invalid-command", "not-json"),
    ):
        record = await lines.first(_about(command_id))
        assert (record.name, record.levelno, record.getMessage()) == (
            RESULTS_LOGGER,
            logging.WARNING,
            "command dead-lettered",
        )
        fields = vars(record)
        assert fields["reason"] == reason
        assert fields["error_code"] == code
        assert fields["outcome"] == "failed"
        assert fields["routing_key"] == "result.send.failed"
        dead_queue = env.topology.dead_letter_queue(env.topology.send_queue)
        assert fields["dead_letter_queue"] == dead_queue
    # One line per command, no more.
    assert sorted(str(getattr(r, "command_id", "")) for r in lines.records) == sorted(
        str(c) for c in (sent, too_long, poison)
    )


async def test_per_message_off_keeps_only_the_dead_letter_warnings(
    make_worker_env: MakeWorkerEnv, levels: Callable[[LogSettings], None], lines: Lines
) -> None:
    levels(LogSettings(level="INFO", per_message=False))
    assert not logging.getLogger(CALLBACKS_LOGGER).isEnabledFor(logging.INFO)
    env = await make_worker_env()
    sent = await env.publish(send_body("hello"))
    await env.result(str(sent))
    failed = await env.publish(send_body("x" * 2049))

    record = await lines.first(_about(failed))
    assert record.levelno == logging.WARNING
    assert all(r.levelno >= logging.WARNING for r in lines.records)


async def test_the_amqp_client_never_logs_a_message_body(amqp_url: str, unique: str) -> None:
    """A mandatory publish nobody routes, on a channel without confirms (a transactional one):
    aiormq logs the returned message it cannot place, and the line must not hold its body."""
    import aiormq

    keep_message_bodies_out()
    seen = asyncio.Event()
    lines: list[str] = []

    class Catch(logging.Handler):
        def emit(self, record: logging.LogRecord) -> None:
            lines.append(self.format(record))
            seen.set()

    handler = Catch(logging.DEBUG)
    handler.setFormatter(PlainFormatter())
    channel_log = logging.getLogger("aiormq.channel")
    channel_log.addHandler(handler)
    connection = await aiormq.connect(amqp_url)
    try:
        channel = await connection.channel(publisher_confirms=False)
        body = b'{"number": "+19195550100", "password": "pw-dashboard-secret"}'
        await channel.basic_publish(
            body, exchange="", routing_key=f"{unique}.nowhere", mandatory=True
        )
        async with asyncio.timeout(5):
            await seen.wait()
    finally:
        channel_log.removeHandler(handler)
        await connection.close()
    assert any("body not logged" in line for line in lines), lines
    assert not any("pw-dashboard-secret" in line for line in lines)

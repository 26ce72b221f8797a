"""Command parsing and result models: tables, no I/O."""

from __future__ import annotations

import orjson
import pytest

from bridge.events.commands import (
    CommandKind,
    IdSource,
    ImportCommand,
    ParsedCommand,
    Poison,
    SendCommand,
    parse_command,
    redacted_body,
)
from bridge.events.results import SendResult

SEND = CommandKind.SEND
IMPORT = CommandKind.IMPORT
PASSWORD = "hunter2-dashboard-secret"
OK_SEND = b'{"from": "+19195551212", "to": "+1", "text": "x"}'


def _body(**fields: object) -> bytes:
    return orjson.dumps(fields)


def test_a_plain_catapult_message_body_is_a_send_command() -> None:
    # The example body of Catapult's POST /messages docs, with every optional field.
    body = {
        "from": "+19195551212",
        "to": "+19195553434",
        "text": "Good morning, this is a test message",
        "media": "https://example.com/a.jpg",
        "receiptRequested": "all",
        "callbackUrl": "https://example.com/cb",
        "callbackHttpMethod": "get",
        "callbackTimeout": "2000",
        "fallbackUrl": "https://example.com/fb",
        "tag": "mine",
    }
    parsed = parse_command(SEND, orjson.dumps(body), message_id="m-1")
    assert isinstance(parsed, ParsedCommand)
    command = parsed.command
    assert isinstance(command, SendCommand)
    assert command.from_ == "+19195551212"
    assert command.media == ["https://example.com/a.jpg"]
    assert command.callback_http_method == "GET"
    assert command.callback_timeout == 2000
    assert (parsed.command_id, parsed.id_source) == ("m-1", IdSource.MESSAGE_ID)


def test_explicit_nulls_are_accepted_like_the_python_sdk_sends_them() -> None:
    body = _body(**{"from": "+19195551212"}, to="+1", text="x", media=None, tag=None)
    assert isinstance(parse_command(SEND, body), ParsedCommand)


@pytest.mark.parametrize(
    ("message_id", "body_id", "expected_id", "source"),
    [
        ("amqp-id", "body-id", "amqp-id", IdSource.MESSAGE_ID),
        (None, "body-id", "body-id", IdSource.BODY),
        ("", "body-id", "body-id", IdSource.BODY),
    ],
)
def test_command_id_sources(
    message_id: str | None, body_id: str, expected_id: str, source: IdSource
) -> None:
    body = _body(**{"from": "+19195551212"}, to="+19195553434", text="hi", id=body_id)
    parsed = parse_command(SEND, body, message_id=message_id)
    assert isinstance(parsed, ParsedCommand)
    assert (parsed.command_id, parsed.id_source) == (expected_id, source)


def test_derived_id_is_deterministic_and_ignores_key_order() -> None:
    a = b'{"from": "+19195551212", "to": "+19195553434", "text": "hi"}'
    b = b'{"text": "hi", "to": "+19195553434", "from": "+19195551212"}'
    c = b'{"text": "ho", "to": "+19195553434", "from": "+19195551212"}'
    ids = [parse_command(SEND, body) for body in (a, b, c)]
    assert all(isinstance(p, ParsedCommand) and p.id_source is IdSource.DERIVED for p in ids)
    first, second, third = (p.command_id for p in ids if isinstance(p, ParsedCommand))
    assert first == second != third


@pytest.mark.parametrize(
    ("kind", "body", "message_type", "reason"),
    [
        (SEND, b"not json at all", None, "not-json"),
        (SEND, b"", None, "not-json"),
        (SEND, b"[1, 2]", None, "not-an-object"),
        (SEND, b'"text"', None, "not-an-object"),
        (SEND, b'{"from": "+19195551212", "to": "+1"}', None, "invalid-command"),
        (SEND, b'{"from": 19195551212, "to": "+1", "text": "x"}', None, "invalid-command"),
        (SEND, b'{"from": "+19195551212", "to": ["+1"], "text": "x"}', None, "invalid-command"),
        (SEND, b'{"from": "+19195551212", "to": "+1", "text": 5}', None, "invalid-command"),
        (SEND, b'{"from": "555", "to": "+1", "text": "x"}', None, "invalid-command"),
        (SEND, b'{"from": "+19195551212", "to": "+1", "text": "x", "colour": 1}', None,
         "invalid-command"),
        (SEND, b'{"from": "+19195551212", "to": "+1", "text": "x",'
               b' "receiptRequested": "sometimes"}', None, "invalid-command"),
        # 200 characters, 400 bytes: too long for the AMQP message_id the id becomes.
        (SEND, _body(**{"from": "+19195551212", "to": "+1", "text": "x", "id": "é" * 200}), None,
         "invalid-command"),
        (SEND, OK_SEND, "reboot", "unknown-command-type"),
        (SEND, OK_SEND, "import", "unknown-command-type"),
        (IMPORT, b'{"number": "+19195551212", "applicationId": "a-1"}', None, "invalid-command"),
        (IMPORT, b'{"number": "9195551212", "applicationId": "a-1", "name": "n"}', None,
         "invalid-command"),
    ],
)  # fmt: skip
def test_poison(kind: CommandKind, body: bytes, message_type: str | None, reason: str) -> None:
    parsed = parse_command(kind, body, message_id="m-1", message_type=message_type)
    assert isinstance(parsed, Poison)
    assert parsed.reason == reason
    assert parsed.detail


@pytest.mark.parametrize("message_type", [None, "send", "io.catapult-bridge.command.send.v1"])
def test_known_command_types(message_type: str | None) -> None:
    body = b'{"from": "+19195551212", "to": "+1", "text": "x"}'
    assert isinstance(parse_command(SEND, body, message_type=message_type), ParsedCommand)


def test_import_command_credentials_never_show() -> None:
    body = _body(
        number="+19195550100",
        applicationId="a-1",
        name="main",
        accountId="9900000",
        userName="dash",
        password=PASSWORD,
    )
    parsed = parse_command(IMPORT, body)
    assert isinstance(parsed, ParsedCommand)
    command = parsed.command
    assert isinstance(command, ImportCommand)
    assert command.password is not None
    assert command.password.get_secret_value() == PASSWORD
    assert PASSWORD not in repr(command)
    assert "dash" not in repr(command)
    # The derived id does not depend on the credentials.
    other = parse_command(IMPORT, _body(number="+19195550100", applicationId="a-1", name="main"))
    assert isinstance(other, ParsedCommand)
    assert other.command_id == parsed.command_id


def test_a_bad_password_type_never_reaches_the_poison_detail() -> None:
    body = _body(number="+19195550100", applicationId="a-1", name="n", password=[PASSWORD])
    parsed = parse_command(IMPORT, body)
    assert isinstance(parsed, Poison)
    assert PASSWORD not in parsed.detail


@pytest.mark.parametrize(
    "body",
    [
        _body(number="+1", password=PASSWORD, userName="u", accountId="9"),
        _body(number="+1", provider={"properties": {"Password": PASSWORD, "accountId": "9"}}),
        _body(list=[{"PASSWORD": PASSWORD}]),
    ],
)
def test_dead_letter_bodies_of_imports_lose_credentials(body: bytes) -> None:
    kept = redacted_body(IMPORT, body)
    assert PASSWORD.encode() not in kept
    assert b"accountId" not in kept
    assert orjson.loads(kept)


def test_an_import_published_to_the_send_queue_loses_its_credentials_too() -> None:
    body = _body(number="+19195550100", applicationId="a-1", name="n", password=PASSWORD)
    kept = redacted_body(SEND, body)
    assert PASSWORD.encode() not in kept
    assert orjson.loads(kept) == {"number": "+19195550100", "applicationId": "a-1", "name": "n"}
    plain = _body(**{"from": "+19195550100", "to": "+19195550101", "text": "x", "extra": 1})
    assert redacted_body(SEND, plain) == plain  # a send body without credentials: as it came


def test_unreadable_import_bodies_are_not_kept_but_send_bodies_are() -> None:
    assert redacted_body(IMPORT, b"password=" + PASSWORD.encode()) == b""
    assert redacted_body(SEND, b"anything") == b"anything"


def test_result_data_uses_wire_names_and_leaves_out_nothing_set() -> None:
    result = SendResult(
        command_id="c-1",
        command_id_source=IdSource.DERIVED,
        attempts=1,
        outcome="succeeded",
        message_id="m-1",
        from_="+19195551212",
    )
    assert result.to_data() == {
        "commandId": "c-1",
        "commandIdSource": "derived",
        "attempts": 1,
        "outcome": "succeeded",
        "messageId": "m-1",
        "from": "+19195551212",
        "recovered": False,
    }

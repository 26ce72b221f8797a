"""Property-based tests of the command parser (``bridge.events.commands``), no I/O.

``parse_command`` (``bridge.events.commands``) gets generated bodies (send and import commands,
mostly valid, any field missing, junk or of the wrong type, unknown fields; any JSON; any bytes),
AMQP message ids and ``type`` values. Properties:

- it never raises: a command, or a ``Poison`` with one of its documented reasons;
- a command's id fits an AMQP ``message_id`` (it names every retry and dead letter), and says
  where it came from;
- an accepted command round-trips: written back as JSON it parses to the same command (and the
  same derived id, which leaves the Dashboard credentials out);
- no Dashboard password appears in a poison detail or a redacted dead-letter body.

Inputs tried per run (derandomized): send bodies 1,000, import bodies 600, any bytes 300.
"""

from __future__ import annotations

from typing import Any, get_args, get_type_hints

import orjson
from hypothesis import given
from hypothesis import strategies as st

from bridge.events.commands import (
    COMMAND_TYPES,
    CommandKind,
    IdSource,
    ImportCommand,
    ParsedCommand,
    Poison,
    derive_command_id,
    parse_command,
    redacted_body,
)
from tests.fuzzing import fuzz_settings
from tests.strategies import (
    ANY_TEXT,
    SECRET_MARK,
    import_commands,
    json_values,
    message_ids,
    send_commands,
)

POISON_REASONS = set(get_args(get_type_hints(Poison)["reason"]))
message_types = st.none() | st.sampled_from(sorted(COMMAND_TYPES)) | ANY_TEXT


def _password_of(body: dict[str, Any]) -> str | None:
    value = body.get("password")
    return value if isinstance(value, str) and value.startswith(SECRET_MARK) else None


def check(
    kind: CommandKind, body: bytes, *, message_id: str | None, message_type: str | None
) -> ParsedCommand | Poison:
    parsed = parse_command(kind, body, message_id=message_id, message_type=message_type)
    if isinstance(parsed, Poison):
        assert parsed.reason in POISON_REASONS
        assert isinstance(parsed.detail, str)
        assert parsed.detail
        return parsed
    assert parsed.kind is kind
    assert parsed.command_id
    assert len(parsed.command_id.encode("utf-8")) <= 255, "the id must fit an AMQP message_id"
    if message_id:
        assert (parsed.command_id, parsed.id_source) == (message_id, IdSource.MESSAGE_ID)
    elif parsed.command.id is not None:
        assert (parsed.command_id, parsed.id_source) == (parsed.command.id, IdSource.BODY)
    else:
        assert parsed.id_source is IdSource.DERIVED
    # Round trip: the command written back (credentials included) is the same command.
    written = parsed.command.model_dump(mode="json", by_alias=True, exclude_none=True)
    if isinstance(parsed.command, ImportCommand) and parsed.command.password is not None:
        written["password"] = parsed.command.password.get_secret_value()
    again = parse_command(kind, orjson.dumps(written))
    assert isinstance(again, ParsedCommand)
    assert again.command == parsed.command
    assert derive_command_id(kind, again.command) == derive_command_id(kind, parsed.command)
    return parsed


def assert_no_password(body: dict[str, Any], kind: CommandKind, raw: bytes, parsed: Any) -> None:
    password = _password_of(body)
    if password is None:
        return
    assert password not in redacted_body(kind, raw).decode("utf-8", "replace")
    if isinstance(parsed, Poison):
        assert password not in parsed.detail
    else:
        assert password not in repr(parsed)


@fuzz_settings(max_examples=1000)
@given(body=send_commands, message_id=message_ids, message_type=message_types)
def test_send_commands_parse_and_round_trip_or_are_poison(
    body: dict[str, Any], message_id: str | None, message_type: str | None
) -> None:
    raw = orjson.dumps(body)
    check(CommandKind.SEND, raw, message_id=message_id, message_type=message_type)


@fuzz_settings(max_examples=600)
@given(body=import_commands, message_id=message_ids, message_type=message_types)
def test_import_commands_parse_round_trip_and_never_show_the_password(
    body: dict[str, Any], message_id: str | None, message_type: str | None
) -> None:
    raw = orjson.dumps(body)
    parsed = check(CommandKind.IMPORT, raw, message_id=message_id, message_type=message_type)
    assert_no_password(body, CommandKind.IMPORT, raw, parsed)
    if isinstance(parsed, ParsedCommand) and parsed.id_source is IdSource.DERIVED:
        # The derived id leaves the credentials out: another password, the same id.
        other = {**body, "password": SECRET_MARK + "other"}
        again = parse_command(CommandKind.IMPORT, orjson.dumps(other))
        assert isinstance(again, ParsedCommand)
        assert again.command_id == parsed.command_id


@fuzz_settings(max_examples=300)
@given(
    kind=st.sampled_from(list(CommandKind)),
    raw=st.binary(max_size=80) | json_values.map(orjson.dumps),
    message_id=message_ids,
    message_type=message_types,
)
def test_any_bytes_are_a_command_or_poison(
    kind: CommandKind, raw: bytes, message_id: str | None, message_type: str | None
) -> None:
    check(kind, raw, message_id=message_id, message_type=message_type)
    redacted_body(kind, raw)

"""The commands applications publish for the worker, and how one AMQP message becomes one command.

Two commands, one queue each: ``SendCommand`` on the send queue (a plain Catapult v1 message body is
a valid one) and ``ImportCommand`` on the import queue (one Dashboard number). ``parse_command``
turns the body and properties of a delivery into a ``ParsedCommand`` (the command, its id and
where the id came from) or a ``Poison`` value naming what is wrong; it never raises for bad input,
so a malformed message can be dead-lettered at once instead of crashing or looping.

Command id: the AMQP ``message_id``, else the command's ``id`` field, else a deterministic id
derived from the body (the result says which). Dashboard credentials of an import (``accountId``,
``userName``, ``password``) are optional, default to the bridge's configured ones, and never appear
in a repr, a poison reason, a derived id or a dead letter (``redacted_body``).

Pure code; no I/O here.
"""

from __future__ import annotations

from dataclasses import dataclass
from enum import StrEnum
from typing import Annotated, Any, Literal

import orjson
from pydantic import (
    AfterValidator,
    BaseModel,
    BeforeValidator,
    ConfigDict,
    Field,
    SecretStr,
    StringConstraints,
    ValidationError,
)

from bridge.events.cloudevents import deterministic_id

_AMQP_SHORTSTR_BYTES = 255


def _fits_message_id(value: str) -> str:
    # The command id becomes the message_id of retries, parked copies and dead letters: an AMQP
    # short string of 255 bytes. A longer one could never be republished, so the command would
    # go back to the queue, and be sent again, forever.
    size = len(value.encode("utf-8"))
    if size > _AMQP_SHORTSTR_BYTES:
        raise ValueError(
            f"the id is {size} bytes in UTF-8; at most {_AMQP_SHORTSTR_BYTES} fit in an AMQP "
            "message_id"
        )
    return value


E164 = Annotated[str, StringConstraints(pattern=r"^\+[1-9][0-9]{1,14}$")]
CommandId = Annotated[
    str, StringConstraints(min_length=1, max_length=255), AfterValidator(_fits_message_id)
]

# Keys of an import command that hold Dashboard credentials: never kept, echoed or logged.
CREDENTIAL_KEYS = frozenset({"accountId", "userName", "password"})
_CREDENTIAL_KEYS_LOWER = frozenset(k.lower() for k in CREDENTIAL_KEYS)
_POISON_DETAIL_CHARS = 500


class CommandKind(StrEnum):
    SEND = "send"
    IMPORT = "import"


# AMQP ``type`` values a producer may set; absent, the queue decides the command.
COMMAND_TYPES: dict[str, CommandKind] = {
    "io.catapult-bridge.command.send.v1": CommandKind.SEND,
    "io.catapult-bridge.command.import.v1": CommandKind.IMPORT,
    "send": CommandKind.SEND,
    "import": CommandKind.IMPORT,
}


class IdSource(StrEnum):
    """Where a command's id came from."""

    MESSAGE_ID = "message-id"  # the AMQP message_id property
    BODY = "body"  # the command's own ``id`` field
    DERIVED = "derived"  # neither was given: a hash of the command


def _media_list(value: Any) -> Any:
    """``media`` may be one URL or a list of them, as in Catapult's own API."""
    return [value] if isinstance(value, str) else value


def _upper(value: Any) -> Any:
    return value.upper() if isinstance(value, str) else value


class _Command(BaseModel):
    model_config = ConfigDict(frozen=True, extra="forbid", populate_by_name=True)

    id: CommandId | None = Field(
        default=None,
        description="Command id, used when the AMQP message has no message_id.",
    )


class SendCommand(_Command):
    """Send one SMS or MMS: the body of Catapult v1 ``POST /messages`` (plus an optional ``id``)."""

    from_: E164 = Field(alias="from", description="One of the account's numbers, E.164.")
    to: Annotated[str, StringConstraints(min_length=1)] = Field(
        description="One recipient, E.164 (Catapult v1 sends to a single number)."
    )
    text: str = Field(description="Up to 2,048 characters; Catapult validates the length.")
    media: Annotated[list[str] | None, BeforeValidator(_media_list)] = Field(
        default=None, description="One media URL or a list of them (MMS)."
    )
    receipt_requested: Literal["none", "all", "error"] | None = Field(
        default=None, alias="receiptRequested"
    )
    callback_url: str | None = Field(default=None, alias="callbackUrl")
    callback_http_method: Annotated[Literal["GET", "POST"] | None, BeforeValidator(_upper)] = Field(
        default=None, alias="callbackHttpMethod"
    )
    callback_timeout: Annotated[int, Field(ge=1, le=10_000)] | None = Field(
        default=None, alias="callbackTimeout", description="Milliseconds, at most 10,000."
    )
    fallback_url: str | None = Field(default=None, alias="fallbackUrl")
    tag: str | None = Field(
        default=None, description="Your own tag; kept next to the command id in Catapult's tag."
    )


class ImportCommand(_Command):
    """Import one number from a Bandwidth Dashboard account into Catapult."""

    number: E164
    application_id: Annotated[str, StringConstraints(min_length=1)] = Field(alias="applicationId")
    name: Annotated[str, StringConstraints(min_length=1)]
    account_id: str | None = Field(
        default=None,
        alias="accountId",
        repr=False,
        description="Dashboard account id; defaults to the bridge's configured one.",
    )
    user_name: str | None = Field(
        default=None,
        alias="userName",
        repr=False,
        description="Dashboard user name; defaults to the bridge's configured one.",
    )
    password: SecretStr | None = Field(
        default=None,
        repr=False,
        description="Dashboard password; defaults to the bridge's configured one.",
    )


Command = SendCommand | ImportCommand
_MODELS: dict[CommandKind, type[SendCommand] | type[ImportCommand]] = {
    CommandKind.SEND: SendCommand,
    CommandKind.IMPORT: ImportCommand,
}


@dataclass(frozen=True, slots=True)
class ParsedCommand:
    kind: CommandKind
    command: Command
    command_id: str
    id_source: IdSource


@dataclass(frozen=True, slots=True)
class Poison:
    """Input that can never become a command. ``reason`` is a stable word, ``detail`` says more."""

    reason: Literal["not-json", "not-an-object", "invalid-command", "unknown-command-type"]
    detail: str


def _describe(exc: ValidationError) -> str:
    # Only locations and messages: pydantic's ``input`` could be a Dashboard password.
    parts = []
    for error in exc.errors(include_input=False, include_url=False):
        where = ".".join(str(p) for p in error["loc"]) or "(body)"
        parts.append(f"{where}: {error['msg']}")
    text = "; ".join(parts)
    return text if len(text) <= _POISON_DETAIL_CHARS else text[:_POISON_DETAIL_CHARS] + "…"


def derive_command_id(kind: CommandKind, command: Command) -> str:
    """A stable id from what the command asks for (credentials left out)."""
    fields = command.model_dump(
        mode="json", by_alias=True, exclude_none=True, exclude=set(_credential_fields(command))
    )
    return deterministic_id(
        "command", str(kind), orjson.dumps(fields, option=orjson.OPT_SORT_KEYS).decode()
    )


def _credential_fields(command: Command) -> tuple[str, ...]:
    return ("account_id", "user_name", "password") if isinstance(command, ImportCommand) else ()


def parse_command(
    queue_kind: CommandKind,
    body: bytes,
    *,
    message_id: str | None = None,
    message_type: str | None = None,
) -> ParsedCommand | Poison:
    """The command a delivery on ``queue_kind``'s queue carries, or why there is none."""
    if message_type:
        declared = COMMAND_TYPES.get(message_type)
        if declared is None:
            known = ", ".join(sorted(COMMAND_TYPES))
            return Poison("unknown-command-type", f"type {message_type!r} is not one of {known}")
        if declared is not queue_kind:
            return Poison(
                "unknown-command-type",
                f"a {declared} command cannot be handled on the {queue_kind} queue",
            )
    try:
        data = orjson.loads(body)
    except orjson.JSONDecodeError as exc:
        return Poison("not-json", f"the body is not JSON: {exc.msg} at position {exc.pos}")
    if not isinstance(data, dict):
        return Poison("not-an-object", f"the body is a JSON {type(data).__name__}, not an object")
    try:
        command = _MODELS[queue_kind].model_validate(data)
    except ValidationError as exc:
        return Poison("invalid-command", _describe(exc))
    if message_id:
        return ParsedCommand(queue_kind, command, message_id, IdSource.MESSAGE_ID)
    if command.id is not None:
        return ParsedCommand(queue_kind, command, command.id, IdSource.BODY)
    return ParsedCommand(
        queue_kind, command, derive_command_id(queue_kind, command), IdSource.DERIVED
    )


def redacted_body(queue_kind: CommandKind, body: bytes) -> bytes:
    """The body as a dead letter may keep it: every Dashboard credential dropped.

    Credential keys are dropped at any depth and in any letter case (a raw Catapult import body
    carries them under ``provider.properties``), on either queue: an import published to the send
    queue by mistake carries its password there. An import body that is not JSON cannot be
    searched, so it is not kept at all; a send body that is not JSON is kept as it is (it is the
    application's own text, and no import). The dead letter's headers still say what was wrong.
    """
    try:
        data = orjson.loads(body)
    except orjson.JSONDecodeError:
        return body if queue_kind is CommandKind.SEND else b""
    if queue_kind is CommandKind.SEND and not _has_credentials(data):
        return body  # as it came, byte for byte
    return orjson.dumps(_without_credentials(data))


def _has_credentials(value: Any) -> bool:
    if isinstance(value, dict):
        return any(
            (isinstance(k, str) and k.lower() in _CREDENTIAL_KEYS_LOWER) or _has_credentials(v)
            for k, v in value.items()
        )
    if isinstance(value, list):
        return any(_has_credentials(v) for v in value)
    return False


def _without_credentials(value: Any) -> Any:
    if isinstance(value, dict):
        return {
            k: _without_credentials(v)
            for k, v in value.items()
            if not (isinstance(k, str) and k.lower() in _CREDENTIAL_KEYS_LOWER)
        }
    if isinstance(value, list):
        return [_without_credentials(v) for v in value]
    return value


SCHEMA_MODELS: dict[str, type[BaseModel]] = {
    "command-send": SendCommand,
    "command-import": ImportCommand,
}

__all__ = [
    "COMMAND_TYPES",
    "CREDENTIAL_KEYS",
    "SCHEMA_MODELS",
    "Command",
    "CommandKind",
    "IdSource",
    "ImportCommand",
    "ParsedCommand",
    "Poison",
    "SendCommand",
    "derive_command_id",
    "parse_command",
    "redacted_body",
]

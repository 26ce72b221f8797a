"""The ``data`` of the result events the worker publishes: one per command, whatever happened.

``SendResult`` and ``ImportResult`` are what an application reads in a result event (CloudEvents
types ``...command.send.*`` and ``...command.import.*``): the command id and where it came from, the
outcome, the Catapult id and ``Location`` on success, and on failure why (``reason``) with
Catapult's last error (``category``, ``code``, ``message``, ``status``) and the attempts made.
Dashboard credentials have no field here, so a result cannot echo them.

Pure models; no I/O here.
"""

from __future__ import annotations

from enum import StrEnum
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field

from bridge.events.commands import IdSource


class FailureReason(StrEnum):
    """Why a command failed, as a stable word."""

    REJECTED = "rejected"  # Catapult refused the request (4xx): it cannot succeed as it is
    RETRIES_EXHAUSTED = "retries-exhausted"  # transient failures up to the maximum of attempts
    # The message may or may not have been sent: looking it up kept failing.
    UNKNOWN_OUTCOME = "unknown-outcome"
    INVALID_COMMAND = "invalid-command"  # the message is not a valid command (poison)
    MISSING_CREDENTIALS = "missing-credentials"  # an import without Dashboard credentials
    # Given back to the broker ``broker.delivery_limit`` times (a crash loop, a consumer that
    # kept failing): a send may or may not have been sent.
    DELIVERY_LIMIT = "delivery-limit"
    EXPIRED = "expired"  # past its expiry or the maximum age before it could be sent


class ResultError(BaseModel):
    """Catapult's last error for a command, or the worker's own finding for poison input."""

    model_config = ConfigDict(frozen=True, extra="forbid")

    category: str | None = None
    code: str | None = None
    message: str
    status: int | None = None


class _Result(BaseModel):
    model_config = ConfigDict(frozen=True, extra="forbid", populate_by_name=True)

    command_id: str = Field(alias="commandId")
    command_id_source: IdSource = Field(alias="commandIdSource")
    attempts: int = Field(ge=0, description="Requests made to Catapult for this command.")
    reason: FailureReason | None = Field(default=None, description="Set when the command failed.")
    error: ResultError | None = None

    def to_data(self) -> dict[str, Any]:
        return self.model_dump(mode="json", by_alias=True, exclude_none=True)


class SendResult(_Result):
    outcome: Literal["succeeded", "failed"]
    message_id: str | None = Field(default=None, alias="messageId")
    location: str | None = None
    from_: str | None = Field(default=None, alias="from")
    to: str | None = None
    tag: str | None = Field(default=None, description="The command's own tag, as given.")
    recovered: bool = Field(
        default=False,
        description="True when the message was found by looking it up after an outcome that "
        "did not say whether it was sent (it was not sent again).",
    )


class ImportResult(_Result):
    outcome: Literal["succeeded", "already-imported", "failed"]
    number: str | None = None
    number_id: str | None = Field(default=None, alias="numberId")
    location: str | None = None
    application_id: str | None = Field(default=None, alias="applicationId")
    name: str | None = None


SCHEMA_MODELS: dict[str, type[BaseModel]] = {
    "result-send": SendResult,
    "result-import": ImportResult,
}

__all__ = [
    "SCHEMA_MODELS",
    "FailureReason",
    "ImportResult",
    "ResultError",
    "SendResult",
]

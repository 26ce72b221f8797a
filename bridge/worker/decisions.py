"""What an answer from Catapult means for a command: the worker's decisions as pure functions.

``classify`` turns one call's error into an ``Outcome`` value; the consumer turns every outcome into
exactly one disposition of the AMQP message (see ``settle`` in ``consumer.py``):

    Done             succeeded: result, then ack
    AlreadyImported  409 duplicate-number on an import: its own result, then ack
    Throttle         403 message-rate-limit* / 429: pause the scope, try again (no attempt spent)
    Retry            transport errors (nothing left), 5xx to an import or a look-up: delayed
                     retry through a broker delay tier
    Unavailable      Catapult is down (``outage.py``) and this failure is a sign of it: the
                     command goes back to its queue to wait for Catapult, no attempt spent
    Ambiguous        maybe sent: any 5xx answer to a send (the request reached a server; a 500,
                     502, 504 or plain 503 does not say the message was not created, as 503
                     message-gateway-unavailable says it may be), a connection cut or a timeout
                     after the request left: delayed retry that looks the message up before
                     sending it again
    Fail             4xx validation, authentication, conflict, or attempts used up: failed result
                     and dead letter

``attempt`` counts every request made for the command (sends, imports and look-ups) that failed for
a reason that may be its own; a transient failure at ``max_attempts`` fails the command, except an
ambiguous send, which always gets its look-up. A request that never reached Catapult (refused,
timed out before it was sent) is never the command's fault: it is retried without spending an
attempt (``spends_attempt``), and enough of them in a row declare Catapult down. The retry delay
is exponential with jitter (the caller passes the random draw, so tables can test it); the
broker's delay tiers quantise it. No I/O and no clock here.
"""

from __future__ import annotations

from dataclasses import dataclass
from enum import StrEnum

from bridge.catapult.errors import (
    AmbiguousError,
    ApiError,
    CatapultError,
    ConflictError,
    RateLimitedError,
    RateLimitScope,
    ServerError,
    TransportError,
)
from bridge.events.results import FailureReason, ResultError
from bridge.settings import WorkerSettings

DUPLICATE_NUMBER = "duplicate-number"


class Operation(StrEnum):
    SEND = "send"  # POST /messages, single or batch
    IMPORT = "import"  # POST /phoneNumbers
    LOOKUP = "lookup"  # GET /messages, looking for a command's message


class PauseScope(StrEnum):
    """What a rate limit stops: every send, one number's sends, or a resource family."""

    ACCOUNT = "account"
    NUMBER = "number"
    SENDS = "sends"  # the POST /messages family after a 429
    NUMBER_REQUESTS = "number-requests"  # POST /phoneNumbers after a 429
    LOOKUPS = "lookups"  # GET /messages after a 429


_RESOURCE_SCOPES = {
    Operation.SEND: PauseScope.SENDS,
    Operation.IMPORT: PauseScope.NUMBER_REQUESTS,
    Operation.LOOKUP: PauseScope.LOOKUPS,
}


@dataclass(frozen=True, slots=True)
class Done:
    resource_id: str
    location: str
    recovered: bool = False  # found by a lookup, not sent again


@dataclass(frozen=True, slots=True)
class AlreadyImported:
    error: ResultError


@dataclass(frozen=True, slots=True)
class Throttle:
    scope: PauseScope
    key: str | None  # the number, for scope NUMBER
    until_epoch_s: float | None  # from X-RateLimit-Reset; None: the worker picks the pause
    error: ResultError


@dataclass(frozen=True, slots=True)
class Retry:
    delay_s: float
    error: ResultError


@dataclass(frozen=True, slots=True)
class Ambiguous:
    delay_s: float
    error: ResultError


@dataclass(frozen=True, slots=True)
class Fail:
    reason: FailureReason
    error: ResultError


@dataclass(frozen=True, slots=True)
class Unavailable:
    """Catapult is down: wait for it in the queue. ``lookup``: the request may have been carried
    out (a 5xx answer to a send), so the command is looked up before it is sent again."""

    error: ResultError
    lookup: bool


Outcome = Done | AlreadyImported | Throttle | Retry | Ambiguous | Fail | Unavailable


@dataclass(frozen=True, slots=True)
class RetryPolicy:
    max_attempts: int
    base_delay_s: float
    max_delay_s: float

    @classmethod
    def from_settings(cls, settings: WorkerSettings) -> RetryPolicy:
        tiers = sorted(settings.retry_delays_s)
        return cls(max_attempts=settings.max_attempts, base_delay_s=tiers[0], max_delay_s=tiers[-1])

    def backoff_s(self, attempt: int, jitter: float) -> float:
        """Delay before attempt ``attempt + 1``: doubling from the base, scaled by 0.5 to 1.0."""
        exponential = self.base_delay_s * 2.0 ** max(0, attempt - 1)
        return min(self.max_delay_s, exponential) * (0.5 + 0.5 * min(max(jitter, 0.0), 1.0))


def error_of(error: CatapultError) -> ResultError:
    """The part of a client error a result or a dead letter may carry (never a secret)."""
    return ResultError(
        category=error.category, code=error.code, message=error.message, status=error.status
    )


def classify(
    error: CatapultError,
    *,
    operation: Operation,
    sender: str | None,
    attempt: int,
    policy: RetryPolicy,
    jitter: float,
    catapult_down: bool = False,
) -> Outcome:
    """The outcome of a failed call; ``attempt`` counts the attempts made, this one included.

    ``catapult_down``: the outage detector holds Catapult down (this failure counted).
    """
    info = error_of(error)
    if isinstance(error, RateLimitedError):
        return _throttle(error, operation=operation, sender=sender, info=info)
    if catapult_down and is_sign_of_outage(error):
        sent = not isinstance(error, TransportError)
        return Unavailable(
            info, lookup=operation is Operation.LOOKUP or (sent and operation is Operation.SEND)
        )
    if isinstance(error, TransportError):
        # Nothing reached Catapult: not the command's failure, so it never uses its attempts up.
        kind = Ambiguous if operation is Operation.LOOKUP else Retry
        return kind(policy.backoff_s(attempt, jitter), info)
    if isinstance(error, ConflictError) and operation is Operation.IMPORT:
        if error.code == DUPLICATE_NUMBER:
            return AlreadyImported(info)
        return Fail(FailureReason.REJECTED, info)
    if isinstance(error, AmbiguousError):
        if operation is Operation.IMPORT:
            # Importing again is safe: Catapult answers 409 duplicate-number if it had acted.
            return _again(Retry, attempt=attempt, policy=policy, jitter=jitter, info=info)
        # Never given up on unseen: even after the last attempt, one look-up decides whether the
        # message exists (succeeded) or not (failed), so a result never says "failed" for a
        # message that went out.
        return Ambiguous(policy.backoff_s(attempt, jitter), info)
    if isinstance(error, ServerError) and operation is Operation.SEND:
        # An answer came, so the request reached a server; whatever failed there may have
        # happened after the message was stored. Only a look-up can tell.
        return Ambiguous(policy.backoff_s(attempt, jitter), info)
    if operation is Operation.LOOKUP:
        # The message may exist: look again later; a look-up refused or failing to the end
        # leaves the outcome unknown, which is what the result then says.
        if _is_refusal(error) or attempt >= policy.max_attempts:
            return Fail(FailureReason.UNKNOWN_OUTCOME, info)
        return Ambiguous(policy.backoff_s(attempt, jitter), info)
    if _is_refusal(error):
        return Fail(FailureReason.REJECTED, info)
    return _again(Retry, attempt=attempt, policy=policy, jitter=jitter, info=info)


def is_sign_of_outage(error: CatapultError) -> bool:
    """A failure that says Catapult is away rather than that the command is wrong: the request
    never reached it (refused, reset or timed out before it was sent) or it answered 5xx."""
    if isinstance(error, TransportError):
        return True
    return isinstance(error, ApiError | AmbiguousError) and (error.status or 0) >= 500


def spends_attempt(error: CatapultError | None, outcome: Outcome | None) -> bool:
    """Whether a request counts as one of the command's attempts: not a rate-limit refusal, a
    request that never reached Catapult, or a failure while Catapult is down."""
    if isinstance(outcome, Throttle | Unavailable):
        return False
    return not isinstance(error, TransportError)


def _is_refusal(error: CatapultError) -> bool:
    """A 4xx other than a rate limit: the same request can never succeed."""
    if isinstance(error, TransportError | AmbiguousError | ServerError | RateLimitedError):
        return False
    return isinstance(error, ApiError) and error.status is not None and 400 <= error.status < 500


def _throttle(
    error: RateLimitedError, *, operation: Operation, sender: str | None, info: ResultError
) -> Throttle:
    if error.scope is RateLimitScope.NUMBER:
        return Throttle(PauseScope.NUMBER, error.number or sender, None, info)
    if error.scope is RateLimitScope.ACCOUNT:
        return Throttle(PauseScope.ACCOUNT, None, None, info)
    return Throttle(_RESOURCE_SCOPES[operation], None, error.retry_at, info)


def _again(
    kind: type[Retry] | type[Ambiguous],
    *,
    attempt: int,
    policy: RetryPolicy,
    jitter: float,
    info: ResultError,
) -> Outcome:
    if attempt >= policy.max_attempts:
        return Fail(FailureReason.RETRIES_EXHAUSTED, info)
    return kind(policy.backoff_s(attempt, jitter), info)


__all__ = [
    "AlreadyImported",
    "Ambiguous",
    "Done",
    "Fail",
    "Operation",
    "Outcome",
    "PauseScope",
    "Retry",
    "RetryPolicy",
    "Throttle",
    "Unavailable",
    "classify",
    "error_of",
    "is_sign_of_outage",
    "spends_attempt",
]

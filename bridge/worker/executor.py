"""The calls to Catapult for one unit of work, and the outcome each command gets from them.

``run_sends`` handles a batch taken from the send scheduler: commands that must be looked up first
are looked up (one list request per sender), found ones are done without sending, and the rest go
out as one request (a single send, or a batch send of up to 50 with per-item results).
``run_import`` imports one number. Every call has a deadline (``worker.call_timeout_s``, besides the
client's own); a deadline passed after a send left is ambiguous, like the client's own timeouts.

Errors never fly out of here: each command gets an ``Outcome`` value (``decisions.classify``).
Attempts are counted on the delivery (every request made for it, except a rate-limit refusal, a
request that never reached Catapult and a failure while Catapult is down: ``spends_attempt``) and
travel on in headers. The end of every request is told to the ``CatapultWatch`` (``outage.py``),
which decides whether Catapult is down. Foreign exceptions are translated here, at this one
boundary.
"""

from __future__ import annotations

import asyncio
import logging
import random
import time
from collections import defaultdict
from collections.abc import Awaitable, Sequence
from typing import TypeVar

from bridge.catapult import (
    AmbiguousError,
    CatapultClient,
    CatapultError,
    Message,
    OutboundMessage,
    RateLimitedError,
    TransportError,
)
from bridge.events.commands import ImportCommand, SendCommand
from bridge.events.results import FailureReason, ResultError
from bridge.events.tag import encode_tag
from bridge.settings import CatapultSettings, WorkerSettings
from bridge.worker.ambiguous import Pacer, SentFinder, lookup_since
from bridge.worker.decisions import (
    Done,
    Fail,
    Operation,
    Outcome,
    RetryPolicy,
    Throttle,
    Unavailable,
    classify,
    spends_attempt,
)
from bridge.worker.deliveries import Delivery
from bridge.worker.metrics import WorkerMetrics
from bridge.worker.outage import CatapultWatch

log = logging.getLogger(__name__)

R = TypeVar("R")


class Executor:
    def __init__(
        self,
        client: CatapultClient,
        *,
        worker: WorkerSettings,
        catapult: CatapultSettings,
        metrics: WorkerMetrics,
        watch: CatapultWatch,
        rng: random.Random | None = None,
    ) -> None:
        self._client = client
        self._watch = watch
        self._settings = worker
        self._catapult = catapult
        self._metrics = metrics
        self._policy = RetryPolicy.from_settings(worker)
        self._random = rng or random.Random()  # noqa: S311 - jitter, not security
        pacer = Pacer(
            worker.lookup_requests_per_s,
            margin=worker.rate_margin,
            reset_min_s=worker.rate_limit_reset_min_s,
            reset_max_s=worker.rate_limit_reset_max_s,
        )
        self.finder = SentFinder(
            client,
            pacer=pacer,
            max_messages=worker.lookup_max_messages,
            request_timeout_s=worker.call_timeout_s,
        )

    async def close(self) -> None:
        """Stop the look-ups still listing (shutdown, after the calls in flight)."""
        await self.finder.close()

    # -- sends -----------------------------------------------------------------------------------

    async def run_sends(self, batch: list[Delivery]) -> list[tuple[Delivery, Outcome]]:
        outcomes: dict[Delivery, Outcome] = {}
        to_send = [d for d in batch if not d.needs_lookup]
        lookups = [d for d in batch if d.needs_lookup]
        if lookups:
            looked = await self._look_up(lookups)
            for delivery in lookups:
                outcome = looked.get(delivery)
                if outcome is None:
                    to_send.append(delivery)
                else:
                    outcomes[delivery] = outcome
        if to_send:
            outcomes.update(await self._send(to_send))
        return [(d, outcomes[d]) for d in batch]

    async def _send(self, deliveries: list[Delivery]) -> dict[Delivery, Outcome]:
        now_epoch = time.time()
        for delivery in deliveries:
            if delivery.sent_at_epoch_s is None:
                delivery.sent_at_epoch_s = now_epoch
        messages = [_outbound(d) for d in deliveries]
        self._metrics.batch_size.observe(len(messages))
        if len(messages) == 1:
            single = await self._call(
                Operation.SEND, self._client.send_message(messages[0]), deliveries
            )
            if isinstance(single, CatapultError):
                return {deliveries[0]: self._classify(deliveries[0], single, Operation.SEND)}
            self._count(deliveries[0])
            return {deliveries[0]: Done(single.id, single.location)}
        items = await self._call(Operation.SEND, self._client.send_messages(messages), deliveries)
        outcomes: dict[Delivery, Outcome] = {}
        for index, delivery in enumerate(deliveries):
            if isinstance(items, CatapultError):
                outcomes[delivery] = self._classify(delivery, items, Operation.SEND)
            elif (item := items[index]).ref is not None:
                self._count(delivery)
                outcomes[delivery] = Done(item.ref.id, item.ref.location)
            else:
                assert item.error is not None
                outcomes[delivery] = self._classify(delivery, item.error, Operation.SEND)
        return outcomes

    async def _look_up(self, deliveries: list[Delivery]) -> dict[Delivery, Outcome]:
        """Outcomes of the commands found (or whose look-up failed); absent ones are left out."""
        by_sender: dict[str, list[Delivery]] = defaultdict(list)
        for delivery in deliveries:
            by_sender[delivery.sender].append(delivery)
        results = await asyncio.gather(*(self._look_up_sender(s, g) for s, g in by_sender.items()))
        outcomes: dict[Delivery, Outcome] = {}
        for part in results:
            outcomes.update(part)
        return outcomes

    async def _look_up_sender(
        self, sender: str, deliveries: list[Delivery]
    ) -> dict[Delivery, Outcome]:
        now_epoch = time.time()
        since = {
            d.command_id: lookup_since(
                sent_at_epoch_s=d.sent_at_epoch_s,
                queued_at_epoch_s=d.queued_at_epoch_s,
                now_epoch_s=now_epoch,
                window_s=self._settings.lookup_window_s,
            )
            for d in deliveries
        }
        # Shared with the other look-ups of this sender, paced under Catapult's read limit, and
        # each page with its own deadline: no deadline over the whole (it may wait its turn).
        found = await self._call(
            Operation.LOOKUP, self.finder.find(sender, since), deliveries, deadline=False
        )
        outcomes: dict[Delivery, Outcome] = {}
        for delivery in deliveries:
            if isinstance(found, CatapultError):
                outcomes[delivery] = self._classify(delivery, found, Operation.LOOKUP)
                continue
            self._count(delivery)
            delivery.looked_up = True
            message: Message | None = found.get(delivery.command_id)
            if message is not None:
                log.info(
                    "command %s was already sent as %s: not sending it again",
                    delivery.command_id,
                    message.id,
                    extra={"command_id": delivery.command_id, "catapult_id": message.id},
                )
                outcomes[delivery] = Done(message.id, "", recovered=True)
            elif delivery.attempts >= self._policy.max_attempts:
                last = delivery.last_error or ResultError(message="the attempts are used up")
                outcomes[delivery] = Fail(FailureReason.RETRIES_EXHAUSTED, last)
            else:
                delivery.needs_lookup = False
        return outcomes

    # -- imports ---------------------------------------------------------------------------------

    async def run_import(self, delivery: Delivery) -> Outcome:
        command = delivery.parsed.command
        assert isinstance(command, ImportCommand)
        account_id = command.account_id or self._catapult.dashboard_account_id
        user_name = command.user_name or self._catapult.dashboard_user_name
        password = command.password or self._catapult.dashboard_password
        if account_id is None or user_name is None or password is None:
            return Fail(
                FailureReason.MISSING_CREDENTIALS,
                ResultError(
                    category="configuration",
                    code="missing-dashboard-credentials",
                    message="no Dashboard credentials: give accountId, userName and password in "
                    "the command, or set catapult.dashboard_account_id, "
                    "catapult.dashboard_user_name and catapult.dashboard_password",
                ),
            )
        ref = await self._call(
            Operation.IMPORT,
            self._client.import_number(
                number=command.number,
                account_id=account_id,
                user_name=user_name,
                password=password,
                application_id=command.application_id,
                name=command.name,
            ),
            [delivery],
        )
        if isinstance(ref, CatapultError):
            return self._classify(delivery, ref, Operation.IMPORT)
        self._count(delivery)
        return Done(ref.id, ref.location)

    # -- the boundary ----------------------------------------------------------------------------

    async def _call(
        self,
        operation: Operation,
        call: Awaitable[R],
        deliveries: Sequence[Delivery],
        *,
        deadline: bool = True,
    ) -> R | CatapultError:
        """Await one call with the worker's deadline (``worker.call_timeout_s``; none without
        ``deadline``, for a call that bounds its own requests); every failure becomes a
        ``CatapultError``.

        How it ended is told to the watch, with the commands it was made for.
        """
        result = await self._deadline(operation, call, deadline=deadline)
        error = result if isinstance(result, CatapultError) else None
        self._watch.observe(error, [d.command_id for d in deliveries])
        return result

    async def _deadline(
        self, operation: Operation, call: Awaitable[R], *, deadline: bool = True
    ) -> R | CatapultError:
        timeout_s = self._settings.call_timeout_s
        started = time.monotonic()
        self._metrics.calls_in_flight.inc()
        try:
            async with asyncio.timeout(timeout_s if deadline else None):
                result = await call
        except CatapultError as error:
            self._observe(operation, started, type(error).__name__)
            return error
        except TimeoutError:
            self._observe(operation, started, "Timeout")
            cls = TransportError if operation is Operation.LOOKUP else AmbiguousError
            return cls(message=f"no answer within {timeout_s:g} s (worker.call_timeout_s)")
        except Exception as exc:  # the per-call boundary: a bug must not lose the command
            log.exception("unexpected failure of a Catapult %s call", operation.value)
            self._observe(operation, started, "Unexpected")
            return AmbiguousError(message=f"unexpected failure in the worker: {type(exc).__name__}")
        finally:
            self._metrics.calls_in_flight.dec()
        self._observe(operation, started, "ok")
        return result

    def _observe(self, operation: Operation, started: float, result: str) -> None:
        self._metrics.calls.labels(operation.value, result).inc()
        self._metrics.call_seconds.labels(operation.value).observe(time.monotonic() - started)

    def _classify(self, delivery: Delivery, error: CatapultError, operation: Operation) -> Outcome:
        status = "none" if error.status is None else str(error.status)
        code = error.code or type(error).__name__
        self._metrics.errors.labels(operation.value, status, code).inc()
        outcome = classify(
            error,
            operation=operation,
            sender=delivery.sender or None,
            attempt=delivery.attempts + 1,
            policy=self._policy,
            jitter=self._random.random(),
            catapult_down=self._watch.is_down,
        )
        self._count(delivery, error, outcome)
        if not isinstance(outcome, Throttle | Unavailable) and not isinstance(
            error, RateLimitedError
        ):
            delivery.last_error = getattr(outcome, "error", None) or delivery.last_error
        return outcome

    @staticmethod
    def _count(
        delivery: Delivery, error: CatapultError | None = None, outcome: Outcome | None = None
    ) -> None:
        # Only failures that may be the command's own use its attempts up: a rate-limit refusal,
        # a request that never reached Catapult or one made while it is down do not.
        if spends_attempt(error, outcome):
            delivery.attempts += 1


def _outbound(delivery: Delivery) -> OutboundMessage:
    command = delivery.parsed.command
    assert isinstance(command, SendCommand)
    return OutboundMessage(
        from_=command.from_,
        to=command.to,
        text=command.text,
        media=tuple(command.media) if command.media else None,
        receipt_requested=command.receipt_requested,
        callback_url=command.callback_url,
        callback_http_method=command.callback_http_method,
        callback_timeout=command.callback_timeout,
        fallback_url=command.fallback_url,
        tag=encode_tag(delivery.command_id, command.tag),
    )


__all__ = ["Executor"]

"""The worker's pure decisions: classification, backoff, buckets and pauses. Tables, no I/O."""

from __future__ import annotations

import heapq
import itertools
import math
import random

import pytest

from bridge.catapult import RATE_WINDOW_S
from bridge.catapult.errors import (
    AmbiguousError,
    ApiError,
    AuthError,
    BadRequestError,
    CatapultError,
    ConflictError,
    ForbiddenError,
    NotFoundError,
    RateLimitedError,
    RateLimitScope,
    ServerError,
    TransportError,
)
from bridge.events.commands import CommandKind
from bridge.events.results import FailureReason, ResultError
from bridge.settings import WorkerSettings
from bridge.worker.decisions import (
    AlreadyImported,
    Ambiguous,
    Done,
    Fail,
    Operation,
    Outcome,
    PauseScope,
    Retry,
    RetryPolicy,
    Throttle,
    Unavailable,
    classify,
    error_of,
    spends_attempt,
)
from bridge.worker.limits import Limits, SendWindow, TokenBucket, burst_for, interval_for
from bridge.worker.outage import CatapultState, OutageDetector

POLICY = RetryPolicy(max_attempts=4, base_delay_s=1.0, max_delay_s=30.0)
SENDER = "+19195551212"


def _e(cls: type[CatapultError], status: int | None, code: str | None = None) -> CatapultError:
    return cls(message=f"{status} {code}", status=status, category="c", code=code)


RATE_ACCOUNT = RateLimitedError(
    message="m", status=403, code="message-rate-limit", scope=RateLimitScope.ACCOUNT
)
RATE_NUMBER = RateLimitedError(
    message="m",
    status=403,
    code="message-rate-limit-per-tn",
    scope=RateLimitScope.NUMBER,
    number="+19195559999",
)
RATE_NUMBER_UNNAMED = RateLimitedError(
    message="m", status=403, code="message-rate-limit-per-tn", scope=RateLimitScope.NUMBER
)
RATE_RESOURCE = RateLimitedError(
    message="m", status=429, code="rate-limit-reached", scope=RateLimitScope.RESOURCE, retry_at=99.0
)
SEND, IMPORT, LOOKUP = Operation.SEND, Operation.IMPORT, Operation.LOOKUP


@pytest.mark.parametrize(
    ("error", "operation", "attempt", "expected"),
    [
        # Rate limits: pause the right scope, whatever the attempt.
        (RATE_ACCOUNT, SEND, 9, Throttle(PauseScope.ACCOUNT, None, None, ResultError(message="m"))),
        (RATE_NUMBER, SEND, 1, Throttle(PauseScope.NUMBER, "+19195559999", None,
                                        ResultError(message="m"))),
        (RATE_NUMBER_UNNAMED, SEND, 1, Throttle(PauseScope.NUMBER, SENDER, None,
                                                ResultError(message="m"))),
        (RATE_RESOURCE, SEND, 1, Throttle(PauseScope.SENDS, None, 99.0, ResultError(message="m"))),
        (RATE_RESOURCE, IMPORT, 1, Throttle(PauseScope.NUMBER_REQUESTS, None, 99.0,
                                            ResultError(message="m"))),
        (RATE_RESOURCE, LOOKUP, 1, Throttle(PauseScope.LOOKUPS, None, 99.0,
                                            ResultError(message="m"))),
        # Transient: retry with backoff, until the attempts are used up.
        (_e(ServerError, 503, "service-unavailable"), IMPORT, 3, Retry),
        (_e(ServerError, 500), IMPORT, 4, Fail),
        # Nothing reached Catapult: not the command's failure, never its last attempt.
        (_e(TransportError, None), SEND, 3, Retry),
        (_e(TransportError, None), IMPORT, 4, Retry),
        (_e(ApiError, None, "odd"), SEND, 1, Retry),
        # Ambiguous sends always get a look-up; imports just try again (409 tells).
        (_e(AmbiguousError, 503, "message-gateway-unavailable"), SEND, 1, Ambiguous),
        (_e(AmbiguousError, None), SEND, 4, Ambiguous),
        (_e(AmbiguousError, None), IMPORT, 1, Retry),
        (_e(AmbiguousError, None), IMPORT, 4, Fail),
        # Any 5xx answer to a send: the request reached a server, the message may exist.
        (_e(ServerError, 500, "internal-server-error"), SEND, 1, Ambiguous),
        (_e(ServerError, 502), SEND, 1, Ambiguous),
        (_e(ServerError, 503, "service-unavailable"), SEND, 2, Ambiguous),
        (_e(ServerError, 504), SEND, 1, Ambiguous),
        (_e(ServerError, 500), SEND, 4, Ambiguous),
        # A look-up that fails: look again later; give up at the maximum.
        (_e(ServerError, 500), LOOKUP, 1, Ambiguous),
        (_e(TransportError, None), LOOKUP, 2, Ambiguous),
        (_e(TransportError, None), LOOKUP, 4, Ambiguous),
        (_e(ServerError, 500), LOOKUP, 4, Fail),
        (_e(AuthError, 401, "access-denied"), LOOKUP, 1, Fail),
        # Refusals: fail at once.
        (_e(BadRequestError, 400, "missing-property"), SEND, 1, Fail),
        (_e(AuthError, 401, "number-access-denied"), SEND, 1, Fail),
        (_e(ForbiddenError, 403, "insufficient-available-balance"), SEND, 1, Fail),
        (_e(NotFoundError, 404, "application-not-found"), IMPORT, 1, Fail),
        (_e(ConflictError, 409, "duplicate-message"), SEND, 1, Fail),
        (_e(ConflictError, 409, "something-else"), IMPORT, 1, Fail),
        (_e(AuthError, 401, "provider-access-denied"), IMPORT, 1, Fail),
        # Its own outcome.
        (_e(ConflictError, 409, "duplicate-number"), IMPORT, 1, AlreadyImported),
    ],
)  # fmt: skip
def test_classify(
    error: CatapultError, operation: Operation, attempt: int, expected: Outcome | type
) -> None:
    outcome = classify(
        error, operation=operation, sender=SENDER, attempt=attempt, policy=POLICY, jitter=0.5
    )
    if isinstance(expected, type):
        assert type(outcome) is expected
    else:
        assert isinstance(outcome, Throttle)
        assert isinstance(expected, Throttle)
        assert (outcome.scope, outcome.key, outcome.until_epoch_s) == (
            expected.scope,
            expected.key,
            expected.until_epoch_s,
        )
    if isinstance(outcome, Fail):
        refused = isinstance(
            error, AuthError | BadRequestError | ForbiddenError | NotFoundError | ConflictError
        )
        if operation is LOOKUP:
            assert outcome.reason is FailureReason.UNKNOWN_OUTCOME
        elif refused:
            assert outcome.reason is FailureReason.REJECTED
        else:
            assert outcome.reason is FailureReason.RETRIES_EXHAUSTED


def test_the_error_a_result_carries() -> None:
    error = BadRequestError(
        message="text too long", status=400, category="bad-request", code="validation-error"
    )
    outcome = classify(error, operation=SEND, sender=SENDER, attempt=1, policy=POLICY, jitter=0)
    assert isinstance(outcome, Fail)
    assert outcome.error == ResultError(
        category="bad-request", code="validation-error", message="text too long", status=400
    )


@pytest.mark.parametrize(
    ("attempt", "jitter", "delay_s"),
    [(1, 1.0, 1.0), (1, 0.0, 0.5), (2, 1.0, 2.0), (3, 1.0, 4.0), (5, 1.0, 16.0), (6, 1.0, 30.0),
     (9, 0.0, 15.0), (3, 0.5, 3.0)],
)  # fmt: skip
def test_backoff_is_exponential_with_jitter_and_capped(
    attempt: int, jitter: float, delay_s: float
) -> None:
    assert POLICY.backoff_s(attempt, jitter) == pytest.approx(delay_s)


def test_policy_from_settings_spans_the_delay_tiers() -> None:
    policy = RetryPolicy.from_settings(WorkerSettings(retry_delays_s=(30, 1, 5), max_attempts=3))
    assert policy == RetryPolicy(max_attempts=3, base_delay_s=1, max_delay_s=30)


# -- buckets and pauses -----------------------------------------------------------------------


def test_a_bucket_of_capacity_one_never_bursts() -> None:
    bucket = TokenBucket(interval_s=1.0)
    assert bucket.ready_at < 0
    bucket.take(100.0)
    assert bucket.ready_at == 101.0
    bucket.take(105.0)  # idle for a while: still only one
    assert bucket.ready_at == 106.0


def test_a_bucket_lets_its_burst_go_together_and_paces_the_rest() -> None:
    bucket = TokenBucket(interval_s=0.1, burst=5)
    assert bucket.available(0.0) == 5
    bucket.take(0.0, 5)
    assert bucket.available(0.0) == 0
    assert bucket.ready_at == pytest.approx(0.1)
    assert bucket.available(0.1) == 1
    bucket.take(0.1)
    assert not bucket.is_full(0.4)
    assert bucket.available(100.0) == 5  # idle for long: a burst again, never more
    assert bucket.is_full(100.0)


def test_a_retimed_bucket_paces_and_bursts_at_its_new_rate() -> None:
    bucket = TokenBucket(interval_s=1.0, burst=1)
    bucket.take(0.0)
    bucket.retime(0.1, burst=3)
    assert bucket.available(0.5) == 0  # the take at the old rate still counts until 1.0
    assert bucket.available(1.0) == 3
    assert bucket.available(10.0) == 3


@pytest.mark.parametrize(
    ("rate", "margin", "burst"),
    [(250.0, 0.02, 49), (1000.0, 0.02, 50), (100.0, 0.02, 19), (1.0, 0.02, 1), (250.0, 0.0, 1),
     (0.0, 0.02, 1)],
)  # fmt: skip
def test_a_burst_is_what_the_margin_leaves_free_in_the_window(
    rate: float, margin: float, burst: int
) -> None:
    assert burst_for(rate, margin, batch_max=50) == burst


def test_bursts_never_put_more_than_the_catapult_count_into_a_window() -> None:
    """As many sends as the account allows at every moment it allows any, for 60 s at 250/s."""
    limits = Limits(WorkerSettings(account_messages_per_s=250, a2p_numbers=("+1",)))
    times: list[float] = []
    now = 0.0
    while now < 60.0:
        count = limits.account_sendable(now)
        if count:
            limits.take_sends({"+1": count}, now)
            limits.sends_answered(["+1"] * count, now)
            times.extend([now] * count)
        now = max(now + 1e-4, limits.send_ready_at("+1"))
    assert len(times) >= 250 * 60 * 0.97  # it did send at the rate
    first = 0
    for index, t in enumerate(times):  # every window (t - 10 s, t] ending at a send
        while times[first] <= t - RATE_WINDOW_S:
            first += 1
        assert index - first + 1 <= 2500


@pytest.mark.parametrize(
    ("rate", "margin", "interval"), [(1.0, 0.0, 1.0), (1.0, 0.02, 1.02), (0.0, 0.02, 0.0)]
)
def test_intervals(rate: float, margin: float, interval: float) -> None:
    assert interval_for(rate, margin) == pytest.approx(interval)


def test_sends_wait_for_the_account_and_their_own_number() -> None:
    limits = Limits(
        WorkerSettings(
            account_messages_per_s=2, number_messages_per_s=1, rate_margin=0, a2p_numbers=("+2",)
        )
    )
    limits.take_send("+1", 10.0)
    assert limits.send_ready_at("+1") == 11.0  # its number's bucket
    assert limits.send_ready_at("+3") == 10.5  # the account's bucket
    limits.take_send("+2", 10.5)
    assert limits.send_ready_at("+2") == 11.0  # an A2P number: only the account limit


def test_windows_never_exceed_the_catapult_count() -> None:
    """Sends taken as fast as the bucket allows never put rate*10+1 sends into 10 s."""
    limits = Limits(WorkerSettings(account_messages_per_s=3, number_messages_per_s=0))
    times: list[float] = []
    now = 0.0
    while len(times) < 200:
        now = max(now, limits.send_ready_at("+1"))
        limits.take_send("+1", now)
        limits.sends_answered(["+1"], now)
        times.append(now)
    for i, t in enumerate(times):
        in_window = [u for u in times[: i + 1] if t - 10.0 < u <= t]
        assert len(in_window) <= 30


def _sends_with_latencies(
    limits: Limits, senders: list[str], latencies_s: list[float], count: int
) -> list[tuple[str, float, float]]:
    """Send ``count`` times as fast as ``limits`` allow, round robin over ``senders``, each call
    answered after the next of ``latencies_s``: (sender, left, answered) of every send."""
    sends: list[tuple[str, float, float]] = []
    answers: list[tuple[float, str]] = []
    now = 0.0
    while len(sends) < count:
        sender = senders[len(sends) % len(senders)]
        ready = max(now, limits.send_ready_at(sender))
        if answers and answers[0][0] <= ready:
            now, answered = heapq.heappop(answers)
            limits.sends_answered([answered], now)
            continue
        now = ready
        limits.take_send(sender, now)
        answered_at = now + latencies_s[len(sends) % len(latencies_s)]
        heapq.heappush(answers, (answered_at, sender))
        sends.append((sender, now, answered_at))
    return sends


def _assert_no_window_can_hold_more_than(limit: int, sends: list[tuple[str, float, float]]) -> None:
    """Each send reaches Catapult somewhere between leaving and its answer, wherever the network
    puts it. Sends that can all land in one window (T - 10 s, T] are those that left by T and
    were answered after T - 10 s; for none of those groups to exceed ``limit``, every send must
    find fewer than ``limit`` earlier ones answered after it left minus 10 s."""
    for index, (_, left, _) in enumerate(sends):
        # (1e-9: an answer exactly 10 s before is outside the half-open window, in floating point)
        since = left - RATE_WINDOW_S + 1e-9
        earlier = [answered for _, _, answered in sends[:index] if answered > since]
        assert len(earlier) < limit, (index, left, earlier)


def test_late_answers_hold_back_the_sends_that_could_share_their_window() -> None:
    """The bucket paces at 1/s; a call answered seconds late must still not let an eleventh send
    into a window with it (the jitter that made Catapult answer 403 to a busy worker)."""
    latencies = [0.02, 0.05, 2.5, 0.01, 0.3, 6.0, 0.02, 0.02, 1.2, 0.0, 0.04, 9.0, 0.1]
    limits = Limits(WorkerSettings(account_messages_per_s=1, number_messages_per_s=0))
    _assert_no_window_can_hold_more_than(10, _sends_with_latencies(limits, ["+1"], latencies, 300))
    # Per number as well, with two numbers sharing an account that allows more.
    limits = Limits(WorkerSettings(account_messages_per_s=5, number_messages_per_s=1))
    sends = _sends_with_latencies(limits, ["+1", "+2"], latencies, 300)
    _assert_no_window_can_hold_more_than(50, sends)
    for number in ("+1", "+2"):
        _assert_no_window_can_hold_more_than(10, [s for s in sends if s[0] == number])


def test_random_answer_times_never_overfill_a_window() -> None:
    rng = random.Random(7)
    latencies = [rng.expovariate(2.0) for _ in range(97)]
    limits = Limits(WorkerSettings(account_messages_per_s=2, number_messages_per_s=0))
    _assert_no_window_can_hold_more_than(20, _sends_with_latencies(limits, ["+1"], latencies, 500))


def test_a_window_counts_sends_in_flight_until_they_are_answered() -> None:
    window = SendWindow(2)
    assert window.ready_at() == -math.inf
    window.take(0.0)
    window.take(1.0)
    assert window.ready_at() == math.inf  # only an answer makes room, however late
    assert window.ready_at(planning=True) == 0.0 + RATE_WINDOW_S  # as if answered when they left
    window.answered(1.5)  # one answer, whichever send it was for
    assert window.ready_at() == 1.5 + RATE_WINDOW_S
    window.answered(3.0)
    assert window.ready_at() == 1.5 + RATE_WINDOW_S
    assert not window.is_idle(11.0)
    assert window.is_idle(13.0)


def test_planning_does_not_park_a_command_behind_a_call_in_flight() -> None:
    """At 0.1/s (one send per 10 s window), a command arriving while the last send's call is in
    flight is held for the slot after it, not parked as if the call could take its timeout."""
    limits = Limits(WorkerSettings(account_messages_per_s=0, number_messages_per_s=0.1))
    limits.take_send("+1", 0.0)
    assert limits.send_ready_at("+1") == math.inf
    assert limits.send_ready_at("+1", planning=True) == pytest.approx(10.2)
    limits.sends_answered(["+1"], 0.1)
    assert limits.send_ready_at("+1") == pytest.approx(10.2)  # the bucket's 10.2 s


def test_fast_answers_leave_the_pace_to_the_bucket() -> None:
    limits = Limits(WorkerSettings(account_messages_per_s=1, number_messages_per_s=0))
    sends = _sends_with_latencies(limits, ["+1"], [0.05], 100)
    gaps = [b[1] - a[1] for a, b in itertools.pairwise(sends)]
    assert max(gaps) == pytest.approx(1.02)  # the bucket's interval, never the window's


def test_pauses_after_refusals() -> None:
    limits = Limits(
        WorkerSettings(
            account_messages_per_s=0,
            number_messages_per_s=0,
            rate_limit_pause_s=1,
            rate_limit_pause_max_s=4,
        )
    )
    error = ResultError(message="m")
    number = Throttle(PauseScope.NUMBER, "+1", None, error)
    assert limits.record(number, kind=CommandKind.SEND, now_s=0, now_epoch_s=1000) == 1
    assert limits.record(number, kind=CommandKind.SEND, now_s=1, now_epoch_s=1001) == 3  # doubled
    assert (
        limits.record(number, kind=CommandKind.SEND, now_s=3, now_epoch_s=1003) == 7
    )  # 4 s: the cap
    assert limits.send_ready_at("+1") == 7
    assert limits.send_ready_at("+2") < 0  # other numbers go on
    limits.record(Done("m-1", ""), kind=CommandKind.SEND, sender="+1", now_s=7, now_epoch_s=1007)
    assert (
        limits.record(number, kind=CommandKind.SEND, now_s=8, now_epoch_s=1008) == 9
    )  # fresh backoff

    account = Throttle(PauseScope.ACCOUNT, None, None, error)
    limits.record(account, kind=CommandKind.SEND, now_s=20, now_epoch_s=1020)
    assert limits.send_ready_at("+2") == 21
    assert limits.is_paused(PauseScope.ACCOUNT, None, 20.5)

    reset = Throttle(PauseScope.NUMBER_REQUESTS, None, 1042.5, error)
    assert limits.record(reset, kind=CommandKind.SEND, now_s=30, now_epoch_s=1030) == 42.5
    assert limits.import_ready_at() == 42.5
    assert limits.send_ready_at("+2") < 30  # sends are another family

    lookups = Throttle(PauseScope.LOOKUPS, None, 1050.0, error)
    limits.record(lookups, kind=CommandKind.SEND, now_s=40, now_epoch_s=1040)
    assert limits.send_ready_at("+2", lookup=True) == 50
    assert limits.send_ready_at("+2") < 40


def _strikes_reset(limits: Limits, throttle: Throttle, now_s: float) -> bool:
    """Whether a refusal in ``throttle``'s scope at ``now_s`` starts a fresh backoff."""
    until = limits.record(throttle, kind=CommandKind.SEND, now_s=now_s, now_epoch_s=now_s)
    return until == now_s + 1


@pytest.mark.parametrize(
    ("outcome", "kind", "looked_up", "fresh"),
    [
        # A send done: the account, its number and the send family start afresh.
        (Done("m", ""), CommandKind.SEND, False, {"account", "number", "sends"}),
        (Done("m", "", recovered=True), CommandKind.SEND, True,
         {"account", "number", "sends", "lookups"}),
        # An import done: the number requests.
        (Done("n", ""), CommandKind.IMPORT, False, {"number-requests"}),
        # A look-up that went through, whatever came of the send after it.
        (Retry(1.0, ResultError(message="m")), CommandKind.SEND, True, {"lookups"}),
        # Anything else changes nothing.
        (Retry(1.0, ResultError(message="m")), CommandKind.SEND, False, set()),
        (Fail(FailureReason.REJECTED, ResultError(message="m")), CommandKind.SEND, False, set()),
        (AlreadyImported(ResultError(message="m")), CommandKind.IMPORT, False, set()),
        (Unavailable(ResultError(message="m"), lookup=False), CommandKind.SEND, False, set()),
    ],
)  # fmt: skip
def test_record_resets_the_backoff_of_the_scopes_a_request_went_through(
    outcome: Outcome, kind: CommandKind, looked_up: bool, fresh: set[str]
) -> None:
    settings = WorkerSettings(rate_limit_pause_s=1, rate_limit_pause_max_s=100)
    limits = Limits(settings)
    error = ResultError(message="m")
    throttles = {
        "account": Throttle(PauseScope.ACCOUNT, None, None, error),
        "number": Throttle(PauseScope.NUMBER, "+1", None, error),
        "sends": Throttle(PauseScope.SENDS, None, None, error),
        "number-requests": Throttle(PauseScope.NUMBER_REQUESTS, None, None, error),
        "lookups": Throttle(PauseScope.LOOKUPS, None, None, error),
    }
    for throttle in throttles.values():
        limits.record(throttle, kind=CommandKind.SEND, now_s=0, now_epoch_s=0)  # one strike each
    assert (
        limits.record(outcome, kind=kind, sender="+1", looked_up=looked_up, now_s=5, now_epoch_s=5)
        is None
    )
    assert {name for name, t in throttles.items() if _strikes_reset(limits, t, 10)} == fresh


def test_number_requests_have_their_own_lane() -> None:
    limits = Limits(WorkerSettings(number_requests_per_min=100, rate_margin=0))
    limits.take_import(5.0)
    assert limits.import_ready_at() == pytest.approx(5.6)
    assert limits.send_ready_at("+1") < 5.0


@pytest.mark.parametrize(
    ("reset_in_s", "pause_s"),
    [
        (5.0, 5.0),  # a reset time in reach is kept
        (0.0, 1.5),  # now: the shortest pause, or the next request is refused again at once
        (-30.0, 1.5),  # in the past (a clock behind ours, a stale header): the shortest pause
        (0.2, 1.5),
        (3600.0, 40.0),  # an hour away (or a garbled header): the longest pause
        (1e12, 40.0),
    ],
)
def test_a_429_reset_time_is_clamped(reset_in_s: float, pause_s: float) -> None:
    limits = Limits(
        WorkerSettings(rate_limit_reset_min_s=1.5, rate_limit_reset_max_s=40, rate_limit_pause_s=1)
    )
    throttle = Throttle(PauseScope.LOOKUPS, None, 1000.0 + reset_in_s, ResultError(message="m"))
    assert limits.record(
        throttle, kind=CommandKind.SEND, now_s=10.0, now_epoch_s=1000.0
    ) == pytest.approx(10.0 + pause_s)
    assert limits.send_ready_at("+1", lookup=True) == pytest.approx(10.0 + pause_s)


def test_the_reset_clamp_is_an_ordered_pair_of_settings() -> None:
    with pytest.raises(ValueError, match="rate_limit_reset_min_s"):
        WorkerSettings(rate_limit_reset_min_s=30, rate_limit_reset_max_s=10)


# -- outages ----------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("error", "operation", "lookup"),
    [
        (_e(TransportError, None), SEND, False),  # never left: no look-up needed for it
        (_e(TransportError, None), LOOKUP, True),
        (_e(TransportError, None), IMPORT, False),
        (_e(ServerError, 500), SEND, True),  # answered: it may have been carried out
        (_e(ServerError, 502), IMPORT, False),
        (_e(AmbiguousError, 503, "message-gateway-unavailable"), SEND, True),
        (_e(ServerError, 500), LOOKUP, True),
    ],
)  # fmt: skip
def test_while_catapult_is_down_its_absence_costs_no_attempt(
    error: CatapultError, operation: Operation, lookup: bool
) -> None:
    outcome = classify(
        error, operation=operation, sender=SENDER, attempt=9, policy=POLICY, jitter=0.5,
        catapult_down=True,
    )  # fmt: skip
    assert outcome == Unavailable(error_of(error), lookup=lookup)
    assert not spends_attempt(error, outcome)


@pytest.mark.parametrize(
    "error",
    [
        _e(BadRequestError, 400, "missing-property"),
        _e(AuthError, 401, "access-denied"),
        RATE_ACCOUNT,
        _e(AmbiguousError, None),  # a timeout after it left: the command's own ambiguity
    ],
)
def test_while_catapult_is_down_other_failures_are_decided_as_ever(error: CatapultError) -> None:
    down, up = (
        classify(
            error, operation=SEND, sender=SENDER, attempt=1, policy=POLICY, jitter=0.5,
            catapult_down=is_down,
        )
        for is_down in (True, False)
    )  # fmt: skip
    assert down == up


@pytest.mark.parametrize(
    ("error", "spends"),
    [
        (None, True),
        (_e(ServerError, 500), True),
        (_e(AmbiguousError, None), True),
        (_e(BadRequestError, 400), True),
        (_e(TransportError, None), False),
        (RATE_ACCOUNT, False),
    ],
)
def test_which_requests_spend_an_attempt(error: CatapultError | None, spends: bool) -> None:
    outcome = None
    if error is not None:
        outcome = classify(
            error, operation=SEND, sender=SENDER, attempt=1, policy=POLICY, jitter=0.5
        )
    assert spends_attempt(error, outcome) is spends


def _refused() -> TransportError:
    return TransportError(message="refused before the request was sent")


def _fails(detector: OutageDetector, error: CatapultError, *commands: str) -> bool:
    return detector.observe(error, commands)


def test_refusals_in_a_row_are_an_outage_and_one_answer_ends_it() -> None:
    detector = OutageDetector(threshold=3)
    assert not _fails(detector, _refused(), "a")
    assert not _fails(detector, _refused(), "a")  # refused each time: each counts
    assert _fails(detector, _refused(), "a")
    assert detector.state is CatapultState.DOWN
    assert not _fails(detector, _refused(), "b")  # already down
    assert detector.observe(None, ["b"])  # an answer: back
    assert not detector.is_down
    assert detector.failures == 0


def test_5xx_counts_once_per_command_and_a_4xx_is_an_answer() -> None:
    detector = OutageDetector(threshold=3)
    server = _e(ServerError, 500)
    for _ in range(10):
        assert not _fails(detector, server, "same")  # one command failing alone: its own
    assert detector.failures == 1
    assert not _fails(detector, server, "other")
    assert not _fails(detector, _e(BadRequestError, 400), "third")  # Catapult answered
    assert detector.failures == 0
    assert not _fails(detector, server, "x")
    assert not _fails(detector, _e(AmbiguousError, None), "y")  # a timeout after it left: no news
    assert not _fails(detector, server, "y", "z")
    assert _fails(detector, _e(AmbiguousError, 503, "message-gateway-unavailable"), "w")
    assert detector.is_down

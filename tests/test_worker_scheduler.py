"""The send and import schedulers: fairness, holding and parking, batching. Pure, no I/O."""

from __future__ import annotations

import heapq
import itertools
import math
from dataclasses import dataclass

from bridge.events.commands import CommandKind
from bridge.events.results import ResultError
from bridge.settings import WorkerSettings
from bridge.worker.decisions import PauseScope, Throttle
from bridge.worker.limits import Limits
from bridge.worker.scheduler import HOLD, ImportScheduler, Park, SendScheduler

TIERS = (1.0, 5.0, 30.0, 120.0, 600.0)

SEND = CommandKind.SEND


@dataclass(frozen=True)
class Item:
    sender: str
    n: int
    needs_lookup: bool = False


def _scheduler(**worker: object) -> tuple[SendScheduler[Item], Limits]:
    settings = WorkerSettings.model_validate({"rate_margin": 0, **worker})
    limits = Limits(settings)
    scheduler: SendScheduler[Item] = SendScheduler(
        limits,
        hold_s=settings.hold_s,
        park_tiers_s=TIERS,
        batch_max=settings.batch_max,
        window=settings.concurrency,
    )
    return scheduler, limits


def test_limits_off_everything_is_held_and_batched_round_robin() -> None:
    scheduler, _ = _scheduler(account_messages_per_s=0, number_messages_per_s=0, batch_max=5)
    for n in range(4):
        for sender in ("+1", "+2", "+3"):
            assert scheduler.admit(Item(sender, n), 0.0) is HOLD
    assert scheduler.held_count == 12
    assert scheduler.next_ready_at() is not None
    batch = scheduler.take(0.0)
    assert [(i.sender, i.n) for i in batch] == [
        ("+1", 0), ("+2", 0), ("+3", 0), ("+1", 1), ("+2", 1)
    ]  # fmt: skip
    assert len(scheduler.take(0.0)) == 5
    assert len(scheduler.take(0.0)) == 2
    assert scheduler.take(0.0) == []
    assert scheduler.next_ready_at() is None


def test_a_busy_number_parks_what_it_cannot_send_soon() -> None:
    scheduler, _ = _scheduler(account_messages_per_s=0, number_messages_per_s=1, hold_s=2)
    admissions = [scheduler.admit(Item("+1", n), 0.0) for n in range(1000)]
    held = [a for a in admissions if a is HOLD]
    parked = [a for a in admissions if isinstance(a, Park)]
    assert 1 <= len(held) <= 3
    delays = [p.delay_s for p in parked]
    assert delays == sorted(delays)  # later commands wait longer
    assert delays[0] == 1.0
    assert delays[-1] == 600.0
    assert [p.due_in_s for p in parked[:3]] == [2.0, 3.0, 4.0]
    # Another number is never behind them.
    assert scheduler.admit(Item("+2", 0), 0.0) is HOLD
    batch = scheduler.take(0.0)
    assert {i.sender for i in batch} == {"+1", "+2"}


def test_the_first_command_of_a_sender_is_always_held() -> None:
    scheduler, limits = _scheduler(account_messages_per_s=1, number_messages_per_s=1)
    limits.record(
        Throttle(PauseScope.NUMBER, "+1", None, ResultError(message="m")),
        kind=SEND,
        now_s=0,
        now_epoch_s=0,
    )  # 1 s: shorter than hold_s
    assert scheduler.admit(Item("+1", 0), 0.0) is HOLD
    assert scheduler.admit(Item("+1", 1), 0.0) is HOLD  # due in 1 s
    assert isinstance(scheduler.admit(Item("+1", 2), 0.0), Park)  # due in 2 s: 2 held is enough


def test_a_parked_command_keeps_its_slot() -> None:
    scheduler, _ = _scheduler(account_messages_per_s=0, number_messages_per_s=1, hold_s=2)
    for n in range(10):
        scheduler.admit(Item("+1", n), 0.0)
    # Back early (due in 3 s): parked again for the rest; back on time: held.
    again = scheduler.admit(Item("+1", 5), 2.0, due_in_s=3.0)
    assert again == Park(delay_s=1.0, due_in_s=3.0)
    scheduler.take(2.0)  # the held ones go out
    scheduler.take(3.0)
    assert scheduler.admit(Item("+1", 5), 4.0, due_in_s=1.0) is HOLD


def test_the_first_command_of_a_paused_sender_is_parked_when_the_pause_is_long() -> None:
    scheduler, limits = _scheduler(
        account_messages_per_s=1, number_messages_per_s=1, rate_limit_pause_s=10
    )
    limits.record(
        Throttle(PauseScope.NUMBER, "+1", None, ResultError(message="m")),
        kind=SEND,
        now_s=0,
        now_epoch_s=0,
    )
    assert isinstance(scheduler.admit(Item("+1", 0), 0.0), Park)


def test_an_idle_lane_takes_a_command_back_whatever_its_slot() -> None:
    scheduler, _ = _scheduler(account_messages_per_s=0, number_messages_per_s=1, hold_s=2)
    assert scheduler.admit(Item("+1", 7), 0.0, due_in_s=500.0) is HOLD


def test_a_refused_command_goes_first_again_after_the_pause() -> None:
    scheduler, limits = _scheduler(account_messages_per_s=0, number_messages_per_s=0, batch_max=1)
    scheduler.admit(Item("+1", 0), 0.0)
    scheduler.admit(Item("+1", 1), 0.0)
    [first] = scheduler.take(0.0)
    limits.record(
        Throttle(PauseScope.ACCOUNT, None, None, ResultError(message="m")),
        kind=SEND,
        now_s=0,
        now_epoch_s=0,
    )
    assert scheduler.put_back(first, 0.0) is HOLD
    assert scheduler.take(0.5) == []
    assert scheduler.next_ready_at() == 1.0
    assert [i.n for i in scheduler.take(1.0)] == [0]
    assert [i.n for i in scheduler.take(1.0)] == [1]


def test_a_long_pause_parks_even_the_first_command() -> None:
    scheduler, limits = _scheduler(
        account_messages_per_s=0, number_messages_per_s=0, rate_limit_pause_s=5, hold_s=2
    )
    [first] = [i for i in (Item("+1", 0),) if scheduler.admit(i, 0.0) is HOLD]
    assert scheduler.take(0.0) == [first]
    limits.record(
        Throttle(PauseScope.NUMBER, "+1", None, ResultError(message="m")),
        kind=SEND,
        now_s=0,
        now_epoch_s=0,
    )
    assert scheduler.put_back(first, 0.0) == Park(delay_s=5.0, due_in_s=5.0)
    assert scheduler.admit(Item("+1", 1), 0.0) == Park(delay_s=5.0, due_in_s=5.0)
    assert scheduler.admit(Item("+2", 0), 0.0) is HOLD  # other numbers go on
    assert scheduler.admit(Item("+1", 0), 4.0, due_in_s=1.0) is HOLD  # nearly over: keep it


def test_lookups_wait_for_the_lookup_family() -> None:
    scheduler, limits = _scheduler(account_messages_per_s=0, number_messages_per_s=0)
    limits.record(
        Throttle(PauseScope.LOOKUPS, None, 1.5, ResultError(message="m")),
        kind=SEND,
        now_s=0,
        now_epoch_s=0,
    )
    assert scheduler.admit(Item("+1", 0, needs_lookup=True), 0.0) is HOLD
    assert scheduler.admit(Item("+2", 0), 0.0) is HOLD
    assert [i.sender for i in scheduler.take(1.0)] == ["+2"]
    assert [i.sender for i in scheduler.take(1.5)] == ["+1"]


def test_drain_returns_every_held_command() -> None:
    scheduler, _ = _scheduler(account_messages_per_s=0, number_messages_per_s=0)
    for n in range(3):
        scheduler.admit(Item(f"+{n}", n), 0.0)
    assert sorted(i.n for i in scheduler.drain()) == [0, 1, 2]
    assert scheduler.held_count == 0
    assert scheduler.take(0.0) == []


def test_imports_are_one_lane_within_the_number_request_rate() -> None:
    limits = Limits(WorkerSettings(number_requests_per_min=60, rate_margin=0))
    scheduler: ImportScheduler[str] = ImportScheduler(limits)
    for name in "abc":
        scheduler.admit(name)
    assert scheduler.take(0.0) == ["a"]
    assert scheduler.take(0.5) == []
    assert scheduler.next_ready_at() == 1.0
    scheduler.put_back("a")
    assert scheduler.take(1.0) == ["a"]
    assert scheduler.drain() == ["b", "c"]


def test_no_starvation_and_no_idling_in_a_long_run() -> None:
    """Discrete-event run: 10,000 sends of one number at 1/s, parked ones coming back on time.

    A second number's send goes out at once; the busy number keeps sending every second (its
    bucket is never idle for long) while it holds only a few commands in memory.
    """
    scheduler, limits = _scheduler(account_messages_per_s=0, number_messages_per_s=1, hold_s=2)
    returns: list[tuple[float, int, Item, float]] = []
    order = itertools.count()

    def admit(item: Item, now: float, *, due_at: float | None) -> None:
        due_in = None if due_at is None else due_at - now
        admission = scheduler.admit(item, now, due_in_s=due_in)
        if isinstance(admission, Park):
            back = now + admission.delay_s
            heapq.heappush(returns, (back, next(order), item, now + admission.due_in_s))

    for n in range(10_000):
        admit(Item("+1", n), 0.0, due_at=None)
    admit(Item("+2", 0), 0.0, due_at=None)

    sent: list[tuple[float, Item]] = []
    now = 0.0
    max_held = 0
    republished = 0
    while now < 300.0:
        batch = scheduler.take(now)
        limits.sends_answered([item.sender for item in batch], now)  # calls answered at once
        sent.extend((now, item) for item in batch)
        max_held = max(max_held, scheduler.held_count)
        ready = scheduler.next_ready_at()
        due = returns[0][0] if returns else None
        now = min(t for t in (ready, due, 300.0) if t is not None and t >= now)
        while returns and returns[0][0] <= now:
            _, _, item, due_at = heapq.heappop(returns)
            admit(item, now, due_at=due_at)
            republished += 1

    other = [t for t, item in sent if item.sender == "+2"]
    assert other == [0.0]
    busy = [t for t, item in sent if item.sender == "+1"]
    assert len(busy) >= 290  # about one a second for 300 s
    assert all(b - a >= 1.0 for a, b in itertools.pairwise(busy))
    assert max_held <= 4
    assert republished < 3000  # parked commands come back a few times, not every second


def _run_with_a_broker(
    scheduler: SendScheduler[Item],
    limits: Limits,
    queue: list[Item],
    *,
    window: int,
    until: float,
) -> list[tuple[float, Item]]:
    """Discrete-event model of the consumer: a FIFO broker queue, at most ``window`` deliveries
    held, parked commands acked at once and back at the queue's tail after their delay, every
    call answered at once."""
    from collections import deque

    broker = deque(queue)
    returns: list[tuple[float, int, Item, float]] = []
    order = itertools.count()
    due: dict[int, float] = {}
    sent: list[tuple[float, Item]] = []
    now = 0.0
    while now < until:
        while returns and returns[0][0] <= now:
            _, _, item, returned_due_at = heapq.heappop(returns)
            due[id(item)] = returned_due_at
            broker.append(item)
        while broker and scheduler.held_count < window:
            item = broker.popleft()
            due_at = due.pop(id(item), math.nan)
            admission = scheduler.admit(
                item, now, due_in_s=None if math.isnan(due_at) else due_at - now
            )
            if isinstance(admission, Park):
                back = now + admission.delay_s
                heapq.heappush(returns, (back, next(order), item, now + admission.due_in_s))
        batch = scheduler.take(now)
        limits.sends_answered([item.sender for item in batch], now)
        sent.extend((now, item) for item in batch)
        if broker and scheduler.held_count < window:
            continue
        ready = scheduler.next_ready_at()
        next_back = returns[0][0] if returns else None
        candidates = [t for t in (ready, next_back) if t is not None and t > now]
        if not candidates:
            break
        now = min(candidates)
    return sent


def test_senders_share_the_account_at_its_rate() -> None:
    """Three numbers queued one after the other, 25/s for the account, 10/s per number, a window
    of 32 (at least the rate times the shortest delay tier): the account's rate is shared while
    all three have work, then each busy number sends at its own limit."""
    scheduler, limits = _scheduler(
        account_messages_per_s=25, number_messages_per_s=10, concurrency=32, hold_s=2
    )
    queue = [
        Item(s, n) for s, count in (("+1", 110), ("+2", 110), ("+3", 40)) for n in range(count)
    ]
    sent = _run_with_a_broker(scheduler, limits, queue, window=32, until=60.0)
    assert len(sent) == 260
    times = [t for t, _ in sent]
    assert times[99] < 4.5  # the account's 25/s is used while three numbers share it
    assert times[-1] < 12.5  # then 10/s for each of the two busy numbers
    for sender in ("+1", "+2", "+3"):
        mine = [t for t, item in sent if item.sender == sender]
        assert mine[0] < 0.5  # nobody waits behind another number's backlog
        assert all(b - a >= 0.1 - 1e-9 for a, b in itertools.pairwise(mine))


def test_a_small_window_stays_fair() -> None:
    """The same queue through a window of 8: slower (parked sends come back once per tier), but
    every number gets its share from the start."""
    scheduler, limits = _scheduler(
        account_messages_per_s=25, number_messages_per_s=10, concurrency=8, hold_s=2
    )
    queue = [
        Item(s, n) for s, count in (("+1", 110), ("+2", 110), ("+3", 40)) for n in range(count)
    ]
    sent = _run_with_a_broker(scheduler, limits, queue, window=8, until=120.0)
    assert len(sent) == 260
    first_ten_s = [item.sender for t, item in sent if t < 10]
    assert min(first_ten_s.count(s) for s in ("+2", "+3")) >= 18


def test_limits_off_never_park() -> None:
    scheduler, _ = _scheduler(account_messages_per_s=0, number_messages_per_s=0, concurrency=4)
    queue = [Item("+1", n) for n in range(100)]
    assert all(scheduler.admit(item, 0.0) is HOLD for item in queue)


def test_one_a2p_number_sends_its_burst_as_one_batch_then_gathers() -> None:
    """250/s allowed: the burst the margin leaves (49) goes as one batch; after it, a take that
    left work behind waits ``gather_s`` so that the next sends leave together too."""
    settings = WorkerSettings(account_messages_per_s=250, a2p_numbers=("+1",))
    limits = Limits(settings)
    scheduler: SendScheduler[Item] = SendScheduler(
        limits, hold_s=2.0, park_tiers_s=TIERS, batch_max=50, window=800
    )
    for n in range(100):
        assert scheduler.admit(Item("+1", n), 0.0) is HOLD
    assert len(scheduler.take(0.0, gather_s=0.02)) == 49
    assert scheduler.take(0.0, gather_s=0.02) == []
    assert scheduler.next_ready_at() == 0.02  # a send is allowed sooner; it waits to gather
    assert len(scheduler.take(0.02, gather_s=0.02)) == 4  # 20 ms at 250/s, less the margin
    assert scheduler.take(0.02, max_items=0) == []


def test_a_take_never_exceeds_max_items() -> None:
    scheduler, _ = _scheduler(account_messages_per_s=0, number_messages_per_s=0)
    for n in range(10):
        scheduler.admit(Item("+1", n), 0.0)
    assert len(scheduler.take(0.0, max_items=3)) == 3
    assert len(scheduler.take(0.0)) == 7

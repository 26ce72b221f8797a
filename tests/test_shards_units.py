"""The pure parts of sharded sending: what is declared, the account's share, the settings."""

from __future__ import annotations

import pytest

from bridge.broker.router import sender_of
from bridge.broker.topology import Topology
from bridge.catapult import RATE_WINDOW_S
from bridge.settings import SettingsError, WorkerSettings, load_settings
from bridge.worker.limits import Limits


def test_no_shards_declares_nothing_more() -> None:
    plain = Topology.from_settings(load_settings()).declarations()
    names = {q.name for q in plain.queues} | {e.name for e in plain.exchanges}
    assert not any(".shard" in name or name.endswith((".router", ".workers")) for name in names)


def test_shards_declare_a_hash_exchange_bound_to_single_consumer_shard_queues() -> None:
    topology = Topology.from_settings(load_settings(worker={"shards": 3}))
    plan = topology.declarations()
    exchange = next(e for e in plan.exchanges if e.name == "outbound.sms.shards")
    assert exchange.type.value == "x-consistent-hash"
    queues = {q.name: dict(q.arguments) for q in plan.queues}
    for i in range(3):
        args = queues[f"outbound.sms.shard.{i}"]
        assert args["x-single-active-consumer"] is True
        # The send queue's own dead-lettering: what the broker gives up on lands in its backstop.
        assert args["x-dead-letter-routing-key"] == "outbound.sms"
        assert args["x-queue-type"] == "quorum"
    assert queues["outbound.sms.router"]["x-single-active-consumer"] is True
    assert "x-single-active-consumer" not in queues["outbound.sms.workers"]
    bound = {(b.exchange, b.routing_key, b.queue) for b in plan.bindings}
    assert {("outbound.sms.shards", "1", f"outbound.sms.shard.{i}") for i in range(3)} <= bound
    assert len(queues) == len(plan.queues)


@pytest.mark.parametrize(
    ("body", "sender"),
    [
        (b'{"from": "+19195550100", "to": "+1", "text": "x"}', "+19195550100"),
        (b'{"to": "+1"}', ""),
        (b'{"from": 5}', ""),
        (b"[1, 2]", ""),
        (b"not json", ""),
        (b"", ""),
    ],
)
def test_the_routing_key_is_the_sending_number(body: bytes, sender: str) -> None:
    assert sender_of(body) == sender


def limits(**worker: float) -> Limits:
    return Limits(WorkerSettings(**worker))  # type: ignore[arg-type]


def sends_in_window(limits: Limits, *, sender: str = "+1") -> int:
    """How many sends the account lets out at once (answers never come back)."""
    sent = 0
    now = 0.0
    while limits.send_ready_at(sender) <= now + RATE_WINDOW_S and sent < 1000:
        now = max(now, limits.send_ready_at(sender))
        limits.take_send(sender, now)
        sent += 1
    return sent


@pytest.mark.parametrize(
    ("held", "of", "expected"),
    [(8, 8, 100), (3, 8, 37), (2, 8, 25), (1, 8, 12), (1, 3, 33)],
)
def test_the_account_window_is_shared_by_the_shards_held(held: int, of: int, expected: int) -> None:
    shared = limits(account_messages_per_s=10, number_messages_per_s=0)
    shared.share_account(held, of=of)
    assert sends_in_window(shared) == expected
    assert shared.account_interval_s == pytest.approx(1.02 / (10 * held / of))


def test_the_parts_of_all_holders_never_add_up_to_more_than_the_account() -> None:
    for shards in (3, 8, 16):
        for split in ((shards,), (shards // 2, shards - shards // 2), (1,) * shards):
            total = 0
            for held in split:
                part = limits(account_messages_per_s=1.7, number_messages_per_s=0)
                part.share_account(held, of=shards)
                total += sends_in_window(part)
            assert total <= 17, (shards, split, total)


def test_a_share_counts_the_sends_already_made() -> None:
    shared = limits(account_messages_per_s=10, number_messages_per_s=0)
    for n in range(30):
        shared.take_send("+1", n * 0.1)
    shared.share_account(2, of=8)  # 25 a window, 30 already in flight
    assert shared.send_ready_at("+1") == float("inf")


def test_shards_need_one_send_a_window_each() -> None:
    assert load_settings(worker={"shards": 8, "account_messages_per_s": 1}).worker.shards == 8
    assert load_settings(worker={"shards": 64, "account_messages_per_s": 0}).worker.shards == 64
    with pytest.raises(SettingsError, match=r"worker\.shards \(16\) must not be above"):
        load_settings(worker={"shards": 16, "account_messages_per_s": 1})

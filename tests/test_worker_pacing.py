"""Sends in flight from the allowed rate and the answer time (Little's law). Pure, no I/O."""

from __future__ import annotations

import pytest
from pydantic import ValidationError

from bridge.settings import WorkerSettings
from bridge.worker.pacing import Pacing


@pytest.mark.parametrize(
    ("rate", "latency_s", "in_flight"),
    [
        (250.0, 0.02, 50),  # 250/s x 20 ms x 2 = 10: at least one full batch
        (1000.0, 0.02, 50),  # 40
        (1000.0, 0.1, 200),
        (1000.0, 5.0, 800),  # Catapult slow: bounded, nothing piles up
        (0.0, 0.02, 800),  # limits off: the bound
    ],
)
def test_sends_in_flight_follow_the_rate_and_the_answer_time(
    rate: float, latency_s: float, in_flight: int
) -> None:
    pacing = Pacing(rate_per_s=rate, batch_max=50, max_in_flight=800)
    for _ in range(200):
        pacing.observe(latency_s)
    assert pacing.latency_s == pytest.approx(latency_s, rel=1e-3)
    assert pacing.sends_in_flight == in_flight


def test_gathering_is_half_an_answer_time_and_bounded() -> None:
    pacing = Pacing(rate_per_s=250, batch_max=50, max_in_flight=800)
    for _ in range(200):
        pacing.observe(0.02)
    assert pacing.gather_s == pytest.approx(0.01, rel=1e-3)
    for _ in range(200):
        pacing.observe(3.0)
    assert pacing.gather_s == 0.05
    assert Pacing(rate_per_s=0, batch_max=50, max_in_flight=800).gather_s == 0.0


@pytest.mark.parametrize(
    ("rate", "prefetch"), [(0.0, 800), (250.0, 1000), (1000.0, 4000), (100_000.0, 10_000)]
)
def test_the_send_prefetch_follows_the_account_rate_within_amqp_bounds(
    rate: float, prefetch: int
) -> None:
    """Basic.Qos carries 16 bits: 100,000/s once asked for 400,000 and the worker never
    consumed."""
    assert WorkerSettings(account_messages_per_s=rate).send_prefetch == prefetch


def test_a_prefetch_over_what_amqp_carries_is_refused_at_start() -> None:
    with pytest.raises(ValidationError, match="prefetch"):
        WorkerSettings(prefetch=100_000)

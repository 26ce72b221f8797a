"""``Backoff``: capped doubling pauses, jittered between half and all, reset after a success."""

from __future__ import annotations

import pytest

from bridge.broker.backoff import Backoff


@pytest.mark.parametrize(
    ("draw", "expected"),
    [
        (0.0, [0.25, 0.5, 1.0, 2.0, 2.0, 2.0]),  # the least: half of each ceiling
        (1.0, [0.5, 1.0, 2.0, 4.0, 4.0, 4.0]),  # the most: the ceiling, capped at max_s
        (0.5, [0.375, 0.75, 1.5, 3.0, 3.0, 3.0]),
    ],
)
def test_pauses_double_up_to_the_cap_within_their_jitter(
    draw: float, expected: list[float]
) -> None:
    backoff = Backoff(initial_s=0.5, max_s=4.0, draw=lambda: draw)
    assert [backoff.next_pause_s() for _ in expected] == expected
    assert backoff.failures == len(expected)


def test_reset_starts_from_the_first_pause_again() -> None:
    backoff = Backoff(initial_s=1.0, max_s=8.0, draw=lambda: 1.0)
    assert [backoff.next_pause_s() for _ in range(3)] == [1.0, 2.0, 4.0]
    backoff.reset()
    assert backoff.failures == 0
    assert backoff.next_pause_s() == 1.0


@pytest.mark.parametrize(("initial_s", "max_s"), [(0.0, 1.0), (2.0, 1.0), (-1.0, 1.0)])
def test_nonsense_bounds_are_refused(initial_s: float, max_s: float) -> None:
    with pytest.raises(ValueError, match="initial_s"):
        Backoff(initial_s=initial_s, max_s=max_s)

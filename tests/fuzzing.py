"""Hypothesis settings shared by the fuzz tests, so their CI time stays bounded and repeatable.

In CI every fuzz test is derandomized (the same inputs on every run: a red run is a real bug,
never a different draw) and keeps no example database. ``BRIDGE_FUZZ_SCALE=N`` multiplies the
number of inputs and draws fresh ones, for a longer exploration by hand::

    BRIDGE_FUZZ_SCALE=20 uv run --frozen pytest tests/test_fuzz_callbacks.py

No per-example deadline: the machine a test runs on may be busy, and a slow example is not a
wrong one. Tests that wait on sockets bound every wait themselves.
"""

from __future__ import annotations

import os
from collections.abc import Callable
from typing import Any, TypeVar

from hypothesis import HealthCheck, settings

SCALE = max(1, int(os.environ.get("BRIDGE_FUZZ_SCALE", "1")))

F = TypeVar("F", bound=Callable[..., Any])


def fuzz_settings(*, max_examples: int) -> Callable[[F], F]:
    """``@settings`` for one fuzz test: ``max_examples`` inputs (times the scale)."""
    return settings(
        max_examples=max_examples * SCALE,
        derandomize=SCALE == 1,
        database=None,
        deadline=None,
        print_blob=True,
        # Function-scoped fixtures (a receiver, a queue) are shared by the examples on purpose.
        suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow],
    )

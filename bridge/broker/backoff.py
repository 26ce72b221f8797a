"""``Backoff``: the pauses between attempts to reach RabbitMQ again, capped and jittered.

Each failed attempt doubles the pause, from ``initial_s`` up to ``max_s``; each pause is drawn
between half and all of that, so bridges that lost the same broker do not all come back in the
same instant. ``reset`` after a success starts again from ``initial_s``. Pure: the random draw is
passed in, so the sequence is tested by table.
"""

from __future__ import annotations

import random
from collections.abc import Callable


class Backoff:
    def __init__(
        self,
        *,
        initial_s: float,
        max_s: float,
        draw: Callable[[], float] = random.random,
    ) -> None:
        if not 0 < initial_s <= max_s:
            raise ValueError(f"need 0 < initial_s <= max_s, got {initial_s:g} and {max_s:g}")
        self._initial_s = initial_s
        self._max_s = max_s
        self._draw = draw
        self._ceiling_s = initial_s
        self.failures = 0

    def next_pause_s(self) -> float:
        """The pause after one more failure: between half and all of the current ceiling."""
        ceiling = self._ceiling_s
        self._ceiling_s = min(ceiling * 2, self._max_s)
        self.failures += 1
        return ceiling * (0.5 + 0.5 * self._draw())

    def reset(self) -> None:
        self._ceiling_s = self._initial_s
        self.failures = 0


__all__ = ["Backoff"]

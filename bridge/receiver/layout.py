"""Which spool directory a receiver process owns, and which ones left by others it drains.

With ``receiver.processes = 1`` the receiver runs in the bridge's process and its spool is
``receiver.spool_dir`` itself. With N > 1, process ``i`` (0 to N-1) owns ``spool_dir/<i>``. A
spool nobody owns any more still holds events answered 200, so it is drained by a process that
runs now, never left on disk:

- N shrank (3 to 2): ``spool_dir/2`` is drained by process ``2 % 2 = 0``; in general ``spool_dir/k``
  for k >= N by process ``k % N``, so each left-over spool has exactly one drainer;
- N went from 1 to more: the spool in ``spool_dir`` itself is drained by process 0;
- N went back to 1: every ``spool_dir/<k>`` is drained by the one receiver.

A process that is restarted reopens its own directory (its index does not change), so its spool
is drained by itself. The decision (``left_over``) is pure; ``find_left_over`` lists the
directory.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass
from pathlib import Path

# A directory that has held a journal has its lock file (``spool.py``).
_JOURNAL_MARK = "lock"


@dataclass(frozen=True, slots=True)
class ProcessSlot:
    """Process ``index`` of ``count`` receiver processes serving one port."""

    index: int
    count: int

    def __post_init__(self) -> None:
        if not 0 <= self.index < self.count:
            raise ValueError(f"process index {self.index} is not in 0..{self.count - 1}")


def own_spool_dir(spool_dir: Path, slot: ProcessSlot | None) -> Path:
    """The spool directory of the process in ``slot`` (None: the one in-process receiver)."""
    return spool_dir if slot is None else spool_dir / str(slot.index)


ROOT = ""  # stands for ``spool_dir`` itself in ``left_over``


def left_over(names: Iterable[str], slot: ProcessSlot | None, *, root_used: bool) -> list[str]:
    """Which of ``spool_dir``'s entries (``names``) the process in ``slot`` drains, in order.

    ``root_used``: ``spool_dir`` itself holds a journal. ``ROOT`` in the answer stands for it.
    """
    indices = sorted(int(name) for name in names if name.isdigit() and name == str(int(name)))
    if slot is None:
        return [str(k) for k in indices]
    mine = [str(k) for k in indices if k >= slot.count and k % slot.count == slot.index]
    if slot.index == 0 and root_used:
        mine.insert(0, ROOT)
    return mine


def find_left_over(spool_dir: Path, slot: ProcessSlot | None) -> list[Path]:
    """The spool directories left by processes no longer running that this process drains."""
    if not spool_dir.is_dir():
        return []
    names = [
        entry.name
        for entry in spool_dir.iterdir()
        if entry.is_dir() and (entry / _JOURNAL_MARK).exists()
    ]
    root_used = (spool_dir / _JOURNAL_MARK).exists()
    return [
        spool_dir if name == ROOT else spool_dir / name
        for name in left_over(names, slot, root_used=root_used)
    ]

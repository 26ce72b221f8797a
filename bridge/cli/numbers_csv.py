"""The files of ``bridge import-numbers``: the numbers to import, and the results.

``read_numbers`` reads the whole CSV before anything is imported and reports every bad row with
its line number and why: a number that is not E.164, a number listed twice, a row without an
application id. A file that cannot be used at all (missing, not UTF-8, no ``number`` column) is
a ``UsageError``. Each good row gets the command id of its import, derived from the number and
the application: the same on every run, so a rerun or ``--resume`` publishes the same command
(and Catapult answers a second import of a number 409, which the worker reports as
``already-imported``).

The results file has one row per number: ``number,outcome,number_id,reason``. While a run goes,
each result is appended as it comes (so an interrupted run keeps what it learnt); at the end the
file is rewritten with the last word on each number, in the input's order. ``read_results`` is
what ``--resume`` starts from.
"""

from __future__ import annotations

import csv
import re
from collections.abc import Iterable, Iterator
from dataclasses import dataclass
from pathlib import Path

from bridge.cli.errors import UsageError
from bridge.events.cloudevents import deterministic_id

E164 = re.compile(r"^\+[1-9][0-9]{1,14}$")
NUMBER_COLUMN = "number"
APPLICATION_COLUMNS = ("applicationid", "application_id", "application")
DEFAULT_NAME = "catapult-bridge"
RESULT_COLUMNS = ("number", "outcome", "number_id", "reason")
# Outcomes a rerun does not repeat.
FINAL = frozenset({"succeeded", "already-imported"})


@dataclass(frozen=True, slots=True)
class Row:
    line: int
    number: str
    application_id: str
    name: str

    @property
    def command_id(self) -> str:
        return "import-" + deterministic_id("import-number", self.number, self.application_id)


@dataclass(frozen=True, slots=True)
class Problem:
    line: int
    number: str
    reason: str

    def __str__(self) -> str:
        return f"line {self.line}: {self.reason}"


@dataclass(frozen=True, slots=True)
class NumberList:
    rows: tuple[Row, ...]
    problems: tuple[Problem, ...]


@dataclass(frozen=True, slots=True)
class ResultRow:
    number: str
    outcome: str
    number_id: str = ""
    reason: str = ""


def _lines(path: Path) -> list[str]:
    try:
        text = path.read_text(encoding="utf-8-sig")
    except FileNotFoundError:
        raise UsageError(f"{path}: no such file") from None
    except IsADirectoryError:
        raise UsageError(f"{path}: is a directory, not a CSV file") from None
    except UnicodeDecodeError as exc:
        raise UsageError(f"{path}: not UTF-8 text (byte {exc.start})") from None
    except OSError as exc:
        raise UsageError(f"{path}: cannot read it ({exc.strerror})") from None
    return text.splitlines()


def _column(header: list[str], wanted: Iterable[str]) -> int | None:
    lowered = [h.strip().lower() for h in header]
    for name in wanted:
        if name.lower() in lowered:
            return lowered.index(name.lower())
    return None


def read_numbers(
    path: Path, *, application_id: str | None, name_column: str | None = None
) -> NumberList:
    """Every row of ``path``, good (``rows``) or not (``problems``), in file order."""
    lines = _lines(path)
    try:
        records = list(csv.reader(lines, strict=True))
    except csv.Error as exc:
        raise UsageError(f"{path}: not a readable CSV file ({exc})") from None
    if not records or not any(cell.strip() for cell in records[0]):
        raise UsageError(f"{path}: empty; the first line must be a header with a number column")
    header = records[0]
    number_at = _column(header, (NUMBER_COLUMN,))
    if number_at is None:
        columns = ", ".join(h.strip() for h in header)
        raise UsageError(f"{path}: no 'number' column in the header (it has: {columns})")
    application_at = _column(header, APPLICATION_COLUMNS)
    if name_column is not None:
        name_at = _column(header, (name_column,))
        if name_at is None:
            raise UsageError(f"{path}: no column {name_column!r} (--name-column) in the header")
    else:
        name_at = _column(header, ("name",))
    rows: list[Row] = []
    problems: list[Problem] = []
    first_seen: dict[str, int] = {}
    for index, record in enumerate(records[1:], start=2):
        if not any(cell.strip() for cell in record):
            continue

        def cell(at: int | None, record: list[str] = record) -> str:
            return record[at].strip() if at is not None and at < len(record) else ""

        number = cell(number_at)
        if not E164.match(number):
            shown = repr(number) if number else "an empty number"
            problems.append(
                Problem(index, number, f"{shown} is not an E.164 number (like +19195550100)")
            )
            continue
        if number in first_seen:
            problems.append(
                Problem(index, number, f"{number} again (first on line {first_seen[number]})")
            )
            continue
        first_seen[number] = index
        application = cell(application_at) or application_id or ""
        if not application:
            problems.append(
                Problem(
                    index,
                    number,
                    f"{number} has no application id (give --application-id, or an "
                    "applicationId column)",
                )
            )
            continue
        rows.append(Row(index, number, application, cell(name_at) or DEFAULT_NAME))
    return NumberList(tuple(rows), tuple(problems))


def read_results(path: Path) -> dict[str, ResultRow]:
    """The last result of each number in a results file (empty when there is none)."""
    if not path.exists():
        return {}
    found: dict[str, ResultRow] = {}
    try:
        with path.open(newline="", encoding="utf-8") as fh:
            for record in csv.DictReader(fh):
                number = (record.get("number") or "").strip()
                if number:
                    found[number] = ResultRow(
                        number,
                        (record.get("outcome") or "").strip(),
                        (record.get("number_id") or "").strip(),
                        (record.get("reason") or "").strip(),
                    )
    except (OSError, UnicodeDecodeError, csv.Error) as exc:
        raise UsageError(f"{path}: cannot read the results to resume from ({exc})") from None
    return found


class ResultsFile:
    """Appends results as they come; ``finish`` rewrites it with one row per number."""

    def __init__(self, path: Path, *, keep: Iterable[ResultRow] = ()) -> None:
        self.path = path
        try:
            self._fh = path.open("w", newline="", encoding="utf-8")
        except OSError as exc:
            raise UsageError(f"{path}: cannot write the results ({exc.strerror})") from None
        self._writer = csv.writer(self._fh)
        self._writer.writerow(RESULT_COLUMNS)
        for row in keep:
            self.add(row)

    def add(self, row: ResultRow) -> None:
        self._writer.writerow((row.number, row.outcome, row.number_id, row.reason))
        self._fh.flush()

    def finish(self, rows: Iterator[ResultRow]) -> None:
        self._fh.close()
        with self.path.open("w", newline="", encoding="utf-8") as fh:
            writer = csv.writer(fh)
            writer.writerow(RESULT_COLUMNS)
            for row in rows:
                writer.writerow((row.number, row.outcome, row.number_id, row.reason))


__all__ = [
    "FINAL",
    "NumberList",
    "Problem",
    "ResultRow",
    "ResultsFile",
    "Row",
    "read_numbers",
    "read_results",
]

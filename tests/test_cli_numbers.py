"""``bridge import-numbers``: the file checked first, one import per number, interrupt and resume.

The bridge runs in this process on the embedded simulator (whose Dashboard holds
+19195550100..+19195550199, the first 20 on the account); the command line is a subprocess.
"""

from __future__ import annotations

import csv
import signal
from pathlib import Path
from typing import Any

import pytest

from bridge.cli.errors import UsageError
from bridge.cli.numbers import Tally, status
from bridge.cli.numbers_csv import read_numbers
from bridge.runtime import Roles
from tests.fixtures.cli import CliFactory, cli_environ

APP = "a-testapplication23456abc"


def _csv(tmp_path: Path, text: str, name: str = "numbers.csv") -> Path:
    path = tmp_path / name
    path.write_text(text)
    return path


def _numbers(first: int, count: int) -> list[str]:
    return [f"+1919555{n:04d}" for n in range(first, first + count)]


def _results(path: Path) -> dict[str, dict[str, str]]:
    with path.open(newline="") as fh:
        return {row["number"]: row for row in csv.DictReader(fh)}


# --- the file, read before anything is imported ------------------------------------------------


def test_every_bad_row_is_reported_with_its_line(tmp_path: Path) -> None:
    path = _csv(
        tmp_path,
        "number,name,applicationId\n"
        "+19195550120,one,\n"
        "919-555-0121,two,\n"
        "\n"
        "+19195550120,again,\n"
        "+19195550122,three,a-other\n"
        ",empty,\n",
    )

    read = read_numbers(path, application_id=APP)

    assert [(r.line, r.number, r.application_id, r.name) for r in read.rows] == [
        (2, "+19195550120", APP, "one"),
        (6, "+19195550122", "a-other", "three"),
    ]
    assert [str(p) for p in read.problems] == [
        "line 3: '919-555-0121' is not an E.164 number (like +19195550100)",
        "line 5: +19195550120 again (first on line 2)",
        "line 7: an empty number is not an E.164 number (like +19195550100)",
    ]


def test_rows_without_an_application_are_bad(tmp_path: Path) -> None:
    read = read_numbers(_csv(tmp_path, "number\n+19195550120\n"), application_id=None)

    assert read.rows == ()
    assert "no application id" in str(read.problems[0])


def test_the_command_id_depends_on_number_and_application_only(tmp_path: Path) -> None:
    one = read_numbers(_csv(tmp_path, "number,name\n+19195550120,a\n", "a.csv"), application_id=APP)
    two = read_numbers(_csv(tmp_path, "number,name\n+19195550120,b\n", "b.csv"), application_id=APP)
    other = read_numbers(_csv(tmp_path, "number\n+19195550120\n", "c.csv"), application_id="a-x")

    assert one.rows[0].command_id == two.rows[0].command_id
    assert one.rows[0].command_id != other.rows[0].command_id


@pytest.mark.parametrize(
    ("text", "says"),
    [
        ("", "empty"),
        ("phone,name\n+19195550120,x\n", "no 'number' column"),
        ('number\n"+1919555\n', "not a readable CSV"),
    ],
)
def test_unusable_files_are_usage_errors(tmp_path: Path, text: str, says: str) -> None:
    with pytest.raises(UsageError, match=says):
        read_numbers(_csv(tmp_path, text), application_id=APP)


def test_missing_file_is_a_usage_error(tmp_path: Path) -> None:
    with pytest.raises(UsageError, match="no such file"):
        read_numbers(tmp_path / "nowhere.csv", application_id=APP)


@pytest.mark.parametrize(
    ("results_at", "window_full", "quiet_s", "expected"),
    [
        ([0.5 * i for i in range(40)], True, 0.0, "waiting on Catapult's number-call limit"),
        ([0.5 * i for i in range(40)], False, 0.0, "importing"),
        ([2.0 * i for i in range(10)], True, 0.0, "importing"),
        ([0.5 * i for i in range(40)], True, 30.0, "waiting for the worker"),
    ],
)
def test_status_says_what_the_run_waits_on(
    results_at: list[float], window_full: bool, quiet_s: float, expected: str
) -> None:
    tally = Tally(total=100, started_at=0.0, last_result_at=0.0)
    for at in results_at:
        tally.count("succeeded", at)
    now = results_at[-1] + quiet_s

    said = status(tally, now=now, limit_per_min=100.0, window_full=window_full)

    assert expected in said


# --- against a running bridge --------------------------------------------------------------------


async def test_strict_imports_nothing_when_a_row_is_bad(
    make_bridge: Any, cli: CliFactory, tmp_path: Path
) -> None:
    bridge: Roles = await make_bridge()
    assert bridge.simulator is not None
    before = len(bridge.simulator.state.numbers)
    path = _csv(tmp_path, "number\n+19195550120\n+1919555012x\n")

    run = await cli(
        "import-numbers", str(path), "--application-id", APP, "--strict",
        environ=cli_environ(bridge.settings),
    ).start()  # fmt: skip

    assert await run.wait() == 2
    assert f"{path}: line 3: '+1919555012x' is not an E.164 number" in run.stderr[0]
    assert "nothing imported (--strict)" in run.stderr[-1]
    assert len(bridge.simulator.state.numbers) == before


async def test_import_then_rerun_imports_each_number_once(
    make_bridge: Any, cli: CliFactory, tmp_path: Path
) -> None:
    bridge: Roles = await make_bridge(worker={"number_requests_per_min": 0})
    assert bridge.simulator is not None
    app = next(iter(bridge.simulator.state.applications))
    numbers = _numbers(120, 12)
    path = _csv(tmp_path, "number,name\n" + "".join(f"{n},n{n[-3:]}\n" for n in numbers))
    path.write_text(path.read_text() + "bad-row,x\n")
    environ = cli_environ(bridge.settings)
    args = ("import-numbers", str(path), "--application-id", app, "--in-flight", "3")

    first = await cli(*args, environ=environ).start()

    assert await first.wait() == 1, first.text()  # the bad row was skipped
    assert "line 14: 'bad-row' is not an E.164 number" in first.stderr[0]
    results = _results(tmp_path / "numbers.results.csv")
    assert {results[n]["outcome"] for n in numbers} == {"succeeded"}
    assert all(results[n]["number_id"].startswith("n-") for n in numbers)
    assert results["bad-row"]["outcome"] == "invalid"
    for number in numbers:
        record = bridge.simulator.state.number(number)
        assert record is not None
        assert record.application_id == app

    again = await cli(*args, environ=environ).start()

    assert await again.wait() == 1
    results = _results(tmp_path / "numbers.results.csv")
    assert {results[n]["outcome"] for n in numbers} == {"already-imported"}
    assert len([n for n in bridge.simulator.state.numbers.values() if n.number in numbers]) == 12

    resumed = await cli(*args, "--resume", environ=environ).start()

    assert await resumed.wait() == 1
    assert "resuming: 12 number(s) already done" in resumed.stdout[0]


async def test_interrupted_then_resumed_imports_every_number_once(
    make_bridge: Any, cli: CliFactory, tmp_path: Path
) -> None:
    # 240 number calls a minute: a result every quarter second, time to interrupt.
    bridge: Roles = await make_bridge(worker={"number_requests_per_min": 240})
    assert bridge.simulator is not None
    app = next(iter(bridge.simulator.state.applications))
    numbers = _numbers(140, 10)
    path = _csv(tmp_path, "number\n" + "".join(f"{n}\n" for n in numbers))
    environ = cli_environ(bridge.settings)
    args = ("import-numbers", str(path), "--application-id", app, "--in-flight", "2")

    first = await cli(*args, environ=environ).start()
    await first.line(lambda line: line.startswith("2/10 "))
    first.signal(signal.SIGINT)

    assert await first.wait() == 130
    assert any("--resume" in line for line in first.stdout)
    results = _results(tmp_path / "numbers.results.csv")
    outcomes = [results[n]["outcome"] for n in numbers]
    assert outcomes[:2] == ["succeeded", "succeeded"]
    assert "not-imported" in outcomes

    resumed = await cli(*args, "--resume", environ=environ).start()

    assert await resumed.wait() == 0, resumed.text()
    results = _results(tmp_path / "numbers.results.csv")
    assert {results[n]["outcome"] for n in numbers} <= {"succeeded", "already-imported"}
    on_account = [r for r in bridge.simulator.state.numbers.values() if r.number in numbers]
    assert sorted(r.number for r in on_account) == numbers  # each once

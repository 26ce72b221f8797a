"""The ``bridge`` command line: a bad setting exits with status 2 and names the setting on stderr.

The first tests run the installed ``bridge`` console script in a subprocess (its real exit status
and streams); the rest call ``bridge.cli.main`` in-process. None of them starts a runner: every
command here stops at the settings or at ``--help``.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

from bridge.cli import main
from tests.test_config_file import clear_bridge_environment

BRIDGE = Path(sys.executable).with_name("bridge")
SUBCOMMANDS = (
    "run", "simulator", "schemas", "config", "send", "tail", "import-numbers", "dlq", "check",
    "topology",
)  # fmt: skip
RECEIVER_PASSWORD = "receiver-pass-Kd93"


@pytest.fixture(autouse=True)
def _clean_environment(monkeypatch: pytest.MonkeyPatch) -> None:
    clear_bridge_environment(monkeypatch)


def _bridge(*args: str, env: dict[str, str] | None = None) -> subprocess.CompletedProcess[str]:
    """Run the console script with the test's environment (no BRIDGE_ variables but ``env``)."""
    environment = {k: v for k, v in os.environ.items() if not k.upper().startswith("BRIDGE_")}
    environment.update(env or {})
    return subprocess.run(  # noqa: S603 - our own console script, fixed arguments
        [str(BRIDGE), *args],
        env=environment,
        capture_output=True,
        text=True,
        timeout=30,
        check=False,
    )


def _toml(tmp_path: Path, text: str) -> Path:
    path = tmp_path / "bridge.toml"
    path.write_text(text)
    return path


# --- the console script ------------------------------------------------------------------------


def test_console_script_is_installed() -> None:
    assert BRIDGE.is_file(), "uv sync installs the `bridge` console script into the virtualenv"


def test_bad_config_file_exits_2_naming_the_setting(tmp_path: Path) -> None:
    path = _toml(tmp_path, "[receiver]\nport = 'eighty'\n[broker]\nurll = 'amqp://x'\n")

    done = _bridge("run", "--config", str(path))

    assert done.returncode == 2
    assert "receiver.port" in done.stderr
    assert "broker.urll: unknown setting" in done.stderr
    assert done.stdout == ""


def test_bad_environment_exits_2_naming_the_setting() -> None:
    done = _bridge("run", env={"BRIDGE_BROKER__QUEUE_TYPE": "stream"})

    assert done.returncode == 2
    assert "broker.queue_type" in done.stderr


def test_missing_secret_exits_2_naming_it_without_printing_secrets() -> None:
    done = _bridge(
        "run",
        env={
            "BRIDGE_CATAPULT__BASE_URL": "https://api.catapult.inetwork.com/v1",
            "BRIDGE_CATAPULT__USER_ID": "u-someone",
            "BRIDGE_CATAPULT__API_TOKEN": "t-token",
            "BRIDGE_RECEIVER__USERNAME": "catapult",
            "BRIDGE_RECEIVER__PASSWORD": RECEIVER_PASSWORD,
        },
    )

    assert done.returncode == 2
    assert "catapult.api_secret" in done.stderr
    assert RECEIVER_PASSWORD not in done.stderr + done.stdout


# --- main() in-process -------------------------------------------------------------------------


@pytest.mark.parametrize("command", ["run", "simulator", "config"])
def test_every_settings_command_rejects_a_bad_file(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], command: str
) -> None:
    path = _toml(tmp_path, "[log]\nlevel = 'LOUD'\n")

    assert main([command, "--config", str(path)]) == 2

    err = capsys.readouterr().err
    assert err.startswith("bridge: invalid settings:")
    assert "log.level" in err


def test_config_file_from_environment_is_checked(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    monkeypatch.setenv("BRIDGE_CONFIG_FILE", str(_toml(tmp_path, "[worker]\nbatch_max = 500\n")))

    assert main(["run"]) == 2

    assert "worker.batch_max" in capsys.readouterr().err


def test_missing_config_file_exits_2(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["run", "--config", str(tmp_path / "nowhere.toml")]) == 2

    assert "nowhere.toml does not exist" in capsys.readouterr().err


def test_flag_out_of_range_is_named_as_its_setting(capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["run", "--port", "70000"]) == 2

    assert "receiver.port" in capsys.readouterr().err


def test_flag_of_the_wrong_type_is_a_usage_error(capsys: pytest.CaptureFixture[str]) -> None:
    with pytest.raises(SystemExit) as exited:
        main(["run", "--port", "eighty"])

    assert exited.value.code == 2
    assert "--port" in capsys.readouterr().err


def test_unknown_role_is_a_usage_error(capsys: pytest.CaptureFixture[str]) -> None:
    with pytest.raises(SystemExit) as exited:
        main(["run", "--role", "everything"])

    assert exited.value.code == 2
    assert "--role" in capsys.readouterr().err


def test_a_subcommand_is_required(capsys: pytest.CaptureFixture[str]) -> None:
    with pytest.raises(SystemExit) as exited:
        main([])

    assert exited.value.code == 2
    assert "usage: bridge" in capsys.readouterr().err


# --- help ----------------------------------------------------------------------------------------


def test_top_level_help_lists_every_subcommand(capsys: pytest.CaptureFixture[str]) -> None:
    with pytest.raises(SystemExit) as exited:
        main(["--help"])

    assert exited.value.code == 0
    out = capsys.readouterr().out
    for command in SUBCOMMANDS:
        assert command in out


@pytest.mark.parametrize("command", SUBCOMMANDS)
def test_help_of_each_subcommand(command: str, capsys: pytest.CaptureFixture[str]) -> None:
    with pytest.raises(SystemExit) as exited:
        main([command, "--help"])

    assert exited.value.code == 0
    assert f"usage: bridge {command}" in capsys.readouterr().out


@pytest.mark.parametrize("action", ["list", "show", "replay"])
def test_help_of_each_dlq_action(action: str, capsys: pytest.CaptureFixture[str]) -> None:
    with pytest.raises(SystemExit) as exited:
        main(["dlq", action, "--help"])

    assert exited.value.code == 0
    assert f"usage: bridge dlq {action}" in capsys.readouterr().out


@pytest.mark.parametrize(
    "argv",
    [
        ["send", "--from", "+19195550100", "--text", "no --to"],
        ["tail", "--count", "many"],
        ["import-numbers"],
        ["dlq", "purge", "outbound.sms.dead"],
        ["topology", "--yaml"],
    ],
)
def test_wrong_flags_are_usage_errors(argv: list[str], capsys: pytest.CaptureFixture[str]) -> None:
    with pytest.raises(SystemExit) as exited:
        main(argv)

    assert exited.value.code == 2
    assert "error:" in capsys.readouterr().err


def test_console_script_help() -> None:
    done = _bridge("--help")

    assert done.returncode == 0
    assert "usage: bridge" in done.stdout


# --- small things a user meets -------------------------------------------------------------------


def test_config_into_a_pipe_closed_early_ends_without_a_traceback() -> None:
    environment = {k: v for k, v in os.environ.items() if not k.upper().startswith("BRIDGE_")}
    process = subprocess.Popen(  # noqa: S603 - our own console script, fixed arguments
        [str(BRIDGE), "config"],
        env=environment,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        bufsize=0,
    )
    assert process.stdout is not None
    assert process.stderr is not None
    assert process.stdout.read(1) == b"{"  # like `| head -c 1`: the reader goes away
    process.stdout.close()
    error = process.stderr.read().decode()
    process.wait(timeout=30)
    assert "Traceback" not in error
    assert "BrokenPipe" not in error


@pytest.mark.parametrize("level", ["debug", "Debug", "DEBUG"])
def test_log_level_in_any_case(level: str, capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["config", "--log-level", level]) == 0

    assert json.loads(capsys.readouterr().out)["log"]["level"] == "DEBUG"


def test_log_level_from_the_environment_in_any_case(
    monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    monkeypatch.setenv("BRIDGE_LOG__LEVEL", "warning")

    assert main(["config"]) == 0

    assert json.loads(capsys.readouterr().out)["log"]["level"] == "WARNING"


def test_config_masks_only_the_password_of_the_broker_url(
    capsys: pytest.CaptureFixture[str],
) -> None:
    url = "amqp://app-user:pw-Zr4@rabbit.example:5671/prod"

    assert main(["config", "--amqp-url", url]) == 0

    out = capsys.readouterr().out
    assert json.loads(out)["broker"]["url"] == "amqp://app-user:***@rabbit.example:5671/prod"
    assert "pw-Zr4" not in out

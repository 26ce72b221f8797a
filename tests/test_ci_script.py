"""``.ci/run``'s RabbitMQ steps, run for real in bash with a PATH the test chooses.

A fresh machine has no ``rabbitmqctl``: the script must install Debian's ``rabbitmq-server`` with
apt-get. That branch is run here with a PATH that lacks RabbitMQ's tools and holds a recording
``apt-get`` (it notes its arguments and, for an install, leaves a ``rabbitmqctl`` where the package
would put one), so what is tested is our script's logic. The start step runs with recording
RabbitMQ tools too (a node that is running, and one that is not), so these tests never touch a
broker; ``bash .ci/run`` itself runs the steps against the real one.
"""

from __future__ import annotations

import os
import shutil
import subprocess
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent
SCRIPT = ROOT / ".ci" / "run"
BASH = shutil.which("bash") or "/bin/bash"

RECORDER = """#!/bin/sh
echo "$(basename "$0") $*" >> "{log}"
{extra}
"""
# What installing the package leaves behind, as far as the script looks.
MAKES_RABBITMQCTL = """case "$*" in *install*rabbitmq-server*)
  printf '#!/bin/sh\\nexit 0\\n' > "{bin}/rabbitmqctl"; chmod +x "{bin}/rabbitmqctl";;
esac"""


def _recorder(bin_dir: Path, name: str, log: Path, extra: str = "") -> None:
    path = bin_dir / name
    path.write_text(RECORDER.format(log=log, extra=extra.format(bin=bin_dir)))
    path.chmod(0o755)


def _run(function: str, path: str, cwd: Path) -> subprocess.CompletedProcess[str]:
    """Source the script (which runs nothing) in ``cwd`` and call one of its functions."""
    return subprocess.run(  # noqa: S603 - our own script, fixed arguments
        [BASH, "-c", f'. "{SCRIPT}" && {function}'],
        cwd=cwd,
        env={"PATH": path, "HOME": os.environ.get("HOME", "/root")},
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )


def _calls(log: Path) -> list[str]:
    return log.read_text().splitlines() if log.exists() else []


def test_sourcing_the_script_runs_nothing(tmp_path: Path) -> None:
    log = tmp_path / "calls.log"
    for tool in ("uv", "python3", "make", "apt-get", "rabbitmqctl", "rabbitmq-server"):
        _recorder(tmp_path, tool, log)
    result = _run("true", f"{tmp_path}:/usr/bin:/bin", tmp_path)
    assert result.returncode == 0, result.stderr
    assert _calls(log) == []


def test_a_machine_without_rabbitmqctl_installs_the_debian_package(tmp_path: Path) -> None:
    bin_dir = tmp_path / "bin"
    bin_dir.mkdir()
    log = tmp_path / "calls.log"
    _recorder(bin_dir, "apt-get", log, MAKES_RABBITMQCTL)
    # /usr/bin and /bin hold the shell's tools; RabbitMQ's are in /usr/sbin, left out.
    path = f"{bin_dir}:/usr/bin:/bin"
    assert shutil.which("rabbitmqctl", path=path) is None

    result = _run("install_rabbitmq", path, tmp_path)

    assert result.returncode == 0, result.stderr
    assert "installing Debian's rabbitmq-server" in result.stdout
    assert _calls(log) == [
        "apt-get update -q",
        "apt-get install -y -q --no-install-recommends rabbitmq-server",
    ]


def test_without_apt_get_it_says_how_to_get_a_broker(tmp_path: Path) -> None:
    result = _run("install_rabbitmq", str(tmp_path), tmp_path)

    assert result.returncode == 1
    assert "rabbitmq-server package" in result.stderr
    assert "docker run" in result.stderr
    assert "BRIDGE_TEST_AMQP_URL" in result.stderr


def test_an_installed_rabbitmq_is_not_installed_again(tmp_path: Path) -> None:
    log = tmp_path / "calls.log"
    _recorder(tmp_path, "apt-get", log)
    rabbitmqctl = shutil.which("rabbitmqctl")
    assert rabbitmqctl is not None, "the tests need RabbitMQ installed: run bash .ci/run"
    path = f"{tmp_path}:{Path(rabbitmqctl).parent}:/usr/bin:/bin"

    result = _run("install_rabbitmq", path, tmp_path)

    assert result.returncode == 0, result.stderr
    assert _calls(log) == []


@pytest.mark.parametrize("is_running", [True, False])
def test_the_node_is_started_only_when_it_is_not_running_and_gets_its_plugins(
    tmp_path: Path, is_running: bool
) -> None:
    log = tmp_path / "calls.log"
    status = "0" if is_running else "1"
    _recorder(tmp_path, "rabbitmqctl", log, f'case "$*" in *status*) exit {status};; esac')
    _recorder(tmp_path, "rabbitmq-server", log)
    _recorder(tmp_path, "rabbitmq-plugins", log)

    result = _run("start_rabbitmq", f"{tmp_path}:/usr/bin:/bin", tmp_path)

    assert result.returncode == 0, result.stderr
    started = [] if is_running else ["rabbitmq-server -detached"]
    assert _calls(log) == [
        "rabbitmqctl -q status",
        *started,
        "rabbitmqctl -q await_startup --timeout 120",
        "rabbitmq-plugins -q enable rabbitmq_consistent_hash_exchange",
    ]

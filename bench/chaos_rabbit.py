"""A RabbitMQ node of the chaos runner's own, and a guard that the machine's default node is spared.

The runner stops, starts and closes the connections of a broker; it must never be the one other
programs on the machine use. ``PrivateNode`` runs a separate node (its own node name, AMQP and
distribution ports, data, log and pid files, config and enabled-plugins files, all in a temporary
directory) from the installed RabbitMQ, as the user running the runner. It has an Erlang cookie of
its own, in a home directory of its own: the CLI commands the runner issues carry that cookie, so
they could not reach another node even if a name were mistyped.

``DefaultNodeGuard`` reads what identifies the default node (the OS process behind its pid file,
its cookie file's digest, whether its AMQP port answers) before the run and compares after.
"""

from __future__ import annotations

import asyncio
import contextlib
import hashlib
import os
import secrets
import shutil
import signal
import socket
import string
import time
from dataclasses import dataclass
from pathlib import Path

RABBITMQ_BIN = Path(os.environ.get("RABBITMQ_BIN", "/usr/lib/rabbitmq/bin"))
DEFAULT_COOKIE = Path("/var/lib/rabbitmq/.erlang.cookie")
DEFAULT_PID_FILE = Path("/var/lib/rabbitmq/mnesia/rabbit@localhost.pid")
DEFAULT_AMQP_PORT = 5672
# Where a run notes its node, so the next run can stop one left over by a killed runner.
NOTES = Path("/tmp")  # noqa: S108 - a fixed place, found by the next run


def _note_path(name: str) -> Path:
    return NOTES / f"bridge-chaos-node-{name.replace('@', '-')}.pid"


class NodeError(RuntimeError):
    """The private node could not be started, stopped or reached."""


def _port_answers(port: int) -> bool:
    with contextlib.suppress(OSError), socket.create_connection(("127.0.0.1", port), timeout=1):
        return True
    return False


@dataclass(frozen=True)
class DefaultNodeState:
    pid: int | None
    pid_alive: bool
    cookie_sha256: str | None
    amqp_answers: bool

    def describe(self) -> str:
        cookie = "unreadable" if self.cookie_sha256 is None else self.cookie_sha256[:12]
        return (
            f"pid {self.pid} ({'running' if self.pid_alive else 'not running'}), "
            f"cookie sha256 {cookie}, port {DEFAULT_AMQP_PORT} "
            f"{'answers' if self.amqp_answers else 'does not answer'}"
        )


class DefaultNodeGuard:
    """What the default node looks like, before and after."""

    def __init__(self) -> None:
        self.before = self.read()

    @staticmethod
    def read() -> DefaultNodeState:
        pid: int | None = None
        with contextlib.suppress(OSError, ValueError):
            pid = int(DEFAULT_PID_FILE.read_text().strip())
        alive = pid is not None and Path(f"/proc/{pid}").exists()
        digest: str | None = None
        with contextlib.suppress(OSError):
            digest = hashlib.sha256(DEFAULT_COOKIE.read_bytes()).hexdigest()
        return DefaultNodeState(pid, alive, digest, _port_answers(DEFAULT_AMQP_PORT))

    def check(self) -> tuple[bool, str]:
        after = self.read()
        same = after == self.before
        text = f"default RabbitMQ node {'untouched' if same else 'CHANGED'}: {after.describe()}"
        if not same:
            text += f" (before: {self.before.describe()})"
        return same, text


class PrivateNode:
    """``chaos@localhost`` on 127.0.0.1:``amqp_port``, in ``base`` (created, and removed by
    ``discard``)."""

    def __init__(self, base: Path, *, name: str, amqp_port: int, dist_port: int) -> None:
        self.base = base
        self.name = name
        self.amqp_port = amqp_port
        self.dist_port = dist_port
        self.home = base / "home"
        self.pid_file = base / "node.pid"
        self.log_dir = base / "log"
        self.url = f"amqp://guest:guest@127.0.0.1:{amqp_port}/"

    # -- set-up ----------------------------------------------------------------------------------

    def prepare(self) -> None:
        for directory in (self.home, self.log_dir, self.base / "mnesia"):
            directory.mkdir(parents=True, exist_ok=True)
        cookie = self.home / ".erlang.cookie"
        if not cookie.exists():
            cookie.write_text("".join(secrets.choice(string.ascii_uppercase) for _ in range(32)))
            cookie.chmod(0o400)
        (self.base / "rabbitmq-env.conf").write_text("# the chaos runner's node: nothing here\n")
        (self.base / "rabbitmq.conf").write_text(
            f"listeners.tcp.default = 127.0.0.1:{self.amqp_port}\nloopback_users = none\n"
        )
        (self.base / "enabled_plugins").write_text("[].\n")

    def environ(self) -> dict[str, str]:
        env = {k: v for k, v in os.environ.items() if not k.startswith(("RABBITMQ_", "ERL_"))}
        env.update(
            HOME=str(self.home),
            RABBITMQ_CONF_ENV_FILE=str(self.base / "rabbitmq-env.conf"),
            RABBITMQ_CONFIG_FILE=str(self.base / "rabbitmq.conf"),
            RABBITMQ_ENABLED_PLUGINS_FILE=str(self.base / "enabled_plugins"),
            RABBITMQ_NODENAME=self.name,
            RABBITMQ_NODE_IP_ADDRESS="127.0.0.1",
            RABBITMQ_NODE_PORT=str(self.amqp_port),
            RABBITMQ_DIST_PORT=str(self.dist_port),
            RABBITMQ_MNESIA_BASE=str(self.base / "mnesia"),
            RABBITMQ_LOG_BASE=str(self.log_dir),
            RABBITMQ_PID_FILE=str(self.pid_file),
            ERL_EPMD_ADDRESS="127.0.0.1",
        )
        return env

    # -- commands --------------------------------------------------------------------------------

    async def _run(self, *argv: str, timeout_s: float) -> tuple[int, str]:
        process = await asyncio.create_subprocess_exec(
            *argv,
            env=self.environ(),
            cwd=self.base,
            stdin=asyncio.subprocess.DEVNULL,
            stdout=asyncio.subprocess.PIPE,
            stderr=asyncio.subprocess.STDOUT,
        )
        try:
            out, _ = await asyncio.wait_for(process.communicate(), timeout_s)
        except TimeoutError:
            process.kill()
            await process.wait()
            raise NodeError(f"{' '.join(argv[:3])} took more than {timeout_s:.0f} s") from None
        return process.returncode or 0, out.decode(errors="replace")

    async def ctl(self, *args: str, timeout_s: float = 30.0) -> str:
        code, out = await self._run(
            str(RABBITMQ_BIN / "rabbitmqctl"), "-n", self.name, *args, timeout_s=timeout_s
        )
        if code != 0:
            raise NodeError(f"rabbitmqctl -n {self.name} {' '.join(args)}: {out.strip()[-400:]}")
        return out

    def os_pid(self) -> int | None:
        with contextlib.suppress(OSError, ValueError):
            pid = int(self.pid_file.read_text().strip())
            if _is_alive(pid):
                return pid
        return None

    async def start(self, *, timeout_s: float = 90.0) -> float:
        """Start the node and wait until it serves AMQP; the seconds it took."""
        started = time.monotonic()
        if _port_answers(self.amqp_port):
            raise NodeError(f"port {self.amqp_port} is taken: another node or program uses it")
        code, out = await self._run(
            str(RABBITMQ_BIN / "rabbitmq-server"), "-detached", timeout_s=30
        )
        if code != 0:
            raise NodeError(f"rabbitmq-server -detached failed: {out.strip()[-400:]}")
        await self.ctl(
            "wait", str(self.pid_file), "--timeout", str(int(timeout_s)), timeout_s=timeout_s
        )
        await self.ctl("await_startup", "--timeout", str(int(timeout_s)), timeout_s=timeout_s)
        pid = self.os_pid()
        if pid is not None:
            _note_leftover(self.name, pid, self.base)
        deadline = time.monotonic() + 15
        while not _port_answers(self.amqp_port):  # the listener can lag the boot by a moment
            if time.monotonic() > deadline:
                raise NodeError(f"the node started but port {self.amqp_port} does not answer")
            await asyncio.sleep(0.1)
        return time.monotonic() - started

    async def stop(self, *, timeout_s: float = 60.0) -> float:
        """Stop the node (its Erlang VM exits); the seconds it took."""
        started = time.monotonic()
        pid = self.os_pid()
        await self.ctl("stop", timeout_s=timeout_s)
        deadline = time.monotonic() + timeout_s
        while pid is not None and _is_alive(pid):
            if time.monotonic() > deadline:
                raise NodeError(f"the node's VM (pid {pid}) did not exit")
            await asyncio.sleep(0.1)
        return time.monotonic() - started

    async def close_all_connections(self, why: str) -> int:
        """Force-close every client connection of this node; how many there were."""
        listed = await self.ctl("list_connections", "name", "--quiet", "--no-table-headers")
        count = sum(1 for line in listed.splitlines() if line.strip())
        await self.ctl("close_all_connections", why)
        return count

    def is_running(self) -> bool:
        return self.os_pid() is not None

    async def discard(self, keep_logs_in: Path | None) -> None:
        """Stop the node if it runs, keep its logs if asked, remove its directory."""
        if self.is_running():
            with contextlib.suppress(NodeError):
                await self.stop()
        pid = self.os_pid()
        if pid is not None:
            os.kill(pid, signal.SIGKILL)
        if keep_logs_in is not None and self.log_dir.exists():
            shutil.copytree(self.log_dir, keep_logs_in, dirs_exist_ok=True)
        _forget_leftover(self.name)
        shutil.rmtree(self.base, ignore_errors=True)


def _is_alive(pid: int) -> bool:
    return Path(f"/proc/{pid}").exists()


def _note_leftover(name: str, pid: int, base: Path) -> None:
    _note_path(name).write_text(f"{pid} {base}\n")


def _forget_leftover(name: str) -> None:
    with contextlib.suppress(OSError):
        _note_path(name).unlink()


def stop_leftover_node(name: str) -> str | None:
    """Kill the node ``name`` a killed runner left behind, and remove its directory (only when
    the process behind the note is that node, started from that directory)."""
    try:
        pid_text, _, base = _note_path(name).read_text().strip().partition(" ")
        pid = int(pid_text)
    except (OSError, ValueError):
        return None
    try:
        cmdline = Path(f"/proc/{pid}/cmdline").read_bytes().replace(b"\0", b" ").decode()
    except OSError:
        cmdline = ""
    note = None
    if base and name in cmdline and base in cmdline:
        os.kill(pid, signal.SIGKILL)
        note = f"killed the node a previous run left behind (pid {pid})"
    _forget_leftover(name)
    if base and Path(base).name.startswith("bridge-chaos-node-"):
        shutil.rmtree(base, ignore_errors=True)
    return note

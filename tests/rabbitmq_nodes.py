"""RabbitMQ nodes of our own, started from the installed RabbitMQ: one node, or a cluster of them.

Tests and benchmarks that stop a broker, cut it off or cluster it must never touch the node other
programs on the machine use (``rabbit@localhost`` on 5672). A ``RabbitNode`` is a separate node:
its own node name, AMQP and distribution ports, and its own data, log, pid, config and
enabled-plugins files, all under one directory, with an Erlang cookie in a home directory of its
own (so the CLI commands issued here carry that cookie and could not reach another node even if a
name were mistyped). ``RabbitCluster`` starts several such nodes sharing one cookie and joins them
(``stop_app``, ``join_cluster``, ``start_app``), as an operator would.

Every command runs with a deadline; waiting for a node is RabbitMQ's own ``rabbitmqctl wait`` and
``await_startup``, never a polling loop. The calls block (they run subprocesses): async callers
wrap them in ``asyncio.to_thread``.

A process that dies without stopping its nodes leaves them running; the next ``start`` of a node
with the same name and directory finds the note it left and kills that node first (only if the
process's command line names that node and directory).
"""

from __future__ import annotations

import contextlib
import json
import os
import secrets
import select
import shutil
import signal
import socket
import string
import subprocess
import time
from collections.abc import Iterable, Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path

RABBITMQ_BIN = Path(os.environ.get("RABBITMQ_BIN", "/usr/lib/rabbitmq/bin"))
# The node the rest of the machine uses: refused as a target here.
SHARED_NODE_PORT = 5672
SHARED_NODE_NAME = "rabbit@localhost"
DEFAULT_PLUGINS = ("rabbitmq_consistent_hash_exchange",)
INSTALL_HINT = (
    "RabbitMQ's server is not installed where expected ({path}). Install it "
    "(apt-get install rabbitmq-server) or point RABBITMQ_BIN at the directory holding "
    "rabbitmq-server and rabbitmqctl."
)


class NodeError(RuntimeError):
    """A node could not be started, stopped or reached; the message says which and why."""


def port_answers(port: int, host: str = "127.0.0.1") -> bool:
    with contextlib.suppress(OSError), socket.create_connection((host, port), timeout=1):
        return True
    return False


def _is_alive(pid: int) -> bool:
    try:
        state = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0]
    except (OSError, IndexError):
        return False
    return state != "Z"


def _kill_and_wait(pid: int, *, timeout_s: float) -> None:
    """SIGKILL ``pid`` (not our child: a detached node) and wait for it to be gone."""
    try:
        fd = os.pidfd_open(pid)
    except ProcessLookupError:
        return
    try:
        os.kill(pid, signal.SIGKILL)
        ready, _, _ = select.select([fd], [], [], timeout_s)
        if not ready:
            raise NodeError(f"process {pid} did not exit within {timeout_s:.0f} s of SIGKILL")
    finally:
        os.close(fd)


def _cmdline(pid: int) -> str:
    try:
        return Path(f"/proc/{pid}/cmdline").read_bytes().replace(b"\0", b" ").decode()
    except OSError:
        return ""


def new_cookie(home: Path) -> None:
    """An Erlang cookie of our own in ``home`` (kept if one is there)."""
    home.mkdir(parents=True, exist_ok=True)
    cookie = home / ".erlang.cookie"
    if not cookie.exists():
        cookie.write_text("".join(secrets.choice(string.ascii_uppercase) for _ in range(32)))
        cookie.chmod(0o400)


class RabbitNode:
    """``name`` on 127.0.0.1:``amqp_port``, everything of it under ``base``."""

    def __init__(
        self,
        base: Path,
        *,
        name: str,
        amqp_port: int,
        dist_port: int,
        home: Path | None = None,
        plugins: Sequence[str] = DEFAULT_PLUGINS,
        config: Iterable[str] = (),
    ) -> None:
        if amqp_port == SHARED_NODE_PORT or name == SHARED_NODE_NAME:
            raise ValueError(f"{name} on {amqp_port} is the machine's shared node: not ours")
        self.base = base
        self.name = name
        self.amqp_port = amqp_port
        self.dist_port = dist_port
        self.home = home or base / "home"
        self.plugins = tuple(plugins)
        self.extra_config = tuple(config)
        self.pid_file = base / "node.pid"
        self.log_dir = base / "log"
        self.url = f"amqp://guest:guest@127.0.0.1:{amqp_port}/"
        self._note = base / "started.pid"

    # -- set-up ----------------------------------------------------------------------------------

    def prepare(self) -> None:
        if not (RABBITMQ_BIN / "rabbitmq-server").exists():
            raise NodeError(INSTALL_HINT.format(path=RABBITMQ_BIN))
        for directory in (self.log_dir, self.base / "mnesia"):
            directory.mkdir(parents=True, exist_ok=True)
        new_cookie(self.home)
        # An empty env file: the system's (which names the shared node) must not be read.
        (self.base / "rabbitmq-env.conf").write_text("# a node of its own: nothing here\n")
        lines = [
            f"listeners.tcp.default = 127.0.0.1:{self.amqp_port}",
            "loopback_users = none",
            *self.extra_config,
        ]
        (self.base / "rabbitmq.conf").write_text("\n".join(lines) + "\n")
        (self.base / "enabled_plugins").write_text(f"[{','.join(self.plugins)}].\n")

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
            # The distribution listens on the loopback interface only, as the shared node does.
            RABBITMQ_SERVER_ADDITIONAL_ERL_ARGS=(
                "-kernel inet_dist_use_interface {127,0,0,1}"
                # No busy-waiting schedulers: several nodes share a small machine.
                " +sbwt none +sbwtdcpu none +sbwtdio none"
            ),
            ERL_EPMD_ADDRESS="127.0.0.1",
        )
        return env

    # -- commands --------------------------------------------------------------------------------

    def run(self, *argv: str, timeout_s: float) -> tuple[int, str]:
        try:
            done = subprocess.run(  # noqa: S603 - our own argv, RabbitMQ's own commands
                argv,
                env=self.environ(),
                cwd=self.base,
                stdin=subprocess.DEVNULL,
                capture_output=True,
                timeout=timeout_s,
                check=False,
            )
        except subprocess.TimeoutExpired:
            raise NodeError(f"{' '.join(argv[:4])} took more than {timeout_s:.0f} s") from None
        out = (done.stdout + done.stderr).decode(errors="replace")
        return done.returncode, out

    def ctl(self, *args: str, timeout_s: float = 60.0) -> str:
        """``rabbitmqctl -n <name> args...``; its output, or ``NodeError`` with its last lines."""
        code, out = self.run(
            str(RABBITMQ_BIN / "rabbitmqctl"), "-n", self.name, *args, timeout_s=timeout_s
        )
        if code != 0:
            raise NodeError(f"rabbitmqctl -n {self.name} {' '.join(args)}: {out.strip()[-600:]}")
        return out

    def os_pid(self) -> int | None:
        """The node's Erlang VM while it runs."""
        with contextlib.suppress(OSError, ValueError):
            pid = int(self.pid_file.read_text().strip())
            if _is_alive(pid):
                return pid
        return None

    def is_running(self) -> bool:
        return self.os_pid() is not None

    def start(self, *, timeout_s: float = 120.0) -> float:
        """Start the node and wait until it serves AMQP; the seconds it took."""
        started = time.monotonic()
        self.prepare()
        self._kill_leftover()
        if port_answers(self.amqp_port):
            raise NodeError(f"port {self.amqp_port} is taken: another node or program uses it")
        self.pid_file.unlink(missing_ok=True)
        code, out = self.run(str(RABBITMQ_BIN / "rabbitmq-server"), "-detached", timeout_s=30)
        if code != 0:
            raise NodeError(f"rabbitmq-server -detached ({self.name}): {out.strip()[-600:]}")
        wait = str(int(timeout_s))
        self.ctl("wait", str(self.pid_file), "--timeout", wait, timeout_s=timeout_s + 5)
        self.ctl("await_startup", "--timeout", wait, timeout_s=timeout_s + 5)
        pid = self.os_pid()
        if pid is not None:
            self._note.write_text(f"{pid}\n")
        if not port_answers(self.amqp_port):
            raise NodeError(f"{self.name} started but port {self.amqp_port} does not answer")
        return time.monotonic() - started

    def stop(self, *, timeout_s: float = 60.0) -> float:
        """Stop the node and wait until its VM has exited; the seconds it took."""
        started = time.monotonic()
        if self.is_running():
            self.ctl("stop", str(self.pid_file), timeout_s=timeout_s)
        self._note.unlink(missing_ok=True)
        return time.monotonic() - started

    def kill(self) -> None:
        """SIGKILL the node's VM, as a crash or an out-of-memory kill would end it."""
        pid = self.os_pid()
        if pid is not None:
            _kill_and_wait(pid, timeout_s=10)
        self._note.unlink(missing_ok=True)

    def close_all_connections(self, why: str) -> int:
        """Force-close every client connection of this node; how many there were."""
        listed = self.ctl("list_connections", "name", "--quiet", "--no-table-headers")
        count = sum(1 for line in listed.splitlines() if line.strip())
        self.ctl("close_all_connections", why)
        return count

    def discard(self, keep_logs_in: Path | None = None) -> None:
        """Stop the node if it runs (kill it if it will not stop), keep its logs if asked."""
        if self.is_running():
            try:
                self.stop(timeout_s=30)
            except NodeError:
                self.kill()
        if keep_logs_in is not None and self.log_dir.exists():
            shutil.copytree(self.log_dir, keep_logs_in, dirs_exist_ok=True)

    def _kill_leftover(self) -> None:
        try:
            pid = int(self._note.read_text().strip())
        except (OSError, ValueError):
            return
        cmdline = _cmdline(pid)
        if self.name in cmdline and str(self.base) in cmdline:
            _kill_and_wait(pid, timeout_s=10)
        self._note.unlink(missing_ok=True)


@dataclass(frozen=True)
class ClusterLayout:
    """Names and ports of a cluster's nodes: ``<prefix>1@localhost`` on ``first_amqp_port``..."""

    size: int = 3
    prefix: str = "cluster"
    first_amqp_port: int = 5690
    first_dist_port: int = 25690


class RabbitCluster:
    """``layout.size`` nodes under ``base`` sharing one cookie, joined to the first one."""

    def __init__(
        self,
        base: Path,
        layout: ClusterLayout = ClusterLayout(),
        *,
        plugins: Sequence[str] = DEFAULT_PLUGINS,
    ) -> None:
        self.base = base
        self.layout = layout
        home = base / "home"
        self.nodes = [
            RabbitNode(
                base / f"{layout.prefix}{i}",
                name=f"{layout.prefix}{i}@localhost",
                amqp_port=layout.first_amqp_port + i - 1,
                dist_port=layout.first_dist_port + i - 1,
                home=home,
                plugins=plugins,
            )
            for i in range(1, layout.size + 1)
        ]

    @property
    def urls(self) -> list[str]:
        return [node.url for node in self.nodes]

    def start(self, *, timeout_s: float = 180.0) -> float:
        """Start every node at once, then join the others to the first; the seconds it took."""
        started = time.monotonic()
        with ThreadPoolExecutor(len(self.nodes)) as pool:
            for future in [pool.submit(n.start, timeout_s=timeout_s) for n in self.nodes]:
                future.result()
        first = self.nodes[0]
        for node in self.nodes[1:]:
            node.ctl("stop_app")
            node.ctl("join_cluster", first.name)
            node.ctl("start_app")
        running = self.running_nodes()
        missing = [n.name for n in self.nodes if n.name not in running]
        if missing:
            raise NodeError(f"nodes {missing} did not join the cluster (running: {running})")
        return time.monotonic() - started

    def running_nodes(self) -> list[str]:
        """The cluster's running nodes, as a running node of it sees them."""
        for node in self.nodes:
            if node.is_running():
                status = json.loads(node.ctl("cluster_status", "--formatter", "json"))
                return [str(name) for name in status["running_nodes"]]
        return []

    def stop_node(self, index: int) -> float:
        return self.nodes[index].stop()

    def start_node(self, index: int, *, timeout_s: float = 120.0) -> float:
        """Start a node that was stopped: it rejoins the cluster from its own data."""
        return self.nodes[index].start(timeout_s=timeout_s)

    def start_stopped(self) -> None:
        """Start every node that is not running (after a test stopped or killed one)."""
        for index, node in enumerate(self.nodes):
            if not node.is_running():
                self.start_node(index)

    def discard(self, keep_logs_in: Path | None = None) -> None:
        """End every node at once (SIGKILL: their data is thrown away), keep logs if asked."""
        for node in self.nodes:
            node.kill()
            if keep_logs_in is not None and node.log_dir.exists():
                shutil.copytree(node.log_dir, keep_logs_in / node.name, dirs_exist_ok=True)


__all__ = [
    "DEFAULT_PLUGINS",
    "ClusterLayout",
    "NodeError",
    "RabbitCluster",
    "RabbitNode",
    "port_answers",
]

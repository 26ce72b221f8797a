"""No known secret leaves the bridge: every role, run with known secret values through the error
paths, and everything it said or published searched for them in every form. Found: none.

Roles: ``bridge simulator``, ``bridge run --role receiver``, ``--role worker`` and ``bridge run``
(role ``all``, its embedded simulator), each a real process at log level DEBUG, on a RabbitMQ node
of the test's own (``secrets@localhost``, AMQP 5695): its user's password is one of the secrets,
and the machine's shared node is left as it is. Secrets: the Catapult API token and secret, the
Dashboard password (configured, and carried by import commands, a wrong one too), the receiver's
Basic password and path token, the broker URL's password (a wrong one too).

Error paths: Catapult answering a 500 page that echoes the whole request (the simulator's
``echo_error_rate``: the Authorization header, an import's body), 401 (a wrong API secret, a
wrong Dashboard password, a number not on the account) and 403 (an invalid media URL), dead
letters of every reason (rejected, retries-exhausted, unknown-outcome, invalid-command,
missing-credentials, delivery-limit, expired), results that cannot be routed (``reply_to`` naming
no queue), callbacks with wrong or near-miss credentials and bad bodies, the broker refusing a
password and force-closing every connection.

Searched: every process's output, every message left in every queue the bridge declares (body,
headers and properties), every ``/metrics``, every ``/_sim`` inspection answer, and the answers to
the callbacks. Forms: plain, URL-encoded, JSON-escaped, HTML-escaped, base64 (of the value, and of
``user:pass``), and prefixes of 8 characters. Every wait is on a log line, a result or a process,
with a deadline.
"""

from __future__ import annotations

import asyncio
import base64
import fcntl
import html
import json
import os
import re
import shutil
import signal
import sys
import time
import uuid
from collections.abc import AsyncIterator, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any
from urllib.parse import quote, quote_plus

import aio_pika
import aiohttp
import orjson
import pytest
from aio_pika.abc import AbstractChannel, AbstractRobustConnection

from bridge.broker import Topology, declare_topology
from bridge.settings import Settings, load_settings
from tests.rabbitmq_nodes import NodeError, RabbitNode

# A fixed place, so that a run killed before its teardown leaves a node the next run can find.
NODE_BASE = Path("/tmp/bridge-test-secrets-node")  # noqa: S108 - our own directory, on purpose
# Two runs on one machine would fight over the port: a run holds this lock while its node runs.
NODE_LOCK = Path("/tmp/bridge-test-secrets-node.lock")  # noqa: S108
NODE_PORT = 5695
NODE_DIST_PORT = 25695

RUN = uuid.uuid4().hex[:12]
BROKER_USER = "bridge-secrets"
DASHBOARD_USER = "dash-user"
DASHBOARD_ACCOUNT = "8877665"
RECEIVER_USER = "catapult"
USER_ID = "u-secrets-test"
# Each secret starts with a letter and 12 random hex digits: a prefix of 8 characters is its own.
SECRETS = {
    "api token": f"T{RUN}+api-token",
    "api secret": f'S{RUN}/api"se&cret',
    "wrong api secret": f'W{RUN}/wrong"secret',
    "dashboard password": f'D{RUN}/da"sh&pa%ss',
    "wrong dashboard password": f'X{RUN}/not"the&one',
    "receiver password": f'R{RUN}/re"cv&pw',
    "path token": f"P{RUN}.path+token",
    "broker password": f"B{RUN}+amqp/pw",
    "wrong broker password": f"Q{RUN}+not/amqp",
}
# (user, secret): the base64 of ``user:secret`` is an Authorization value.
PAIRS = {
    "api basic": (SECRETS["api token"], SECRETS["api secret"]),
    "wrong api basic": (SECRETS["api token"], SECRETS["wrong api secret"]),
    "dashboard basic": (DASHBOARD_USER, SECRETS["dashboard password"]),
    "wrong dashboard basic": (DASHBOARD_USER, SECRETS["wrong dashboard password"]),
    "receiver basic": (RECEIVER_USER, SECRETS["receiver password"]),
    "broker basic": (BROKER_USER, SECRETS["broker password"]),
}
PREFIX_CHARS = 8
SENDER = "+19195557001"
RECIPIENT = "+19195559876"
STRANGER = "+19195557999"  # not on the account
IMPORT_NUMBER = "+19195550150"
APPLICATION = "a-none"

pytestmark = pytest.mark.slow


def _b64(text: str) -> list[str]:
    raw = text.encode()
    out = []
    for encoded in (base64.b64encode(raw).decode(), base64.urlsafe_b64encode(raw).decode()):
        out += [encoded, encoded.rstrip("="), quote(encoded, safe="")]
    return out


def forms() -> dict[str, str]:
    """Every form searched for, each named by its secret and its form."""
    found: dict[str, str] = {}
    for name, value in SECRETS.items():
        variants = {
            "plain": value,
            "url-encoded": quote(value, safe=""),
            "url-encoded path": quote(value),
            "url-encoded form": quote_plus(value),
            "json-escaped": json.dumps(value)[1:-1],
            "html-escaped": html.escape(value),
            "prefix": value[:PREFIX_CHARS],
        }
        for n, encoded in enumerate(_b64(value)):
            variants[f"base64 {n}"] = encoded
        variants["base64 prefix"] = base64.b64encode(value.encode()).decode()[:PREFIX_CHARS]
        for form, text in variants.items():
            found[f"{name} ({form})"] = text
    for name, (user, secret) in PAIRS.items():
        for n, encoded in enumerate(_b64(f"{user}:{secret}")):
            found[f"{name} (base64 of user:pass {n})"] = encoded
    return found


FORMS = forms()


@dataclass
class Haystack:
    """Everything collected, by where it came from."""

    texts: dict[str, list[str]] = field(default_factory=dict)

    def add(self, where: str, text: str | bytes) -> None:
        if isinstance(text, bytes):
            text = text.decode("utf-8", errors="replace")
        self.texts.setdefault(where, []).append(text)

    def leaks(self) -> list[str]:
        found = []
        for where, texts in self.texts.items():
            for text in texts:
                lowered = text.lower()
                for form, needle in FORMS.items():
                    at = lowered.find(needle.lower())
                    if at >= 0:
                        context = text[max(0, at - 80) : at + len(needle) + 40]
                        found.append(f"{form} in {where}: ...{context}...")
        return found


# -- the test's own RabbitMQ node ---------------------------------------------------------------


@pytest.fixture(scope="module")
def secret_node() -> Iterator[RabbitNode]:
    with NODE_LOCK.open("w") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)
        yield from _own_node()


def _own_node() -> Iterator[RabbitNode]:
    node = RabbitNode(
        NODE_BASE,
        name="secrets@localhost",
        amqp_port=NODE_PORT,
        dist_port=NODE_DIST_PORT,
        plugins=(),
        config=(f"default_user = {BROKER_USER}", f"default_pass = {SECRETS['broker password']}"),
    )
    node.discard()
    shutil.rmtree(NODE_BASE, ignore_errors=True)
    try:
        node.start()
    except NodeError as exc:
        node.discard()
        pytest.fail(f"could not start the test's RabbitMQ node: {exc}", pytrace=False)
    try:
        yield node
    finally:
        node.discard()
        shutil.rmtree(NODE_BASE, ignore_errors=True)


def broker_url(password: str) -> str:
    return f"amqp://{BROKER_USER}:{quote(password, safe='')}@127.0.0.1:{NODE_PORT}/"


# -- processes ----------------------------------------------------------------------------------


class Process:
    """One ``bridge`` process; its output (stdout and stderr, merged) kept line by line."""

    def __init__(self, name: str, argv: list[str], env: dict[str, str]) -> None:
        self.name = name
        self.argv = argv
        self.env = env
        self.lines: list[str] = []
        self.process: asyncio.subprocess.Process | None = None
        self._changed = asyncio.Event()
        self._reader: asyncio.Task[None] | None = None

    async def start(self) -> None:
        self.process = await asyncio.create_subprocess_exec(
            sys.executable, "-m", "bridge.cli", *self.argv,
            env=self.env,
            stdin=asyncio.subprocess.DEVNULL,
            stdout=asyncio.subprocess.PIPE,
            stderr=asyncio.subprocess.STDOUT,
        )  # fmt: skip
        self._reader = asyncio.create_task(self._read(self.process))

    async def _read(self, process: asyncio.subprocess.Process) -> None:
        assert process.stdout is not None
        async for raw in process.stdout:
            self.lines.append(raw.decode(errors="replace").rstrip("\n"))
            self._changed.set()
        self._changed.set()

    def count(self, pattern: str) -> int:
        return sum(1 for line in self.lines if re.search(pattern, line))

    async def wait_for(self, pattern: str, count: int = 1, *, timeout_s: float = 30.0) -> str:
        """The ``count``-th line matching ``pattern``, waited for."""
        try:
            async with asyncio.timeout(timeout_s):
                while True:
                    matching = [line for line in self.lines if re.search(pattern, line)]
                    if len(matching) >= count:
                        return matching[count - 1]
                    assert self.process is not None
                    if self._reader is not None and self._reader.done():
                        raise AssertionError(f"{self.name} exited: {self.tail()}")
                    self._changed.clear()
                    await self._changed.wait()
        except TimeoutError:
            raise AssertionError(f"{self.name}: no {pattern!r} in time: {self.tail()}") from None

    def tail(self) -> str:
        return "\n".join(self.lines[-40:])

    async def stop(self) -> int | None:
        if self.process is None:
            return None
        if self.process.returncode is None:
            self.process.send_signal(signal.SIGTERM)
        try:
            async with asyncio.timeout(30):
                code = await self.process.wait()
                if self._reader is not None:
                    await self._reader
        except TimeoutError:
            self.process.kill()
            code = await self.process.wait()
        return code


def environ(values: dict[str, Any]) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("BRIDGE_")}
    for key, value in values.items():
        if value is not None:
            env["BRIDGE_" + key] = value if isinstance(value, str) else json.dumps(value)
    return env


def queue_names(prefix: str) -> dict[str, Any]:
    return {
        "events_exchange": f"{prefix}.events",
        "dead_letter_exchange": f"{prefix}.dead-letter",
        "inbound_queue": f"{prefix}.inbound.sms",
        "status_queue": f"{prefix}.outbound.status",
        "send_queue": f"{prefix}.outbound.sms",
        "import_queue": f"{prefix}.outbound.import",
        "delivery_limit": 1,
    }


def role_env(prefix: str, *, password: str, spool: Path | None = None) -> dict[str, Any]:
    values: dict[str, Any] = {
        "BROKER__URL": broker_url(password),
        "BROKER__RECONNECT_DELAY_S": "0.05",
        "BROKER__RECONNECT_MAX_DELAY_S": "0.3",
        "BROKER__CONNECT_TIMEOUT_S": "2",
        "LOG__LEVEL": "DEBUG",
        "OPERATIONS__HOST": "127.0.0.1",
        "OPERATIONS__PORT": "0",
        "RECEIVER__HOST": "127.0.0.1",
        "RECEIVER__PORT": "0",
        "RECEIVER__USERNAME": RECEIVER_USER,
        "RECEIVER__PASSWORD": SECRETS["receiver password"],
        "RECEIVER__PATH_TOKEN": SECRETS["path token"],
        "RECEIVER__RETRY_INTERVAL_S": "0.1",
        "WORKER__RETRY_DELAYS_S": [0.05, 0.1],
        "WORKER__MAX_ATTEMPTS": 2,
        "WORKER__ACCOUNT_MESSAGES_PER_S": 0,
        "WORKER__NUMBER_MESSAGES_PER_S": 0,
        "WORKER__NUMBER_REQUESTS_PER_MIN": 0,
        "WORKER__RATE_LIMIT_RESET_MAX_S": 1,
        "WORKER__CALL_TIMEOUT_S": 5,
        "WORKER__DRAIN_TIMEOUT_S": 5,
    }
    for name, value in queue_names(prefix).items():
        values[f"BROKER__{name.upper()}"] = value
    if spool is not None:
        values["RECEIVER__SPOOL_DIR"] = str(spool)
    return values


# A receiver never calls Catapult; configured, it does not run the embedded simulator either.
RECEIVER_CATAPULT = {
    "CATAPULT__BASE_URL": "http://127.0.0.1:9/v1",
    "CATAPULT__USER_ID": USER_ID,
    "CATAPULT__API_TOKEN": SECRETS["api token"],
    "CATAPULT__API_SECRET": SECRETS["api secret"],
}


def settings_of(prefix: str) -> Settings:
    return load_settings(broker={**queue_names(prefix), "url": broker_url("unused")})


def operations_of(process: Process) -> str:
    """Where ``process`` serves /healthz, /readyz and /metrics (it said so as it started)."""
    [line] = [line for line in process.lines if re.search(r"operations .* on ", line)]
    return found(line, r" on (\S+)$")


def found(line: str, pattern: str) -> str:
    match = re.search(pattern, line)
    assert match is not None, line
    return match.group(1)


# -- one stage: a worker and a receiver of one prefix, against one simulator ----------------------


@dataclass
class Stage:
    """Queues of one prefix, the simulator its worker calls, where its receiver and probes are."""

    name: str
    prefix: str
    sim: str  # the simulator's root, http://host:port
    receiver: str  # the callback URL, path token included (credentials apart)
    operations: list[str]

    @property
    def settings(self) -> Settings:
        return settings_of(self.prefix)


class Driver:
    """Publishes commands, posts callbacks, steers simulators, and collects what came out."""

    def __init__(self, channel: AbstractChannel, http: aiohttp.ClientSession) -> None:
        self.channel = channel
        self.http = http
        self.haystack = Haystack()

    async def publish(
        self,
        stage: Stage,
        body: dict[str, Any] | bytes,
        *,
        queue: str = "send",
        headers: dict[str, Any] | None = None,
        reply_to: str | None = None,
    ) -> str:
        settings = stage.settings.broker
        routing_key = settings.send_queue if queue == "send" else settings.import_queue
        command_id = f"cmd-{uuid.uuid4().hex[:10]}"
        data = body if isinstance(body, bytes) else orjson.dumps(body)
        await self.channel.default_exchange.publish(
            aio_pika.Message(
                data,
                message_id=command_id,
                headers=headers or {},
                reply_to=reply_to,
                content_type="application/json",
                delivery_mode=aio_pika.DeliveryMode.PERSISTENT,
            ),
            routing_key=routing_key,
        )
        return command_id

    async def sim(self, stage: Stage, method: str, path: str, body: Any = None) -> Any:
        async with self.http.request(method, f"{stage.sim}/_sim{path}", json=body) as answer:
            text = await answer.text()
            self.haystack.add(f"{stage.name} /_sim{path}", text)
            assert answer.status < 300, f"{method} /_sim{path}: {answer.status} {text}"
            return json.loads(text) if text else None

    async def callback(
        self,
        stage: Stage,
        *,
        url: str | None = None,
        auth: tuple[str, str] | None = None,
        body: bytes | None = None,
    ) -> int:
        headers = {"Content-Type": "application/json"}
        if auth is not None:
            headers["Authorization"] = aiohttp.encode_basic_auth(*auth)
        event = {
            "eventType": "sms",
            "direction": "in",
            "messageId": f"m-{uuid.uuid4().hex[:10]}",
            "from": STRANGER,
            "to": SENDER,
            "text": "a callback",
            "time": "2026-01-01T00:00:00Z",
            "state": "received",
        }
        data = body if body is not None else orjson.dumps(event)
        async with self.http.post(url or stage.receiver, data=data, headers=headers) as answer:
            self.haystack.add(f"{stage.name} callback answer", await answer.read())
            return answer.status


# -- the test -----------------------------------------------------------------------------------


@pytest.fixture
async def node_connection(secret_node: RabbitNode) -> AsyncIterator[AbstractRobustConnection]:
    connection = await aio_pika.connect_robust(broker_url(SECRETS["broker password"]))
    yield connection
    await connection.close()


async def results_of(
    channel: AbstractChannel, stage: Stage, ids: dict[str, str], *, timeout_s: float = 60
) -> dict[str, dict[str, Any]]:
    """The result of every command in ``ids`` (name -> command id), by name, acked."""
    topology = Topology.from_settings(stage.settings)
    wanted = {v: k for k, v in ids.items()}
    got: dict[str, dict[str, Any]] = {}
    queues = [
        await channel.get_queue(topology.results_queue(topology.send_queue), ensure=False),
        await channel.get_queue(topology.results_queue(topology.import_queue), ensure=False),
    ]
    arrived: asyncio.Queue[aio_pika.abc.AbstractIncomingMessage] = asyncio.Queue()
    tags = [(q, await q.consume(arrived.put)) for q in queues]
    kept: list[aio_pika.abc.AbstractIncomingMessage] = []
    try:
        async with asyncio.timeout(timeout_s):
            while len(got) < len(wanted):
                message = await arrived.get()
                kept.append(message)
                event = orjson.loads(message.body)
                if event["subject"] in wanted:
                    got[wanted[event["subject"]]] = event
    except TimeoutError:
        missing = sorted(set(ids) - set(got))
        raise AssertionError(f"{stage.name}: no result for {missing}") from None
    finally:
        for queue, tag in tags:
            await queue.cancel(tag)
        for message in kept:  # given back: the final sweep reads them with everything else
            await message.nack(requeue=True)
    return got


async def sweep_queues(channel: AbstractChannel, stage: Stage, haystack: Haystack) -> int:
    """Every message left in every queue of ``stage``, taken and added; how many."""
    taken = 0
    for declared in Topology.from_settings(stage.settings).declarations().queues:
        queue = await channel.get_queue(declared.name, ensure=False)
        while (message := await queue.get(no_ack=True, fail=False, timeout=5)) is not None:
            taken += 1
            where = f"{stage.name} queue {declared.name}"
            haystack.add(where, message.body)
            haystack.add(where, repr(message.headers))
            haystack.add(where, repr(message.info()))
    return taken


async def delete_queues(channel: AbstractChannel, stage: Stage) -> None:
    plan = Topology.from_settings(stage.settings).declarations()
    for queue in plan.queues:
        await channel.queue_delete(queue.name)
    for exchange in plan.exchanges:
        await channel.exchange_delete(exchange.name)


async def give_back(channel: AbstractChannel, queue_name: str, count: int, times: int) -> None:
    """Take ``count`` commands and give each back ``times`` times, as a crashing consumer would."""
    deliveries: asyncio.Queue[aio_pika.abc.AbstractIncomingMessage] = asyncio.Queue()
    queue = await channel.get_queue(queue_name, ensure=False)
    tag = await queue.consume(deliveries.put)
    for _ in range(count * times):
        message = await asyncio.wait_for(deliveries.get(), 10)
        await message.nack(requeue=True)
    await queue.cancel(tag)


def import_body(password: str | None, **extra: Any) -> dict[str, Any]:
    body: dict[str, Any] = {"number": IMPORT_NUMBER, "applicationId": APPLICATION, "name": "n"}
    if password is not None:
        body.update(accountId=DASHBOARD_ACCOUNT, userName=DASHBOARD_USER, password=password)
    return {**body, **extra}


def send_body(text: str, **extra: Any) -> dict[str, Any]:
    return {"from": SENDER, "to": RECIPIENT, "text": text, **extra}


async def drive(driver: Driver, stage: Stage, *, configured_credentials: bool) -> None:
    """Every error path of one stage's worker, simulator and receiver; each command ends."""
    sim_apps = await driver.sim(stage, "GET", "/applications")
    await driver.sim(
        stage, "POST", "/numbers", {"number": SENDER, "applicationId": sim_apps[0]["id"]}
    )
    application = {"applicationId": sim_apps[0]["id"]}
    ids: dict[str, str] = {}
    secret = SECRETS["dashboard password"]
    wrong = SECRETS["wrong dashboard password"]
    ids["sent"] = await driver.publish(stage, send_body("fine"))
    await driver.sim(stage, "POST", "/inbound", {"from": STRANGER, "to": SENDER, "text": "inbound"})
    # Rejected: a wrong Dashboard password (401), a number not on the account (401), media
    # that is no http URL (403).
    ids["wrong password"] = await driver.publish(
        stage, import_body(wrong, **application), queue="import"
    )
    ids["stranger"] = await driver.publish(stage, send_body("x", **{"from": STRANGER}))
    ids["bad media"] = await driver.publish(stage, send_body("x", media=["ftp://host/x"]))
    # Invalid: an import with the password and a bad number, one on the send queue, bad JSON.
    ids["invalid import"] = await driver.publish(
        stage, import_body(secret, number="not-a-number", **application), queue="import"
    )
    ids["import on the send queue"] = await driver.publish(
        stage, import_body(secret, **application)
    )
    ids["not json"] = await driver.publish(
        stage, f'{{"password": "{secret}", '.encode(), queue="import"
    )
    # Expired, the password in it.
    past = {"x-bridge-expires-at-ms": round((time.time() - 5) * 1000)}
    ids["expired import"] = await driver.publish(
        stage, import_body(secret, **application), queue="import", headers=past
    )
    # A result that cannot be routed: reply_to names no queue.
    ids["unroutable"] = await driver.publish(
        stage, import_body(wrong, **application), queue="import", reply_to=f"{stage.prefix}.nowhere"
    )
    if not configured_credentials:
        ids["no credentials"] = await driver.publish(
            stage, import_body(None, **application), queue="import"
        )
    results = await results_of(driver.channel, stage, ids)

    # Catapult answers every request with a page echoing it: headers and body.
    await driver.sim(stage, "PUT", "/faults", {"echo_error_rate": 1.0})
    echoed = {
        "echoed send": await driver.publish(stage, send_body("echoed")),
        "echoed import": await driver.publish(
            stage, import_body(secret, **application), queue="import"
        ),
        "echoed wrong import": await driver.publish(
            stage, import_body(wrong, **application), queue="import"
        ),
    }
    results.update(await results_of(driver.channel, stage, echoed))
    await driver.sim(stage, "DELETE", "/faults")

    outcomes = {name: event["data"].get("reason", "ok") for name, event in results.items()}
    assert outcomes["sent"] == "ok", results["sent"]
    assert outcomes["wrong password"] == "rejected"
    assert results["wrong password"]["data"]["error"]["code"] == "provider-access-denied"
    # The page echoed the request and was cut inside its Authorization value: redacted first.
    assert "Authorization: Basic ***" in results["echoed import"]["data"]["error"]["message"]
    assert outcomes["invalid import"] == "invalid-command"
    assert outcomes["expired import"] == "expired"
    assert outcomes["echoed import"] in ("retries-exhausted", "unknown-outcome")
    assert outcomes["echoed send"] in ("retries-exhausted", "unknown-outcome")

    # Callbacks: none, wrong and near-miss credentials, a near-miss path token, bad bodies.
    password, token = SECRETS["receiver password"], SECRETS["path token"]
    base = stage.receiver.removesuffix("/" + quote(token, safe=""))
    auth = (RECEIVER_USER, password)
    assert await driver.callback(stage, auth=auth) == 200
    assert await driver.callback(stage) == 401
    assert await driver.callback(stage, auth=(RECEIVER_USER, password[:-1] + "~")) == 401
    assert await driver.callback(stage, auth=(password, password)) == 401
    near_miss = base + "/" + quote(token[:-1] + "~", safe="")
    assert await driver.callback(stage, url=near_miss, auth=auth) in (401, 404)
    assert await driver.callback(stage, url=base, auth=auth) in (401, 404)
    assert (
        await driver.callback(stage, auth=auth, body=b'{"password": "' + password.encode()) == 400
    )
    assert await driver.callback(stage, auth=auth, body=orjson.dumps({"text": token})) == 400

    for path in (
        "/requests",
        "/messages",
        "/numbers",
        "/applications",
        "/callbacks",
        "/errors",
        "/refusals",
        "/faults",
        "/limits",
        "/health",
    ):
        await driver.sim(stage, "GET", path)


async def test_no_known_secret_leaves_any_role(
    secret_node: RabbitNode, node_connection: AbstractRobustConnection, tmp_path: Path
) -> None:
    channel = await node_connection.channel(publisher_confirms=True)
    http = aiohttp.ClientSession(timeout=aiohttp.ClientTimeout(total=30))
    driver = Driver(channel, http)
    processes: list[Process] = []
    stages: list[Stage] = []
    try:
        split = f"t-{RUN}-split"
        embedded = f"t-{RUN}-all"
        wrong_api = f"t-{RUN}-wrongapi"
        for prefix in (split, embedded, wrong_api):
            await declare_topology(channel, Topology.from_settings(settings_of(prefix)))
        good = SECRETS["broker password"]

        # Before the worker runs: commands the broker dead-letters itself (its delivery limit).
        early = Stage("split", split, sim="", receiver="", operations=[])
        given_back = [
            await driver.publish(early, import_body(SECRETS["dashboard password"]), queue="import"),
            await driver.publish(early, send_body("given back")),
        ]
        names = settings_of(split).broker
        await give_back(channel, names.import_queue, 1, 2)
        await give_back(channel, names.send_queue, 1, 2)

        receiver = Process(
            "receiver",
            ["run", "--role", "receiver"],
            environ(
                {**role_env(split, password=good, spool=tmp_path / "spool-r"), **RECEIVER_CATAPULT}
            ),
        )
        processes.append(receiver)
        await receiver.start()
        await receiver.wait_for("bridge running")
        receiver_url = found(await receiver.wait_for("receiver listening on"), r"on (\S+)$")
        token_url = receiver_url + "/" + quote(SECRETS["path token"], safe="")
        application_url = token_url.replace(
            "http://", f"http://{RECEIVER_USER}:{quote(SECRETS['receiver password'], safe='')}@"
        )
        simulator = Process(
            "simulator",
            [
                "simulator", "--port", "0", "--log-level", "DEBUG", "--no-limits",
                "--user-id", USER_ID,
                "--api-token", SECRETS["api token"],
                "--api-secret", SECRETS["api secret"],
                "--dashboard-account-id", DASHBOARD_ACCOUNT,
                "--dashboard-user-name", DASHBOARD_USER,
                "--dashboard-password", SECRETS["dashboard password"],
                "--application-url", application_url,
            ],
            # The receiver's path token, as the bridge has it: hidden wherever a URL is shown.
            environ({"RECEIVER__PATH_TOKEN": SECRETS["path token"]}),
        )  # fmt: skip
        processes.append(simulator)
        await simulator.start()
        sim_root = found(await simulator.wait_for("simulator at"), r"simulator at (\S+)/v1 ")

        catapult = {
            "CATAPULT__BASE_URL": sim_root + "/v1",
            "CATAPULT__USER_ID": USER_ID,
            "CATAPULT__API_TOKEN": SECRETS["api token"],
            "CATAPULT__API_SECRET": SECRETS["api secret"],
        }
        worker = Process(
            "worker",
            ["run", "--role", "worker"],
            environ({**role_env(split, password=good), **catapult}),
        )
        wrong_worker = Process(
            "worker with a wrong API secret",
            ["run", "--role", "worker"],
            environ(
                {
                    **role_env(wrong_api, password=good),
                    **catapult,
                    "CATAPULT__API_SECRET": SECRETS["wrong api secret"],
                }
            ),
        )
        away = Process(
            "receiver with a wrong broker password",
            ["run", "--role", "receiver"],
            environ(
                {
                    **role_env(
                        wrong_api, password=SECRETS["wrong broker password"], spool=tmp_path / "s-w"
                    ),
                    **RECEIVER_CATAPULT,
                }
            ),
        )
        sim_settings = {
            "SIMULATOR__PORT": "0",
            "SIMULATOR__USER_ID": USER_ID,
            "SIMULATOR__API_TOKEN": SECRETS["api token"],
            "SIMULATOR__API_SECRET": SECRETS["api secret"],
            "SIMULATOR__DASHBOARD_ACCOUNT_ID": DASHBOARD_ACCOUNT,
            "SIMULATOR__DASHBOARD_USER_NAME": DASHBOARD_USER,
            "SIMULATOR__DASHBOARD_PASSWORD": SECRETS["dashboard password"],
            "SIMULATOR__ACCOUNT_MESSAGES_PER_S": 0,
            "SIMULATOR__NUMBER_MESSAGES_PER_S": 0,
            "SIMULATOR__RESOURCE_REQUESTS_PER_S": 0,
        }
        everything = Process(
            "bridge run",
            ["run"],
            environ({**role_env(embedded, password=good, spool=tmp_path / "s-a"), **sim_settings}),
        )
        for process in (worker, wrong_worker, away, everything):
            processes.append(process)
            await process.start()
        for process in (worker, wrong_worker, away, everything):
            await process.wait_for("bridge running")
        await away.wait_for("RabbitMQ is not reachable")

        all_receiver = found(await everything.wait_for("receiver listening on"), r"on (\S+)$")
        all_sim = found(await everything.wait_for("embedded simulator at"), r"at (\S+)/v1$")
        split_stage = Stage(
            "split", split, sim_root, token_url,
            [operations_of(receiver), operations_of(worker)],
        )  # fmt: skip
        all_stage = Stage(
            "bridge run", embedded, all_sim,
            all_receiver + "/" + quote(SECRETS["path token"], safe=""),
            [operations_of(everything)],
        )  # fmt: skip
        wrong_stage = Stage(
            "wrong api secret", wrong_api, sim_root, "",
            [operations_of(wrong_worker), operations_of(away)],
        )  # fmt: skip
        stages = [split_stage, all_stage, wrong_stage]

        delivery_limited = await results_of(
            channel, split_stage, {"import": given_back[0], "send": given_back[1]}
        )
        assert {e["data"]["reason"] for e in delivery_limited.values()} == {"delivery-limit"}

        await drive(driver, split_stage, configured_credentials=False)
        await drive(driver, all_stage, configured_credentials=True)
        refused = await driver.publish(wrong_stage, send_body("wrong secret"))
        assert (await results_of(channel, wrong_stage, {"refused": refused}))["refused"]["data"][
            "reason"
        ] == "rejected"
        # The receiver that cannot log in spools what it is given.
        away_url = found(await away.wait_for("receiver listening on"), r"on (\S+)$")
        away_stage = Stage(
            "away", wrong_api, sim_root, away_url + "/" + quote(SECRETS["path token"], safe=""), [],
        )  # fmt: skip
        assert (
            await driver.callback(away_stage, auth=(RECEIVER_USER, SECRETS["receiver password"]))
            == 200
        )

        # RabbitMQ closes every connection: each role says so and comes back.
        connected = {p: p.count("connected to RabbitMQ") for p in (receiver, worker, everything)}
        await asyncio.to_thread(secret_node.close_all_connections, "a test of the secrets")
        for process, before in connected.items():
            await process.wait_for("connected to RabbitMQ", before + 1)

        for stage in stages:
            for url in stage.operations:
                for path in ("/metrics", "/readyz", "/healthz"):
                    async with http.get(url + path) as answer:
                        driver.haystack.add(f"{stage.name} {url}{path}", await answer.read())
    finally:
        for process in processes:
            await process.stop()
        await http.close()
    for process in processes:
        driver.haystack.add(f"output of {process.name}", "\n".join(process.lines))
    # The roles run at DEBUG: what they say only then is searched too.
    assert sum(process.count(" DEBUG ") for process in processes) > 0
    channel = await node_connection.channel()
    for stage in stages:
        await sweep_queues(channel, stage, driver.haystack)
        await delete_queues(channel, stage)
    await channel.close()

    leaks = driver.haystack.leaks()
    assert not leaks, f"{len(leaks)} leaks:\n" + "\n".join(leaks[:60])
    # The search itself finds what it looks for.
    probe = Haystack()
    probe.add("probe", "x " + SECRETS["path token"][:PREFIX_CHARS] + " y")
    assert probe.leaks()

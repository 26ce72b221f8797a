"""The container files, checked by reading them (no Docker engine is needed).

``docker-compose.yml`` is validated against the Compose specification's JSON Schema (the copy that
check-jsonschema ships) and its bridge service's environment is loaded through ``load_settings``;
the ``Dockerfile`` is checked for what makes it a well-behaved sidecar image (exec-form entry point
so SIGTERM reaches the bridge, a non-root user, a health check that runs on the slim image) and for
installing exactly the way the README and ``.ci/run`` do.
"""

from __future__ import annotations

import asyncio
import fnmatch
import json
import os
import re
import shlex
import sys
from dataclasses import dataclass
from importlib import resources
from pathlib import Path, PurePosixPath
from typing import Any
from urllib.parse import urlsplit

import pytest
from jsonschema.validators import validator_for
from prometheus_client import CollectorRegistry
from ruamel.yaml import YAML

from bridge.operations import OperationsServer
from bridge.runtime import callback_url
from bridge.settings import (
    SIMULATOR_API_SECRET,
    SIMULATOR_API_TOKEN,
    SIMULATOR_DASHBOARD_ACCOUNT_ID,
    SIMULATOR_DASHBOARD_PASSWORD,
    SIMULATOR_DASHBOARD_USER_NAME,
    SIMULATOR_USER_ID,
    OperationsSettings,
    ReceiverSettings,
    Settings,
    load_settings,
)
from tests.test_config_file import (
    CONFIG_FILE_VARIABLE,
    README,
    ROOT,
    clear_bridge_environment,
    leaf_for_env_var,
)

COMPOSE_FILE = ROOT / "docker-compose.yml"
DOCKERFILE = ROOT / "Dockerfile"
DOCKERIGNORE = ROOT / ".dockerignore"
CI_SCRIPT = ROOT / ".ci" / "run"

UV_PIN = re.compile(r"uv==([0-9][0-9.]*)")
CI_UV_VERSION = re.compile(r'^UV_VERSION="([0-9][0-9.]*)"$', re.MULTILINE)
UV_SYNC = re.compile(r"uv sync(?: --[a-z-]+)*")


@pytest.fixture(autouse=True)
def _clean_environment(monkeypatch: pytest.MonkeyPatch) -> None:
    clear_bridge_environment(monkeypatch)


@pytest.fixture(scope="module")
def compose() -> dict[str, Any]:
    loaded = YAML(typ="safe", pure=True).load(COMPOSE_FILE.read_text())
    assert isinstance(loaded, dict)
    return loaded


@dataclass(frozen=True)
class Instruction:
    stage: int  # 0 for the first FROM's stage, 1 for the next...
    keyword: str
    arguments: str


def dockerfile() -> list[Instruction]:
    """The Dockerfile's instructions, continuation lines joined and comments dropped."""
    lines = [
        line for line in DOCKERFILE.read_text().splitlines() if not line.lstrip().startswith("#")
    ]
    joined = re.sub(r"\\\n", " ", "\n".join(lines))
    instructions: list[Instruction] = []
    stage = -1
    for line in joined.splitlines():
        if not line.strip():
            continue
        keyword, _, arguments = line.strip().partition(" ")
        keyword = keyword.upper()
        if keyword == "FROM":
            stage += 1
        instructions.append(Instruction(stage, keyword, arguments.strip()))
    return instructions


def _final_stage(keyword: str) -> list[str]:
    instructions = dockerfile()
    last = instructions[-1].stage
    return [i.arguments for i in instructions if i.stage == last and i.keyword == keyword]


def _exec_form(arguments: str) -> list[str]:
    value = json.loads(arguments)
    assert isinstance(value, list)
    assert all(isinstance(item, str) for item in value)
    return value


# --- docker-compose.yml -------------------------------------------------------------------------


def test_compose_file_is_valid_against_the_compose_specification(compose: dict[str, Any]) -> None:
    schema_file = resources.files("check_jsonschema.builtin_schemas.vendor") / "compose-spec.json"
    schema = json.loads(schema_file.read_text(encoding="utf-8"))
    validator_class = validator_for(schema)
    validator_class.check_schema(schema)

    errors = [
        f"{'/'.join(str(p) for p in error.absolute_path) or '(root)'}: {error.message}"
        for error in validator_class(schema).iter_errors(compose)
    ]

    assert errors == []


def test_compose_runs_rabbitmq_the_bridge_and_the_simulator(compose: dict[str, Any]) -> None:
    services = compose["services"]

    assert set(services) == {"rabbitmq", "bridge", "simulator"}
    assert services["rabbitmq"]["image"] == "rabbitmq:3.13-management"
    assert "rabbitmq-diagnostics" in services["rabbitmq"]["healthcheck"]["test"]
    plugins = (ROOT / "deploy" / "rabbitmq" / "enabled_plugins").read_text()
    assert "rabbitmq_consistent_hash_exchange" in plugins  # worker.shards needs it
    assert "rabbitmq_management" in plugins  # the image's own, kept
    assert any("enabled_plugins" in v for v in services["rabbitmq"]["volumes"])
    assert services["bridge"]["depends_on"]["rabbitmq"]["condition"] == "service_healthy"
    assert services["bridge"]["depends_on"]["simulator"]["condition"] == "service_healthy"
    assert services["bridge"]["command"][0] == "run"
    simulator = services["simulator"]
    port = simulator["command"][simulator["command"].index("--port") + 1]
    assert f"127.0.0.1:{port}/_sim/health" in " ".join(simulator["healthcheck"]["test"])
    # The simulator must listen on the service network, not only inside its own container.
    assert services["simulator"]["command"][:3] == ["simulator", "--host", "0.0.0.0"]  # noqa: S104
    for name in ("bridge", "simulator"):
        assert services[name]["build"] == "."


def _bridge_environment(compose: dict[str, Any]) -> dict[str, str]:
    environment = compose["services"]["bridge"]["environment"]
    assert isinstance(environment, dict), "write the environment as a mapping"
    assert all(isinstance(value, str) for value in environment.values()), "quote every value"
    return environment


def _host_path_of(compose: dict[str, Any], container_path: str) -> Path:
    """The host file behind ``container_path`` through the bridge service's bind mounts."""
    target = PurePosixPath(container_path)
    for volume in compose["services"]["bridge"]["volumes"]:
        source, mounted, *_ = str(volume).split(":")
        if source.startswith(".") and target.is_relative_to(mounted):
            return ROOT / source / target.relative_to(mounted)
    raise AssertionError(f"{container_path} is not mounted into the bridge service")


def test_bridge_environment_names_real_settings(compose: dict[str, Any]) -> None:
    environment = _bridge_environment(compose)

    unknown = [
        name
        for name in environment
        if name != CONFIG_FILE_VARIABLE and leaf_for_env_var(name) is None
    ]

    assert unknown == []


def _compose_bridge_settings(compose: dict[str, Any], monkeypatch: pytest.MonkeyPatch) -> Settings:
    environment = _bridge_environment(compose)
    for name, value in environment.items():
        if name != CONFIG_FILE_VARIABLE:
            monkeypatch.setenv(name, value)
    config_file = _host_path_of(compose, environment[CONFIG_FILE_VARIABLE])
    return load_settings(config_file)


def test_bridge_environment_loads_and_points_at_the_simulator(
    compose: dict[str, Any], monkeypatch: pytest.MonkeyPatch
) -> None:
    settings = _compose_bridge_settings(compose, monkeypatch)

    catapult = settings.catapult
    assert catapult.base_url is not None
    base_url = urlsplit(catapult.base_url)
    simulator = compose["services"]["simulator"]
    assert base_url.hostname == "simulator"
    assert str(base_url.port) == simulator["command"][simulator["command"].index("--port") + 1]
    assert base_url.path == "/v1"
    assert catapult.user_id == SIMULATOR_USER_ID
    assert catapult.api_token is not None
    assert catapult.api_token.get_secret_value() == SIMULATOR_API_TOKEN
    assert catapult.api_secret is not None
    assert catapult.api_secret.get_secret_value() == SIMULATOR_API_SECRET
    assert catapult.dashboard_account_id == SIMULATOR_DASHBOARD_ACCOUNT_ID
    assert catapult.dashboard_user_name == SIMULATOR_DASHBOARD_USER_NAME
    assert catapult.dashboard_password is not None
    assert catapult.dashboard_password.get_secret_value() == SIMULATOR_DASHBOARD_PASSWORD
    assert urlsplit(settings.broker.url.get_secret_value()).hostname == "rabbitmq"
    # The simulator's application calls the receiver with credentials: they must be set.
    assert settings.receiver.username is not None
    assert settings.receiver.password is not None


def test_the_simulator_account_calls_the_bridges_receiver(
    compose: dict[str, Any], monkeypatch: pytest.MonkeyPatch
) -> None:
    # `docker compose up` alone shows the flow: the simulator's application must call the
    # bridge service's receiver, on its port and path, with the credentials it expects.
    settings = _compose_bridge_settings(compose, monkeypatch)
    command = compose["services"]["simulator"]["command"]
    url = command[command.index("--application-url") + 1]
    assert url == callback_url(settings, f"http://bridge:{settings.receiver.port}")


def test_rabbitmqs_amqp_port_is_not_published(compose: dict[str, Any]) -> None:
    # A RabbitMQ on the host usually holds 5672; the bridge reaches this one on the network.
    published = [str(p).split(":")[-2:] for p in compose["services"]["rabbitmq"].get("ports", [])]
    assert all(container != "5672" for *_, container in published)


def test_bridge_publishes_its_port_and_keeps_its_spool(
    compose: dict[str, Any], monkeypatch: pytest.MonkeyPatch
) -> None:
    settings = _compose_bridge_settings(compose, monkeypatch)
    bridge = compose["services"]["bridge"]

    assert f"{settings.receiver.port}:{settings.receiver.port}" in bridge["ports"]
    workdir = PurePosixPath(_final_stage("WORKDIR")[-1])
    spool = workdir / settings.receiver.spool_dir
    named = [v.split(":") for v in bridge["volumes"] if not v.startswith(".")]
    assert [name for name, target, *_ in named if PurePosixPath(target) == spool] == ["spool"]
    assert "spool" in compose["volumes"]


# --- Dockerfile ---------------------------------------------------------------------------------


def test_dockerfile_is_multi_stage_on_python_slim() -> None:
    stages = [i.arguments for i in dockerfile() if i.keyword == "FROM"]

    assert len(stages) >= 2
    assert stages[-1].startswith("python:3.11-slim")
    # The runtime stage takes the virtualenv from the builder; it installs nothing itself.
    assert any("--from=builder" in copy for copy in _final_stage("COPY"))
    assert not any("uv " in run or "pip " in run for run in _final_stage("RUN"))


def test_dockerfile_starts_bridge_in_exec_form() -> None:
    # Shell form would make /bin/sh PID 1, and SIGTERM would never reach the bridge.
    entrypoints = _final_stage("ENTRYPOINT")
    commands = _final_stage("CMD")

    assert len(entrypoints) == 1
    assert len(commands) == 1
    assert _exec_form(entrypoints[0]) == ["bridge"]
    assert _exec_form(commands[0]) == ["run"]


def test_dockerfile_runs_as_a_non_root_user() -> None:
    users = _final_stage("USER")

    assert users, "the runtime stage must switch to an unprivileged user"
    assert users[-1].split(":")[0] not in {"root", "0"}


def _healthcheck_program() -> str:
    healthchecks = _final_stage("HEALTHCHECK")
    assert len(healthchecks) == 1
    _, _, command = healthchecks[0].partition("CMD ")
    program = _exec_form(command)
    assert program[:2] == ["python", "-c"]
    return program[2]


def test_dockerfile_exposes_the_receiver_port_and_checks_healthz() -> None:
    exposed = " ".join(_final_stage("EXPOSE")).split()
    program = _healthcheck_program()

    assert str(ReceiverSettings().port) in exposed
    assert str(OperationsSettings().port) in exposed
    compile(program, "HEALTHCHECK", "exec")  # the slim image has Python, not curl
    assert "/healthz" in program
    assert "BRIDGE_OPERATIONS__PORT" in program
    assert f"'{OperationsSettings().port}'" in program


async def test_the_healthcheck_asks_the_operations_server() -> None:
    # Every role serves /healthz on the operations port: the one check fits every container.
    program = _healthcheck_program()
    async with OperationsServer(CollectorRegistry(), {}, host="127.0.0.1", port=0) as server:
        port = server.port
        assert await _run_healthcheck(program, port) == 0
    assert await _run_healthcheck(program, port) == 1  # stopped: nothing answers


async def _run_healthcheck(program: str, port: int) -> int:
    env = {**os.environ, "BRIDGE_OPERATIONS__PORT": str(port)}
    process = await asyncio.create_subprocess_exec(sys.executable, "-c", program, env=env)
    async with asyncio.timeout(10):
        return await process.wait()


def test_image_installs_the_way_the_readme_and_ci_do() -> None:
    docker_text = DOCKERFILE.read_text()
    readme_text = README.read_text()
    ci_text = CI_SCRIPT.read_text()

    # One uv version everywhere.
    pins = {
        "Dockerfile": set(UV_PIN.findall(docker_text)),
        "README.md": set(UV_PIN.findall(readme_text)),
        ".ci/run": set(UV_PIN.findall(ci_text)) | set(CI_UV_VERSION.findall(ci_text)),
    }
    assert all(len(found) == 1 for found in pins.values()), pins
    assert len(set.union(*pins.values())) == 1, pins
    assert "python3 -m pip install" in docker_text
    assert "python3 -m pip install" in readme_text

    # The image's final install is the README's production install, from the lock file.
    syncs = [
        match.group(0)
        for run in (i.arguments for i in dockerfile() if i.keyword == "RUN")
        for match in UV_SYNC.finditer(run)
    ]
    assert syncs, "the image installs with uv sync"
    assert all(sync.startswith("uv sync --frozen --no-dev") for sync in syncs)
    assert f"\n{syncs[-1]}\n" in readme_text
    # And the README's test install is exactly the CI's.
    assert re.search(r"^\s*\$UV sync --frozen$", ci_text, re.MULTILINE)
    assert re.search(r"^\s*make check UV=", ci_text, re.MULTILINE)
    assert "bash .ci/run" in readme_text


def test_dockerignore_lets_in_what_the_dockerfile_copies() -> None:
    patterns = [
        line.strip()
        for line in DOCKERIGNORE.read_text().splitlines()
        if line.strip() and not line.startswith("#")
    ]

    def is_ignored(path: str) -> bool:
        ignored = False
        for pattern in patterns:
            negated = pattern.startswith("!")
            bare = pattern.lstrip("!").rstrip("/")
            if fnmatch.fnmatch(path, bare) or path.startswith(bare + "/"):
                ignored = not negated
        return ignored

    sources = [
        source
        for arguments in (i.arguments for i in dockerfile() if i.keyword == "COPY")
        if "--from=" not in arguments
        for source in arguments.split()[:-1]
    ]
    assert sources
    for source in sources:
        assert (ROOT / source).exists(), source
        assert not is_ignored(source.rstrip("/")), f".dockerignore keeps {source} out"
    assert is_ignored(".venv")
    assert is_ignored("tests")


def test_readme_python_snippets_compile() -> None:
    snippets = re.findall(r"```python\n(.*?)```", README.read_text(), flags=re.DOTALL)

    for snippet in snippets:
        compile(snippet, "README.md", "exec")


def test_readme_bridge_commands_parse() -> None:
    """Every ``$ uv run --frozen bridge ...`` of the README is a command line ``bridge`` takes."""
    from bridge.cli import build_parser

    commands = re.findall(r"^\$ uv run --frozen bridge (.+)$", README.read_text(), flags=re.M)

    assert len(commands) >= 8
    for command in commands:
        build_parser().parse_args(shlex.split(command))  # a bad one exits with status 2

"""The bridge's one settings tree.

Layers, lowest first: the defaults written here < a TOML file (``config/bridge.toml`` documents
every key) < environment variables (``BRIDGE_`` prefix, ``__`` between levels, e.g.
``BRIDGE_BROKER__URL``) < explicit overrides (command-line flags). The tree is frozen and every
level forbids unknown keys, so a typo stops the start with the setting's dotted name. Secrets are
``SecretStr`` and URLs carrying passwords are shown masked; nothing here ever prints a secret.

Loaded once at start-up (``load_settings``) and passed down; no module reads the environment itself.
"""

from __future__ import annotations

import math
import tomllib
from pathlib import Path
from typing import Annotated, Any, Literal
from urllib.parse import urlsplit, urlunsplit

import pydantic_settings
from pydantic import (
    AfterValidator,
    BaseModel,
    BeforeValidator,
    ConfigDict,
    Field,
    SecretStr,
    ValidationError,
    field_validator,
    model_validator,
)
from pydantic_settings import (
    BaseSettings,
    PydanticBaseSettingsSource,
    SettingsConfigDict,
    TomlConfigSettingsSource,
)

PositiveFloat = Annotated[float, Field(gt=0)]
PositiveInt = Annotated[int, Field(gt=0)]
Port = Annotated[int, Field(ge=0, le=65535)]

# The embedded simulator's well-known identities. They are documented in the README and are not
# secrets: they only open a simulator on the loopback interface.
SIMULATOR_USER_ID = "u-simulatoruser2345abcdefg"
SIMULATOR_API_TOKEN = "t-simulatortoken234abcdefg"  # noqa: S105
SIMULATOR_API_SECRET = "simulator-secret"  # noqa: S105
SIMULATOR_DASHBOARD_ACCOUNT_ID = "9900000"
SIMULATOR_DASHBOARD_USER_NAME = "dashboard-user"
SIMULATOR_DASHBOARD_PASSWORD = "dashboard-password"  # noqa: S105


def masked_url(url: str) -> str:
    """``url`` with any password replaced by ``***`` (for logs, errors and reprs)."""
    parts = urlsplit(url)
    if parts.password is None:
        return url
    host = parts.hostname or ""
    if ":" in host:
        host = f"[{host}]"
    netloc = f"{parts.username or ''}:***@{host}"
    if parts.port is not None:
        netloc += f":{parts.port}"
    return urlunsplit(parts._replace(netloc=netloc))


def reachable_host(bind_host: str) -> str:
    """The host part of a URL that reaches a server bound to ``bind_host`` from this machine.

    A wildcard bind (all interfaces) is reached on the loopback address; IPv6 is bracketed.
    """
    if bind_host in ("", "0.0.0.0", "::"):  # noqa: S104 - recognised, not bound, here
        return "127.0.0.1"
    return f"[{bind_host}]" if ":" in bind_host else bind_host


def _not_blank(value: Any) -> Any:
    """A credential or address that is set must hold something: ``FOO=`` is not "unset"."""
    text = value.get_secret_value() if isinstance(value, SecretStr) else value
    if isinstance(text, str) and not text.strip():
        raise ValueError("must not be empty or blank; give a value or leave the setting unset")
    return value


class _Section(BaseModel):
    # No inf or nan: every number here is a count, a rate or a time the bridge computes with.
    model_config = ConfigDict(frozen=True, extra="forbid", allow_inf_nan=False)


class CatapultSettings(_Section):
    """Where and how to reach Catapult. No ``base_url``: the embedded simulator is used."""

    base_url: str | None = None
    user_id: str | None = None
    api_token: SecretStr | None = None
    api_secret: SecretStr | None = None
    timeout_s: PositiveFloat = 10.0
    connect_timeout_s: PositiveFloat = 3.0
    max_connections: PositiveInt = 64
    # Dashboard credentials used by number-import commands that carry none of their own.
    dashboard_account_id: str | None = None
    dashboard_user_name: str | None = None
    dashboard_password: SecretStr | None = None

    _set_means_not_blank = field_validator(
        "base_url",
        "user_id",
        "api_token",
        "api_secret",
        "dashboard_account_id",
        "dashboard_user_name",
        "dashboard_password",
    )(_not_blank)

    @property
    def is_embedded(self) -> bool:
        return self.base_url is None

    @model_validator(mode="after")
    def _credentials_with_base_url(self) -> CatapultSettings:
        if self.base_url is not None:
            missing = [
                f"catapult.{name}"
                for name in ("user_id", "api_token", "api_secret")
                if getattr(self, name) is None
            ]
            if missing:
                raise ValueError(
                    f"catapult.base_url is set, so {', '.join(missing)} must be set too "
                    "(leave catapult.base_url unset to run against the embedded simulator)"
                )
        return self


class BrokerSettings(_Section):
    """RabbitMQ connection and the names of everything the bridge declares."""

    url: SecretStr = SecretStr("amqp://guest:guest@127.0.0.1:5672/")
    # The nodes of a cluster, each a URL like broker.url, tried in turn (instead of broker.url):
    # when the node a role is connected to goes, it connects to the next.
    urls: tuple[Annotated[SecretStr, AfterValidator(_not_blank)], ...] = ()
    queue_type: Literal["quorum", "classic"] = "quorum"
    events_exchange: str = "bridge.events"
    dead_letter_exchange: str = "bridge.dead-letter"
    inbound_queue: str = "inbound.sms"
    status_queue: str = "outbound.status"
    send_queue: str = "outbound.sms"
    import_queue: str = "outbound.import"
    results_suffix: str = ".results"
    dead_letter_suffix: str = ".dead"
    confirm_timeout_s: PositiveFloat = 3.0
    connect_timeout_s: PositiveFloat = 5.0
    heartbeat_s: PositiveInt = 30
    # While RabbitMQ is away each role tries again after a pause that doubles from the first to
    # the most (each one drawn between half and all of it, so restarted bridges spread out).
    reconnect_delay_s: PositiveFloat = 0.5
    reconnect_max_delay_s: PositiveFloat = 15.0
    # Broker-side backstop against a message that crashes a consumer over and over (quorum only).
    delivery_limit: PositiveInt = 20

    _set_means_not_blank = field_validator("url")(_not_blank)

    @model_validator(mode="after")
    def _delays_in_order(self) -> BrokerSettings:
        if self.urls and "url" in self.model_fields_set:
            raise ValueError(
                "set broker.url (one node) or broker.urls (the nodes of a cluster), not both"
            )
        if self.reconnect_max_delay_s < self.reconnect_delay_s:
            raise ValueError(
                "broker.reconnect_max_delay_s must be at least broker.reconnect_delay_s "
                f"({self.reconnect_max_delay_s:g} < {self.reconnect_delay_s:g})"
            )
        return self

    @property
    def addresses(self) -> tuple[str, ...]:
        """Every node's URL, in the order they are tried (secrets: never log them unmasked)."""
        urls = self.urls or (self.url,)
        return tuple(url.get_secret_value() for url in urls)

    @property
    def display_url(self) -> str:
        return ", ".join(masked_url(url) for url in self.addresses)


class ReceiverSettings(_Section):
    """The HTTP side that Catapult calls back."""

    host: str = "0.0.0.0"  # noqa: S104 - a sidecar listens for Catapult on its pod's interfaces
    port: Port = 8080
    path: str = "/catapult/messages"
    # HTTP Basic credentials expected on callbacks (Catapult v1 sends them from user:pass@ in URLs).
    username: str | None = None
    password: SecretStr | None = None
    # Optional secret path segment: callbacks are then served at {path}/{path_token}.
    path_token: SecretStr | None = None
    allow_unauthenticated: bool = False
    # Public base URL Catapult should call (used when the bridge configures the embedded simulator).
    public_url: str | None = None
    max_body_bytes: PositiveInt = 64 * 1024
    source: str = "catapult-bridge/receiver"
    dedup_window_s: Annotated[float, Field(ge=0)] = 600.0
    dedup_max_entries: PositiveInt = 100_000
    spool_enabled: bool = True
    spool_dir: Path = Path("var/spool")
    spool_max_bytes: PositiveInt = 256 * 1024 * 1024
    shutdown_timeout_s: PositiveFloat = 10.0
    # Slow clients: a request head must be complete within header_timeout_s of the connection
    # opening (or of its previous answer: an idle kept-alive connection is closed then too), a
    # body within body_timeout_s of its head. Catapult gives a callback 10 s in all.
    header_timeout_s: PositiveFloat = 10.0
    body_timeout_s: PositiveFloat = 10.0
    # Open connections at most; one more is answered 503 and closed.
    max_connections: PositiveInt = 512
    # Receiver processes serving the one port (SO_REUSEPORT), for hosts with more cores: each
    # has its spool in spool_dir/<index> and the operations port adds their metrics up. 1: the
    # receiver runs in the bridge's own process, its spool in spool_dir.
    processes: PositiveInt = 1
    # Pause before a failed spool drain tries again (it doubles up to drain_retry_max_s).
    retry_interval_s: PositiveFloat = 1.0
    # A spool drain that fails (the disk, or events the broker refuses) retries after
    # retry_interval_s, doubling up to this.
    drain_retry_max_s: PositiveFloat = 30.0

    _set_means_not_blank = field_validator("username", "password", "path_token")(_not_blank)

    @field_validator("username")
    @classmethod
    def _basic_user_name(cls, value: str | None) -> str | None:
        if value is not None and ":" in value:
            raise ValueError("must not contain ':' (HTTP Basic splits user and password at it)")
        return value

    @model_validator(mode="after")
    def _credentials_and_path(self) -> ReceiverSettings:
        if (self.username is None) != (self.password is None):
            raise ValueError("receiver.username and receiver.password must be set together")
        if not self.path.startswith("/") or self.path.endswith("/") or "{" in self.path:
            raise ValueError(
                "receiver.path must start with '/', not end with '/' and hold no '{': "
                f"{self.path!r}"
            )
        if self.path == "/healthz":
            raise ValueError("receiver.path '/healthz' is taken by the liveness probe")
        if self.processes > 1 and self.port == 0:
            raise ValueError(
                f"receiver.processes = {self.processes} needs a fixed receiver.port "
                "(with 0 each process would listen on a port of its own)"
            )
        return self

    @property
    def has_credentials(self) -> bool:
        return self.username is not None or self.path_token is not None

    @property
    def secret_values(self) -> tuple[str, ...]:
        """The password and the path token, as set: what a simulator calling back must hide."""
        return tuple(s.get_secret_value() for s in (self.password, self.path_token) if s)


# Basic.Qos carries the prefetch count in 16 bits; a derived prefetch stays well under it (each
# held command is memory).
AMQP_PREFETCH_MAX = 65_535
_DERIVED_PREFETCH_MAX = 10_000


class WorkerSettings(_Section):
    """The command side: RabbitMQ to Catapult."""

    # Calls to Catapult in flight (one slot per request, a batch of sends is one request).
    concurrency: PositiveInt = 16
    # Send commands held unacked at most (the send queue's prefetch: the memory bound); default
    # concurrency x batch_max (every call slot can carry a full batch), or 2 x
    # account_messages_per_s x hold_s when more (see send_prefetch). Keep it at least
    # the highest message rate times the shortest retry delay: parked sends come back once per
    # delay tier. With shards, each shard queue a worker holds has this prefetch.
    prefetch: Annotated[int, Field(ge=1, le=AMQP_PREFETCH_MAX)] | None = None
    number_concurrency: PositiveInt = 4
    call_timeout_s: PositiveFloat = 15.0
    drain_timeout_s: PositiveFloat = 20.0
    # Token buckets matching Catapult's defaults; 0 switches a limit off.
    account_messages_per_s: Annotated[float, Field(ge=0)] = 1.0
    number_messages_per_s: Annotated[float, Field(ge=0)] = 1.0
    # Numbers sending at application-to-person rates: only the account limit applies to them.
    a2p_numbers: tuple[str, ...] = ()
    number_requests_per_min: Annotated[float, Field(ge=0)] = 100.0
    batch_max: Annotated[int, Field(ge=1, le=50)] = 50
    max_attempts: PositiveInt = 6
    retry_delays_s: tuple[PositiveFloat, ...] = (1.0, 5.0, 30.0, 120.0, 600.0)
    # How far back the ambiguous-outcome lookup searches the sender's messages when nothing says
    # when the command was first queued or sent (a redelivery without an AMQP timestamp), and
    # how many of them it reads at most.
    lookup_window_s: PositiveFloat = 900.0
    lookup_max_messages: PositiveInt = 5000
    # Look-ups (GET /messages pages) per second, all senders together: Catapult's read limit
    # (1 request/s by default; beyond it, 429 until X-RateLimit-Reset). 0 switches pacing off.
    lookup_requests_per_s: Annotated[float, Field(ge=0)] = 1.0
    # A sender keeps at most this many seconds of its sending in memory; later sends of that
    # sender are parked in the delay queues, so one busy number never fills the prefetch window.
    hold_s: PositiveFloat = 2.0
    # The buckets pace sends this fraction under the configured rates. Catapult's 10 s windows
    # are kept within the limit by counting the sends that may still land in them (limits.py).
    rate_margin: Annotated[float, Field(ge=0, lt=1)] = 0.02
    # Sharded sending, for several workers on one RabbitMQ: the send queue's commands are moved
    # into this many shard queues by sending number, each sent from one worker at a time, and
    # each worker takes the account limit in proportion to the shards it holds. 0: off. The same
    # on every worker of a deployment; needs RabbitMQ's consistent-hash exchange plugin.
    shards: Annotated[int, Field(ge=0, le=1024)] = 0
    # A shard newly held (another worker stopped, died or gave it up) is not sent from for this
    # long: the previous holder's sends in Catapult's last 10 s window still count.
    shard_warmup_s: Annotated[float, Field(ge=0)] = 10.0
    # Pause after a 403 message-rate-limit (Catapult gives no reset time); doubles while the
    # 403s go on, up to the maximum.
    rate_limit_pause_s: PositiveFloat = 1.0
    rate_limit_pause_max_s: PositiveFloat = 10.0
    # A 429 pauses its resource family until X-RateLimit-Reset, kept within these bounds: a reset
    # time in the past (a clock behind ours) or too near still pauses the minimum, one too far
    # away (an hour, a garbled header) pauses the maximum.
    rate_limit_reset_min_s: PositiveFloat = 1.0
    rate_limit_reset_max_s: PositiveFloat = 60.0
    # A command older than this (from its AMQP timestamp, else from when the worker first took
    # it) is dead-lettered as expired instead of being sent late; unset: no maximum age.
    max_age_s: PositiveFloat | None = None
    # Catapult counts as down after this many requests in a row failed for want of it (refused,
    # timed out before it was sent, or answered 5xx for as many different commands); the worker
    # then takes no commands and probes Catapult, pausing twice as long after each failed probe
    # from the first to the longest pause.
    outage_after_failures: PositiveInt = 5
    outage_probe_initial_s: PositiveFloat = 1.0
    outage_probe_max_s: PositiveFloat = 30.0

    @model_validator(mode="after")
    def _check_bounds(self) -> WorkerSettings:
        if self.rate_limit_reset_min_s > self.rate_limit_reset_max_s:
            raise ValueError(
                "worker.rate_limit_reset_min_s must not be above worker.rate_limit_reset_max_s"
            )
        if self.outage_probe_initial_s > self.outage_probe_max_s:
            raise ValueError(
                "worker.outage_probe_initial_s must not be above worker.outage_probe_max_s"
            )
        return self

    @model_validator(mode="after")
    def _shards_fit_the_account(self) -> WorkerSettings:
        account_window = math.floor(self.account_messages_per_s * 10 + 1e-9)
        if self.shards and self.account_messages_per_s and account_window < self.shards:
            raise ValueError(
                f"worker.shards ({self.shards}) must not be above the account's sends per 10 s "
                f"(worker.account_messages_per_s x 10 = {account_window}): each shard's holder "
                "needs at least one"
            )
        return self

    @property
    def send_prefetch(self) -> int:
        """The send queue's prefetch: ``prefetch``, else enough for every call slot to carry a
        full batch and for one sender at the account's rate to hold ``hold_s`` of its sending
        (or the shortest delay tier's, if longer) within its half of the window, so that a
        busy A2P number's commands wait in memory rather than go round the delay tiers."""
        if self.prefetch:
            return self.prefetch
        hold_s = max(self.hold_s, min(self.retry_delays_s, default=self.hold_s))
        by_rate = min(_DERIVED_PREFETCH_MAX, math.ceil(2 * self.account_messages_per_s * hold_s))
        return max(self.concurrency * self.batch_max, by_rate)


class OperationsSettings(_Section):
    """The operations server: /healthz, /readyz and /metrics of every role the process runs."""

    host: str = "0.0.0.0"  # noqa: S104 - probes and scrapes come from the orchestrator
    port: Port = 8081


class SimulatorSettings(_Section):
    """The embedded Catapult v1 simulator (also ``bridge simulator``).

    Limits default to the real platform's (AP-DOCS rateLimits/*); 0 switches a limit off. Faults
    default to none; shares are probabilities per request, message or callback attempt.
    """

    host: str = "127.0.0.1"
    port: Port = 8090
    user_id: str = SIMULATOR_USER_ID
    api_token: str = SIMULATOR_API_TOKEN
    api_secret: SecretStr = SecretStr(SIMULATOR_API_SECRET)
    dashboard_account_id: str = SIMULATOR_DASHBOARD_ACCOUNT_ID
    dashboard_user_name: str = SIMULATOR_DASHBOARD_USER_NAME
    dashboard_password: SecretStr = SecretStr(SIMULATOR_DASHBOARD_PASSWORD)
    # Numbers held by the Dashboard account, importable with provider bandwidth-dashboard.
    dashboard_numbers: tuple[str, ...] = tuple(f"+1919555{n:04d}" for n in range(100, 200))
    # How many of them (the first ones) are on the account at start, assigned to the bridge's
    # application; the others wait in the Dashboard to be imported.
    account_numbers: Annotated[int, Field(ge=0)] = 20
    # Messages per second, averaged over 10 s; 0 switches a limit off.
    account_messages_per_s: Annotated[float, Field(ge=0)] = 1.0
    number_messages_per_s: Annotated[float, Field(ge=0)] = 1.0
    # Numbers sending at application-to-person rates: only the account limit applies to them.
    a2p_numbers: tuple[str, ...] = ()
    # Code of the account-wide 403 (the per-number one is always message-rate-limit-per-tn).
    account_limit_code: Literal["message-rate-limit", "message-rate-limit-overall"] = (
        "message-rate-limit"
    )
    # Other resource families (429 with X-RateLimit-Reset): token buckets of rate and burst.
    resource_requests_per_s: Annotated[float, Field(ge=0)] = 1.0
    resource_burst: PositiveInt = 1
    number_orders_per_min: Annotated[float, Field(ge=0)] = 100.0
    number_orders_burst: PositiveInt = 800
    number_reads_per_s: Annotated[float, Field(ge=0)] = 2000.0
    number_reads_burst: PositiveInt = 3000
    # Faults.
    latency_ms: Annotated[float, Field(ge=0)] = 0.0
    error_rate: Annotated[float, Field(ge=0, le=1)] = 0.0
    ambiguous_rate: Annotated[float, Field(ge=0, le=1)] = 0.0
    lost_answer_rate: Annotated[float, Field(ge=0, le=1)] = 0.0
    echo_error_rate: Annotated[float, Field(ge=0, le=1)] = 0.0
    gateway_unavailable_rate: Annotated[float, Field(ge=0, le=1)] = 0.0
    rate_limit_storm_rate: Annotated[float, Field(ge=0, le=1)] = 0.0
    duplicate_callback_rate: Annotated[float, Field(ge=0, le=1)] = 0.0
    reorder_receipts_rate: Annotated[float, Field(ge=0, le=1)] = 0.0
    callback_delay_ms: Annotated[float, Field(ge=0)] = 0.0
    callback_failure_rate: Annotated[float, Field(ge=0, le=1)] = 0.0
    fault_seed: int | None = None
    # Pause between the status events of one outbound message.
    status_delay_ms: Annotated[float, Field(ge=0)] = 0.0
    # Memory bounds: oldest entries are dropped first.
    max_messages: PositiveInt = 200_000
    max_requests_logged: PositiveInt = 10_000
    max_callback_attempts: PositiveInt = 20_000
    callback_max_connections: PositiveInt = 100
    # ``bridge simulator`` alone: at start, an application calling this URL (it carries the
    # callback credentials) with the Dashboard numbers on the account, assigned to it.
    application_url: SecretStr | None = None

    _set_means_not_blank = field_validator(
        "user_id",
        "api_token",
        "api_secret",
        "dashboard_account_id",
        "dashboard_user_name",
        "dashboard_password",
    )(_not_blank)


def _upper_case(value: Any) -> Any:
    return value.upper() if isinstance(value, str) else value


class LogSettings(_Section):
    level: Annotated[Literal["DEBUG", "INFO", "WARNING", "ERROR"], BeforeValidator(_upper_case)] = (
        "INFO"
    )
    format: Literal["plain", "json"] = "plain"
    # One INFO line per callback stored and per command finished; dead letters always warn.
    per_message: bool = True


class Settings(BaseSettings):
    """Everything the bridge reads at start. Build it with ``load_settings``."""

    model_config = SettingsConfigDict(
        env_prefix="BRIDGE_",
        env_nested_delimiter="__",
        frozen=True,
        extra="forbid",
    )

    catapult: CatapultSettings = CatapultSettings()
    broker: BrokerSettings = BrokerSettings()
    receiver: ReceiverSettings = ReceiverSettings()
    worker: WorkerSettings = WorkerSettings()
    operations: OperationsSettings = OperationsSettings()
    simulator: SimulatorSettings = SimulatorSettings()
    log: LogSettings = LogSettings()


class SettingsError(Exception):
    """The settings cannot be loaded; the message names each setting and what is wrong with it."""


def _describe(exc: ValidationError) -> str:
    lines = []
    for error in exc.errors():
        name = ".".join(str(part) for part in error["loc"]) or "(top level)"
        message = error["msg"].removeprefix("Value error, ")
        if error["type"] == "extra_forbidden":
            message = "unknown setting"
        lines.append(f"  {name}: {message}")
    return "invalid settings:\n" + "\n".join(lines)


def load_settings(config_file: Path | None = None, **overrides: Any) -> Settings:
    """Load the layered settings; raise ``SettingsError`` naming every bad setting.

    ``overrides`` are nested dicts keyed like the tree (``receiver={"port": 9000}``): they win over
    every other layer.
    """
    if config_file is not None:
        if not config_file.is_file():
            raise SettingsError(f"config file {config_file} does not exist")
        try:
            with config_file.open("rb") as fh:
                tomllib.load(fh)
        except tomllib.TOMLDecodeError as exc:
            raise SettingsError(f"config file {config_file} is not valid TOML: {exc}") from exc

    class _Layered(Settings):
        @classmethod
        def settings_customise_sources(
            cls,
            settings_cls: type[BaseSettings],
            init_settings: PydanticBaseSettingsSource,
            env_settings: PydanticBaseSettingsSource,
            dotenv_settings: PydanticBaseSettingsSource,
            file_secret_settings: PydanticBaseSettingsSource,
        ) -> tuple[PydanticBaseSettingsSource, ...]:
            sources: list[PydanticBaseSettingsSource] = [init_settings, env_settings]
            if config_file is not None:
                sources.append(TomlConfigSettingsSource(settings_cls, toml_file=config_file))
            return tuple(sources)

    # Reprs and error messages name the class users know.
    _Layered.__name__ = _Layered.__qualname__ = Settings.__name__
    try:
        return _Layered(**overrides)
    except ValidationError as exc:
        raise SettingsError(_describe(exc)) from None
    except pydantic_settings.SettingsError as exc:
        # An environment value that is not the JSON a list or table setting takes.
        raise SettingsError(
            f"invalid settings:\n  {exc} (lists and tables are written as JSON, "
            "e.g. BRIDGE_WORKER__RETRY_DELAYS_S='[1, 5, 30]')"
        ) from None

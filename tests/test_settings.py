"""The settings tree: layering, the errors a bad setting gives, and secrets that never print.

Layers, lowest first: defaults < TOML file < environment (``BRIDGE_`` prefix, ``__`` nesting) <
explicit overrides. Every bad setting is reported with its dotted name. Pure tests: no broker.
"""

from __future__ import annotations

import json
import logging
from collections.abc import Iterator
from pathlib import Path

import pytest

from bridge.cli import main
from bridge.settings import (
    BrokerSettings,
    CatapultSettings,
    SettingsError,
    load_settings,
    masked_url,
)
from tests.test_config_file import clear_bridge_environment

API_SECRET = "api-secret-Zq81"
AMQP_PASSWORD = "amqp-pass-Xw42"
RECEIVER_PASSWORD = "receiver-pass-Kd93"
DASHBOARD_PASSWORD = "dashboard-pass-Pm55"
PATH_TOKEN = "path-token-Hy27"
ALL_SECRETS = (API_SECRET, AMQP_PASSWORD, RECEIVER_PASSWORD, DASHBOARD_PASSWORD, PATH_TOKEN)


@pytest.fixture(autouse=True)
def _clean_environment(monkeypatch: pytest.MonkeyPatch) -> None:
    clear_bridge_environment(monkeypatch)


@pytest.fixture
def restore_logging() -> Iterator[None]:
    """``bridge.cli.main`` configures the root logger; put it back for the tests that follow."""
    root = logging.getLogger()
    handlers, level = root.handlers[:], root.level
    yield
    root.handlers[:] = handlers
    root.setLevel(level)


def _toml(tmp_path: Path, text: str) -> Path:
    path = tmp_path / "bridge.toml"
    path.write_text(text)
    return path


def _secret_env(monkeypatch: pytest.MonkeyPatch) -> None:
    """Every kind of secret the bridge holds, set through the environment."""
    monkeypatch.setenv("BRIDGE_CATAPULT__BASE_URL", "http://127.0.0.1:9/v1")
    monkeypatch.setenv("BRIDGE_CATAPULT__USER_ID", "u-someone")
    monkeypatch.setenv("BRIDGE_CATAPULT__API_TOKEN", "t-token")
    monkeypatch.setenv("BRIDGE_CATAPULT__API_SECRET", API_SECRET)
    monkeypatch.setenv("BRIDGE_CATAPULT__DASHBOARD_PASSWORD", DASHBOARD_PASSWORD)
    monkeypatch.setenv("BRIDGE_BROKER__URL", f"amqp://bridge:{AMQP_PASSWORD}@rabbit:5672/vh")
    monkeypatch.setenv("BRIDGE_RECEIVER__USERNAME", "catapult")
    monkeypatch.setenv("BRIDGE_RECEIVER__PASSWORD", RECEIVER_PASSWORD)
    monkeypatch.setenv("BRIDGE_RECEIVER__PATH_TOKEN", PATH_TOKEN)


# --- layering ---------------------------------------------------------------------------------


def test_defaults_without_file_environment_or_overrides() -> None:
    settings = load_settings()

    assert settings.receiver.port == 8080
    assert settings.broker.queue_type == "quorum"
    assert settings.catapult.is_embedded
    assert settings.log.level == "INFO"


def test_toml_file_wins_over_defaults(tmp_path: Path) -> None:
    path = _toml(tmp_path, '[receiver]\nport = 9001\n[worker]\na2p_numbers = ["+15550001"]\n')

    settings = load_settings(path)

    assert settings.receiver.port == 9001
    assert settings.worker.a2p_numbers == ("+15550001",)
    assert settings.receiver.path == "/catapult/messages"  # untouched keys keep their defaults


def test_environment_wins_over_toml_file(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    path = _toml(tmp_path, '[receiver]\nport = 9001\n[broker]\nevents_exchange = "from-file"\n')
    monkeypatch.setenv("BRIDGE_RECEIVER__PORT", "9002")
    monkeypatch.setenv("BRIDGE_WORKER__RETRY_DELAYS_S", "[2, 4]")

    settings = load_settings(path)

    assert settings.receiver.port == 9002
    assert settings.worker.retry_delays_s == (2.0, 4.0)
    # Layers merge key by key: the file's other keys in the same section still apply.
    assert settings.broker.events_exchange == "from-file"


def test_environment_names_are_case_insensitive(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("bridge_log__level", "DEBUG")

    assert load_settings().log.level == "DEBUG"


def test_overrides_win_over_environment_and_file(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    path = _toml(tmp_path, '[receiver]\nport = 9001\nsource = "file"\n')
    monkeypatch.setenv("BRIDGE_RECEIVER__PORT", "9002")
    monkeypatch.setenv("BRIDGE_LOG__FORMAT", "json")

    settings = load_settings(path, receiver={"port": 9003}, log={"level": "ERROR"})

    assert settings.receiver.port == 9003
    assert settings.receiver.source == "file"
    assert settings.log.format == "json"
    assert settings.log.level == "ERROR"


def test_settings_are_frozen() -> None:
    settings = load_settings()

    with pytest.raises(ValueError, match="frozen"):
        settings.receiver.port = 1  # type: ignore[misc]


# --- bad settings stop the start with the setting's name ---------------------------------------


@pytest.mark.parametrize(
    ("toml", "name", "what"),
    [
        ("[broker]\nurll = 'amqp://x'\n", "broker.urll", "unknown setting"),
        ("[recever]\nport = 1\n", "recever", "unknown setting"),
        ("[receiver]\nport = 'eighty'\n", "receiver.port", "valid integer"),
        ("[receiver]\nport = 70000\n", "receiver.port", "less than or equal to 65535"),
        ("[worker]\nbatch_max = 51\n", "worker.batch_max", "less than or equal to 50"),
        ("[log]\nlevel = 'LOUD'\n", "log.level", "'DEBUG', 'INFO', 'WARNING' or 'ERROR'"),
        ("[broker]\nqueue_type = 'stream'\n", "broker.queue_type", "'quorum' or 'classic'"),
    ],
)
def test_bad_toml_setting_is_named(tmp_path: Path, toml: str, name: str, what: str) -> None:
    with pytest.raises(SettingsError) as caught:
        load_settings(_toml(tmp_path, toml))

    assert f"  {name}: " in str(caught.value)
    assert what in str(caught.value)


@pytest.mark.parametrize(
    ("variable", "value", "name", "what"),
    [
        ("BRIDGE_BROKER__URLL", "amqp://x", "broker.urll", "unknown setting"),
        ("BRIDGE_RECEIVER__PORT", "eighty", "receiver.port", "valid integer"),
        ("BRIDGE_WORKER__CONCURRENCY", "0", "worker.concurrency", "greater than 0"),
        ("BRIDGE_RECEIVER__SPOOL_ENABLED", "maybe", "receiver.spool_enabled", "valid boolean"),
        ("BRIDGE_WORKER__CALL_TIMEOUT_S", "inf", "worker.call_timeout_s", "finite number"),
        ("BRIDGE_SIMULATOR__LATENCY_MS", "nan", "simulator.latency_ms", "finite number"),
    ],
)
def test_bad_environment_setting_is_named(
    monkeypatch: pytest.MonkeyPatch, variable: str, value: str, name: str, what: str
) -> None:
    monkeypatch.setenv(variable, value)

    with pytest.raises(SettingsError) as caught:
        load_settings()

    assert f"  {name}: " in str(caught.value)
    assert what in str(caught.value)


def test_a_list_in_the_environment_that_is_not_json_is_a_settings_error(
    monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    monkeypatch.setenv("BRIDGE_WORKER__RETRY_DELAYS_S", "1,5")

    assert main(["config"]) == 2

    err = capsys.readouterr().err
    assert '"worker"' in err
    assert "written as JSON" in err
    assert "Traceback" not in err


def test_bad_override_is_named() -> None:
    with pytest.raises(SettingsError, match=r"receiver\.port: .*valid integer"):
        load_settings(receiver={"port": "eighty"})


def test_a_reconnect_cap_below_the_first_pause_is_named() -> None:
    with pytest.raises(SettingsError, match=r"broker\.reconnect_max_delay_s must be at least"):
        load_settings(broker={"reconnect_delay_s": 5, "reconnect_max_delay_s": 1})


def test_every_bad_setting_is_reported_at_once(tmp_path: Path) -> None:
    path = _toml(tmp_path, "[receiver]\nport = 'x'\n[worker]\nconcurrency = -1\n")

    with pytest.raises(SettingsError) as caught:
        load_settings(path)

    assert "receiver.port" in str(caught.value)
    assert "worker.concurrency" in str(caught.value)


@pytest.mark.parametrize(
    ("given", "missing"),
    [
        ({}, ("catapult.user_id", "catapult.api_token", "catapult.api_secret")),
        ({"user_id": "u-x", "api_token": "t-x"}, ("catapult.api_secret",)),
    ],
)
def test_base_url_without_credentials_names_the_missing_secret(
    monkeypatch: pytest.MonkeyPatch, given: dict[str, str], missing: tuple[str, ...]
) -> None:
    monkeypatch.setenv("BRIDGE_CATAPULT__BASE_URL", "https://api.catapult.inetwork.com/v1")
    for key, value in given.items():
        monkeypatch.setenv(f"BRIDGE_CATAPULT__{key.upper()}", value)

    with pytest.raises(SettingsError) as caught:
        load_settings()

    for name in missing:
        assert name in str(caught.value)


def test_receiver_password_without_username_is_named(tmp_path: Path) -> None:
    path = _toml(tmp_path, f"[receiver]\npassword = '{RECEIVER_PASSWORD}'\n")

    with pytest.raises(SettingsError) as caught:
        load_settings(path)

    assert "receiver.username" in str(caught.value)
    assert RECEIVER_PASSWORD not in str(caught.value)


CREDENTIAL_VARIABLES = [
    "BRIDGE_RECEIVER__USERNAME",
    "BRIDGE_RECEIVER__PASSWORD",
    "BRIDGE_RECEIVER__PATH_TOKEN",
    "BRIDGE_CATAPULT__BASE_URL",
    "BRIDGE_CATAPULT__USER_ID",
    "BRIDGE_CATAPULT__API_TOKEN",
    "BRIDGE_CATAPULT__API_SECRET",
    "BRIDGE_CATAPULT__DASHBOARD_ACCOUNT_ID",
    "BRIDGE_CATAPULT__DASHBOARD_USER_NAME",
    "BRIDGE_CATAPULT__DASHBOARD_PASSWORD",
    "BRIDGE_BROKER__URL",
    "BRIDGE_SIMULATOR__USER_ID",
    "BRIDGE_SIMULATOR__API_TOKEN",
    "BRIDGE_SIMULATOR__API_SECRET",
    "BRIDGE_SIMULATOR__DASHBOARD_ACCOUNT_ID",
    "BRIDGE_SIMULATOR__DASHBOARD_USER_NAME",
    "BRIDGE_SIMULATOR__DASHBOARD_PASSWORD",
]


@pytest.mark.parametrize("value", ["", "   ", "\t"])
@pytest.mark.parametrize("variable", CREDENTIAL_VARIABLES)
def test_a_credential_set_but_blank_is_named(
    monkeypatch: pytest.MonkeyPatch, variable: str, value: str
) -> None:
    # An empty BRIDGE_RECEIVER__PATH_TOKEN= once turned authentication off: a credential that is
    # set must hold something, whatever the others say.
    monkeypatch.setenv("BRIDGE_RECEIVER__USERNAME", "catapult")
    monkeypatch.setenv("BRIDGE_RECEIVER__PASSWORD", RECEIVER_PASSWORD)
    monkeypatch.setenv(variable, value)
    name = variable.removeprefix("BRIDGE_").replace("__", ".").lower()

    with pytest.raises(SettingsError) as caught:
        load_settings()

    assert f"  {name}: must not be empty or blank" in str(caught.value)


def test_an_empty_path_token_alone_does_not_turn_authentication_off() -> None:
    with pytest.raises(SettingsError, match=r"receiver\.path_token: must not be empty"):
        load_settings(receiver={"path_token": ""})


def test_a_receiver_user_name_with_a_colon_is_named() -> None:
    # HTTP Basic cannot carry it: "a:b" + ":" + password splits at the first colon.
    with pytest.raises(SettingsError, match=r"receiver\.username: .*':'"):
        load_settings(receiver={"username": "a:b", "password": RECEIVER_PASSWORD})


def test_missing_config_file_is_named(tmp_path: Path) -> None:
    with pytest.raises(SettingsError, match=r"config file .*nowhere\.toml does not exist"):
        load_settings(tmp_path / "nowhere.toml")


def test_config_file_that_is_not_toml_is_named(tmp_path: Path) -> None:
    with pytest.raises(SettingsError, match="is not valid TOML"):
        load_settings(_toml(tmp_path, "[receiver\nport = 1\n"))


def test_a_bad_secret_is_not_echoed() -> None:
    # A secret given with a wrong shape is reported by name, never by value.
    with pytest.raises(SettingsError) as caught:
        load_settings(receiver={"username": "catapult", "password": [RECEIVER_PASSWORD]})

    assert "receiver.password" in str(caught.value)
    assert RECEIVER_PASSWORD not in str(caught.value)


# --- secrets never print ------------------------------------------------------------------------


def test_secrets_are_masked_in_repr_and_str(monkeypatch: pytest.MonkeyPatch) -> None:
    _secret_env(monkeypatch)

    settings = load_settings()

    assert settings.catapult.api_secret is not None
    assert settings.catapult.api_secret.get_secret_value() == API_SECRET
    for text in (repr(settings), str(settings), repr(settings.catapult), str(settings.broker)):
        for secret in ALL_SECRETS:
            assert secret not in text


def test_masked_url_hides_only_the_password() -> None:
    assert masked_url("amqp://bridge:pw@rabbit:5672/vh") == "amqp://bridge:***@rabbit:5672/vh"
    assert masked_url("http://user:pw@[::1]:8080/cb?x=1") == "http://user:***@[::1]:8080/cb?x=1"
    assert masked_url("https://user:pw@example.com/") == "https://user:***@example.com/"
    assert masked_url("amqp://rabbit:5672/") == "amqp://rabbit:5672/"
    assert masked_url("amqp://bridge@rabbit/") == "amqp://bridge@rabbit/"


def test_broker_display_url_is_masked() -> None:
    broker = BrokerSettings(url=f"amqp://bridge:{AMQP_PASSWORD}@rabbit:5672/")  # type: ignore[arg-type]

    assert broker.display_url == "amqp://bridge:***@rabbit:5672/"
    assert AMQP_PASSWORD not in repr(broker)


def test_a_cluster_is_given_as_a_list_of_node_urls(monkeypatch: pytest.MonkeyPatch) -> None:
    nodes = [f"amqp://bridge:{AMQP_PASSWORD}@rabbit-{n}:5672/" for n in (1, 2, 3)]
    monkeypatch.setenv("BRIDGE_BROKER__URLS", json.dumps(nodes))

    broker = load_settings().broker

    assert broker.addresses == tuple(nodes)
    assert broker.display_url == ", ".join(f"amqp://bridge:***@rabbit-{n}:5672/" for n in (1, 2, 3))
    assert AMQP_PASSWORD not in repr(broker)
    monkeypatch.delenv("BRIDGE_BROKER__URLS")
    assert load_settings(broker={"url": nodes[0]}).broker.addresses == (nodes[0],)


def test_broker_url_and_urls_together_are_refused() -> None:
    with pytest.raises(SettingsError, match=r"broker\.url .* or broker\.urls .*, not both"):
        load_settings(broker={"url": "amqp://a/", "urls": ["amqp://b/"]})
    with pytest.raises(SettingsError, match=r"broker\.urls\.1: must not be empty"):
        load_settings(broker={"urls": ["amqp://a/", " "]})


def test_catapult_secrets_are_secret_strings() -> None:
    catapult = CatapultSettings(
        base_url="http://127.0.0.1:9/v1",
        user_id="u-x",
        api_token="t-x",  # type: ignore[arg-type]
        api_secret=API_SECRET,  # type: ignore[arg-type]
    )

    assert API_SECRET not in repr(catapult)
    assert API_SECRET not in catapult.model_dump_json()


def test_bridge_config_prints_settings_without_secrets(
    monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str], restore_logging: None
) -> None:
    _secret_env(monkeypatch)

    assert main(["config"]) == 0

    out, err = capsys.readouterr()
    assert '"user_id": "u-someone"' in out
    assert '"base_url": "http://127.0.0.1:9/v1"' in out
    for secret in ALL_SECRETS:
        assert secret not in out
        assert secret not in err


def test_bridge_config_reads_the_file_and_flags(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], restore_logging: None
) -> None:
    path = _toml(tmp_path, "[receiver]\nport = 9001\n[log]\nlevel = 'DEBUG'\n")

    assert main(["config", "--config", str(path), "--log-level", "WARNING"]) == 0

    out = capsys.readouterr().out
    assert '"port": 9001' in out
    assert '"level": "WARNING"' in out


def test_bridge_config_file_from_environment(
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
    capsys: pytest.CaptureFixture[str],
    restore_logging: None,
) -> None:
    monkeypatch.setenv("BRIDGE_CONFIG_FILE", str(_toml(tmp_path, "[receiver]\nport = 9004\n")))

    assert main(["config"]) == 0

    assert '"port": 9004' in capsys.readouterr().out

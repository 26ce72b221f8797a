"""``config/bridge.toml`` and ``config/bridge.env.example`` cannot drift from the settings tree.

The TOML file documents every setting: each key is written with its default and a one-line comment
above it; keys without a default and secrets appear commented out. These tests walk the models, so
a field added to ``bridge/settings.py`` fails here until the file (and the README's configuration
table) shows it. The helpers at the top are shared with ``test_compose.py``.
"""

from __future__ import annotations

import os
import re
from collections.abc import Iterator
from dataclasses import dataclass
from operator import attrgetter
from pathlib import Path
from typing import Any, get_args

import pytest
from pydantic import BaseModel, SecretStr
from pydantic.fields import FieldInfo

from bridge.settings import Settings, load_settings

ROOT = Path(__file__).resolve().parent.parent
CONFIG_FILE = ROOT / "config" / "bridge.toml"
ENV_EXAMPLE = ROOT / "config" / "bridge.env.example"
README = ROOT / "README.md"

# Read by the command line itself (which file to load), not a setting of the tree.
CONFIG_FILE_VARIABLE = "BRIDGE_CONFIG_FILE"

_TABLE = re.compile(r"^\[([a-z0-9_.]+)\]\s*$")
_KEY = re.compile(r"^([a-z][a-z0-9_]*)\s*=")
_COMMENTED_KEY = re.compile(r"^#\s*([a-z][a-z0-9_]*)\s*=")


@dataclass(frozen=True)
class Leaf:
    """One setting: its path in the tree and its field."""

    path: tuple[str, ...]
    field: FieldInfo

    @property
    def dotted(self) -> str:
        return ".".join(self.path)

    @property
    def table(self) -> str:
        return ".".join(self.path[:-1])

    @property
    def key(self) -> str:
        return self.path[-1]

    @property
    def env_var(self) -> str:
        return "BRIDGE_" + "__".join(self.path).upper()

    @property
    def default(self) -> Any:
        return self.field.get_default(call_default_factory=True)

    @property
    def is_secret(self) -> bool:
        annotation = self.field.annotation
        return annotation is SecretStr or SecretStr in get_args(annotation)


def _section_model(field: FieldInfo) -> type[BaseModel] | None:
    annotation = field.annotation
    if isinstance(annotation, type) and issubclass(annotation, BaseModel):
        return annotation
    return None


def leaves(model: type[BaseModel] = Settings, prefix: tuple[str, ...] = ()) -> Iterator[Leaf]:
    """Every setting of ``model``, walking nested sections recursively."""
    for name, field in model.model_fields.items():
        section = _section_model(field)
        if section is None:
            yield Leaf((*prefix, name), field)
        else:
            yield from leaves(section, (*prefix, name))


def leaf_for_env_var(variable: str) -> Leaf | None:
    """The setting an environment variable sets, or None when it names no setting."""
    return {leaf.env_var: leaf for leaf in leaves()}.get(variable.upper())


def clear_bridge_environment(monkeypatch: pytest.MonkeyPatch) -> None:
    """Drop every BRIDGE_ variable of the surrounding shell, so only the test's own apply."""
    for name in list(os.environ):
        if name.upper().startswith("BRIDGE_"):
            monkeypatch.delenv(name)


def read_env_file(path: Path) -> dict[str, str]:
    """``KEY=VALUE`` lines of an environment file (blank lines and ``#`` comments skipped)."""
    variables: dict[str, str] = {}
    for line in path.read_text().splitlines():
        stripped = line.strip()
        if not stripped or stripped.startswith("#"):
            continue
        name, sep, value = stripped.partition("=")
        assert sep, f"{path.name}: not a KEY=VALUE line: {line!r}"
        variables[name.strip()] = value.strip()
    return variables


@dataclass(frozen=True)
class ConfigLine:
    table: str
    key: str
    is_commented: bool
    comment_above: str | None


def parse_config_lines(text: str) -> list[ConfigLine]:
    """Each key of the TOML file, set or commented out, with the comment line right above it."""
    found: list[ConfigLine] = []
    table = ""
    previous = ""
    for raw in text.splitlines():
        line = raw.strip()
        if match := _TABLE.match(line):
            table = match.group(1)
        elif match := _KEY.match(line):
            found.append(ConfigLine(table, match.group(1), False, _plain_comment(previous)))
        elif match := _COMMENTED_KEY.match(line):
            found.append(ConfigLine(table, match.group(1), True, _plain_comment(previous)))
        previous = line
    return found


def _plain_comment(line: str) -> str | None:
    """The text of a comment line that is not itself a commented-out key."""
    if not line.startswith("#") or _COMMENTED_KEY.match(line):
        return None
    return line.lstrip("#").strip() or None


@pytest.fixture(autouse=True)
def _clean_environment(monkeypatch: pytest.MonkeyPatch) -> None:
    clear_bridge_environment(monkeypatch)


def test_config_file_loads_and_sets_every_setting_to_its_default() -> None:
    settings = load_settings(CONFIG_FILE)

    wrong = {
        leaf.dotted: (attrgetter(leaf.dotted)(settings), leaf.default)
        for leaf in leaves()
        if attrgetter(leaf.dotted)(settings) != leaf.default
    }
    assert wrong == {}, "config/bridge.toml differs from the defaults (value, default)"


def test_config_file_shows_every_setting_once() -> None:
    lines = parse_config_lines(CONFIG_FILE.read_text())
    written = [(line.table, line.key) for line in lines]
    expected = [(leaf.table, leaf.key) for leaf in leaves()]

    assert sorted(set(expected) - set(written)) == [], "settings missing from config/bridge.toml"
    assert sorted(set(written) - set(expected)) == [], (
        "keys in config/bridge.toml that are no setting"
    )
    assert len(written) == len(set(written)), "a key appears twice in config/bridge.toml"


def test_secrets_and_settings_without_default_are_commented_out() -> None:
    commented = {
        (line.table, line.key): line.is_commented
        for line in parse_config_lines(CONFIG_FILE.read_text())
    }
    wrong = [
        leaf.dotted
        for leaf in leaves()
        if (leaf.table, leaf.key) in commented
        and commented[leaf.table, leaf.key] != (leaf.is_secret or leaf.default is None)
    ]
    assert wrong == [], "secrets and unset settings are commented out, everything else is set"


def test_every_key_has_a_one_line_comment_above_it() -> None:
    missing = [
        f"{line.table}.{line.key}"
        for line in parse_config_lines(CONFIG_FILE.read_text())
        if line.comment_above is None
    ]
    assert missing == [], "each key in config/bridge.toml needs a comment line right above it"


def test_commented_out_examples_are_valid_settings(tmp_path: Path) -> None:
    # Uncommenting every example at once (a real Catapult account, callback credentials...) must
    # still give valid settings, and a commented secret that has a default shows that default.
    uncommented = re.sub(r"(?m)^#\s*([a-z][a-z0-9_]*\s*=)", r"\1", CONFIG_FILE.read_text())
    path = tmp_path / "uncommented.toml"
    path.write_text(uncommented)

    settings = load_settings(path)

    assert not settings.catapult.is_embedded
    for leaf in leaves():
        if leaf.is_secret and leaf.default is not None:
            assert attrgetter(leaf.dotted)(settings) == leaf.default, leaf.dotted


def test_env_example_names_real_settings_and_loads(monkeypatch: pytest.MonkeyPatch) -> None:
    variables = read_env_file(ENV_EXAMPLE)
    unknown = [
        name
        for name in variables
        if name != CONFIG_FILE_VARIABLE and leaf_for_env_var(name) is None
    ]
    assert unknown == [], "config/bridge.env.example sets variables that are no setting"

    for name, value in variables.items():
        if name != CONFIG_FILE_VARIABLE:
            monkeypatch.setenv(name, value)
    settings = load_settings(CONFIG_FILE)

    # The example is for a real Catapult account: no embedded simulator.
    assert not settings.catapult.is_embedded
    assert settings.catapult.api_secret is not None


def test_readme_names_every_setting_and_its_variable() -> None:
    readme = README.read_text()
    missing = [
        name
        for leaf in leaves()
        for name in (f"`{leaf.dotted}`", f"`{leaf.env_var}`")
        if name not in readme
    ]
    assert missing == [], "the README's configuration table lacks these settings"

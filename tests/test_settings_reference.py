"""The README's settings tables are the ones the settings model generates (``make docs``)."""

from __future__ import annotations

from pathlib import Path

from bridge.settings_reference import BEGIN, END, render_tables, show_default, with_tables

ROOT = Path(__file__).resolve().parent.parent
README = ROOT / "README.md"
CONFIG = ROOT / "config" / "bridge.toml"


def test_the_readme_tables_are_generated_from_the_model() -> None:
    readme = README.read_text(encoding="utf-8")
    assert with_tables(readme, CONFIG.read_text(encoding="utf-8")) == readme, (
        "the README's settings tables differ from the settings model: run `make docs`"
    )


def test_a_new_setting_changes_the_tables() -> None:
    config = CONFIG.read_text(encoding="utf-8")
    readme = README.read_text(encoding="utf-8")
    tables = readme[readme.index(BEGIN) + len(BEGIN) : readme.index(END)]
    edited = readme.replace(tables, tables.replace("| `log.format` |", "| `log.formats` |"))
    assert with_tables(edited, config) == readme
    assert '| `log.level` | `BRIDGE_LOG__LEVEL` | `"INFO"` |' in render_tables(config)


def test_defaults_are_shown_as_an_environment_variable_would_carry_them() -> None:
    assert show_default(None) == "unset"
    assert show_default(True) == "`true`"
    assert show_default(2.0) == "`2.0`"
    assert show_default(("a", "b")) == '`["a", "b"]`'
    assert show_default(tuple(str(n) for n in range(10))) == "`0` … `9` (10 values)"

"""The JSON Schemas kept in ``schemas/`` are the ones the models generate, and they are usable."""

from __future__ import annotations

import json
from pathlib import Path

import jsonschema

from bridge.cli import main
from bridge.schemas import check_schemas, schema_models

SCHEMAS = Path(__file__).resolve().parent.parent / "schemas"


def test_kept_schemas_match_the_models() -> None:
    assert check_schemas(SCHEMAS) == [], "run `uv run --frozen bridge schemas` and commit schemas/"


def test_every_kept_schema_is_a_valid_json_schema() -> None:
    for stem in schema_models():
        schema = json.loads((SCHEMAS / f"{stem}.json").read_text(encoding="utf-8"))
        jsonschema.Draft202012Validator.check_schema(schema)


def test_a_plain_catapult_message_body_is_a_valid_send_command() -> None:
    schema = json.loads((SCHEMAS / "command-send.json").read_text(encoding="utf-8"))
    body = {"from": "+19195550100", "to": "+15555550123", "text": "hi", "media": None}
    jsonschema.validate(body, schema)


def test_check_fails_on_a_stale_directory(tmp_path: Path) -> None:
    assert main(["schemas", "--out", str(tmp_path)]) == 0
    (tmp_path / "command-send.json").write_text("{}\n", encoding="utf-8")
    assert main(["schemas", "--check", "--out", str(tmp_path)]) == 1

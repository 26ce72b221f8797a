"""JSON Schemas of the events the bridge publishes and the commands it consumes.

The schemas are generated from the pydantic models (each part exposes ``SCHEMA_MODELS``: file stem
-> model) and kept in ``schemas/`` so that consumers in other languages can validate against them
without running Python. ``bridge schemas`` rewrites them, with the AsyncAPI document that
refers to them (``bridge.asyncapi``, ``schemas/asyncapi.json``) and the receiver's OpenAPI
document (``bridge.receiver.openapi``, ``schemas/receiver-openapi.json``); ``bridge schemas
--check`` (run by the tests) fails when a model or a route changed and the files did not.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Literal

from pydantic import BaseModel

Mode = Literal["validation", "serialization"]


def schema_models() -> dict[str, tuple[type[BaseModel], Mode]]:
    """Every kept schema, with the mode it is rendered in.

    What the bridge publishes is described as it is written (serialization); what it consumes as
    it is accepted (validation: optional fields and aliases as a producer sees them).
    """
    from bridge.events import commands, receiver_events, results

    models: dict[str, tuple[type[BaseModel], Mode]] = {}
    sources: tuple[tuple[dict[str, type[BaseModel]], Mode], ...] = (
        (receiver_events.SCHEMA_MODELS, "serialization"),
        (results.SCHEMA_MODELS, "serialization"),
        (commands.SCHEMA_MODELS, "validation"),
    )
    for table, mode in sources:
        for stem, model in table.items():
            if stem in models:
                raise ValueError(f"two models claim the schema file {stem}.json")
            models[stem] = (model, mode)
    return models


def render(model: type[BaseModel], mode: Mode) -> str:
    schema = model.model_json_schema(mode=mode)
    schema = {"$schema": "https://json-schema.org/draft/2020-12/schema", **schema}
    return json.dumps(schema, indent=2, sort_keys=True, ensure_ascii=False) + "\n"


def rendered_files() -> dict[str, str]:
    """File name -> content of everything ``schemas/`` keeps."""
    from bridge import asyncapi
    from bridge.receiver import openapi

    files = {f"{stem}.json": render(model, mode) for stem, (model, mode) in schema_models().items()}
    files[asyncapi.FILE_NAME] = asyncapi.render()
    files[openapi.FILE_NAME] = openapi.render_openapi()
    return dict(sorted(files.items()))


def write_schemas(directory: Path) -> list[Path]:
    directory.mkdir(parents=True, exist_ok=True)
    written = []
    for name, text in rendered_files().items():
        path = directory / name
        path.write_text(text, encoding="utf-8")
        written.append(path)
    return written


def check_schemas(directory: Path) -> list[str]:
    """File names in ``directory`` that are missing or differ from the models."""
    stale = []
    for name, text in rendered_files().items():
        path = directory / name
        if not path.is_file() or path.read_text(encoding="utf-8") != text:
            stale.append(name)
    return stale

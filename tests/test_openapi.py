"""The receiver's OpenAPI document: generated from the code, kept in schemas/, true of a running
receiver.

The kept file must equal what ``bridge.receiver.openapi`` generates (a route, a model or an error
added without ``bridge schemas`` fails here), every route of the app must be described, and a
receiver on a free port with the real broker is driven from the document by schemathesis (its
CLI, in a subprocess, so the receiver keeps this test's event loop): every operation, with
requests generated from the schemas and against them (positive and negative), checked for no
5xx and answers as documented (status codes, content types, bodies, headers).

Inputs tried per run: about 1,000 cases over the 3 operations a receiver with a path token
authenticates (up to 40 per operation in each of schemathesis' coverage, fuzzing and stateful
phases; deterministic generation, no example database); the run prints how many it sent.
"""

from __future__ import annotations

import asyncio
import json
import sys
from collections.abc import Callable
from pathlib import Path

import jsonschema
import pytest
from aiohttp import web

from bridge.receiver import create_receiver_app
from bridge.receiver.openapi import FILE_NAME, describe, documented_settings, render_openapi
from bridge.settings import Settings
from tests.fixtures.receiver import MakeReceiver

KEPT = Path(__file__).resolve().parent.parent / "schemas" / FILE_NAME
MAX_EXAMPLES = 40
RUN_TIMEOUT_S = 240
CHECKS = (
    "not_a_server_error,status_code_conformance,content_type_conformance,"
    "response_schema_conformance,response_headers_conformance"
)


def test_the_kept_document_is_the_generated_one() -> None:
    assert KEPT.read_text(encoding="utf-8") == render_openapi(), (
        "the receiver's routes, models or errors changed: run `uv run --frozen bridge schemas` "
        "and commit schemas/"
    )


def test_every_route_is_described_and_every_schema_is_valid() -> None:
    document = json.loads(KEPT.read_text(encoding="utf-8"))
    app = create_receiver_app(documented_settings())
    served = {
        (route.method.lower(), route.resource.canonical)
        for route in app.router.routes()
        if route.method != "HEAD" and route.resource is not None
    }
    described = {(m, p) for p, ops in document["paths"].items() for m in ops}
    assert described == served
    assert document["openapi"].startswith("3.1.")
    for schema in document["components"]["schemas"].values():
        jsonschema.Draft202012Validator.check_schema(schema)


def test_a_route_without_a_description_fails_the_generation() -> None:
    app = create_receiver_app(documented_settings())

    async def undocumented(_request: web.Request) -> web.Response:
        return web.Response()

    app.router.add_get("/undocumented", undocumented)
    with pytest.raises(LookupError, match="/undocumented"):
        describe(app)


@pytest.mark.slow
async def test_a_running_receiver_answers_as_its_document_says(
    make_settings: Callable[..., Settings], make_receiver: MakeReceiver, tmp_path: Path
) -> None:
    settings = make_settings(
        receiver={"username": "catapult", "password": "fuzz-pass-7Qx", "path_token": "tok-4Kf"}
    )
    server = await make_receiver(settings)
    report = tmp_path / "report.json"
    config = tmp_path / "schemathesis.toml"
    # With a path token set, only {path}/{token} authenticates: fix the token, so that every
    # generated callback gets past authentication to the parser.
    config.write_text('[parameters]\n"path.token" = "tok-4Kf"\n', encoding="utf-8")
    process = await asyncio.create_subprocess_exec(
        sys.executable, "-m", "schemathesis.cli", "--config-file", str(config), "run", str(KEPT),
        "--exclude-path", settings.receiver.path,
        "--url", server.base_url,
        "--auth", "catapult:fuzz-pass-7Qx",
        "--checks", CHECKS,
        "--max-examples", str(MAX_EXAMPLES),
        "--generation-deterministic",
        "--request-timeout", "15",
        "--workers", "1",
        "--no-color",
        "--report", "json", "--report-json-path", str(report),
        stdout=asyncio.subprocess.PIPE,
        stderr=asyncio.subprocess.STDOUT,
        cwd=tmp_path,
    )  # fmt: skip
    try:
        out, _ = await asyncio.wait_for(process.communicate(), RUN_TIMEOUT_S)
    except TimeoutError:
        process.kill()
        await process.wait()
        raise
    text = out.decode(errors="replace")
    print(text[-3000:])  # the summary: operations, cases sent, failures
    assert process.returncode == 0, text[-6000:]

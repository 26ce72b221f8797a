"""The HTTP boundary the simulator's handlers share: the platform key, JSON in, responses out.

JSON bodies are decoded here and only here: a body that is not JSON is a 400 ``validation-error``
naming the problem, never a 500. Responses without a body carry no ``Content-Type`` (the official
Python SDK tries to decode any ``application/json`` answer, and an empty one would break it).
"""

from __future__ import annotations

from typing import Any

import orjson
from aiohttp import web

from bridge.simulator import errors
from bridge.simulator.platform import Platform

PLATFORM = web.AppKey("platform", Platform)
MAX_BODY_BYTES = 1024 * 1024


def platform_of(request: web.Request) -> Platform:
    return request.app[PLATFORM]


def origin_of(request: web.Request) -> str:
    """``scheme://host[:port]`` as the client reached us (for absolute ``Location`` URLs)."""
    return f"{request.scheme}://{request.host}"


async def read_json(request: web.Request) -> Any:
    raw = await request.read()
    if not raw.strip():
        raise errors.invalid_json("the body is empty")
    try:
        return orjson.loads(raw)
    except orjson.JSONDecodeError as exc:
        raise errors.invalid_json(str(exc)) from None


def json_response(
    body: Any, *, status: int = 200, headers: dict[str, str] | None = None
) -> web.Response:
    return web.Response(
        body=orjson.dumps(body),
        status=status,
        headers=headers,
        content_type="application/json",
    )


def empty_response(*, status: int = 200, location: str | None = None) -> web.Response:
    headers = {"Cache-Control": "no-cache"}
    if location is not None:
        headers["Location"] = location
    return web.Response(status=status, headers=headers)

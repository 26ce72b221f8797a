"""JSON problem documents (RFC 9457) for every refusal, and the middleware that guarantees them.

Each ``ReceiverError`` becomes ``application/problem+json`` with ``type``, ``title``, ``status``,
``detail`` and, for an invalid callback, ``errors``: one entry per bad field with the field's name,
what is wrong and the value as received (cut short). aiohttp's own refusals (no such route, wrong
method, body over the size limit) get the same shape. Anything unexpected is logged with its
traceback and answered 500 without details: that is a bug, never a reaction to input.
"""

from __future__ import annotations

import logging
from typing import Any

import orjson
from aiohttp import web
from aiohttp.typedefs import Handler

from bridge.receiver.errors import (
    BadCallback,
    CallbackRejected,
    MethodNotAllowed,
    PayloadTooLarge,
    ReceiverError,
    RequestTimeout,
)

log = logging.getLogger(__name__)

PROBLEM_JSON = "application/problem+json"
TYPE_PREFIX = "urn:catapult-bridge:problem:"


def problem_body(error: ReceiverError) -> dict[str, Any]:
    body: dict[str, Any] = {
        "type": TYPE_PREFIX + error.code,
        "title": error.title,
        "status": error.status,
        "detail": error.detail,
    }
    if isinstance(error, BadCallback):
        body["errors"] = [
            {"field": p.field, "problem": p.problem}
            | ({} if p.value is None else {"value": p.value})
            for p in error.problems
        ]
    return body


def _render(body: dict[str, Any]) -> bytes:
    """The problem as JSON, whatever it echoes (text that is not Unicode, a value of any type)."""
    try:
        return orjson.dumps(body, default=repr)
    except orjson.JSONEncodeError:
        return orjson.dumps(_escaped(body), default=repr)


def _escaped(value: Any) -> Any:
    """``value`` with every lone surrogate written as ``\\udxxx`` (a problem body is shallow)."""
    if isinstance(value, str):
        return value.encode("utf-8", "backslashreplace").decode("utf-8")
    if isinstance(value, dict):
        return {_escaped(k): _escaped(v) for k, v in value.items()}
    if isinstance(value, list | tuple):
        return [_escaped(v) for v in value]
    return value


def problem_response(error: ReceiverError) -> web.Response:
    return web.Response(
        status=error.status,
        body=_render(problem_body(error)),
        content_type=PROBLEM_JSON,
        headers=error.headers,
    )


def _from_http(exc: web.HTTPException, request: web.Request) -> ReceiverError:
    if isinstance(exc, web.HTTPMethodNotAllowed):
        allowed = ", ".join(sorted(exc.allowed_methods))
        return MethodNotAllowed(
            f"{request.method} is not allowed here; use {allowed}", headers={"Allow": allowed}
        )
    if isinstance(exc, web.HTTPRequestEntityTooLarge):
        return PayloadTooLarge(f"the body is too large: {exc.text}")
    error = CallbackRejected(exc.reason)
    error.status = exc.status
    error.code = exc.reason.lower().replace(" ", "-")
    error.title = exc.reason
    return error


async def _answer_and_close(request: web.Request, response: web.Response) -> web.Response:
    """Send the answer now and close: the rest of a trickling body is not waited for."""
    response.force_close()
    await response.prepare(request)
    await response.write_eof()
    if request.transport is not None:
        request.transport.close()  # after the answer is flushed
    return response


@web.middleware
async def problem_middleware(request: web.Request, handler: Handler) -> web.StreamResponse:
    try:
        return await handler(request)
    except RequestTimeout as exc:
        return await _answer_and_close(request, problem_response(exc))
    except ReceiverError as exc:
        return problem_response(exc)
    except web.HTTPException as exc:
        if exc.status < 400:
            raise
        return problem_response(_from_http(exc, request))
    except Exception:
        # The route's pattern, not the path: a path token must never reach a log line.
        route = request.match_info.route.resource
        where = route.canonical if route is not None else "(no route)"
        log.exception("unexpected error answering %s %s", request.method, where)
        return problem_response(
            ReceiverError("an unexpected error occurred; the callback was not stored")
        )

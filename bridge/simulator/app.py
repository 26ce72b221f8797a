"""Composition root of the simulator's HTTP application.

``create_simulator_app(platform)`` wires the routes of the v1 API (``/v1/...``) and of the control
endpoints (``/_sim/...``), the callback session's cleanup context, and four middlewares, outermost
first:

1. ``record``: logs every ``/v1`` request (method, path, query, status, duration; never headers or
   bodies) in the bounded request log, and adds the ``latency_ms`` fault to the answer.
2. ``problems``: turns a ``Problem``, aiohttp's own 404/405/413 and anything unexpected into
   Catapult's JSON error body with the request details; nothing ever answers with a traceback.
3. ``authenticate``: HTTP Basic API token and secret on ``/v1``, and the ``userId`` in the path;
   anything else is the real 401 ``access-denied``.
4. ``throttle``: the ``error_rate`` and ``echo_error_rate`` faults, then the 429 resource-family
   limits and storms.
"""

from __future__ import annotations

import asyncio
import html
import logging
import time
from collections.abc import AsyncIterator

from aiohttp import web
from aiohttp.typedefs import Handler

from bridge.simulator import account, applications, control, errors, messages, numbers
from bridge.simulator.errors import Problem
from bridge.simulator.platform import Platform
from bridge.simulator.ratelimit import resource_family
from bridge.simulator.store import RequestRecord
from bridge.simulator.wire import MAX_BODY_BYTES, PLATFORM, json_response, platform_of

log = logging.getLogger(__name__)

LIMITED_RESOURCES = frozenset({"messages", "phoneNumbers", "applications", "errors", "account"})


def _is_api(request: web.Request) -> bool:
    return request.path.startswith("/v1/")


def _request_details(request: web.Request) -> tuple[tuple[str, str], ...]:
    return (
        ("requestMethod", request.method),
        ("remoteAddress", request.remote or ""),
        ("requestPath", request.path.removeprefix("/v1/").lstrip("/")),
    )


def render(problem: Problem, request: web.Request) -> web.Response:
    return json_response(
        problem.body(_request_details(request)), status=problem.status, headers=problem.headers
    )


@web.middleware
async def record(request: web.Request, handler: Handler) -> web.StreamResponse:
    if not _is_api(request):
        return await handler(request)
    platform = platform_of(request)
    started = time.perf_counter()
    response = await handler(request)
    latency_ms = platform.injector.faults.latency_ms
    if latency_ms:
        await asyncio.sleep(latency_ms / 1000)
    platform.state.requests.append(
        RequestRecord(
            time_s=time.time(),
            method=request.method,
            path=request.path,
            query=request.query_string,
            status=response.status,
            duration_ms=(time.perf_counter() - started) * 1000,
            remote=request.remote or "",
        )
    )
    return response


@web.middleware
async def problems(request: web.Request, handler: Handler) -> web.StreamResponse:
    try:
        return await handler(request)
    except Problem as problem:
        return render(problem, request)
    except web.HTTPException as exc:
        if exc.status == 404:
            return render(errors.resource_not_found(), request)
        if exc.status == 405:
            return render(errors.method_not_allowed(request.method), request)
        if exc.status == 413:
            return render(
                Problem(
                    413,
                    "bad-request",
                    "validation-error",
                    f"The request body is larger than {MAX_BODY_BYTES} bytes",
                ),
                request,
            )
        return render(Problem(exc.status, "bad-request", "bad-request", exc.reason), request)
    except Exception:
        log.exception("unexpected error answering %s %s", request.method, request.path)
        return render(errors.internal_server_error(), request)


@web.middleware
async def authenticate(request: web.Request, handler: Handler) -> web.StreamResponse:
    if _is_api(request):
        platform = platform_of(request)
        if not platform.is_authorized(request.headers.get("Authorization")):
            raise errors.access_denied()
        parts = request.path.split("/")
        if len(parts) > 3 and parts[2] == "users" and parts[3] != platform.user_id:
            raise errors.access_denied()
    return await handler(request)


async def echo_page(request: web.Request) -> web.Response:
    """The ``echo_error_rate`` fault: a 500 page that prints the whole request back, headers and
    body included, as a debug backend does (HTML-escaped, as such pages are)."""
    body = (await request.read()).decode("utf-8", errors="replace")
    headers = "\n".join(f"{name}: {value}" for name, value in request.headers.items())
    echoed = f"{request.method} {request.path_qs}\n{headers}\n\n{body}"
    page = (
        f"<html><body><h1>500 Internal Server Error</h1><pre>{html.escape(echoed)}</pre>"
        f"<!-- raw: {echoed} --></body></html>"
    )
    return web.Response(status=500, text=page, content_type="text/html")


@web.middleware
async def throttle(request: web.Request, handler: Handler) -> web.StreamResponse:
    if not _is_api(request):
        return await handler(request)
    platform = platform_of(request)
    failure = platform.injector.request_failure()
    if failure is not None:
        raise failure
    if platform.injector.is_echo_error():
        return await echo_page(request)
    parts = request.path.split("/")
    if len(parts) > 4 and parts[4] in LIMITED_RESOURCES:
        family = resource_family(request.method, parts[4])
        if family is not None:
            if platform.injector.is_storm():
                raise platform.resource_limiter.reject(1.0)
            refused = platform.resource_limiter.admit(platform.limits, family)
            if refused is not None:
                raise refused
    return await handler(request)


async def _callbacks_ctx(app: web.Application) -> AsyncIterator[None]:
    dispatcher = app[PLATFORM].dispatcher
    await dispatcher.open()
    yield
    await dispatcher.close()


def create_simulator_app(platform: Platform) -> web.Application:
    app = web.Application(
        middlewares=[record, problems, authenticate, throttle], client_max_size=MAX_BODY_BYTES
    )
    app[PLATFORM] = platform
    app.cleanup_ctx.append(_callbacks_ctx)
    for table in (
        messages.routes,
        numbers.routes,
        applications.routes,
        account.routes,
        control.routes,
    ):
        app.add_routes(table)
    return app

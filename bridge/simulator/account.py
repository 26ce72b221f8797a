"""``/v1/users/{userId}/account`` and ``/errors``: the account and its user errors.

``GET /account`` is how SDKs checked credentials (401 when they are wrong). ``GET /errors`` lists
user errors newest first: callbacks that failed at their URL and fallback
(``callback-http-failure-status``) and inbound messages for numbers without an application
(``no-application-for-number``).
"""

from __future__ import annotations

from aiohttp import web

from bridge.simulator import errors
from bridge.simulator.errors import Problem
from bridge.simulator.paging import page_of
from bridge.simulator.wire import json_response, origin_of, platform_of

routes = web.RouteTableDef()


@routes.get("/v1/users/{user_id}/account")
async def get_account(request: web.Request) -> web.Response:
    return json_response({"balance": "100.00", "accountType": "pre-pay"})


@routes.get("/v1/users/{user_id}/errors")
async def list_errors(request: web.Request) -> web.Response:
    platform = platform_of(request)
    newest_first = list(reversed(platform.state.user_errors))
    base = f"{platform.user_url(origin_of(request))}/errors"
    page, link = page_of(newest_first, base, request.query)
    return json_response([error.resource() for error in page], headers={"Link": link})


@routes.get("/v1/users/{user_id}/errors/{error_id}")
async def get_error(request: web.Request) -> web.Response:
    error_id = request.match_info["error_id"]
    for error in platform_of(request).state.user_errors:
        if error.id == error_id:
            return json_response(error.resource())
    raise _user_error_not_found(error_id)


def _user_error_not_found(error_id: str) -> Problem:
    problem = errors.resource_not_found()
    return Problem(
        404,
        problem.category,
        "user-error-not-found",
        f"The user error {error_id} could not be found",
    )

"""``/v1/users/{userId}/phoneNumbers``: order, import from the Dashboard, get, list, update, delete.

A body with ``provider`` (``providerName`` ``bandwidth-dashboard`` and the Dashboard ``accountId``,
``userName``, ``password``) imports a number the Dashboard account holds; without it the number is
ordered (any valid E.164 number not yet on the account). Both answer 201 with an absolute
``Location`` ending in the ``n-`` id. Checks in order: the body, the application (404
``application-not-found``), 409 ``duplicate-number``, then for imports the Dashboard credentials
(401 ``provider-access-denied`` naming the account id, never the password) and 404
``number-not-found`` for a number the account does not hold. Only numbers on the account may send.
"""

from __future__ import annotations

from urllib.parse import unquote

from aiohttp import web

from bridge.simulator import errors
from bridge.simulator.paging import page_of
from bridge.simulator.payloads import parse_number, parse_number_update
from bridge.simulator.platform import Platform
from bridge.simulator.store import NumberRecord
from bridge.simulator.wire import (
    empty_response,
    json_response,
    origin_of,
    platform_of,
    read_json,
)

routes = web.RouteTableDef()


def _check_application(platform: Platform, application_id: str | None) -> None:
    if application_id is not None and application_id not in platform.state.applications:
        raise errors.application_not_found(application_id)


def _find(platform: Platform, id_or_number: str) -> NumberRecord:
    key = unquote(id_or_number)
    record = platform.state.find_number(key)
    if record is None:
        raise errors.number_not_found(key)
    return record


@routes.post("/v1/users/{user_id}/phoneNumbers")
async def create_number(request: web.Request) -> web.Response:
    platform = platform_of(request)
    number = parse_number(await read_json(request))
    _check_application(platform, number.application_id)
    existing = platform.state.number(number.number)
    if existing is not None:
        raise errors.duplicate_number(existing.id, number.number)
    provider = number.provider
    if provider is not None:
        if not platform.is_dashboard_login(
            provider.account_id, provider.user_name, provider.password
        ):
            raise errors.provider_access_denied(provider.account_id)
        if number.number not in platform.settings.dashboard_numbers:
            raise errors.number_not_found(number.number)
    record = platform.add_number(
        number.number,
        name=number.name,
        application_id=number.application_id,
        provider=None if provider is None else "bandwidth-dashboard",
    )
    record.fallback_number = number.fallback_number
    location = f"{platform.user_url(origin_of(request))}/phoneNumbers/{record.id}"
    return empty_response(status=201, location=location)


@routes.get("/v1/users/{user_id}/phoneNumbers")
async def list_numbers(request: web.Request) -> web.Response:
    platform = platform_of(request)
    query = request.query
    records = [
        record
        for record in platform.state.numbers.values()
        if (not query.get("applicationId") or record.application_id == query["applicationId"])
        and (not query.get("name") or record.name == query["name"])
        and (not query.get("numberState") or query["numberState"] == "enabled")
    ]
    user_url = platform.user_url(origin_of(request))
    page, link = page_of(records, f"{user_url}/phoneNumbers", query)
    return json_response([r.resource(user_url) for r in page], headers={"Link": link})


@routes.get("/v1/users/{user_id}/phoneNumbers/{number_id}")
async def get_number(request: web.Request) -> web.Response:
    platform = platform_of(request)
    record = _find(platform, request.match_info["number_id"])
    return json_response(record.resource(platform.user_url(origin_of(request))))


@routes.post("/v1/users/{user_id}/phoneNumbers/{number_id}")
async def update_number(request: web.Request) -> web.Response:
    platform = platform_of(request)
    record = _find(platform, request.match_info["number_id"])
    changes = parse_number_update(await read_json(request))
    _check_application(platform, changes.get("application_id"))
    for attribute, value in changes.items():
        setattr(record, attribute, value)
    return empty_response()


@routes.delete("/v1/users/{user_id}/phoneNumbers/{number_id}")
async def delete_number(request: web.Request) -> web.Response:
    platform = platform_of(request)
    record = _find(platform, request.match_info["number_id"])
    platform.state.remove_number(record)
    return empty_response()

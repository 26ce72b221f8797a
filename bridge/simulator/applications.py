"""``/v1/users/{userId}/applications``: create, get, list, update (POST), delete.

An application says where inbound messages (and the outbound events of its numbers' messages sent
without a ``callbackUrl``) are delivered: ``incomingMessageUrl``, ``incomingMessageFallbackUrl``
(only with an incoming URL), ``callbackHttpMethod`` (``get``/``post``, case-insensitive, stored
lower-case as the platform returned it) and ``incomingMessageUrlCallbackTimeout`` (1 to 10000
ms). Updates are POSTs to the resource and change only the fields sent (nulls are ignored).
Deleting an application detaches it from its numbers.
"""

from __future__ import annotations

from dataclasses import replace

from aiohttp import web

from bridge.simulator import errors
from bridge.simulator.paging import page_of
from bridge.simulator.payloads import check_application, parse_application
from bridge.simulator.platform import Platform
from bridge.simulator.store import ApplicationRecord, new_id
from bridge.simulator.wire import (
    empty_response,
    json_response,
    origin_of,
    platform_of,
    read_json,
)

routes = web.RouteTableDef()


def _find(platform: Platform, application_id: str) -> ApplicationRecord:
    record = platform.state.applications.get(application_id)
    if record is None:
        raise errors.application_not_found(application_id)
    return record


@routes.post("/v1/users/{user_id}/applications")
async def create_application(request: web.Request) -> web.Response:
    platform = platform_of(request)
    fields = parse_application(await read_json(request), is_update=False)
    record = ApplicationRecord(id=new_id("a"), **fields)
    check_application(record.incoming_message_url, record.incoming_message_fallback_url)
    platform.add_application(record)
    location = f"{platform.user_url(origin_of(request))}/applications/{record.id}"
    return empty_response(status=201, location=location)


@routes.get("/v1/users/{user_id}/applications")
async def list_applications(request: web.Request) -> web.Response:
    platform = platform_of(request)
    records = list(platform.state.applications.values())
    base = f"{platform.user_url(origin_of(request))}/applications"
    page, link = page_of(records, base, request.query)
    return json_response([record.resource() for record in page], headers={"Link": link})


@routes.get("/v1/users/{user_id}/applications/{application_id}")
async def get_application(request: web.Request) -> web.Response:
    record = _find(platform_of(request), request.match_info["application_id"])
    return json_response(record.resource())


@routes.post("/v1/users/{user_id}/applications/{application_id}")
async def update_application(request: web.Request) -> web.Response:
    platform = platform_of(request)
    record = _find(platform, request.match_info["application_id"])
    changes = parse_application(await read_json(request), is_update=True)
    updated = replace(record, **changes)
    check_application(updated.incoming_message_url, updated.incoming_message_fallback_url)
    platform.state.applications[record.id] = updated
    return empty_response()


@routes.delete("/v1/users/{user_id}/applications/{application_id}")
async def delete_application(request: web.Request) -> web.Response:
    platform = platform_of(request)
    record = _find(platform, request.match_info["application_id"])
    del platform.state.applications[record.id]
    for number in platform.state.numbers.values():
        if number.application_id == record.id:
            number.application_id = None
    return empty_response()

"""``/v1/users/{userId}/messages``: send (single and batch), get, list, redact.

A single send answers 201 with an empty body and an absolute ``Location``; a JSON array is a batch
(at most 50, else 403 ``multi-message-limit``) answered 202 with one ``accepted``/``error`` entry
per item in request order. Each message is checked in this order: its fields, that ``from`` is a
number on the account (401 ``number-access-denied``), then the send rate limits (403). Faults that
concern sends (storms, the gateway down, the ambiguous 503) are applied here; the rest are in the
middleware.
"""

from __future__ import annotations

from typing import Any

from aiohttp import web

from bridge.simulator import errors
from bridge.simulator.errors import Problem
from bridge.simulator.paging import (
    cursor_link,
    parse_choice,
    parse_date_time_ms,
    parse_int,
    parse_size,
)
from bridge.simulator.payloads import parse_message
from bridge.simulator.platform import Platform
from bridge.simulator.store import MessageQuery, MessageRecord, new_id
from bridge.simulator.wire import (
    empty_response,
    json_response,
    origin_of,
    platform_of,
    read_json,
)

MAX_BATCH = 50
DIRECTIONS = ("in", "out")
STATES = ("received", "queued", "sending", "sent", "error")
DELIVERY_STATES = ("waiting", "delivered", "not-delivered")
SORT_ORDERS = ("asc", "desc")

routes = web.RouteTableDef()


def _admit(platform: Platform, raw: object) -> MessageRecord:
    """Validate, authorise and rate-limit one message, then accept it; raise its ``Problem``.

    Every refusal is counted by its code (``GET /_sim/refusals``).
    """
    try:
        return _admit_one(platform, raw)
    except Problem as problem:
        platform.state.send_refusals[problem.code] += 1
        raise


def _admit_one(platform: Platform, raw: object) -> MessageRecord:
    request = parse_message(raw)
    if platform.state.number(request.from_) is None:
        raise errors.number_access_denied(platform.user_id, request.from_)
    limits = platform.limits
    if platform.injector.is_storm():
        raise errors.message_rate_limit(
            limits.account_limit_code,
            limit_per_s=limits.account_messages_per_s or 1.0,
            rate=(limits.account_messages_per_s or 1.0) * 1.1,
        )
    refused = platform.message_limiter.admit(limits, request.from_)
    if refused is not None:
        raise refused
    return platform.accept_outbound(request)


@routes.post("/v1/users/{user_id}/messages")
async def send_messages(request: web.Request) -> web.Response:
    platform = platform_of(request)
    body = await read_json(request)
    if platform.injector.is_gateway_down():
        raise errors.message_gateway_unavailable(new_id("m"))
    if isinstance(body, list):
        return _send_batch(request, platform, body)
    record = _admit(platform, body)
    if platform.injector.is_ambiguous():
        raise errors.message_gateway_unavailable(record.id)
    lost = _lost_answer(platform)
    if lost is not None:
        return lost
    return empty_response(status=201, location=platform.message_uri(record.id, origin_of(request)))


def _send_batch(request: web.Request, platform: Platform, items: list[Any]) -> web.Response:
    if len(items) > MAX_BATCH:
        raise errors.multi_message_limit(len(items), MAX_BATCH)
    if not items:
        raise errors.validation_error("The multi message request must contain at least 1 message")
    origin = origin_of(request)
    results: list[dict[str, Any]] = []
    first_id: str | None = None
    for item in items:
        try:
            record = _admit(platform, item)
        except Problem as problem:
            results.append({"result": "error", "error": problem.body()})
            continue
        first_id = first_id or record.id
        results.append({"result": "accepted", "location": platform.message_uri(record.id, origin)})
    if first_id is not None and platform.injector.is_ambiguous():
        raise errors.message_gateway_unavailable(first_id)
    lost = _lost_answer(platform) if first_id is not None else None
    if lost is not None:
        return lost
    return json_response(results, status=202)


_PROXY_PAGES = {502: "Bad Gateway", 504: "Gateway Timeout"}


def _lost_answer(platform: Platform) -> web.Response | None:
    """The ``lost_answer_rate`` fault: a plain server error for a send that was carried out.

    500 and 503 come with Catapult's own JSON body (no hint that the message exists); 502 and
    504 as the HTML page of a proxy in front of it.
    """
    status = platform.injector.lost_answer()
    if status is None:
        return None
    if status in _PROXY_PAGES:
        title = f"{status} {_PROXY_PAGES[status]}"
        page = f"<html><head><title>{title}</title></head><body><h1>{title}</h1></body></html>"
        return web.Response(status=status, text=page, content_type="text/html")
    problem = errors.internal_server_error() if status == 500 else errors.service_unavailable()
    raise problem


@routes.get("/v1/users/{user_id}/messages/{message_id}")
async def get_message(request: web.Request) -> web.Response:
    message_id = request.match_info["message_id"]
    record = platform_of(request).state.messages.get(message_id)
    if record is None:
        raise errors.message_not_found(message_id)
    return json_response(record.resource())


@routes.patch("/v1/users/{user_id}/messages/{message_id}")
async def redact_message(request: web.Request) -> web.Response:
    message_id = request.match_info["message_id"]
    record = platform_of(request).state.messages.get(message_id)
    if record is None:
        raise errors.message_not_found(message_id)
    body = await read_json(request)
    if body != {"text": ""}:
        raise errors.validation_error(
            'A message can only be redacted with exactly {"text": ""}', ("messageId", message_id)
        )
    record.text = ""
    return empty_response()


@routes.get("/v1/users/{user_id}/messages")
async def list_messages(request: web.Request) -> web.Response:
    platform = platform_of(request)
    query = request.query
    sort_order = parse_choice(query, "sortOrder", SORT_ORDERS) or "desc"
    filters = MessageQuery(
        from_=query.get("from") or None,
        to=query.get("to") or None,
        direction=parse_choice(query, "direction", DIRECTIONS),
        state=parse_choice(query, "state", STATES),
        delivery_state=parse_choice(query, "deliveryState", DELIVERY_STATES),
        from_ms=parse_date_time_ms(query, "fromDateTime"),
        to_ms=parse_date_time_ms(query, "toDateTime"),
        sort_key_lt=parse_int(query, "sortKeyLT"),
        sort_key_gt=parse_int(query, "sortKeyGT"),
        descending=sort_order == "desc",
        size=parse_size(query),
    )
    page = platform.state.query_messages(filters)
    headers = {}
    if len(page) == filters.size:
        headers["Link"] = cursor_link(
            f"{platform.user_url(origin_of(request))}/messages",
            query,
            cursor_name="sortKeyLT" if filters.descending else "sortKeyGT",
            cursor=page[-1].sort_key,
            size=filters.size,
        )
    return json_response([record.resource() for record in page], headers=headers)

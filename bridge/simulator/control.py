"""Control endpoints under ``/_sim`` (JSON, no authentication): inspect, steer and reset.

Inspection (``GET``, newest last, ``?limit=N`` keeps the last N): ``/_sim/requests``,
``/_sim/messages``, ``/_sim/numbers``, ``/_sim/applications``, ``/_sim/callbacks`` (every attempt
with its outcome; ``?messageId=`` filters), ``/_sim/errors`` (user errors), ``/_sim/health``;
``/_sim/refusals``: sends refused since the start or the last reset, by error code (a batch's
items each count), e.g. ``{"message-rate-limit": 3}``.

Steering:

- ``POST /_sim/inbound`` ``{"from", "to", "text", "media": [...]}``: an SMS/MMS from the network
  to a number on the account, delivered to its application; 201 with the message, 404 if ``to``
  is not on the account.
- ``POST /_sim/numbers`` ``{"number", "applicationId"?, "name"?}``: put a number on the account.
- ``POST /_sim/applications``: body as ``POST /v1/.../applications``; 201 with the application.
- ``PUT /_sim/destinations/{number}`` ``{"outcome": "delivered"|"not-delivered"|"error",
  "deliveryCode": 720}``: how messages to that number end; ``DELETE`` restores "delivered".
- ``GET|PUT|DELETE /_sim/faults`` and ``/_sim/limits``: ``PUT`` changes only the fields sent
  (names as in ``SimulatorSettings``), ``DELETE`` switches every fault or limit off. Answer: the
  current set.
- ``POST /_sim/callbacks/wait`` ``{"count": 1, "messageId"?, "timeoutMs": 5000}``: wait for
  attempts; 200 with them, 408 when they did not come in time.
- ``POST /_sim/idle`` ``{"timeoutMs": 5000}``: wait until no callback is in flight.
- ``POST /_sim/reset``: as freshly started (data cleared, start-time faults and limits).
"""

from __future__ import annotations

from typing import Any, TypeVar, get_args

from aiohttp import web
from pydantic import BaseModel, ValidationError

from bridge.simulator import errors
from bridge.simulator.errors import Problem
from bridge.simulator.events import Outcome, OutcomeKind
from bridge.simulator.faults import Faults
from bridge.simulator.paging import natural
from bridge.simulator.payloads import check_application, parse_application
from bridge.simulator.ratelimit import Limits
from bridge.simulator.store import ApplicationRecord, CallbackAttempt, new_id
from bridge.simulator.wire import empty_response, json_response, platform_of, read_json

routes = web.RouteTableDef()

M = TypeVar("M", bound=BaseModel)


_URL_FIELDS = (
    "callbackUrl",
    "fallbackUrl",
    "incomingMessageUrl",
    "incomingMessageFallbackUrl",
    "incomingCallUrl",
    "incomingCallFallbackUrl",
)


def _masked(request: web.Request, resource: dict[str, Any]) -> dict[str, Any]:
    """A resource with the secrets of its callback URLs masked (inspection output)."""
    shown = platform_of(request).shown_url
    return {k: shown(v) if k in _URL_FIELDS and v else v for k, v in resource.items()}


def _limit(request: web.Request, items: list[Any]) -> list[Any]:
    raw = request.query.get("limit")
    if raw is None:
        return items
    limit = natural(raw)
    if limit is None:
        raise errors.validation_error(f"limit must be a number, not {raw!r}")
    return items[-limit:] if limit else []


async def _object(request: web.Request) -> dict[str, Any]:
    body = await read_json(request)
    if not isinstance(body, dict):
        raise errors.validation_error("The control request body must be a JSON object")
    return body


def _string(body: dict[str, Any], name: str) -> str:
    value = body.get(name)
    if not isinstance(value, str) or not value:
        raise errors.validation_error(f"'{name}' must be a non-empty string")
    return value


def _optional_string(body: dict[str, Any], name: str) -> str | None:
    return None if body.get(name) is None else _string(body, name)


def _timeout_s(body: dict[str, Any]) -> float:
    value = body.get("timeoutMs", 5000)
    if isinstance(value, bool) or not isinstance(value, int | float) or value <= 0:
        raise errors.validation_error("'timeoutMs' must be a positive number")
    return float(value) / 1000


def _merge(current: M, changes: dict[str, Any]) -> M:
    try:
        return type(current).model_validate({**current.model_dump(), **changes})
    except ValidationError as exc:
        problems = "; ".join(
            f"{'.'.join(str(p) for p in e['loc'])}: {e['msg']}" for e in exc.errors()
        )
        raise errors.validation_error(problems) from None


@routes.get("/_sim/health")
async def health(request: web.Request) -> web.Response:
    return json_response({"status": "ok"})


@routes.get("/_sim/requests")
async def list_requests(request: web.Request) -> web.Response:
    state = platform_of(request).state
    return json_response(_limit(request, [r.as_dict() for r in state.requests]))


@routes.get("/_sim/refusals")
async def list_refusals(request: web.Request) -> web.Response:
    return json_response(dict(platform_of(request).state.send_refusals))


@routes.get("/_sim/messages")
async def list_messages(request: web.Request) -> web.Response:
    state = platform_of(request).state
    resources = [_masked(request, m.resource()) for m in state.messages.values()]
    return json_response(_limit(request, resources))


@routes.get("/_sim/numbers")
async def list_numbers(request: web.Request) -> web.Response:
    platform = platform_of(request)
    user_url = platform.user_url()
    return json_response([n.resource(user_url) for n in platform.state.numbers.values()])


@routes.post("/_sim/numbers")
async def add_number(request: web.Request) -> web.Response:
    platform = platform_of(request)
    body = await _object(request)
    number = _string(body, "number")
    application_id = _optional_string(body, "applicationId")
    existing = platform.state.number(number)
    if existing is not None:
        raise errors.duplicate_number(existing.id, number)
    if application_id is not None and application_id not in platform.state.applications:
        raise errors.application_not_found(application_id)
    record = platform.add_number(
        number, name=_optional_string(body, "name"), application_id=application_id
    )
    return json_response(record.resource(platform.user_url()), status=201)


@routes.get("/_sim/applications")
async def list_applications(request: web.Request) -> web.Response:
    apps = platform_of(request).state.applications.values()
    return json_response([_masked(request, a.resource()) for a in apps])


@routes.post("/_sim/applications")
async def add_application(request: web.Request) -> web.Response:
    body = await _object(request)
    body.setdefault("name", "simulator application")
    record = ApplicationRecord(id=new_id("a"), **parse_application(body, is_update=False))
    check_application(record.incoming_message_url, record.incoming_message_fallback_url)
    platform_of(request).add_application(record)
    return json_response(_masked(request, record.resource()), status=201)


@routes.get("/_sim/callbacks")
async def list_callbacks(request: web.Request) -> web.Response:
    attempts: list[CallbackAttempt] = list(platform_of(request).state.callback_attempts)
    message_id = request.query.get("messageId")
    if message_id:
        attempts = [a for a in attempts if a.message_id == message_id]
    return json_response(_limit(request, [a.as_dict() for a in attempts]))


@routes.post("/_sim/callbacks/wait")
async def wait_for_callbacks(request: web.Request) -> web.Response:
    body = await _object(request)
    count = body.get("count", 1)
    if isinstance(count, bool) or not isinstance(count, int) or count < 1:
        raise errors.validation_error("'count' must be a positive integer")
    message_id = _optional_string(body, "messageId")
    try:
        attempts = await platform_of(request).dispatcher.wait_for(
            count,
            lambda a: message_id is None or a.message_id == message_id,
            _timeout_s(body),
        )
    except TimeoutError as exc:
        raise Problem(408, "timeout", "callbacks-not-seen", str(exc)) from None
    return json_response([a.as_dict() for a in attempts])


@routes.post("/_sim/idle")
async def wait_idle(request: web.Request) -> web.Response:
    body = await _object(request)
    try:
        await platform_of(request).dispatcher.wait_idle(_timeout_s(body))
    except TimeoutError:
        raise Problem(408, "timeout", "callbacks-in-flight", "callbacks still in flight") from None
    return json_response({"pending": 0})


@routes.get("/_sim/errors")
async def list_user_errors(request: web.Request) -> web.Response:
    state = platform_of(request).state
    return json_response(_limit(request, [e.resource() for e in state.user_errors]))


@routes.post("/_sim/inbound")
async def inject_inbound(request: web.Request) -> web.Response:
    body = await _object(request)
    media = body.get("media") or []
    if isinstance(media, str):
        media = [media]
    if not isinstance(media, list) or not all(isinstance(m, str) for m in media):
        raise errors.validation_error("'media' must be a URL or a list of URLs")
    text = body.get("text", "")
    if not isinstance(text, str):
        raise errors.validation_error("'text' must be a string")
    record = platform_of(request).inject_inbound(
        from_=_string(body, "from"), to=_string(body, "to"), text=text, media=tuple(media)
    )
    return json_response(record.resource(), status=201)


@routes.put("/_sim/destinations/{number}")
async def set_destination(request: web.Request) -> web.Response:
    body = await _object(request)
    kind = body.get("outcome", "delivered")
    kinds = get_args(OutcomeKind)
    if kind not in kinds:
        raise errors.validation_error(f"'outcome' must be one of {', '.join(kinds)}")
    code = body.get("deliveryCode", 0 if kind == "delivered" else 720)
    if isinstance(code, bool) or not isinstance(code, int):
        raise errors.validation_error("'deliveryCode' must be an integer")
    outcome = Outcome(kind=kind, delivery_code=code)
    platform_of(request).outcomes[request.match_info["number"]] = outcome
    return json_response(
        {"number": request.match_info["number"], "outcome": kind, "deliveryCode": code}
    )


@routes.delete("/_sim/destinations/{number}")
async def clear_destination(request: web.Request) -> web.Response:
    platform_of(request).outcomes.pop(request.match_info["number"], None)
    return empty_response(status=204)


@routes.get("/_sim/faults")
async def get_faults(request: web.Request) -> web.Response:
    return json_response(platform_of(request).injector.faults.model_dump(mode="json"))


@routes.put("/_sim/faults")
async def put_faults(request: web.Request) -> web.Response:
    platform = platform_of(request)
    platform.set_faults(_merge(platform.injector.faults, await _object(request)))
    return json_response(platform.injector.faults.model_dump(mode="json"))


@routes.delete("/_sim/faults")
async def clear_faults(request: web.Request) -> web.Response:
    platform = platform_of(request)
    platform.set_faults(Faults())
    return json_response(platform.injector.faults.model_dump(mode="json"))


@routes.get("/_sim/limits")
async def get_limits(request: web.Request) -> web.Response:
    return json_response(platform_of(request).limits.model_dump(mode="json"))


@routes.put("/_sim/limits")
async def put_limits(request: web.Request) -> web.Response:
    platform = platform_of(request)
    platform.set_limits(_merge(platform.limits, await _object(request)))
    return json_response(platform.limits.model_dump(mode="json"))


@routes.delete("/_sim/limits")
async def clear_limits(request: web.Request) -> web.Response:
    platform = platform_of(request)
    platform.set_limits(Limits.off())
    return json_response(platform.limits.model_dump(mode="json"))


@routes.post("/_sim/reset")
async def reset(request: web.Request) -> web.Response:
    await platform_of(request).reset()
    return empty_response(status=204)

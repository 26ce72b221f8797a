"""``CatapultClient`` against the simulator over real sockets: every operation, every error class.

Each test gets its own simulator (rate limits off unless the test switches them on). Every error
the client raises here is rendered with ``str``, ``repr`` and its traceback and checked for the API
secret and the Dashboard password.
"""

from __future__ import annotations

import asyncio
import re
import time
import traceback
from collections.abc import AsyncIterator, Awaitable
from datetime import UTC, datetime, timedelta
from typing import Any, TypeVar

import pytest
from pydantic import SecretStr

from bridge.catapult import (
    AmbiguousError,
    AuthError,
    BadRequestError,
    CatapultClient,
    CatapultError,
    ConflictError,
    ForbiddenError,
    Message,
    NotFoundError,
    OutboundMessage,
    RateLimitedError,
    RateLimitScope,
    ServerError,
)
from bridge.settings import CatapultSettings, SimulatorSettings
from bridge.simulator import Simulator
from tests.fixtures.simulator import MakeSimulator

DEADLINE_S = 5.0
SENDER = "+19195550100"
OTHER_SENDER = "+19195550101"
RECIPIENT = "+19195550199"
MESSAGE_ID = re.compile(r"^m-[a-z2-7]{23}$")
NUMBER_ID = re.compile(r"^n-[a-z2-7]{23}$")
APPLICATION_ID = re.compile(r"^a-[a-z2-7]{23}$")
SETTINGS = SimulatorSettings()
SECRETS = (
    SETTINGS.api_secret.get_secret_value(),
    SETTINGS.dashboard_password.get_secret_value(),
)
DASHBOARD: dict[str, Any] = {
    "account_id": SETTINGS.dashboard_account_id,
    "user_name": SETTINGS.dashboard_user_name,
    "password": SETTINGS.dashboard_password,
}
DASHBOARD_NUMBER = SETTINGS.dashboard_numbers[5]

E = TypeVar("E", bound=CatapultError)
T = TypeVar("T")


def assert_secret_free(error: BaseException) -> None:
    rendered = str(error) + repr(error) + "".join(traceback.format_exception(error))
    for secret in SECRETS:
        assert secret not in rendered


async def call(awaitable: Awaitable[T]) -> T:
    return await asyncio.wait_for(awaitable, DEADLINE_S)


async def fails(expected: type[E], awaitable: Awaitable[object]) -> E:
    """Await ``awaitable`` (with a deadline), which must raise exactly ``expected``."""
    with pytest.raises(CatapultError) as caught:
        await call(awaitable)
    assert type(caught.value) is expected, repr(caught.value)
    assert_secret_free(caught.value)
    assert isinstance(caught.value, expected)
    return caught.value


def message(text: str = "hello", *, from_: str = SENDER, **fields: Any) -> OutboundMessage:
    return OutboundMessage(from_=from_, to=RECIPIENT, text=text, **fields)


@pytest.fixture
async def client(simulator: Simulator) -> AsyncIterator[CatapultClient]:
    simulator.add_number(SENDER)
    simulator.add_number(OTHER_SENDER)
    async with CatapultClient.for_simulator(simulator.settings, base_url=simulator.base_url) as c:
        yield c


async def collect(iterator: AsyncIterator[Message]) -> list[Message]:
    async def drain() -> list[Message]:
        return [item async for item in iterator]

    return await call(drain())


# -- messages ----------------------------------------------------------------------------------


async def test_send_and_get_a_message(client: CatapultClient, simulator: Simulator) -> None:
    ref = await call(
        client.send_message(
            message(
                "hi there",
                tag="cbr1:cmd-1",
                receipt_requested="all",
                callback_url="http://127.0.0.1:9/cb",
                callback_http_method="GET",
                callback_timeout=2000,
                fallback_url="http://127.0.0.1:9/fb",
            )
        )
    )
    assert MESSAGE_ID.match(ref.id)
    assert ref.location == f"{simulator.base_url}/users/{simulator.user_id}/messages/{ref.id}"
    assert ref.id in simulator.state.messages

    got = await call(client.get_message(ref.id))
    assert (got.id, got.from_, got.to, got.text, got.tag) == (
        ref.id,
        SENDER,
        RECIPIENT,
        "hi there",
        "cbr1:cmd-1",
    )
    assert got.direction == "out"
    assert got.receipt_requested == "all"
    assert got.callback_url == "http://127.0.0.1:9/cb"
    assert got.time is not None


async def test_get_an_unknown_message(client: CatapultClient) -> None:
    error = await fails(NotFoundError, client.get_message("m-aaaaaaaaaaaaaaaaaaaaaaa"))
    assert (error.status, error.code) == (404, "message-not-found")
    assert error.detail("messageId") == "m-aaaaaaaaaaaaaaaaaaaaaaa"


@pytest.mark.parametrize(
    ("outbound", "code"),
    [
        (OutboundMessage(from_=SENDER, to=RECIPIENT), "missing-property"),
        (OutboundMessage(from_=SENDER, to=" ", text="x"), "blank-property"),
        (message("x" * 2049), "validation-error"),
    ],
)
async def test_bad_messages_are_bad_requests(
    client: CatapultClient, outbound: OutboundMessage, code: str
) -> None:
    error = await fails(BadRequestError, client.send_message(outbound))
    assert (error.status, error.code, error.category) == (400, code, "bad-request")


async def test_sending_from_a_number_not_on_the_account(client: CatapultClient) -> None:
    error = await fails(AuthError, client.send_message(message(from_="+19195550142")))
    assert (error.status, error.code) == (401, "number-access-denied")
    assert "+19195550142" in str(error)


async def test_a_batch_gives_one_result_per_message_in_order(
    client: CatapultClient, simulator: Simulator
) -> None:
    items = await call(
        client.send_messages(
            [
                message("one"),
                message("two", from_="+19195550142"),
                message("three", from_=OTHER_SENDER),
                message("x" * 2049),
                message("five"),
            ]
        )
    )
    assert [item.is_accepted for item in items] == [True, False, True, False, True]
    refs = [item.ref for item in items if item.ref is not None]
    assert all(MESSAGE_ID.match(ref.id) for ref in refs)
    texts = [simulator.state.messages[ref.id].text for ref in refs]
    assert texts == ["one", "three", "five"]
    assert isinstance(items[1].error, AuthError)
    assert items[1].error.code == "number-access-denied"
    assert isinstance(items[3].error, BadRequestError)
    assert items[3].error.code == "validation-error"
    for item in items:
        if item.error is not None:
            assert_secret_free(item.error)


async def test_a_batch_over_50_is_refused_before_any_request(
    client: CatapultClient, simulator: Simulator
) -> None:
    error = await fails(ForbiddenError, client.send_messages([message()] * 51))
    assert (error.status, error.code) == (None, "multi-message-limit")
    assert "at most 50" in str(error)
    assert list(simulator.state.requests) == []
    assert await call(client.send_messages([])) == []
    assert list(simulator.state.requests) == []


async def test_a_batch_of_exactly_50(client: CatapultClient) -> None:
    items = await call(client.send_messages([message(f"n{i}") for i in range(50)]))
    assert len(items) == 50
    assert all(item.is_accepted for item in items)


async def test_listing_follows_next_links_and_stops_on_an_empty_page(
    client: CatapultClient, simulator: Simulator
) -> None:
    sent = [(await call(client.send_message(message(f"m{i}")))).id for i in range(4)]
    await call(client.send_message(message("other", from_=OTHER_SENDER)))
    before = len(simulator.state.requests)

    listed = await collect(client.list_messages(from_=SENDER, size=2))
    assert [m.id for m in listed] == list(reversed(sent))  # newest first
    # Two full pages, each with a next link, then the empty page that ends the listing.
    pages = [r for r in list(simulator.state.requests)[before:] if r.method == "GET"]
    assert len(pages) == 3
    assert "sortKeyLT=" in pages[1].query

    ascending = await collect(client.list_messages(from_=SENDER, sort_order="asc", size=3))
    assert [m.id for m in ascending] == sent


async def test_listing_filters(client: CatapultClient) -> None:
    ref = await call(client.send_message(message("tagged", tag="cbr1:find-me")))
    await call(client.send_message(message("other", from_=OTHER_SENDER)))
    now = datetime.now(UTC)

    recent = await collect(
        client.list_messages(
            from_=SENDER,
            from_date_time=now - timedelta(minutes=1),
            to_date_time=now + timedelta(minutes=1),
            direction="out",
        )
    )
    assert [(m.id, m.tag) for m in recent] == [(ref.id, "cbr1:find-me")]
    assert await collect(client.list_messages(from_date_time=now + timedelta(minutes=5))) == []
    assert await collect(client.list_messages(to="+19195550111")) == []
    assert len(await collect(client.list_messages(to=RECIPIENT, size=1))) == 2
    assert len(await collect(client.list_messages(from_date_time="2000-01-01"))) == 2


async def test_a_bad_list_filter_is_a_bad_request(client: CatapultClient) -> None:
    error = await fails(BadRequestError, anext(aiter(client.list_messages(direction="sideways"))))
    assert error.code == "validation-error"


# -- rate limits -------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("limits", "code", "scope", "number"),
    [
        ({"account_messages_per_s": 0.1}, "message-rate-limit", RateLimitScope.ACCOUNT, None),
        (
            {"account_messages_per_s": 0.1, "account_limit_code": "message-rate-limit-overall"},
            "message-rate-limit-overall",
            RateLimitScope.ACCOUNT,
            None,
        ),
        (
            {"number_messages_per_s": 0.1},
            "message-rate-limit-per-tn",
            RateLimitScope.NUMBER,
            SENDER,
        ),
    ],
)
async def test_message_rate_limits(
    client: CatapultClient,
    simulator: Simulator,
    limits: dict[str, Any],
    code: str,
    scope: RateLimitScope,
    number: str | None,
) -> None:
    simulator.set_limits(**limits)  # one message per 10 s
    await call(client.send_message(message("first")))
    error = await fails(RateLimitedError, client.send_message(message("second")))
    assert (error.status, error.category, error.code) == (403, "limit", code)
    assert (error.scope, error.number, error.retry_at) == (scope, number, None)


async def test_rate_limits_inside_a_batch_are_per_item(
    client: CatapultClient, simulator: Simulator
) -> None:
    simulator.set_limits(number_messages_per_s=0.1)
    items = await call(
        client.send_messages(
            [message("a"), message("b"), message("c", from_=OTHER_SENDER), message("d")]
        )
    )
    assert [item.is_accepted for item in items] == [True, False, True, False]
    for index in (1, 3):
        error = items[index].error
        assert isinstance(error, RateLimitedError)
        assert (error.scope, error.number, error.code) == (
            RateLimitScope.NUMBER,
            SENDER,
            "message-rate-limit-per-tn",
        )


async def test_429_gives_the_reset_time(client: CatapultClient, simulator: Simulator) -> None:
    simulator.set_limits(resource_requests_per_s=0.01)  # burst 1, then one per 100 s
    ref = await call(client.send_message(message()))  # sends are not in a 429 family
    await call(client.get_message(ref.id))
    started = time.time()
    error = await fails(RateLimitedError, client.get_message(ref.id))
    assert (error.status, error.category, error.code) == (
        429,
        "too-many-requests",
        "rate-limit-reached",
    )
    assert error.scope is RateLimitScope.RESOURCE
    assert error.retry_at is not None
    assert started + 90 < error.retry_at < started + 110


async def test_a_rate_limit_storm(client: CatapultClient, simulator: Simulator) -> None:
    simulator.set_faults(rate_limit_storm_rate=1.0)
    send_error = await fails(RateLimitedError, client.send_message(message()))
    assert send_error.scope is RateLimitScope.ACCOUNT
    get_error = await fails(RateLimitedError, client.get_number(SENDER))
    assert get_error.scope is RateLimitScope.RESOURCE
    assert get_error.retry_at is not None


# -- faults ------------------------------------------------------------------------------------


async def test_the_ambiguous_503_leaves_a_message_to_look_up(
    client: CatapultClient, simulator: Simulator
) -> None:
    simulator.set_faults(ambiguous_rate=1.0)
    error = await fails(AmbiguousError, client.send_message(message(tag="cbr1:cmd-42")))
    assert (error.status, error.code) == (503, "message-gateway-unavailable")
    simulator.clear_faults()
    found = [
        m
        async for m in client.list_messages(from_=SENDER)
        if m.tag == "cbr1:cmd-42"  # the worker's lookup by the command id in the tag
    ]
    assert len(found) == 1
    assert found[0].id in simulator.state.messages


async def test_the_ambiguous_503_on_a_batch(client: CatapultClient, simulator: Simulator) -> None:
    simulator.set_faults(ambiguous_rate=1.0)
    await fails(AmbiguousError, client.send_messages([message("a"), message("b")]))
    assert len(simulator.state.messages) == 2


async def test_gateway_unavailable_is_ambiguous_too(
    client: CatapultClient, simulator: Simulator
) -> None:
    simulator.set_faults(gateway_unavailable_rate=1.0)
    await fails(AmbiguousError, client.send_message(message()))
    assert simulator.state.messages == {}


async def test_500_and_503_are_server_errors(client: CatapultClient, simulator: Simulator) -> None:
    simulator.set_faults(error_rate=1.0)
    statuses = set()
    for _ in range(12):
        error = await fails(ServerError, client.send_message(message()))
        statuses.add((error.status, error.code))
        await fails(ServerError, client.get_application("a-aaaaaaaaaaaaaaaaaaaaaaa"))
    assert statuses == {(500, "internal-server-error"), (503, "service-unavailable")}
    assert simulator.state.messages == {}


async def test_latency_beyond_the_timeout_is_ambiguous(simulator: Simulator) -> None:
    simulator.add_number(SENDER)
    simulator.set_faults(latency_ms=1000)
    limits = CatapultSettings(timeout_s=0.2)
    async with CatapultClient.for_simulator(
        simulator.settings, base_url=simulator.base_url, catapult=limits
    ) as client:
        error = await fails(AmbiguousError, client.send_message(message()))
    assert "no answer within 0.2 s after the request was sent" in str(error)
    assert len(simulator.state.messages) == 1  # it was sent, and Catapult acted on it


# -- authentication ----------------------------------------------------------------------------


@pytest.mark.parametrize(
    "change",
    [
        {"api_secret": SecretStr("wrong-secret")},
        {"api_token": "t-wrongtoken"},
        {"user_id": "u-someoneelse"},
    ],
)
async def test_wrong_credentials(simulator: Simulator, change: dict[str, Any]) -> None:
    options: dict[str, Any] = {
        "base_url": simulator.base_url,
        "user_id": simulator.user_id,
        "api_token": SETTINGS.api_token,
        "api_secret": SETTINGS.api_secret,
    } | change
    async with CatapultClient(**options) as client:
        error = await fails(AuthError, client.get_message("m-aaaaaaaaaaaaaaaaaaaaaaa"))
    assert (error.status, error.category, error.code) == (401, "authorization", "access-denied")


# -- phone numbers -----------------------------------------------------------------------------


async def test_import_and_get_a_number(client: CatapultClient, simulator: Simulator) -> None:
    app = await call(client.create_application(name="numbers", incoming_message_url="http://x/in"))
    ref = await call(
        client.import_number(
            number=DASHBOARD_NUMBER, application_id=app.id, name="imported", **DASHBOARD
        )
    )
    assert NUMBER_ID.match(ref.id)
    assert ref.location.endswith(f"/phoneNumbers/{ref.id}")
    by_id = await call(client.get_number(ref.id))
    by_number = await call(client.get_number(DASHBOARD_NUMBER))
    assert by_id == by_number
    assert (by_id.id, by_id.number, by_id.name, by_id.application_id) == (
        ref.id,
        DASHBOARD_NUMBER,
        "imported",
        app.id,
    )
    # The imported number may send.
    await call(client.send_message(message(from_=DASHBOARD_NUMBER)))


@pytest.mark.parametrize(
    ("number", "change", "expected", "code"),
    [
        (DASHBOARD_NUMBER, {"password": SecretStr("wrong-pass")}, AuthError,
         "provider-access-denied"),
        (DASHBOARD_NUMBER, {"user_name": "nobody"}, AuthError, "provider-access-denied"),
        ("+19195550250", {}, NotFoundError, "number-not-found"),  # not in the Dashboard
        (SENDER, {}, ConflictError, "duplicate-number"),
        ("not-a-number", {}, BadRequestError, "validation-error"),
        (DASHBOARD_NUMBER, {"application_id": "a-aaaaaaaaaaaaaaaaaaaaaaa"}, NotFoundError,
         "application-not-found"),
    ],
)  # fmt: skip
async def test_import_errors(
    client: CatapultClient,
    number: str,
    change: dict[str, Any],
    expected: type[CatapultError],
    code: str,
) -> None:
    options: dict[str, Any] = {"number": number, **DASHBOARD, **change}
    error = await fails(expected, client.import_number(**options))
    assert error.code == code
    for secret in ("wrong-pass", *SECRETS):
        assert secret not in str(error) + repr(error)


async def test_get_an_unknown_number(client: CatapultClient) -> None:
    error = await fails(NotFoundError, client.get_number("+19195550177"))
    assert error.code == "number-not-found"
    await fails(NotFoundError, client.get_number("n-aaaaaaaaaaaaaaaaaaaaaaa"))


# -- applications ------------------------------------------------------------------------------


async def test_create_get_and_update_an_application(client: CatapultClient) -> None:
    ref = await call(
        client.create_application(
            name="bridge",
            incoming_message_url="http://127.0.0.1:9/in",
            incoming_message_fallback_url="http://127.0.0.1:9/fallback",
            callback_http_method="GET",
            incoming_message_url_callback_timeout_ms=4000,
        )
    )
    assert APPLICATION_ID.match(ref.id)
    app = await call(client.get_application(ref.id))
    assert (
        app.id,
        app.name,
        app.incoming_message_url,
        app.incoming_message_fallback_url,
        app.incoming_message_url_callback_timeout_ms,
    ) == (ref.id, "bridge", "http://127.0.0.1:9/in", "http://127.0.0.1:9/fallback", 4000)
    assert app.callback_http_method is not None
    assert app.callback_http_method.upper() == "GET"

    await call(
        client.update_application(
            ref.id, incoming_message_url="http://127.0.0.1:9/new", callback_http_method="POST"
        )
    )
    updated = await call(client.get_application(ref.id))
    assert updated.incoming_message_url == "http://127.0.0.1:9/new"
    assert updated.callback_http_method is not None
    assert updated.callback_http_method.upper() == "POST"
    assert updated.name == "bridge"  # fields not sent are kept
    assert updated.incoming_message_url_callback_timeout_ms == 4000


async def test_application_errors(client: CatapultClient) -> None:
    await fails(NotFoundError, client.get_application("a-aaaaaaaaaaaaaaaaaaaaaaa"))
    await fails(NotFoundError, client.update_application("a-aaaaaaaaaaaaaaaaaaaaaaa", name="x"))
    error = await fails(
        BadRequestError,
        client.create_application(name="bad", incoming_message_fallback_url="http://x/fb"),
    )
    assert error.code == "validation-error"
    assert "fallback" in str(error)


# -- construction ------------------------------------------------------------------------------


async def test_from_settings(simulator: Simulator) -> None:
    settings = CatapultSettings(
        base_url=simulator.base_url,
        user_id=simulator.user_id,
        api_token=SecretStr(SETTINGS.api_token),
        api_secret=SETTINGS.api_secret,
        timeout_s=2,
    )
    simulator.add_number(SENDER)
    async with CatapultClient.from_settings(settings) as client:
        assert MESSAGE_ID.match((await call(client.send_message(message()))).id)
    embedded = CatapultSettings()  # no base_url: the runtime passes the embedded simulator's
    with pytest.raises(ValueError, match=r"catapult\.base_url, catapult\.user_id"):
        CatapultClient.from_settings(embedded)
    with pytest.raises(ValueError, match=r"catapult\.api_secret"):
        CatapultClient.from_settings(
            settings.model_copy(update={"api_secret": None}), base_url=simulator.base_url
        )
    assert SETTINGS.api_secret.get_secret_value() not in repr(
        CatapultClient.from_settings(settings)
    )


async def test_several_simulators_do_not_share_state(make_simulator: MakeSimulator) -> None:
    first, second = await make_simulator(), await make_simulator()
    first.add_number(SENDER)
    async with CatapultClient.for_simulator(first.settings, base_url=first.base_url) as client:
        await call(client.send_message(message()))
    async with CatapultClient.for_simulator(second.settings, base_url=second.base_url) as client:
        await fails(AuthError, client.send_message(message()))

"""The official Catapult v1 Python SDK (``bandwidth-sdk`` 3.1.0) against the simulator.

The SDK is synchronous (requests): each call runs in a worker thread (``asyncio.to_thread``) while
the simulator serves from the test's event loop, over a real socket. ``api_endpoint`` is the
simulator's origin; the SDK appends ``/v1``.
"""

from __future__ import annotations

import asyncio
import re
from collections.abc import Callable
from typing import Any, TypeVar

import bandwidth
import pytest
from bandwidth.account import BandwidthAccountAPIException
from bandwidth.messaging import BandwidthMessageAPIException

from bridge.simulator import Simulator

T = TypeVar("T")

SENDER = "+19195550100"
PEER = "+19195551234"
MESSAGE_ID = re.compile(r"^m-[a-z2-7]{23}$")


async def call(function: Callable[..., T], *args: Any, **kwargs: Any) -> T:
    return await asyncio.to_thread(function, *args, **kwargs)


def clients(simulator: Simulator, *, secret: str | None = None) -> tuple[Any, Any]:
    settings = simulator.settings
    credentials = (
        settings.user_id,
        settings.api_token,
        secret or settings.api_secret.get_secret_value(),
    )
    messaging = bandwidth.client("messaging", *credentials, api_endpoint=simulator.origin)
    account = bandwidth.client("account", *credentials, api_endpoint=simulator.origin)
    return messaging, account


@pytest.fixture
def sdk(simulator: Simulator) -> tuple[Any, Any]:
    return clients(simulator)


def dashboard_provider(password: str = "dashboard-password") -> dict[str, Any]:
    return {
        "providerName": "bandwidth-dashboard",
        "properties": {
            "accountId": "9900000",
            "userName": "dashboard-user",
            "password": password,
        },
    }


async def test_sdk_imports_a_number_and_sends_single_and_batch(
    simulator: Simulator, sdk: tuple[Any, Any]
) -> None:
    messaging, account = sdk
    app_id = await call(
        account.create_application,
        name="bridge",
        incoming_message_url="http://127.0.0.1:9/in",
        callback_http_method="POST",
    )
    assert re.match(r"^a-[a-z2-7]{23}$", app_id)
    number_id = await call(
        account.order_phone_number,
        number=SENDER,
        name="text messaging TN",
        application_id=app_id,
        provider=dashboard_provider(),
    )
    assert re.match(r"^n-[a-z2-7]{23}$", number_id)
    number = await call(account.get_phone_number, number_id)
    assert number["number"] == SENDER
    assert number["application_id"] == app_id
    assert (await call(account.get_phone_number, SENDER))["id"] == number_id

    message_id = await call(
        messaging.send_message, from_=SENDER, to=PEER, text="hello", tag="cmd-1"
    )
    assert MESSAGE_ID.match(message_id)
    message = await call(messaging.get_message, message_id)
    assert message["id"] == message["message_id"] == message_id
    assert message["from"] == SENDER
    assert message["tag"] == "cmd-1"
    assert message["direction"] == "out"

    results = await call(
        messaging.send_messages,
        [
            {"from": SENDER, "to": PEER, "text": "one"},
            {"from": SENDER, "to": " ", "text": "two"},
        ],
    )
    assert results[0]["result"] == "accepted"
    assert MESSAGE_ID.match(results[0]["id"])
    assert results[1]["result"] == "error"
    assert results[1]["error"]["code"] == "blank-property"

    listed = await call(lambda: list(messaging.list_messages(from_=SENDER, size=1)))
    assert {m["id"] for m in listed} == {message_id, results[0]["id"]}


async def test_sdk_applications(simulator: Simulator, sdk: tuple[Any, Any]) -> None:
    _, account = sdk
    app_id = await call(
        account.create_application,
        name="first",
        incoming_message_url="https://bridge.example.com/in",
        incoming_message_url_callback_timeout=3000,
        callback_http_method="GET",
    )
    await call(account.update_application, app_id, name="second")
    app = await call(account.get_application, app_id)
    assert app["name"] == "second"
    assert app["callback_http_method"] == "get"
    assert app["incoming_message_url_callback_timeout"] == 3000
    assert [a["id"] for a in await call(lambda: list(account.list_applications()))] == [app_id]


@pytest.mark.parametrize(
    ("kwargs", "status", "code", "message"),
    [
        (
            {"from_": "+19995550000", "to": PEER, "text": "x"},
            401,
            "number-access-denied",
            "User u-simulatoruser2345abcdefg does not have permission to use number +19995550000",
        ),
        (
            {"from_": SENDER, "to": PEER, "text": None},
            400,
            "missing-property",
            "The 'message' resource property 'text' is required but was not specified",
        ),
        (
            {"from_": SENDER, "to": PEER, "text": "x" * 2049},
            400,
            "validation-error",
            "The message text must be 2,048 characters or less",
        ),
    ],
)
async def test_sdk_message_errors_parse(
    simulator: Simulator,
    sdk: tuple[Any, Any],
    kwargs: dict[str, Any],
    status: int,
    code: str,
    message: str,
) -> None:
    simulator.add_number(SENDER)
    messaging, _ = sdk
    with pytest.raises(BandwidthMessageAPIException) as caught:
        await call(messaging.send_message, **kwargs)
    assert caught.value.status_code == status
    assert caught.value.code == code
    assert caught.value.message == message


async def test_sdk_parses_not_found_batch_limit_and_rate_limit(
    simulator: Simulator, sdk: tuple[Any, Any]
) -> None:
    simulator.add_number(SENDER)
    messaging, _ = sdk
    with pytest.raises(BandwidthMessageAPIException) as not_found:
        await call(messaging.get_message, "m-aaaaaaaaaaaaaaaaaaaaaaa")
    assert (not_found.value.status_code, not_found.value.code) == (404, "message-not-found")
    with pytest.raises(BandwidthMessageAPIException) as too_many:
        await call(messaging.send_messages, [{"from": SENDER, "to": PEER, "text": "x"}] * 51)
    assert (too_many.value.status_code, too_many.value.code) == (403, "multi-message-limit")
    simulator.set_limits(number_messages_per_s=0.1)
    await call(messaging.send_message, from_=SENDER, to=PEER, text="x")
    with pytest.raises(BandwidthMessageAPIException) as limited:
        await call(messaging.send_message, from_=SENDER, to=PEER, text="x")
    assert (limited.value.status_code, limited.value.code) == (403, "message-rate-limit-per-tn")
    simulator.limits_off()
    simulator.set_faults(ambiguous_rate=1.0)
    with pytest.raises(BandwidthMessageAPIException) as ambiguous:
        await call(messaging.send_message, from_=SENDER, to=PEER, text="y")
    assert (ambiguous.value.status_code, ambiguous.value.code) == (
        503,
        "message-gateway-unavailable",
    )


async def test_sdk_account_errors_parse(simulator: Simulator, sdk: tuple[Any, Any]) -> None:
    _, account = sdk
    with pytest.raises(BandwidthAccountAPIException) as denied:
        await call(
            account.order_phone_number,
            number=SENDER,
            provider=dashboard_provider("catchThatBird"),
        )
    assert (denied.value.status_code, denied.value.code) == (401, "provider-access-denied")
    assert "9900000" in denied.value.message
    assert "catchThatBird" not in denied.value.message
    with pytest.raises(BandwidthAccountAPIException) as unknown:
        await call(account.order_phone_number, number="+14155550000", provider=dashboard_provider())
    assert (unknown.value.status_code, unknown.value.code) == (404, "number-not-found")
    await call(account.order_phone_number, number=SENDER, provider=dashboard_provider())
    with pytest.raises(BandwidthAccountAPIException) as duplicate:
        await call(account.order_phone_number, number=SENDER, provider=dashboard_provider())
    assert (duplicate.value.status_code, duplicate.value.code) == (409, "duplicate-number")
    with pytest.raises(BandwidthAccountAPIException) as missing:
        await call(account.get_application, "a-aaaaaaaaaaaaaaaaaaaaaaa")
    assert (missing.value.status_code, missing.value.code) == (404, "application-not-found")


async def test_sdk_with_a_wrong_secret_gets_access_denied(simulator: Simulator) -> None:
    messaging, account = clients(simulator, secret="wrong")
    with pytest.raises(BandwidthMessageAPIException) as caught:
        await call(messaging.get_message, "m-aaaaaaaaaaaaaaaaaaaaaaa")
    assert (caught.value.status_code, caught.value.code) == (401, "access-denied")
    with pytest.raises(BandwidthAccountAPIException) as account_caught:
        await call(account.get_application, "a-aaaaaaaaaaaaaaaaaaaaaaa")
    assert account_caught.value.code == "access-denied"


async def test_sdk_cannot_read_the_real_429_body(
    simulator: Simulator, sdk: tuple[Any, Any]
) -> None:
    """The real 429 body has no ``message`` (AP-DOCS sample); SDK 3.1.0 indexes it and fails.

    The simulator reproduces the platform here, not the SDK's expectation: our own client must
    cope with a 429 body without ``message``.
    """
    _, account = sdk
    simulator.set_limits(resource_requests_per_s=1.0, resource_burst=1)
    await call(account.get_account)
    with pytest.raises(KeyError, match="message"):
        await call(account.get_account)

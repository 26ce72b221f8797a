"""Phone numbers (order, Dashboard import) and applications on the simulator, over real sockets."""

from __future__ import annotations

import re
from typing import Any
from urllib.parse import quote

import pytest

from bridge.simulator import Simulator
from tests.fixtures.simulator import Answer, SimulatorApi

DASHBOARD_NUMBER = "+19195550105"


def dashboard(number: str = DASHBOARD_NUMBER, **login: str) -> dict[str, Any]:
    properties = {
        "accountId": "9900000",
        "userName": "dashboard-user",
        "password": "dashboard-password",
    }
    properties.update(login)
    return {
        "number": number,
        "name": "text messaging TN",
        "provider": {"providerName": "bandwidth-dashboard", "properties": properties},
    }


def last_segment(answer: Answer) -> str:
    return answer.headers["Location"].rsplit("/", 1)[1]


# Phone numbers ----------------------------------------------------------------------------------


async def test_import_from_dashboard_is_201_with_number_id(sim_api: SimulatorApi) -> None:
    answer = await sim_api.call("POST", "/phoneNumbers", json=dashboard())
    assert answer.status == 201
    assert answer.body == b""
    assert answer.headers["Location"].startswith(sim_api.url("/phoneNumbers/"))
    number_id = last_segment(answer)
    assert re.match(r"^n-[a-z2-7]{23}$", number_id)
    by_id = await sim_api.call("GET", f"/phoneNumbers/{number_id}")
    by_number = await sim_api.call("GET", f"/phoneNumbers/{quote(DASHBOARD_NUMBER)}")
    assert by_id.status == by_number.status == 200
    assert by_id.json() == by_number.json()
    body = by_id.json()
    assert body["id"] == number_id
    assert body["number"] == DASHBOARD_NUMBER
    assert body["nationalNumber"] == "(919) 555-0105"
    assert body["name"] == "text messaging TN"
    assert body["numberState"] == "enabled"


async def test_imported_number_may_send(sim_api: SimulatorApi) -> None:
    message = {"from": DASHBOARD_NUMBER, "to": "+19195551234", "text": "x"}
    before = await sim_api.call("POST", "/messages", json=message)
    assert before.status == 401
    assert before.json()["code"] == "number-access-denied"
    await sim_api.call("POST", "/phoneNumbers", json=dashboard())
    after = await sim_api.call("POST", "/messages", json=message)
    assert after.status == 201


async def test_import_twice_is_409_duplicate_number(sim_api: SimulatorApi) -> None:
    first = await sim_api.call("POST", "/phoneNumbers", json=dashboard())
    again = await sim_api.call("POST", "/phoneNumbers", json=dashboard())
    assert again.status == 409
    body = again.json()
    assert body["category"] == "conflict"
    assert body["code"] == "duplicate-number"
    assert body["message"] == (
        f"Cannot create another instance of number resource {last_segment(first)} "
        f"for number {DASHBOARD_NUMBER}"
    )


@pytest.mark.parametrize(
    "login",
    [{"password": "catchThatBird"}, {"userName": "wileCoyote"}, {"accountId": "9999999"}],
)
async def test_wrong_dashboard_credentials_are_401_naming_the_account_only(
    sim_api: SimulatorApi, login: dict[str, str]
) -> None:
    answer = await sim_api.call("POST", "/phoneNumbers", json=dashboard(**login))
    assert answer.status == 401
    body = answer.json()
    assert body["category"] == "authorization"
    assert body["code"] == "provider-access-denied"
    account = login.get("accountId", "9900000")
    assert account in body["message"]
    text = answer.body.decode()
    assert "catchThatBird" not in text
    assert "dashboard-password" not in text
    assert sim_api.simulator.state.numbers == {}


async def test_number_not_in_dashboard_is_404(sim_api: SimulatorApi) -> None:
    answer = await sim_api.call("POST", "/phoneNumbers", json=dashboard("+14155550000"))
    assert answer.status == 404
    body = answer.json()
    assert body["category"] == "not-found"
    assert body["code"] == "number-not-found"
    assert body["message"] == "The number +14155550000 could not be found"


@pytest.mark.parametrize(
    ("payload", "code"),
    [
        ({}, "missing-property"),
        ({"number": "  "}, "blank-property"),
        ({"number": "919-555-0105"}, "validation-error"),
        ({"number": DASHBOARD_NUMBER, "provider": {"properties": {}}}, "missing-property"),
        (
            {"number": DASHBOARD_NUMBER, "provider": {"providerName": "other", "properties": {}}},
            "validation-error",
        ),
        (
            {
                "number": DASHBOARD_NUMBER,
                "provider": {
                    "providerName": "bandwidth-dashboard",
                    "properties": {"userName": "u"},
                },
            },
            "missing-property",
        ),
    ],
)
async def test_import_validation(sim_api: SimulatorApi, payload: dict[str, Any], code: str) -> None:
    answer = await sim_api.call("POST", "/phoneNumbers", json=payload)
    assert answer.status == 400
    assert answer.json()["code"] == code


async def test_import_with_unknown_application_is_404(sim_api: SimulatorApi) -> None:
    payload = dashboard()
    payload["applicationId"] = "a-aaaaaaaaaaaaaaaaaaaaaaa"
    answer = await sim_api.call("POST", "/phoneNumbers", json=payload)
    assert answer.status == 404
    assert answer.json()["code"] == "application-not-found"


async def test_order_update_list_delete(sim_api: SimulatorApi) -> None:
    ordered = await sim_api.call(
        "POST", "/phoneNumbers", json={"number": "+14155550123", "name": "o"}
    )
    assert ordered.status == 201
    number_id = last_segment(ordered)
    app = sim_api.simulator.add_application(incoming_message_url="http://127.0.0.1:9/in")
    updated = await sim_api.call(
        "POST", f"/phoneNumbers/{number_id}", json={"applicationId": app.id, "name": None}
    )
    assert updated.status == 200
    got = (await sim_api.call("GET", f"/phoneNumbers/{number_id}")).json()
    assert got["applicationId"] == app.id
    assert got["application"] == sim_api.url(f"/applications/{app.id}")
    assert got["name"] == "o"
    for number in ("+14155550124", "+14155550125"):
        await sim_api.call("POST", "/phoneNumbers", json={"number": number})
    page = await sim_api.call("GET", "/phoneNumbers", params={"size": "2"})
    assert len(page.json()) == 2
    assert 'rel="next"' in page.headers["Link"]
    assert 'rel="last"' in page.headers["Link"]
    second = await sim_api.call("GET", "/phoneNumbers", params={"size": "2", "page": "1"})
    assert len(second.json()) == 1
    assert 'rel="next"' not in second.headers["Link"]
    by_app = await sim_api.call("GET", "/phoneNumbers", params={"applicationId": app.id})
    assert [n["id"] for n in by_app.json()] == [number_id]
    deleted = await sim_api.call("DELETE", f"/phoneNumbers/{number_id}")
    assert deleted.status == 200
    gone = await sim_api.call("GET", f"/phoneNumbers/{number_id}")
    assert gone.status == 404
    assert gone.json()["code"] == "number-not-found"


# Applications -----------------------------------------------------------------------------------


async def test_application_create_get_update(sim_api: SimulatorApi) -> None:
    created = await sim_api.call(
        "POST",
        "/applications",
        json={
            "name": "bridge",
            "incomingMessageUrl": "https://bridge.example.com/catapult/messages",
            "incomingMessageFallbackUrl": "https://fallback.example.com/catapult/messages",
            "callbackHttpMethod": "GET",
            "incomingMessageUrlCallbackTimeout": 5000,
            "incomingCallUrl": None,
            "autoAnswer": None,
        },
    )
    assert created.status == 201
    assert created.body == b""
    app_id = last_segment(created)
    assert re.match(r"^a-[a-z2-7]{23}$", app_id)
    assert created.headers["Location"] == sim_api.url(f"/applications/{app_id}")
    got = await sim_api.call("GET", f"/applications/{app_id}")
    assert got.json() == {
        "id": app_id,
        "name": "bridge",
        "incomingMessageUrl": "https://bridge.example.com/catapult/messages",
        "incomingMessageFallbackUrl": "https://fallback.example.com/catapult/messages",
        "incomingMessageUrlCallbackTimeout": 5000,
        "callbackHttpMethod": "get",
        "autoAnswer": True,
    }
    updated = await sim_api.call(
        "POST", f"/applications/{app_id}", json={"name": "renamed", "callbackHttpMethod": "post"}
    )
    assert updated.status == 200
    assert updated.body == b""
    got = (await sim_api.call("GET", f"/applications/{app_id}")).json()
    assert got["name"] == "renamed"
    assert got["callbackHttpMethod"] == "post"
    assert got["incomingMessageUrlCallbackTimeout"] == 5000
    listed = await sim_api.call("GET", "/applications")
    assert [a["id"] for a in listed.json()] == [app_id]


@pytest.mark.parametrize(
    ("payload", "code", "message"),
    [
        (
            {},
            "missing-property",
            "The 'application' resource property 'name' is required but was not specified",
        ),
        (
            {
                "name": "a",
                "incomingMessageUrl": "http://x/y",
                "incomingMessageUrlCallbackTimeout": 10001,
            },
            "validation-error",
            "Incoming SMS callback timeout must not surpass 10000",
        ),
        (
            {
                "name": "a",
                "incomingMessageUrl": "http://x/y",
                "incomingMessageUrlCallbackTimeout": 0,
            },
            "validation-error",
            "Incoming SMS callback timeout must be greater than 0",
        ),
        (
            {"name": "a", "incomingMessageFallbackUrl": "http://x/y"},
            "validation-error",
            "Your application must have a sms callback URL in order to have a fallback URL.",
        ),
        (
            {"name": "a", "incomingMessageUrl": "not a url"},
            "validation-error",
            "Invalid incomingMessageUrl URL. not a url is not a valid URL",
        ),
        (
            {"name": "a", "callbackHttpMethod": "PUT"},
            "validation-error",
            "The 'application' resource property 'callbackHttpMethod' must be one of the "
            "following values: GET, POST",
        ),
    ],
)
async def test_application_validation(
    sim_api: SimulatorApi, payload: dict[str, Any], code: str, message: str
) -> None:
    answer = await sim_api.call("POST", "/applications", json=payload)
    assert answer.status == 400
    assert answer.json()["code"] == code
    assert answer.json()["message"] == message


async def test_unknown_application_is_404(sim_api: SimulatorApi) -> None:
    answer = await sim_api.call("GET", "/applications/a-aaaaaaaaaaaaaaaaaaaaaaa")
    assert answer.status == 404
    body = answer.json()
    assert body["code"] == "application-not-found"
    assert body["message"] == "The application a-aaaaaaaaaaaaaaaaaaaaaaa could not be found"


async def test_deleting_an_application_detaches_its_numbers(
    sim_api: SimulatorApi, simulator: Simulator
) -> None:
    app = simulator.add_application(incoming_message_url="http://127.0.0.1:9/in")
    number = simulator.add_number("+14155550190", application_id=app.id)
    answer = await sim_api.call("DELETE", f"/applications/{app.id}")
    assert answer.status == 200
    assert number.application_id is None
    assert (await sim_api.call("GET", f"/applications/{app.id}")).status == 404


async def test_account_answers_with_valid_credentials(sim_api: SimulatorApi) -> None:
    answer = await sim_api.call("GET", "/account")
    assert answer.status == 200
    assert "balance" in answer.json()

"""Fidelity of the simulated v1 API over real sockets: statuses, bodies, headers, ids, paging."""

from __future__ import annotations

import re
from typing import Any

import aiohttp
import orjson
import pytest

from bridge.simulator import Simulator
from tests.fixtures.simulator import Answer, SimulatorApi

ID = re.compile(r"^(?P<prefix>[a-z]+)-[a-z2-7]{23}$")
SENDER = "+19195550100"
# What Catapult answers (400 validation-error) for a recipient that is no phone number.
INVALID = "Invalid phone number"
DASHBOARD_LOGIN = {
    "accountId": "9900000",
    "userName": "dashboard-user",
    "password": "dashboard-password",
}


def request_details(answer: Answer) -> dict[str, str]:
    return {d["name"]: d["value"] for d in answer.json()["details"]}


def message_id_of(answer: Answer) -> str:
    return answer.headers["Location"].rsplit("/", 1)[1]


@pytest.fixture
def sender(simulator: Simulator) -> str:
    simulator.add_number(SENDER)
    return SENDER


# Authentication -------------------------------------------------------------------------------


@pytest.mark.parametrize(
    "authorization",
    [
        aiohttp.encode_basic_auth("t-simulatortoken234abcdefg", "wrong"),
        aiohttp.encode_basic_auth("t-wrong", "simulator-secret"),
        "Bearer t-simulatortoken234abcdefg",
        "Basic \u00e9t\u00e9",  # not ASCII: compared as bytes, never a 500
        "",
    ],
)
async def test_bad_credentials_get_the_real_401_body(
    sim_api: SimulatorApi, authorization: str
) -> None:
    answer = await sim_api.call("GET", "/messages", authorization=authorization or "Basic")
    assert answer.status == 401
    assert answer.headers["Content-Type"].startswith("application/json")
    body = answer.json()
    assert body["category"] == "authorization"
    assert body["code"] == "access-denied"
    assert body["message"] == (
        "The authenticated user does not have sufficient permissions to access this resource"
    )
    assert request_details(answer) == {
        "requestMethod": "GET",
        "remoteAddress": "127.0.0.1",
        "requestPath": f"users/{sim_api.simulator.user_id}/messages",
    }


async def test_another_users_path_is_401(sim_api: SimulatorApi) -> None:
    url = f"{sim_api.simulator.base_url}/users/u-someoneelse234567abcdefg/messages"
    answer = await sim_api.call("GET", url, absolute=True)
    assert answer.status == 401
    assert answer.json()["code"] == "access-denied"


# Single send ----------------------------------------------------------------------------------


async def test_single_send_is_201_with_empty_body_and_absolute_location(
    sim_api: SimulatorApi, sender: str
) -> None:
    answer = await sim_api.call(
        "POST", "/messages", json={"from": sender, "to": "+19195551234", "text": "hello"}
    )
    assert answer.status == 201
    assert answer.body == b""
    assert "Content-Type" not in answer.headers
    location = answer.headers["Location"]
    assert location.startswith(
        f"{sim_api.simulator.base_url}/users/{sim_api.simulator.user_id}/messages/"
    )
    match = ID.match(message_id_of(answer))
    assert match is not None
    assert match["prefix"] == "m"


async def test_sent_message_resource(sim_api: SimulatorApi, sender: str) -> None:
    sent = await sim_api.call(
        "POST",
        "/messages",
        json={
            "from": sender,
            "to": "+19195551234",
            "text": "hello",
            "tag": "cmd-1",
            "receiptRequested": "all",
            "callbackTimeout": "2000",
        },
    )
    answer = await sim_api.call("GET", sent.headers["Location"], absolute=True)
    assert answer.status == 200
    body = answer.json()
    message_id = message_id_of(sent)
    assert body["id"] == body["messageId"] == message_id
    assert body["from"] == sender
    assert body["to"] == "+19195551234"
    assert body["direction"] == "out"
    assert body["text"] == "hello"
    assert body["media"] == []
    assert body["tag"] == "cmd-1"
    assert body["receiptRequested"] == "all"
    assert body["callbackTimeout"] == 2000
    assert body["state"] == "sent"
    assert body["deliveryState"] == "delivered"
    assert body["deliveryCode"] == "0"
    assert body["deliveryDescription"] == "Message delivered to carrier"
    assert body["segmentCount"] == 1
    assert re.match(r"^\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d\.\d{3}Z$", body["time"])


async def test_optional_fields_as_null_are_accepted(sim_api: SimulatorApi, sender: str) -> None:
    payload: dict[str, Any] = {
        "from": sender,
        "to": "+19195551234",
        "text": "hi",
        "media": None,
        "receiptRequested": None,
        "callbackUrl": None,
        "callbackHttpMethod": None,
        "callbackTimeout": None,
        "fallbackUrl": None,
        "tag": None,
    }
    answer = await sim_api.call("POST", "/messages", json=payload)
    assert answer.status == 201


async def test_get_unknown_message_is_404_with_the_real_body(sim_api: SimulatorApi) -> None:
    answer = await sim_api.call("GET", "/messages/m-aaaaaaaaaaaaaaaaaaaaaaa")
    assert answer.status == 404
    body = answer.json()
    assert body["category"] == "not-found"
    assert body["code"] == "message-not-found"
    assert body["message"] == "The message 'm-aaaaaaaaaaaaaaaaaaaaaaa' could not be found"
    assert request_details(answer)["messageId"] == "m-aaaaaaaaaaaaaaaaaaaaaaa"


@pytest.mark.parametrize(
    ("payload", "status", "code", "message"),
    [
        (
            {"from": SENDER, "to": "+19195551234"},
            400,
            "missing-property",
            "The 'message' resource property 'text' is required but was not specified",
        ),
        (
            {"from": SENDER, "text": "x"},
            400,
            "missing-property",
            "The 'message' resource property 'to' is required but was not specified",
        ),
        (
            {"from": SENDER, "to": None, "text": "x"},
            400,
            "missing-property",
            "The 'message' resource property 'to' is required but was not specified",
        ),
        (
            {"from": SENDER, "to": "  ", "text": "x"},
            400,
            "blank-property",
            "The 'message' resource property 'to' must contain at least one non-whitespace "
            "character",
        ),
        (
            {"from": SENDER, "to": "+19195551234", "text": "x" * 2049},
            400,
            "validation-error",
            "The message text must be 2,048 characters or less",
        ),
        (
            {"from": "+1415579029", "to": "+19195551234", "text": "x"},
            401,
            "number-access-denied",
            "User u-simulatoruser2345abcdefg does not have permission to use number +1415579029",
        ),
        (
            {"from": SENDER, "to": "+19195551234", "text": "x", "callbackTimeout": 10001},
            400,
            "validation-error",
            "The 'message' resource property 'callbackTimeout' exceeds the limit of '10000'",
        ),
        (
            {"from": SENDER, "to": "+19195551234", "text": "x", "receiptRequested": "some"},
            400,
            "validation-error",
            "The 'message' resource property 'receiptRequested' must be one of the following "
            "values: none, all, error",
        ),
        (
            {"from": SENDER, "to": ["+19195551234"], "text": "x"},
            400,
            "validation-error",
            "The 'message' resource property 'to' must be a string",
        ),
        (
            {"from": SENDER, "to": "+19195551234", "text": 5},
            400,
            "validation-error",
            "The 'message' resource property 'text' must be a string",
        ),
        (
            {"from": SENDER, "to": "+19195551234", "text": "x", "callbackUrl": "ftp://x"},
            400,
            "callback-invalid-url",
            "The URL ftp://x is not a valid callbackUrl/fallbackUrl",
        ),
        ({"from": SENDER, "to": "+19195551234\n", "text": "x"}, 400, "validation-error", INVALID),
        ({"from": SENDER, "to": "5555", "text": "x"}, 400, "validation-error", INVALID),
        ({"from": SENDER, "to": "+1919555123", "text": "x"}, 400, "validation-error", INVALID),
        ({"from": SENDER, "to": "+0123456789", "text": "x"}, 400, "validation-error", INVALID),
        ({"from": SENDER, "to": "hello", "text": "x"}, 400, "validation-error", INVALID),
        (
            {"from": SENDER, "to": "+19195551234", "text": "x", "callbackUrl": "http://a..b/"},
            400,
            "callback-invalid-url",
            "The URL http://a..b/ is not a valid callbackUrl/fallbackUrl",
        ),
        (
            {"from": SENDER, "to": "+19195551234", "text": "x", "fallbackUrl": "http://xn--/"},
            400,
            "callback-invalid-url",
            "The URL http://xn--/ is not a valid callbackUrl/fallbackUrl",
        ),
        (
            {"from": SENDER, "to": "+19195551234", "media": ["nope"]},
            403,
            "media-invalid-url",
            "The media URL nope is invalid.",
        ),
        (
            {
                "from": SENDER,
                "to": "+19195551234",
                "media": ["https://example.com/a.jpg"],
                "receiptRequested": "all",
            },
            400,
            "validation-error",
            "Can not send media and receiptRequested in the same request",
        ),
    ],
)
async def test_send_validation_errors_are_the_real_ones(
    sim_api: SimulatorApi,
    sender: str,
    payload: dict[str, Any],
    status: int,
    code: str,
    message: str,
) -> None:
    answer = await sim_api.call("POST", "/messages", json=payload)
    assert answer.status == status
    body = answer.json()
    assert body["code"] == code
    assert body["message"] == message
    assert request_details(answer)["requestPath"] == f"users/{sim_api.simulator.user_id}/messages"
    assert sim_api.simulator.state.messages == {}


async def test_text_of_exactly_2048_characters_is_accepted(
    sim_api: SimulatorApi, sender: str
) -> None:
    answer = await sim_api.call(
        "POST", "/messages", json={"from": sender, "to": "+19195551234", "text": "é" * 2048}
    )
    assert answer.status == 201
    record = sim_api.simulator.state.messages[message_id_of(answer)]
    assert record.segment_count == 31  # UCS-2: 67 characters per segment


async def test_mms_without_text_is_accepted(sim_api: SimulatorApi, sender: str) -> None:
    answer = await sim_api.call(
        "POST",
        "/messages",
        json={"from": sender, "to": "+19195551234", "media": "https://example.com/cat.jpg"},
    )
    assert answer.status == 201
    got = await sim_api.call("GET", answer.headers["Location"], absolute=True)
    assert got.json()["media"] == ["https://example.com/cat.jpg"]


# Batch send -----------------------------------------------------------------------------------


async def test_batch_is_202_with_per_item_results_in_request_order(
    sim_api: SimulatorApi, sender: str
) -> None:
    answer = await sim_api.call(
        "POST",
        "/messages",
        json=[
            {"from": sender, "to": "+19195551234", "text": "one"},
            {"from": sender, "to": "", "text": "two"},
            {"from": sender, "text": "three"},
            {"from": "+19995550000", "to": "+19195551234", "text": "four"},
            {"from": sender, "to": "+19195551235", "text": "five"},
        ],
    )
    assert answer.status == 202
    results = answer.json()
    assert [r["result"] for r in results] == ["accepted", "error", "error", "error", "accepted"]
    assert results[1]["error"] == {
        "category": "bad-request",
        "code": "blank-property",
        "message": "The 'message' resource property 'to' must contain at least one "
        "non-whitespace character",
        "details": [],
    }
    assert results[2]["error"]["code"] == "missing-property"
    assert results[3]["error"]["code"] == "number-access-denied"
    for index in (0, 4):
        location = results[index]["location"]
        assert location.startswith(f"{sim_api.simulator.base_url}/users/")
        assert ID.match(location.rsplit("/", 1)[1])
    texts = [m.text for m in sim_api.simulator.state.messages.values()]
    assert texts == ["one", "five"]


async def test_batch_refuses_each_recipient_that_is_no_phone_number(
    sim_api: SimulatorApi, sender: str
) -> None:
    answer = await sim_api.call(
        "POST",
        "/messages",
        json=[
            {"from": sender, "to": "5555", "text": "one"},
            {"from": sender, "to": "+19195551234", "text": "two"},
            {"from": sender, "to": "+1555", "text": "three"},
            {"from": sender, "to": "12345", "text": "four"},  # a short code
        ],
    )
    assert answer.status == 202
    results = answer.json()
    assert [r["result"] for r in results] == ["error", "accepted", "error", "accepted"]
    for index, to in ((0, "5555"), (2, "+1555")):
        assert results[index]["error"] == {
            "category": "bad-request",
            "code": "validation-error",
            "message": INVALID,
            "details": [{"name": "to", "value": to}],
        }
    assert [m.text for m in sim_api.simulator.state.messages.values()] == ["two", "four"]


async def test_batch_over_50_is_403_multi_message_limit(sim_api: SimulatorApi, sender: str) -> None:
    item = {"from": sender, "to": "+19195551234", "text": "x"}
    answer = await sim_api.call("POST", "/messages", json=[item] * 51)
    assert answer.status == 403
    body = answer.json()
    assert body["category"] == "limit"
    assert body["code"] == "multi-message-limit"
    assert body["message"] == (
        "The number of messages [51] in the multi message request is greater than the limit [50]."
    )
    assert sim_api.simulator.state.messages == {}
    fifty = await sim_api.call("POST", "/messages", json=[item] * 50)
    assert fifty.status == 202
    assert len(fifty.json()) == 50


# Listing --------------------------------------------------------------------------------------


async def _send(
    sim_api: SimulatorApi, count: int, *, sender: str, to: str = "+19195551234"
) -> list[str]:
    ids = []
    for index in range(count):
        answer = await sim_api.call(
            "POST",
            "/messages",
            json={"from": sender, "to": to, "text": f"m{index}", "tag": f"t{index}"},
        )
        assert answer.status == 201
        ids.append(message_id_of(answer))
    return ids


def next_link(answer: Answer) -> str | None:
    link = answer.headers.get("Link")
    if link is None:
        return None
    match = re.match(r'^<([^>]+)>; rel="next"$', link)
    assert match is not None, link
    return match[1]


async def test_list_pages_newest_first_with_sort_key_cursor(
    sim_api: SimulatorApi, sender: str
) -> None:
    ids = await _send(sim_api, 5, sender=sender)
    seen: list[str] = []
    answer = await sim_api.call("GET", "/messages", params={"size": "2"})
    pages = 1
    while True:
        assert answer.status == 200
        seen.extend(m["id"] for m in answer.json())
        link = next_link(answer)
        if link is None:
            break
        assert "sortKeyLT=" in link
        answer = await sim_api.call("GET", link, absolute=True)
        pages += 1
    assert seen == list(reversed(ids))
    assert pages == 3


async def test_list_final_page_may_be_empty(sim_api: SimulatorApi, sender: str) -> None:
    await _send(sim_api, 2, sender=sender)
    first = await sim_api.call("GET", "/messages", params={"size": "2"})
    link = next_link(first)
    assert link is not None
    last = await sim_api.call("GET", link, absolute=True)
    assert last.status == 200
    assert last.json() == []
    assert "Link" not in last.headers


async def test_list_ascending_and_filters(sim_api: SimulatorApi, simulator: Simulator) -> None:
    simulator.add_number("+19195550101")
    simulator.add_number("+19195550102")
    a = await _send(sim_api, 3, sender="+19195550101", to="+19195551111")
    b = await _send(sim_api, 2, sender="+19195550102", to="+19195552222")
    answer = await sim_api.call(
        "GET", "/messages", params={"from": "+19195550101", "sortOrder": "asc"}
    )
    assert [m["id"] for m in answer.json()] == a
    answer = await sim_api.call("GET", "/messages", params={"to": "+19195552222"})
    assert [m["id"] for m in answer.json()] == list(reversed(b))
    answer = await sim_api.call("GET", "/messages", params={"direction": "in"})
    assert answer.json() == []
    answer = await sim_api.call("GET", "/messages", params={"state": "sent", "size": "1000"})
    assert len(answer.json()) == 5
    asc = await sim_api.call("GET", "/messages", params={"sortOrder": "asc", "size": "3"})
    link = next_link(asc)
    assert link is not None
    assert "sortKeyGT=" in link
    rest = await sim_api.call("GET", link, absolute=True)
    assert [m["id"] for m in asc.json()] + [m["id"] for m in rest.json()] == a + b


async def test_list_by_date_time_window(sim_api: SimulatorApi, sender: str) -> None:
    ids = await _send(sim_api, 3, sender=sender)
    records = [sim_api.simulator.state.messages[i] for i in ids]
    # Catapult's format: 'yyyy-MM-dd hh:mm:ss.sss', UTC.
    start = records[1].time.replace("T", " ").removesuffix("Z")
    answer = await sim_api.call("GET", "/messages", params={"from": sender, "fromDateTime": start})
    assert {m["id"] for m in answer.json()} >= {ids[1], ids[2]}
    end = records[0].time.replace("T", " ").removesuffix("Z")
    answer = await sim_api.call("GET", "/messages", params={"toDateTime": end})
    assert ids[0] in {m["id"] for m in answer.json()}
    assert ids[2] not in {m["id"] for m in answer.json()} or records[2].time == records[0].time
    answer = await sim_api.call("GET", "/messages", params={"fromDateTime": "2999-01-01"})
    assert answer.json() == []


@pytest.mark.parametrize(
    ("params", "name"),
    [
        ({"size": "0"}, "size"),
        ({"size": "1001"}, "size"),
        ({"size": "ten"}, "size"),
        ({"direction": "sideways"}, "direction"),
        ({"sortOrder": "random"}, "sortOrder"),
        ({"fromDateTime": "yesterday"}, "fromDateTime"),
        ({"toDateTime": "2024-13-45 99:00:00"}, "toDateTime"),
        ({"sortKeyLT": "abc"}, "sortKeyLT"),
        # str.isdigit() holds for these, int() refuses them: a 400, never a 500.
        ({"size": "\u00b2"}, "size"),
        ({"sortKeyLT": "\u00b2"}, "sortKeyLT"),
        ({"sortKeyGT": "9" * 5000}, "sortKeyGT"),
    ],
)
async def test_list_bad_parameters_are_400_naming_the_parameter(
    sim_api: SimulatorApi, params: dict[str, str], name: str
) -> None:
    answer = await sim_api.call("GET", "/messages", params=params)
    assert answer.status == 400
    body = answer.json()
    assert body["code"] == "validation-error"
    assert f"'{name}'" in body["message"]


@pytest.mark.parametrize("resource", ["/phoneNumbers", "/applications", "/errors"])
@pytest.mark.parametrize("params", [{"page": "\u00b2"}, {"page": "9" * 5000}, {"size": "x"}])
async def test_page_parameters_of_other_lists_are_400(
    sim_api: SimulatorApi, resource: str, params: dict[str, str]
) -> None:
    answer = await sim_api.call("GET", resource, params=params)
    assert answer.status == 400
    body = answer.json()
    assert body["code"] == "validation-error"
    assert f"'{next(iter(params))}'" in body["message"]


# Bad input --------------------------------------------------------------------------------------


def send_body(**fields: Any) -> bytes:
    return orjson.dumps({"from": SENDER, "to": "+19195551234", "text": "x", **fields})


@pytest.mark.parametrize(
    ("method", "path", "data"),
    [
        ("POST", "/messages", b"{not json"),
        ("POST", "/messages", b""),
        ("POST", "/messages", b"\xff\xfe"),
        ("POST", "/messages", b'"a string"'),
        ("POST", "/messages", b"42"),
        ("POST", "/phoneNumbers", b"[]"),
        ("POST", "/phoneNumbers", b'{"number": 19195550100}'),
        ("POST", "/phoneNumbers", b'{"number": "+19195550100", "provider": "dashboard"}'),
        ("POST", "/applications", b'{"name": ["x"]}'),
        ("POST", "/applications", b'{"name": "x", "autoAnswer": "yes"}'),
        ("POST", "/applications", b'{"name": "x", "incomingMessageUrlCallbackTimeout": "x"}'),
        # Numeric strings that str.isdigit() accepts and int() refuses, or too long to read.
        (
            "POST",
            "/applications",
            orjson.dumps({"name": "x", "incomingMessageUrlCallbackTimeout": "\u00b2"}),
        ),
        ("POST", "/messages", send_body(callbackTimeout="\u00b2")),
        ("POST", "/messages", send_body(callbackTimeout="9" * 5000)),
        ("PATCH", "/messages/m-aaaaaaaaaaaaaaaaaaaaaaa", b"{}"),
    ],
)
async def test_malformed_bodies_are_4xx_json_never_500(
    sim_api: SimulatorApi, sender: str, method: str, path: str, data: bytes
) -> None:
    answer = await sim_api.call(method, path, data=data)
    assert 400 <= answer.status < 500
    body = answer.json()
    assert set(body) == {"category", "code", "message", "details"}
    assert "Traceback" not in answer.body.decode()


async def test_batch_items_of_wrong_type_are_per_item_errors(
    sim_api: SimulatorApi, sender: str
) -> None:
    answer = await sim_api.call("POST", "/messages", data=b'[1, "x", null]')
    assert answer.status == 202
    assert [r["error"]["code"] for r in answer.json()] == ["validation-error"] * 3


@pytest.mark.parametrize(
    ("method", "path", "status", "code"),
    [
        ("GET", "/nothing-here", 404, "resource-not-found"),
        ("DELETE", "/messages", 405, "method-not-allowed"),
        ("PUT", "/messages/m-aaaaaaaaaaaaaaaaaaaaaaa", 405, "method-not-allowed"),
    ],
)
async def test_unknown_routes_and_methods_are_json(
    sim_api: SimulatorApi, method: str, path: str, status: int, code: str
) -> None:
    answer = await sim_api.call(method, path)
    assert answer.status == status
    assert answer.json()["code"] == code


async def test_unknown_root_path_is_json_404(sim_api: SimulatorApi) -> None:
    answer = await sim_api.call("GET", f"{sim_api.simulator.origin}/v2/anything", absolute=True)
    assert answer.status == 404
    assert answer.json()["code"] == "resource-not-found"


async def test_oversized_body_is_413_json(sim_api: SimulatorApi) -> None:
    answer = await sim_api.call("POST", "/messages", data=b"[" + b" " * (2 * 1024 * 1024) + b"]")
    assert answer.status == 413
    assert answer.json()["code"] == "validation-error"


# Redaction ------------------------------------------------------------------------------------


async def test_redact_blanks_the_text(sim_api: SimulatorApi, sender: str) -> None:
    (message_id,) = await _send(sim_api, 1, sender=sender)
    answer = await sim_api.call("PATCH", f"/messages/{message_id}", json={"text": ""})
    assert answer.status == 200
    got = await sim_api.call("GET", f"/messages/{message_id}")
    assert got.json()["text"] == ""
    bad = await sim_api.call("PATCH", f"/messages/{message_id}", json={"text": "x"})
    assert bad.status == 400

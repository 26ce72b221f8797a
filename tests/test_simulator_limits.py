"""Rate limits of the simulator: 403 message limits over a 10 s window, 429 resource families."""

from __future__ import annotations

import time
from collections.abc import AsyncIterator

import aiohttp
import pytest

from bridge.settings import SimulatorSettings
from bridge.simulator import Limits, Simulator
from tests.fixtures.simulator import LIMITS_OFF, MakeSimulator, SimulatorApi

A = "+19195550100"
B = "+19195550101"
PEER = "+19195551234"


class FakeClock:
    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now


@pytest.fixture
def clock() -> FakeClock:
    return FakeClock()


@pytest.fixture
async def limited(clock: FakeClock) -> AsyncIterator[Simulator]:
    """Message limits as on the real platform (1/s per account and number), others off."""
    settings = SimulatorSettings(
        **{**LIMITS_OFF, "account_messages_per_s": 1.0, "number_messages_per_s": 1.0}
    )
    async with Simulator(settings, clock=clock) as simulator:
        simulator.add_number(A)
        simulator.add_number(B)
        yield simulator


@pytest.fixture
def limited_api(sim_http: aiohttp.ClientSession, limited: Simulator) -> SimulatorApi:
    return SimulatorApi(sim_http, limited)


async def send(sim_api: SimulatorApi, sender: str) -> int:
    answer = await sim_api.call("POST", "/messages", json={"from": sender, "to": PEER, "text": "x"})
    return answer.status


def test_defaults_mirror_the_real_platform() -> None:
    limits = Limits.from_settings(SimulatorSettings())
    assert limits.account_messages_per_s == 1.0
    assert limits.number_messages_per_s == 1.0
    assert limits.bucket("messages") == (1.0, 1)
    assert limits.bucket("applications") == (1.0, 1)
    assert limits.bucket("number-orders") == (100.0 / 60, 800)
    assert limits.bucket("number-reads") == (2000.0, 3000)


async def test_account_limit_is_403_with_the_real_body(
    limited_api: SimulatorApi, limited: Simulator
) -> None:
    limited.set_limits(number_messages_per_s=0)
    statuses = [await send(limited_api, A if i % 2 else B) for i in range(10)]
    assert statuses == [201] * 10
    answer = await limited_api.call("POST", "/messages", json={"from": A, "to": PEER, "text": "x"})
    assert answer.status == 403
    assert "X-RateLimit-Reset" not in answer.headers
    assert "Retry-After" not in answer.headers
    body = answer.json()
    assert body["category"] == "limit"
    assert body["code"] == "message-rate-limit"
    assert body["message"] == (
        "You can send 1 messages per 1 seconds, calculated as the average over 10 seconds. "
        "Your rate is: 1.1"
    )
    assert [d["name"] for d in body["details"]] == ["requestMethod", "remoteAddress", "requestPath"]
    assert len(limited.state.messages) == 10


async def test_overall_code_when_configured(limited_api: SimulatorApi, limited: Simulator) -> None:
    limited.set_limits(
        account_messages_per_s=0.1,
        number_messages_per_s=0,
        account_limit_code="message-rate-limit-overall",
    )
    assert await send(limited_api, A) == 201
    answer = await limited_api.call("POST", "/messages", json={"from": B, "to": PEER, "text": "x"})
    assert answer.json()["code"] == "message-rate-limit-overall"
    assert "You can send 0.1 messages per 1 seconds" in answer.json()["message"]


async def test_per_number_limit_names_the_number(
    limited_api: SimulatorApi, limited: Simulator
) -> None:
    limited.set_limits(account_messages_per_s=0)
    assert [await send(limited_api, A) for _ in range(10)] == [201] * 10
    answer = await limited_api.call("POST", "/messages", json={"from": A, "to": PEER, "text": "x"})
    assert answer.status == 403
    body = answer.json()
    assert body["code"] == "message-rate-limit-per-tn"
    assert A in body["message"]
    assert {"name": "number", "value": A} in body["details"]
    assert await send(limited_api, B) == 201


async def test_window_is_half_open_and_rejections_do_not_count(
    limited_api: SimulatorApi, limited: Simulator, clock: FakeClock
) -> None:
    assert [await send(limited_api, A) for _ in range(10)] == [201] * 10
    clock.now += 5
    assert await send(limited_api, A) == 403  # refused: does not count
    clock.now += 4.999
    assert await send(limited_api, A) == 403  # the first ten are still inside (now - 10, now]
    clock.now += 0.001  # exactly 10 s after the first ten: they leave the window
    assert [await send(limited_api, A) for _ in range(10)] == [201] * 10
    assert await send(limited_api, A) == 403


async def test_batch_items_over_the_limit_get_per_item_errors(
    limited_api: SimulatorApi, limited: Simulator
) -> None:
    items = [{"from": A, "to": PEER, "text": str(i)} for i in range(12)]
    answer = await limited_api.call("POST", "/messages", json=items)
    assert answer.status == 202
    results = answer.json()
    assert [r["result"] for r in results] == ["accepted"] * 10 + ["error"] * 2
    error = results[10]["error"]
    assert error["category"] == "limit"
    assert error["code"] in ("message-rate-limit", "message-rate-limit-per-tn")
    assert len(limited.state.messages) == 10


async def test_refused_sends_are_counted_by_code_single_and_batch(
    limited_api: SimulatorApi, limited: Simulator, sim_http: aiohttp.ClientSession
) -> None:
    assert [await send(limited_api, A) for _ in range(11)] == [201] * 10 + [403]
    items = [{"from": A, "to": PEER, "text": str(i)} for i in range(2)]
    assert (await limited_api.call("POST", "/messages", json=items)).status == 202
    unknown = await limited_api.call(
        "POST", "/messages", json={"from": "+19195550999", "to": PEER, "text": "x"}
    )
    assert unknown.status == 401
    control = limited.base_url.removesuffix("/v1") + "/_sim/refusals"
    async with sim_http.get(control) as answer:
        assert answer.status == 200
        counts = await answer.json()
    assert sum(n for code, n in counts.items() if code.startswith("message-rate-limit")) == 3
    assert counts["number-access-denied"] == 1
    await limited.platform.reset()
    async with sim_http.get(control) as answer:
        assert await answer.json() == {}


async def test_limits_change_and_switch_off_at_run_time(
    limited_api: SimulatorApi, limited: Simulator
) -> None:
    answer = await limited_api.control("PUT", "/limits", json={"number_messages_per_s": 0.2})
    assert answer.status == 200
    assert answer.json()["number_messages_per_s"] == 0.2
    assert [await send(limited_api, A) for _ in range(3)] == [201, 201, 403]
    off = await limited_api.control("DELETE", "/limits")
    assert off.json()["account_messages_per_s"] == 0
    assert [await send(limited_api, A) for _ in range(30)] == [201] * 30
    bad = await limited_api.control("PUT", "/limits", json={"account_messages_per_s": -1})
    assert bad.status == 400
    assert "account_messages_per_s" in bad.json()["message"]
    unknown = await limited_api.control("PUT", "/limits", json={"messages_per_hour": 1})
    assert unknown.status == 400


async def test_limits_from_settings_at_start(make_simulator: MakeSimulator) -> None:
    simulator = await make_simulator(account_messages_per_s=2.5)
    assert simulator.limits.account_messages_per_s == 2.5
    assert simulator.limits.number_messages_per_s == 0


# 429 resource families ----------------------------------------------------------------------


async def test_other_families_get_429_with_reset_header(
    limited_api: SimulatorApi, limited: Simulator, clock: FakeClock
) -> None:
    limited.set_limits(resource_requests_per_s=1.0, resource_burst=1)
    assert (await limited_api.call("GET", "/messages")).status == 200
    before_ms = time.time() * 1000
    answer = await limited_api.call("GET", "/messages")
    assert answer.status == 429
    reset = int(answer.headers["X-RateLimit-Reset"])
    assert before_ms + 900 <= reset <= time.time() * 1000 + 1100
    body = answer.json()
    assert body == {
        "category": "too-many-requests",
        "code": "rate-limit-reached",
        "details": [
            {"name": "rateLimitResetTime", "value": str(reset)},
            {"name": "requestMethod", "value": "GET"},
            {"name": "remoteAddress", "value": "127.0.0.1"},
            {"name": "requestPath", "value": f"users/{limited.user_id}/messages"},
        ],
    }
    assert "Retry-After" not in answer.headers
    # Families are independent, and message sends are not in a 429 family.
    assert (await limited_api.call("GET", "/applications")).status == 200
    assert await send(limited_api, A) == 201
    clock.now += 1.0
    assert (await limited_api.call("GET", "/messages")).status == 200


async def test_number_orders_have_their_own_bucket(
    limited_api: SimulatorApi, limited: Simulator
) -> None:
    limited.set_limits(number_orders_per_min=60, number_orders_burst=2)
    statuses = []
    for number in ("+14155550001", "+14155550002", "+14155550003"):
        answer = await limited_api.call("POST", "/phoneNumbers", json={"number": number})
        statuses.append(answer.status)
    assert statuses == [201, 201, 429]
    assert (await limited_api.call("GET", "/phoneNumbers")).status == 200


async def test_a2p_numbers_have_only_the_account_limit(
    limited_api: SimulatorApi, limited: Simulator
) -> None:
    limited.set_limits(account_messages_per_s=2.0, a2p_numbers=[A])
    assert [await send(limited_api, A) for _ in range(20)] == [201] * 20
    assert await send(limited_api, A) == 403
    listed = await limited_api.control("GET", "/limits")
    assert listed.json()["a2p_numbers"] == [A]

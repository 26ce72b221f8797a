"""``bridge simulator --application-url``: an account a bridge can use at once, as in Compose.

A bridge treats a simulator it is pointed at as the real Catapult, so that simulator's account
must already hold an application calling the receiver and numbers assigned to it. Checked end to
end: a standalone simulator bootstrapped with a real receiver's callback URL delivers an inbound
SMS to one of its numbers, and the event reaches the real RabbitMQ.
"""

from __future__ import annotations

import logging
from collections.abc import Awaitable, Callable
from urllib.parse import quote, urlsplit, urlunsplit

import aiohttp
import orjson
import pytest

from bridge.cli import build_parser
from bridge.settings import Settings
from bridge.simulator.cli import bootstrap, simulator_overrides
from tests.fixtures.receiver import CREDENTIALS, EventQueues, MakeReceiver
from tests.fixtures.simulator import MakeSimulator

OpenQueues = Callable[[Settings], Awaitable[EventQueues]]


def _with_credentials(url: str) -> str:
    parts = urlsplit(url)
    userinfo = f"{CREDENTIALS['username']}:{quote(CREDENTIALS['password'], safe='')}"
    return urlunsplit(parts._replace(netloc=f"{userinfo}@{parts.netloc}"))


async def test_a_bootstrapped_simulator_calls_the_receiver_for_its_numbers(
    make_settings: Callable[..., Settings],
    make_receiver: MakeReceiver,
    make_simulator: MakeSimulator,
    event_queues: OpenQueues,
    caplog: pytest.LogCaptureFixture,
) -> None:
    settings = make_settings(receiver=CREDENTIALS)
    queues = await event_queues(settings)
    receiver = await make_receiver(settings)
    url = _with_credentials(receiver.callback_url)
    dashboard = ("+19195550100", "+19195550101", "+19195550102")
    simulator = await make_simulator(application_url=url, dashboard_numbers=dashboard)

    with caplog.at_level(logging.INFO, logger="bridge.simulator.cli"):
        application_id = bootstrap(simulator, simulator.settings)

    on_account = [simulator.state.number(n) for n in dashboard]
    assert all(r is not None and r.application_id == application_id for r in on_account)
    assert CREDENTIALS["password"] not in caplog.text
    async with (
        aiohttp.ClientSession(timeout=aiohttp.ClientTimeout(total=15)) as client,
        client.post(
            simulator.control_url + "/inbound",
            json={"from": "+15555550123", "to": dashboard[0], "text": "hello bridge"},
        ) as response,
    ):
        assert response.status in (200, 201, 202)
    [message] = await queues.take(queues.inbound)
    event = orjson.loads(message.body)
    assert event["data"]["text"] == "hello bridge"
    assert event["data"]["to"] == dashboard[0]


async def test_without_a_url_the_account_stays_empty(make_simulator: MakeSimulator) -> None:
    simulator = await make_simulator()
    assert bootstrap(simulator, simulator.settings) is None
    assert simulator.state.applications == {}


async def test_a_url_that_is_no_http_url_is_refused(make_simulator: MakeSimulator) -> None:
    simulator = await make_simulator(application_url="ftp://user:pw@bridge/x")
    with pytest.raises(ValueError, match=r"simulator\.application_url") as caught:
        bootstrap(simulator, simulator.settings)
    assert "pw" not in str(caught.value)


def test_the_flag_sets_the_setting() -> None:
    args = build_parser().parse_args(
        ["simulator", "--application-url", "http://u:p@bridge:8080/catapult/messages"]
    )
    assert simulator_overrides(args)["simulator.application_url"] == (
        "http://u:p@bridge:8080/catapult/messages"
    )

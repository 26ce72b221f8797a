"""The client over real sockets against servers that fail: closed ports, silence, bad answers.

The simulator answers like Catapult; these small aiohttp servers answer like a broken network or
a broken proxy in front of it, which the simulator (rightly) never does. Every wait has a deadline.
"""

from __future__ import annotations

import asyncio
import base64
import html
import json
import logging
import socket
import traceback
from collections.abc import AsyncIterator, Awaitable, Callable
from dataclasses import dataclass, field
from urllib.parse import quote, quote_plus

import pytest
from aiohttp import web
from pydantic import SecretStr

from bridge.catapult import (
    AmbiguousError,
    BadRequestError,
    CatapultClient,
    CatapultError,
    Message,
    OutboundMessage,
    ServerError,
    TransportError,
)
from bridge.catapult.session import MAX_BODY_BYTES

SECRET = "transport-test-secret-9f8e7d"
DEADLINE_S = 5.0
MESSAGE = OutboundMessage(from_="+19195550100", to="+19195550101", text="hello")


def assert_secret_free(error: BaseException) -> None:
    rendered = str(error) + repr(error) + "".join(traceback.format_exception(error))
    assert SECRET not in rendered


def make_client(base_url: str, **overrides: float) -> CatapultClient:
    options: dict[str, float] = {"timeout_s": 0.5, "connect_timeout_s": 0.5} | overrides
    return CatapultClient(
        base_url=base_url,
        user_id="u-transport",
        api_token="t-transport",
        api_secret=SecretStr(SECRET),
        timeout_s=options["timeout_s"],
        connect_timeout_s=options["connect_timeout_s"],
        max_connections=int(options.get("max_connections", 4)),
    )


@dataclass
class StubServer:
    """A real HTTP server whose one catch-all handler the test chooses."""

    base_url: str
    seen: list[str] = field(default_factory=list)
    entered: asyncio.Event = field(default_factory=asyncio.Event)
    release: asyncio.Event = field(default_factory=asyncio.Event)


Handler = Callable[[web.Request], Awaitable[web.StreamResponse]]


@pytest.fixture
async def stub_server() -> AsyncIterator[Callable[[Handler], Awaitable[StubServer]]]:
    runners: list[tuple[web.AppRunner, StubServer]] = []

    async def start(handler: Handler) -> StubServer:
        state = StubServer(base_url="")

        async def catch_all(request: web.Request) -> web.StreamResponse:
            state.seen.append(f"{request.method} {request.path_qs}")
            state.entered.set()
            return await handler(request)

        app = web.Application()
        app.router.add_route("*", "/{tail:.*}", catch_all)
        runner = web.AppRunner(app, shutdown_timeout=1)
        await runner.setup()
        site = web.TCPSite(runner, "127.0.0.1", 0)
        await site.start()
        port = runner.addresses[0][1]
        state.base_url = f"http://127.0.0.1:{port}/v1"
        runners.append((runner, state))
        return state

    yield start
    for runner, state in runners:
        state.release.set()
        await runner.cleanup()


def closed_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind(("127.0.0.1", 0))
        port: int = sock.getsockname()[1]
    return port


async def test_refused_connection_is_a_transport_error() -> None:
    async with make_client(f"http://127.0.0.1:{closed_port()}/v1") as client:
        with pytest.raises(TransportError) as caught:
            await asyncio.wait_for(client.send_message(MESSAGE), DEADLINE_S)
    error = caught.value
    assert error.status is None
    assert error.method == "POST"
    assert error.path == "/v1/users/u-transport/messages"
    assert "before the request was sent" in str(error)
    assert_secret_free(error)


async def test_connect_timeout_is_a_transport_error() -> None:
    # A listening socket that never accepts, its backlog filled: the kernel drops further SYNs,
    # so a new connection neither succeeds nor fails until the connect timeout.
    listener = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    listener.bind(("127.0.0.1", 0))
    listener.listen(0)
    listener.setblocking(False)
    port = listener.getsockname()[1]
    fillers: list[socket.socket] = []
    try:
        for _ in range(4):
            filler = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
            filler.setblocking(False)
            filler.connect_ex(("127.0.0.1", port))
            fillers.append(filler)
        async with make_client(f"http://127.0.0.1:{port}/v1", connect_timeout_s=0.3) as client:
            with pytest.raises(TransportError) as caught:
                await asyncio.wait_for(client.get_message("m-x"), DEADLINE_S)
    finally:
        for filler in fillers:
            filler.close()
        listener.close()
    assert_secret_free(caught.value)


async def test_silence_after_sending_is_ambiguous(
    stub_server: Callable[[Handler], Awaitable[StubServer]],
) -> None:
    async def never_answers(request: web.Request) -> web.StreamResponse:
        await server.release.wait()  # set only when the test tears the server down
        return web.Response(status=201)

    server = await stub_server(never_answers)
    async with make_client(server.base_url) as client:
        with pytest.raises(AmbiguousError) as caught:
            await asyncio.wait_for(client.send_message(MESSAGE), DEADLINE_S)
    error = caught.value
    assert server.seen == ["POST /v1/users/u-transport/messages"]
    assert "no answer within 0.5 s after the request was sent" in str(error)
    assert error.status is None
    assert_secret_free(error)


async def test_connection_closed_after_sending_is_ambiguous(
    stub_server: Callable[[Handler], Awaitable[StubServer]],
) -> None:
    async def hangs_up(request: web.Request) -> web.StreamResponse:
        assert request.transport is not None
        request.transport.close()
        await server.release.wait()
        return web.Response()

    server = await stub_server(hangs_up)
    async with make_client(server.base_url) as client:
        with pytest.raises(AmbiguousError) as caught:
            await asyncio.wait_for(client.send_message(MESSAGE), DEADLINE_S)
    assert "after the request was sent" in str(caught.value)
    assert_secret_free(caught.value)


async def test_waiting_for_a_free_connection_times_out_before_sending(
    stub_server: Callable[[Handler], Awaitable[StubServer]],
) -> None:
    async def never_answers(request: web.Request) -> web.StreamResponse:
        await server.release.wait()
        return web.Response(status=201)

    server = await stub_server(never_answers)
    # The pool wait is bounded by the connect timeout, well before the first request's own
    # deadline frees the connection: the second request can never be sent.
    async with make_client(
        server.base_url, max_connections=1, timeout_s=3.0, connect_timeout_s=0.3
    ) as client:
        first = asyncio.create_task(client.send_message(MESSAGE))
        await asyncio.wait_for(server.entered.wait(), DEADLINE_S)  # holds the only connection
        second = asyncio.create_task(client.send_message(MESSAGE))
        await asyncio.wait({second}, timeout=1.5)
        assert second.done(), "the wait for a free connection is bounded by connect_timeout_s"
        assert not first.done()
        done, _ = await asyncio.wait({first, second}, timeout=DEADLINE_S)
    assert done == {first, second}
    assert isinstance(first.exception(), AmbiguousError)
    assert isinstance(second.exception(), TransportError)
    assert len(server.seen) == 1  # the connection limit held the second request back


@pytest.mark.parametrize(
    ("status", "body", "content_type", "expected", "fragment"),
    [
        (502, "<html><body><h1>502 Bad Gateway</h1></body></html>", "text/html", ServerError,
         "HTTP 502 with a non-JSON body: <html><body><h1>502 Bad Gateway"),
        (500, "", "text/plain", ServerError, "HTTP 500 with an empty body"),
        (503, "upstream connect error", "text/plain", ServerError, "upstream connect error"),
        (400, "Bad Request: malformed", "text/plain", BadRequestError, "Bad Request: malformed"),
        (413, f"echo {SECRET}", "text/plain", BadRequestError, "echo ***"),
    ],
)  # fmt: skip
async def test_error_answer_that_is_not_json_is_still_useful(
    stub_server: Callable[[Handler], Awaitable[StubServer]],
    status: int,
    body: str,
    content_type: str,
    expected: type[CatapultError],
    fragment: str,
) -> None:
    async def answer(request: web.Request) -> web.StreamResponse:
        return web.Response(status=status, text=body, content_type=content_type)

    server = await stub_server(answer)
    async with make_client(server.base_url) as client:
        with pytest.raises(CatapultError) as caught:
            await asyncio.wait_for(client.send_message(MESSAGE), DEADLINE_S)
    assert type(caught.value) is expected
    assert caught.value.status == status
    assert fragment in str(caught.value)
    assert_secret_free(caught.value)


WRONG_COLLECTION = {"Location": "/v1/users/u-transport/phoneNumbers/n-1"}
LISTED = {"id": "m-1", "from": "+19195550100", "to": "+19195550101"}
BAD_LINK = {"Link": '<http://[::1/v1/users/u-transport/messages?sortKeyLT=1>; rel="next"'}


async def list_all(client: CatapultClient) -> list[Message]:
    return [message async for message in client.list_messages()]


@pytest.mark.parametrize(
    ("answer", "operation", "expected", "fragment"),
    [
        (lambda: web.Response(status=201), "send", AmbiguousError, "empty Location"),
        (lambda: web.Response(status=201, headers=WRONG_COLLECTION), "send", AmbiguousError,
         "does not name a resource under /messages/"),
        (lambda: web.Response(status=202, text="not json"), "batch", AmbiguousError,
         "could not be read"),
        (lambda: web.json_response([{"result": "accepted"}], status=202), "batch",
         AmbiguousError, "expected a list of 2 results"),
        (lambda: web.Response(status=200, text="{"), "get", ServerError, "not a Message"),
        (lambda: web.json_response({"id": "m-1"}), "get", ServerError, "not a Message"),
        (lambda: web.json_response({"messages": []}), "list", ServerError,
         "not a list of messages"),
        (lambda: web.json_response([LISTED], headers=BAD_LINK), "list-all", ServerError,
         "unusable Link header"),
        (lambda: web.Response(status=201), "import", AmbiguousError, "empty Location"),
        (lambda: web.Response(status=201), "application", AmbiguousError, "empty Location"),
    ],
)  # fmt: skip
async def test_a_2xx_answer_that_cannot_be_read_is_a_typed_error(
    stub_server: Callable[[Handler], Awaitable[StubServer]],
    answer: Callable[[], web.Response],
    operation: str,
    expected: type[CatapultError],
    fragment: str,
) -> None:
    async def respond(request: web.Request) -> web.StreamResponse:
        return answer()

    server = await stub_server(respond)
    async with make_client(server.base_url) as client:
        calls: dict[str, Callable[[], Awaitable[object]]] = {
            "send": lambda: client.send_message(MESSAGE),
            "batch": lambda: client.send_messages([MESSAGE, MESSAGE]),
            "get": lambda: client.get_message("m-1"),
            "list": lambda: anext(aiter(client.list_messages())),
            "list-all": lambda: list_all(client),
            "import": lambda: client.import_number(
                number="+19195550100",
                account_id="1",
                user_name="u",
                password=SecretStr(SECRET),
            ),
            "application": lambda: client.create_application(name="app"),
        }
        with pytest.raises(CatapultError) as caught:
            await asyncio.wait_for(calls[operation](), DEADLINE_S)
    assert type(caught.value) is expected
    assert fragment in str(caught.value)
    assert_secret_free(caught.value)


async def test_an_oversized_answer_is_not_read_whole(
    stub_server: Callable[[Handler], Awaitable[StubServer]],
) -> None:
    async def huge(request: web.Request) -> web.StreamResponse:
        response = web.StreamResponse(status=200)
        await response.prepare(request)
        chunk = b"[" + b" " * (1024 * 1024)
        for _ in range(MAX_BODY_BYTES // len(chunk) + 2):
            await response.write(chunk)
        return response

    server = await stub_server(huge)
    async with make_client(server.base_url, timeout_s=5) as client:
        with pytest.raises(ServerError, match="larger than"):
            await asyncio.wait_for(client.get_message("m-1"), DEADLINE_S)


async def test_no_secret_in_debug_logs(
    stub_server: Callable[[Handler], Awaitable[StubServer]], caplog: pytest.LogCaptureFixture
) -> None:
    async def answer(request: web.Request) -> web.StreamResponse:
        return web.Response(status=500, text=f"boom {SECRET}")

    server = await stub_server(answer)
    caplog.set_level(logging.DEBUG, logger="bridge.catapult")
    async with make_client(server.base_url) as client:
        with pytest.raises(ServerError):
            await asyncio.wait_for(client.send_message(MESSAGE), DEADLINE_S)
    async with make_client(f"http://127.0.0.1:{closed_port()}/v1") as client:
        with pytest.raises(TransportError):
            await asyncio.wait_for(client.send_message(MESSAGE), DEADLINE_S)
    assert any("POST /v1/users/u-transport/messages" in r.getMessage() for r in caplog.records)
    assert all(SECRET not in r.getMessage() for r in caplog.records)


async def test_the_client_sends_basic_auth_and_json(
    stub_server: Callable[[Handler], Awaitable[StubServer]],
) -> None:
    seen: list[web.Request] = []
    bodies: list[bytes] = []

    async def capture(request: web.Request) -> web.StreamResponse:
        seen.append(request)
        bodies.append(await request.read())
        return web.Response(
            status=201, headers={"Location": f"{server.base_url}/users/u-transport/messages/m-1"}
        )

    server = await stub_server(capture)
    async with make_client(server.base_url) as client:
        ref = await asyncio.wait_for(client.send_message(MESSAGE), DEADLINE_S)
    assert ref.id == "m-1"
    (request,) = seen
    assert request.headers["Content-Type"].startswith("application/json")
    expected = base64.b64encode(f"t-transport:{SECRET}".encode()).decode()
    assert request.headers["Authorization"] == f"Basic {expected}"
    assert bodies == [b'{"from":"+19195550100","to":"+19195550101","text":"hello"}']


async def test_a_closed_client_refuses_calls() -> None:
    client = make_client("http://127.0.0.1:9/v1")
    await client.close()
    with pytest.raises(RuntimeError, match="closed"):
        await client.get_message("m-1")
    assert SECRET not in repr(client)


async def test_a_number_in_the_path_is_url_encoded(
    stub_server: Callable[[Handler], Awaitable[StubServer]],
) -> None:
    raw_paths: list[str] = []

    async def capture(request: web.Request) -> web.StreamResponse:
        raw_paths.append(request.raw_path)
        return web.json_response({"id": "n-1", "number": "+19195550100"})

    server = await stub_server(capture)
    async with make_client(server.base_url) as client:
        number = await asyncio.wait_for(client.get_number("+19195550100"), DEADLINE_S)
        await asyncio.wait_for(client.get_number("n-1"), DEADLINE_S)
    assert number.number == "+19195550100"
    assert raw_paths == [
        "/v1/users/u-transport/phoneNumbers/%2B19195550100",
        "/v1/users/u-transport/phoneNumbers/n-1",
    ]


TOKEN = "t-transport"
DASHBOARD_ACCOUNT = "5566778"
DASHBOARD_USER = "dash-user-name"
DASHBOARD_PASSWORD = 'Dashb0ard/pa55+w"rd&<x>'


def every_form(value: str) -> set[str]:
    """The ways a server can echo a value back: plain, URL-encoded, JSON, HTML, base64."""
    return {
        value,
        quote(value, safe=""),
        quote_plus(value),
        json.dumps(value)[1:-1],
        html.escape(value),
        base64.b64encode(value.encode()).decode(),
    }


def credentials() -> dict[str, set[str]]:
    basic = base64.b64encode(f"{TOKEN}:{SECRET}".encode()).decode()
    dashboard = base64.b64encode(f"{DASHBOARD_USER}:{DASHBOARD_PASSWORD}".encode()).decode()
    forms = {
        name: every_form(value)
        for name, value in {
            "api token": TOKEN,
            "api secret": SECRET,
            "account id": DASHBOARD_ACCOUNT,
            "user name": DASHBOARD_USER,
            "password": DASHBOARD_PASSWORD,
        }.items()
    }
    forms["authorization"] = {basic, quote(basic, safe="")}
    forms["dashboard pair"] = {dashboard}
    return forms


def leaked(error: BaseException) -> list[str]:
    rendered = str(error) + repr(error) + "".join(traceback.format_exception(error))
    rendered += repr(getattr(error, "details", ()))
    found = []
    for name, forms in credentials().items():
        for form in forms:
            if form in rendered:
                found.append(f"{name}: {form!r}")
            # The start of a secret counts too where a text was cut short.
            found += [
                f"{name}: {form[:n]!r}…" for n in range(4, len(form)) if form[:n] + "…" in rendered
            ]
    return found


def echo_page(request: web.Request, body: bytes, *, padding: int, shape: str) -> str:
    """An error page as a proxy or a debug backend prints it: the request, echoed."""
    auth = request.headers.get("Authorization", "")
    text = body.decode()
    echoed = {
        "plain": f"{auth} {text}",
        "url": quote(f"{auth} {text}", safe=""),
        "json": json.dumps({"auth": auth, "body": text}),
        "html": html.escape(f"{auth} {text}"),
        "form": quote_plus(text),
    }[shape]
    return f"<html><body><h1>Error</h1><pre>{'x' * padding}{echoed}</pre></body></html>"


@pytest.mark.parametrize("shape", ["plain", "url", "json", "html", "form"])
@pytest.mark.parametrize("padding", [0, 150, 190, 196])
@pytest.mark.parametrize("status", [500, 502])
async def test_an_error_page_echoing_the_request_gives_no_credential_away(
    stub_server: Callable[[Handler], Awaitable[StubServer]],
    shape: str,
    padding: int,
    status: int,
) -> None:
    # The paddings put each secret across the 200-character cut of the error's snippet.
    async def echo(request: web.Request) -> web.StreamResponse:
        page = echo_page(request, await request.read(), padding=padding, shape=shape)
        return web.Response(status=status, text=page, content_type="text/html")

    server = await stub_server(echo)
    async with make_client(server.base_url) as client:
        with pytest.raises(CatapultError) as caught:
            await asyncio.wait_for(
                client.import_number(
                    number="+19195550100",
                    account_id=DASHBOARD_ACCOUNT,
                    user_name=DASHBOARD_USER,
                    password=SecretStr(DASHBOARD_PASSWORD),
                ),
                DEADLINE_S,
            )
    assert caught.value.status == status
    assert leaked(caught.value) == []


@pytest.mark.parametrize("shape", ["plain", "url", "json", "html"])
async def test_a_catapult_error_body_echoing_credentials_gives_none_away(
    stub_server: Callable[[Handler], Awaitable[StubServer]], shape: str
) -> None:
    async def echo(request: web.Request) -> web.StreamResponse:
        page = echo_page(request, await request.read(), padding=0, shape=shape)
        body = {
            "category": "authorization",
            "code": "provider-access-denied",
            "message": page,
            "details": [{"name": "echo", "value": page}, {"name": page, "value": "x"}],
        }
        return web.json_response(body, status=401)

    server = await stub_server(echo)
    async with make_client(server.base_url) as client:
        with pytest.raises(CatapultError) as caught:
            await asyncio.wait_for(
                client.import_number(
                    number="+19195550100",
                    account_id=DASHBOARD_ACCOUNT,
                    user_name=DASHBOARD_USER,
                    password=SecretStr(DASHBOARD_PASSWORD),
                ),
                DEADLINE_S,
            )
    assert caught.value.code == "provider-access-denied"
    assert leaked(caught.value) == []

"""The one aiohttp session the client talks through, and the one place aiohttp's errors end.

``CatapultSession`` holds the ``aiohttp.ClientSession`` (HTTP Basic with the API token and secret,
a connector limit, a total and a socket-connect timeout on every request), opened on first use
inside the running loop and closed once. ``exchange`` sends one request and returns the whole
answer (status, headers, body read up to ``MAX_BODY_BYTES``) whatever its status; what the answer
means is decided by ``wire.py``.

aiohttp's exceptions are translated here and nowhere else. Whether the request had left decides
the class: an aiohttp trace marks the moment the request's headers are written, so a failure or
timeout before it (refused, reset, connect timeout, no free connection in the pool) is a
``TransportError`` and after it an ``AmbiguousError``. Log lines carry method, path, status and
duration, never headers, bodies or credentials.
"""

from __future__ import annotations

import base64
import enum
import logging
import time
from collections.abc import Mapping
from dataclasses import dataclass
from types import SimpleNamespace
from typing import Any

import aiohttp
import orjson
from pydantic import SecretStr
from yarl import URL

from bridge.catapult import wire
from bridge.catapult.errors import AmbiguousError, CatapultError, TransportError

logger = logging.getLogger(__name__)

# The largest answer read: a full page of 1,000 messages of 2,048 characters fits many times over.
MAX_BODY_BYTES = 16 * 1024 * 1024
CHUNK_BYTES = 64 * 1024
USER_AGENT = "catapult-bridge"


class SessionState(enum.Enum):
    IDLE = "idle"  # no aiohttp session yet: the first request opens it inside the running loop
    OPEN = "open"
    CLOSED = "closed"


@dataclass(frozen=True, slots=True)
class Answer:
    """A whole HTTP answer; ``truncated`` when the body was longer than ``MAX_BODY_BYTES``."""

    status: int
    headers: Mapping[str, str]
    body: bytes
    truncated: bool = False

    @property
    def is_success(self) -> bool:
        return 200 <= self.status < 300

    @property
    def location(self) -> str:
        return self.headers.get("Location", "")


@dataclass(slots=True)
class _Progress:
    """Set by the trace below once this request's headers are being written."""

    sent: bool = False


async def _mark_sent(
    session: aiohttp.ClientSession,
    context: SimpleNamespace,
    params: aiohttp.TraceRequestHeadersSentParams,
) -> None:
    progress = context.trace_request_ctx
    if isinstance(progress, _Progress):
        progress.sent = True


def basic_authorization(api_token: str, api_secret: SecretStr) -> SecretStr:
    """The ``Authorization`` header value, kept as a secret until the session is built."""
    if ":" in api_token:
        raise ValueError("api_token must not contain ':' (HTTP Basic cannot carry it)")
    credentials = f"{api_token}:{api_secret.get_secret_value()}".encode()
    return SecretStr("Basic " + base64.b64encode(credentials).decode("ascii"))


class CatapultSession:
    """One aiohttp session with Catapult's credentials, limits and timeouts."""

    def __init__(
        self,
        *,
        authorization: SecretStr,
        timeout_s: float,
        connect_timeout_s: float,
        max_connections: int,
    ) -> None:
        if timeout_s <= 0 or connect_timeout_s <= 0 or max_connections <= 0:
            raise ValueError("timeout_s, connect_timeout_s and max_connections must be positive")
        self._authorization = authorization
        # ``connect`` bounds the wait for a free connection of the pool as well as the connect
        # itself: a request that cannot even get a connection fails as "not sent" within it,
        # instead of waiting for the whole ``total`` and racing the requests that hold the pool.
        self._timeout = aiohttp.ClientTimeout(
            total=timeout_s, connect=connect_timeout_s, sock_connect=connect_timeout_s
        )
        self._timeout_s = timeout_s
        self._max_connections = max_connections
        self.state = SessionState.IDLE
        self._session: aiohttp.ClientSession | None = None

    def open(self) -> aiohttp.ClientSession:
        if self.state is SessionState.CLOSED:
            raise RuntimeError("the Catapult client is closed")
        if self._session is None:
            trace = aiohttp.TraceConfig()
            trace.on_request_headers_sent.append(_mark_sent)
            self._session = aiohttp.ClientSession(
                timeout=self._timeout,
                connector=aiohttp.TCPConnector(limit=self._max_connections),
                headers={
                    "Accept": "application/json",
                    "Authorization": self._authorization.get_secret_value(),
                    "User-Agent": USER_AGENT,
                },
                trace_configs=[trace],
                raise_for_status=False,
            )
            self.state = SessionState.OPEN
        return self._session

    async def close(self) -> None:
        """Close the aiohttp session (idempotent); no request can be made afterwards."""
        session, self._session, self.state = self._session, None, SessionState.CLOSED
        if session is not None:
            await session.close()

    async def exchange(
        self, method: str, url: URL, body: Any, request: wire.RequestContext
    ) -> Answer:
        """Send one request (``body`` as JSON unless None) and read its whole answer."""
        session = self.open()
        progress = _Progress()
        data = None if body is None else orjson.dumps(body)
        headers = {"Content-Type": "application/json; charset=utf-8"} if data is not None else {}
        started = time.monotonic()
        try:
            async with session.request(
                method,
                url,
                data=data,
                headers=headers,
                allow_redirects=False,
                trace_request_ctx=progress,
            ) as response:
                content, truncated = await _read_body(response)
                answer = Answer(response.status, response.headers, content, truncated)
        except (aiohttp.ClientConnectorError, aiohttp.ConnectionTimeoutError) as exc:
            raise self._failure(TransportError, exc, request) from exc
        except (aiohttp.ClientError, TimeoutError) as exc:
            cls = AmbiguousError if progress.sent else TransportError
            raise self._failure(cls, exc, request) from exc
        logger.debug(
            "catapult %s %s -> %d in %.1f ms",
            method,
            request.path,
            answer.status,
            (time.monotonic() - started) * 1000,
        )
        return answer

    def _failure(
        self, cls: type[CatapultError], exc: BaseException, request: wire.RequestContext
    ) -> CatapultError:
        if isinstance(exc, TimeoutError):
            what = f"no answer within {self._timeout_s:g} s"
        else:
            what = request.redactor.clip(f"{type(exc).__name__}: {exc}", wire.MESSAGE_CHARS)
        if cls is AmbiguousError:
            text = f"{what} after the request was sent; Catapult may have acted on it"
        else:
            text = f"{what} before the request was sent"
        logger.debug("catapult %s %s failed: %s", request.method, request.path, text)
        return cls(message=text, method=request.method, path=request.path)


async def _read_body(response: aiohttp.ClientResponse) -> tuple[bytes, bool]:
    """The body, read up to ``MAX_BODY_BYTES``; True as second item when there was more."""
    chunks: list[bytes] = []
    size = 0
    async for chunk in response.content.iter_chunked(CHUNK_BYTES):
        size += len(chunk)
        if size > MAX_BODY_BYTES:
            return b"".join(chunks), True
        chunks.append(chunk)
    return b"".join(chunks), False

"""The Catapult v1 client: one method per operation, over one ``CatapultSession``.

``CatapultClient`` builds each request (URL under ``{base}/users/{userId}/``, JSON body from the
typed models of ``models.py``), lets ``session.py`` exchange it, and turns the answer into a typed
result or raises one of the errors of ``errors.py`` through the pure functions of ``wire.py``. It is
an async context manager; ``close()`` does the same as leaving the ``async with``.

Secrets (the API token and secret, an import's Dashboard credentials) travel only in the
``Authorization`` header and the import body; every error is built with them redacted in every form
(``redaction.py``), and nothing here logs.
"""

from __future__ import annotations

from collections.abc import AsyncGenerator, Sequence
from datetime import datetime
from types import TracebackType
from typing import Any, Self, TypeVar
from urllib.parse import quote

import orjson
from pydantic import SecretStr, ValidationError
from yarl import URL

from bridge.catapult import wire
from bridge.catapult.models import (
    Account,
    Application,
    ApplicationFields,
    ApplicationRef,
    BatchItem,
    DashboardCredentials,
    HttpMethod,
    ImportNumberRequest,
    Message,
    MessageRef,
    NumberRef,
    OutboundMessage,
    PhoneNumber,
)
from bridge.catapult.redaction import Redactor
from bridge.catapult.session import (
    MAX_BODY_BYTES,
    Answer,
    CatapultSession,
    basic_authorization,
)
from bridge.settings import CatapultSettings, SimulatorSettings, masked_url

_R = TypeVar("_R", Message, PhoneNumber, Application, Account)


class CatapultClient:
    """Async client for the messaging, phone number and application resources of Catapult v1."""

    def __init__(
        self,
        *,
        base_url: str,
        user_id: str,
        api_token: str,
        api_secret: SecretStr,
        timeout_s: float = 10.0,
        connect_timeout_s: float = 3.0,
        max_connections: int = 64,
    ) -> None:
        base = URL(base_url.rstrip("/"))
        if not base.is_absolute() or base.scheme not in ("http", "https"):
            shown = masked_url(base_url)
            raise ValueError(f"base_url must be an absolute http(s) URL, got {shown!r}")
        if base.user is not None or base.password is not None:
            raise ValueError("base_url must not carry credentials; use api_token and api_secret")
        self._base = base
        self._root = URL(f"{base}/users/{quote(user_id, safe='')}", encoded=True)
        self._user_id = user_id
        secret = api_secret.get_secret_value()
        self._redactor = Redactor((api_token, secret), pairs=((api_token, secret),))
        self._session = CatapultSession(
            authorization=basic_authorization(api_token, api_secret),
            timeout_s=timeout_s,
            connect_timeout_s=connect_timeout_s,
            max_connections=max_connections,
        )

    @classmethod
    def from_settings(cls, settings: CatapultSettings, base_url: str | None = None) -> Self:
        """A client for the configured Catapult; ``base_url`` overrides ``catapult.base_url``."""
        url = base_url or settings.base_url
        user_id, token, secret = settings.user_id, settings.api_token, settings.api_secret
        if url is None or user_id is None or token is None or secret is None:
            given = {"base_url": url, "user_id": user_id, "api_token": token, "api_secret": secret}
            missing = ", ".join(f"catapult.{name}" for name, v in given.items() if v is None)
            raise ValueError(
                f"cannot build a Catapult client: {missing} not set "
                "(against the embedded simulator use CatapultClient.for_simulator)"
            )
        return cls(
            base_url=url,
            user_id=user_id,
            api_token=token.get_secret_value(),
            api_secret=secret,
            timeout_s=settings.timeout_s,
            connect_timeout_s=settings.connect_timeout_s,
            max_connections=settings.max_connections,
        )

    @classmethod
    def for_simulator(
        cls,
        simulator: SimulatorSettings,
        *,
        base_url: str,
        catapult: CatapultSettings | None = None,
    ) -> Self:
        """A client with the simulator's identities; timeouts and limits from ``catapult``."""
        limits = catapult or CatapultSettings()
        return cls(
            base_url=base_url,
            user_id=simulator.user_id,
            api_token=simulator.api_token,
            api_secret=simulator.api_secret,
            timeout_s=limits.timeout_s,
            connect_timeout_s=limits.connect_timeout_s,
            max_connections=limits.max_connections,
        )

    def __repr__(self) -> str:
        return f"CatapultClient(base_url={str(self._base)!r}, user_id={self._user_id!r})"

    async def __aenter__(self) -> Self:
        self._session.open()
        return self

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        await self.close()

    async def close(self) -> None:
        """Close the session (idempotent); the client cannot be used afterwards."""
        await self._session.close()

    # -- account ----------------------------------------------------------------------------

    async def get_account(self) -> Account:
        """The account's balance: the cheapest authenticated request, to see Catapult answer."""
        answer, request = await self._call("GET", self._url("account"))
        return self._parse(Account, answer, request)

    # -- messages ---------------------------------------------------------------------------

    async def send_message(self, message: OutboundMessage) -> MessageRef:
        answer, request = await self._call(
            "POST", self._url("messages"), body=message.to_wire(), sender=message.from_
        )
        return MessageRef(
            id=self._created_id(answer, request, "messages"), location=answer.location
        )

    async def send_messages(self, messages: Sequence[OutboundMessage]) -> list[BatchItem]:
        """Send up to 50 messages in one request; one result per message, in request order."""
        url = self._url("messages")
        senders = [m.from_ for m in messages]
        if len(messages) > wire.MAX_BATCH:
            raise wire.batch_too_large(len(messages), self._context("POST", url))
        if not messages:
            return []
        sender = senders[0] if len(set(senders)) == 1 else None
        answer, request = await self._call(
            "POST", url, body=[m.to_wire() for m in messages], sender=sender
        )
        try:
            return wire.batch_items(orjson.loads(answer.body), request, senders)
        except (orjson.JSONDecodeError, ValueError) as exc:
            raise wire.unreadable_response(answer.status, str(exc), answer.body, request) from exc

    async def get_message(self, message_id: str) -> Message:
        answer, request = await self._call("GET", self._url("messages", message_id))
        return self._parse(Message, answer, request)

    async def list_messages(
        self,
        *,
        from_: str | None = None,
        to: str | None = None,
        from_date_time: datetime | str | None = None,
        to_date_time: datetime | str | None = None,
        direction: str | None = None,
        state: str | None = None,
        delivery_state: str | None = None,
        sort_order: str | None = None,
        size: int | None = None,
    ) -> AsyncGenerator[Message, None]:
        """Every message matching the filters, following ``Link rel="next"`` page by page.

        An empty page ends the listing even when it carries a next link (Catapult sends one
        whether or not another page has messages). Nothing is held open between pages; a caller
        that stops early should ``aclose()`` the generator.
        """
        url: URL | None = self.messages_url(
            from_=from_,
            to=to,
            from_date_time=from_date_time,
            to_date_time=to_date_time,
            direction=direction,
            state=state,
            delivery_state=delivery_state,
            sort_order=sort_order,
            size=size,
        )
        seen: set[URL] = set()
        while url is not None and url not in seen:
            seen.add(url)
            page, url = await self.messages_page(url)
            if not page:
                return
            for message in page:
                yield message

    def messages_url(
        self,
        *,
        from_: str | None = None,
        to: str | None = None,
        from_date_time: datetime | str | None = None,
        to_date_time: datetime | str | None = None,
        direction: str | None = None,
        state: str | None = None,
        delivery_state: str | None = None,
        sort_order: str | None = None,
        size: int | None = None,
    ) -> URL:
        """The URL of the first page of a message listing (for ``messages_page``)."""
        query: dict[str, str] = {}
        for name, value in (
            ("from", from_),
            ("to", to),
            ("fromDateTime", from_date_time),
            ("toDateTime", to_date_time),
            ("direction", direction),
            ("state", state),
            ("deliveryState", delivery_state),
            ("sortOrder", sort_order),
            ("size", size),
        ):
            if value is not None:
                query[name] = (
                    wire.format_date_time(value) if isinstance(value, datetime) else str(value)
                )
        return self._url("messages").with_query(query)

    async def messages_page(self, url: URL) -> tuple[list[Message], URL | None]:
        """One page of a message listing and the URL of the next one (None: the last page).

        For a caller that paces its requests or tries a refused page again; ``list_messages``
        follows the pages itself. An empty page may still carry a next link.
        """
        answer, request = await self._call("GET", url)
        page = self._parse_page(answer, request)
        return page, self._next_page(answer, request, current=url)

    # -- phone numbers ----------------------------------------------------------------------

    async def import_number(
        self,
        *,
        number: str,
        account_id: str,
        user_name: str,
        password: SecretStr,
        application_id: str | None = None,
        name: str | None = None,
    ) -> NumberRef:
        """Import one number from a Bandwidth Dashboard account (provider bandwidth-dashboard)."""
        request_body = ImportNumberRequest(
            number=number,
            application_id=application_id,
            name=name,
            credentials=DashboardCredentials(
                account_id=account_id, user_name=user_name, password=password
            ),
        )
        answer, request = await self._call(
            "POST",
            self._url("phoneNumbers"),
            body=request_body.to_wire(),
            redactor=self._redactor.extended(
                (account_id, user_name, password.get_secret_value()),
                pairs=((user_name, password.get_secret_value()),),
            ),
        )
        return NumberRef(
            id=self._created_id(answer, request, "phoneNumbers"), location=answer.location
        )

    async def get_number(self, number_or_id: str) -> PhoneNumber:
        """A phone number by its ``n-`` id or its E.164 number."""
        answer, request = await self._call("GET", self._url("phoneNumbers", number_or_id))
        return self._parse(PhoneNumber, answer, request)

    # -- applications -----------------------------------------------------------------------

    async def create_application(
        self,
        *,
        name: str,
        incoming_message_url: str | None = None,
        incoming_message_fallback_url: str | None = None,
        callback_http_method: HttpMethod | None = None,
        incoming_message_url_callback_timeout_ms: int | None = None,
    ) -> ApplicationRef:
        fields = ApplicationFields(
            name=name,
            incoming_message_url=incoming_message_url,
            incoming_message_fallback_url=incoming_message_fallback_url,
            callback_http_method=callback_http_method,
            incoming_message_url_callback_timeout_ms=incoming_message_url_callback_timeout_ms,
        )
        answer, request = await self._call("POST", self._url("applications"), body=fields.to_wire())
        return ApplicationRef(
            id=self._created_id(answer, request, "applications"), location=answer.location
        )

    async def get_application(self, app_id: str) -> Application:
        answer, request = await self._call("GET", self._url("applications", app_id))
        return self._parse(Application, answer, request)

    async def update_application(
        self,
        app_id: str,
        *,
        name: str | None = None,
        incoming_message_url: str | None = None,
        incoming_message_fallback_url: str | None = None,
        callback_http_method: HttpMethod | None = None,
        incoming_message_url_callback_timeout_ms: int | None = None,
    ) -> None:
        """Change the given fields (``POST /applications/{id}``); fields left None are kept."""
        fields = ApplicationFields(
            name=name,
            incoming_message_url=incoming_message_url,
            incoming_message_fallback_url=incoming_message_fallback_url,
            callback_http_method=callback_http_method,
            incoming_message_url_callback_timeout_ms=incoming_message_url_callback_timeout_ms,
        )
        await self._call("POST", self._url("applications", app_id), body=fields.to_wire())

    # -- the shell ----------------------------------------------------------------------------

    def _url(self, *segments: str) -> URL:
        path = "/".join(quote(segment, safe="") for segment in segments)
        return URL(f"{self._root}/{path}", encoded=True)

    def _context(
        self, method: str, url: URL, sender: str | None = None, redactor: Redactor | None = None
    ) -> wire.RequestContext:
        return wire.RequestContext(
            method=method,
            path=url.raw_path,
            sender=sender,
            redactor=redactor or self._redactor,
        )

    async def _call(
        self,
        method: str,
        url: URL,
        *,
        body: Any = None,
        sender: str | None = None,
        redactor: Redactor | None = None,
    ) -> tuple[Answer, wire.RequestContext]:
        """Send one request; return a 2xx answer or raise the ``CatapultError`` for it."""
        request = self._context(method, url, sender, redactor)
        answer = await self._session.exchange(method, url, body, request)
        if not answer.is_success:
            raise wire.error_from_response(answer.status, answer.headers, answer.body, request)
        if answer.truncated:
            reason = f"larger than {MAX_BODY_BYTES} bytes"
            raise wire.unreadable_response(answer.status, reason, b"", request)
        return answer, request

    def _created_id(self, answer: Answer, request: wire.RequestContext, collection: str) -> str:
        try:
            return wire.id_from_location(answer.location, collection)
        except ValueError as exc:
            raise wire.unreadable_response(answer.status, str(exc), answer.body, request) from exc

    @staticmethod
    def _parse(model: type[_R], answer: Answer, request: wire.RequestContext) -> _R:
        try:
            return model.model_validate_json(answer.body)
        except ValidationError as exc:
            reason = f"not a {model.__name__}: {exc.error_count()} invalid field(s)"
            raise wire.unreadable_response(answer.status, reason, answer.body, request) from exc

    def _next_page(
        self, answer: Answer, request: wire.RequestContext, *, current: URL
    ) -> URL | None:
        link = answer.headers.get("Link")
        try:
            return wire.next_page_url(link, current=current, base=self._base)
        except ValueError as exc:  # yarl refuses the link's URL (bad host, port out of range)
            reason = f"unusable Link header ({exc})"
            raise wire.unreadable_response(answer.status, reason, b"", request) from exc

    @staticmethod
    def _parse_page(answer: Answer, request: wire.RequestContext) -> list[Message]:
        try:
            data = orjson.loads(answer.body)
            if not isinstance(data, list):
                raise TypeError("not a JSON list")
            return [Message.model_validate(item) for item in data]
        except (orjson.JSONDecodeError, TypeError, ValidationError) as exc:
            reason = f"not a list of messages ({type(exc).__name__})"
            raise wire.unreadable_response(answer.status, reason, answer.body, request) from exc

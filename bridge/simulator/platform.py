"""The simulated platform: state, limits, faults and callbacks, and what happens to a message.

``Platform`` is the one object the HTTP handlers and the control endpoints work on. It owns the
state, the two rate limiters, the fault injector and the callback dispatcher, knows the account's
credentials (and the secrets it must never show: ``shown_url``), and runs the life of messages: an
accepted outbound message walks its states (and its events go to the message's ``callbackUrl`` or,
without one, to the incoming message URL of the application its ``from`` number is assigned to);
an injected inbound message is delivered to the application of its ``to`` number. Without anywhere
to send events, the walk completes at once.
"""

from __future__ import annotations

import asyncio
import base64
import hmac
import time
from collections.abc import Callable, Iterable

from bridge.catapult.redaction import Redactor
from bridge.settings import SimulatorSettings, masked_url
from bridge.simulator import errors
from bridge.simulator.callbacks import CallbackDispatcher, CallbackTarget
from bridge.simulator.events import (
    DELIVERED,
    Outcome,
    apply_step,
    final_state,
    inbound_event,
    initial_delivery_state,
    outbound_event,
    outbound_steps,
)
from bridge.simulator.faults import FaultInjector, Faults
from bridge.simulator.payloads import MessageRequest, segment_count
from bridge.simulator.ratelimit import Limits, MessageRateLimiter, ResourceRateLimiter
from bridge.simulator.store import (
    ApplicationRecord,
    MessageRecord,
    NumberRecord,
    SimulatorState,
    UserError,
    new_id,
)

DEFAULT_CALLBACK_TIMEOUT_MS = 10_000


class Platform:
    """Everything behind the simulated API; created once per simulator."""

    def __init__(
        self,
        settings: SimulatorSettings,
        *,
        clock: Callable[[], float] = time.monotonic,
        hidden: Iterable[str] = (),
    ) -> None:
        self.settings = settings
        # Its own credentials, and the secrets callback URLs carry (a receiver's path token):
        # never in what it shows (its log, the control endpoints, which need no credentials).
        self._hidden = Redactor(
            (
                settings.api_token,
                settings.api_secret.get_secret_value(),
                settings.dashboard_password.get_secret_value(),
                *hidden,
            )
        )
        self.origin = f"http://{settings.host}:{settings.port}"
        self.state = SimulatorState(
            max_messages=settings.max_messages,
            max_requests=settings.max_requests_logged,
            max_attempts=settings.max_callback_attempts,
        )
        self.limits = Limits.from_settings(settings)
        self.message_limiter = MessageRateLimiter(clock)
        self.resource_limiter = ResourceRateLimiter(clock)
        self.injector = FaultInjector(Faults.from_settings(settings), settings.fault_seed)
        self.dispatcher = CallbackDispatcher(
            self.state,
            self.injector,
            max_connections=settings.callback_max_connections,
            shown_url=self.shown_url,
        )
        self.outcomes: dict[str, Outcome] = {}
        token = f"{settings.api_token}:{settings.api_secret.get_secret_value()}"
        self._authorization = "Basic " + base64.b64encode(token.encode()).decode("ascii")

    def shown_url(self, url: str) -> str:
        """``url`` as the simulator shows it: the password and every hidden secret masked."""
        return self._hidden.redact(masked_url(url))

    # Identity ---------------------------------------------------------------------------------

    @property
    def user_id(self) -> str:
        return self.settings.user_id

    def is_authorized(self, header: str | None) -> bool:
        # Compared as bytes: ``compare_digest`` refuses non-ASCII ``str``, and a header may hold
        # any bytes (aiohttp decodes them with ``surrogateescape``).
        if header is None:
            return False
        given = header.encode("utf-8", "surrogateescape")
        return hmac.compare_digest(given, self._authorization.encode("ascii"))

    def user_url(self, origin: str | None = None) -> str:
        return f"{origin or self.origin}/v1/users/{self.user_id}"

    def message_uri(self, message_id: str, origin: str | None = None) -> str:
        return f"{self.user_url(origin)}/messages/{message_id}"

    def is_dashboard_login(self, account_id: str, user_name: str, password: str) -> bool:
        settings = self.settings
        return (
            account_id == settings.dashboard_account_id
            and user_name == settings.dashboard_user_name
            and hmac.compare_digest(
                password.encode(), settings.dashboard_password.get_secret_value().encode()
            )
        )

    # Configuration at run time ----------------------------------------------------------------

    def set_limits(self, limits: Limits) -> None:
        self.limits = limits

    def set_faults(self, faults: Faults) -> None:
        self.injector.faults = faults

    async def reset(self) -> None:
        """Back to the state of a fresh start: no data, start-time limits and faults."""
        await self.dispatcher.cancel_all()
        self.state.clear()
        self.outcomes.clear()
        self.message_limiter.clear()
        self.resource_limiter.clear()
        self.limits = Limits.from_settings(self.settings)
        self.injector.faults = Faults.from_settings(self.settings)

    # Numbers and applications -----------------------------------------------------------------

    def add_number(
        self,
        number: str,
        *,
        name: str | None = None,
        application_id: str | None = None,
        provider: str | None = None,
    ) -> NumberRecord:
        record = NumberRecord(
            id=new_id("n"),
            number=number,
            created_s=time.time(),
            name=name,
            application_id=application_id,
            provider=provider,
        )
        self.state.add_number(record)
        return record

    def add_application(self, record: ApplicationRecord) -> ApplicationRecord:
        self.state.applications[record.id] = record
        return record

    def app_target(self, app: ApplicationRecord | None) -> CallbackTarget | None:
        if app is None or app.incoming_message_url is None:
            return None
        return CallbackTarget(
            url=app.incoming_message_url,
            method=app.callback_http_method.upper(),
            timeout_ms=app.incoming_message_url_callback_timeout or DEFAULT_CALLBACK_TIMEOUT_MS,
            fallback_url=app.incoming_message_fallback_url,
        )

    # Messages ---------------------------------------------------------------------------------

    def accept_outbound(self, request: MessageRequest) -> MessageRecord:
        """Store an accepted outbound message and start its status walk."""
        is_mms = bool(request.media)
        record = MessageRecord(
            id=new_id("m"),
            sort_key=self.state.next_sort_key(),
            direction="out",
            from_=request.from_,
            to=request.to,
            text=request.text,
            media=request.media,
            receipt_requested=request.receipt_requested,
            callback_url=request.callback_url,
            callback_http_method=request.callback_http_method,
            callback_timeout=request.callback_timeout,
            fallback_url=request.fallback_url,
            tag=request.tag,
            delivery_state=initial_delivery_state(request.receipt_requested, is_mms=is_mms),
            segment_count=segment_count(request.text, is_mms=is_mms),
        )
        self.state.add_message(record)
        target = self._outbound_target(record)
        outcome = self.outcomes.get(record.to, DELIVERED)
        if target is None and not self.settings.status_delay_ms:
            final_state(record, outcome)
        else:
            self.dispatcher.spawn(self._walk(record, target, outcome), name=f"walk {record.id}")
        return record

    def _outbound_target(self, record: MessageRecord) -> CallbackTarget | None:
        if record.callback_url is not None:
            return CallbackTarget(
                url=record.callback_url,
                method=record.callback_http_method or "POST",
                timeout_ms=record.callback_timeout or DEFAULT_CALLBACK_TIMEOUT_MS,
                fallback_url=record.fallback_url,
            )
        return self.app_target(self.state.application_for(record.from_))

    async def _walk(
        self, record: MessageRecord, target: CallbackTarget | None, outcome: Outcome
    ) -> None:
        steps = outbound_steps(record, outcome)
        if len(steps) == 3 and self.injector.is_reordered():
            steps = [steps[0], steps[2], steps[1]]
        delay_s = self.settings.status_delay_ms / 1000
        uri = self.message_uri(record.id)
        for step in steps:
            if delay_s:
                await asyncio.sleep(delay_s)
            apply_step(record, step)
            if target is not None:
                await self.dispatcher.deliver(record.id, outbound_event(record, step, uri), target)

    def inject_inbound(
        self, *, from_: str, to: str, text: str, media: tuple[str, ...] = ()
    ) -> MessageRecord:
        """An SMS/MMS arriving from the network for ``to``; delivered to its application.

        Raises the ``number-not-found`` ``Problem`` when ``to`` is not on the account.
        """
        if self.state.number(to) is None:
            raise errors.number_not_found(to)
        app = self.state.application_for(to)
        record = MessageRecord(
            id=new_id("m"),
            sort_key=self.state.next_sort_key(),
            direction="in",
            from_=from_,
            to=to,
            text=text,
            media=media,
            state="received",
            application_id=None if app is None else app.id,
            segment_count=segment_count(text, is_mms=bool(media)),
        )
        self.state.add_message(record)
        target = self.app_target(app)
        if target is None:
            self.state.user_errors.append(
                UserError(
                    id=new_id("ue"),
                    time_s=time.time(),
                    category="not-found",
                    code="no-application-for-number",
                    message=f"No application is configured for number {to}",
                    details=(("number", to), ("messageId", record.id)),
                )
            )
            return record
        event = inbound_event(record, self.message_uri(record.id))
        self.dispatcher.spawn(
            self._deliver_inbound(record.id, event, target), name=f"inbound {record.id}"
        )
        return record

    async def _deliver_inbound(
        self, message_id: str, event: dict[str, object], target: CallbackTarget
    ) -> None:
        await self.dispatcher.deliver(message_id, dict(event), target)

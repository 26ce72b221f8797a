"""``Simulator``: a local Catapult v1 on a real socket, in-process or behind ``bridge simulator``.

Start it, point a client at ``base_url`` (the v1 root), steer and inspect it from Python with the
methods below (they mirror the ``/_sim`` control endpoints), stop it. Stopping closes the listening
socket first, then cancels callbacks still in flight and closes the callback session::

    async with Simulator(SimulatorSettings()) as sim:      # 127.0.0.1, a free port
        sim.add_number("+19195550100")
        ...
        attempts = await sim.wait_for_callbacks(3, message_id=message_id)
"""

from __future__ import annotations

import enum
import time
from collections.abc import Callable, Iterable
from types import TracebackType
from typing import Any

from aiohttp import web

from bridge.settings import SimulatorSettings, reachable_host
from bridge.simulator.app import create_simulator_app
from bridge.simulator.events import Outcome, OutcomeKind
from bridge.simulator.faults import Faults
from bridge.simulator.payloads import check_application
from bridge.simulator.platform import Platform
from bridge.simulator.ratelimit import Limits
from bridge.simulator.store import (
    ApplicationRecord,
    CallbackAttempt,
    MessageRecord,
    NumberRecord,
    SimulatorState,
    new_id,
)


class SimulatorStatus(enum.Enum):
    CREATED = "created"
    RUNNING = "running"
    STOPPED = "stopped"


class Simulator:
    """An in-process Catapult v1 simulator (one per test, or one per ``bridge simulator``)."""

    def __init__(
        self,
        settings: SimulatorSettings | None = None,
        *,
        clock: Callable[[], float] = time.monotonic,
        hidden: Iterable[str] = (),
    ) -> None:
        """``hidden``: secrets the callback URLs it is given carry (a receiver's path token),
        masked wherever it shows a URL, as passwords are."""
        self.settings = settings or SimulatorSettings()
        self.platform = Platform(self.settings, clock=clock, hidden=hidden)
        self.status = SimulatorStatus.CREATED
        self._runner: web.AppRunner | None = None
        self._port = 0

    # Life -------------------------------------------------------------------------------------

    async def start(self, host: str = "127.0.0.1", port: int = 0) -> None:
        if self.status is not SimulatorStatus.CREATED:
            raise RuntimeError(f"a simulator is started once; this one is {self.status.value}")
        runner = web.AppRunner(
            create_simulator_app(self.platform), access_log=None, handle_signals=False
        )
        await runner.setup()
        try:
            site = web.TCPSite(runner, host, port, backlog=1024)
            await site.start()
        except BaseException:
            await runner.cleanup()
            raise
        self._runner = runner
        self._port = int(runner.addresses[0][1])
        self.platform.origin = f"http://{reachable_host(host)}:{self._port}"
        self.status = SimulatorStatus.RUNNING

    async def stop(self) -> None:
        if self._runner is not None:
            await self._runner.cleanup()
            self._runner = None
        self.status = SimulatorStatus.STOPPED

    async def __aenter__(self) -> Simulator:
        await self.start()
        return self

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        traceback: TracebackType | None,
    ) -> None:
        await self.stop()

    # Where ------------------------------------------------------------------------------------

    @property
    def port(self) -> int:
        return self._port

    @property
    def origin(self) -> str:
        return self.platform.origin

    @property
    def base_url(self) -> str:
        """The v1 API root, e.g. ``http://127.0.0.1:PORT/v1``."""
        return f"{self.platform.origin}/v1"

    @property
    def control_url(self) -> str:
        """Root of the control endpoints, e.g. ``http://127.0.0.1:PORT/_sim``."""
        return f"{self.platform.origin}/_sim"

    @property
    def user_id(self) -> str:
        return self.settings.user_id

    @property
    def state(self) -> SimulatorState:
        return self.platform.state

    # Steering ---------------------------------------------------------------------------------

    @property
    def faults(self) -> Faults:
        return self.platform.injector.faults

    @property
    def limits(self) -> Limits:
        return self.platform.limits

    def set_faults(self, **changes: Any) -> Faults:
        """Change the named faults (see ``faults.py``); the others stay as they are."""
        self.platform.set_faults(Faults.model_validate({**self.faults.model_dump(), **changes}))
        return self.faults

    def clear_faults(self) -> Faults:
        self.platform.set_faults(Faults())
        return self.faults

    def set_limits(self, **changes: Any) -> Limits:
        """Change the named limits (0 is off); the others stay as they are."""
        self.platform.set_limits(Limits.model_validate({**self.limits.model_dump(), **changes}))
        return self.limits

    def limits_off(self) -> Limits:
        self.platform.set_limits(Limits.off())
        return self.limits

    def add_number(
        self, number: str, *, application_id: str | None = None, name: str | None = None
    ) -> NumberRecord:
        """Put ``number`` on the account (as if ordered), optionally assigned to an application."""
        if self.state.number(number) is not None:
            raise ValueError(f"{number} is already on the account")
        if application_id is not None and application_id not in self.state.applications:
            raise ValueError(f"no application {application_id}")
        return self.platform.add_number(number, name=name, application_id=application_id)

    def add_application(
        self,
        *,
        incoming_message_url: str | None = None,
        fallback_url: str | None = None,
        callback_http_method: str = "post",
        timeout_ms: int | None = None,
        name: str = "simulator application",
    ) -> ApplicationRecord:
        check_application(incoming_message_url, fallback_url)
        return self.platform.add_application(
            ApplicationRecord(
                id=new_id("a"),
                name=name,
                incoming_message_url=incoming_message_url,
                incoming_message_fallback_url=fallback_url,
                incoming_message_url_callback_timeout=timeout_ms,
                callback_http_method=callback_http_method.lower(),
            )
        )

    def set_destination(
        self, number: str, outcome: OutcomeKind = "not-delivered", delivery_code: int | None = None
    ) -> Outcome:
        """How messages to ``number`` end from now on (default for others: delivered)."""
        code = (
            delivery_code if delivery_code is not None else (0 if outcome == "delivered" else 720)
        )
        result = self.platform.outcomes[number] = Outcome(kind=outcome, delivery_code=code)
        return result

    def clear_destination(self, number: str) -> None:
        self.platform.outcomes.pop(number, None)

    def inject_inbound(
        self, *, from_: str, to: str, text: str = "", media: tuple[str, ...] | list[str] = ()
    ) -> MessageRecord:
        """An SMS (MMS with ``media``) from the network to ``to``, delivered to its application."""
        return self.platform.inject_inbound(from_=from_, to=to, text=text, media=tuple(media))

    async def reset(self) -> None:
        await self.platform.reset()

    # Waiting ----------------------------------------------------------------------------------

    async def wait_for_callbacks(
        self,
        count: int = 1,
        *,
        message_id: str | None = None,
        predicate: Callable[[CallbackAttempt], bool] | None = None,
        timeout_s: float = 5.0,
    ) -> list[CallbackAttempt]:
        """The first ``count`` callback attempts (already made or to come) that match.

        Raises ``TimeoutError`` when they do not all come within ``timeout_s``.
        """

        def matches(attempt: CallbackAttempt) -> bool:
            if message_id is not None and attempt.message_id != message_id:
                return False
            return predicate is None or predicate(attempt)

        return await self.platform.dispatcher.wait_for(count, matches, timeout_s)

    async def wait_idle(self, timeout_s: float = 5.0) -> None:
        """Until every status walk and callback delivery has finished."""
        await self.platform.dispatcher.wait_idle(timeout_s)

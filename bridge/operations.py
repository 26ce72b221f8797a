"""The operations server: ``/healthz``, ``/readyz`` and ``/metrics`` of every role in the process.

One per process, on ``operations.host:operations.port``, apart from the callback port: what it
tells (broker state, spool depth, every counter) is for the operator, not for whoever can reach
the callback URL. ``bridge run`` starts it for the roles it runs; each role gives a readiness check
(a function returning ``Readiness``) and its metrics go to the one registry it serves::

    /healthz   200 while the process serves requests
    /readyz    200 when every role is ready, else 503; JSON: {"status", "problems", <role>: report}
    /metrics   Prometheus text of the process's registry

The callback port serves callbacks and a bare ``/healthz`` only. No role logic here: a role's
report is its own (``receiver/health.py``, ``worker/health.py``).
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import Any

import orjson
from aiohttp import web
from prometheus_client import CONTENT_TYPE_LATEST, CollectorRegistry, generate_latest

from bridge.settings import reachable_host

log = logging.getLogger(__name__)

PATHS = ("/healthz", "/readyz", "/metrics")


@dataclass(frozen=True, slots=True)
class Readiness:
    """One role's answer: ready or not, and a JSON report saying which part is not."""

    is_ready: bool
    report: dict[str, Any]


ReadinessCheck = Callable[[], Readiness]

REGISTRY = web.AppKey("registry", CollectorRegistry)
CHECKS = web.AppKey("checks", dict[str, ReadinessCheck])


def json_response(body: dict[str, Any], status: int = 200) -> web.Response:
    return web.Response(status=status, body=orjson.dumps(body), content_type="application/json")


async def healthz(_request: web.Request) -> web.Response:
    return json_response({"status": "ok"})


def combined(checks: Mapping[str, ReadinessCheck]) -> Readiness:
    """Every role's readiness in one: ready when all are; problems named by role."""
    problems: list[str] = []
    report: dict[str, Any] = {}
    for role, check in checks.items():
        result = check()
        report[role] = result.report
        if not result.is_ready:
            problems.extend(f"{role}: {p}" for p in result.report.get("problems", ["not ready"]))
    ready = not problems
    return Readiness(
        ready, {"status": "ready" if ready else "not-ready", "problems": problems} | report
    )


async def readyz(request: web.Request) -> web.Response:
    checks = request.app[CHECKS]
    result = combined(checks)
    return json_response(result.report, 200 if result.is_ready else 503)


async def metrics(request: web.Request) -> web.Response:
    response = web.Response(body=generate_latest(request.app[REGISTRY]))
    response.headers["Content-Type"] = CONTENT_TYPE_LATEST
    return response


def create_operations_app(
    registry: CollectorRegistry, checks: Mapping[str, ReadinessCheck]
) -> web.Application:
    app = web.Application()
    app[REGISTRY] = registry
    app[CHECKS] = dict(checks)
    app.router.add_get("/healthz", healthz)
    app.router.add_get("/readyz", readyz)
    app.router.add_get("/metrics", metrics)
    return app


class OperationsServer:
    """The operations app on ``host:port`` (port 0 picks a free one); ``start`` / ``stop``."""

    def __init__(
        self,
        registry: CollectorRegistry,
        checks: Mapping[str, ReadinessCheck],
        *,
        host: str,
        port: int,
    ) -> None:
        self._host = host
        self._port = port
        self._runner = web.AppRunner(
            create_operations_app(registry, checks), access_log=None, handle_signals=False
        )
        self._started = False

    async def start(self) -> None:
        await self._runner.setup()
        try:
            await web.TCPSite(self._runner, self._host, self._port, reuse_address=True).start()
        except BaseException:
            await self._runner.cleanup()
            raise
        self._started = True
        log.info("operations (/healthz, /readyz, /metrics) on %s", self.base_url)

    @property
    def port(self) -> int:
        if not self._started:
            raise RuntimeError("the operations server is not started")
        return int(self._runner.addresses[0][1])

    @property
    def base_url(self) -> str:
        return f"http://{reachable_host(self._host)}:{self.port}"

    async def stop(self) -> None:
        if self._started:
            self._started = False
            await self._runner.cleanup()

    async def __aenter__(self) -> OperationsServer:
        await self.start()
        return self

    async def __aexit__(self, *_exc: object) -> None:
        await self.stop()

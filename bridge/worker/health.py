"""The worker's probes: ``/healthz``, ``/readyz`` and ``/metrics`` as a small aiohttp app.

``create_health_app(worker)`` serves a worker whose life is managed by the caller (``bridge run
--role worker`` serves it on ``worker.health_host:worker.health_port``; with the receiver in the
same process, the receiver's app serves the probes and one shared registry instead)::

    /healthz   200 while the process serves requests
    /readyz    200 while the worker consumes with its broker connection up, else 503
    /metrics   Prometheus text of the worker's registry
"""

from __future__ import annotations

from aiohttp import web
from prometheus_client import CONTENT_TYPE_LATEST, generate_latest

from bridge.worker.worker import Worker

WORKER = web.AppKey("worker", Worker)

routes = web.RouteTableDef()


@routes.get("/healthz")
async def healthz(request: web.Request) -> web.Response:
    return web.json_response({"status": "ok"})


@routes.get("/readyz")
async def readyz(request: web.Request) -> web.Response:
    worker = request.app[WORKER]
    ready = worker.is_ready
    return web.json_response(
        {"status": "ready" if ready else "not ready", "state": worker.state.value},
        status=200 if ready else 503,
    )


@routes.get("/metrics")
async def metrics(request: web.Request) -> web.Response:
    body = generate_latest(request.app[WORKER].metrics.registry)
    return web.Response(body=body, headers={"Content-Type": CONTENT_TYPE_LATEST})


def create_health_app(worker: Worker) -> web.Application:
    app = web.Application()
    app[WORKER] = worker
    app.add_routes(routes)
    return app


__all__ = ["WORKER", "create_health_app"]

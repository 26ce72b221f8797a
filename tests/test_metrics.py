"""The Prometheus metrics the bridge serves, and the Grafana dashboard built on them.

The dashboard is checked against the registry of a real ``bridge run`` (both roles and the
embedded simulator, on free ports, against the real RabbitMQ): every metric an expression names
must be served, so renaming a metric without the dashboard fails here.
"""

from __future__ import annotations

import json
import re
from collections.abc import Callable, Iterator
from contextlib import AsyncExitStack
from pathlib import Path
from typing import Any

import aiohttp
from prometheus_client.parser import text_string_to_metric_families

from bridge.runtime import start_roles
from bridge.settings import Settings
from tests.fixtures.worker import MakeWorkerEnv, send_body

ROOT = Path(__file__).resolve().parent.parent
DASHBOARD = ROOT / "deploy" / "grafana" / "catapult-bridge.json"
METRIC_NAME = re.compile(r"\bbridge_[a-z0-9_]+")

# The series a metric family exposes, by type (the text format's suffixes).
SUFFIXES = {
    "counter": ("_total", "_created"),
    "gauge": ("",),
    "histogram": ("_bucket", "_count", "_sum", "_created"),
    "summary": ("", "_count", "_sum", "_created"),
    "info": ("_info",),
}


def served_series(exposition: str) -> set[str]:
    """Every series name a /metrics page can carry, labelled children or not yet."""
    names: set[str] = set()
    for family in text_string_to_metric_families(exposition):
        names.update(family.name + suffix for suffix in SUFFIXES.get(family.type, ("",)))
        names.update(sample.name for sample in family.samples)
    return names


def _panels(panels: list[dict[str, Any]]) -> Iterator[dict[str, Any]]:
    for panel in panels:
        yield panel
        yield from _panels(panel.get("panels", []))


def dashboard_expressions() -> dict[str, list[str]]:
    """Panel title (or ``$variable``) -> its PromQL expressions."""
    board = json.loads(DASHBOARD.read_text())
    found = {
        panel["title"]: [t["expr"] for t in panel.get("targets", [])]
        for panel in _panels(board["panels"])
        if panel.get("type") != "row"
    }
    for variable in board["templating"]["list"]:
        if variable["type"] == "query":
            found["$" + variable["name"]] = [variable["query"]["query"]]
    return found


async def test_errors_from_catapult_are_counted_by_status_and_code(
    make_worker_env: MakeWorkerEnv,
) -> None:
    env = await make_worker_env()
    command_id = await env.publish(send_body("x" * 2049))
    await env.result(str(command_id))
    sent = await env.publish(send_body("fine"))
    await env.result(str(sent))

    registry = env.worker.metrics.registry
    labels = {"operation": "send", "status": "400", "code": "validation-error"}
    assert registry.get_sample_value("bridge_worker_catapult_errors_total", labels) == 1.0
    ok = {"operation": "send", "result": "ok"}
    assert registry.get_sample_value("bridge_worker_catapult_calls_total", ok) == 1.0


def test_the_dashboard_covers_every_part_of_the_flow() -> None:
    expressions = " ".join(e for exprs in dashboard_expressions().values() for e in exprs)
    for needed in (
        "bridge_receiver_callbacks_total",  # callbacks
        "bridge_receiver_publish_failures_total",  # publishes
        "bridge_receiver_spool_records",  # spool
        "bridge_worker_results_total",  # sends and imports
        "bridge_worker_catapult_errors_total",  # Catapult's answers by code
        "bridge_worker_pauses_total",  # throttling
        "bridge_worker_republished_total",  # retries
        "bridge_worker_dead_letters_total",  # dead letters
        "bridge_worker_shards_held",  # sharded sending
        "bridge_worker_shards_given_up_total",
    ):
        assert needed in expressions, needed
    for title, exprs in dashboard_expressions().items():
        assert exprs, f"panel {title!r} has no query"


async def test_every_metric_of_the_dashboard_is_served_by_a_running_bridge(
    make_settings: Callable[..., Settings],
) -> None:
    settings = make_settings(
        receiver={"host": "127.0.0.1", "port": 0},
        simulator={"port": 0},
        operations={"host": "127.0.0.1", "port": 0},
    )
    async with AsyncExitStack() as stack:
        roles = await start_roles(stack, settings, role="all")
        async with (
            aiohttp.ClientSession(timeout=aiohttp.ClientTimeout(total=15)) as client,
            client.get(roles.operations.base_url + "/metrics") as response,
        ):
            assert response.status == 200
            served = served_series(await response.text())

    missing = {
        title: sorted(name for e in exprs for name in METRIC_NAME.findall(e) if name not in served)
        for title, exprs in dashboard_expressions().items()
    }
    assert {title: names for title, names in missing.items() if names} == {}

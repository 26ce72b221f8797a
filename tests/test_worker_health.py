"""The worker's probes and metrics, over a real socket."""

from __future__ import annotations

from aiohttp.test_utils import TestClient, TestServer
from prometheus_client import CollectorRegistry

from bridge.worker import Worker, WorkerState, create_health_app
from tests.fixtures.worker import MakeWorkerEnv, send_body


async def test_probes_follow_the_worker_and_metrics_count(make_worker_env: MakeWorkerEnv) -> None:
    env = await make_worker_env(start=False)
    async with TestClient(TestServer(create_health_app(env.worker))) as http:
        assert (await http.get("/healthz")).status == 200
        assert (await http.get("/readyz")).status == 503  # not started
        await env.worker.start()
        ready = await http.get("/readyz")
        assert ready.status == 200
        assert (await ready.json())["worker"]["state"] == "running"
        command_id = await env.publish(send_body())
        assert command_id is not None
        await env.result(command_id)
        # The result is out before its command's ack is committed and counted: the stop waits
        # for that settle.
        await env.worker.stop()
        assert env.worker.state is WorkerState.STOPPED
        assert (await http.get("/readyz")).status == 503
        metrics = await (await http.get("/metrics")).text()
        assert 'bridge_worker_results_total{command="send",outcome="succeeded"} 1.0' in metrics
        assert 'bridge_worker_catapult_calls_total{operation="send",result="ok"} 1.0' in metrics


async def test_a_shared_registry_carries_the_worker_metrics(make_worker_env: MakeWorkerEnv) -> None:
    env = await make_worker_env(start=False)
    registry = CollectorRegistry()
    async with Worker(env.settings, env.client, registry=registry) as worker:
        assert worker.is_ready
        assert registry.get_sample_value("bridge_worker_ready") == 1.0
    assert registry.get_sample_value("bridge_worker_ready") == 0.0
    assert not worker.is_ready


async def test_a_worker_that_cannot_reach_the_broker_starts_and_is_not_ready(
    make_worker_env: MakeWorkerEnv,
) -> None:
    env = await make_worker_env(
        start=False, broker={"url": "amqp://guest:guest@127.0.0.1:1/", "connect_timeout_s": 1}
    )
    worker = Worker(env.settings, env.client, registry=CollectorRegistry())
    async with TestClient(TestServer(create_health_app(worker))) as http:
        await worker.start()  # waits for the broker in the background; never raises for it
        assert worker.state is WorkerState.RUNNING
        assert not worker.is_ready
        ready = await http.get("/readyz")
        assert ready.status == 503
        report = (await ready.json())["worker"]
        assert (report["state"], report["broker"]) == ("running", "connecting")
        assert report["problems"] == ["broker connecting"]
        assert worker.metrics.registry.get_sample_value("bridge_worker_ready") == 0.0
        await worker.stop()
    assert worker.state.value == "stopped"

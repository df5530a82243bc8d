"""``/health`` and ``/ready`` on a real metrics listener, from the delivery state the engine
keeps (``Exporter.health``: since when an exporter fails; where a corrupt spool went)."""

from __future__ import annotations

import re
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from dataclasses import replace
from typing import cast

import anyio
import httpx
import pytest

from exporter.config import GlobalConfig, parse_config
from exporter.delivery.exporter import Exporter
from exporter.delivery.health import Failing
from exporter.observe import prometheus
from exporter.observe.endpoint import serve_metrics
from exporter.observe.health import Readiness
from exporter.observe.histogram import Histogram
from exporter.routing import Pipeline
from exporter.secret import Secret
from tests.support.logs import CapturedLog

pytestmark = pytest.mark.anyio

CONFIG = """
[exporter.out]
destination = "drop"
[exporter.spooled]
destination = "drop"
[metric.all]
filter = "event=*"
exporter = "out"
"""


class _Clock:
    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now


def _pipeline() -> Pipeline[Exporter]:
    return Pipeline.from_config(parse_config(CONFIG))


def test_ready_until_an_exporter_fails_for_longer_than_unready_after() -> None:
    pipeline = _pipeline()
    clock = _Clock()
    readiness = Readiness(lambda: pipeline.every_exporter, 60.0, {"web": False}, clock)
    assert readiness.reasons() == [{"source": "web", "reason": "not listening yet"}]
    readiness.sources["web"] = True
    assert readiness.reasons() == []
    out = pipeline.exporters["out"].health
    out.failing_since, out.last_error = clock.now, "HTTP 503 \x1b[2J busy"
    clock.now += 60.0
    assert readiness.reasons() == []  # failing, not yet for longer than unready_after
    clock.now += 0.5
    assert readiness.reasons() == [
        {
            "exporter": "out",
            "reason": "failing to deliver for 60 s (longer than unready_after, 60 s); last "
            "error: HTTP 503 \\x1b[2J busy",
        }
    ]
    out.failing_since = None  # a delivery worked
    assert readiness.reasons() == []


async def test_a_spool_moved_aside_keeps_it_unready_until_a_restart() -> None:
    class Spooled:  # an exporter whose spool was moved aside at start (a stand-in)
        name = "spooled"
        spool_moved_aside = "/var/lib/ee/spool.db.corrupt-1"
        health = Failing()

    readiness = Readiness(lambda: [cast(Exporter, Spooled())])
    assert readiness.reasons() == [
        {
            "exporter": "spooled",
            "reason": "its spool was found corrupt at start and moved aside to "
            "/var/lib/ee/spool.db.corrupt-1 (ready again after a restart)",
        }
    ]


@asynccontextmanager
async def _listening(
    pipeline: Pipeline[Exporter], readiness: Readiness, token: Secret | None = None
) -> AsyncIterator[str]:
    settings = replace(GlobalConfig(), metrics_listen=("127.0.0.1", 0), metrics_bearer_token=token)
    log = CapturedLog()
    async with anyio.create_task_group() as tasks:
        await tasks.start(serve_metrics, settings, pipeline, {}, log.log, readiness)
        found = re.search(r"http://127\.0\.0\.1:(\d+)/", " ".join(log.messages()))
        assert found is not None
        yield f"http://127.0.0.1:{found[1]}"
        tasks.cancel_scope.cancel()


async def test_health_and_ready_answer_on_the_metrics_listener() -> None:
    pipeline = _pipeline()
    clock = _Clock()
    readiness = Readiness(lambda: pipeline.every_exporter, 5.0, {"web": True}, clock)
    with anyio.fail_after(10):
        async with _listening(pipeline, readiness) as url, httpx.AsyncClient() as client:
            health = await client.get(f"{url}/health")
            assert (health.status_code, health.json()) == (200, {"status": "serving"})
            ready = await client.get(f"{url}/ready")
            assert (ready.status_code, ready.json()) == (200, {"ready": True})
            pipeline.exporters["out"].health.failing_since = clock.now - 6
            unready = await client.get(f"{url}/ready")
            assert unready.status_code == 503
            assert unready.json()["ready"] is False
            assert [r["exporter"] for r in unready.json()["reasons"]] == ["out"]
            assert (await client.get(f"{url}/nowhere")).status_code == 404


async def test_with_a_token_only_health_is_open() -> None:
    pipeline = _pipeline()
    readiness = Readiness(lambda: pipeline.every_exporter)
    token = Secret("s3cret")
    with anyio.fail_after(10):
        async with _listening(pipeline, readiness, token) as url, httpx.AsyncClient() as client:
            assert (await client.get(f"{url}/health")).status_code == 200
            assert (await client.get(f"{url}/ready")).status_code == 401
            assert (await client.get(f"{url}/metrics")).status_code == 401
            bearer = {"Authorization": "Bearer s3cret"}
            assert (await client.get(f"{url}/ready", headers=bearer)).status_code == 200


async def test_metrics_have_the_build_the_failing_gauge_and_the_histograms() -> None:
    pipeline = _pipeline()
    out = pipeline.exporters["out"]
    latency, age = Histogram(), Histogram()
    for value in (0.003, 0.2, 0.2, 70.0):
        latency.observe(value)
    age.observe(1.5)
    out.stats.latency, out.stats.queue_age = latency, age
    out.health.failing_since = 1.0
    lines = prometheus.render(pipeline, {}).splitlines()
    assert re.fullmatch(
        r'event_exporter_build_info\{version="[^"]+",python="3\.[0-9.]+"\} 1', lines[2]
    ), lines[2]
    for line in (
        'event_exporter_exporter_failing{exporter="out"} 1',
        'event_exporter_exporter_failing{exporter="spooled"} 0',
        "# TYPE event_exporter_exporter_delivery_latency_seconds histogram",
        'event_exporter_exporter_delivery_latency_seconds_bucket{exporter="out",le="0.005"} 1',
        'event_exporter_exporter_delivery_latency_seconds_bucket{exporter="out",le="0.25"} 3',
        'event_exporter_exporter_delivery_latency_seconds_bucket{exporter="out",le="60.0"} 3',
        'event_exporter_exporter_delivery_latency_seconds_bucket{exporter="out",le="+Inf"} 4',
        'event_exporter_exporter_delivery_latency_seconds_count{exporter="out"} 4',
        'event_exporter_exporter_queue_age_seconds_bucket{exporter="out",le="1.0"} 0',
        'event_exporter_exporter_queue_age_seconds_bucket{exporter="out",le="2.5"} 1',
        'event_exporter_exporter_queue_age_seconds_sum{exporter="out"} 1.5',
    ):
        assert line in lines, line

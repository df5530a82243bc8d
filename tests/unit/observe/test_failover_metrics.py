"""An http exporter with several URLs in /metrics (per URL: requests by outcome, failovers,
failbacks, the active one) and in /ready (ready, with why it is not on its primary)."""

from __future__ import annotations

import pytest

from drivers.http import HttpDriver
from exporter.config import parse_config
from exporter.delivery.exporter import Exporter
from exporter.errors import RetryableDeliveryError
from exporter.observe.health import Readiness
from exporter.observe.prometheus import render
from exporter.routing import Pipeline

pytestmark = pytest.mark.anyio

CONFIG = """
[exporter.out]
destination = "http://127.0.0.1:9/a?token=s3cr3t-t0ken"
[exporter.out.http]
urls = ["http://127.0.0.1:10/b"]
[exporter.plain]
destination = "http://127.0.0.1:9/a"
[metric.all]
filter = "event=*"
exporter = "out"
"""
A = "http://127.0.0.1:9/a"
B = "http://127.0.0.1:10/b"


def _failed_over() -> Pipeline[Exporter]:
    pipeline = Pipeline.from_config(parse_config(CONFIG))
    driver = pipeline.exporters["out"].driver
    assert isinstance(driver, HttpDriver)
    endpoints = driver.endpoints
    endpoints.failed(endpoints.pick(), RetryableDeliveryError(f"{A}: connect error: refused"))
    endpoints.succeeded(endpoints.pick())
    return pipeline


async def test_each_url_is_a_series_and_the_active_one_is_1() -> None:
    pipeline = _failed_over()
    lines = render(pipeline, {}).splitlines()
    prefix = "event_exporter_http_endpoint_"
    for line in (
        f'{prefix}requests_total{{exporter="out",url="{A}",outcome="retryable"}} 1',
        f'{prefix}requests_total{{exporter="out",url="{A}",outcome="ok"}} 0',
        f'{prefix}requests_total{{exporter="out",url="{B}",outcome="ok"}} 1',
        f'{prefix}failovers_total{{exporter="out",url="{A}"}} 1',
        f'{prefix}failovers_total{{exporter="out",url="{B}"}} 0',
        f'{prefix}failbacks_total{{exporter="out",url="{A}"}} 0',
        f'{prefix}active{{exporter="out",url="{A}"}} 0',
        f'{prefix}active{{exporter="out",url="{B}"}} 1',
        f"# TYPE {prefix}active gauge",
    ):
        assert line in lines, line
    assert not any('exporter="plain"' in line for line in lines if prefix in line)
    assert not any("s3cr3t" in line for line in lines)


async def test_ready_says_which_exporter_failed_over_and_when_it_goes_back() -> None:
    pipeline = _failed_over()
    readiness = Readiness(lambda: pipeline.every_exporter)
    assert readiness.reasons() == []
    [note] = readiness.failovers()
    assert (note["exporter"], note["url"]) == ("out", B)
    assert note["reason"].startswith(f"failed over from the primary {A} 0 s ago (")
    assert "connect error: refused" in note["reason"]
    assert note["reason"].endswith("it is tried again in 30 s")
    driver = pipeline.exporters["out"].driver
    assert isinstance(driver, HttpDriver)
    driver.endpoints.active = 0
    assert readiness.failovers() == []


async def test_the_ready_endpoint_lists_failovers_and_stays_200() -> None:
    from dataclasses import replace

    import anyio
    import httpx

    from exporter.config import GlobalConfig
    from exporter.observe.endpoint import serve_metrics
    from tests.support.logs import CapturedLog

    pipeline = _failed_over()
    readiness = Readiness(lambda: pipeline.every_exporter)
    settings = replace(GlobalConfig(), metrics_listen=("127.0.0.1", 0))
    log = CapturedLog()
    with anyio.fail_after(10):
        async with anyio.create_task_group() as tasks:
            await tasks.start(serve_metrics, settings, pipeline, {}, log.log, readiness)
            port = " ".join(log.messages()).split("http://127.0.0.1:")[1].split("/")[0]
            async with httpx.AsyncClient() as client:
                ready = await client.get(f"http://127.0.0.1:{port}/ready")
            tasks.cancel_scope.cancel()
    assert ready.status_code == 200
    body = ready.json()
    assert body["ready"] is True
    assert [(f["exporter"], f["url"]) for f in body["failovers"]] == [("out", B)]

"""The daemon's HTTP endpoint for what it observes: ``GET /metrics`` (Prometheus) on
``metrics_listen``, on the same small h11 server as the http source."""

from __future__ import annotations

from collections.abc import Mapping

import anyio
import anyio.abc

from exporter.config import GlobalConfig
from exporter.delivery.exporter import Exporter
from exporter.observe import prometheus
from exporter.observe.log import Log
from exporter.routing import Pipeline
from exporter.sources.httpserver import (
    HttpServer,
    Refuse,
    Request,
    Response,
    ServerLimits,
    require_bearer,
)


async def serve_metrics(
    settings: GlobalConfig,
    pipeline: Pipeline[Exporter],
    sources: Mapping[str, object],
    log: Log,
    *,
    task_status: anyio.abc.TaskStatus[None],
) -> None:
    """GET /metrics on ``metrics_listen`` until cancelled; with ``metrics_bearer_token``,
    only for a request carrying it (401 from the head, as the http source)."""
    assert settings.metrics_listen is not None
    host, port = settings.metrics_listen

    async def handle(request: Request) -> Response:
        if request.path != "/metrics":
            raise Refuse(404, "GET /metrics")
        return Response(200, prometheus.render(pipeline, sources).encode(), prometheus.CONTENT_TYPE)

    token = settings.metrics_bearer_token
    server = HttpServer(
        host,
        port,
        handle,
        ServerLimits(max_body_bytes=0, methods=("GET",)),
        check_head=None if token is None else require_bearer(token),
        name="metrics",
        report=log.warning,
    )
    async with anyio.create_task_group() as tasks:
        await tasks.start(server.serve)
        log.info(f"metrics on http://{host}:{server.port}/metrics")
        task_status.started()

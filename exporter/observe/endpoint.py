"""The daemon's HTTP endpoint for what it observes, on ``metrics_listen`` (the same small
h11 server as the http source):

* ``GET /metrics``: Prometheus' text (:mod:`.prometheus`);
* ``GET /health``: 200 while the process serves (a liveness probe: it says nothing more);
* ``GET /ready``: 200 ``{"ready": true}`` once every source listens and no exporter has
  been failing for longer than ``unready_after``, else 503 with each reason
  (:class:`~exporter.observe.health.Readiness`); either way ``failovers`` lists the http
  exporters whose requests go to another URL than their primary, and why.

With ``metrics_bearer_token`` every path but ``/health`` needs it (401 from the head).
"""

from __future__ import annotations

from collections.abc import Mapping

import anyio
import anyio.abc

from exporter.config import GlobalConfig
from exporter.delivery.exporter import Exporter
from exporter.observe import prometheus
from exporter.observe.health import Readiness
from exporter.observe.log import Log
from exporter.routing import Pipeline
from exporter.sources.httpserver import (
    CheckHead,
    Head,
    HttpServer,
    Refuse,
    Request,
    Response,
    ServerLimits,
    require_bearer,
)

PATHS = ("/metrics", "/health", "/ready")


async def serve_metrics(
    settings: GlobalConfig,
    pipeline: Pipeline[Exporter],
    sources: Mapping[str, object],
    log: Log,
    readiness: Readiness | None = None,
    *,
    task_status: anyio.abc.TaskStatus[None],
) -> None:
    """GET /metrics, /health and /ready on ``metrics_listen`` until cancelled (``/ready``
    without ``readiness``: ready while it serves)."""
    assert settings.metrics_listen is not None
    host, port = settings.metrics_listen

    async def handle(request: Request) -> Response:
        if request.path == "/metrics":
            text = prometheus.render(pipeline, sources)
            return Response(200, text.encode(), prometheus.CONTENT_TYPE)
        if request.path == "/health":
            return Response.json(200, {"status": "serving"})
        if request.path == "/ready":
            reasons = [] if readiness is None else readiness.reasons()
            failovers = [] if readiness is None else readiness.failovers()
            more = {"failovers": failovers} if failovers else {}
            if reasons:
                return Response.json(503, {"ready": False, "reasons": reasons, **more})
            return Response.json(200, {"ready": True, **more})
        raise Refuse(404, f"GET {', '.join(PATHS)}")

    token = settings.metrics_bearer_token
    server = HttpServer(
        host,
        port,
        handle,
        ServerLimits(max_body_bytes=0, methods=("GET",)),
        check_head=None if token is None else _open_health(require_bearer(token)),
        name="metrics",
        report=log.warning,
    )
    async with anyio.create_task_group() as tasks:
        await tasks.start(server.serve)
        log.info(f"metrics on http://{host}:{server.port}/metrics (and /health, /ready)")
        task_status.started()


def _open_health(guard: CheckHead) -> CheckHead:
    """``guard`` for every path but ``/health``, which a probe may ask without a token."""

    def check(head: Head) -> None:
        if head.path != "/health":
            guard(head)

    return check

"""The ``http`` source: a listener for Dovecot's http-post exporter, NDJSON batches and
Stalwart webhooks, on h11 (the HTTP/1.1 state machine httpx itself uses) and anyio.

Endpoints (POST):

* ``/dovecot``: one event per request, as Dovecot's http-post exporter sends it: json
  (``application/json``) or tab-text (``text/plain``);
* ``/events``: NDJSON, one Dovecot json or tab-text event per line;
* ``/stalwart``: a Stalwart webhook body; ``X-Signature`` is checked when a key is set.

A request is answered only once its events are in the exporters' queues (under the
``block`` policy that is backpressure: a sender waits for its answer). Answers: 204 all
accepted; 200 with ``{"accepted": N, "rejected": [{"line": L, "error": "..."}]}`` when
some lines of a batch were bad (the good ones are kept); 400 when nothing was good,
401 without the bearer token or the right signature, 404, 405, 413 over the body limit,
415 for an unknown Content-Type, 503 with ``Retry-After`` while an exporter that drops
when full (not ``block``) is full, each with a JSON ``{"error": "..."}``. Bad input
of any kind ends in an answer or a closed connection, never in a crash.
"""

from __future__ import annotations

import hmac
from collections.abc import Awaitable, Callable
from dataclasses import dataclass

import anyio
import anyio.abc

from exporter.errors import EventExporterError
from exporter.event import Event
from exporter.formats.reader import read_event
from exporter.httpserver import HttpServer, Refuse, Request, Response, ServerLimits
from exporter.secret import Secret
from exporter.sources.stalwart import read_webhook, signature_ok

Emit = Callable[[Event], Awaitable[None]]
_REJECTS_SHOWN = 10


@dataclass(frozen=True)
class HttpSourceSettings:
    host: str = "127.0.0.1"
    port: int = 8080
    max_body_bytes: int = 10 << 20
    idle_timeout: float = 60.0
    """A connection silent this long (between or inside requests) is closed."""
    bearer_token: Secret | None = None
    stalwart_signing_key: Secret | None = None


@dataclass
class HttpSourceCounts:
    requests: int = 0
    events: int = 0
    rejected_lines: int = 0


class HttpSource:
    """``serve()`` accepts connections until cancelled."""

    def __init__(
        self,
        settings: HttpSourceSettings,
        emit: Emit,
        busy: Callable[[], bool] | None = None,
        commit: Callable[[], None] = lambda: None,
    ) -> None:
        self.settings = settings
        self._emit = emit
        self._busy = busy
        self._commit = commit
        """Called before every answer: what it accepted is then on disk (a spool)."""
        self.counts = HttpSourceCounts()
        limits = ServerLimits(settings.max_body_bytes, settings.idle_timeout)
        self._server = HttpServer(settings.host, settings.port, self._handle, limits)

    @property
    def port(self) -> int:
        """The port listened on (the real one when settings.port is 0)."""
        return self._server.port

    @property
    def refused(self) -> dict[int, int]:
        """Requests answered 4xx/5xx, by status."""
        return self._server.refused

    async def serve(
        self, task_status: anyio.abc.TaskStatus[None] = anyio.TASK_STATUS_IGNORED
    ) -> None:
        await self._server.serve(task_status=task_status)

    async def _handle(self, request: Request) -> Response:
        try:
            return await self._handle_request(request)
        finally:  # before any answer, 204, 200, 400 or 503 after part of a batch
            self._commit()

    async def _handle_request(self, request: Request) -> Response:
        self.counts.requests += 1
        token = self.settings.bearer_token
        if token is not None:
            given = request.headers.get("authorization", "").encode()
            if not hmac.compare_digest(given, b"Bearer " + token.reveal().encode()):
                raise Refuse(401, "a valid bearer token is required")
        if self._busy is not None and self._busy():
            raise Refuse(503, "queues full: try again later", [("Retry-After", "1")])
        path = request.path.rstrip("/")
        content_type = request.headers.get("content-type", "").split(";")[0].strip().lower()
        if path == "/dovecot":
            if content_type not in ("application/json", "text/plain"):
                raise Refuse(415, "Dovecot sends application/json or text/plain")
            return await self._lines([request.body], one_event=True)
        if path == "/events":
            return await self._lines(request.body.split(b"\n"), one_event=False)
        if path == "/stalwart":
            return await self._stalwart(request)
        raise Refuse(404, "endpoints: POST /dovecot, /events, /stalwart")

    async def _lines(self, lines: list[bytes], *, one_event: bool) -> Response:
        accepted = 0
        rejected: list[dict[str, object]] = []
        for number, raw in enumerate(lines, 1):
            line = raw[:-1] if raw.endswith(b"\r") else raw
            if not line and not one_event:
                continue
            try:
                event = read_event(line)
            except EventExporterError as exc:
                rejected.append({"line": number, "error": str(exc)})
                continue
            if accepted and self._busy is not None and self._busy():
                self.counts.events += accepted
                raise Refuse(
                    503,
                    f"queues full: the first {accepted} events up to line {number - 1} were "
                    f"accepted; send line {number} and after again later",
                    [("Retry-After", "1")],
                )
            await self._emit(event)
            accepted += 1
        self.counts.events += accepted
        self.counts.rejected_lines += len(rejected)
        if not rejected:
            return Response(204)
        if one_event:
            raise Refuse(400, str(rejected[0]["error"]))
        answer = {"accepted": accepted, "rejected": rejected[:_REJECTS_SHOWN]}
        return Response.json(200 if accepted else 400, answer)

    async def _stalwart(self, request: Request) -> Response:
        key = self.settings.stalwart_signing_key
        if key is not None and not signature_ok(
            key, request.body, request.headers.get("x-signature")
        ):
            raise Refuse(401, "X-Signature does not match the body")
        try:
            events = read_webhook(request.body)
        except EventExporterError as exc:
            raise Refuse(400, str(exc)) from None
        for index, event in enumerate(events):
            if index and self._busy is not None and self._busy():
                self.counts.events += index
                raise Refuse(
                    503,
                    f"queues full: events[0:{index}] were accepted; send the rest again later",
                    [("Retry-After", "1")],
                )
            await self._emit(event)
        self.counts.events += len(events)
        return Response(204)

"""The ``http`` source: a listener for Dovecot's http-post exporter, NDJSON batches and
Stalwart webhooks, on h11 (the HTTP/1.1 state machine httpx itself uses) and anyio.

Endpoints (POST):

* ``/dovecot``: one event per request, as Dovecot's http-post exporter sends it: json
  (``application/json``) or tab-text (``text/plain``);
* ``/events``: NDJSON, one Dovecot json or tab-text event per line;
* ``/stalwart``: a Stalwart webhook body; ``X-Signature`` is checked when a key is set,
  over the body as Stalwart made it (decoded, when it came in gzip).

A body may come in ``Content-Encoding: gzip`` (``x-gzip``; ``identity``, or ``gzip,
identity``, in any case): it is decoded as it is read, and ``max_body_bytes`` bounds the
bytes sent and the decoded ones alike, so a gzip bomb costs the limit, never more.

A request is answered only once its events are in the exporters' queues (under the
``block`` policy that is backpressure: a sender waits for its answer). Answers: 204 all
accepted; 200 with ``{"accepted": N, "rejected": [{"line": L, "error": "..."}],
"rejected_total": R}`` when some lines of a batch were bad (the good ones are kept; the
first 10 bad ones are named); 400 when nothing was good, 401 without the bearer token or
the right signature, 400 for a gzip body that is not gzip or is cut short, 404, 405, 408
too slow, 413 over the body limit (sent or decoded), 415 for an unknown Content-Type or a
Content-Encoding other than gzip (``br``, ``deflate``, ``compress``, gzip twice; with
``Accept-Encoding: gzip, identity``), 503 with ``Retry-After`` while an exporter that drops
when full (not ``block``) is full or over a connection cap, each with a JSON ``{"error":
"..."}``. What the head alone decides (the token, the endpoint, the Content-Type, a full
queue, the Content-Encoding, the size) is answered before the body is read, and the
connection closed. Bad input of any
kind ends in an answer or a closed connection, never in a crash.
"""

from __future__ import annotations

import sys
from collections.abc import Iterator
from dataclasses import dataclass
from typing import TextIO

import anyio
import anyio.abc
import anyio.lowlevel

from exporter.errors import EventExporterError
from exporter.formats.reader import read_event
from exporter.observe.text import printable
from exporter.secret import Secret
from exporter.sources.httpserver import (
    Head,
    HttpServer,
    Refuse,
    Request,
    Response,
    ServerLimits,
    require_bearer,
)
from exporter.sources.intake import Intake
from exporter.sources.reports import SourceReports, reports_for
from exporter.sources.stalwart import read_webhook, signature_ok

_REJECTS_SHOWN = 10
_LINES_PER_TURN = 100
"""Lines (or webhook events) read between two chances for the other clients to run."""
_ENDPOINTS = ("/dovecot", "/events", "/stalwart")
_DOVECOT_TYPES = ("application/json", "text/plain")


@dataclass(frozen=True)
class HttpSourceSettings:
    host: str = "127.0.0.1"
    port: int = 8080
    max_body_bytes: int = 10 << 20
    idle_timeout: float = 60.0
    """A connection silent this long (between or inside requests) is closed."""
    bearer_token: Secret | None = None
    stalwart_signing_key: Secret | None = None
    header_timeout: float = 10.0
    """A request's head must have come this long after it began (408, closed)."""
    request_timeout: float = 60.0
    """A request's body must have come this long after its head (408, closed)."""
    max_connections: int = 1024
    """Open connections in all; more are answered 503 and closed."""
    max_connections_per_peer: int = 256
    """Open connections from one address; more are answered 503 and closed."""
    reuse_port: bool = False
    """SO_REUSEPORT: several ``run`` processes share the listener (see the README)."""


@dataclass
class HttpSourceCounts:
    requests: int = 0
    events: int = 0
    rejected_lines: int = 0


class HttpSource:
    """``serve()`` accepts connections until cancelled. ``errors`` hears of trouble on the
    listener (connections over a cap), of every request refused and of every line
    rejected (:mod:`exporter.sources.reports`; stderr by default).

    The intake commits before every answer: what a request gave is then on disk (a
    spool); while it is busy, requests are answered 503."""

    def __init__(
        self,
        settings: HttpSourceSettings,
        intake: Intake,
        errors: TextIO | SourceReports | None = None,
    ) -> None:
        self.settings = settings
        self._intake = intake
        self.reports = reports_for(sys.stderr if errors is None else errors, "")
        self.counts = HttpSourceCounts()
        limits = ServerLimits(
            max_body_bytes=settings.max_body_bytes,
            idle_timeout=settings.idle_timeout,
            max_connections=settings.max_connections,
            max_connections_per_peer=settings.max_connections_per_peer,
            header_timeout=settings.header_timeout,
            request_timeout=settings.request_timeout,
            reuse_port=settings.reuse_port,
            decode_gzip=True,
        )
        token = settings.bearer_token
        self._authorize = None if token is None else require_bearer(token)
        self._server = HttpServer(
            settings.host,
            settings.port,
            self._handle,
            limits,
            check_head=self._check_head,
            name="http source",
            report=self.reports.warning,
            refused=self._refused,
        )

    @property
    def port(self) -> int:
        """The port listened on (the real one when settings.port is 0)."""
        return self._server.port

    @property
    def refused_connections(self) -> int:
        """Connections over a cap, answered 503 at once."""
        return self._server.refused_connections

    @property
    def refused(self) -> dict[int, int]:
        """Requests answered 4xx/5xx, by status."""
        return self._server.refused

    @property
    def open_connections(self) -> int:
        return self._server.open_connections

    def announce(self) -> str:
        """What the daemon's log says once this source runs (the real port, when 0)."""
        return (
            f"listening on http://{self.settings.host}:{self.port} "
            "(POST /dovecot, /events, /stalwart)"
        )

    async def serve(
        self, task_status: anyio.abc.TaskStatus[None] = anyio.TASK_STATUS_IGNORED
    ) -> None:
        await self._server.serve(task_status=task_status)

    def _check_head(self, head: Head) -> None:
        """What is refused before a body byte is read: no token, no such endpoint, a
        Content-Type Dovecot does not send, queues full (then the server: the method, a
        Content-Encoding other than gzip, the Content-Length)."""
        self.counts.requests += 1
        if self._authorize is not None:
            self._authorize(head)
        path = head.path.rstrip("/")
        if path not in _ENDPOINTS:
            raise Refuse(404, "endpoints: POST /dovecot, /events, /stalwart")
        if path == "/dovecot" and _content_type(head) not in _DOVECOT_TYPES:
            raise Refuse(415, "Dovecot sends application/json or text/plain")
        if self._intake.busy():
            raise Refuse(503, "queues full: try again later", [("Retry-After", "1")])

    def _refused(self, where: str, status: int, error: str) -> None:
        """A request answered 4xx, reported as a rejection (one per status: a flood of
        401s does not hide the 400s); a 503 is backpressure, counted, not a rejection;
        a 500 is a bug."""
        if status == 500:
            self.reports.warning(f"{where}: answered 500: {error}")
        elif status < 500:
            self.reports.rejected(where, f"answered {status}: {error}", kind=str(status))

    async def _handle(self, request: Request) -> Response:
        try:
            path = request.path.rstrip("/")
            where = f"{request.peer} POST {path}"
            if path == "/dovecot":
                response = await self._lines(iter([request.body]), where, one_event=True)
            elif path == "/events":
                response = await self._lines(_lines_of(request.body), where, one_event=False)
            else:
                response = await self._stalwart(request)
        except BaseException:  # a 400, a 503 after part of a batch, shutdown
            self._intake.commit()
            raise
        await self._intake.committed()  # a 204 or 200 says: on disk, where there is a spool
        return response

    async def _lines(self, lines: Iterator[bytes], where: str, *, one_event: bool) -> Response:
        """Emit each good line's event; name the first bad ones and count the others
        (a body of a million bad lines keeps ten records, not a million). A request
        refused whole (400) is reported as its answer; the bad lines of a batch partly
        taken, each (rate-limited)."""
        accepted = rejected_total = 0
        rejected: list[dict[str, object]] = []
        emit, busy = self._intake.emit, self._intake.busy
        for number, raw in enumerate(lines, 1):
            if number % _LINES_PER_TURN == 0:
                await anyio.lowlevel.checkpoint()  # other clients, /metrics: their turn
            line = raw[:-1] if raw.endswith(b"\r") else raw
            if not line and not one_event:
                continue
            try:
                event = read_event(line)
            except Exception as exc:  # whatever one line raises is that line's rejection
                rejected_total += 1
                reason = _reason(exc)
                if len(rejected) < _REJECTS_SHOWN:
                    rejected.append({"line": number, "error": reason})
                if not one_event:
                    self.reports.rejected(f"{where} line {number}", reason)
                continue
            if accepted and busy():
                self.counts.events += accepted
                self.counts.rejected_lines += rejected_total
                raise Refuse(
                    503,
                    f"queues full: the first {accepted} events up to line {number - 1} were "
                    f"accepted; send line {number} and after again later",
                    [("Retry-After", "1")],
                )
            await emit(event)
            accepted += 1
        self.counts.events += accepted
        self.counts.rejected_lines += rejected_total
        if not rejected_total:
            return Response(204)
        if one_event:
            raise Refuse(400, str(rejected[0]["error"]))
        answer = {"accepted": accepted, "rejected": rejected, "rejected_total": rejected_total}
        return Response.json(200 if accepted else 400, answer)

    async def _stalwart(self, request: Request) -> Response:
        # Stalwart signs the body it serialises; a gzip body is checked decoded (the
        # bytes a compressing proxy or client would send are not what was signed).
        key = self.settings.stalwart_signing_key
        if key is not None and not signature_ok(
            key, request.body, request.headers.get("x-signature")
        ):
            raise Refuse(401, "X-Signature does not match the body")
        try:
            events = read_webhook(request.body)
        except Exception as exc:  # whatever a body raises is that body's rejection
            raise Refuse(400, _reason(exc)) from None
        for index, event in enumerate(events):
            if index and index % _LINES_PER_TURN == 0:
                await anyio.lowlevel.checkpoint()
            if index and self._intake.busy():
                self.counts.events += index
                raise Refuse(
                    503,
                    f"queues full: events[0:{index}] were accepted; send the rest again later",
                    [("Retry-After", "1")],
                )
            await self._intake.emit(event)
        self.counts.events += len(events)
        return Response(204)


def _lines_of(body: bytes) -> Iterator[bytes]:
    """``body.split(b"\\n")`` one line at a time: 10 MiB of short lines as one list
    would be millions of objects at once."""
    start = 0
    while (end := body.find(b"\n", start)) >= 0:
        yield body[start:end]
        start = end + 1
    yield body[start:]


def _content_type(head: Head) -> str:
    return head.headers.get("content-type", "").split(";")[0].strip().lower()


def _reason(exc: Exception) -> str:
    """Why a line or body was refused, for its sender: the reader's message, or what
    went wrong where the reader did not expect it; escaped and capped either way."""
    if isinstance(exc, EventExporterError):
        return printable(str(exc))
    return printable(f"cannot be read: {type(exc).__name__}: {exc}")

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
401 without the bearer token or the right signature, 404, 405, 411, 413 over the body
limit, 415 for an unknown Content-Type, each with a JSON ``{"error": "..."}``. Bad input
of any kind ends in an answer or a closed connection, never in a crash.
"""

from __future__ import annotations

import hmac
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field

import anyio
import anyio.abc
import h11
import orjson

from exporter.errors import EventExporterError
from exporter.event import Event
from exporter.formats.reader import read_event
from exporter.secret import Secret
from exporter.sources.stalwart import read_webhook, signature_ok

Emit = Callable[[Event], Awaitable[None]]
_REJECTS_SHOWN = 10
_READ_BYTES = 1 << 16


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
    refused: dict[int, int] = field(default_factory=dict)
    """Requests answered 4xx/5xx, by status."""


class _Refuse(Exception):
    def __init__(self, status: int, message: str) -> None:
        super().__init__(message)
        self.status = status


class HttpSource:
    """``serve()`` accepts connections until cancelled; each one serves requests in turn."""

    def __init__(self, settings: HttpSourceSettings, emit: Emit) -> None:
        self.settings = settings
        self._emit = emit
        self.counts = HttpSourceCounts()
        self.port = settings.port
        """The port listened on (the real one when settings.port is 0)."""

    async def serve(
        self, task_status: anyio.abc.TaskStatus[None] = anyio.TASK_STATUS_IGNORED
    ) -> None:
        listener = await anyio.create_tcp_listener(
            local_host=self.settings.host, local_port=self.settings.port
        )
        async with listener:
            self.port = listener.extra(anyio.abc.SocketAttribute.local_port)
            task_status.started()
            await listener.serve(self._connection)

    async def _connection(self, stream: anyio.abc.ByteStream) -> None:
        conn = h11.Connection(h11.SERVER, max_incomplete_event_size=64 << 10)
        async with stream:
            try:
                while await self._one_request(conn, stream):
                    conn.start_next_cycle()
            except (anyio.BrokenResourceError, anyio.EndOfStream, anyio.ClosedResourceError):
                return  # the client went away; nothing was half-accepted
            except TimeoutError:
                return  # idle too long
            except h11.RemoteProtocolError:
                if conn.our_state in (h11.IDLE, h11.SEND_RESPONSE):
                    await self._send(conn, stream, 400, {"error": "malformed HTTP request"})
                return

    async def _one_request(self, conn: h11.Connection, stream: anyio.abc.ByteStream) -> bool:
        """Serve one request; False when the connection is to be closed."""
        request = await self._next(conn, stream)
        if isinstance(request, h11.ConnectionClosed):
            return False
        assert isinstance(request, h11.Request)
        self.counts.requests += 1
        try:
            body = await self._body(conn, stream, request)
            status, answer = await self._handle(request, body)
        except _Refuse as refusal:
            status, answer = refusal.status, {"error": str(refusal)}
        if status >= 400:
            self.counts.refused[status] = self.counts.refused.get(status, 0) + 1
        await self._send(conn, stream, status, answer)
        return conn.our_state is h11.DONE and conn.their_state is h11.DONE

    async def _next(self, conn: h11.Connection, stream: anyio.abc.ByteStream) -> object:
        while True:
            event = conn.next_event()
            if event is not h11.NEED_DATA:
                return event
            with anyio.fail_after(self.settings.idle_timeout):
                try:
                    data = await stream.receive(_READ_BYTES)
                except anyio.EndOfStream:
                    data = b""
            conn.receive_data(data)

    async def _body(
        self, conn: h11.Connection, stream: anyio.abc.ByteStream, request: h11.Request
    ) -> bytes:
        limit = self.settings.max_body_bytes
        if request.method != b"POST":
            raise _Refuse(405, "only POST is accepted")
        length = _header(request, b"content-length")
        if length is not None and length.isdigit() and int(length) > limit:
            raise _Refuse(413, f"body larger than {limit} bytes")
        body = bytearray()
        while True:
            event = await self._next(conn, stream)
            if isinstance(event, h11.Data):
                body += event.data
                if len(body) > limit:
                    raise _Refuse(413, f"body larger than {limit} bytes")
            elif isinstance(event, h11.EndOfMessage):
                return bytes(body)
            else:
                raise h11.RemoteProtocolError("request ended early")

    async def _handle(self, request: h11.Request, body: bytes) -> tuple[int, object]:
        token = self.settings.bearer_token
        if token is not None:
            given = (_header(request, b"authorization") or "").encode()
            if not hmac.compare_digest(given, b"Bearer " + token.reveal().encode()):
                raise _Refuse(401, "a valid bearer token is required")
        path = request.target.split(b"?", 1)[0].rstrip(b"/").decode("latin-1")
        content_type = (_header(request, b"content-type") or "").split(";")[0].strip().lower()
        if path == "/dovecot":
            if content_type not in ("application/json", "text/plain"):
                raise _Refuse(415, "Dovecot sends application/json or text/plain")
            return await self._lines([body], one_event=True)
        if path == "/events":
            return await self._lines(body.split(b"\n"), one_event=False)
        if path == "/stalwart":
            return await self._stalwart(request, body)
        raise _Refuse(404, "endpoints: POST /dovecot, /events, /stalwart")

    async def _lines(self, lines: list[bytes], *, one_event: bool) -> tuple[int, object]:
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
            await self._emit(event)
            accepted += 1
        self.counts.events += accepted
        self.counts.rejected_lines += len(rejected)
        if not rejected:
            return 204, None
        if one_event:
            return 400, {"error": rejected[0]["error"]}
        answer = {"accepted": accepted, "rejected": rejected[:_REJECTS_SHOWN]}
        return (200 if accepted else 400), answer

    async def _stalwart(self, request: h11.Request, body: bytes) -> tuple[int, object]:
        key = self.settings.stalwart_signing_key
        if key is not None and not signature_ok(key, body, _header(request, b"x-signature")):
            raise _Refuse(401, "X-Signature does not match the body")
        try:
            events = read_webhook(body)
        except EventExporterError as exc:
            raise _Refuse(400, str(exc)) from None
        for event in events:
            await self._emit(event)
        self.counts.events += len(events)
        return 204, None

    async def _send(
        self, conn: h11.Connection, stream: anyio.abc.ByteStream, status: int, answer: object
    ) -> None:
        body = b"" if answer is None else orjson.dumps(answer)
        headers = [("Content-Length", str(len(body)))]
        if body:
            headers.append(("Content-Type", "application/json"))
        if status >= 400 and conn.their_state is not h11.DONE:
            headers.append(("Connection", "close"))  # the rest of the request is unread
        parts = [conn.send(h11.Response(status_code=status, headers=headers))]
        if body:
            parts.append(conn.send(h11.Data(data=body)))
        parts.append(conn.send(h11.EndOfMessage()))
        await stream.send(b"".join(part for part in parts if part))


def _header(request: h11.Request, name: bytes) -> str | None:
    for key, value in request.headers:
        if key == name:
            return bytes(value).decode("latin-1")
    return None

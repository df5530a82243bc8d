"""A small HTTP/1.1 server on h11 (the state machine httpx itself uses) and anyio, for the
http source and the metrics endpoint: keep-alive, a body limit, and every request
answered or its connection closed, whatever a client sends.

It is cheap to refuse and no client can hold it:

* a request is decided from its head before any body byte is read (``check_head``:
  authentication, the endpoint, a full queue; the server's own framing, method and
  length checks); a refused request is answered with ``Connection: close`` and its
  connection closed, its body never read;
* the head must arrive within ``header_timeout`` (counted from the connection's start,
  or from the first byte of a later request on it), the body within ``request_timeout``
  after the head, and no read waits longer than ``idle_timeout``: past a deadline the
  client gets a 408 and the connection is closed;
* connections are capped in all and per peer address: one over a cap is answered 503
  with ``Retry-After`` and closed at once, and accepting never stops;
* reading a large body gives the other clients their turn.

With ``decode_gzip``, a body in ``Content-Encoding: gzip`` (or ``x-gzip``; ``identity``
is none) is decoded as it is read, and ``max_body_bytes`` bounds both the bytes sent and
the decoded ones: the decoder never makes more than the limit leaves (so a gzip bomb
costs the limit, not what it inflates to), and yields between pieces. Any other coding
(``br``, ``deflate``, two gzip layers) is a 415 from the head.

A handler gets a whole :class:`Request` and returns a :class:`Response`, or raises
:class:`Refuse` for a 4xx/5xx with a JSON ``{"error": ...}`` body.
"""

from __future__ import annotations

import contextlib
import errno
import hmac
import os
import sys
import zlib
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from http import HTTPStatus

import anyio
import anyio.abc
import anyio.lowlevel
import h11
import orjson

from exporter.observe.text import printable
from exporter.secret import Secret
from exporter.sources.connections import ConnectionCaps, Throttle, ensure_descriptors

_READ_BYTES = 1 << 16
_HEAD_BYTES = 64 << 10
"""The longest request head (request line and headers) h11 buffers: 431 past it."""
_ACCEPT_RETRYABLE = frozenset({errno.EMFILE, errno.ENFILE, errno.ENOBUFS, errno.ENOMEM})
_ACCEPT_PAUSE = 0.1
"""Out of descriptors: let some connections end before accepting again."""
_LINGER_SECONDS = 2.0
"""After an answer to a request not read whole, how long what the client still sends is
dropped unread before the connection closes: closing with bytes unread resets it, and a
client still sending (httpx, most) then loses the answer to the reset."""
_LINGERING_REFUSALS_MAX = 64
"""Connections over a cap that linger at once; past this, they are closed at once."""
GZIP_CODINGS = ("gzip", "x-gzip")
_GZIP_WBITS = 16 + zlib.MAX_WBITS
"""zlib's window bits for a gzip stream (its header and trailer checked)."""
_DECODE_PIECE = 1 << 20
"""The most a gzip body is decoded by in one go before the other clients get a turn."""


@dataclass(frozen=True)
class Head:
    """A request as its head says it: what can be decided before the body is read."""

    method: str
    path: str
    """Without the query."""
    headers: dict[str, str]
    """Names in lower case; a repeated header keeps its first value."""
    peer: str = field(default="", kw_only=True)
    """The client's address, without its port."""


@dataclass(frozen=True)
class Request(Head):
    body: bytes


@dataclass(frozen=True)
class Response:
    status: int = 204
    body: bytes = b""
    content_type: str | None = None
    headers: list[tuple[str, str]] = field(default_factory=list)

    @classmethod
    def json(cls, status: int, document: object) -> Response:
        return cls(status, orjson.dumps(document), "application/json")


class Refuse(Exception):
    """Answer ``status`` with ``{"error": message}``."""

    def __init__(self, status: int, message: str, headers: list[tuple[str, str]] | None = None):
        super().__init__(message)
        self.status = status
        self.headers = headers or []


class _TooSlow(Exception):
    """The client did not send its request in time: a 408, then the connection closes."""


Handler = Callable[[Request], Awaitable[Response]]
Refused = Callable[[str, int, str], None]
"""Told of each request the server refused (4xx/5xx from a :class:`Refuse`, a deadline,
bad framing, a handler's bug): where (``PEER METHOD PATH``), the status, the error; an
error answer a handler returns itself (a batch with no good line) is not a refusal."""
CheckHead = Callable[[Head], None]
"""Raises :class:`Refuse` to answer a request from its head, its body unread."""


@dataclass(frozen=True)
class ServerLimits:
    max_body_bytes: int = 10 << 20
    idle_timeout: float = 60.0
    """A connection silent this long (between or inside requests) is closed."""
    methods: tuple[str, ...] = ("POST",)
    max_connections: int = 1024
    """Open connections in all; more are answered 503 and closed."""
    max_connections_per_peer: int = 256
    """Open connections from one address; more are answered 503 and closed."""
    header_timeout: float = 10.0
    """The head must have come this long after the connection (or the request) began."""
    request_timeout: float = 60.0
    """The body must have come this long after the head."""
    reuse_port: bool = False
    """Bind with SO_REUSEPORT: several processes on one address, the kernel spreads the
    connections among them (all cores, one process each)."""
    decode_gzip: bool = False
    """Decode gzip bodies (``max_body_bytes`` then bounds the decoded size too); any
    other Content-Encoding is a 415. Without it, Content-Encoding is not looked at."""


def require_bearer(token: Secret) -> CheckHead:
    """A ``check_head`` refusing (401) a request without ``Authorization: Bearer TOKEN``:
    the scheme in any case (RFC 9110 11.1), the token compared in constant time."""

    def check(head: Head) -> None:
        if not bearer_matches(head.headers.get("authorization", ""), token):
            raise Refuse(401, "a valid bearer token is required", [("WWW-Authenticate", "Bearer")])

    return check


def bearer_matches(authorization: str, token: Secret) -> bool:
    scheme, _, credentials = authorization.strip(" \t").partition(" ")
    given = credentials.strip(" \t").encode("latin-1")  # as the header was decoded
    return hmac.compare_digest(given, token.reveal().encode()) and scheme.lower() == "bearer"


class HttpServer:
    """``serve()`` accepts connections until cancelled; ``port`` is the one bound.

    ``name`` says which server a report is about (``http source``, then its address);
    ``report`` writes one line (stderr by default), called at most every few seconds
    per kind of trouble (connections over a cap, out of descriptors). ``refused`` is told
    of every request answered 4xx/5xx (it rate-limits what it logs).
    """

    def __init__(
        self,
        host: str,
        port: int,
        handler: Handler,
        limits: ServerLimits,
        *,
        check_head: CheckHead | None = None,
        name: str = "",
        report: Callable[[str], None] | None = None,
        refused: Refused | None = None,
    ) -> None:
        self.host = host
        self.port = port
        self._handler = handler
        self._limits = limits
        self._check_head = check_head
        self._name = name or "http server"
        self._lingering_refusals = 0
        self._write = report or _to_stderr
        self._on_refused = refused
        self._over_cap = Throttle(self._report)
        self._accept_failed = Throttle(self._report)
        self._caps = ConnectionCaps(limits.max_connections, limits.max_connections_per_peer)
        self.refused: dict[int, int] = {}
        """Requests answered 4xx/5xx, by status (a connection over a cap counts as a 503)."""
        self.refused_connections = 0
        """Connections over a cap, answered 503 and closed before a byte was read."""

    @property
    def open_connections(self) -> int:
        return self._caps.open

    def _report(self, message: str) -> None:
        self._write(f"{self._name} {self.host}:{self.port}: {message}")

    async def serve(
        self, task_status: anyio.abc.TaskStatus[None] = anyio.TASK_STATUS_IGNORED
    ) -> None:
        """Accept until cancelled. Out of descriptors (EMFILE), it pauses and goes on."""
        shortage = ensure_descriptors(self._limits.max_connections)
        try:
            listener = await anyio.create_tcp_listener(
                local_host=self.host, local_port=self.port, reuse_port=self._limits.reuse_port
            )
        except OSError as exc:  # said as the operator reads it: which address, why
            why = os.strerror(exc.errno) if exc.errno else str(exc)
            what = f"cannot listen on {self.host}:{self.port}: {why[:1].lower()}{why[1:]}"
            raise OSError(exc.errno, what) from exc
        async with listener, anyio.create_task_group() as connections:
            self.port = listener.extra(anyio.abc.SocketAttribute.local_port)
            if shortage:
                self._report(shortage)
            task_status.started()
            for each in listener.listeners:  # one per address (IPv4 and IPv6 of a name)
                assert isinstance(each, anyio.abc.SocketListener)
                connections.start_soon(self._accept, each, connections)

    async def _accept(
        self, listener: anyio.abc.SocketListener, connections: anyio.abc.TaskGroup
    ) -> None:
        while True:
            try:
                stream = await listener.accept()
            except OSError as exc:  # EMFILE, ENFILE, ENOBUFS: breathe, then go on
                if exc.errno not in _ACCEPT_RETRYABLE:
                    raise
                self._accept_failed(f"cannot accept a connection: {exc.strerror or exc}")
                await anyio.sleep(_ACCEPT_PAUSE)
                continue
            _hold_reads(stream)
            peer = _peer(stream)
            refusal = self._caps.admit(peer)
            if refusal is None:
                connections.start_soon(self._connection, stream, peer)
            else:
                connections.start_soon(self._refuse_connection, stream, refusal)

    async def _refuse_connection(self, stream: anyio.abc.ByteStream, refusal: str) -> None:
        """Over a cap: a 503 sent before anything is read, then the connection closes."""
        self.refused_connections += 1
        self._over_cap(f"{refusal}: new connections are answered 503")
        busy = Response.json(503, _error(f"too many connections: {refusal}"))
        busy.headers.append(("Retry-After", "1"))
        self._count(busy.status)
        async with stream:
            with contextlib.suppress(anyio.BrokenResourceError, TimeoutError, OSError):
                await self._send(h11.Connection(h11.SERVER), stream, busy)
                if self._lingering_refusals < _LINGERING_REFUSALS_MAX:
                    self._lingering_refusals += 1
                    try:
                        await _linger(stream)
                    finally:
                        self._lingering_refusals -= 1

    async def _connection(self, stream: anyio.abc.ByteStream, peer: str) -> None:
        """Serve one connection; whatever happens on it ends here, never in the listener."""
        conn = h11.Connection(h11.SERVER, max_incomplete_event_size=_HEAD_BYTES)
        try:
            async with stream:
                first = True
                while await self._one_request(conn, stream, peer, first):
                    conn.start_next_cycle()
                    first = False
        except (anyio.BrokenResourceError, anyio.EndOfStream, anyio.ClosedResourceError):
            pass  # the client went away; nothing was half-accepted
        except (TimeoutError, OSError, h11.LocalProtocolError):
            pass  # idle too long, or the socket failed
        finally:
            self._caps.release(peer)

    async def _one_request(
        self, conn: h11.Connection, stream: anyio.abc.ByteStream, peer: str, first: bool
    ) -> bool:
        """Serve one request; False when the connection is to be closed."""
        if not first:
            await self._await_request(conn, stream)
        limits = self._limits
        where = peer
        error: str | None = None  # what a refusal told the client (None: the handler's answer)
        try:
            event = await self._next(
                conn,
                stream,
                anyio.current_time() + limits.header_timeout,
                f"the request head did not come within {limits.header_timeout:g} s",
            )
            if isinstance(event, h11.ConnectionClosed):
                return False
            assert isinstance(event, h11.Request)
            method = event.method.decode("ascii", "replace")
            where = f"{peer} {printable(method, 20)} {printable(_path(event), 200)}"
            head, gzipped = self._head(event, peer)
            request = await self._body(conn, stream, head, gzipped)
            response = await self._handler(request)
        except Refuse as refusal:
            error = str(refusal)
            response = Response.json(refusal.status, _error(error))
            response.headers.extend(refusal.headers)
        except _TooSlow as slow:
            error = str(slow)
            response = Response.json(408, _error(error))
        except h11.RemoteProtocolError as exc:
            if conn.our_state not in (h11.IDLE, h11.SEND_RESPONSE):
                return False  # nothing more can be said on this connection
            status = exc.error_status_hint  # 431: the head over its limit; 501: a coding
            what = {431: f"request head larger than {_HEAD_BYTES} bytes"}.get(status)
            error = what or "malformed HTTP request"
            response = Response.json(status, _error(error))
        except (TimeoutError, anyio.EndOfStream):
            raise  # the connection's, handled by _connection
        except Exception as exc:  # a bug in a handler: this request fails, not the server
            response = Response.json(500, _error(f"internal error: {type(exc).__name__}"))
            error = f"internal error: {printable(repr(exc), 300)}"  # for the log, not the client
        self._count(response.status)
        if error is not None and self._on_refused is not None:
            self._on_refused(where, response.status, error)
        await self._send(conn, stream, response)
        if conn.our_state is h11.DONE and conn.their_state is h11.DONE:
            return True
        if conn.their_state is not h11.CLOSED:  # the rest of the request is not read
            await _linger(stream)
        return False

    def _count(self, status: int) -> None:
        if status >= 400:
            self.refused[status] = self.refused.get(status, 0) + 1

    async def _await_request(self, conn: h11.Connection, stream: anyio.abc.ByteStream) -> None:
        """Between requests: wait for the next one's first byte (``idle_timeout`` at
        most, then the connection closes quietly); its head deadline starts then."""
        pending, closed = conn.trailing_data
        if pending or closed:
            return
        with anyio.fail_after(self._limits.idle_timeout):
            conn.receive_data(await _receive(stream))

    async def _next(
        self, conn: h11.Connection, stream: anyio.abc.ByteStream, deadline: float, late: str
    ) -> object:
        """The next h11 event, reading as needed; :class:`_TooSlow` (saying ``late``) past
        ``deadline``, or when a read waits longer than ``idle_timeout``."""
        idle = self._limits.idle_timeout
        while True:
            event = conn.next_event()
            if event is not h11.NEED_DATA:
                return event
            left = deadline - anyio.current_time()
            with anyio.move_on_after(min(idle, left)):
                conn.receive_data(await _receive(stream))
                continue
            raise _TooSlow(late if left <= idle else f"nothing came for {idle:g} s")

    def _head(self, event: h11.Request, peer: str) -> tuple[Head, bool]:
        """The request's head and whether its body is gzip, or :class:`Refuse` for what
        the head alone says is refused."""
        headers: dict[str, str] = {}
        for name, value in event.headers:
            headers.setdefault(name.decode("latin-1"), value.decode("latin-1"))
        if "content-length" in headers and "transfer-encoding" in headers:
            # RFC 9112 6.3: a request smuggling attempt or a broken proxy; answer, close
            raise Refuse(400, "Content-Length together with Transfer-Encoding is refused")
        head = Head(event.method.decode("ascii", "replace"), _path(event), headers, peer=peer)
        if self._check_head is not None:
            self._check_head(head)
        if head.method not in self._limits.methods:
            raise Refuse(405, f"only {', '.join(self._limits.methods)} accepted")
        gzipped = self._limits.decode_gzip and is_gzip(
            b", ".join(v for n, v in event.headers if n == b"content-encoding").decode("latin-1")
        )
        limit = self._limits.max_body_bytes
        length = headers.get("content-length", "")
        if length.isdigit() and int(length) > limit:
            raise Refuse(413, f"body larger than {limit} bytes")
        return head, gzipped

    async def _body(
        self, conn: h11.Connection, stream: anyio.abc.ByteStream, head: Head, gzipped: bool
    ) -> Request:
        """The body, decoded when ``gzipped``; both the bytes sent and the decoded ones
        bounded by ``max_body_bytes`` (413)."""
        if conn.they_are_waiting_for_100_continue:  # curl waits a second for it otherwise
            go_on = h11.InformationalResponse(status_code=100, headers=[])
            await self._send_bytes(stream, conn.send(go_on))
        limit, within = self._limits.max_body_bytes, self._limits.request_timeout
        deadline = anyio.current_time() + within
        late = f"the request body did not come within {within:g} s"
        body = bytearray()
        gunzip = _Gunzip(limit) if gzipped else None
        sent = 0
        while True:
            event = await self._next(conn, stream, deadline, late)
            if isinstance(event, h11.Data):
                sent += len(event.data)
                if sent > limit:
                    raise Refuse(413, f"body larger than {limit} bytes")
                if gunzip is None:
                    body += event.data
                else:
                    await gunzip.feed(event.data, body)
                await anyio.lowlevel.checkpoint()  # a fast sender does not hold the loop
            elif isinstance(event, h11.EndOfMessage):
                if gunzip is not None:
                    gunzip.finish()
                return Request(head.method, head.path, head.headers, bytes(body), peer=head.peer)
            else:
                raise h11.RemoteProtocolError("request ended early")

    async def _send(
        self, conn: h11.Connection, stream: anyio.abc.ByteStream, response: Response
    ) -> None:
        headers = [("Content-Length", str(len(response.body))), *response.headers]
        if response.content_type:
            headers.append(("Content-Type", response.content_type))
        if response.status >= 400 and conn.their_state is not h11.DONE:
            headers.append(("Connection", "close"))  # the rest of the request is unread
        reason = HTTPStatus(response.status).phrase.encode()
        parts = [
            conn.send(h11.Response(status_code=response.status, headers=headers, reason=reason))
        ]
        if response.body:
            parts.append(conn.send(h11.Data(data=response.body)))
        parts.append(conn.send(h11.EndOfMessage()))
        await self._send_bytes(stream, b"".join(part for part in parts if part))

    async def _send_bytes(self, stream: anyio.abc.ByteStream, data: bytes | None) -> None:
        with anyio.fail_after(self._limits.idle_timeout):  # a client that never reads
            await stream.send(data or b"")


def is_gzip(content_encoding: str) -> bool:
    """Whether a body in ``content_encoding`` (the header's values, comma-joined) is
    gzip: ``gzip`` or ``x-gzip`` once, in any case, with or without ``identity`` beside
    it (which is none); an empty one is none. Any other, or gzip twice, is a 415."""
    codings = [word.strip(" \t").lower() for word in content_encoding.split(",")]
    applied = [coding for coding in codings if coding and coding != "identity"]
    if not applied:
        return False
    if len(applied) == 1 and applied[0] in GZIP_CODINGS:
        return True
    raise Refuse(
        415,
        f"Content-Encoding {printable(content_encoding)!r} is not accepted: "
        "gzip (x-gzip) once, or identity",
        [("Accept-Encoding", "gzip, identity")],  # RFC 7694 3
    )


class _Gunzip:
    """A gzip body decoded as it comes, never past ``limit`` bytes: each decompress is
    allowed what the limit still leaves plus one byte (to know it is over), at most
    ``_DECODE_PIECE``, the other clients running between pieces. Members one after the
    other (RFC 1952 2.2) are one body, as ``gzip -d`` reads them."""

    def __init__(self, limit: int) -> None:
        self._limit = limit
        self._zlib = zlib.decompressobj(_GZIP_WBITS)

    async def feed(self, data: bytes, body: bytearray) -> None:
        """Decode ``data`` onto ``body``: 413 past the limit, 400 for what is not gzip."""
        capped = False  # the last piece filled its room: zlib may hold more output
        while data or capped:
            if self._zlib.eof:  # the next member
                self._zlib = zlib.decompressobj(_GZIP_WBITS)
            room = min(self._limit - len(body) + 1, _DECODE_PIECE)
            try:
                out = self._zlib.decompress(data, room)
            except zlib.error as exc:
                raise Refuse(400, f"the body is not valid gzip: {exc}") from None
            body += out
            if len(body) > self._limit:
                raise Refuse(413, f"body larger than {self._limit} bytes once decoded (gzip)")
            capped = len(out) == room and not self._zlib.eof
            data = self._zlib.unused_data if self._zlib.eof else self._zlib.unconsumed_tail
            await anyio.lowlevel.checkpoint()

    def finish(self) -> None:
        """At the body's end: 400 unless its last gzip member ended too."""
        if not self._zlib.eof:
            raise Refuse(400, "the gzip body is truncated: it ended before its gzip trailer")


async def _receive(stream: anyio.abc.ByteStream) -> bytes:
    """The next bytes, or b"" at the end of the stream (what h11 takes for its end)."""
    try:
        return await stream.receive(_READ_BYTES)
    except anyio.EndOfStream:
        return b""


async def _linger(stream: anyio.abc.ByteStream) -> None:
    """Say we are done (FIN: the client reads the answer, then its end), then drop what
    it still sends, for ``_LINGER_SECONDS`` at most: never buffered, never parsed."""
    gone = (anyio.EndOfStream, anyio.BrokenResourceError, anyio.ClosedResourceError, OSError)
    with anyio.move_on_after(_LINGER_SECONDS), contextlib.suppress(*gone):
        await stream.send_eof()
        while await stream.receive(_READ_BYTES):
            pass


def _peer(stream: anyio.abc.ByteStream) -> str:
    """The client's address, without its port: what the per-peer cap counts by."""
    address = stream.extra(anyio.abc.SocketAttribute.remote_address, "")
    return str(address[0]) if isinstance(address, tuple) else str(address)


def _to_stderr(message: str) -> None:
    sys.stderr.write(f"event-exporter: {message}\n")


def _hold_reads(stream: anyio.abc.ByteStream) -> None:
    """Stop an accepted connection's transport from reading until we ask for bytes.

    anyio's asyncio backend pauses a connection it opens, but leaves one it accepts
    reading: until the connection's task first calls ``receive``, every byte the client
    sends is read into the process, without bound (60 clients sending 10 MiB bodies at once
    then cost 80 MiB before a head was parsed). ``receive`` resumes reading while it waits,
    then pauses again, so what is buffered stays what we asked for."""
    transport = getattr(stream, "_transport", None)  # the asyncio backend's SocketStream
    pause = getattr(transport, "pause_reading", None)
    if callable(pause):
        pause()


def _error(message: str) -> dict[str, str]:
    return {"error": message}


def _path(event: h11.Request) -> str:
    """The request's path, without its query."""
    return event.target.split(b"?", 1)[0].decode("latin-1")

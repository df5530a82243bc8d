"""A small HTTP/1.1 server on h11 (the state machine httpx itself uses) and anyio, for the
http source and the metrics endpoint: keep-alive, a body limit, an idle timeout, and
every request answered or its connection closed, whatever a client sends.

A handler gets a whole :class:`Request` and returns a :class:`Response`, or raises
:class:`Refuse` for a 4xx/5xx with a JSON ``{"error": ...}`` body.
"""

from __future__ import annotations

import errno
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field

import anyio
import anyio.abc
import h11
import orjson

_READ_BYTES = 1 << 16
_ACCEPT_RETRYABLE = frozenset({errno.EMFILE, errno.ENFILE, errno.ENOBUFS, errno.ENOMEM})


@dataclass(frozen=True)
class Request:
    method: str
    path: str
    """Without the query."""
    headers: dict[str, str]
    """Names in lower case; a repeated header keeps its first value."""
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


Handler = Callable[[Request], Awaitable[Response]]


@dataclass(frozen=True)
class ServerLimits:
    max_body_bytes: int = 10 << 20
    idle_timeout: float = 60.0
    """A connection silent this long (between or inside requests) is closed."""
    methods: tuple[str, ...] = ("POST",)
    max_connections: int = 1024


class HttpServer:
    """``serve()`` accepts connections until cancelled; ``port`` is the one bound."""

    def __init__(self, host: str, port: int, handler: Handler, limits: ServerLimits) -> None:
        self.host = host
        self.port = port
        self._handler = handler
        self._limits = limits
        self.refused: dict[int, int] = {}
        """Requests answered 4xx/5xx, by status."""

    async def serve(
        self, task_status: anyio.abc.TaskStatus[None] = anyio.TASK_STATUS_IGNORED
    ) -> None:
        """Accept until cancelled. Out of descriptors (EMFILE) or over ``max_connections``,
        it waits for a connection to end instead of failing."""
        listener = await anyio.create_tcp_listener(local_host=self.host, local_port=self.port)
        slots = anyio.Semaphore(self._limits.max_connections)
        async with listener, anyio.create_task_group() as connections:
            self.port = listener.extra(anyio.abc.SocketAttribute.local_port)
            task_status.started()
            for each in listener.listeners:  # one per address (IPv4 and IPv6 of a name)
                assert isinstance(each, anyio.abc.SocketListener)
                connections.start_soon(self._accept, each, slots, connections)

    async def _accept(
        self,
        listener: anyio.abc.SocketListener,
        slots: anyio.Semaphore,
        connections: anyio.abc.TaskGroup,
    ) -> None:
        while True:
            await slots.acquire()
            try:
                stream = await listener.accept()
            except OSError as exc:  # EMFILE, ENFILE, ENOBUFS: breathe, then go on
                slots.release()
                if exc.errno not in _ACCEPT_RETRYABLE:
                    raise
                await anyio.sleep(0.1)
                continue
            connections.start_soon(self._connection, stream, slots)

    async def _connection(self, stream: anyio.abc.ByteStream, slot: anyio.Semaphore) -> None:
        """Serve one connection; whatever happens on it ends here, never in the listener."""
        conn = h11.Connection(h11.SERVER, max_incomplete_event_size=64 << 10)
        try:
            async with stream:
                try:
                    while await self._one_request(conn, stream):
                        conn.start_next_cycle()
                except h11.RemoteProtocolError:
                    if conn.our_state in (h11.IDLE, h11.SEND_RESPONSE):
                        malformed = Response.json(400, _error("malformed HTTP request"))
                        await self._send(conn, stream, malformed)
        except (anyio.BrokenResourceError, anyio.EndOfStream, anyio.ClosedResourceError):
            pass  # the client went away; nothing was half-accepted
        except (TimeoutError, OSError, h11.LocalProtocolError):
            pass  # idle too long, or the socket failed
        finally:
            slot.release()

    async def _one_request(self, conn: h11.Connection, stream: anyio.abc.ByteStream) -> bool:
        """Serve one request; False when the connection is to be closed."""
        event = await self._next(conn, stream)
        if isinstance(event, h11.ConnectionClosed):
            return False
        assert isinstance(event, h11.Request)
        try:
            request = await self._request(conn, stream, event)
            response = await self._handler(request)
        except Refuse as refusal:
            response = Response.json(refusal.status, _error(str(refusal)))
            response.headers.extend(refusal.headers)
        except (h11.RemoteProtocolError, TimeoutError, anyio.EndOfStream):
            raise  # the connection's, handled by _connection
        except Exception as exc:  # a bug in a handler: this request fails, not the server
            response = Response.json(500, _error(f"internal error: {type(exc).__name__}"))
        if response.status >= 400:
            self.refused[response.status] = self.refused.get(response.status, 0) + 1
        await self._send(conn, stream, response)
        return conn.our_state is h11.DONE and conn.their_state is h11.DONE

    async def _next(self, conn: h11.Connection, stream: anyio.abc.ByteStream) -> object:
        while True:
            event = conn.next_event()
            if event is not h11.NEED_DATA:
                return event
            with anyio.fail_after(self._limits.idle_timeout):
                try:
                    data = await stream.receive(_READ_BYTES)
                except anyio.EndOfStream:
                    data = b""
            conn.receive_data(data)

    async def _request(
        self, conn: h11.Connection, stream: anyio.abc.ByteStream, head: h11.Request
    ) -> Request:
        method = head.method.decode("ascii", "replace")
        if method not in self._limits.methods:
            raise Refuse(405, f"only {', '.join(self._limits.methods)} accepted")
        headers: dict[str, str] = {}
        for name, value in head.headers:
            headers.setdefault(name.decode("latin-1"), value.decode("latin-1"))
        limit = self._limits.max_body_bytes
        length = headers.get("content-length", "")
        if length.isdigit() and int(length) > limit:
            raise Refuse(413, f"body larger than {limit} bytes")
        body = bytearray()
        while True:
            event = await self._next(conn, stream)
            if isinstance(event, h11.Data):
                body += event.data
                if len(body) > limit:
                    raise Refuse(413, f"body larger than {limit} bytes")
            elif isinstance(event, h11.EndOfMessage):
                break
            else:
                raise h11.RemoteProtocolError("request ended early")
        path = head.target.split(b"?", 1)[0].decode("latin-1")
        return Request(method, path, headers, bytes(body))

    async def _send(
        self, conn: h11.Connection, stream: anyio.abc.ByteStream, response: Response
    ) -> None:
        headers = [("Content-Length", str(len(response.body))), *response.headers]
        if response.content_type:
            headers.append(("Content-Type", response.content_type))
        if response.status >= 400 and conn.their_state is not h11.DONE:
            headers.append(("Connection", "close"))  # the rest of the request is unread
        parts = [conn.send(h11.Response(status_code=response.status, headers=headers))]
        if response.body:
            parts.append(conn.send(h11.Data(data=response.body)))
        parts.append(conn.send(h11.EndOfMessage()))
        with anyio.fail_after(self._limits.idle_timeout):  # a client that never reads
            await stream.send(b"".join(part for part in parts if part))


def _error(message: str) -> dict[str, str]:
    return {"error": message}

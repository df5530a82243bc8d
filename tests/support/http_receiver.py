"""A real HTTP/1.1 receiver for driver tests: a server thread with a scripted fault plan.

``Receiver(plan=["500", "503:retry-after=1", "429", "400", "stall", "reset"])`` listens
on 127.0.0.1 (an ephemeral port) and answers requests, in their order of arrival, with
the plan's actions, one per request, then ``ok`` forever. Actions:

``ok``                        200
``NNN``                       that status (200 to 599), keeping the connection open
``NNN:retry-after=VALUE``     with ``Retry-After: VALUE`` (delta-seconds, or any text)
``NNN:retry-after-date=S``    with ``Retry-After`` an HTTP-date S seconds after the answer
``stall``                     read the request, never answer; let go once the client
                              gives up (closes), the receiver stops, or ``stall_timeout``
``reset``                     read the request, then close with SO_LINGER 0: the client
                              sees the connection reset (RST), no answer

Every request is read whole (Content-Length or chunked) before its action, and kept as a
:class:`Request`: what was asked, what was answered and when (``time.monotonic``, the
clock anyio uses, so waits can be measured on this side). ``received`` holds the requests
answered 2xx, the only ones a client may count as delivered; their bodies, decompressed
when ``Content-Encoding: gzip``, give the events that arrived (``events()``).

A 2xx request is recorded before its answer is written: once the client has its answer,
the record is there. Stalled and reset requests are recorded when they end; ``stop()``
(the end of the ``with`` block) ends them all, so after it every request is recorded.
stop() is bounded: it shuts every open connection down and joins every thread with a
timeout, then fails the test if a handler raised something other than a client hanging up.
"""

from __future__ import annotations

import contextlib
import email.utils
import gzip
import http.server
import os
import selectors
import socket
import socketserver
import struct
import sys
import threading
import time
import zlib
from collections import Counter
from collections.abc import Iterable
from dataclasses import dataclass
from types import TracebackType
from typing import Any, Self

HOST = "127.0.0.1"
MAX_CHUNKS = 1 << 20
"""Chunked bodies: at most this many chunks (every loop here is bounded)."""


@dataclass(frozen=True, slots=True)
class Respond:
    """Answer ``status``; ``retry_after``: the header's text; ``retry_after_date``: send
    the header as an HTTP-date that many seconds after the answer. A hostile receiver:
    ``reason`` for the status line's reason phrase, ``body`` instead of
    ``{"status":N}``, ``echo``: the body is the value of this request header (a token
    echoed back), ``headers`` added as they are (a Location)."""

    status: int
    retry_after: str | None = None
    retry_after_date: float | None = None
    reason: str | None = None
    body: bytes | None = None
    echo: str | None = None
    headers: tuple[tuple[str, str], ...] = ()

    def __post_init__(self) -> None:
        if not 200 <= self.status <= 599:
            raise ValueError(f"a scripted answer is a final status, 200 to 599: {self.status}")


@dataclass(frozen=True, slots=True)
class Stall:
    """Hold the request without answering."""


@dataclass(frozen=True, slots=True)
class Reset:
    """Close the connection abortively (RST) once the request is read."""


Action = Respond | Stall | Reset
OK = Respond(200)


def parse_action(text: str) -> Action:
    """``"ok"``, ``"stall"``, ``"reset"``, ``"503"``, ``"503:retry-after=1"``,
    ``"503:retry-after=Wed, 21 Oct 2015 07:28:00 GMT"``, ``"503:retry-after-date=2"``."""
    if text == "ok":
        return OK
    if text == "stall":
        return Stall()
    if text == "reset":
        return Reset()
    status, colon, option = text.partition(":")
    if not (len(status) == 3 and status.isdigit()):
        raise ValueError(f"not a receiver action: {text!r}")
    if not colon:
        return Respond(int(status))
    key, equals, value = option.partition("=")
    if equals and key == "retry-after":
        return Respond(int(status), retry_after=value)
    if equals and key == "retry-after-date":
        return Respond(int(status), retry_after_date=float(value))
    raise ValueError(f"not a receiver action: {text!r} (options: retry-after, retry-after-date)")


def _describe(action: Action) -> str:
    if isinstance(action, Stall):
        return "stall"
    if isinstance(action, Reset):
        return "reset"
    if action.retry_after is not None:
        return f"{action.status}:retry-after={action.retry_after}"
    if action.retry_after_date is not None:
        return f"{action.status}:retry-after-date={action.retry_after_date:g}"
    return str(action.status)


@dataclass(frozen=True, slots=True)
class Request:
    """One request, read whole, and what became of it."""

    index: int
    """Its place in the order of arrival (0-based), the plan's order."""
    connection: int
    """Which connection it came on (0-based, in the order they were accepted)."""
    action: str
    """The plan's action (``"503:retry-after=1"``, ``"stall"``), or why it was refused."""
    status: int | None
    """The status answered; None: stalled or reset, never answered."""
    method: str
    path: str
    headers: tuple[tuple[str, str], ...]
    raw_body: bytes
    """The body as it came (compressed, when it was)."""
    body: bytes
    """The body, decompressed."""
    arrived: float
    """time.monotonic() once the whole request was read."""
    ended: float
    """time.monotonic() when it was answered, reset or let go (a stall)."""
    released_by: str | None = None
    """What ended a stall: ``"client"`` (it closed), ``"stop"`` or ``"timeout"``."""

    def header(self, name: str) -> str | None:
        """The first header called ``name`` (any case), or None."""
        wanted = name.lower()
        return next((value for key, value in self.headers if key.lower() == wanted), None)

    def lines(self) -> list[bytes]:
        """The body's newline-terminated lines, without their newlines; a body not ending
        with a newline fails (an NDJSON body ends with one)."""
        if not self.body:
            return []
        assert self.body.endswith(b"\n"), f"request {self.index}: body ends {self.body[-40:]!r}"
        return self.body[:-1].split(b"\n")


class Receiver:
    """An HTTP/1.1 server thread on 127.0.0.1 answering as ``plan`` says, then ``ok``."""

    def __init__(
        self,
        plan: Iterable[str | Action] = (),
        *,
        path: str = "/ingest",
        stall_timeout: float = 30.0,
        idle_timeout: float = 30.0,
        port: int = 0,
    ) -> None:
        """``port``: 0 for an ephemeral one; another receiver's, to stand in for it once
        it stopped (a server that comes back)."""
        self.path = path
        self.stall_timeout = stall_timeout
        self.idle_timeout = idle_timeout
        """A connection idle this long between requests is closed (bounds every read)."""
        self._plan = [parse_action(a) if isinstance(a, str) else a for a in plan]
        self._lock = threading.Lock()
        self._recorded = threading.Condition(self._lock)
        self._requests: list[Request] = []
        self._next_index = 0
        self._connections = 0
        self._open: set[socket.socket] = set()
        self._handlers: list[threading.Thread] = []
        self._errors: list[BaseException] = []
        self.hangups = 0
        """Connections a client broke while this side read or wrote (benign)."""
        self.stopping = threading.Event()
        self._wake_r, self._wake_w = os.pipe()
        self._server = _Server(self, port)
        self._thread = threading.Thread(
            target=self._server.serve_forever,
            kwargs={"poll_interval": 0.05},
            name="http-receiver",
            daemon=True,
        )
        self._started = False
        self._stopped = False

    # -- life cycle --------------------------------------------------------------------

    @property
    def port(self) -> int:
        return int(self._server.server_address[1])

    @property
    def url(self) -> str:
        return f"http://{HOST}:{self.port}{self.path}"

    def start(self) -> Self:
        self._started = True
        self._thread.start()
        return self

    def __enter__(self) -> Self:
        return self.start()

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.stop()

    def stop(self, timeout: float = 10.0, *, finish_answers: bool = False) -> None:
        """Stop accepting, end every connection and stall, join every thread (bounded).
        ``finish_answers``: as a server shutting down cleanly, a request already read is
        still answered (only the reading side of each connection is shut: an idle one
        ends, a request half read is cut), so none is recorded that its client missed."""
        if self._stopped:
            return
        self._stopped = True
        deadline = time.monotonic() + timeout
        self.stopping.set()
        os.write(self._wake_w, b"s")  # never read: readable from now on, for every stall
        if self._started:
            self._server.shutdown()  # serve_forever notices within its poll interval
            self._thread.join(timeout)
        with self._lock:
            for conn in self._open:  # a keep-alive connection waiting for its next request
                with contextlib.suppress(OSError):
                    conn.shutdown(socket.SHUT_RD if finish_answers else socket.SHUT_RDWR)
            handlers = list(self._handlers)
        for handler in handlers:
            handler.join(max(0.0, deadline - time.monotonic()))
        alive = [t.name for t in [self._thread, *handlers] if t.is_alive()]
        self._server.server_close()
        os.close(self._wake_r)
        os.close(self._wake_w)
        assert not alive, f"receiver threads still running after {timeout} s: {alive}"
        if self._errors:
            raise AssertionError(f"receiver handler failed: {self._errors!r}") from self._errors[0]

    def add_plan(self, *actions: str | Action) -> None:
        """Append to the plan: for answers that name this receiver's own port."""
        with self._lock:
            self._plan += [parse_action(a) if isinstance(a, str) else a for a in actions]

    # -- what arrived ------------------------------------------------------------------

    @property
    def requests(self) -> list[Request]:
        """Every request recorded so far, in order of arrival."""
        with self._lock:
            return sorted(self._requests, key=lambda r: r.index)

    @property
    def received(self) -> list[Request]:
        """The requests answered 2xx, in order of arrival."""
        return [r for r in self.requests if r.status is not None and 200 <= r.status < 300]

    def wait_recorded(self, count: int, timeout: float) -> bool:
        """Wait until ``count`` requests are recorded (a stall: once it ended)."""
        with self._recorded:
            return self._recorded.wait_for(lambda: len(self._requests) >= count, timeout)

    @property
    def connections(self) -> int:
        """Connections accepted so far."""
        with self._lock:
            return self._connections

    def events(self) -> list[bytes]:
        """Every event (NDJSON line, without its newline) of every 2xx request, in order."""
        return [line for request in self.received for line in request.lines()]

    def duplicates(self) -> int:
        """Events received more than once: copies beyond the first."""
        counts = Counter(self.events())
        return sum(counts.values()) - len(counts)

    # -- for the handlers --------------------------------------------------------------

    def judge(
        self, index: int, headers: tuple[tuple[str, str], ...], body: bytes, action: Respond
    ) -> Respond:
        """The answer to a request the plan answers ``action``: here the plan's; a
        collector's receiver (a subclass) answers a 2xx of the plan as the collector would,
        storing what it takes and refusing what it refuses."""
        return action

    def _take_action(self, *, refused: bool = False) -> tuple[int, Action]:
        """The request's index and the plan's next action (none taken for a refusal)."""
        with self._lock:
            index = self._next_index
            self._next_index += 1
            if refused or not self._plan:
                return index, OK
            return index, self._plan.pop(0)

    def _record(self, request: Request) -> None:
        with self._recorded:
            self._requests.append(request)
            self._recorded.notify_all()

    def _accepted(self, conn: socket.socket) -> int:
        with self._lock:
            self._open.add(conn)
            self._connections += 1
            return self._connections - 1

    def _close_abortively(self, conn: socket.socket) -> None:
        """RST instead of FIN: SO_LINGER on with a zero timeout, then close."""
        with self._lock:
            self._open.discard(conn)
            conn.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
            conn.close()

    def _forget(self, conn: socket.socket) -> None:
        with self._lock:
            self._open.discard(conn)

    def _started_handler(self, thread: threading.Thread) -> None:
        with self._lock:
            self._handlers.append(thread)

    def _failed(self, error: BaseException) -> None:
        with self._lock:
            if isinstance(error, ConnectionError):
                self.hangups += 1
            else:
                self._errors.append(error)


class _Server(http.server.ThreadingHTTPServer):
    daemon_threads = True
    block_on_close = False  # stop() joins the handlers itself, with a timeout

    def __init__(self, receiver: Receiver, port: int = 0) -> None:
        self.receiver = receiver
        super().__init__((HOST, port), _Handler)

    def server_bind(self) -> None:
        # HTTPServer.server_bind would look the host's name up (getfqdn): no DNS here.
        socketserver.TCPServer.server_bind(self)
        self.server_name = HOST
        self.server_port = int(self.server_address[1])

    def process_request(self, request: Any, client_address: Any) -> None:
        thread = threading.Thread(
            target=self.process_request_thread,
            args=(request, client_address),
            name=f"http-receiver-{client_address[1]}",
            daemon=True,
        )
        self.receiver._started_handler(thread)
        thread.start()

    def shutdown_request(self, request: Any) -> None:
        self.receiver._forget(request)
        super().shutdown_request(request)

    def handle_error(self, request: Any, client_address: Any) -> None:
        error = sys.exception()
        if error is not None:
            self.receiver._failed(error)


class _Handler(http.server.BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"
    disable_nagle_algorithm = True  # headers and body are two writes: no 40 ms delayed ACK
    server: _Server

    def setup(self) -> None:
        self.request.settimeout(self.server.receiver.idle_timeout)  # bounds every read
        super().setup()
        self.conn_index = self.server.receiver._accepted(self.connection)

    def log_message(self, format: str, *args: Any) -> None:
        return None  # quiet: every request is recorded instead

    def do_POST(self) -> None:
        self._serve()

    def do_PUT(self) -> None:
        self._serve()

    def _serve(self) -> None:
        receiver = self.server.receiver
        raw = self._read_body()
        arrived = time.monotonic()
        headers = tuple((str(k), str(v)) for k, v in self.headers.items())
        body, refusal = _decode(raw, self.headers.get("Content-Encoding"))

        def record(index: int, action: str, status: int | None, **more: Any) -> None:
            receiver._record(
                Request(
                    index=index,
                    connection=self.conn_index,
                    action=action,
                    status=status,
                    method=self.command,
                    path=self.path,
                    headers=headers,
                    raw_body=raw,
                    body=body,
                    arrived=arrived,
                    ended=time.monotonic(),
                    **more,
                )
            )

        if refusal is not None:  # not the plan's doing: takes no action from it
            index, _ = receiver._take_action(refused=True)
            try:
                self._answer(Respond(refusal[0]))
            finally:
                record(index, f"refused: {refusal[1]}", refusal[0])
            return
        index, action = receiver._take_action()
        if isinstance(action, Reset):
            self.close_connection = True
            self.rfile.close()  # its reference would keep the descriptor open
            receiver._close_abortively(self.connection)
            record(index, "reset", None)
        elif isinstance(action, Stall):
            self.close_connection = True
            released_by = self._stall()
            record(index, "stall", None, released_by=released_by)
        else:
            action = receiver.judge(index, headers, body, action)
            if 200 <= action.status < 300:
                record(index, _describe(action), action.status)  # before the client knows
                self._answer(action)
            else:
                try:
                    self._answer(action)
                finally:  # not delivered, whatever the client saw: recorded after
                    record(index, _describe(action), action.status)

    def _answer(self, action: Respond) -> None:
        payload = b"" if action.status == 204 else b'{"status":%d}\n' % action.status
        if action.body is not None:
            payload = action.body
        if action.echo is not None:
            payload = (self.headers.get(action.echo) or "").encode("latin-1")
        self.send_response(action.status, action.reason)  # any latin-1 text, as it is
        for name, value in action.headers:
            self.send_header(name, value)
        if action.retry_after is not None:
            self.send_header("Retry-After", action.retry_after)
        if action.retry_after_date is not None:
            when = time.time() + action.retry_after_date
            self.send_header("Retry-After", email.utils.formatdate(when, usegmt=True))
        if payload:
            self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(payload)))
        self.end_headers()
        if payload:
            self.wfile.write(payload)

    def _stall(self) -> str:
        """Wait until the client closes, the receiver stops, or stall_timeout passes."""
        receiver = self.server.receiver
        deadline = time.monotonic() + receiver.stall_timeout
        with selectors.DefaultSelector() as sel:
            sel.register(receiver._wake_r, selectors.EVENT_READ)
            sel.register(self.connection, selectors.EVENT_READ)
            for _ in range(1000):  # each turn ends with an event or the deadline
                left = deadline - time.monotonic()
                if left <= 0:
                    return "timeout"
                ready = {key.fileobj for key, _ in sel.select(left)}
                if self.connection in ready:  # first: a client that closed, then a stop
                    if self._client_closed():
                        return "client"
                    sel.unregister(self.connection)  # it sent more: it still waits
                if receiver._wake_r in ready:
                    return "stop"
        return "timeout"

    def _client_closed(self) -> bool:
        try:
            return not self.connection.recv(1, socket.MSG_PEEK | socket.MSG_DONTWAIT)
        except BlockingIOError:
            return False
        except ConnectionError:
            return True

    def _read_body(self) -> bytes:
        if self.headers.get("Transfer-Encoding", "").lower() == "chunked":
            return self._read_chunked()
        length = int(self.headers.get("Content-Length", "0"))
        data = self.rfile.read(length)
        if len(data) != length:
            raise ConnectionResetError(f"body cut short: {len(data)} of {length} bytes")
        return data

    def _read_chunked(self) -> bytes:
        out = bytearray()
        for _ in range(MAX_CHUNKS):
            size = int(self.rfile.readline(1 << 16).split(b";")[0].strip(), 16)
            if size == 0:
                for _ in range(100):  # trailers, up to the empty line
                    if self.rfile.readline(1 << 16) in (b"\r\n", b"\n", b""):
                        return bytes(out)
                raise ValueError("chunked body: too many trailer lines")
            chunk = self.rfile.read(size)
            if len(chunk) != size:
                raise ConnectionResetError("chunked body cut short")
            out += chunk
            self.rfile.readline(1 << 16)  # the CRLF after the chunk
        raise ValueError(f"chunked body: more than {MAX_CHUNKS} chunks")


def _decode(raw: bytes, encoding: str | None) -> tuple[bytes, tuple[int, str] | None]:
    """The body decompressed, or a refusal (status, why) for what cannot be read."""
    coding = (encoding or "identity").strip().lower()
    if coding == "identity":
        return raw, None
    if coding == "gzip":
        try:
            return gzip.decompress(raw), None
        except (OSError, EOFError, zlib.error) as exc:
            return raw, (400, f"bad gzip body: {exc}")
    return raw, (415, f"unsupported Content-Encoding {encoding!r}")

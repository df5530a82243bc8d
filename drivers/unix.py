"""The ``unix`` driver: events to a unix socket, as Dovecot 2.4's unix driver, without its losses.

Dovecot connects synchronously (blocking the stats process up to the connect timeout, per
event, while the listener is down), drops the event on any failure and does not notice
short writes. Here connecting happens off the event loop, and a failure closes the
connection and raises RetryableDeliveryError: the retry loop sends the same batch again.

``connect_timeout`` (stream mode) bounds the one wait a unix connect can have: a listener
whose listen backlog is full. A blocking connect with SO_SNDTIMEO, in a worker thread, sleeps in the
kernel until a slot frees or the timeout passes (EAGAIN, retryable). Not
``anyio.connect_unix``: it takes that EAGAIN for "in progress", polls for writability,
which an unconnected unix socket always has, and so spins at 100 % CPU for the whole
timeout, then leaks the socket when cancelled (anyio 4.16; the same Linux quirk as
CPython gh-117208 and mio PR #1564).

Stream mode (default): one ``send`` per batch, counted as delivered once fully written.
A retried batch goes WHOLE over a new connection, so the listener sees every event;
duplicates are possible only for the batch in flight at a failure or cancellation (the
complete lines that got through before the connection broke). That connection may also end in a torn
fragment, bytes without the final newline; a line reader discards a line that EOF cuts
short. A unix socket reports a vanished peer on the next write (EPIPE), unlike TCP; what
is lost is only what a listener had in its socket buffer, unread, when it died: streams
carry no acknowledgement.

Datagram mode: one event per datagram, without the newline, on a connected socket. After
a failure part-way through a batch the driver remembers how many datagrams of that batch
object were sent and a retry of the same (unchanged) batch resumes after them, so
nothing is sent twice; a different batch starts from its beginning.

Errors. Permanent: EMSGSIZE (a datagram larger than the socket allows; the message
names the event and its size), EPROTOTYPE (the path is a socket of the other type),
ENAMETOOLONG. Everything else is retryable: the listener is absent (ENOENT,
ECONNREFUSED), gone (EPIPE, ECONNRESET, ENOTCONN), overloaded (EAGAIN: the backlog
stayed full; ENOBUFS) or forbidden (EACCES): each can change without a configuration
change.
"""

from __future__ import annotations

import errno
import os
import socket
import struct

import anyio
import anyio.abc
import anyio.lowlevel
import anyio.to_thread

from drivers.base import Batch
from exporter.errors import (
    DeliveryError,
    DriverClosedError,
    PermanentDeliveryError,
    RetryableDeliveryError,
)

_PERMANENT = frozenset({errno.EMSGSIZE, errno.EPROTOTYPE, errno.ENAMETOOLONG})
_FOREIGN = (OSError, anyio.BrokenResourceError, anyio.ClosedResourceError)
_SUN_PATH_MAX = 107  # sockaddr_un.sun_path is 108 bytes with the terminating NUL


class UnixDriver:
    """Connects lazily, on the first send after construction, a failure or ``reopen()``."""

    def __init__(
        self, path: str | os.PathLike[str], *, connect_timeout: float = 0.25, datagram: bool = False
    ) -> None:
        self._path = os.fspath(path)
        if len(os.fsencode(self._path)) > _SUN_PATH_MAX:
            raise ValueError(f"unix socket path longer than {_SUN_PATH_MAX} bytes: {self._path}")
        if not connect_timeout > 0:
            raise ValueError(f"connect_timeout must be positive, not {connect_timeout}")
        self._connect_timeout = connect_timeout
        self._datagram = datagram
        self._stream: anyio.abc.UNIXSocketStream | None = None
        self._socket: socket.socket | None = None  # datagram mode
        self._resume: tuple[Batch, bytes, int] | None = None  # batch, its bytes, datagrams sent
        self._closed = False
        self.connections = 0
        """Connections made so far (the first, then each after a failure or reopen)."""

    @property
    def name(self) -> str:
        return f"unix:{self._path}"

    @property
    def concurrency(self) -> int:
        return 1

    async def send(self, batch: Batch) -> None:
        if self._closed:
            raise DriverClosedError(f"{self.name}: send after close")
        if self._datagram:
            await self._send_datagrams(batch)
        else:
            await self._send_stream(batch)

    async def flush(self) -> None:
        return None

    async def reopen(self) -> None:
        await self._disconnect()

    async def aclose(self) -> None:
        self._closed = True
        await self._disconnect()

    async def _send_stream(self, batch: Batch) -> None:
        data = bytes(batch.data)
        if self._stream is None:
            try:
                self._stream = await self._connect_stream()
            except OSError as exc:
                raise self._error("connect", exc) from None
        stream = self._stream
        try:
            await stream.send(data)
        except _FOREIGN as exc:
            await self._drop_stream(stream)
            raise self._error("write", exc) from None
        except BaseException:
            # Cancelled part-way: the next batch must not continue a torn line.
            await self._drop_stream(stream)
            raise

    async def _connect_stream(self) -> anyio.abc.UNIXSocketStream:
        sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        try:
            seconds, fraction = divmod(self._connect_timeout, 1.0)
            timeval = struct.pack("ll", int(seconds), max(1, int(fraction * 1e6)))
            sock.setsockopt(socket.SOL_SOCKET, socket.SO_SNDTIMEO, timeval)
            await anyio.to_thread.run_sync(sock.connect, self._path)
            sock.setblocking(False)
            stream = await anyio.abc.UNIXSocketStream.from_socket(sock)
            self.connections += 1
            return stream
        except BaseException:
            sock.close()
            raise

    async def _send_datagrams(self, batch: Batch) -> None:
        await anyio.lowlevel.checkpoint()
        sock = self._socket or self._connect_datagram()
        sent = self._resume_point(batch)
        ends = batch.ends
        start = ends[sent - 1] if sent else 0
        try:
            # Released on the way out, also when an error keeps this frame alive: a view
            # would stop the caller from resizing the batch's bytearray.
            with memoryview(batch.data) as view:
                while sent < len(ends):
                    end = ends[sent]
                    try:
                        sock.send(view[start : end - 1])
                    except BlockingIOError:  # the receiver's queue is full
                        await anyio.wait_writable(sock)
                        continue
                    start = end
                    sent += 1
        except _FOREIGN as exc:
            error = self._error(f"send of event {sent} ({ends[sent] - start - 1} bytes)", exc)
            if isinstance(error, RetryableDeliveryError):
                self._resume = (batch, bytes(batch.data), sent)
                self._close_socket(sock)
            raise error from None
        except BaseException:
            self._resume = (batch, bytes(batch.data), sent)
            raise

    def _resume_point(self, batch: Batch) -> int:
        """How many datagrams of ``batch`` an earlier, failed send got through."""
        resume, self._resume = self._resume, None
        if resume is not None and resume[0] is batch and resume[1] == batch.data:
            return resume[2]
        return 0

    def _connect_datagram(self) -> socket.socket:
        sock = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)
        sock.setblocking(False)
        try:
            sock.connect(self._path)  # immediate for a unix datagram socket
        except OSError as exc:
            sock.close()
            raise self._error("connect", exc) from None
        self._socket = sock
        self.connections += 1
        return sock

    def _close_socket(self, sock: socket.socket) -> None:
        if self._socket is sock:
            self._socket = None
        anyio.notify_closing(sock)  # wakes a send waiting for room (reopen during send)
        sock.close()

    async def _drop_stream(self, stream: anyio.abc.UNIXSocketStream) -> None:
        if self._stream is stream:
            self._stream = None
        with anyio.CancelScope(shield=True):
            await stream.aclose()

    async def _disconnect(self) -> None:
        if self._socket is not None:
            self._close_socket(self._socket)
        if self._stream is not None:
            await self._drop_stream(self._stream)

    def _error(self, step: str, exc: BaseException) -> DeliveryError:
        """The one place where a socket failure becomes a delivery error."""
        cause = exc.__cause__ or exc  # anyio wraps the OSError in BrokenResourceError
        if isinstance(cause, OSError) and cause.errno is not None:
            code = errno.errorcode.get(cause.errno, str(cause.errno))
            text = f"{cause.strerror} ({code})"
            if cause.errno == errno.EAGAIN and step == "connect":
                text += f": the listen backlog stayed full for {self._connect_timeout} s"
        elif isinstance(exc, anyio.ClosedResourceError):
            text = "connection closed by reopen() or aclose()"
        else:
            text = str(cause) or type(cause).__name__
        message = f"{self.name}: {step} failed: {text}"
        if isinstance(cause, OSError) and cause.errno in _PERMANENT:
            return PermanentDeliveryError(message)
        return RetryableDeliveryError(message)

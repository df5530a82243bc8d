"""Real destinations for driver tests: unix stream and datagram receivers, numbered events.

The receivers run on the test's event loop, in the same thread as the driver. That makes
stop() exact: between two awaits nothing else runs, so no connection or datagram can slip
in between draining what the kernel holds and closing.
"""

from __future__ import annotations

import os
import shutil
import socket
import tempfile
from collections.abc import AsyncIterator, Iterator
from contextlib import AbstractAsyncContextManager, asynccontextmanager, contextmanager
from typing import TypeVar

import anyio
import anyio.abc

from drivers.base import Batch


def numbered_line(n: int, pad: int = 40) -> bytes:
    """Event ``n`` as one JSON line; ``pad`` bytes of filler make it longer."""
    return b'{"n":%d,"pad":"%s"}\n' % (n, b"x" * pad)


def numbered_batches(total: int, per_batch: int, pad: int = 40) -> list[Batch]:
    batches = []
    for first in range(0, total, per_batch):
        batch = Batch()
        for n in range(first, min(first + per_batch, total)):
            batch.append(numbered_line(n, pad))
        batches.append(batch)
    return batches


def complete_lines(data: bytes | bytearray) -> tuple[list[bytes], bytes]:
    """The newline-terminated lines of one connection and the fragment EOF cut short."""
    *lines, fragment = bytes(data).split(b"\n")
    return lines, fragment


@contextmanager
def socket_dir() -> Iterator[str]:
    """A fresh directory under /tmp: pytest's tmp_path can exceed AF_UNIX's 108 bytes."""
    path = tempfile.mkdtemp(prefix="ee-drv-", dir="/tmp")
    try:
        yield path
    finally:
        shutil.rmtree(path, ignore_errors=True)


class UnixStreamReceiver:
    """A unix stream listener keeping what each connection sent; stop() and start() again.

    stop() behaves like a listener that quits cleanly: it stops accepting, then shuts
    every connection for reading (the sender's next write fails with EPIPE) and reads
    what the kernel had already taken, so a write the sender saw succeed is kept.
    """

    def __init__(self, path: str, tg: anyio.abc.TaskGroup) -> None:
        self.path = path
        self.connections: list[bytearray] = []
        self.started = anyio.Event()
        self._tg = tg
        self._listener: socket.socket | None = None
        self._accepting = anyio.CancelScope()
        self._accept_done = anyio.Event()
        self._readers: list[tuple[socket.socket, anyio.Event]] = []

    def start(self) -> None:
        listener = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        listener.bind(self.path)
        listener.listen()
        listener.setblocking(False)
        self._listener = listener
        self._accepting = anyio.CancelScope()
        self._accept_done = anyio.Event()
        self._tg.start_soon(self._accept, listener, self._accepting, self._accept_done)
        self.started.set()

    async def stop(self) -> None:
        listener = self._listener
        assert listener is not None
        self.started = anyio.Event()
        self._accepting.cancel()
        await self._accept_done.wait()
        os.unlink(self.path)  # no new connection from here on
        self._take_pending(listener)  # the backlog: connected, maybe written, not accepted
        listener.close()
        self._listener = None
        for conn, done in self._readers:
            if not done.is_set():  # else the sender hung up and the reader closed it
                conn.shutdown(socket.SHUT_RD)
        for _, done in self._readers:
            await done.wait()
        self._readers.clear()

    def close(self) -> None:
        """Release what an interrupted test left (its tasks are cancelled by then)."""
        if self._listener is not None:
            self._listener.close()
            os.unlink(self.path)

    async def _accept(
        self, listener: socket.socket, scope: anyio.CancelScope, done: anyio.Event
    ) -> None:
        with scope:
            while True:
                await anyio.wait_readable(listener)
                self._take_pending(listener)
        done.set()

    def _take_pending(self, listener: socket.socket) -> None:
        while True:
            try:
                conn, _ = listener.accept()
            except BlockingIOError:
                return
            conn.setblocking(False)
            received = bytearray()
            done = anyio.Event()
            self.connections.append(received)
            self._readers.append((conn, done))
            self._tg.start_soon(self._read, conn, received, done)

    async def _read(self, conn: socket.socket, received: bytearray, done: anyio.Event) -> None:
        with conn:
            while True:
                await anyio.wait_readable(conn)
                try:
                    data = conn.recv(1 << 20)
                except BlockingIOError:
                    continue
                if not data:
                    break
                received += data
        done.set()


def unix_stream_receiver(path: str) -> AbstractAsyncContextManager[UnixStreamReceiver]:
    """A started stream receiver; every task and socket of it is gone when the block ends."""
    return _started(UnixStreamReceiver, path)


class UnixDatagramReceiver:
    """A bound unix datagram socket keeping every datagram; stop() and start() again.

    ``stop_after``: stop by itself once that many datagrams arrived, as a listener that
    crashes in the middle of a batch (after reading what its queue held).
    """

    def __init__(self, path: str, tg: anyio.abc.TaskGroup) -> None:
        self.path = path
        self.datagrams: list[bytes] = []
        self.stop_after: int | None = None
        self._tg = tg
        self._sock: socket.socket | None = None
        self._receiving = anyio.CancelScope()
        self._receive_done = anyio.Event()

    def start(self) -> None:
        sock = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)
        sock.bind(self.path)
        sock.setblocking(False)
        self._sock = sock
        self._receiving = anyio.CancelScope()
        self._receive_done = anyio.Event()
        self._tg.start_soon(self._receive, sock, self._receiving, self._receive_done)

    async def stop(self) -> None:
        self._receiving.cancel()
        await self._receive_done.wait()
        self._shut()

    def close(self) -> None:
        """Release what an interrupted test left (its tasks are cancelled by then)."""
        if self._sock is not None:
            self._shut()

    def _shut(self) -> None:
        """Read what the queue holds and close, with no await: nothing slips in between."""
        sock = self._sock
        assert sock is not None
        self._drain(sock)
        os.unlink(self.path)
        sock.close()
        self._sock = None

    def _drain(self, sock: socket.socket) -> None:
        while True:
            try:
                self.datagrams.append(sock.recv(1 << 20))
            except BlockingIOError:
                return

    async def _receive(
        self, sock: socket.socket, scope: anyio.CancelScope, done: anyio.Event
    ) -> None:
        with scope:
            while self.stop_after is None or len(self.datagrams) < self.stop_after:
                await anyio.wait_readable(sock)
                self._drain(sock)
        done.set()
        if self.stop_after is not None and not scope.cancel_called:
            self._shut()


def unix_datagram_receiver(path: str) -> AbstractAsyncContextManager[UnixDatagramReceiver]:
    """A started datagram receiver; every task and socket of it is gone when the block ends."""
    return _started(UnixDatagramReceiver, path)


R = TypeVar("R", UnixStreamReceiver, UnixDatagramReceiver)


@asynccontextmanager
async def _started(kind: type[R], path: str) -> AsyncIterator[R]:
    receiver: R | None = None
    try:
        async with anyio.create_task_group() as tg:
            receiver = kind(path, tg)
            receiver.start()
            try:
                yield receiver
            finally:
                tg.cancel_scope.cancel()
    finally:
        if receiver is not None:
            receiver.close()

"""The ``unix`` source: a listening unix stream socket for Dovecot's unix event exporter.

Each connection carries newline-delimited Dovecot json or tab-text events (``\\r\\n`` is
tolerated). Connections are served concurrently; within one, events are emitted in order,
and while ``emit`` waits (backpressure) that connection is not read, so its writer waits
too. A bad line, a line longer than ``max_line_bytes`` (never buffered: its bytes are
counted and dropped) and a last line cut short by the end of the connection are reported
on the error stream with the connection and line number, and skipped; the rest go on.

At most ``max_connections`` connections are served at once: one more is closed as soon as
it is accepted, and reported (at most every few seconds, with how many were since). A
connection's buffers go with it when it ends: what one connection can hold is one line.

The socket file has exactly ``mode`` (and ``owner`` and ``group``, when set: the mail
server's user can then connect to a 0600 or 0660 socket made by root) before anyone can
connect, and its path is never chmod'ed, chown'ed nor followed: the socket is bound,
chown'ed, chmod'ed and set listening in a directory only this process can write (made
beside the path, 0700), then renamed into place, which
replaces a name and never follows one. A socket file left by a previous run is replaced;
anything else at the path (a regular file, a directory, a symlink, a socket someone is
still listening on) is refused with a clear error. On cancellation the listener is closed
and the path unlinked, if it is still ours.
"""

from __future__ import annotations

import contextlib
import errno
import functools
import os
import socket
import stat
import tempfile
from dataclasses import dataclass
from typing import TextIO

import anyio
import anyio.abc

from exporter.sources.connections import ConnectionCaps, Throttle, ensure_descriptors
from exporter.sources.intake import Intake
from exporter.sources.lines import LineCounts, LineFeed, LineSplitter
from exporter.sources.reports import SourceReports

_READ_BYTES = 1 << 16
_ACCEPT_PAUSE = 0.1
_SUN_PATH_MAX = 107
_PLACE = "s"
"""The socket's name inside the private directory it is made in."""


@dataclass(frozen=True)
class UnixSourceSettings:
    path: str
    mode: int = 0o600
    owner: int | None = None
    """The socket's uid (resolved from a name when the configuration is read); None:
    this process's."""
    group: int | None = None
    """The socket's gid; None: this process's."""
    max_line_bytes: int = 1 << 20
    """A longer line (without its newline) is reported and skipped, never buffered."""
    max_connections: int = 1024
    """Connections served at once; one more is closed at once and reported."""


@dataclass
class UnixSourceCounts(LineCounts):
    connections: int = 0
    refused_connections: int = 0
    """Connections closed at once, over ``max_connections``."""


class UnixSource:
    """``serve()`` listens until cancelled; every connection is read in its own task.

    At shutdown the lines of a chunk already read but not yet emitted are forced into
    ``intake``, so no line taken from a connection is lost (:class:`LineFeed`). What the
    kernel still holds for a connection is not read.
    """

    def __init__(
        self, settings: UnixSourceSettings, intake: Intake, errors: TextIO | SourceReports
    ) -> None:
        self.settings = settings
        self._intake = intake
        self.counts = UnixSourceCounts()
        self._feed = LineFeed(
            intake,
            errors,
            about=f"unix source {settings.path}: ",
            max_line_bytes=settings.max_line_bytes,
            counts=self.counts,
        )
        self._caps = ConnectionCaps(settings.max_connections)
        self._report = self._feed.reports.warning
        self._over_cap = Throttle(self._report)
        self._accept_failed = Throttle(self._report)

    @property
    def open_connections(self) -> int:
        return self._caps.open

    def announce(self) -> str:
        """What the daemon's log says once this source runs."""
        return f"unix {self.settings.path}"

    async def serve(
        self, task_status: anyio.abc.TaskStatus[None] = anyio.TASK_STATUS_IGNORED
    ) -> None:
        # Raw sockets and anyio.wait_readable: anyio's asyncio unix streams can raise
        # InvalidStateError in a loop callback when a receive is cancelled as data arrives.
        path = self.settings.path
        shortage = ensure_descriptors(self.settings.max_connections)
        listener, ours = _listening_socket(
            path, self.settings.mode, self.settings.owner, self.settings.group
        )
        try:
            with listener:
                listener.setblocking(False)
                if shortage:
                    self._report(shortage)
                task_status.started()
                async with anyio.create_task_group() as tasks:
                    while True:
                        await anyio.wait_readable(listener)
                        await self._accept(listener, tasks)
        finally:
            _unlink_if_ours(path, ours)

    async def _accept(self, listener: socket.socket, tasks: anyio.abc.TaskGroup) -> None:
        """Take the connections waiting in the backlog (bounded by its length)."""
        while True:
            try:
                conn, _ = listener.accept()
            except (BlockingIOError, ConnectionAbortedError, InterruptedError):
                return
            except OSError as exc:  # out of descriptors or memory: let some go first
                self._accept_failed(f"cannot accept a connection: {exc.strerror or exc}")
                await anyio.sleep(_ACCEPT_PAUSE)
                return
            refusal = self._caps.admit()
            if refusal is not None:
                conn.close()
                self.counts.refused_connections += 1
                self._over_cap(f"{refusal}: new connections are closed at once")
                continue
            conn.setblocking(False)
            self.counts.connections += 1
            tasks.start_soon(self._connection, conn, self.counts.connections)

    async def _connection(self, conn: socket.socket, number: int) -> None:
        lines = self._feed.splitter()
        try:
            with conn:
                await self._read(conn, number, lines)
        finally:
            lines.reset()  # what a connection held goes with it
            self._caps.release()

    async def _read(self, conn: socket.socket, number: int, splitter: LineSplitter) -> None:
        where = functools.partial("connection {}, line {}".format, number)
        before = 0
        while True:
            await anyio.wait_readable(conn)
            try:
                chunk = conn.recv(_READ_BYTES)
            except (BlockingIOError, InterruptedError):
                continue
            except OSError:
                break  # a reset is an end: what came before it is kept
            if not chunk:
                break
            lines = splitter.feed(chunk)
            await self._feed.take(lines, splitter, where, before)
            await self._intake.committed()
            before += len(lines)
        if splitter.pending_bytes:
            what = "longer than the limit and " if splitter.pending_oversized else ""
            self._feed.reject(
                where(before + 1),
                f"{what}truncated: the connection ended {splitter.pending_bytes} bytes "
                "into the line, before its newline",
            )


def _listening_socket(
    path: str, mode: int, owner: int | None = None, group: int | None = None
) -> tuple[socket.socket, os.stat_result]:
    """A listening socket at ``path`` with exactly ``mode``, ``owner`` and ``group``
    (None: ours), and the file it is; a stale socket file is replaced.

    A chmod or chown of ``path`` after bind would follow a symlink swapped in by anyone
    who can write the directory, and a umask set around bind would change the mode of
    every file another thread creates meanwhile. So the socket is bound, chown'ed,
    chmod'ed and set listening in a fresh directory beside ``path`` that only we can
    write, reached through its descriptor, then renamed to ``path``: a rename replaces a
    name, it never follows one, and nobody can connect before it has its owner and mode.
    """
    _remove_stale(path)
    try:
        private = tempfile.mkdtemp(prefix=".event-exporter-", dir=os.path.dirname(path) or ".")
    except OSError as exc:
        raise OSError(exc.errno, f"cannot listen on {path}: {exc.strerror or exc}") from exc
    sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    try:
        folder = _open_private(private, path)
        try:
            place = os.path.join(private, _PLACE)
            if len(os.fsencode(place)) > _SUN_PATH_MAX:
                place = f"/proc/self/fd/{folder}/{_PLACE}"  # the same directory, shorter
            try:
                sock.bind(place)
            except OSError as exc:
                raise OSError(exc.errno, f"cannot listen on {path}: {exc.strerror or exc}") from exc
            try:
                _chown(folder, path, owner, group)
                os.chmod(_PLACE, mode, dir_fd=folder)  # past the umask; only we write here
                ours = os.stat(_PLACE, dir_fd=folder, follow_symlinks=False)
                sock.listen()
                os.rename(_PLACE, path, src_dir_fd=folder)
            except BaseException:
                with contextlib.suppress(OSError):
                    os.unlink(_PLACE, dir_fd=folder)
                raise
        finally:
            os.close(folder)
    except BaseException:
        sock.close()
        raise
    finally:
        with contextlib.suppress(OSError):
            os.rmdir(private)
    return sock, ours


def _chown(folder: int, path: str, owner: int | None, group: int | None) -> None:
    """Give the socket in the private directory its owner and group (before its chmod:
    a chown may clear mode bits). Only root may give a file away; a user may give it
    to a group it is in."""
    if owner is None and group is None:
        return
    uid, gid = -1 if owner is None else owner, -1 if group is None else group
    try:
        os.chown(_PLACE, uid, gid, dir_fd=folder, follow_symlinks=False)
    except OSError as exc:
        whose = ", ".join(
            f"{what} {value}"
            for what, value in (("owner", owner), ("group", group))
            if value is not None
        )
        raise OSError(
            exc.errno,
            f"cannot listen on {path}: cannot give the socket to {whose}: {exc.strerror or exc}",
        ) from exc


def _open_private(private: str, path: str) -> int:
    """A descriptor of the directory mkdtemp just made, refused if it is not that one
    any more (someone who can write its parent renamed another in its place)."""
    folder = os.open(private, os.O_RDONLY | os.O_DIRECTORY | os.O_NOFOLLOW)
    found = os.fstat(folder)
    if found.st_uid != os.geteuid() or stat.S_IMODE(found.st_mode) & 0o077:
        os.close(folder)
        raise OSError(errno.EPERM, f"cannot listen on {path}: {private} was replaced", private)
    return folder


def _remove_stale(path: str) -> None:
    try:
        found = os.lstat(path)
    except FileNotFoundError:
        return
    if not stat.S_ISSOCK(found.st_mode):
        raise FileExistsError(
            errno.EEXIST, f"{path} exists and is not a socket: refusing to remove it", path
        )
    probe = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    probe.setblocking(False)
    try:
        probe.connect(path)
    except ConnectionRefusedError:
        pass  # nobody listens: left by a previous run
    except FileNotFoundError:
        return  # gone meanwhile
    except PermissionError:
        raise PermissionError(
            errno.EACCES, f"{path}: a socket this process may not probe: not removing it", path
        ) from None
    except BlockingIOError:  # a full backlog: someone listens
        raise OSError(errno.EADDRINUSE, f"{path}: another process listens on it", path) from None
    else:
        raise OSError(errno.EADDRINUSE, f"{path}: another process listens on it", path)
    finally:
        probe.close()
    os.unlink(path)


def _unlink_if_ours(path: str, ours: os.stat_result) -> None:
    """Remove ``path`` unless it now names another file (a later run's socket)."""
    try:
        now = os.lstat(path)
        if (now.st_dev, now.st_ino) == (ours.st_dev, ours.st_ino):
            os.unlink(path)
    except FileNotFoundError:
        pass

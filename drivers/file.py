"""The ``file`` driver: append batches to a file, as Dovecot 2.4's file driver, without its losses.

Dovecot writes event by event and drops an event whose write fails. Here a batch is one
write, a failed write is undone and reported retryable, and the retry loop sends the same
batch again, so the file holds each event once and every line whole (one writer per file
assumed, as in Dovecot).

Log rotation works both ways admins expect: ``reopen()`` (SIGHUP; ``doveadm stats reopen``
in Dovecot), and a cheap check, at most every ``reopen_check_interval`` seconds, that the
path still names the open file (logrotate without a postrotate hook). A batch written
between a rename and the check lands in the renamed file, which rotation keeps; after a
deletion, what was written to the deleted file before the check noticed is gone.

The file is opened through :func:`exporter.files.open_regular`: a symlink at the path is
not followed, and only a regular file is taken; a FIFO, a device or a socket there is
refused at the open, never written to or waited on (a FIFO without a reader would block
a plain open forever, and a worker thread blocked so cannot be stopped: SIGTERM would
hang).

Errors. Permanent (the path as configured can never take events; the batch is
dead-lettered): the path is not a regular file (ELOOP: a symlink; ENXIO: a FIFO, a socket
or a device; EISDIR), ENOTDIR, ENAMETOOLONG, EINVAL. Every other errno is retryable,
because an admin can fix it while events wait: ENOSPC, EDQUOT, EFBIG, EIO, EAGAIN, ENOENT
(missing directory), EACCES, EPERM, EROFS, EMFILE, ...
"""

from __future__ import annotations

import contextlib
import errno
import os
from dataclasses import dataclass
from time import monotonic
from typing import Literal

import anyio

from drivers.base import Batch
from exporter.errors import (
    DeliveryError,
    DriverClosedError,
    PermanentDeliveryError,
    RetryableDeliveryError,
)
from exporter.files import CREATED_MODE, RefusedFileError, open_regular

FsyncPolicy = Literal["none", "batch", "interval"]
FSYNC_POLICIES: tuple[FsyncPolicy, ...] = ("none", "batch", "interval")


@dataclass(frozen=True, slots=True)
class FileSettings:
    """What a ``file:`` destination's driver is made with (``file_mode``, ``fsync``)."""

    mode: int = CREATED_MODE
    """Of the file when the driver creates it."""
    fsync: FsyncPolicy = "none"
    """Never on the write path, after every ``batch``, or at most every second (``interval``)."""


_OPEN_FLAGS = os.O_WRONLY | os.O_APPEND | os.O_CREAT
_PERMANENT = frozenset(
    {errno.ELOOP, errno.EISDIR, errno.ENOTDIR, errno.ENXIO, errno.ENAMETOOLONG, errno.EINVAL}
)


class FileDriver:
    """Appends each batch with one ``write`` (looping on short writes) in a worker thread.

    Why a thread: a page-cache write of 1000 events of 600 bytes takes ~140 µs inline and
    ~320 µs through the thread here (the hop costs the event loop about as much CPU as
    the write: 0.2 µs per event, against 1.3-4 µs to encode one), but a write stalled by
    writeback throttling, NFS or an fsync (milliseconds to seconds) would freeze every
    other task.

    A write that fails part-way is cut off again with ``ftruncate``: with O_APPEND the
    file offset is the end of our last write, so the batch started ``written`` bytes
    before it. This needs no ``fstat`` before every write and never cuts bytes that were
    in the file before the batch. If even the truncate fails, a fragment without newline
    stays and the whole batch follows it on retry.

    fsync: ``"none"`` never on the write path; ``"batch"`` after every batch (a failed
    fsync undoes the batch like a failed write); ``"interval"`` after a batch when the last
    fsync is ``fsync_interval`` s old. ``flush()`` fsyncs whatever is unsynced under every
    policy (it is the explicit request); ``reopen()`` and ``aclose()`` fsync before closing
    unless the policy is ``"none"``.

    One operation at a time (a lock): ``reopen()`` from a signal handler task waits for a
    write in flight instead of closing the descriptor under it.
    """

    def __init__(
        self,
        path: str | os.PathLike[str],
        *,
        mode: int = CREATED_MODE,
        fsync: FsyncPolicy = "none",
        fsync_interval: float = 1.0,
        reopen_check_interval: float = 0.25,
    ) -> None:
        if fsync not in FSYNC_POLICIES:
            raise ValueError(f"fsync must be none, batch or interval, not {fsync!r}")
        if fsync_interval < 0 or reopen_check_interval < 0:
            raise ValueError("fsync_interval and reopen_check_interval must not be negative")
        self._path = os.fspath(path)
        self._mode = mode
        self._fsync = fsync
        self._fsync_interval = fsync_interval
        self._check_interval = reopen_check_interval
        self._fd: int | None = None
        self._identity = (0, 0)  # (st_dev, st_ino) of the open file
        self._next_check = 0.0
        self._synced_at = 0.0
        self._unsynced = False
        self._closed = False
        self._lock = anyio.Lock()
        self.connections = 0
        """Opens of the file so far (the first, then each after a rotation or failure)."""

    @property
    def name(self) -> str:
        return f"file:{self._path}"

    @property
    def concurrency(self) -> int:
        return 1

    async def send(self, batch: Batch) -> None:
        async with self._lock:
            if self._closed:
                raise DriverClosedError(f"{self.name}: send after close")
            await anyio.to_thread.run_sync(self._deliver, batch.data)

    async def flush(self) -> None:
        async with self._lock:
            if self._fd is not None and self._unsynced:
                await anyio.to_thread.run_sync(self._flush)

    async def reopen(self) -> None:
        async with self._lock:
            if self._fd is not None:
                await anyio.to_thread.run_sync(self._release)

    async def aclose(self) -> None:
        async with self._lock:
            self._closed = True
            if self._fd is not None:
                await anyio.to_thread.run_sync(self._release)

    # Below: blocking code, run in a worker thread under the lock.

    def _deliver(self, data: bytearray) -> None:
        step = "open"
        written = 0
        fd = self._fd
        try:
            now = monotonic()
            if fd is not None and now >= self._next_check:
                self._next_check = now + self._check_interval
                if self._path_moved():
                    moved, fd = fd, None
                    step = "close"
                    self._close(moved)
            if fd is None:
                step = "open"
                fd = self._open(now)
            step = "write"
            with memoryview(data) as view:  # released even if the error keeps this frame
                while written < len(view):
                    written += os.write(fd, view[written:])
            self._unsynced = True
            if self._fsync == "batch" or (
                self._fsync == "interval" and now - self._synced_at >= self._fsync_interval
            ):
                step = "fsync"
                self._sync(fd)
        except OSError as exc:
            if fd is not None:
                if written:
                    with contextlib.suppress(OSError):
                        os.ftruncate(fd, os.lseek(fd, 0, os.SEEK_CUR) - written)
                self._fd = None
                self._unsynced = False
                with contextlib.suppress(OSError):  # the descriptor is gone either way
                    os.close(fd)
            error = self._error(step, exc)
        else:
            return
        raise error  # outside the handler: the error does not carry the OSError's frames

    def _flush(self) -> None:
        assert self._fd is not None
        try:
            self._sync(self._fd)
        except OSError as exc:
            raise self._error("fsync", exc) from None

    def _release(self) -> None:
        assert self._fd is not None
        try:
            self._close(self._fd)
        except OSError as exc:
            raise self._error("close", exc) from None

    def _open(self, now: float) -> int:
        fd = open_regular(self._path, _OPEN_FLAGS, self._mode)
        try:
            st = os.fstat(fd)
        except OSError:
            os.close(fd)
            raise
        self._fd = fd
        self.connections += 1
        self._identity = (st.st_dev, st.st_ino)
        self._next_check = now + self._check_interval
        self._synced_at = now
        return fd

    def _close(self, fd: int) -> None:
        """Close ``fd`` (it is forgotten even when this raises), fsyncing per the policy."""
        self._fd = None
        try:
            if self._unsynced and self._fsync != "none":
                os.fsync(fd)
        finally:
            self._unsynced = False
            os.close(fd)

    def _sync(self, fd: int) -> None:
        os.fsync(fd)
        self._unsynced = False
        self._synced_at = monotonic()

    def _path_moved(self) -> bool:
        """Whether the path now names another file or none (renamed or deleted)."""
        try:
            st = os.stat(self._path)
        except OSError:
            return True  # opening it again reports the real problem
        return (st.st_dev, st.st_ino) != self._identity

    def _error(self, step: str, exc: OSError) -> DeliveryError:
        """The one place where an OSError becomes a delivery error."""
        code = errno.errorcode.get(exc.errno or 0, str(exc.errno))
        message = f"{self.name}: {step} failed: {exc.strerror or exc} ({code})"
        if isinstance(exc, RefusedFileError) or exc.errno in _PERMANENT:
            return PermanentDeliveryError(message)
        return RetryableDeliveryError(message)

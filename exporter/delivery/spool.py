"""A disk spool: an exporter's queue in SQLite (WAL mode), for at-least-once delivery that
survives ``kill -9``.

Events are appended, already encoded, in one transaction per :meth:`SpoolQueue.commit`
(a source commits before it answers its sender); the exporter reads them in order as
batches and deletes a batch's rows only once it was delivered or dead-lettered (with the
next commit, or within 50 ms). A restart sends again whatever was not deleted: the
batches in flight at a crash, and those delivered in the 50 ms before it, may arrive
twice; nothing committed is lost. Events keep their
encoded bytes, so a change of format applies to new events only.

Sync modes: ``normal`` (``synchronous=NORMAL``): a process crash loses nothing committed;
a power failure may lose the last transactions before it. ``full`` (``synchronous=FULL``):
every commit is on disk when it returns (slower).

Start-up never wedges: a spool that cannot be opened or fails SQLite's ``quick_check`` is
renamed aside (``PATH.corrupt-<time>``, with its -wal and -shm), reported, and a fresh one
is started; nothing is deleted.

The files are ours or refused (:func:`claim_spool_files`): SQLite opens them itself, so
before it does, the database is opened (created 0600) through :mod:`exporter.files` (a
symlink, a FIFO or a device there is refused: a UsageError, the spool is not started), and
a -wal or -shm that is there must be a regular file, not a symlink. SQLite creates its
-wal and -shm with the database's mode, so they are 0600 too.

Bounds (events and bytes, spooled plus not yet committed) and overflow policies are the
memory queue's: ``block`` makes producers wait, ``drop_newest`` refuses and counts,
``drop_oldest`` deletes the oldest rows not in flight and counts.
"""

from __future__ import annotations

import contextlib
import fcntl
import os
import sqlite3
import threading
import time
from array import array
from collections.abc import Callable, Iterator
from typing import Literal

import anyio

from drivers.base import Batch
from exporter.delivery.queue import BoundedIntake, Overflow
from exporter.errors import UsageError
from exporter.files import check_regular, open_regular
from exporter.observe.text import printable

SyncMode = Literal["normal", "full"]
SYNC_MODES: tuple[SyncMode, ...] = ("normal", "full")
DELETE_DELAY = 0.05
"""Seconds a delivered batch's rows wait for a commit to delete them along with it."""


class SpoolQueue(BoundedIntake):
    """The exporter-facing interface of :class:`~exporter.delivery.queue.EventQueue`, on disk.

    Storage is by chunk, not by event: a commit writes the events taken since the last
    one as one row (their bytes, and where each ends), at most a batch's worth per row,
    so the database does a few operations per thousand events. A batch is one or more
    whole rows; ``drop_oldest`` drops whole rows.
    """

    durable = True

    def __init__(
        self,
        path: str,
        max_events: int,
        max_bytes: int,
        overflow: Overflow | str,
        on_drop: Callable[[str, int], None],
        *,
        batch_max_events: int = 1000,
        batch_max_bytes: int = 1 << 20,
        batch_max_age: float = 1.0,
        sync: SyncMode = "normal",
        warn: Callable[[str], None] = lambda message: None,
    ) -> None:
        if sync not in SYNC_MODES:
            raise UsageError(f"unknown spool sync {sync!r} (allowed: normal, full)")
        super().__init__(
            max_events,
            max_bytes,
            overflow,
            on_drop,
            batch_max_events=batch_max_events,
            batch_max_bytes=batch_max_bytes,
            batch_max_age=batch_max_age,
        )
        self.path = path
        self._lock = SpoolLock(path)
        try:
            self._db = _open(path, sync, warn)
        except BaseException:
            self._lock.release()
            raise
        count, size, last = self._db.execute(
            "SELECT coalesce(sum(count), 0), coalesce(sum(length(data)), 0), "
            "coalesce(max(id), 0) FROM chunks"
        ).fetchone()
        self.recovered = int(count)
        """Events found in the spool at start (sent again first)."""
        self._stored_events = int(count)  # committed, in flight included
        self._stored_bytes = int(size)
        self._next_id = int(last) + 1  # ids only grow, so the cursor below stays valid
        self._cursor = 0  # the highest row id handed out in a batch
        self._in_flight: dict[int, tuple[int, int]] = {}  # id(batch): first and last row
        self._done: list[tuple[int, int]] = []  # delivered rows whose delete is pending
        self._new_rows = anyio.Event()
        self._space = anyio.Event()
        self._recap()
        self._checkpointer = _Checkpointer(path, sync)

    # -- producers ---------------------------------------------------------------------

    def _offer_slow(self, item: bytes) -> bool:
        if self._full(len(item)):
            if self.overflow is Overflow.BLOCK:
                return False
            if self.overflow is Overflow.DROP_NEWEST:
                self._accepted += 1
                self._on_drop("spool full (drop_newest)", 1)
                return True
            self._on_drop("spool full (drop_oldest)", self._drop_oldest(len(item)))
        self.force(item)
        return True

    def force(self, item: bytes) -> None:
        """Take ``item`` (ending with ``\\n``) past the bounds (shutdown: already read)."""
        if self._ends and len(self._data) + len(item) > self.batch_max_bytes:
            self.commit()
        self._data += item
        self._ends.append(len(self._data))
        if len(self._ends) >= self.batch_max_events:
            self.commit()

    def _recap(self) -> None:
        """The caps :meth:`offer` checks: below a full chunk and within both bounds."""
        self._cap_events = min(self.batch_max_events - 1, self.max_events - self._stored_events)
        self._cap_bytes = min(self.batch_max_bytes, self.max_bytes - self._stored_bytes)

    async def wait_for_space(self, size: int = 0) -> None:
        while not self._closed and self._full(size):
            self.commit()
            await self._space.wait()

    def commit(self) -> None:
        """Write what was taken since the last commit, as one row, in one transaction
        (which also deletes the rows delivered since the last one)."""
        if not self._ends:
            self.flush_deletes()
            return
        ends = array("Q", self._ends).tobytes()
        with self._db:
            self._delete_done()
            self._db.execute(
                "INSERT INTO chunks (id, count, data, ends) VALUES (?, ?, ?, ?)",
                (self._next_id, len(self._ends), self._data, ends),  # SQLite copies
            )
        self._done.clear()
        self._next_id += 1
        self._checkpointer.wrote()
        self._accepted += len(self._ends)
        self._stored_events += len(self._ends)
        self._stored_bytes += len(self._data)
        self._data = bytearray()
        self._ends = []
        self._recap()
        self._new_rows.set()

    def close(self) -> None:
        self.commit()
        self._closed = True
        self._new_rows.set()
        self._space.set()

    def take_all(self) -> list[bytes]:
        """Nothing: what is spooled stays for the next start (the exporter reports it)."""
        self.commit()
        return []

    # -- the consumer ------------------------------------------------------------------

    async def next_batch(self) -> Batch | None:
        """The next committed rows after those handed out, or None once closed and all
        handed out. A short batch waits up to ``batch_max_age`` for more."""
        deadline: float | None = None
        while True:
            rows = self._read()
            events = sum(count for _, count, _, _ in rows)
            full = events >= self.batch_max_events or (
                sum(len(data) for _, _, data, _ in rows) >= self.batch_max_bytes
            )
            if rows and (full or self._closed):
                return self._batch(rows)
            if not rows and self._closed:
                return None
            now = anyio.current_time()
            if rows:
                deadline = now + self.batch_max_age if deadline is None else deadline
                if now >= deadline:
                    return self._batch(rows)
            elif self._ends:  # taken, not committed: a producer that has not committed yet
                deadline = now + self.batch_max_age if deadline is None else deadline
                if now >= deadline:
                    self.commit()
                    continue
            self._new_rows = anyio.Event()
            with anyio.move_on_after(None if deadline is None else deadline - now):
                await self._new_rows.wait()

    def batch_done(self, batch: Batch) -> None:
        """The batch was delivered or dead-lettered: its rows go, in the next commit's
        transaction (which halves the spool's cost) or, when no commit comes, within
        ``DELETE_DELAY`` (:meth:`tidy`). A crash before sends them again, as it does the
        batches in flight."""
        self._done.append(self._in_flight.pop(id(batch)))
        self._stored_events -= len(batch)
        self._stored_bytes -= len(batch.data)
        self._recap()
        self._space.set()
        self._space = anyio.Event()

    async def tidy(self) -> None:
        """Delete what no commit took along, every ``DELETE_DELAY`` (a catch-up with no new
        events, a delivery paused by Retry-After); runs beside the consumer until
        cancelled."""
        while True:
            await anyio.sleep(DELETE_DELAY)
            self.flush_deletes()

    def flush_deletes(self) -> None:
        """Delete the delivered rows now, in a transaction of their own."""
        if self._done:
            with self._db:
                self._delete_done()
            self._done.clear()
            self._checkpointer.wrote()

    def _delete_done(self) -> None:
        """Delete the delivered rows, in the caller's transaction (which forgets them only
        once it commits: a rolled-back one leaves them to delete again)."""
        if self._done:
            self._db.executemany("DELETE FROM chunks WHERE id BETWEEN ? AND ?", self._done)

    def _read(self) -> list[tuple[int, int, bytes, bytes]]:
        """Rows after the cursor making at most one batch (at least one row)."""
        rows: list[tuple[int, int, bytes, bytes]] = []
        events = size = 0
        cursor = self._db.execute(
            "SELECT id, count, data, ends FROM chunks WHERE id > ? ORDER BY id",
            (self._cursor,),
        )
        for row in cursor:
            if rows and (
                events + row[1] > self.batch_max_events or size + len(row[2]) > self.batch_max_bytes
            ):
                break
            rows.append(row)
            events += row[1]
            size += len(row[2])
        cursor.close()
        return rows

    def _batch(self, rows: list[tuple[int, int, bytes, bytes]]) -> Batch:
        data = bytearray(rows[0][2])
        ends = array("Q", rows[0][3]).tolist()
        for _, _, chunk, chunk_ends in rows[1:]:
            base = len(data)
            data += chunk
            ends.extend([base + end for end in array("Q", chunk_ends)])
        batch = Batch(data, ends)
        self._cursor = rows[-1][0]
        self._in_flight[id(batch)] = (rows[0][0], rows[-1][0])
        return batch

    def _full(self, size: int) -> bool:
        """Whether one more event of ``size`` bytes would pass a bound (an event larger than
        the byte bound is taken into an empty spool, so it never waits forever)."""
        events = len(self)
        too_big = bool(events) and self.queued_bytes + size > self.max_bytes
        return events >= self.max_events or too_big

    def _drop_oldest(self, size: int) -> int:
        """Delete the oldest rows not in flight until one more event of ``size`` fits."""
        self.commit()
        self.flush_deletes()
        dropped = 0
        while self._full(size):
            row = self._db.execute(
                "SELECT id, count, length(data) FROM chunks WHERE id > ? ORDER BY id LIMIT 1",
                (self._cursor,),
            ).fetchone()
            if row is None:
                break  # all in flight: take it past the bound rather than lose more
            with self._db:
                self._db.execute("DELETE FROM chunks WHERE id = ?", (row[0],))
            self._stored_events -= int(row[1])
            self._stored_bytes -= int(row[2])
            dropped += int(row[1])
        self._recap()
        return dropped

    def shut(self) -> None:
        """Commit and close the database (after the exporter stopped)."""
        try:
            self.commit()
            self.flush_deletes()
        finally:
            self._checkpointer.stop()
            self._db.close()
            self._lock.release()


class _Checkpointer:
    """Copies the WAL into the database from a thread of its own, on its own connection.

    A checkpoint is where ``normal`` sync waits for the disk (two fsyncs); done inline
    (SQLite's automatic checkpoint) it stalled the event loop for about a third of the
    spool's time. SQLite releases the GIL while it works, so here it overlaps with the
    loop. The writer's automatic checkpoint stays on, at a larger WAL, as a backstop.
    """

    INTERVAL = 0.05  # seconds between checkpoints while events are being written

    def __init__(self, path: str, sync: SyncMode) -> None:
        self._path = path
        self._sync = sync
        self._wrote = threading.Event()
        self._stopping = threading.Event()
        self._thread = threading.Thread(target=self._run, name=f"spool-checkpoint {path}")
        self._thread.daemon = True
        self._thread.start()

    def wrote(self) -> None:
        self._wrote.set()

    def stop(self) -> None:
        self._stopping.set()
        self._wrote.set()
        self._thread.join()

    def _run(self) -> None:
        db = sqlite3.connect(self._path, isolation_level=None, check_same_thread=False)
        try:
            db.execute(f"PRAGMA synchronous={self._sync.upper()}")
            while True:
                self._wrote.wait()
                self._wrote.clear()
                if self._stopping.is_set():
                    return
                with contextlib.suppress(sqlite3.Error):  # the writer's own still bounds the WAL
                    db.execute("PRAGMA wal_checkpoint(PASSIVE)")
                if self._stopping.wait(self.INTERVAL):
                    return
        finally:
            db.close()


def spooled_events(db: sqlite3.Connection) -> Iterator[bytes]:
    """Every event of a spool, oldest first, each ending with its newline."""
    for data, ends in db.execute("SELECT data, ends FROM chunks ORDER BY id"):
        start = 0
        for end in array("Q", ends):
            yield bytes(data[start:end])
            start = end


SIDE_FILES = ("-wal", "-shm")
"""The files SQLite keeps beside a database in WAL mode."""


class SpoolLock:
    """One owner per spool: an exclusive ``flock`` on ``PATH.lock`` (held while this
    exists, let go by the kernel when the process dies, even by ``kill -9``), which holds
    the owner's process id and command line for whoever is refused. A second daemon, or
    ``spool drain`` / ``spool export`` beside a running one, is refused with a UsageError
    that names that process, instead of the two sending the same events or one deleting
    rows the other is delivering."""

    def __init__(self, spool: str) -> None:
        self.path = spool + LOCK_SUFFIX
        try:
            fd = open_regular(self.path, os.O_RDWR | os.O_CREAT)
        except OSError as exc:
            raise UsageError(f"spool lock {self.path}: {exc.strerror or exc}") from None
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            holder = os.pread(fd, 4096, 0).decode("utf-8", "replace").strip() or "another process"
            os.close(fd)
            raise UsageError(
                f"spool {spool} is in use by {printable(holder)}: one process at a time "
                "(stop the daemon first to drain or export it)"
            ) from None
        os.ftruncate(fd, 0)
        os.pwrite(fd, f"process {os.getpid()} ({_command_line()})\n".encode(), 0)
        self._fd: int | None = fd

    def release(self) -> None:
        """Let go (the file stays: removing it could let two owners hold two files)."""
        if self._fd is not None:
            os.close(self._fd)
            self._fd = None


LOCK_SUFFIX = ".lock"


def _command_line() -> str:
    try:
        with open("/proc/self/cmdline", "rb") as file:
            words = file.read().split(b"\0")
    except OSError:
        return "event-exporter"
    return " ".join(word.decode("utf-8", "replace") for word in words if word)


def claim_spool_files(path: str, *, create: bool = True) -> None:
    """Make sure the files SQLite is about to open at ``path`` are ours: the database a
    regular file (created 0600 when ``create``; never through a symlink, never waiting on
    a FIFO), its -wal and -shm absent or regular files. UsageError says what is wrong."""
    try:
        os.close(open_regular(path, (os.O_RDWR | os.O_CREAT) if create else os.O_RDONLY))
        for suffix in SIDE_FILES:
            check_regular(path + suffix)
    except OSError as exc:
        raise UsageError(f"spool {exc.filename or path}: {exc.strerror or exc}") from None


def _open(path: str, sync: SyncMode, warn: Callable[[str], None]) -> sqlite3.Connection:
    """The spool at ``path``, or a fresh one after moving a broken one aside."""
    claim_spool_files(path)
    try:
        return _connect(path, sync)
    except sqlite3.DatabaseError as exc:
        aside = f"{path}.corrupt-{time.strftime('%Y%m%dT%H%M%S')}"
        for suffix in ("", *SIDE_FILES):
            if os.path.lexists(path + suffix):
                os.rename(path + suffix, aside + suffix)
        warn(f"SPOOL {path} IS UNREADABLE ({exc}): moved aside to {aside}; starting a new one")
        claim_spool_files(path)
        return _connect(path, sync)


def _connect(path: str, sync: SyncMode) -> sqlite3.Connection:
    db = sqlite3.connect(path, isolation_level=None, check_same_thread=False)
    try:
        db.isolation_level = "DEFERRED"
        # Chunks are blobs of up to a batch (~1 MiB): 64 KiB pages halve the cost of
        # writing and freeing them (takes effect on a new spool only).
        db.execute("PRAGMA page_size=65536")
        db.execute("PRAGMA journal_mode=WAL")
        db.execute(f"PRAGMA synchronous={sync.upper()}")
        # Checkpoints run in _Checkpointer's thread; this one only if the WAL grows past
        # 4,000 pages (256 MiB) because that thread cannot keep up.
        db.execute("PRAGMA wal_autocheckpoint=4000")
        db.execute("PRAGMA journal_size_limit=67108864")
        result = db.execute("PRAGMA quick_check").fetchone()
        if result is None or result[0] != "ok":
            raise sqlite3.DatabaseError(f"quick_check: {result}")
        db.execute(
            "CREATE TABLE IF NOT EXISTS chunks (id INTEGER PRIMARY KEY, "
            "count INTEGER NOT NULL, data BLOB NOT NULL, ends BLOB NOT NULL)"
        )
    except BaseException:
        db.close()
        raise
    return db

"""A disk spool: an exporter's queue in SQLite (WAL mode), for at-least-once delivery that
survives ``kill -9``.

Events are appended, already encoded, in one transaction per :meth:`SpoolQueue.commit`
(a source commits before it answers its sender); the exporter reads them in order as
batches and deletes a batch's rows only once it was delivered or dead-lettered (with the
next commit, or within 50 ms). A restart sends again whatever was not deleted: the
batches in flight at a crash, and those delivered in the 50 ms before it, may arrive
twice; nothing committed is lost. Events keep their encoded bytes, so a change of format
applies to new events only. Each row keeps when its first event was accepted, for the
exporter's latency histograms (across a restart too).

Sync modes: ``normal`` (``synchronous=NORMAL``): a process crash loses nothing committed;
a power failure may lose the last transactions before it. ``full``: every commit is also
on disk when :meth:`SpoolQueue.commit` returns (the WAL fsynced on the caller's thread),
or when :meth:`SpoolQueue.wait_committed` returns (fsynced in a worker thread, the event
loop free meanwhile: see :class:`_WalSync` for the figures).

A write that fails (a full disk, EIO) is not fatal and loses nothing silently: the events
of a failed commit stay in memory, counted in the bounds; ``commit`` returns False and
``commit_failing`` says so, so sources hold back (an http source answers 503, the others
stop reading) until a commit works; writes are tried again from 50 ms up to 2 s apart;
each failure is counted (``write_failures``) and logged as an error, rate-limited, and
the end of a run of failures as info. Under a drop policy a full spool then drops new
events as ``spool write failed``; under ``block`` producers wait. What is still unwritten
at shutdown is returned by :meth:`SpoolQueue.shut` for the dead-letter file.

Start-up never wedges: a spool that cannot be opened or fails SQLite's ``quick_check`` is
renamed aside (``PATH.corrupt-<time>``, with its -wal and -shm) and a fresh one is
started; nothing is deleted; ``moved_aside`` says where it went (the exporter logs it as
an error, and the daemon is not ready until restarted).

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
from collections.abc import Callable, Iterable, Iterator
from typing import Literal

import anyio
import anyio.to_thread

from drivers.base import Batch
from exporter.delivery.health import Failing, counted, seconds
from exporter.delivery.queue import BoundedIntake, Overflow
from exporter.errors import UsageError
from exporter.files import check_regular, open_regular
from exporter.observe.log import Log
from exporter.observe.text import printable

SyncMode = Literal["normal", "full"]
SYNC_MODES: tuple[SyncMode, ...] = ("normal", "full")
DELETE_DELAY = 0.05
"""Seconds a delivered batch's rows wait for a commit to delete them along with it."""
RETRY_FIRST = 0.05
RETRY_MAX = 2.0
"""Seconds between two tries of a write that failed: doubling from the first to the most."""
SPOOL_WRITE_FAILED = "spool write failed"
"""The drop reason of events a full spool under a drop policy did not take while its
writes failed (and the dead-letter reason of those still unwritten at shutdown)."""


class SpoolQueue(BoundedIntake):
    """The exporter-facing interface of :class:`~exporter.delivery.queue.EventQueue`, on disk.

    Storage is by chunk, not by event: a commit writes the events taken since the last
    one as one row (their bytes, where each ends, when the first was accepted), at most a
    batch's worth per row, so the database does a few operations per thousand events. A
    batch is one or more whole rows; one that the next row would take past a batch limit
    is full (it cannot grow, so it goes at once rather than at its age). ``drop_oldest``
    drops whole rows.

    A write that fails (a full disk, EIO) is never fatal (see the module): ``commit``
    says False, the events stay in memory within the bounds, ``commit_failing`` tells
    the sources to hold back, and the write is tried again.
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
        log: Log | None = None,
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
        self.log = log or Log()
        """Where write failures are reported (the exporter sets its own)."""
        self._lock = SpoolLock(path)
        try:
            self._db, aside = _open(path)
        except BaseException:
            self._lock.release()
            raise
        self.moved_aside: str | None = aside[0] if aside else None
        """Where a spool found unreadable at start was moved (``PATH.corrupt-<time>``)."""
        self.moved_aside_why: str | None = aside[1] if aside else None
        count, size, last = self._db.execute(
            "SELECT coalesce(sum(count), 0), coalesce(sum(length(data)), 0), "
            "coalesce(max(id), 0) FROM chunks"
        ).fetchone()
        self.recovered = int(count)
        """Events found in the spool at start (sent again first; counted as received)."""
        self._accepted = self.recovered
        self._stored_events = int(count)  # committed, in flight included
        self._stored_bytes = int(size)
        self._next_id = int(last) + 1  # ids only grow, so the cursor below stays valid
        self._cursor = 0  # the highest row id handed out in a batch
        self._in_flight: dict[int, tuple[int, int]] = {}  # id(batch): first and last row
        self._done: list[tuple[int, int]] = []  # delivered rows whose delete is pending
        self._new_rows = anyio.Event()
        self._space = anyio.Event()
        self.writes = Failing()
        """The current run of failed writes (commits, deletes, reads) of this spool."""
        self.write_failures = 0
        """Failed writes since start (for /metrics)."""
        self._retry_at = 0.0  # monotonic: no write is tried before, while failing
        self._retry_delay = 0.0
        self._recap()
        self._checkpointer = _Checkpointer(path)
        self._wal_sync = _WalSync(path) if sync == "full" else None

    # -- producers ---------------------------------------------------------------------

    def _offer_slow(self, item: bytes) -> bool:
        size = len(item)
        if self._full(size):
            if self.overflow is Overflow.BLOCK:
                return False
            reason: str | None = None
            if self.writes.failing:  # what is held cannot be written: nothing more is taken
                reason = SPOOL_WRITE_FAILED
            elif self.overflow is Overflow.DROP_NEWEST:
                reason = "spool full (drop_newest)"
            else:
                self._on_drop("spool full (drop_oldest)", self._drop_oldest(size))
                if self.writes.failing:  # a delete failed: the new event cannot fit
                    reason = SPOOL_WRITE_FAILED
            if reason is not None:
                self._accepted += 1
                self._on_drop(reason, 1)
                return True
        self.force(item)
        return True

    def force(self, item: bytes) -> None:
        """Take ``item`` (ending with ``\\n``) past the bounds (shutdown: already read)."""
        if self._ends and len(self._data) + len(item) > self.batch_max_bytes:
            self._write()
        if not self._ends:
            self._first_at = time.time()
        self._data += item
        self._ends.append(len(self._data))
        if len(self._ends) >= self.batch_max_events:
            self._write()
        elif len(self._ends) == 1:
            self._recap()

    def _recap(self) -> None:
        """The caps :meth:`offer` checks: below a full chunk and within both bounds; none
        for the first event of a chunk (the slow path notes when it was accepted)."""
        if not self._ends:
            self._cap_events = 0
        else:
            self._cap_events = min(self.batch_max_events - 1, self.max_events - self._stored_events)
        self._cap_bytes = min(self.batch_max_bytes, self.max_bytes - self._stored_bytes)

    async def wait_for_space(self, size: int = 0) -> None:
        while not self._closed and self._full(size):
            self._write()
            with anyio.move_on_after(self._retry_wait() if self.writes.failing else None):
                await self._space.wait()

    @property
    def commit_failing(self) -> bool:
        """Events were taken that a failed write left in memory (see :meth:`commit`)."""
        return self.writes.failing and bool(self._ends)

    def commit(self) -> bool:
        """Write what was taken since the last commit (:meth:`_write`) and, with ``full``
        sync, fsync it here, on the caller's thread: True once all of it is durable.
        False when the write failed (a full disk, EIO): the events are then held in
        memory, counted in the bounds, until a later commit writes them (tried again
        from 50 ms up to 2 s apart). A source that can wait calls :meth:`wait_committed`
        instead: the same, with the fsync in a worker thread."""
        self._write()
        if self._ends:
            return False
        if self._wal_sync is not None and self._wal_sync.pending:
            self._report_sync(self._wal_sync.sync_now())
        return True

    async def wait_committed(self) -> None:
        """:meth:`commit`, then wait until it is durable without holding the event loop:
        a failed write tried again until one works (or the spool is closed), a ``full``
        fsync run in a worker thread."""
        self._write()
        while self.commit_failing and not self._closed:
            await anyio.sleep(self._retry_wait())
            self._write()
        if self._wal_sync is not None and self._wal_sync.pending:
            self._report_sync(await self._wal_sync.sync())

    def _write(self) -> None:
        """Write what was taken, as one row (several after failed commits), in one
        transaction that also deletes the rows delivered since the last one; with nothing
        taken, delete those alone. Not while writes fail, until the next try is due."""
        if not self._ends:
            self.flush_deletes()
        elif self._may_write():
            self._write_taken()

    def close(self) -> None:
        if self._ends:
            self._write_taken()  # one more try, whatever the pause between tries
        self._closed = True
        self._new_rows.set()
        self._space.set()

    def take_all(self) -> list[bytes]:
        """Nothing: what is spooled stays for the next start (the exporter reports it)."""
        self._write()
        return []

    def _write_taken(self) -> bool:
        """One transaction: the delivered rows deleted, the events taken inserted."""
        rows = self._rows()
        try:
            with self._db:
                self._delete_done()
                self._db.executemany(
                    "INSERT INTO chunks (id, count, data, ends, accepted) VALUES (?, ?, ?, ?, ?)",
                    rows,  # SQLite copies the bytes
                )
        except sqlite3.Error as exc:
            self._write_failed("commit", exc)
            return False
        self._wrote()
        self._checkpointer.wrote()
        if self._wal_sync is not None:
            self._wal_sync.want()
        self._done.clear()
        self._next_id += len(rows)
        self._accepted += len(self._ends)
        self._stored_events += len(self._ends)
        self._stored_bytes += len(self._data)
        self._data = bytearray()
        self._ends = []
        self._recap()
        self._new_rows.set()
        return True

    def _rows(self) -> list[NewRow]:
        """The events taken as rows: one, or, after failed commits held more than a batch,
        as many as keep each within the batch limits."""
        ends, data, at = self._ends, self._data, self._first_at
        if len(ends) <= self.batch_max_events and len(data) <= self.batch_max_bytes:
            return [(self._next_id, len(ends), data, array("Q", ends).tobytes(), at)]
        rows: list[NewRow] = []
        first = start = 0
        while first < len(ends):
            stop = first + 1
            while (
                stop < len(ends)
                and stop - first < self.batch_max_events
                and ends[stop] - start <= self.batch_max_bytes
            ):
                stop += 1
            chunk_ends = array("Q", (end - start for end in ends[first:stop])).tobytes()
            row_id = self._next_id + len(rows)
            rows.append((row_id, stop - first, bytes(data[start : ends[stop - 1]]), chunk_ends, at))
            first, start = stop, ends[stop - 1]
        return rows

    # -- failures ------------------------------------------------------------------------

    def _may_write(self) -> bool:
        """Not while failing, until the next try is due (a disk that is full stays so for
        a while: no transaction per event meanwhile)."""
        return not self.writes.failing or time.monotonic() >= self._retry_at

    def _retry_wait(self) -> float:
        """Seconds until the next write may be tried (never 0: nothing spins on it)."""
        return max(RETRY_FIRST / 5, self._retry_at - time.monotonic())

    def _write_failed(self, what: str, exc: sqlite3.Error) -> None:
        """Count and report a failed write, and put off the next try (doubling from
        RETRY_FIRST up to RETRY_MAX seconds)."""
        self.write_failures += 1
        self._retry_delay = min(RETRY_MAX, max(RETRY_FIRST, self._retry_delay * 2))
        self._retry_at = time.monotonic() + self._retry_delay
        error = printable(str(exc) or type(exc).__name__)
        report = self.writes.fail(f"{what}: {error}")
        if report is None:
            return
        if self._ends:
            held = (
                f"{counted(len(self._ends), 'event')} taken but not written are held in memory "
                "(sources hold back until a write works)"
            )
        else:
            held = "delivered rows stay until a write works (a restart would send them again)"
        if report.first:
            self.log.error(
                f"spool {self.path}: {what} failed: {error}; {held}; trying again every "
                f"{seconds(RETRY_FIRST)} to {seconds(RETRY_MAX)}"
            )
        else:
            self.log.error(
                f"spool {self.path}: writes still failing after {seconds(self.writes.elapsed())}"
                f" ({counted(report.failures, 'failed write')} since the last report); the "
                f"last, {what}: {error}; {held}"
            )

    def _wrote(self) -> None:
        """A write worked: the end of a run of failures, if one was going on."""
        if not self.writes.failing:
            return
        run = self.writes.succeed()
        self._retry_delay = 0.0
        if run is not None and run.reported:
            self.log.info(
                f"spool {self.path}: writes work again after failing for {seconds(run.seconds)}"
                f" ({counted(run.failures, 'failed write')})"
            )
        self._space.set()
        self._space = anyio.Event()

    # -- the consumer ------------------------------------------------------------------

    async def next_batch(self) -> Batch | None:
        """The next committed rows after those handed out, or None once closed and all
        handed out. A batch that can still grow waits up to ``batch_max_age`` for more."""
        deadline: float | None = None
        while True:
            found = self._read()
            if found is None:  # the disk failed us: reported, tried again
                await anyio.sleep(self._retry_wait())
                continue
            rows, full = found
            if rows and (full or self._closed):
                return self._batch(rows)
            if not rows and self._closed:
                return None
            now = anyio.current_time()
            deadline = now + self.batch_max_age if deadline is None else deadline
            if rows and now >= deadline:
                return self._batch(rows)
            if not rows and self._ends and now >= deadline:
                # taken, not committed: a producer that has not committed yet
                self._write()
                if not self.commit_failing:
                    continue
                deadline = now + self._retry_wait()
            elif not rows and not self._ends:
                deadline = None  # nothing at all: wait for the first event
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
        """Beside the consumer until cancelled, every ``DELETE_DELAY``: delete what no
        commit took along (a catch-up with no new events, a delivery paused by
        Retry-After), write what a failed commit left in memory, fsync what a ``full``
        commit left to sync when no source waits for it."""
        while True:
            await anyio.sleep(DELETE_DELAY)
            if self.commit_failing:
                self._write()
            else:
                self.flush_deletes()
            if self._wal_sync is not None and self._wal_sync.pending:
                self._report_sync(await self._wal_sync.sync())

    def flush_deletes(self) -> None:
        """Delete the delivered rows now, in a transaction of their own."""
        if self._done and self._may_write():
            try:
                with self._db:
                    self._delete_done()
            except sqlite3.Error as exc:
                self._write_failed("delete", exc)
                return
            self._wrote()
            self._done.clear()
            self._checkpointer.wrote()

    def _delete_done(self) -> None:
        """Delete the delivered rows, in the caller's transaction (which forgets them only
        once it commits: a rolled-back one leaves them to delete again)."""
        if self._done:
            self._db.executemany("DELETE FROM chunks WHERE id BETWEEN ? AND ?", self._done)

    def _read(self) -> tuple[list[Row], bool] | None:
        """Rows after the cursor making at most one batch (at least one row), and whether
        that batch is full: at a limit, or the next row (or the events taken and not yet
        committed, which will be one) would take it past one. None: the read failed."""
        rows: list[Row] = []
        events = size = 0
        try:
            cursor = self._db.execute(
                "SELECT id, count, data, ends, accepted FROM chunks WHERE id > ? ORDER BY id",
                (self._cursor,),
            )
            try:
                for row in cursor:
                    if rows and (
                        events + row[1] > self.batch_max_events
                        or size + len(row[2]) > self.batch_max_bytes
                    ):
                        return rows, True
                    rows.append(row)
                    events += row[1]
                    size += len(row[2])
            finally:
                cursor.close()
        except sqlite3.Error as exc:  # an I/O error reading: reported, tried again
            self._write_failed("read", exc)
            return None
        pending = bool(self._ends) and (
            events + len(self._ends) > self.batch_max_events
            or size + len(self._data) > self.batch_max_bytes
        )
        return rows, events >= self.batch_max_events or size >= self.batch_max_bytes or pending

    def _batch(self, rows: list[Row]) -> Batch:
        data = bytearray(rows[0][2])
        ends = array("Q", rows[0][3]).tolist()
        for _, _, chunk, chunk_ends, _ in rows[1:]:
            base = len(data)
            data += chunk
            ends.extend([base + end for end in array("Q", chunk_ends)])
        batch = Batch(data, ends, accepted_at=rows[0][4])
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
        """Delete the oldest rows not in flight until one more event of ``size`` fits (or a
        write fails: then the caller drops the new event instead)."""
        self._write()
        self.flush_deletes()
        dropped = 0
        while self._full(size) and not self.writes.failing:
            try:
                row = self._db.execute(
                    "SELECT id, count, length(data) FROM chunks WHERE id > ? ORDER BY id LIMIT 1",
                    (self._cursor,),
                ).fetchone()
                if row is None:
                    break  # all in flight: take it past the bound rather than lose more
                with self._db:
                    self._db.execute("DELETE FROM chunks WHERE id = ?", (row[0],))
            except sqlite3.Error as exc:
                self._write_failed("delete", exc)
                break
            self._stored_events -= int(row[1])
            self._stored_bytes -= int(row[2])
            dropped += int(row[1])
        self._recap()
        return dropped

    @property
    def on_disk(self) -> int:
        """Events committed and not yet delivered (in flight included)."""
        return self._stored_events

    def _report_sync(self, error: OSError | None) -> None:
        if error is not None:
            self._write_failed("fsync", sqlite3.OperationalError(error.strerror or str(error)))

    def shut(self) -> list[bytes]:
        """Commit (one last try) and close the database (after the exporter stopped). What
        could not be written is returned, for the dead-letter file: it is no longer here."""
        unwritten: list[bytes] = []
        try:
            if self._ends:
                self._write_taken()
            self._retry_at = 0.0
            self.flush_deletes()
            if self._ends:
                unwritten = _events(self._data, self._ends)
                self._accepted += len(self._ends)
                self._data = bytearray()
                self._ends = []
            if self._wal_sync is not None:
                self._report_sync(self._wal_sync.sync_now())
                self._wal_sync.close()
        finally:
            self._checkpointer.stop()
            with contextlib.suppress(sqlite3.Error):
                self._db.close()
            self._lock.release()
        return unwritten


NewRow = tuple[int, int, bytes | bytearray, bytes, float]
"""A chunk to insert: id, event count, bytes, where each event ends, when accepted."""
Row = tuple[int, int, bytes, bytes, float | None]
"""A stored chunk: id, event count, bytes, where each event ends, when the first was
accepted (None in a spool written by an older version)."""


def _events(data: bytes | bytearray, ends: Iterable[int]) -> list[bytes]:
    """The events of a chunk, each without its newline."""
    events = []
    start = 0
    for end in ends:
        events.append(bytes(data[start : end - 1]))
        start = end
    return events


class _WalSync:
    """``full`` sync: the WAL fsynced after commits, in a worker thread for a source that
    waits for it (:meth:`SpoolQueue.wait_committed`), so the event loop never waits for
    the disk. Measured here while another process wrote 3 GB with fsync: an inline FULL
    commit held the loop p90 4 ms, p99 46 ms, at most 94 ms; the commit without its fsync,
    p99 12 ms. Commits made while one fsync runs share the next one.

    The connection itself runs ``synchronous=NORMAL`` (which syncs the WAL before each
    checkpoint and the database after it): with the WAL fsynced after each commit that is
    what ``FULL`` does in WAL mode."""

    def __init__(self, path: str) -> None:
        self._path = path + "-wal"
        self.wanted = 0
        """Commits made (each wants its fsync)."""
        self.synced = 0
        """Commits covered by a finished fsync."""
        self._running: anyio.Event | None = None
        self._fd: int | None = None
        self._opening = threading.Lock()  # a worker's fsync and an inline one

    @property
    def pending(self) -> bool:
        return self.synced < self.wanted

    def want(self) -> None:
        self.wanted += 1

    async def sync(self) -> OSError | None:
        """Return once every commit made so far is on disk: one fsync runs at a time, and
        those who come while it runs wait for the next."""
        target = self.wanted
        error = None
        while self.synced < target:
            if self._running is not None:
                await self._running.wait()
                continue
            self._running = running = anyio.Event()
            goal = self.wanted
            try:
                error = await anyio.to_thread.run_sync(self._fsync)
                self.synced = max(self.synced, goal)
            finally:
                self._running = None
                running.set()
        return error

    def sync_now(self) -> OSError | None:
        """:meth:`sync`, blocking (a caller that cannot wait: the commit of a source that
        does not use wait_committed; the shutdown)."""
        if not self.pending:
            return None
        goal = self.wanted
        error = self._fsync()
        self.synced = max(self.synced, goal)
        return error

    def close(self) -> None:
        if self._fd is not None:
            os.close(self._fd)
            self._fd = None

    def _fsync(self) -> OSError | None:
        try:
            with self._opening:
                if self._fd is None:
                    self._fd = open_regular(self._path, os.O_RDONLY)
            os.fsync(self._fd)
        except OSError as exc:
            return exc
        return None


class _Checkpointer:
    """Copies the WAL into the database from a thread of its own, on its own connection.

    A checkpoint is where ``normal`` sync waits for the disk (two fsyncs); done inline
    (SQLite's automatic checkpoint) it stalled the event loop for about a third of the
    spool's time. SQLite releases the GIL while it works, so here it overlaps with the
    loop. The writer's automatic checkpoint stays on, at a larger WAL, as a backstop.
    """

    INTERVAL = 0.05  # seconds between checkpoints while events are being written

    def __init__(self, path: str) -> None:
        self._path = path
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
            db.execute("PRAGMA synchronous=NORMAL")  # syncs the WAL before, the database after
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


def _open(path: str) -> tuple[sqlite3.Connection, tuple[str, str] | None]:
    """The spool at ``path``, or a fresh one after moving a broken one aside: then also
    where it went and why (the exporter reports it as an error)."""
    claim_spool_files(path)
    try:
        return _connect(path), None
    except sqlite3.DatabaseError as exc:
        aside = f"{path}.corrupt-{time.strftime('%Y%m%dT%H%M%S')}"
        for suffix in ("", *SIDE_FILES):
            if os.path.lexists(path + suffix):
                os.rename(path + suffix, aside + suffix)
        claim_spool_files(path)
        return _connect(path), (aside, printable(str(exc)))


def _connect(path: str) -> sqlite3.Connection:
    db = sqlite3.connect(path, isolation_level=None, check_same_thread=False)
    try:
        db.isolation_level = "DEFERRED"
        # Chunks are blobs of up to a batch (~1 MiB): 64 KiB pages halve the cost of
        # writing and freeing them (takes effect on a new spool only).
        db.execute("PRAGMA page_size=65536")
        db.execute("PRAGMA journal_mode=WAL")
        # "full" adds an fsync of the WAL after each commit, in a thread (_WalSync).
        db.execute("PRAGMA synchronous=NORMAL")
        # Checkpoints run in _Checkpointer's thread; this one only if the WAL grows past
        # 4,000 pages (256 MiB) because that thread cannot keep up.
        db.execute("PRAGMA wal_autocheckpoint=4000")
        db.execute("PRAGMA journal_size_limit=67108864")
        result = db.execute("PRAGMA quick_check").fetchone()
        if result is None or result[0] != "ok":
            raise sqlite3.DatabaseError(f"quick_check: {result}")
        db.execute(
            "CREATE TABLE IF NOT EXISTS chunks (id INTEGER PRIMARY KEY, "
            "count INTEGER NOT NULL, data BLOB NOT NULL, ends BLOB NOT NULL, accepted REAL)"
        )
        columns = {row[1] for row in db.execute("PRAGMA table_info(chunks)")}
        if "accepted" not in columns:  # a spool of an older version: its rows have none
            db.execute("ALTER TABLE chunks ADD COLUMN accepted REAL")
    except BaseException:
        db.close()
        raise
    return db

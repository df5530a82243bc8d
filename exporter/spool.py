"""A disk spool: an exporter's queue in SQLite (WAL mode), for at-least-once delivery that
survives ``kill -9``.

Events are appended, already encoded, in one transaction per :meth:`SpoolQueue.commit`
(a source commits before it answers its sender); the exporter reads them in order as
batches and deletes a batch's rows only once it was delivered or dead-lettered. A restart
sends again whatever was not deleted: the batches in flight at a crash may arrive twice,
nothing committed is lost. Events keep their encoded bytes, so a change of format applies
to new events only.

Sync modes: ``normal`` (``synchronous=NORMAL``): a process crash loses nothing committed;
a power failure may lose the last transactions before it. ``full`` (``synchronous=FULL``):
every commit is on disk when it returns (slower).

Start-up never wedges: a spool that cannot be opened or fails SQLite's ``quick_check`` is
renamed aside (``PATH.corrupt-<time>``, with its -wal and -shm), reported, and a fresh one
is started; nothing is deleted.

Bounds (events and bytes, spooled plus not yet committed) and overflow policies are the
memory queue's: ``block`` makes producers wait, ``drop_newest`` refuses and counts,
``drop_oldest`` deletes the oldest rows not in flight and counts.
"""

from __future__ import annotations

import os
import sqlite3
import time
from array import array
from collections.abc import Callable, Iterator
from typing import Literal

import anyio

from drivers.base import Batch
from exporter.errors import UsageError
from exporter.queue import Overflow

SyncMode = Literal["normal", "full"]
SYNC_MODES: tuple[SyncMode, ...] = ("normal", "full")


class SpoolQueue:
    """The exporter-facing interface of :class:`~exporter.queue.EventQueue`, on disk.

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
        self.path = path
        self.max_events = max_events
        self.max_bytes = max_bytes
        self.overflow = Overflow(overflow)
        self.batch_max_events = batch_max_events
        self.batch_max_bytes = batch_max_bytes
        self.batch_max_age = batch_max_age
        self._on_drop = on_drop
        self._db = _open(path, sync, warn)
        count, size = self._db.execute(
            "SELECT coalesce(sum(count), 0), coalesce(sum(length(data)), 0) FROM chunks"
        ).fetchone()
        self.recovered = int(count)
        """Events found in the spool at start (sent again first)."""
        self._events = int(count)  # committed, in flight included
        self._bytes = int(size)
        self._data = bytearray()  # taken, not yet committed
        self._ends: list[int] = []
        self._cursor = 0  # the highest row id handed out in a batch
        self._in_flight: dict[int, tuple[int, int]] = {}  # id(batch): first and last row
        self._accepted = 0
        self._closed = False
        self._new_rows = anyio.Event()
        self._space = anyio.Event()
        self._cap_events = self._cap_bytes = 0
        self._recap()

    # -- what the exporter and the metrics read ----------------------------------------

    def __len__(self) -> int:
        return self._events + len(self._ends)

    @property
    def queued_bytes(self) -> int:
        return self._bytes + len(self._data)

    @property
    def accepted(self) -> int:
        return self._accepted

    @property
    def closed(self) -> bool:
        return self._closed

    # -- producers ---------------------------------------------------------------------

    def offer(self, item: bytes) -> bool:
        """Take ``item`` (on disk at the next :meth:`commit`), or drop per policy; False
        only under ``block`` when full. The common case is two appends and two checks
        against caps kept up to date (:meth:`_recap`)."""
        ends = self._ends
        data = self._data
        if len(ends) < self._cap_events and len(data) + len(item) <= self._cap_bytes:
            data += item
            ends.append(len(data))
            self._accepted += 1
            return True
        return self._offer_slow(item)

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
        self._accepted += 1
        if self._ends and len(self._data) + len(item) > self.batch_max_bytes:
            self.commit()
        self._data += item
        self._ends.append(len(self._data))
        if len(self._ends) >= self.batch_max_events:
            self.commit()

    def _recap(self) -> None:
        """The caps :meth:`offer` checks: below a full chunk and within both bounds."""
        self._cap_events = min(self.batch_max_events - 1, self.max_events - self._events)
        self._cap_bytes = min(self.batch_max_bytes, self.max_bytes - self._bytes)

    async def wait_for_space(self, size: int = 0) -> None:
        while not self._closed and self._full(size):
            self.commit()
            await self._space.wait()

    async def put(self, item: bytes) -> None:
        while not self.offer(item):
            await self.wait_for_space(len(item))

    def commit(self) -> None:
        """Write what was taken since the last commit, as one row, in one transaction."""
        if not self._ends:
            return
        ends = array("Q", self._ends).tobytes()
        with self._db:
            self._db.execute(
                "INSERT INTO chunks (count, data, ends) VALUES (?, ?, ?)",
                (len(self._ends), bytes(self._data), ends),
            )
        self._events += len(self._ends)
        self._bytes += len(self._data)
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
        """The batch was delivered or dead-lettered: its rows go."""
        first, last = self._in_flight.pop(id(batch))
        with self._db:
            self._db.execute("DELETE FROM chunks WHERE id BETWEEN ? AND ?", (first, last))
        self._events -= len(batch)
        self._bytes -= len(batch.data)
        self._recap()
        self._space.set()
        self._space = anyio.Event()

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
        data = bytearray()
        ends: list[int] = []
        for _, _, chunk, chunk_ends in rows:
            base = len(data)
            data += chunk
            ends.extend(base + end for end in array("Q", chunk_ends))
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
            self._events -= int(row[1])
            self._bytes -= int(row[2])
            dropped += int(row[1])
        self._recap()
        return dropped

    def shut(self) -> None:
        """Commit and close the database (after the exporter stopped)."""
        self.commit()
        self._db.close()


def spooled_events(db: sqlite3.Connection) -> Iterator[bytes]:
    """Every event of a spool, oldest first, each ending with its newline."""
    for data, ends in db.execute("SELECT data, ends FROM chunks ORDER BY id"):
        start = 0
        for end in array("Q", ends):
            yield bytes(data[start:end])
            start = end


def _open(path: str, sync: SyncMode, warn: Callable[[str], None]) -> sqlite3.Connection:
    """The spool at ``path``, or a fresh one after moving a broken one aside."""
    try:
        return _connect(path, sync)
    except sqlite3.DatabaseError as exc:
        aside = f"{path}.corrupt-{time.strftime('%Y%m%dT%H%M%S')}"
        for suffix in ("", "-wal", "-shm"):
            if os.path.exists(path + suffix):
                os.rename(path + suffix, aside + suffix)
        warn(f"SPOOL {path} IS UNREADABLE ({exc}): moved aside to {aside}; starting a new one")
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
        result = db.execute("PRAGMA quick_check").fetchone()
        if result is None or result[0] != "ok":
            raise sqlite3.DatabaseError(f"quick_check: {result}")
        db.execute(
            "CREATE TABLE IF NOT EXISTS chunks (id INTEGER PRIMARY KEY AUTOINCREMENT, "
            "count INTEGER NOT NULL, data BLOB NOT NULL, ends BLOB NOT NULL)"
        )
    except BaseException:
        db.close()
        raise
    return db

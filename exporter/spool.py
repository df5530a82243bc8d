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
from collections.abc import Callable
from typing import Literal

import anyio

from drivers.base import Batch
from exporter.errors import UsageError
from exporter.queue import Overflow

SyncMode = Literal["normal", "full"]
SYNC_MODES: tuple[SyncMode, ...] = ("normal", "full")
_COMMIT_EVERY = 1000  # uncommitted events held at most (a producer that never commits)


class SpoolQueue:
    """The exporter-facing interface of :class:`~exporter.queue.EventQueue`, on disk."""

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
        self._warn = warn
        self._db = _open(path, sync, warn)
        count, size = self._db.execute(
            "SELECT count(*), total(length(data)) FROM events"
        ).fetchone()
        self.recovered = int(count)
        """Events found in the spool at start (sent again first)."""
        self._events = int(count)  # committed rows, in flight included
        self._bytes = int(size)
        self._pending: list[bytes] = []
        self._pending_bytes = 0
        self._cursor = 0  # the highest id handed out in a batch
        self._in_flight: dict[int, tuple[int, int, int]] = {}  # id(batch): first, last, bytes
        self._accepted = 0
        self._closed = False
        self._new_rows = anyio.Event()
        self._space = anyio.Event()

    # -- what the exporter and the metrics read ----------------------------------------

    def __len__(self) -> int:
        return self._events + len(self._pending)

    @property
    def queued_bytes(self) -> int:
        return self._bytes + self._pending_bytes

    @property
    def accepted(self) -> int:
        return self._accepted

    @property
    def closed(self) -> bool:
        return self._closed

    # -- producers ---------------------------------------------------------------------

    def offer(self, item: bytes) -> bool:
        """Take ``item`` (committed at the next :meth:`commit`), or drop per policy; False
        only under ``block`` when full."""
        if len(self) >= self.max_events or (
            len(self) and self.queued_bytes + len(item) > self.max_bytes
        ):
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
        """Take ``item`` past the bounds (shutdown: an event already read)."""
        self._accepted += 1
        self._pending.append(item[:-1] if item.endswith(b"\n") else item)
        self._pending_bytes += len(item)
        if len(self._pending) >= _COMMIT_EVERY:
            self.commit()

    async def wait_for_space(self) -> None:
        while not self._closed and (
            len(self) >= self.max_events or self.queued_bytes >= self.max_bytes
        ):
            self.commit()
            await self._space.wait()

    async def put(self, item: bytes) -> None:
        while not self.offer(item):
            await self.wait_for_space()

    def commit(self) -> None:
        """Write what was taken since the last commit in one transaction."""
        if not self._pending:
            return
        with self._db:
            self._db.executemany(
                "INSERT INTO events (data) VALUES (?)", ((line,) for line in self._pending)
            )
        self._events += len(self._pending)
        self._bytes += self._pending_bytes - len(self._pending)  # newlines are not stored
        self._pending.clear()
        self._pending_bytes = 0
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
        """The next committed events after those handed out, or None once closed and all
        handed out. A short batch waits up to ``batch_max_age`` for more."""
        deadline: float | None = None
        while True:
            self.commit()
            rows = self._read(self.batch_max_events)
            full = len(rows) >= self.batch_max_events or (
                rows and sum(len(data) + 1 for _, data in rows) >= self.batch_max_bytes
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
            self._new_rows = anyio.Event()
            with anyio.move_on_after(None if deadline is None else deadline - now):
                await self._new_rows.wait()

    def batch_done(self, batch: Batch) -> None:
        """The batch was delivered or dead-lettered: its rows go."""
        first, last, size = self._in_flight.pop(id(batch))
        with self._db:
            self._db.execute("DELETE FROM events WHERE id BETWEEN ? AND ?", (first, last))
        self._events -= len(batch)
        self._bytes -= size
        self._space.set()
        self._space = anyio.Event()

    def _read(self, limit: int) -> list[tuple[int, bytes]]:
        rows: list[tuple[int, bytes]] = self._db.execute(
            "SELECT id, data FROM events WHERE id > ? ORDER BY id LIMIT ?", (self._cursor, limit)
        ).fetchall()
        size = 0
        for index, (_, data) in enumerate(rows):
            size += len(data) + 1
            if size > self.batch_max_bytes and index:
                return rows[:index]
        return rows

    def _batch(self, rows: list[tuple[int, bytes]]) -> Batch:
        batch = Batch()
        for _, data in rows:
            batch.append(data + b"\n")
        self._cursor = rows[-1][0]
        self._in_flight[id(batch)] = (rows[0][0], rows[-1][0], len(batch.data) - len(rows))
        return batch

    def _full(self, size: int) -> bool:
        """Whether one more event of ``size`` bytes would pass a bound (an event larger than
        the byte bound is taken into an empty spool, so it never waits forever)."""
        events = len(self)
        return events >= self.max_events or bool(
            events and self.queued_bytes + size > self.max_bytes
        )

    def _drop_oldest(self, size: int) -> int:
        """Delete the oldest rows not in flight until one more event of ``size`` fits."""
        self.commit()
        dropped = 0
        while len(self) >= self.max_events or (
            len(self) and self.queued_bytes + size > self.max_bytes
        ):
            row = self._db.execute(
                "SELECT id, length(data) FROM events WHERE id > ? ORDER BY id LIMIT 1",
                (self._cursor,),
            ).fetchone()
            if row is None:
                break  # all in flight: take it past the bound rather than lose more
            with self._db:
                self._db.execute("DELETE FROM events WHERE id = ?", (row[0],))
            self._events -= 1
            self._bytes -= int(row[1])
            dropped += 1
        return dropped

    def stats(self) -> dict[str, int]:
        return {"events": len(self), "bytes": self.queued_bytes, "in_flight": len(self._in_flight)}

    def shut(self) -> None:
        """Close the database (after the exporter stopped)."""
        self.commit()
        self._db.close()


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
        db.execute("PRAGMA journal_mode=WAL")
        db.execute(f"PRAGMA synchronous={sync.upper()}")
        result = db.execute("PRAGMA quick_check").fetchone()
        if result is None or result[0] != "ok":
            raise sqlite3.DatabaseError(f"quick_check: {result}")
        db.execute(
            "CREATE TABLE IF NOT EXISTS events (id INTEGER PRIMARY KEY AUTOINCREMENT, "
            "data BLOB NOT NULL)"
        )
    except BaseException:
        db.close()
        raise
    return db

"""A per-exporter queue of encoded events, bounded in events and in bytes, kept as batches.

Producers call :meth:`EventQueue.offer` (synchronous: on the common path one append to
the open batch's buffer) and await :meth:`EventQueue.wait_for_space` only when it says
the queue is full under the ``block`` policy: real backpressure without an await per
event. Under ``drop_newest`` and ``drop_oldest`` a full queue drops and counts, never
blocks.

Events are stored straight into batches, so nothing is copied twice: the open batch
takes each event until it holds ``batch_max_events`` events, or the next event would
take it past ``batch_max_bytes`` (an event larger than that makes a batch of its own);
then it is sealed and a new one opened. The exporter's one consumer takes batches with
:meth:`EventQueue.next_batch`: a sealed batch at once; otherwise the open one
``batch_max_age`` seconds after the consumer saw its first event; after :meth:`close`,
what is left comes out without waiting. The queue bounds count every batch.

Each batch carries when its first event was accepted (``Batch.accepted_at``, wall-clock
seconds), for the exporter's latency and queue-age histograms: taken once per batch (the
first event of an open batch goes the slow path), never per event.
"""

from __future__ import annotations

import enum
import time
from collections import deque
from collections.abc import Callable

import anyio

from drivers.base import Batch
from exporter.errors import UsageError


class Overflow(enum.StrEnum):
    BLOCK = "block"
    DROP_NEWEST = "drop_newest"
    DROP_OLDEST = "drop_oldest"


OVERFLOW_CHOICES = tuple(o.value for o in Overflow)


class BoundedIntake:
    """What the memory queue and the disk spool share: the bounds and overflow policy, the
    events taken but not yet stored (their bytes in one buffer, and where each ends), the
    counts of what is stored, and the hot path.

    :meth:`offer` appends to the buffer, then checks it against two precomputed caps
    (``_cap_events``, ``_cap_bytes``, kept by each kind's ``_recap``); when either is
    passed, the event is taken back out and the kind's ``_offer_slow`` decides.
    """

    def __init__(
        self,
        max_events: int,
        max_bytes: int,
        overflow: Overflow | str,
        on_drop: Callable[[str, int], None],
        *,
        batch_max_events: int,
        batch_max_bytes: int,
        batch_max_age: float,
    ) -> None:
        if max_events < 1 or max_bytes < 1:
            raise UsageError(
                f"queue bounds must be positive (events {max_events}, bytes {max_bytes})"
            )
        if batch_max_events < 1 or batch_max_bytes < 1:
            raise UsageError("batch limits must be positive")
        try:
            self.overflow = Overflow(overflow)
        except ValueError:
            raise UsageError(
                f"unknown overflow policy {overflow!r} (allowed: {', '.join(OVERFLOW_CHOICES)})"
            ) from None
        self.max_events = max_events
        self.max_bytes = max_bytes
        self.batch_max_events = batch_max_events
        self.batch_max_bytes = batch_max_bytes
        self.batch_max_age = batch_max_age
        self._on_drop = on_drop
        self._stored_events = 0  # sealed batches; for a spool, rows not yet delivered
        self._stored_bytes = 0
        self._data = bytearray()  # taken, not yet stored
        self._ends: list[int] = []
        self._accepted = 0  # accepted events no longer in the buffer
        self._cap_events = 0
        self._cap_bytes = 0
        self._closed = False
        self._first_at = 0.0  # when the first event in the buffer was accepted (time.time)

    def __len__(self) -> int:
        return self._stored_events + len(self._ends)

    @property
    def queued_bytes(self) -> int:
        return self._stored_bytes + len(self._data)

    @property
    def accepted(self) -> int:
        """Events :meth:`offer` said yes to (dropped ones included): "received"."""
        return self._accepted + len(self._ends)

    @property
    def closed(self) -> bool:
        return self._closed

    @property
    def commit_failing(self) -> bool:
        """Whether events taken are held in memory because writing them failed (a spool
        on a full disk): sources hold back until a commit works (see
        :meth:`wait_committed`). Memory holds what it takes: never."""
        return False

    def commit(self) -> bool:
        """Make what was taken durable (a spool writes it); True once it is. Memory holds
        what was offered: nothing to do."""
        return True

    async def wait_committed(self) -> None:
        """Return once everything taken so far is durable (after :meth:`commit` said it
        is not yet). Memory: at once."""

    def offer(self, item: bytes) -> bool:
        """Queue ``item``, or drop per policy. False only under ``block`` when full.

        An item larger than ``max_bytes`` is taken when the queue is empty, so it can
        never wait forever.
        """
        # Append first, check after (fewer steps; the rare miss is taken back below).
        data = self._data
        data += item
        end = len(data)
        ends = self._ends
        ends.append(end)
        if end > self._cap_bytes or len(ends) > self._cap_events:
            ends.pop()
            del data[end - len(item) :]
            return self._offer_slow(item)
        return True

    def _offer_slow(self, item: bytes) -> bool:
        raise NotImplementedError

    async def wait_for_space(self, size: int = 0) -> None:
        raise NotImplementedError

    async def put(self, item: bytes) -> None:
        """Queue ``item``, waiting for room under ``block``."""
        while not self.offer(item):
            await self.wait_for_space(len(item))


class EventQueue(BoundedIntake):
    """Encoded events (each ending with ``\\n``) waiting for their exporter's consumer.

    The hot path of :meth:`offer` appends to the open batch, then checks it against two
    precomputed caps (``_cap_events``, ``_cap_bytes``); when either is passed, the event
    is taken back out and the slow path decides: sealing, a full queue, or waking an
    idle consumer (which sets ``_cap_events`` to 0 to be told of the first event).
    """

    def __init__(
        self,
        max_events: int,
        max_bytes: int,
        overflow: Overflow | str,
        on_drop: Callable[[str, int], None],
        *,
        batch_max_events: int = 1000,
        batch_max_bytes: int = 1 << 20,
        batch_max_age: float = 1.0,
    ) -> None:
        super().__init__(
            max_events,
            max_bytes,
            overflow,
            on_drop,
            batch_max_events=batch_max_events,
            batch_max_bytes=batch_max_bytes,
            batch_max_age=batch_max_age,
        )
        self._sealed: deque[Batch] = deque()
        self._wake: anyio.Event | None = None  # set while the consumer waits
        self._idle = False  # the consumer waits for a first event
        self._has_space = anyio.Event()
        self._producers_waiting = 0
        self._recap()

    # -- producers ---------------------------------------------------------------------

    def _offer_slow(self, item: bytes) -> bool:
        if self._idle:
            self._idle = False
            assert self._wake is not None
            self._wake.set()
        size = len(item)
        events = len(self)
        if events >= self.max_events or (events and self.queued_bytes + size > self.max_bytes):
            if self.overflow is Overflow.BLOCK:
                self._recap()
                return False
            if self.overflow is Overflow.DROP_NEWEST:
                self._accepted += 1
                self._on_drop("queue full (drop_newest)", 1)
                self._recap()
                return True
            self._on_drop("queue full (drop_oldest)", self._drop_oldest(size))
        self._append(item)
        return True

    def force(self, item: bytes) -> None:
        """Queue ``item`` past the bounds, whatever the policy (shutdown: an event already
        taken from its source must be delivered or dead-lettered, not lost)."""
        if self._idle:
            self._idle = False
            assert self._wake is not None
            self._wake.set()
        self._append(item)

    def _append(self, item: bytes) -> None:
        """Append to the open batch, sealing it before (if ``item`` would not fit) or
        after (when full)."""
        data = self._data
        ends = self._ends
        if ends and len(data) + len(item) > self.batch_max_bytes:
            self._seal()
            data = self._data
            ends = self._ends
        if not ends:
            self._first_at = time.time()
        data += item
        ends.append(len(data))
        if len(ends) >= self.batch_max_events or len(data) >= self.batch_max_bytes:
            self._seal()
        else:
            self._recap()

    def _drop_oldest(self, size: int) -> int:
        """Cut the oldest events until ``size`` more bytes and one more event fit."""
        dropped = 0
        while True:
            events = len(self)
            excess_events = events - self.max_events + 1
            excess_bytes = self.queued_bytes + size - self.max_bytes
            if not events or (excess_events <= 0 and excess_bytes <= 0):
                return dropped
            sealed = bool(self._sealed)
            data, ends = (
                (self._sealed[0].data, self._sealed[0].ends) if sealed else (self._data, self._ends)
            )
            k = cut = 0
            while k < len(ends) and (k < excess_events or cut < excess_bytes):
                cut = ends[k]
                k += 1
            del data[:cut]
            del ends[:k]
            ends[:] = [end - cut for end in ends]  # in place: the open batch keeps its list
            dropped += k
            if sealed:
                self._stored_events -= k
                self._stored_bytes -= cut
                if not ends:
                    self._sealed.popleft()
            else:
                self._accepted += k

    def _seal(self) -> None:
        ends = self._ends
        self._sealed.append(Batch(self._data, ends, accepted_at=self._first_at))
        self._stored_events += len(ends)
        self._stored_bytes += len(self._data)
        self._accepted += len(ends)
        self._data = bytearray()
        self._ends = []
        self._recap()
        if self._wake is not None:
            self._wake.set()

    def _recap(self) -> None:
        """Recompute the caps the hot path of :meth:`offer` checks (open batch after the
        append: fewer events than ``batch_max_events``, within both queue bounds; an empty
        open batch: none, so that its first event goes the slow path and is timed)."""
        if self._idle or not self._ends:
            self._cap_events = 0
        else:
            self._cap_events = min(self.batch_max_events - 1, self.max_events - self._stored_events)
        self._cap_bytes = min(self.batch_max_bytes, self.max_bytes - self._stored_bytes)

    async def wait_for_space(self, size: int = 0) -> None:
        """Return once an item of ``size`` bytes may fit (or the queue was closed); an
        empty queue takes any item, so this never waits forever."""
        while not self._closed and (
            len(self) >= self.max_events
            or (len(self) > 0 and self.queued_bytes + size > self.max_bytes)
        ):
            self._producers_waiting += 1
            try:
                await self._has_space.wait()
            finally:
                self._producers_waiting -= 1

    durable = False
    """Whether what is queued outlives the process (a spool) rather than being
    dead-lettered at a shutdown deadline."""

    def batch_done(self, batch: Batch) -> None:
        """Nothing to do: a batch left the queue when taken (a spool deletes it here)."""

    def close(self) -> None:
        """No more items will come; the consumer drains what is queued."""
        self._closed = True
        if self._wake is not None:
            self._wake.set()
        self._has_space.set()

    def take_all(self) -> list[bytes]:
        """Remove and return everything still queued (shutdown: to the dead-letter file)."""
        items: list[bytes] = []
        batches = [*self._sealed, Batch(self._data, self._ends)]
        for batch in batches:
            start = 0
            data = batch.data
            for end in batch.ends:
                items.append(bytes(data[start:end]))
                start = end
        self._accepted += len(self._ends)
        self._sealed.clear()
        self._stored_events = self._stored_bytes = 0
        self._data = bytearray()
        self._ends = []
        self._recap()
        self._wake_producers()
        return items

    # -- the consumer ------------------------------------------------------------------

    async def next_batch(self) -> Batch | None:
        """The next batch, or None when the queue is closed and empty."""
        deadline: float | None = None
        while True:
            if self._sealed:
                batch = self._sealed.popleft()
                self._stored_events -= len(batch.ends)
                self._stored_bytes -= len(batch.data)
                break
            if self._ends:
                if not self._closed:
                    now = anyio.current_time()
                    if deadline is None:
                        deadline = now + self.batch_max_age
                    if deadline > now:
                        with anyio.move_on_after(deadline - now):
                            await self._wait(idle=False)
                        continue
                batch = Batch(self._data, self._ends, accepted_at=self._first_at)
                self._accepted += len(self._ends)
                self._data = bytearray()
                self._ends = []
                break
            if self._closed:
                return None
            await self._wait(idle=True)
        self._recap()
        self._wake_producers()
        return batch

    async def _wait(self, *, idle: bool) -> None:
        """Wait for a seal or close (and, when ``idle``, for a first event)."""
        self._wake = wake = anyio.Event()
        self._idle = idle
        if idle:
            self._cap_events = 0
        try:
            await wake.wait()
        finally:
            self._wake = None
            if self._idle:
                self._idle = False
                self._recap()

    def _wake_producers(self) -> None:
        if self._producers_waiting:
            self._has_space.set()
            self._has_space = anyio.Event()

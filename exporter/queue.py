"""A per-exporter queue of encoded events, bounded in events and in bytes, with batching.

Producers call :meth:`EventQueue.offer` (synchronous, a deque append on the common path)
and await :meth:`EventQueue.wait_for_space` only when it says the queue is full under
the ``block`` policy: real backpressure without an await per event. Under
``drop_newest`` and ``drop_oldest`` a full queue drops and counts, never blocks.

The exporter's one consumer takes batches with :meth:`EventQueue.next_batch`: a batch
closes at ``max_events``, at ``max_bytes`` of encoded events, or ``max_age`` seconds
after its first event, whichever comes first; after :meth:`close`, what is left comes
out in batches without waiting.
"""

from __future__ import annotations

import enum
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


class EventQueue:
    """Encoded events (each ending with ``\\n``) waiting for their exporter's consumer."""

    def __init__(
        self,
        max_events: int,
        max_bytes: int,
        overflow: Overflow | str,
        on_drop: Callable[[str, int], None],
    ) -> None:
        if max_events < 1 or max_bytes < 1:
            raise UsageError(
                f"queue bounds must be positive (events {max_events}, bytes {max_bytes})"
            )
        try:
            self.overflow = Overflow(overflow)
        except ValueError:
            raise UsageError(
                f"unknown overflow policy {overflow!r} (allowed: {', '.join(OVERFLOW_CHOICES)})"
            ) from None
        self.max_events = max_events
        self.max_bytes = max_bytes
        self._on_drop = on_drop
        self._items: deque[bytes] = deque()
        self._bytes = 0
        self._closed = False
        self._has_items = anyio.Event()
        self._has_space = anyio.Event()
        self._consumer_waiting = False
        self._producers_waiting = 0

    def __len__(self) -> int:
        return len(self._items)

    @property
    def queued_bytes(self) -> int:
        return self._bytes

    @property
    def closed(self) -> bool:
        return self._closed

    # -- producers ---------------------------------------------------------------------

    def offer(self, item: bytes) -> bool:
        """Queue ``item``, or drop per policy. False only under ``block`` when full.

        An item larger than ``max_bytes`` is taken when the queue is empty, so it can
        never wait forever.
        """
        items = self._items
        if len(items) >= self.max_events or (items and self._bytes + len(item) > self.max_bytes):
            if self.overflow is Overflow.BLOCK:
                return False
            if self.overflow is Overflow.DROP_NEWEST:
                self._on_drop("queue full (drop_newest)", 1)
                return True
            dropped = 0
            while items and (
                len(items) >= self.max_events or self._bytes + len(item) > self.max_bytes
            ):
                self._bytes -= len(items.popleft())
                dropped += 1
            self._on_drop("queue full (drop_oldest)", dropped)
        items.append(item)
        self._bytes += len(item)
        if self._consumer_waiting:
            self._has_items.set()
        return True

    async def wait_for_space(self) -> None:
        """Return once an item may fit (or the queue was closed)."""
        while not self._closed and (
            len(self._items) >= self.max_events or self._bytes >= self.max_bytes
        ):
            self._producers_waiting += 1
            try:
                await self._has_space.wait()
            finally:
                self._producers_waiting -= 1

    async def put(self, item: bytes) -> None:
        """Queue ``item``, waiting for room under ``block``."""
        while not self.offer(item):
            await self.wait_for_space()

    def close(self) -> None:
        """No more items will come; the consumer drains what is queued."""
        self._closed = True
        self._has_items.set()
        self._has_space.set()

    def take_all(self) -> list[bytes]:
        """Remove and return everything still queued (shutdown: to the dead-letter file)."""
        items = list(self._items)
        self._items.clear()
        self._bytes = 0
        self._wake_producers()
        return items

    # -- the consumer ------------------------------------------------------------------

    async def next_batch(self, max_events: int, max_bytes: int, max_age: float) -> Batch | None:
        """The next batch, or None when the queue is closed and empty."""
        while not self._items:
            if self._closed:
                return None
            await self._wait_for_items()
        batch = Batch()
        deadline = anyio.current_time() + max_age
        while True:
            self._fill(batch, max_events, max_bytes)
            if (
                len(batch) >= max_events
                or (self._items and len(batch.data) + len(self._items[0]) > max_bytes)
                or self._closed
            ):
                return batch
            remaining = deadline - anyio.current_time()
            if remaining <= 0:
                return batch
            with anyio.move_on_after(remaining):
                await self._wait_for_items()

    def _fill(self, batch: Batch, max_events: int, max_bytes: int) -> None:
        items = self._items
        taken = 0
        data = batch.data
        ends = batch.ends
        room = max_events - len(ends)
        while items and taken < room:
            item = items[0]
            if data and len(data) + len(item) > max_bytes:
                break
            items.popleft()
            data += item
            ends.append(len(data))
            self._bytes -= len(item)
            taken += 1
        if taken:
            self._wake_producers()

    async def _wait_for_items(self) -> None:
        if self._has_items.is_set():
            self._has_items = anyio.Event()
        if self._items or self._closed:
            return
        self._consumer_waiting = True
        try:
            await self._has_items.wait()
        finally:
            self._consumer_waiting = False

    def _wake_producers(self) -> None:
        if self._producers_waiting:
            self._has_space.set()
            self._has_space = anyio.Event()

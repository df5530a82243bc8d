"""Test doubles for the sources: an emit() that keeps what it gets."""

from __future__ import annotations

import anyio

from exporter.event import Event


class Collector:
    """An emit() keeping every event; wait_for(n) returns once n events have come.
    With ``block_at``, the emit of that event (1-based) waits until cancelled, as
    Pipeline.emit on a full queue at shutdown, and keeps it then (queued past the bounds)."""

    def __init__(self, block_at: int | None = None) -> None:
        self.events: list[Event] = []
        self.blocked = anyio.Event()
        self._block_at = block_at
        self._waiting: list[tuple[int, anyio.Event]] = []

    async def emit(self, event: Event) -> None:
        if self._block_at is not None and len(self.events) + 1 == self._block_at:
            self.blocked.set()
            try:
                await anyio.Event().wait()  # until cancelled
            finally:
                self.events.append(event)
        self.events.append(event)
        for count, reached in self._waiting:
            if len(self.events) >= count:
                reached.set()

    async def wait_for(self, count: int) -> None:
        if len(self.events) < count:
            reached = anyio.Event()
            self._waiting.append((count, reached))
            await reached.wait()

    def numbers(self) -> list[object]:
        return [event.fields["n"] for event in self.events]

"""Test doubles for the sources: an intake that keeps what it gets."""

from __future__ import annotations

from collections.abc import Callable

import anyio

from exporter.event import Event


class Collector:
    """An intake (emit / force / commit / busy) keeping every event; wait_for(n) returns
    once n events have come. With ``block_at``, the emit of that event (1-based) waits
    until cancelled, as Pipeline.emit on a full queue at shutdown, and keeps it then
    (queued past the bounds). Forced events go to ``forced``; ``busy`` answers as the
    function given says (never busy by default)."""

    def __init__(
        self, block_at: int | None = None, *, busy: Callable[[], bool] | None = None
    ) -> None:
        self.events: list[Event] = []
        self.forced: list[Event] = []
        self.commits = 0
        self.blocked = anyio.Event()
        self._block_at = block_at
        self._busy = busy
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

    def force(self, event: Event) -> None:
        self.forced.append(event)

    def commit(self) -> None:
        self.commits += 1

    async def committed(self) -> None:
        self.commit()

    def busy(self) -> bool:
        return self._busy is not None and self._busy()

    async def wait_for(self, count: int) -> None:
        if len(self.events) < count:
            reached = anyio.Event()
            self._waiting.append((count, reached))
            await reached.wait()

    def numbers(self) -> list[object]:
        return [event.fields["n"] for event in self.events]

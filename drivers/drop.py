"""The ``drop`` driver: events are encoded, then discarded (benchmarks and dry runs).

The exporter counts what it takes as discarded, not exported (:attr:`DropDriver.discards`)."""

from __future__ import annotations

from drivers.base import Batch
from exporter.errors import DriverClosedError


class DropDriver:
    """Accepts every batch and keeps nothing but counts."""

    discards = True
    """What it is sent is thrown away: the exporter's summary says "discarded"."""
    connections = 0

    def __init__(self) -> None:
        self.events = 0
        self.bytes = 0
        self._closed = False

    @property
    def name(self) -> str:
        return "drop"

    @property
    def concurrency(self) -> int:
        return 1

    async def send(self, batch: Batch) -> None:
        if self._closed:
            raise DriverClosedError("drop: send after close")
        self.events += len(batch)
        self.bytes += len(batch.data)

    async def flush(self) -> None:
        return None

    async def reopen(self) -> None:
        return None

    async def aclose(self) -> None:
        self._closed = True

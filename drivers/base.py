"""What every driver is: one destination behind ``send(batch)``, ``flush()``, ``aclose()``.

A driver receives batches of already encoded events and only says how delivery went:
returning means delivered, :class:`RetryableDeliveryError` means try again (maybe after
``retry_after``), :class:`PermanentDeliveryError` means never. It raises nothing else:
every foreign exception is mapped where the driver calls the outside world. Retrying,
backoff and dead-lettering live in one place (``exporter.delivery.retry``), not in drivers.
"""

from __future__ import annotations

import uuid
from collections.abc import Iterator
from dataclasses import dataclass, field
from typing import Protocol


def new_batch_key() -> str:
    return str(uuid.uuid4())


@dataclass(slots=True)
class Batch:
    """Encoded events, each followed by ``\\n``, in one buffer written in one go.

    ``ends[i]`` is the offset just past event ``i``'s newline, so a driver that needs
    the events one by one (datagrams, one request per event) can slice them out.
    ``key`` names the batch, the same on every retry (an HTTP idempotency key).
    ``accepted_at``: when its queue accepted its first event (``time.time()``; None: not
    known), for the exporter's latency histograms.
    """

    data: bytearray = field(default_factory=bytearray)
    ends: list[int] = field(default_factory=list)
    key: str = field(default_factory=new_batch_key, compare=False)
    accepted_at: float | None = field(default=None, compare=False)

    def append(self, encoded_line: bytes) -> None:
        """Add one event; ``encoded_line`` already ends with ``\\n``."""
        self.data += encoded_line
        self.ends.append(len(self.data))

    def __len__(self) -> int:
        return len(self.ends)

    def lines(self) -> Iterator[bytes]:
        """Each event's bytes without its newline."""
        start = 0
        data = self.data
        for end in self.ends:
            yield bytes(data[start : end - 1])
            start = end


class Driver(Protocol):
    """One destination. Batches arrive one at a time, in order."""

    @property
    def name(self) -> str:
        """Where events go, for messages and metrics (``file:/var/log/x``); no secrets."""
        ...

    @property
    def concurrency(self) -> int:
        """How many batches may be in ``send`` at once (1: strictly one after another)."""
        ...

    @property
    def connections(self) -> int:
        """Connections (a file: opens) made so far; the exporter logs new ones at debug
        level (reconnects). 0 for a destination that has none."""
        ...

    async def send(self, batch: Batch) -> None:
        """Deliver the whole batch or raise a DeliveryError; never half-report success."""
        ...

    async def flush(self) -> None:
        """Push anything buffered to the destination (fsync, for a file). Safe to repeat."""
        ...

    async def reopen(self) -> None:
        """Let go of the open file or connection; the next send opens it again (SIGHUP)."""
        ...

    async def aclose(self) -> None:
        """Release everything. Idempotent; send() afterwards raises DriverClosedError."""
        ...

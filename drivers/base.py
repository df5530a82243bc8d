"""What every driver is: one destination behind ``send(batch)``, ``flush()``, ``aclose()``.

A driver receives batches of already encoded events and only says how delivery went:
returning None means delivered, :class:`RetryableDeliveryError` means try again (maybe
after ``retry_after``), :class:`PermanentDeliveryError` means never; a receiver that
answers item by item (Elasticsearch ``_bulk``, OTLP's partial success) makes ``send``
return a :class:`Partial`: the rest of the batch was taken, these items were not. It
raises nothing else: every foreign exception is mapped where the driver calls the
outside world. Retrying, backoff and dead-lettering live in one place
(``exporter.delivery.retry``), not in drivers.
"""

from __future__ import annotations

import uuid
from collections.abc import Iterator, Sequence
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

    def subset(self, indexes: Sequence[int]) -> Batch:
        """The events at ``indexes`` (in that order), as a batch of their own: what is left
        to send after a partial delivery. A new key: it is another request."""
        part = Batch(accepted_at=self.accepted_at)
        data = self.data
        ends = self.ends
        for index in indexes:
            start = ends[index - 1] if index else 0
            part.append(bytes(data[start : ends[index]]))
        return part

    def line(self, index: int) -> bytes:
        """Event ``index``'s bytes without its newline."""
        start = self.ends[index - 1] if index else 0
        return bytes(self.data[start : self.ends[index] - 1])

    def lines(self) -> Iterator[bytes]:
        """Each event's bytes without its newline."""
        start = 0
        data = self.data
        for end in self.ends:
            yield bytes(data[start : end - 1])
            start = end


@dataclass(slots=True)
class Partial:
    """What a receiver said of a batch it took only in part (indexes into the batch).

    ``retry``: items it asked to have again (429, 5xx per item), sent alone later by the
    retry loop, ``retry_reason`` saying why; ``rejected``: items refused for good, by
    reason (dead-lettered with it); ``refused``: items refused that the receiver did not
    name (OTLP's ``partialSuccess`` counts them only), counted as dropped with
    ``refused_reason``. Every other item of the batch was delivered.
    """

    retry: list[int] = field(default_factory=list)
    retry_reason: str = ""
    retry_after: float | None = None
    rejected: dict[str, list[int]] = field(default_factory=dict)
    refused: int = 0
    refused_reason: str = ""

    @property
    def settled(self) -> int:
        """Items this answer settled without delivering them."""
        return sum(map(len, self.rejected.values())) + self.refused


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

    async def send(self, batch: Batch) -> Partial | None:
        """Deliver the whole batch (None) or raise a DeliveryError; a receiver that took
        part of it is reported as a :class:`Partial`, never as a success."""
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

"""An exporter at run time: its queue, its one consumer, retries, dead-letters, counters.

Events reach an exporter already encoded (a line ending with ``\\n``). The consumer
takes batches from the queue and hands each to the one retry loop; a batch that cannot
be delivered goes to the dead-letter file, one record per event. At shutdown the queue
is closed and drained until a deadline; whatever is still undelivered then (the batch in
flight included, which may thereby exist twice) is dead-lettered, so every accepted
event ends up delivered, dead-lettered, or counted as dropped with its reason.

Drop reasons are a fixed vocabulary (they become ``/metrics`` labels, so no outside text
may grow their number): the queue's and the spool's overflow policies, and the three
below for events that could not be dead-lettered. What went wrong in detail (a
receiver's error, an errno) goes to a warning, rate-limited: the first at once, then at
most one per ``WARNING_INTERVAL`` seconds per reason, each saying how many events it
covers.
"""

from __future__ import annotations

import random
import sys
import time
from collections import Counter
from collections.abc import Awaitable, Callable, Iterable
from dataclasses import dataclass, field
from typing import Any

import anyio

from drivers.base import Batch, Driver
from exporter.delivery.deadletter import DeadLetterFile, DeadLetterResult
from exporter.delivery.queue import EventQueue, Overflow
from exporter.delivery.retry import DeliveryCounters, Outcome, PauseGate, RetryPolicy, deliver
from exporter.delivery.spool import SpoolQueue
from exporter.errors import DeliveryError, UsageError
from exporter.observe.text import printable

NO_DEAD_LETTER_FILE = "undeliverable (no dead-letter file)"
DEAD_LETTER_FAILED = "dead-letter write failed"
DEAD_LETTER_FULL = "dead-letter file full"
WARNING_INTERVAL = 30.0
"""Seconds between two warnings about events lost for the same reason."""


@dataclass(frozen=True, slots=True)
class DeliverySettings:
    """Queue, batch and retry knobs of one exporter."""

    queue_max_events: int = 100_000
    queue_max_bytes: int = 64 << 20
    overflow: Overflow = Overflow.BLOCK
    batch_max_events: int = 1000
    batch_max_bytes: int = 1 << 20
    batch_max_age: float = 1.0
    retry: RetryPolicy = field(default_factory=RetryPolicy)
    spool: str | None = None
    """A SQLite file holding the queue on disk (at-least-once across crashes); None: memory."""
    spool_sync: str = "normal"

    def __post_init__(self) -> None:
        if self.batch_max_events < 1 or self.batch_max_bytes < 1:
            raise UsageError("batch limits must be positive")
        if self.batch_max_age < 0:
            raise UsageError(f"batch max age must not be negative, got {self.batch_max_age}")


@dataclass
class ExporterStats:
    """What happened to the events an exporter accepted."""

    exported: int = 0
    dead_lettered: int = 0
    batches: int = 0
    left_in_spool: int = 0
    """Events a spool kept at shutdown, sent at the next start."""
    delivery_seconds: float = 0.0
    """Summed over batches: from taking a batch to its delivery or dead-lettering."""
    dropped: Counter[str] = field(default_factory=Counter)
    delivery: DeliveryCounters = field(default_factory=DeliveryCounters)
    accepted: Callable[[], int] = field(default=lambda: 0, repr=False)
    """Where ``received`` comes from (the queue counts what it accepted)."""

    @property
    def received(self) -> int:
        """Events offered and accepted (dropped ones included)."""
        return self.accepted()

    @property
    def retried(self) -> int:
        return self.delivery.retries

    def summary(self) -> str:
        dropped = sum(self.dropped.values())
        reasons = ", ".join(f"{reason}: {n}" for reason, n in sorted(self.dropped.items()))
        return (
            f"received {self.received}, exported {self.exported}, retried {self.retried}, "
            f"dropped {dropped}{f' ({reasons})' if reasons else ''}, "
            f"dead-lettered {self.dead_lettered}"
            + (f", left in spool {self.left_in_spool}" if self.left_in_spool else "")
        )


class Exporter:
    """One destination's queue and delivery. ``run()`` is its consumer task."""

    def __init__(
        self,
        name: str,
        driver: Driver,
        settings: DeliverySettings,
        dead_letters: DeadLetterFile | None,
        *,
        rng: random.Random | None = None,
        warn: Callable[[str], None] | None = None,
    ) -> None:
        self.name = name
        self.driver = driver
        self.settings = settings
        self.warn = warn or _warn_on_stderr(name)
        """Where problems that lose no event go (a failed fsync at close, a failed reopen)."""
        self.queue: EventQueue | SpoolQueue
        if settings.spool is None:
            self.queue = EventQueue(
                settings.queue_max_events,
                settings.queue_max_bytes,
                settings.overflow,
                self._drop,
                batch_max_events=settings.batch_max_events,
                batch_max_bytes=settings.batch_max_bytes,
                batch_max_age=settings.batch_max_age,
            )
        else:
            self.queue = SpoolQueue(
                settings.spool,
                settings.queue_max_events,
                settings.queue_max_bytes,
                settings.overflow,
                self._drop,
                batch_max_events=settings.batch_max_events,
                batch_max_bytes=settings.batch_max_bytes,
                batch_max_age=settings.batch_max_age,
                sync=settings.spool_sync,  # type: ignore[arg-type]
                warn=lambda message: self.warn(message),
            )
        self.stats = ExporterStats(accepted=lambda: self.queue.accepted)
        # The producers' entry points are the queue's own (one call per event, no wrapper):
        self.offer: Callable[[bytes], bool] = self.queue.offer
        """Queue one encoded event; False when full under ``block`` (then ``put`` it)."""
        self.put: Callable[[bytes], Awaitable[None]] = self.queue.put
        """Queue one encoded event, waiting for room under ``block``."""
        self.gate = PauseGate()
        self._dead_letters = dead_letters
        self._rng = rng or random.Random()
        # by id() (batches compare by content): each with the attempts made so far
        self._in_flight: dict[int, tuple[Batch, Outcome]] = {}
        self.finished = anyio.Event()
        self.losses = LossWarnings(lambda message: self.warn(message))

    def force(self, line: bytes) -> None:
        """Queue one encoded event past the queue's bounds (shutdown: a line already read)."""
        self.queue.force(line)

    def _drop(self, reason: str, count: int) -> None:
        self.stats.dropped[reason] += count

    # -- the consumer ------------------------------------------------------------------

    async def run(self) -> None:
        """Deliver batches until the queue is closed and empty (beside a spool's
        :meth:`~exporter.delivery.spool.SpoolQueue.tidy`), then flush the driver."""
        try:
            async with anyio.create_task_group() as housekeeping:
                if isinstance(self.queue, SpoolQueue):
                    housekeeping.start_soon(self.queue.tidy)
                await self._deliver_all()
                housekeeping.cancel_scope.cancel()
            await self._driver_step("flush", self.driver.flush)
        finally:
            self.finished.set()

    async def _deliver_all(self) -> None:
        """Up to ``driver.concurrency`` batches are in delivery at once, each in its own
        retry loop; a slot is taken before a batch leaves the queue, so the queue's
        bounds plus that many batches bound the memory."""
        concurrency = max(1, self.driver.concurrency)
        slots = anyio.Semaphore(concurrency)
        async with anyio.create_task_group() as deliveries:
            while True:
                await slots.acquire()
                batch = await self.queue.next_batch()
                if batch is None:
                    break
                outcome = Outcome(0)  # in flight from here: abandon() sees it
                self._in_flight[id(batch)] = batch, outcome
                if concurrency == 1:  # inline: no task hop between batches
                    await self._deliver(batch, outcome, slots)
                else:
                    deliveries.start_soon(self._deliver, batch, outcome, slots)

    async def _deliver(self, batch: Batch, outcome: Outcome, slot: anyio.Semaphore) -> None:
        started = anyio.current_time()
        try:
            await deliver(
                self.driver,
                batch,
                self.settings.retry,
                self.gate,
                self.stats.delivery,
                rng=self._rng,
                outcome=outcome,
            )
            if outcome.failure is not None:
                # Still in flight (and holding its slot: batches waiting for a slow disk do
                # not pile up) until written. Cancelled before its write started, abandon()
                # writes it, with this reason; once in the worker thread the write ends and
                # its result comes back (nothing yields between that and the accounting),
                # so it is never written twice.
                await self.dead_letter(batch.lines(), outcome.failure, outcome.attempts)
        finally:
            slot.release()
        del self._in_flight[id(batch)]
        self.queue.batch_done(batch)
        self.stats.batches += 1
        self.stats.delivery_seconds += anyio.current_time() - started
        if outcome.failure is None:
            self.stats.exported += len(batch)

    def abandon(self, reason: str) -> None:
        """Dead-letter the batches in flight and everything queued (shutdown deadline); a
        spool keeps them instead, for the next start. A batch that had failed already
        keeps its own reason.

        Called once the consumers stopped, it writes at once (nothing else is left to
        run, and the dead-letter file is a regular file or refused, so this cannot hang
        on a FIFO)."""
        if self.queue.durable:
            self.stats.left_in_spool = len(self.queue)
            self._in_flight.clear()
            return
        for batch, outcome in self._in_flight.values():
            self._dead_letter_now(batch.lines(), outcome.failure or reason, outcome.attempts)
        self._in_flight.clear()
        self._dead_letter_now((item[:-1] for item in self.queue.take_all()), reason, 0)

    async def reopen(self) -> None:
        """SIGHUP: the driver lets go of its file or connection; the next batch reopens it."""
        await self._driver_step("reopen", self.driver.reopen)

    async def close_driver(self) -> None:
        """Release the driver (and a spool's database); a failure there (a last fsync) is
        reported, not raised."""
        await self._driver_step("close", self.driver.aclose)
        if isinstance(self.queue, SpoolQueue):
            self.queue.shut()

    async def _driver_step(self, what: str, step: Callable[[], Awaitable[None]]) -> None:
        """Run a driver call that delivers nothing itself: its events were already
        counted as exported, so a failure is worth a warning, not a crash."""
        try:
            await step()
        except DeliveryError as exc:
            self.warn(f"{what} failed: {exc}")

    async def dead_letter(self, events: Iterable[bytes], reason: str, attempts: int) -> None:
        """Write ``events`` to the dead-letter file in a worker thread (the event loop goes
        on); what cannot be written is counted as dropped (:meth:`_settle`)."""
        batch = list(events)
        result = None
        if self._dead_letters is not None and batch:
            result = await self._dead_letters.write_async(batch, **self._about(reason, attempts))
        self._settle(batch, reason, result)

    def _dead_letter_now(self, events: Iterable[bytes], reason: str, attempts: int) -> None:
        """:meth:`dead_letter`, blocking (shutdown)."""
        batch = list(events)
        result = None
        if self._dead_letters is not None and batch:
            result = self._dead_letters.write(batch, **self._about(reason, attempts))
        self._settle(batch, reason, result)

    def _about(self, reason: str, attempts: int) -> dict[str, Any]:
        """What each dead-letter record of this exporter says besides its event."""
        return {
            "destination": self.driver.name,
            "reason": reason,
            "attempts": attempts,
            "exporter": self.name,
        }

    def _settle(self, events: list[bytes], reason: str, result: DeadLetterResult | None) -> None:
        """Count what a dead-letter write did: written, or dropped with a fixed reason and
        a rate-limited warning giving the detail (``reason`` is outside text: escaped)."""
        if not events:
            return
        why = printable(reason)
        if result is None:
            self._lose(NO_DEAD_LETTER_FILE, len(events), f"no dead-letter file; {why}")
            return
        self.stats.dead_lettered += result.written
        assert self._dead_letters is not None
        path = self._dead_letters.path
        if result.full:
            self._lose(
                DEAD_LETTER_FULL,
                result.full,
                f"dead-letter file {path} is full ({result.size} bytes, dead_letter_max_bytes "
                f"{self._dead_letters.max_bytes}); {why}",
            )
        if result.failed:
            error = result.error
            detail = printable((error.strerror or str(error)) if error is not None else "")
            self._lose(
                DEAD_LETTER_FAILED,
                result.failed,
                f"dead-letter file {path} could not be written: {detail}; {why}",
            )

    def _lose(self, label: str, count: int, detail: str) -> None:
        self.stats.dropped[label] += count
        self.losses.lost(label, count, detail)


class LossWarnings:
    """Warnings about undeliverable events that were dropped, rate-limited per reason: the
    first at once, then at most one per ``interval`` seconds, each counting the events
    lost since the last one (every one of them is counted in ``stats.dropped`` anyway)."""

    def __init__(
        self,
        warn: Callable[[str], None],
        *,
        interval: float = WARNING_INTERVAL,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self._warn = warn
        self._interval = interval
        self._clock = clock
        self._next: dict[str, float] = {}
        self._unreported: Counter[str] = Counter()

    def lost(self, label: str, count: int, detail: str) -> None:
        self._unreported[label] += count
        now = self._clock()
        if now < self._next.get(label, now):
            return
        first = label not in self._next
        self._next[label] = now + self._interval
        lost, self._unreported[label] = self._unreported[label], 0
        later = f" (further such warnings: at most one per {self._interval:g} s)" if first else ""
        self._warn(f"{lost} undeliverable events dropped ({label}): {detail}{later}")


def _warn_on_stderr(name: str) -> Callable[[str], None]:
    def warn(message: str) -> None:
        sys.stderr.write(f"event-exporter: {name}: {message}\n")

    return warn

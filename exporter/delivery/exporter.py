"""An exporter at run time: its queue, its one consumer, retries, dead-letters, counters,
its health and its log.

Events reach an exporter already encoded (a line ending with ``\\n``). The consumer
takes batches from the queue and hands each to the one retry loop; a batch that cannot
be delivered goes to the dead-letter file, one record per event. At shutdown the queue
is closed and drained until a deadline; whatever is still undelivered then (the batch in
flight included, which may thereby exist twice) is dead-lettered with the shutdown's
reason and the last delivery error beside it, so every accepted event ends up
delivered, dead-lettered, or counted as dropped with its reason.

Drop reasons are a fixed vocabulary (they become ``/metrics`` labels, so no outside text
may grow their number): the queue's and the spool's overflow policies, the spool's write
failures, and the three below for events that could not be dead-lettered.

What the log says (``Exporter.log``, every line with ``exporter=NAME destination=...``):
the first failed delivery of a run of failures at once (warning: the error, the attempt,
the next try), then at most one line per 30 s while it keeps failing (how many attempts
failed since, the last error; the limit holds across runs, for a destination that fails
every other time), and a line when delivery works again (info: how long it failed, how
many events were delayed); dead-lettered and dropped events (warning,
rate-limited per reason, each line counting the events since the last); a spool moved
aside at start (error); at ``debug``, each batch sent and each new connection.
"""

from __future__ import annotations

import random
import time
from collections import Counter
from collections.abc import Awaitable, Callable, Iterable
from dataclasses import dataclass, field
from functools import partial
from typing import Any

import anyio

from drivers.base import Batch, Driver, Partial
from drivers.failover import Endpoints
from exporter.delivery.deadletter import DeadLetterFile, DeadLetterResult
from exporter.delivery.health import Failing, counted, seconds
from exporter.delivery.queue import EventQueue, Overflow
from exporter.delivery.retry import DeliveryCounters, Outcome, PauseGate, RetryPolicy, deliver
from exporter.delivery.spool import SPOOL_WRITE_FAILED, SpoolQueue
from exporter.errors import DeliveryError, UsageError
from exporter.observe.histogram import Histogram
from exporter.observe.log import Log, RateLimit
from exporter.observe.text import printable

NO_DEAD_LETTER_FILE = "undeliverable (no dead-letter file)"
DEAD_LETTER_FAILED = "dead-letter write failed"
DEAD_LETTER_FULL = "dead-letter file full"
REFUSED_BY_RECEIVER = "refused by the receiver"
"""Items a receiver refused without naming them (OTLP partial success): not retried."""
WARNING_INTERVAL = 30.0
DRAINING_RETRY_MAX = 1.0
"""Seconds a retry waits at most once shutdown began."""
"""Seconds between two warnings about events lost (or dead-lettered) for one reason."""


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
    discarded: int = 0
    """Taken by the ``drop`` driver, which throws them away: not exported."""
    dead_lettered: int = 0
    rejected: int = 0
    """Events a receiver refused for good in a batch it otherwise took (item by item):
    dead-lettered with its reason, or dropped when it did not say which."""
    batches: int = 0
    left_in_spool: int = 0
    """Events a spool kept at shutdown, sent at the next start."""
    recovered: int = 0
    """Events found in the spool at start (part of ``received``)."""
    delivery_seconds: float = 0.0
    """Summed over batches: from taking a batch to its delivery or dead-lettering."""
    dropped: Counter[str] = field(default_factory=Counter)
    delivery: DeliveryCounters = field(default_factory=DeliveryCounters)
    latency: Histogram = field(default_factory=Histogram)
    """Per delivered batch: seconds from its oldest event's acceptance by the queue to
    its delivery."""
    queue_age: Histogram = field(default_factory=Histogram)
    """Per batch: the age in seconds of its oldest event when it leaves the queue."""
    accepted: Callable[[], int] = field(default=lambda: 0, repr=False)
    """Where ``received`` comes from (the queue counts what it accepted)."""

    @property
    def received(self) -> int:
        """Events offered and accepted (dropped ones included), and those a spool held at
        start."""
        return self.accepted()

    @property
    def retried(self) -> int:
        return self.delivery.retries

    def summary(self) -> str:
        dropped = sum(self.dropped.values())
        reasons = ", ".join(f"{reason}: {n}" for reason, n in sorted(self.dropped.items()))
        extra = [
            f"discarded {self.discarded}" if self.discarded else "",
            f"left in spool {self.left_in_spool}" if self.left_in_spool else "",
            f"{self.recovered} of them found in the spool at start" if self.recovered else "",
        ]
        return (
            f"received {self.received}, exported {self.exported}, retried {self.retried}, "
            f"dropped {dropped}{f' ({reasons})' if reasons else ''}, "
            f"dead-lettered {self.dead_lettered}" + "".join(f", {part}" for part in extra if part)
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
        log: Log | None = None,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        """``clock`` paces the rate-limited log lines and times runs of failures."""
        self.name = name
        self.driver = driver
        self.settings = settings
        self._owns_log = log is None
        self._log = self._bound(log or Log())
        # the memory queue, or the spool at its path: the same bounds and batches
        queue: Callable[..., EventQueue | SpoolQueue] = (
            EventQueue
            if settings.spool is None
            else partial(
                SpoolQueue,
                settings.spool,
                sync=settings.spool_sync,  # type: ignore[arg-type]
                log=self._log,
            )
        )
        self.queue: EventQueue | SpoolQueue = queue(
            settings.queue_max_events,
            settings.queue_max_bytes,
            settings.overflow,
            self._drop,
            batch_max_events=settings.batch_max_events,
            batch_max_bytes=settings.batch_max_bytes,
            batch_max_age=settings.batch_max_age,
        )
        self.stats = ExporterStats(accepted=lambda: self.queue.accepted)
        if isinstance(self.queue, SpoolQueue):
            self.stats.recovered = self.queue.recovered
        # The producers' entry points are the queue's own (one call per event, no wrapper):
        self.offer: Callable[[bytes], bool] = self.queue.offer
        """Queue one encoded event; False when full under ``block`` (then ``put`` it)."""
        self.put: Callable[[bytes], Awaitable[None]] = self.queue.put
        """Queue one encoded event, waiting for room under ``block``."""
        self.gate = PauseGate()
        self.health = Failing(clock=clock)
        """The current run of failed deliveries: ``failing_since`` (monotonic; None once a
        delivery works), ``last_error`` (what /ready and /metrics show)."""
        self._dead_letters = dead_letters
        self._rng = rng or random.Random()
        # by id() (batches compare by content): each with the attempts made so far
        self._in_flight: dict[int, tuple[Batch, Outcome]] = {}
        self.finished = anyio.Event()
        self._reports = RateLimit(WARNING_INTERVAL, clock=clock)
        self._unreported: Counter[str] = Counter()  # events since the last report, by reason
        self._held: dict[str, Callable[[int], str]] = {}  # the message of what is unreported
        self._draining = False
        self._hurry = anyio.Event()
        self._reported: set[str] = set()
        self._delayed = 0  # events of the batches that failed in the current run
        self._connections = 0  # the driver's, when last looked at
        # End-to-end acknowledgement (a source that acks only what was delivered): each
        # event that enters the memory queue has a position, in order; one is settled
        # (delivered, dead-lettered or dropped) once every batch in flight starts after it.
        self._taken = 0  # events that left the queue: in batches, or cut by drop_oldest
        self._firsts: dict[int, int] = {}  # in flight, by id(batch): its first position
        self._settling = anyio.Event()

    @property
    def log(self) -> Log:
        """The exporter's log, its lines carrying ``exporter=NAME destination=DRIVER``
        (a ``Log()`` on stderr unless set: ``run`` sets the daemon's)."""
        return self._log

    @log.setter
    def log(self, log: Log) -> None:
        self._log = self._bound(log)
        self._owns_log = False
        if isinstance(self.queue, SpoolQueue):
            self.queue.log = self._log

    def _bound(self, log: Log) -> Log:
        bound = log.bind(exporter=self.name, destination=self.driver.name)
        endpoints = self.endpoints
        if endpoints is not None:  # its moves are said with the exporter's context
            endpoints.log = bound
        return bound

    @property
    def endpoints(self) -> Endpoints | None:
        """The URLs of an http destination and which one is in use (failover); None for
        another destination."""
        found = getattr(self.driver, "endpoints", None)
        return found if isinstance(found, Endpoints) else None

    @property
    def commit_failing(self) -> bool:
        """Whether events taken are held in memory because the spool cannot write them
        (a full disk): sources hold back (an http source answers 503, the others stop
        reading) until a commit works (``await queue.wait_committed()``)."""
        return self.queue.commit_failing

    @property
    def spool_moved_aside(self) -> str | None:
        """Where a spool found unreadable at start was moved (a new one was started); the
        daemon is not ready until restarted."""
        return self.queue.moved_aside if isinstance(self.queue, SpoolQueue) else None

    def force(self, line: bytes) -> None:
        """Queue one encoded event past the queue's bounds (shutdown: a line already read)."""
        self.queue.force(line)

    def _drop(self, reason: str, count: int) -> None:
        """The queue dropped ``count`` events under its overflow policy (or a spool that
        cannot write): counted, and said (rate-limited)."""
        if reason == "queue full (drop_oldest)":
            self._taken += count  # they left the queue from its front, settled
            self._settled_more()
        if count:
            self._lose(reason, count, lambda: self._why_dropped(reason), undeliverable=False)

    def _why_dropped(self, reason: str) -> str:
        queue = self.queue
        if isinstance(queue, SpoolQueue) and reason == SPOOL_WRITE_FAILED:
            return f"the spool cannot be written ({queue.writes.last_error})"
        return (
            f"the queue holds {len(queue)} events, {queue.queued_bytes} bytes "
            f"(queue_max_events {queue.max_events}, queue_max_bytes {queue.max_bytes})"
        )

    # -- end-to-end acknowledgement ----------------------------------------------------

    @property
    def position(self) -> int:
        """How many events have entered the memory queue in all: an event offered (and
        taken) before this is read has a position below it. A spool's events are settled
        once committed (:meth:`Pipeline.committed`): 0."""
        return 0 if self.queue.durable else self._taken + len(self.queue)

    @property
    def settled(self) -> int:
        """Every event of a position below this is delivered, dead-lettered or dropped."""
        return min(self._firsts.values(), default=self._taken)

    async def wait_settled(self, position: int) -> None:
        """Return once every event below ``position`` is settled (:attr:`settled`)."""
        while self.settled < position:
            await self._settling.wait()

    def _settled_more(self) -> None:
        self._settling.set()
        self._settling = anyio.Event()

    # -- the consumer ------------------------------------------------------------------

    async def run(self) -> None:
        """Deliver batches until the queue is closed and empty (beside a spool's
        :meth:`~exporter.delivery.spool.SpoolQueue.tidy`), then flush the driver."""
        if isinstance(self.queue, SpoolQueue) and self.queue.moved_aside is not None:
            self._log.error(
                f"spool {self.queue.path} was unreadable ({self.queue.moved_aside_why}): "
                f"moved aside to {self.queue.moved_aside}, a new one started; what it held "
                "is there (spool export reads it), not sent"
            )
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
        queue_age = self.stats.queue_age
        async with anyio.create_task_group() as deliveries:
            while True:
                await slots.acquire()
                batch = await self.queue.next_batch()
                if batch is None:
                    break
                if batch.accepted_at is not None:
                    queue_age.observe(max(0.0, time.time() - batch.accepted_at))
                outcome = Outcome(0)  # in flight from here: abandon() sees it
                self._in_flight[id(batch)] = batch, outcome
                self._firsts[id(batch)] = self._taken
                self._taken += len(batch)
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
                sleep=self._retry_sleep,
                outcome=outcome,
                failed=self._failed_attempt,
                settle=self._refused,
            )
            if outcome.failure is not None:
                # Still in flight (and holding its slot: batches waiting for a slow disk do
                # not pile up) until written. Cancelled before its write started, abandon()
                # writes it, with this reason; once in the worker thread the write ends and
                # its result comes back (nothing yields between that and the accounting),
                # so it is never written twice.
                left = outcome.remaining(batch)
                await self.dead_letter(left.lines(), outcome.failure, outcome.attempts)
        finally:
            slot.release()
        del self._in_flight[id(batch)]
        del self._firsts[id(batch)]
        self._settled_more()
        self.queue.batch_done(batch)
        self.stats.batches += 1
        took = anyio.current_time() - started
        self.stats.delivery_seconds += took
        taken = len(batch) - outcome.settled
        if outcome.failure is None:
            self._delivered(batch, taken, outcome.attempts, took)
        else:  # what a receiver took before the rest failed
            self.stats.exported += taken - len(outcome.remaining(batch))

    async def _refused(self, sent: Batch, answer: Partial, attempt: int) -> None:
        """The retry loop's report of items a receiver refused for good: those it named
        go to the dead-letter file with its reason, the others are counted as dropped."""
        where = self.driver.name
        for reason, indexes in answer.rejected.items():
            self.stats.rejected += len(indexes)
            why = f"{where}: refused by the receiver: {reason}"
            await self.dead_letter([sent.line(index) for index in indexes], why, attempt)
        if answer.refused:
            self.stats.rejected += answer.refused
            self._lose(REFUSED_BY_RECEIVER, answer.refused, f"{where}: {answer.refused_reason}")

    def _delivered(self, batch: Batch, taken: int, attempts: int, took: float) -> None:
        """Count a delivered batch (``taken`` of its events: the others a receiver refused),
        and say what changed: the end of a run of failures, and at debug level the batch
        and any new connection."""
        if getattr(self.driver, "discards", False):  # asked now: a reload may retarget it
            self.stats.discarded += taken
        else:
            self.stats.exported += taken
        if self.health.failing or attempts > 1:
            self._delayed += taken
        if batch.accepted_at is not None:
            self.stats.latency.observe(max(0.0, time.time() - batch.accepted_at))
        run = self.health.succeed()
        if run is not None:
            delayed, self._delayed = self._delayed + len(self.queue), 0
        if run is not None and run.reported:
            self._log.info(
                f"delivery works again after failing for {seconds(run.seconds)} "
                f"({counted(run.failures, 'failed attempt')}; the last: {run.last_error}); "
                f"{counted(delayed, 'event')} delayed"
            )
        if self._log.enabled("debug"):
            connections = self.driver.connections
            if connections > self._connections:
                self._log.debug(
                    f"connected: {counted(connections - self._connections, 'new connection')}"
                    f" ({connections} since start)"
                )
            self._connections = connections
            self._log.debug(
                f"batch sent: {counted(len(batch), 'event')}, {len(batch.data)} bytes, in "
                f"{took:.3f} s"
            )

    def _failed_attempt(self, attempt: int, error: str, retry_in: float | None) -> None:
        """The retry loop's report of a failed attempt: the health counts it, the log says
        the first of a run at once and then at most one line per 30 s."""
        error = printable(error)  # outside text (a receiver's): escaped where it is shown
        report = self.health.fail(error)
        if report is None:
            return
        then = "given up" if retry_in is None else f"next try in {seconds(retry_in)}"
        if report.first:
            earlier = report.failures - 1  # of runs of failures since ended, not reported
            since = (
                f" ({counted(earlier, 'more failed attempt')} since the last report: at most "
                "one line per 30 s)"
                if earlier
                else ""
            )
            self._log.warning(f"delivery failed (attempt {attempt}): {error}; {then}{since}")
            return
        self._log.warning(
            f"delivery still failing after {seconds(self.health.elapsed())}: "
            f"{counted(report.failures, 'failed attempt')} since the last report; the last "
            f"(attempt {attempt}): {error}; {then}"
        )

    def abandon(self, reason: str) -> None:
        """Dead-letter the batches in flight and everything queued (shutdown deadline); a
        spool keeps them instead, for the next start. A batch that had failed already
        keeps its own reason; the others get ``reason`` with the last delivery error.

        Called once the consumers stopped, it writes at once (nothing else is left to
        run, and the dead-letter file is a regular file or refused, so this cannot hang
        on a FIFO)."""
        self._firsts.clear()
        if self.queue.durable:
            self._in_flight.clear()
            return
        for batch, outcome in self._in_flight.values():
            why = outcome.failure or _with_last_error(reason, outcome.last_error)
            self._dead_letter_now(outcome.remaining(batch).lines(), why, outcome.attempts)
        self._in_flight.clear()
        last = self.health.last_error if self.health.failing else None
        queued = (item[:-1] for item in self.queue.take_all())
        self._dead_letter_now(queued, _with_last_error(reason, last), 0)

    async def reopen(self) -> None:
        """SIGHUP: the driver lets go of its file or connection; the next batch reopens it."""
        await self._driver_step("reopen", self.driver.reopen)

    async def close_driver(self) -> None:
        """Release the driver (and a spool's database: what it could not write goes to
        the dead-letter file, what it keeps is counted); a failure there (a last fsync)
        is reported, not raised. A log the exporter made itself is closed last."""
        await self._driver_step("close", self.driver.aclose)
        if isinstance(self.queue, SpoolQueue):
            unwritten = self.queue.shut()
            self.stats.left_in_spool = self.queue.on_disk
            if unwritten:
                why = f"{SPOOL_WRITE_FAILED}: {self.queue.writes.last_error}"
                await self.dead_letter(unwritten, why, 0)
        if self._owns_log:
            self._log.close()

    async def _driver_step(self, what: str, step: Callable[[], Awaitable[None]]) -> None:
        """Run a driver call that delivers nothing itself: its events were already
        counted as exported, so a failure is worth a warning, not a crash."""
        try:
            await step()
        except DeliveryError as exc:
            self._log.warning(f"{what} failed: {exc}")

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
        """Count what a dead-letter write did: written (and said, rate-limited), or
        dropped with a fixed reason and a rate-limited warning giving the detail
        (``reason`` is outside text: escaped)."""
        if not events:
            return
        why = printable(reason)
        if result is None:
            self._lose(NO_DEAD_LETTER_FILE, len(events), f"no dead-letter file; {why}")
            return
        self.stats.dead_lettered += result.written
        assert self._dead_letters is not None
        path = self._dead_letters.path
        if result.written:
            self._report(
                "dead-lettered",
                result.written,
                lambda count: f"{counted(count, 'event')} dead-lettered to {path}: {why}",
            )
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

    def _lose(
        self, label: str, count: int, detail: str | Callable[[], str], *, undeliverable: bool = True
    ) -> None:
        """Count ``count`` events dropped for ``label`` and say so, rate-limited (the
        detail, when it costs, is made only for a line that is written)."""
        self.stats.dropped[label] += count
        what = "undeliverable event" if undeliverable else "event"

        def message(n: int) -> str:
            why = detail if isinstance(detail, str) else detail()
            return f"{counted(n, what)} dropped ({label}): {why}"

        self._report(label, count, message)

    def _report(self, key: str, count: int, message: Callable[[int], str]) -> None:
        """A warning about ``count`` events (dead-lettered, or dropped for the reason
        ``key``): the first at once, then at most one per WARNING_INTERVAL seconds per
        key, each counting the events since the last one shown."""
        self._unreported[key] += count
        if self._reports.allow(key) is None:
            self._held[key] = message
            return
        self._held.pop(key, None)
        events = self._unreported.pop(key)
        first = key not in self._reported
        self._reported.add(key)
        later = f" (further such warnings: at most one per {WARNING_INTERVAL:g} s)"
        self._log.warning(message(events) + (later if first else ""))

    def report_held(self) -> None:
        """Say what the rate limit held back (the run ends: no later line would): the
        events dead-lettered or dropped since the last warning of each kind."""
        for key, message in self._held.items():
            events = self._unreported.pop(key, 0)
            if events:
                self._log.warning(message(events))
        self._held.clear()

    def hurry(self) -> None:
        """Shutdown began: a retry waiting for its backoff tries again now, and while the
        exporter drains no retry waits longer than DRAINING_RETRY_MAX (a receiver back
        within ``shutdown_timeout`` gets what is queued, not the dead-letter file)."""
        self._draining = True
        self._hurry.set()

    async def _retry_sleep(self, seconds: float) -> None:
        if self._draining:
            await anyio.sleep(min(seconds, DRAINING_RETRY_MAX))
            return
        with anyio.move_on_after(seconds):
            await self._hurry.wait()


def _with_last_error(reason: str, error: str | None) -> str:
    """A shutdown's reason with the delivery error that kept the batch back, if any."""
    return reason if error is None else f"{reason}; last error: {error}"

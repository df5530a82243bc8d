"""Metrics feeding exporters: the routing core of the daemon, of the Python API and of
``export`` (one route, to stdout or to ``--to``'s exporter), and their sources' intake.

An event goes to every metric whose filter matches it; each metric writes it in its
exporter's format with its own include set and field list and offers the bytes to that
exporter's queue. An exporter's queue is its own: a slow destination backs up only its
queue, and under the ``block`` policy whoever submits waits for room (backpressure);
under a drop policy it never waits and the drops are counted.

An event that a metric cannot write (a value no format knows), or whose matching or
writing fails in any other way (a bug, an event built in-process with a value of a type
no filter expects), is counted as rejected for that metric and reported (the first
REPORTED_MAX); the other metrics and events go on. With one route (``export``) it is
the event's rejection instead: :class:`RejectedEvent`, which its source reports with
the line.
"""

from __future__ import annotations

import copy
import sys
from collections import Counter
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from typing import Generic, Protocol, TypeVar

import anyio

from drivers.base import Driver
from exporter.config import Config, ExporterConfig
from exporter.delivery.deadletter import DeadLetterFile
from exporter.delivery.exporter import Exporter
from exporter.delivery.queue import Overflow
from exporter.event import Event
from exporter.formats import make_formatter
from exporter.formats.spec import Formatter
from exporter.formats.text import shown
from exporter.sources.intake import RejectedEvent
from exporter.sources.lines import FirstReported, why_rejected

Matcher = Callable[[Event], bool]


class Target(Protocol):
    """Where a route's encoded events go: an :class:`Exporter` (its queue), or
    ``export``'s output."""

    def offer(self, line: bytes) -> bool:
        """Take ``line`` without waiting; False when full under ``block`` (then put it)."""

    def put(self, line: bytes) -> Awaitable[None]:
        """Take ``line``, waiting for room under ``block``."""

    def force(self, line: bytes) -> None:
        """Take ``line`` past every bound (shutdown: input already read)."""


T = TypeVar("T", bound=Target)


@dataclass(slots=True)
class Route(Generic[T]):
    """One metric: which events, written how, to which target."""

    metric: str
    matches: Matcher | None
    """None: every event (an empty filter)."""
    encode: Formatter
    target: T
    matched: int = 0
    rejected: int = 0


@dataclass
class PipelineCounts:
    submitted: int = 0
    unmatched: int = 0
    """Events no metric wanted."""
    rejected: Counter[str] = field(default_factory=Counter)
    """By metric: events that metric could not write."""


class Pipeline(Generic[T]):
    """The metrics (routes) and the exporters they feed; the intake of the sources
    (:class:`exporter.sources.intake.Intake`). The exporters deliver on their own
    (:func:`exporter.delivery.lifecycle.ship`)."""

    def __init__(
        self,
        exporters: dict[str, Exporter],
        routes: list[Route[T]],
        *,
        hostname: str | None = None,
        reject_events: bool = False,
    ) -> None:
        self.exporters = exporters
        self.routes = routes
        self.hostname = hostname
        self.counts = PipelineCounts()
        self.warn: Callable[[str], None] = _warn_on_stderr
        """Where a metric's rejections are reported (the daemon's log)."""
        self._reject_events = reject_events
        self._reported = FirstReported(
            lambda message: self.warn(message),
            "further events rejected by a metric are counted but not shown",
        )
        # busy() is asked per event by the http source: only these queues can answer yes.
        self._dropping = [
            e.queue for e in exporters.values() if e.queue.overflow is not Overflow.BLOCK
        ]

    @classmethod
    def one_route(cls, target: T, encode: Formatter, matches: Matcher | None) -> Pipeline[T]:
        """``export``: every matching event written to ``target`` (an exporter: ``--to``;
        else the output); an event it cannot write is rejected (:class:`RejectedEvent`)."""
        exporters: dict[str, Exporter] = {}
        if isinstance(target, Exporter):
            exporters["export"] = target
        return cls(exporters, [Route("export", matches, encode, target)], reject_events=True)

    @classmethod
    def from_config(cls, config: Config) -> Pipeline[Exporter]:
        """Exporters with their drivers (opened lazily) and one dead-letter file for all."""
        dead_letters = DeadLetterFile(
            config.settings.dead_letter, max_bytes=config.settings.dead_letter_max_bytes
        )
        exporters = {
            name: Exporter(name, open_driver(settings), settings.delivery, dead_letters)
            for name, settings in config.exporters.items()
        }
        routes = [
            Route(
                metric.name,
                None if metric.filter.match_all else metric.filter.matches,
                make_formatter(config.spec_for(metric), newline=True),
                exporters[metric.exporter],
            )
            for metric in config.metrics.values()
        ]
        return Pipeline(exporters, routes, hostname=config.settings.hostname)

    # -- producers ---------------------------------------------------------------------

    def offer(self, event: Event) -> list[tuple[T, bytes]]:
        """Route ``event`` without waiting; what a full queue under ``block`` could not
        take comes back, for :meth:`emit` (or the caller) to wait for room."""
        counts = self.counts
        counts.submitted += 1
        if self.hostname is not None:
            event = copy.copy(event)
            event.hostname = self.hostname
        waiting: list[tuple[T, bytes]] = []
        matched = False
        for route in self.routes:
            try:
                if route.matches is not None and not route.matches(event):
                    continue
                matched = True
                route.matched += 1
                line = route.encode(event)
            except Exception as exc:  # one metric's failure takes no other metric down
                matched = True  # accounted for: rejected, not "matched by no metric"
                self._reject(route, event, exc)
                continue
            if not route.target.offer(line):
                waiting.append((route.target, line))
        if not matched:
            counts.unmatched += 1
        return waiting

    def _reject(self, route: Route[T], event: Event, exc: Exception) -> None:
        route.rejected += 1
        self.counts.rejected[route.metric] += 1
        if self._reject_events:
            raise RejectedEvent(why_rejected(exc)) from exc
        name = getattr(event, "name", None)
        what = f"event {shown(name, 60)}" if isinstance(name, str) else "an event"
        self._reported(f"metric {route.metric}: {what} rejected: {why_rejected(exc)}")

    def busy(self) -> bool:
        """Whether an exporter that drops when full (not ``block``) is full: a source that
        can tell its sender to come back later (HTTP 503) should, rather than have its
        events dropped."""
        for queue in self._dropping:
            if len(queue) >= queue.max_events or queue.queued_bytes >= queue.max_bytes:
                return True
        return False

    async def emit(self, event: Event) -> None:
        """Route ``event``, waiting for room where an exporter's queue is full (block).

        Cancelled while waiting (shutdown), it still queues the event, past the bounds,
        where it had no room yet: an event taken is delivered or dead-lettered."""
        waiting = self.offer(event)
        if not waiting:
            return
        for index, (target, line) in enumerate(waiting):
            try:
                await target.put(line)
            except anyio.get_cancelled_exc_class():
                for late, rest in waiting[index:]:
                    late.force(rest)
                raise

    def commit(self) -> None:
        """Make what was emitted durable where an exporter has a spool (sources call this
        before they answer their sender)."""
        for exporter in self.exporters.values():
            exporter.queue.commit()

    def force(self, event: Event) -> None:
        """Route ``event`` past every queue's bounds (shutdown: input already taken)."""
        for target, line in self.offer(event):
            target.force(line)

    # -- the exporters -----------------------------------------------------------------

    async def close_drivers(self) -> None:
        for exporter in self.exporters.values():
            await exporter.close_driver()

    def summary(self) -> str:
        """One line: what came in, what matched, and each exporter's account."""
        counts = self.counts
        parts = [f"submitted {counts.submitted}, matched by no metric {counts.unmatched}"]
        for route in self.routes:
            rejected = f", rejected {route.rejected}" if route.rejected else ""
            parts.append(f"metric {route.metric}: matched {route.matched}{rejected}")
        for name, exporter in self.exporters.items():
            parts.append(f"exporter {name} ({exporter.driver.name}): {exporter.stats.summary()}")
        return "; ".join(parts)

    @property
    def lost(self) -> bool:
        """Whether any event was dead-lettered, dropped, or could not be written."""
        return bool(sum(self.counts.rejected.values())) or any(
            e.stats.dead_lettered or sum(e.stats.dropped.values()) for e in self.exporters.values()
        )


def _warn_on_stderr(message: str) -> None:
    sys.stderr.write(f"event-exporter: {message}\n")


def open_driver(settings: ExporterConfig) -> Driver:
    return settings.destination.open(settings.driver_settings)

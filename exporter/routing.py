"""Metrics feeding exporters: the routing core of the daemon, of the Python API and of
``export`` (one route, to stdout or to ``--to``'s exporter), and their sources' intake.

An event goes to every metric whose filter matches it; each metric writes it in its
exporter's format with its own include set and field list and offers the bytes to that
exporter's queue. An exporter's queue is its own: a slow destination backs up only its
queue, and under the ``block`` policy whoever submits waits for room (backpressure);
under a drop policy it never waits and the drops are counted.

An event that a metric cannot write (a value no format knows), or whose matching or
writing fails in any other way (a bug, an event built in-process with a value of a type
no filter expects), is counted as rejected for that metric and reported on the log with
``metric=NAME`` (the first :data:`REJECTIONS_SHOWN` at once, then one per
:data:`REJECTIONS_INTERVAL` seconds per metric, saying how many were held back); the
other metrics and events go on. With one route (``export``) it is the event's rejection
instead: :class:`RejectedEvent`, which its source reports with the line.

A reload (:mod:`exporter.cli.reload`) swaps the routes and exporters between two events
(:meth:`Pipeline.reroute`) and retires the exporters it removed (:meth:`Pipeline.retire`):
they deliver what they hold, and an event waiting for room in one is queued there at once.
"""

from __future__ import annotations

import copy
from collections import Counter
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from typing import Final, Generic, Protocol, TypeVar

import anyio

from drivers.base import Driver
from exporter.config import Config, ExporterConfig
from exporter.delivery.deadletter import DeadLetterFile
from exporter.delivery.exporter import Exporter
from exporter.delivery.queue import EventQueue, Overflow
from exporter.delivery.spool import SpoolQueue
from exporter.event import Event
from exporter.filter import Matcher
from exporter.formats import make_formatter
from exporter.formats.spec import Formatter
from exporter.formats.text import shown
from exporter.observe.log import Log, RateLimit
from exporter.sources.intake import RejectedEvent
from exporter.sources.lines import why_rejected

Mark = dict[int, tuple[Exporter, int]]
"""By id() of an exporter: it, and its queue's position (:meth:`Pipeline.mark`)."""
REJECTIONS_SHOWN: Final = 10
"""A metric's rejections shown at once; then at most one per interval."""
REJECTIONS_INTERVAL: Final = 30.0


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
        dead_letters: DeadLetterFile | None = None,
    ) -> None:
        self.exporters = exporters
        self.dead_letters = dead_letters
        """The one dead-letter file of the configuration's exporters (a reload's too)."""
        self.routes = routes
        self.hostname = hostname
        self.counts = PipelineCounts()
        self.log = Log()
        """Where a metric's rejections are reported (the daemon's log)."""
        self.retired: list[Exporter] = []
        """Exporters a reload removed: delivering what they held, still accounted for."""
        self._reject_events = reject_events
        self._rejections = RateLimit(REJECTIONS_INTERVAL, burst=REJECTIONS_SHOWN)
        self._retiring: dict[int, Exporter] = {}  # by id(): retired, queue not closed yet
        self._waiting: dict[int, set[anyio.CancelScope]] = {}  # emits waiting for room
        self._closed: set[int] = set()  # exporters whose driver was closed
        self._dropping: list[EventQueue | SpoolQueue] = []
        self._spooled: list[EventQueue | SpoolQueue] = []
        self._find_dropping()

    @classmethod
    def one_route(cls, target: T, encode: Formatter, matches: Matcher | None) -> Pipeline[T]:
        """``export``: every matching event written to ``target`` (an exporter: ``--to``;
        else the output); an event it cannot write is rejected (:class:`RejectedEvent`)."""
        exporters: dict[str, Exporter] = {}
        if isinstance(target, Exporter):
            exporters["export"] = target
        return cls(exporters, [Route("export", matches, encode, target)], reject_events=True)

    @classmethod
    def from_config(
        cls,
        config: Config,
        driver: Callable[[ExporterConfig], Driver] | None = None,
        log: Log | None = None,
    ) -> Pipeline[Exporter]:
        """Exporters with their drivers (opened lazily; by ``driver``, :func:`open_driver`
        unless given) and one dead-letter file for all; ``log``: where they and the
        metrics report (a spool opened now already may), else a ``Log()`` on stderr."""
        dead_letters = DeadLetterFile(
            config.settings.dead_letter, max_bytes=config.settings.dead_letter_max_bytes
        )
        exporters = {
            name: make_exporter(settings, dead_letters, driver or open_driver, log)
            for name, settings in config.exporters.items()
        }
        routes = make_routes(config, exporters)
        pipeline = Pipeline(
            exporters, routes, hostname=config.settings.hostname, dead_letters=dead_letters
        )
        if log is not None:
            pipeline.log = log
        return pipeline

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
        held = self._rejections.allow(route.metric)
        if held is None:
            return
        name = getattr(event, "name", None)
        what = f"event {shown(name, 60)}" if isinstance(name, str) else "an event"
        self.log.warning(
            f"{what} rejected: {why_rejected(exc)}{self._rejections.note(held)}",
            metric=route.metric,
        )

    def busy(self) -> bool:
        """Whether an exporter that drops when full (not ``block``) is full: a source that
        can tell its sender to come back later (HTTP 503) should, rather than have its
        events dropped."""
        for queue in self._dropping:
            if len(queue) >= queue.max_events or queue.queued_bytes >= queue.max_bytes:
                return True
        return any(spool.commit_failing for spool in self._spooled)

    async def emit(self, event: Event) -> None:
        """Route ``event``, waiting for room where an exporter's queue is full (block).

        Cancelled while waiting (shutdown), it still queues the event, past the bounds,
        where it had no room yet: an event taken is delivered or dead-lettered."""
        waiting = self.offer(event)
        if waiting:
            await self.put_waiting(waiting)

    async def put_waiting(self, waiting: list[tuple[T, bytes]]) -> None:
        """The rest of :meth:`emit` after :meth:`offer` gave back ``waiting``: a line
        source routes with ``offer`` (no coroutine per event) and awaits this only when
        a queue was full. Cancelled, it queues what had no room yet, past the bounds."""
        for index, (target, line) in enumerate(waiting):
            try:
                await self._put(target, line)
            except anyio.get_cancelled_exc_class():
                for late, rest in waiting[index:]:
                    late.force(rest)
                raise

    async def _put(self, target: T, line: bytes) -> None:
        """``target.put(line)``, unless a reload retires ``target`` meanwhile: the event
        is then queued there past its bounds (it was routed before the reload), and once
        no event waits for room there any more its queue is closed."""
        key = id(target)
        if key in self._retiring:  # retired while this event waited for another target
            target.force(line)
            return
        waiters = self._waiting.setdefault(key, set())
        with anyio.CancelScope() as scope:
            waiters.add(scope)
            try:
                await target.put(line)
            finally:
                waiters.discard(scope)
                if not waiters:
                    del self._waiting[key]
                    self._close_retired(key)
        if scope.cancelled_caught:
            target.force(line)

    # -- reloads ---------------------------------------------------------------------

    def reroute(self, routes: list[Route[T]], exporters: dict[str, Exporter]) -> None:
        """A reload's new metrics and exporters, from the next event on (nothing awaits
        here: no event sees half of them)."""
        self.routes = routes
        self.exporters = exporters
        self._find_dropping()

    def retire(self, exporter: Exporter) -> None:
        """``exporter`` was removed (no route of :meth:`reroute` feeds it): it delivers
        what it holds, then stops (its queue is closed). Events waiting for room in it
        are queued there first, past its bounds, so that no source stays blocked on it."""
        self.retired.append(exporter)
        key = id(exporter)
        self._retiring[key] = exporter
        waiters = self._waiting.get(key)
        if waiters:
            for scope in waiters:  # each queues its event, the last one closes the queue
                scope.cancel()
        else:
            self._close_retired(key)

    def _close_retired(self, key: int) -> None:
        exporter = self._retiring.pop(key, None)
        if exporter is not None:
            exporter.queue.close()

    def _find_dropping(self) -> None:
        # busy() is asked per event by the http source: only these queues can answer yes.
        self._dropping = [
            e.queue for e in self.exporters.values() if e.queue.overflow is not Overflow.BLOCK
        ]
        self._spooled = [
            e.queue for e in self.exporters.values() if isinstance(e.queue, SpoolQueue)
        ]

    async def committed(self) -> None:
        """Make what was emitted durable where an exporter has a spool, and wait until it is
        (sources await this before they answer their sender); a retired one's too (an
        event that waited for room there went in at its retirement)."""
        for exporter in (*self.exporters.values(), *self.retired):
            if not exporter.queue.commit():
                await exporter.queue.wait_committed()

    def commit(self) -> None:
        """Write what was emitted where an exporter has a spool, without waiting."""
        for exporter in (*self.exporters.values(), *self.retired):
            exporter.queue.commit()

    # -- end-to-end acknowledgement (sources.intake.Settles) ---------------------------

    def mark(self) -> Mark:
        """Where each exporter's queue stands now (its :attr:`Exporter.position`): taken
        before and after an event's :meth:`emit`, the pair says where that event went."""
        return {id(e): (e, e.position) for e in (*self.exporters.values(), *self.retired)}

    async def settled(self, before: Mark, after: Mark) -> None:
        """Return once the events emitted between ``before`` and ``after`` are delivered,
        dead-lettered or dropped by every exporter whose queue took events meanwhile, and
        committed where an exporter has a spool."""
        for key, (exporter, position) in after.items():
            earlier = before.get(key)
            if earlier is None or position > earlier[1]:
                await exporter.wait_settled(position)
        await self.committed()

    def force(self, event: Event) -> None:
        """Route ``event`` past every queue's bounds (shutdown: input already taken)."""
        for target, line in self.offer(event):
            target.force(line)

    # -- the exporters -----------------------------------------------------------------

    @property
    def every_exporter(self) -> list[Exporter]:
        """The exporters, then those a reload removed (still accounted for)."""
        return [*self.exporters.values(), *self.retired]

    async def close_driver(self, exporter: Exporter) -> None:
        """Release ``exporter``'s driver (and spool), once."""
        if id(exporter) not in self._closed:
            self._closed.add(id(exporter))
            await exporter.close_driver()

    async def close_drivers(self) -> None:
        for exporter in self.every_exporter:
            await self.close_driver(exporter)

    def summary(self) -> str:
        """One line: what came in, what matched, and each exporter's account."""
        counts = self.counts
        parts = [f"submitted {counts.submitted}, matched by no metric {counts.unmatched}"]
        for route in self.routes:
            rejected = f", rejected {route.rejected}" if route.rejected else ""
            parts.append(f"metric {route.metric}: matched {route.matched}{rejected}")
        for exporter in self.every_exporter:
            removed = " removed by a reload," if exporter in self.retired else ""
            parts.append(
                f"exporter {exporter.name} ({exporter.driver.name}):{removed} "
                f"{exporter.stats.summary()}"
            )
        return "; ".join(parts)

    @property
    def lost(self) -> bool:
        """Whether any event was dead-lettered, dropped, or could not be written."""
        return bool(sum(self.counts.rejected.values())) or any(
            e.stats.dead_lettered or sum(e.stats.dropped.values()) for e in self.every_exporter
        )


def open_driver(settings: ExporterConfig) -> Driver:
    return settings.destination.open(settings.driver_settings)


def make_exporter(
    settings: ExporterConfig,
    dead_letters: DeadLetterFile | None,
    driver: Callable[[ExporterConfig], Driver] = open_driver,
    log: Log | None = None,
) -> Exporter:
    """The exporter of an ``[exporter.NAME]`` block (its spool, if any, opened now)."""
    return Exporter(settings.name, driver(settings), settings.delivery, dead_letters, log=log)


def make_routes(
    config: Config,
    exporters: dict[str, Exporter],
    counted: dict[str, Route[Exporter]] | None = None,
) -> list[Route[Exporter]]:
    """A route per metric of ``config``, feeding its exporter among ``exporters``; a
    metric of ``counted`` (the routes before a reload) keeps its counts."""
    routes = []
    for metric in config.metrics.values():
        route = Route(
            metric.name,
            None if metric.filter.match_all else metric.filter.matches,
            make_formatter(config.spec_for(metric), newline=True),
            exporters[metric.exporter],
        )
        before = (counted or {}).get(metric.name)
        if before is not None:
            route.matched, route.rejected = before.matched, before.rejected
        routes.append(route)
    return routes

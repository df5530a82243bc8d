"""The Python API: a configuration's metrics and exporters inside your own program.

Async code::

    async with EventExporter.from_config("exporter.toml") as events:
        events.emit(event)              # never waits
        await events.emit_wait(event)   # waits for room under the block policy

Code that is not async runs the same thing on a thread of its own::

    with ThreadedEventExporter.from_config("exporter.toml") as events:
        events.emit(event)              # from any thread

``emit`` never blocks: where an exporter's queue is full it applies the exporter's
overflow policy, and under ``block`` (which a caller that cannot wait cannot honour) the
event is dropped for that exporter and counted as "queue full (emit did not wait)".
Leaving the block is a shutdown, as SIGTERM is for the daemon: queues drain until the
configured deadline, then what is left is dead-lettered. Every event is delivered,
dead-lettered or counted as dropped with its reason.
"""

from __future__ import annotations

import contextlib
from pathlib import Path
from types import TracebackType
from typing import Self

import anyio
import anyio.abc
import anyio.from_thread

from exporter.config import Config, load_config
from exporter.delivery.lifecycle import ship
from exporter.event import Event
from exporter.routing import Pipeline

DROPPED_NOT_WAITING = "queue full (emit did not wait)"


class EventExporter:
    """Metrics and exporters of one configuration, delivering while the block runs."""

    def __init__(self, config: Config) -> None:
        self.config = config
        self.pipeline = Pipeline.from_config(config)
        self._stop = anyio.Event()
        self._tasks: anyio.abc.TaskGroup | None = None

    @classmethod
    def from_config(cls, path: str | Path) -> Self:
        return cls(load_config(path))

    def emit(self, event: Event) -> bool:
        """Route ``event`` without waiting; False if some exporter had no room for it.
        After the block (the queues are closed) it raises RuntimeError."""
        if self._stop.is_set():
            raise RuntimeError("the EventExporter is closed: emit inside its block")
        waiting = self.pipeline.offer(event)
        for exporter, _ in waiting:
            exporter.stats.dropped[DROPPED_NOT_WAITING] += 1
        return not waiting

    async def emit_wait(self, event: Event) -> None:
        """Route ``event``, waiting for room where a queue is full under ``block``."""
        if self._stop.is_set():
            raise RuntimeError("the EventExporter is closed: emit inside its block")
        await self.pipeline.emit(event)

    def summary(self) -> str:
        return self.pipeline.summary()

    async def __aenter__(self) -> Self:
        self._tasks = anyio.create_task_group()
        await self._tasks.__aenter__()
        self._tasks.start_soon(self._run)
        return self

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> bool | None:
        """Drain (or dead-letter at the deadline) whatever the way out: an exception or a
        cancellation leaving the block still has every event accounted for, and is
        re-raised as it was."""
        assert self._tasks is not None, "not entered"
        self._stop.set()
        await self._tasks.__aexit__(None, None, None)  # _run is shielded: it always drains
        return None

    async def _run(self) -> None:
        # Shielded: a cancellation of the caller's block must not cut the drain short (the
        # shutdown deadline bounds it).
        with anyio.CancelScope(shield=True):
            try:
                await ship(
                    self._stop.wait,
                    list(self.pipeline.exporters.values()),
                    shutdown_timeout=self.config.settings.shutdown_timeout,
                    handle_signals=False,
                    stop=self._stop,
                )
            finally:
                await self.pipeline.close_drivers()


class ThreadedEventExporter:
    """:class:`EventExporter` on an event loop in a thread of its own, for code that is
    not async; ``emit`` may be called from any thread."""

    def __init__(self, config: Config) -> None:
        self.config = config
        self._stack = contextlib.ExitStack()
        self._portal: anyio.from_thread.BlockingPortal | None = None
        self._exporter: EventExporter | None = None

    @classmethod
    def from_config(cls, path: str | Path) -> Self:
        return cls(load_config(path))

    def emit(self, event: Event) -> bool:
        """Route ``event`` (on the exporter's thread) without waiting; see EventExporter."""
        portal, exporter = self._running()
        return portal.call(exporter.emit, event)

    def summary(self) -> str:
        """What happened so far; after the block, what happened in all (the loop's thread
        is gone then, and nothing changes the counts any more: they are read here)."""
        if self._portal is None and self._exporter is not None:
            return self._exporter.summary()
        portal, exporter = self._running()
        return portal.call(exporter.summary)

    def _running(self) -> tuple[anyio.from_thread.BlockingPortal, EventExporter]:
        if self._portal is None or self._exporter is None:
            raise RuntimeError("use ThreadedEventExporter in a with block")
        return self._portal, self._exporter

    def __enter__(self) -> Self:
        with contextlib.ExitStack() as stack:
            portal = stack.enter_context(anyio.from_thread.start_blocking_portal())
            # Made on the loop's thread: its queues and events belong to that loop.
            exporter = portal.call(EventExporter, self.config)
            stack.enter_context(portal.wrap_async_context_manager(exporter))
            self._stack = stack.pop_all()
        self._portal, self._exporter = portal, exporter
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self._portal = None  # emit() from other threads fails clearly from here on
        self._stack.__exit__(exc_type, exc, tb)

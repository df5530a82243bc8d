"""Running exporters to completion: a producer feeds them, their consumers deliver.

End of input is not shutdown: the exporters then deliver everything they accepted, as
long as their retry policy says to keep trying. SIGTERM or SIGINT is: input stops, the
queues drain until ``shutdown_timeout``, and what is still undelivered then goes to the
dead-letter file. A second signal stops delivery at once, with the same accounting.
SIGHUP makes every driver let go of its file or connection (log rotation); the daemon
gives ``on_hangup`` to reload its configuration then (:mod:`exporter.cli.reload`), which
may add exporters to the :class:`Fleet` while it runs and retire others.
"""

from __future__ import annotations

import signal
from collections.abc import AsyncIterator, Awaitable, Callable, Iterable, Sequence

import anyio
import anyio.abc

from exporter.delivery.exporter import Exporter
from exporter.delivery.health import counted
from exporter.observe.log import Log

Producer = Callable[[], Awaitable[None]]
Hangup = Callable[[], Awaitable[None]]
_STOP_SIGNALS = (signal.SIGTERM, signal.SIGINT)
_HANDLED = (*_STOP_SIGNALS, signal.SIGHUP)


class Fleet:
    """The exporters :func:`ship` delivers for. One added while it runs (a reload) starts
    delivering at once; at shutdown every one of them, a retired one still draining
    included, drains under the same deadline. Once input stopped, :meth:`add` refuses:
    a reload that finishes then must check :attr:`stopping` and give up."""

    def __init__(self, exporters: Iterable[Exporter] = ()) -> None:
        self.exporters: list[Exporter] = list(exporters)
        self._consumers: anyio.abc.TaskGroup | None = None
        self.stopping = False
        """Set once shutdown began: nothing is added from then on."""

    def add(self, exporter: Exporter) -> None:
        if self.stopping:
            raise RuntimeError("the exporters are shutting down")
        self.exporters.append(exporter)
        if self._consumers is not None:
            self._consumers.start_soon(exporter.run)

    async def _consume(self) -> None:
        async with anyio.create_task_group() as consumers:
            self._consumers = consumers
            for exporter in self.exporters:
                consumers.start_soon(exporter.run)


async def ship(
    producer: Producer,
    exporters: Sequence[Exporter] | Fleet,
    *,
    shutdown_timeout: float,
    handle_signals: bool = True,
    stop: anyio.Event | None = None,
    on_hangup: Hangup | None = None,
    log: Log | None = None,
    on_stopping: Callable[[], None] | None = None,
) -> bool:
    """Run ``producer`` (which feeds ``exporters``) and deliver everything; True if
    interrupted. Every exporter drains under the same deadline. ``stop`` set is a
    shutdown as SIGTERM is (the Python API's exit, a source that failed).

    ``on_hangup`` runs at SIGHUP instead of reopening every driver (one at a time: a
    SIGHUP during a reload waits for it); ``log`` is told of the shutdown (which signal,
    how long the exporters may drain, the deadline passed); ``on_stopping`` is called once
    when input stops, for a shutdown or at its end (systemd's STOPPING=1)."""
    fleet = exporters if isinstance(exporters, Fleet) else Fleet(exporters)
    shipment = _Shipment(fleet, shutdown_timeout, on_hangup, log, on_stopping)
    await shipment.run(producer, handle_signals=handle_signals, stop=stop)
    return shipment.shutdown.is_set()


class _Shipment:
    """One :func:`ship`: its signals, its shutdown, its deadline."""

    def __init__(
        self,
        fleet: Fleet,
        shutdown_timeout: float,
        on_hangup: Hangup | None,
        log: Log | None,
        on_stopping: Callable[[], None] | None,
    ) -> None:
        self.fleet = fleet
        self.shutdown_timeout = shutdown_timeout
        self.on_hangup = on_hangup
        self.log = log
        self.on_stopping = on_stopping
        self.shutdown = anyio.Event()
        self.signals_seen = 0
        self.consumer_scope = anyio.CancelScope()
        self.producer_scope = anyio.CancelScope()
        self.hangups = anyio.Lock()
        self.told_stopping = False

    async def run(
        self, producer: Producer, *, handle_signals: bool, stop: anyio.Event | None
    ) -> None:
        fleet = self.fleet
        async with anyio.create_task_group() as tasks:
            if handle_signals:
                await tasks.start(self._watch_signals, tasks)
            if stop is not None:
                tasks.start_soon(self._watch_stop, stop)
            tasks.start_soon(self._consume)
            with self.producer_scope:
                await producer()
            fleet.stopping = True  # a reload under way adds nothing from here on
            if not self.shutdown.is_set():
                self._stopping("input ended", deadline=False)
            for exporter in fleet.exporters:
                exporter.queue.close()
                exporter.hurry()
            async with anyio.create_task_group() as drain:
                drain.start_soon(self._deadline_after_shutdown)
                for exporter in fleet.exporters:
                    await exporter.finished.wait()
                drain.cancel_scope.cancel()
            tasks.cancel_scope.cancel()
        if self.consumer_scope.cancel_called:
            second = self.signals_seen > 1
            reason = "shutdown: second signal" if second else "shutdown: deadline passed"
            for exporter in fleet.exporters:
                exporter.abandon(reason)
        for exporter in fleet.exporters:
            exporter.report_held()

    async def _consume(self) -> None:
        with self.consumer_scope:
            await self.fleet._consume()

    async def _watch_signals(
        self, tasks: anyio.abc.TaskGroup, *, task_status: anyio.abc.TaskStatus[None]
    ) -> None:
        with anyio.open_signal_receiver(*_STOP_SIGNALS, signal.SIGHUP) as received:
            task_status.started()
            try:
                await self._watch(received, tasks)
            finally:
                # Closing the receiver restores the default action (death, no summary):
                # a late SIGTERM stays pending until ignore_late_signals().
                signal.pthread_sigmask(signal.SIG_BLOCK, _HANDLED)

    async def _watch(self, received: AsyncIterator[int], tasks: anyio.abc.TaskGroup) -> None:
        async for signum in received:
            name = signal.Signals(signum).name
            if signum == signal.SIGHUP:  # a task: a write in flight must not delay SIGTERM
                tasks.start_soon(self._hang_up, tasks)
                continue
            self.signals_seen += 1
            if self.signals_seen == 1:
                self._begin_shutdown(name)
                continue
            if self.log is not None:
                self.log.warning(
                    f"{name} again: stopping delivery now; what is left is dead-lettered "
                    "(a spool keeps it)"
                )
            self.consumer_scope.cancel()

    async def _hang_up(self, tasks: anyio.abc.TaskGroup) -> None:
        async with self.hangups:
            if self.fleet.stopping:
                if self.log is not None:
                    self.log.info("SIGHUP: ignored, the exporters are shutting down")
                return
            if self.on_hangup is not None:
                await self.on_hangup()
                return
            for exporter in self.fleet.exporters:  # tasks: one slow driver delays no other
                tasks.start_soon(exporter.reopen)

    async def _watch_stop(self, stop: anyio.Event) -> None:
        await stop.wait()
        self._begin_shutdown("shutdown")

    def _begin_shutdown(self, why: str) -> None:
        if self.shutdown.is_set():
            return
        self.shutdown.set()
        input_ran = not self.fleet.stopping
        self.fleet.stopping = True
        self.producer_scope.cancel()
        self._stopping(f"{why}: input stopped" if input_ran else why, deadline=True)

    def _stopping(self, why: str, *, deadline: bool) -> None:
        """Input stopped, or delivery got a deadline: tell the log, and systemd
        (STOPPING=1) the first time."""
        if self.on_stopping is not None and not self.told_stopping:
            self.told_stopping = True
            self.on_stopping()
        if self.log is not None:
            queued = sum(len(exporter.queue) for exporter in self.fleet.exporters)
            until = f" for up to {self.shutdown_timeout:g} s" if deadline else ""
            held = counted(queued, "event")
            self.log.info(f"{why}; delivering what the queues hold ({held}){until}")

    async def _deadline_after_shutdown(self) -> None:
        await self.shutdown.wait()
        await anyio.sleep(self.shutdown_timeout)
        if self.log is not None:
            self.log.warning(
                f"shutdown_timeout ({self.shutdown_timeout:g} s) passed: stopping delivery; "
                "what is left is dead-lettered (a spool keeps it)"
            )
        self.consumer_scope.cancel()


def ignore_early_signals() -> None:
    """Before :func:`ship` (set-up, listeners starting): a SIGHUP is ignored rather than
    killing the process; SIGTERM and SIGINT keep their default, nothing is accepted yet."""
    signal.signal(signal.SIGHUP, signal.SIG_IGN)


def ignore_late_signals() -> None:
    """After :func:`ship`: a SIGTERM, SIGINT or SIGHUP that comes once the work is done
    (pending or later) is ignored, so the process still writes its summary and status."""
    for signum in _HANDLED:
        signal.signal(signum, signal.SIG_IGN)
    signal.pthread_sigmask(signal.SIG_UNBLOCK, _HANDLED)

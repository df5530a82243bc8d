"""Running one exporter to completion: a producer feeds it, its consumer delivers.

End of input is not shutdown: the exporter then delivers everything it accepted, as
long as its retry policy says to keep trying. SIGTERM or SIGINT is: input stops, the
queue drains until ``shutdown_timeout``, and what is still undelivered then goes to the
dead-letter file. A second signal stops delivery at once, with the same accounting.
SIGHUP makes the driver let go of its file or connection (log rotation), nothing more.
"""

from __future__ import annotations

import signal
from collections.abc import AsyncIterator, Awaitable, Callable, Sequence

import anyio

from exporter.delivery.exporter import Exporter

Producer = Callable[[], Awaitable[None]]
_STOP_SIGNALS = (signal.SIGTERM, signal.SIGINT)
_HANDLED = (*_STOP_SIGNALS, signal.SIGHUP)


async def ship(
    producer: Producer,
    exporters: Sequence[Exporter],
    *,
    shutdown_timeout: float,
    handle_signals: bool = True,
    stop: anyio.Event | None = None,
) -> bool:
    """Run ``producer`` (which feeds ``exporters``) and deliver everything; True if
    interrupted. Every exporter drains under the same deadline. ``stop`` set is a
    shutdown as SIGTERM is (the Python API's exit)."""
    shutdown = anyio.Event()
    signals_seen = 0
    consumer_scope = anyio.CancelScope()
    producer_scope = anyio.CancelScope()

    async def consume() -> None:
        with consumer_scope:
            async with anyio.create_task_group() as consumers:
                for exporter in exporters:
                    consumers.start_soon(exporter.run)

    async def watch_signals(task_status: anyio.abc.TaskStatus[None]) -> None:
        with anyio.open_signal_receiver(*_STOP_SIGNALS, signal.SIGHUP) as received:
            task_status.started()
            try:
                await _watch(received)
            finally:
                # Closing the receiver restores the default action (death, no summary):
                # a late SIGTERM stays pending until ignore_late_signals().
                signal.pthread_sigmask(signal.SIG_BLOCK, _HANDLED)

    async def _watch(received: AsyncIterator[int]) -> None:
        nonlocal signals_seen
        async for signum in received:
            if signum == signal.SIGHUP:  # tasks: a write in flight must not delay SIGTERM
                for exporter in exporters:
                    tasks.start_soon(exporter.reopen)
                continue
            signals_seen += 1
            shutdown.set()
            producer_scope.cancel()
            if signals_seen > 1:
                consumer_scope.cancel()

    async def watch_stop(stop: anyio.Event) -> None:
        await stop.wait()
        shutdown.set()
        producer_scope.cancel()

    async with anyio.create_task_group() as tasks:
        if handle_signals:
            await tasks.start(watch_signals)
        if stop is not None:
            tasks.start_soon(watch_stop, stop)
        tasks.start_soon(consume)
        with producer_scope:
            await producer()
        for exporter in exporters:
            exporter.queue.close()
        async with anyio.create_task_group() as drain:

            async def deadline_after_shutdown() -> None:
                await shutdown.wait()
                await anyio.sleep(shutdown_timeout)
                consumer_scope.cancel()

            drain.start_soon(deadline_after_shutdown)
            for exporter in exporters:
                await exporter.finished.wait()
            drain.cancel_scope.cancel()
        tasks.cancel_scope.cancel()
    if consumer_scope.cancel_called:
        reason = "shutdown: second signal" if signals_seen > 1 else "shutdown: deadline passed"
        for exporter in exporters:
            exporter.abandon(reason)
    return shutdown.is_set()


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

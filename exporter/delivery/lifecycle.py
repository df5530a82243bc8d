"""Running one exporter to completion: a producer feeds it, its consumer delivers.

End of input is not shutdown: the exporter then delivers everything it accepted, as
long as its retry policy says to keep trying. SIGTERM or SIGINT is: input stops, the
queue drains until ``shutdown_timeout``, and what is still undelivered then goes to the
dead-letter file. A second signal stops delivery at once, with the same accounting.
SIGHUP makes the driver let go of its file or connection (log rotation), nothing more.
"""

from __future__ import annotations

import os
import signal
import stat
from collections.abc import AsyncIterator, Awaitable, Callable, Iterable, Sequence
from typing import BinaryIO, TextIO

import anyio

from exporter.delivery.exporter import Exporter
from exporter.formats.reader import read_event
from exporter.formats.spec import Formatter
from exporter.sources.lines import CHUNK_BYTES, ExportCounts, LineSplitter, Matcher, reject

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


async def read_lines(fd: int) -> AsyncIterator[list[bytes]]:
    """The lines of ``fd`` until its end, a chunk's worth at a time. Pipes and sockets are
    read only once readable, so a cancelled reader never abandons a read in progress."""
    mode = os.fstat(fd).st_mode
    # Pipes, sockets and terminals are waited for; files and devices such as /dev/null
    # (which epoll refuses) are read at once.
    wait = stat.S_ISFIFO(mode) or stat.S_ISSOCK(mode) or os.isatty(fd)
    splitter = LineSplitter()
    while True:
        if wait:
            await anyio.wait_readable(fd)
        else:  # a file is always readable: let the consumer and signals run per chunk
            await anyio.lowlevel.checkpoint()
        chunk = os.read(fd, CHUNK_BYTES)
        lines = splitter.feed(chunk)
        if lines:
            yield lines
        if not chunk:
            return


async def produce_lines(
    sources: Iterable[tuple[str, BinaryIO]],
    exporter: Exporter,
    format_line: Formatter,
    matches: Matcher | None,
    errors: TextIO,
    counts: ExportCounts,
) -> None:
    """Read, filter and encode every line of every source into ``exporter``.

    A line read is a line accepted: when shutdown stops input in the middle of a chunk
    (or while waiting for room in the queue), the rest of that chunk still goes into the
    queue, past its bound, so the drain delivers or dead-letters it. Pipes and sockets
    are read only once readable, so stopping never abandons a read in progress.
    """
    encode = (format_line, matches, errors, counts)
    for label, stream in sources:
        lineno = 0
        async for lines in read_lines(stream.fileno()):
            index = 0
            waiting: bytes | None = None  # encoded, accepted, not yet in the queue
            try:
                while index < len(lines):
                    index += 1
                    encoded = _encode(lines[index - 1], lineno + index, label, *encode)
                    if encoded is not None and not exporter.offer(encoded):
                        waiting = encoded
                        await exporter.put(encoded)
                        waiting = None
            except anyio.get_cancelled_exc_class():
                if waiting is not None:
                    exporter.force(waiting)
                for offset, line in enumerate(lines[index:], index + 1):
                    encoded = _encode(line, lineno + offset, label, *encode)
                    if encoded is not None:
                        exporter.force(encoded)
                raise
            lineno += len(lines)


def _encode(
    line: bytes,
    lineno: int,
    label: str,
    format_line: Formatter,
    matches: Matcher | None,
    errors: TextIO,
    counts: ExportCounts,
) -> bytes | None:
    """The encoded line to queue, or None (empty, filtered out, or rejected and reported)."""
    if not line:
        return None
    counts.read += 1
    try:
        event = read_event(line)
        if matches is not None and not matches(event):
            return None
        encoded = format_line(event)
    except Exception as exc:  # one bad line never takes the others down
        reject(counts, errors, label, lineno, exc)
        return None
    counts.exported += 1
    return encoded


async def produce_encoded(events: Iterable[bytes], exporter: Exporter) -> None:
    """Feed already encoded events (without newline), e.g. from a dead-letter file."""
    for event in events:
        line = event + b"\n"
        if not exporter.offer(line):
            await exporter.put(line)

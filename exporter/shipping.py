"""Running one exporter to completion: a producer feeds it, its consumer delivers.

End of input is not shutdown: the exporter then delivers everything it accepted, as
long as its retry policy says to keep trying. SIGTERM or SIGINT is: input stops, the
queue drains until ``shutdown_timeout``, and what is still undelivered then goes to the
dead-letter file. A second signal stops delivery at once, with the same accounting.
"""

from __future__ import annotations

import signal
from collections.abc import Awaitable, Callable, Iterable
from typing import BinaryIO, TextIO

import anyio

from exporter.engine import Exporter
from exporter.export import CHUNK_BYTES, ExportCounts, LineSplitter, Matcher, reject
from exporter.formats.reader import read_event
from exporter.formats.spec import Formatter

Producer = Callable[[Exporter], Awaitable[None]]


async def ship(
    producer: Producer,
    exporter: Exporter,
    *,
    shutdown_timeout: float,
    handle_signals: bool = True,
) -> bool:
    """Run ``producer`` into ``exporter`` and deliver everything; True if interrupted."""
    shutdown = anyio.Event()
    signals_seen = 0
    consumer_scope = anyio.CancelScope()
    producer_scope = anyio.CancelScope()

    async def consume() -> None:
        with consumer_scope:
            await exporter.run()

    async def watch_signals(task_status: anyio.abc.TaskStatus[None]) -> None:
        nonlocal signals_seen
        with anyio.open_signal_receiver(signal.SIGTERM, signal.SIGINT) as received:
            task_status.started()
            async for _ in received:
                signals_seen += 1
                shutdown.set()
                producer_scope.cancel()
                if signals_seen > 1:
                    consumer_scope.cancel()

    async with anyio.create_task_group() as tasks:
        if handle_signals:
            await tasks.start(watch_signals)
        tasks.start_soon(consume)
        with producer_scope:
            await producer(exporter)
        exporter.queue.close()
        async with anyio.create_task_group() as drain:

            async def deadline_after_shutdown() -> None:
                await shutdown.wait()
                await anyio.sleep(shutdown_timeout)
                consumer_scope.cancel()

            drain.start_soon(deadline_after_shutdown)
            await exporter.finished.wait()
            drain.cancel_scope.cancel()
        tasks.cancel_scope.cancel()
    if consumer_scope.cancel_called:
        reason = "shutdown: second signal" if signals_seen > 1 else "shutdown: deadline passed"
        exporter.abandon(reason)
    return shutdown.is_set()


async def produce_lines(
    sources: Iterable[tuple[str, BinaryIO]],
    exporter: Exporter,
    format_line: Formatter,
    matches: Matcher | None,
    errors: TextIO,
    counts: ExportCounts,
) -> None:
    """Read, filter and encode every line of every source into ``exporter``."""
    for label, stream in sources:
        splitter = LineSplitter()
        lineno = 0
        while True:
            chunk = await anyio.to_thread.run_sync(
                stream.read1,  # type: ignore[attr-defined]
                CHUNK_BYTES,
                abandon_on_cancel=True,
            )
            for line in splitter.feed(chunk):
                lineno += 1
                if not line:
                    continue
                counts.read += 1
                try:
                    event = read_event(line)
                    if matches is not None and not matches(event):
                        continue
                    encoded = format_line(event)
                except Exception as exc:  # one bad line never takes the others down
                    reject(counts, errors, label, lineno, exc)
                    continue
                counts.exported += 1
                if not exporter.offer(encoded):
                    await exporter.put(encoded)
            if not chunk:
                break


async def produce_encoded(events: Iterable[bytes], exporter: Exporter) -> None:
    """Feed already encoded events (without newline), e.g. from a dead-letter file."""
    for event in events:
        line = event + b"\n"
        if not exporter.offer(line):
            await exporter.put(line)

"""Reading lines, for every source of lines (stdin, unix, tail) and for ``export``.

* :class:`LineSplitter`: chunks of bytes to whole lines, a line over ``max_line_bytes``
  never held;
* :func:`read_chunks`: a descriptor's bytes, read so that stopping never abandons a read;
* :class:`LineFeed`: one path from a line to its event in an :class:`Intake`, the
  cancel-safe loop ("a line read is a line accepted"), and the one reporter of lines
  that are not events.
"""

from __future__ import annotations

import functools
import os
import stat
from collections.abc import AsyncIterator, Callable, Iterable
from dataclasses import dataclass
from typing import BinaryIO, Final, TextIO, cast

import anyio
import anyio.lowlevel

from exporter.errors import EventExporterError
from exporter.formats.reader import read_event
from exporter.observe.text import printable
from exporter.sources.intake import Intake, RejectedEvent
from exporter.sources.reports import SourceReports, reports_for

CHUNK_BYTES: Final = 1 << 18

Where = Callable[[int], str]
"""Where line N (1-based) of an input is, as a report says it."""
Lines = list[bytes | None]
"""Lines without newline; None for one longer than the limit (its length is in
:attr:`LineSplitter.oversized`)."""


class LineSplitter:
    """Chunks of bytes to whole lines, without their newline (nor a CR before it).

    With ``max_line_bytes``, a longer line (counted before its newline, CR included) is
    never held whole: its bytes are counted and dropped, and it comes out as None, its
    length in :attr:`oversized`. The pieces of a line longer than a chunk are joined
    once, at its newline: joining them chunk by chunk would be quadratic in its length
    (50 MiB took 4 s).
    """

    def __init__(self, max_line_bytes: int | None = None, *, sizes: bool = False) -> None:
        self.max_line_bytes = max_line_bytes
        self.oversized: dict[int, int] = {}
        """The lines of the last :meth:`feed` over the limit: their index -> their length."""
        self.sizes: list[int] = []
        """With ``sizes``: the bytes each line of the last feed took in the input, its
        newline included (the tail source keeps its position with them)."""
        self._keep_sizes = sizes
        self._pending: list[bytes] = []
        self._held = 0
        self._skipped: int | None = None  # bytes of an oversized line dropped so far

    @property
    def pending_bytes(self) -> int:
        """Bytes fed since the last complete line."""
        return self._held if self._skipped is None else self._skipped

    @property
    def held_bytes(self) -> int:
        """Bytes held in memory (at most ``max_line_bytes``)."""
        return self._held

    @property
    def pending_oversized(self) -> bool:
        return self._skipped is not None

    def reset(self) -> None:
        self._pending.clear()
        self._held = 0
        self._skipped = None

    def feed(self, chunk: bytes) -> Lines:
        """The lines ``chunk`` completes. An empty chunk is the end of the input: a last
        line without newline comes out then (stdin and export take it; the unix and tail
        sources, which report it as cut short, never feed one)."""
        if self.oversized:
            self.oversized = {}
        if b"\n" not in chunk:
            if chunk:
                self._hold(chunk)
                return []
            return self._last_line()
        skipped, self._skipped = self._skipped, None
        if self._pending:
            self._pending.append(chunk)
            data = b"".join(self._pending)
            self._pending.clear()
            self._held = 0
        else:
            data = chunk
        raw = data.split(b"\n")
        rest = raw.pop()
        if self._keep_sizes:
            self.sizes = [len(line) + 1 for line in raw]
        lines = raw
        if b"\r" in data:
            lines = [line[:-1] if line[-1:] == b"\r" else line for line in raw]
        out = cast(Lines, lines)
        limit = self.max_line_bytes
        if limit is not None:
            first = len(raw[0])
            if max(map(len, raw)) > limit:
                for index, line in enumerate(raw):
                    if len(line) > limit:
                        self._drop(out, index, len(line))
            if skipped is not None:  # the line this chunk ends was over the limit before
                self._drop(out, 0, skipped + first)
            if len(rest) > limit:
                self._skipped = len(rest)
                return out
        if rest:
            self._pending.append(rest)
            self._held = len(rest)
        return out

    def _drop(self, lines: Lines, index: int, length: int) -> None:
        lines[index] = None
        self.oversized[index] = length
        if self._keep_sizes:
            self.sizes[index] = length + 1

    def _hold(self, chunk: bytes) -> None:
        """Keep a piece of the current line, or only count it once it is over the limit."""
        if self._skipped is not None:
            self._skipped += len(chunk)
        elif self.max_line_bytes is not None and self._held + len(chunk) > self.max_line_bytes:
            self._skipped = self._held + len(chunk)
            self._pending.clear()
            self._held = 0
        else:
            self._pending.append(chunk)
            self._held += len(chunk)

    def _last_line(self) -> Lines:
        if self._skipped is not None:
            length = self._skipped
            self.reset()
            self.oversized = {0: length}
            self.sizes = [length]
            return [None]
        if not self._pending:
            return []
        line = b"".join(self._pending)
        self.reset()
        self.sizes = [len(line)]
        return [line[:-1] if line[-1:] == b"\r" else line]


async def read_chunks(fd: int) -> AsyncIterator[bytes]:
    """The bytes of ``fd`` until its end (an empty chunk, given last), whatever is there
    up to CHUNK_BYTES at a time. Pipes, sockets and terminals are read only once readable,
    so a cancelled reader never abandons a read in progress."""
    mode = os.fstat(fd).st_mode
    # Pipes, sockets and terminals are waited for; files and devices such as /dev/null
    # (which epoll refuses) are read at once.
    wait = stat.S_ISFIFO(mode) or stat.S_ISSOCK(mode) or os.isatty(fd)
    while True:
        if wait:
            await anyio.wait_readable(fd)
        else:  # a file is always readable: let the consumer and signals run per chunk
            await anyio.lowlevel.checkpoint()
        chunk = os.read(fd, CHUNK_BYTES)
        yield chunk
        if not chunk:
            return


@dataclass
class LineCounts:
    read: int = 0
    """Lines that were not empty (nor longer than the limit)."""
    events: int = 0
    """Events handed to the intake."""
    rejected_lines: int = 0
    """Lines that are not events (each reported: :mod:`exporter.sources.reports`)."""


class LineFeed:
    """Lines to events in ``intake``: each line read (``read_event``) and emitted, in order,
    or reported (``reports``: the daemon's log, or ``event-exporter: {about}{where}:
    {why}`` on a stream) and skipped.

    A line read is a line accepted: when shutdown cancels an emit waiting for room, that
    event is queued all the same (the intake's promise) and the events of the rest of the
    lines already read are forced in, past the queues' bounds. With ``force_rest`` off
    (the tail source, whose lines stay in the file) they are left, and :attr:`taken` says
    how many lines were taken.
    """

    def __init__(
        self,
        intake: Intake,
        errors: TextIO | SourceReports,
        *,
        about: str = "",
        max_line_bytes: int | None = None,
        counts: LineCounts | None = None,
        force_rest: bool = True,
    ) -> None:
        self.max_line_bytes = max_line_bytes
        self.counts = LineCounts() if counts is None else counts
        self.taken = 0
        """Of the lines of the last :meth:`take`, those taken (all, unless cancelled): for
        a feed of one stream (the tail source)."""
        self._intake = intake
        self.reports = reports_for(errors, about)
        self._force_rest = force_rest

    def splitter(self, *, sizes: bool = False) -> LineSplitter:
        return LineSplitter(self.max_line_bytes, sizes=sizes)

    def reject(self, where: str, what: str) -> None:
        """Count a line that is not an event and report it."""
        self.counts.rejected_lines += 1
        self.reports.rejected(where, what)

    async def read(
        self, fd: int, where: Where, chunk_done: Callable[[int], None] | None = None
    ) -> None:
        """Every line of ``fd`` until its end, the last one without newline too; the intake
        commits after each chunk's lines, then ``chunk_done`` gets the chunk's size."""
        splitter = self.splitter()
        before = 0
        async for chunk in read_chunks(fd):
            lines = splitter.feed(chunk)
            if lines:
                await self.take(lines, splitter, where, before)
                await self._intake.committed()
                before += len(lines)
            if chunk_done is not None:
                chunk_done(len(chunk))

    async def take(
        self, lines: Lines, splitter: LineSplitter, where: Where, before: int = 0
    ) -> None:
        """Emit the event of each of ``lines`` (numbered from ``before + 1``) and report the
        others; ``splitter`` is the one that gave them (for the lengths of oversized ones).

        One loop for both ways in (the hot path of every line source and of ``export``):
        once shutdown cancels an emit, the events of the lines after it are forced in."""
        counts, intake = self.counts, self._intake
        emit, read = intake.emit, read_event  # read_event looked up per take: tests patch it
        # A Pipeline routes without a coroutine per event: offer, and await only the
        # queues that were full (the same as emit, one call less per event).
        offer = getattr(intake, "offer", None)
        put_waiting = getattr(intake, "put_waiting", None)
        if put_waiting is None:
            offer = None
        stopped: BaseException | None = None  # the cancellation, raised once all are in
        index = 0
        try:
            for index, line in enumerate(lines):
                if not line:
                    if line is None:
                        limit, length = self.max_line_bytes, splitter.oversized[index]
                        self.reject(
                            where(before + index + 1), f"{length} bytes, longer than {limit}"
                        )
                    continue
                counts.read += 1
                try:
                    event = read(line)
                except Exception as exc:  # whatever one line raises is that line's rejection
                    self.reject(where(before + index + 1), why_rejected(exc))
                    continue
                try:
                    if stopped is None:
                        if offer is None:
                            await emit(event)
                        elif waiting := offer(event):
                            await put_waiting(waiting)  # type: ignore[misc]
                    else:
                        intake.force(event)
                except RejectedEvent as rejected:
                    self.reject(where(before + index + 1), rejected.reason)
                    continue
                except anyio.get_cancelled_exc_class() as cancelled:
                    counts.events += 1  # cancelled while it waited: emit still queued it
                    if not self._force_rest:
                        index += 1  # taken; the lines after it stay where they are
                        raise
                    stopped = cancelled
                    continue
                counts.events += 1
        except BaseException:
            # the line it stopped at: untaken after a bug; taken after a cancelled emit
            # without force_rest (index moved past it)
            self.taken = index
            raise
        self.taken = len(lines)
        if stopped is not None:
            raise stopped  # shutdown: every line read is in the queues


async def feed_streams(
    feed: LineFeed,
    streams: Iterable[tuple[str, BinaryIO]],
    chunk_done: Callable[[int], None] | None = None,
) -> None:
    """Every line of every stream into ``feed``, a bad one reported as ``LABEL:N``."""
    for label, stream in streams:
        await feed.read(stream.fileno(), functools.partial("{}:{}".format, label), chunk_done)


def why_rejected(exc: Exception) -> str:
    """What to report of the exception one input raised: our own errors say what is
    wrong, anything else is a bug and says so. Escaped and cut: it may quote the input."""
    what = str(exc) if isinstance(exc, EventExporterError) else f"internal error: {exc!r}"
    return printable(what, 300)

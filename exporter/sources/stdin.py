"""The ``stdin`` source: Dovecot json or tab-text lines from standard input until its end.

A bad line is reported on the error stream with its number and skipped (the first 100;
after that they are counted only); whatever reading one line raises is that line's
rejection, never the end of the source. At shutdown the rest of a chunk already read is
still queued (``force``), so no line taken from stdin is lost.
"""

from __future__ import annotations

import sys
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from typing import TextIO

import anyio

from exporter.delivery.lifecycle import read_lines
from exporter.event import Event
from exporter.formats.reader import read_event
from exporter.sources.lines import why_rejected

Emit = Callable[[Event], Awaitable[None]]
_REPORTED_MAX = 100


@dataclass(frozen=True)
class StdinSourceSettings:
    max_line_bytes: int = 1 << 20
    """A longer line (without its newline) is reported and skipped, never held whole."""


@dataclass
class StdinSourceCounts:
    events: int = 0
    rejected_lines: int = 0
    """Lines that are not events (each of the first 100 reported on the error stream)."""


class StdinSource:
    """``serve()`` reads until the end of the input (or until cancelled).

    ``emit`` must, like :meth:`Pipeline.emit`, have queued its event even when cancelled;
    ``force`` (like :meth:`Pipeline.force`) then takes the other lines of the chunk."""

    def __init__(
        self,
        name: str,
        emit: Emit,
        errors: TextIO,
        *,
        force: Callable[[Event], None],
        commit: Callable[[], None] = lambda: None,
        fd: int | None = None,
    ) -> None:
        self.name = name
        self._emit = emit
        self._force = force
        self._commit = commit
        """Makes what was emitted durable (a spool), after each chunk's lines."""
        self._errors = errors
        self._fd = sys.stdin.fileno() if fd is None else fd
        self.counts = StdinSourceCounts()

    async def serve(self) -> None:
        number = 0
        async for lines in read_lines(self._fd):
            index = 0
            try:
                while index < len(lines):
                    index += 1
                    event = self._event(lines[index - 1], number + index)
                    if event is not None:
                        try:
                            await self._emit(event)
                        except anyio.get_cancelled_exc_class():
                            self.counts.events += 1  # cancelled, emit still queued it
                            raise
                        self.counts.events += 1
            except anyio.get_cancelled_exc_class():
                for offset, line in enumerate(lines[index:], index + 1):
                    event = self._event(line, number + offset)
                    if event is not None:
                        self._force(event)
                        self.counts.events += 1
                raise
            self._commit()  # a spool: what this chunk gave is on disk before the next read
            number += len(lines)

    def _event(self, line: bytes, number: int) -> Event | None:
        """The event of one line, or None (empty, or rejected and reported)."""
        if not line:
            return None
        try:
            return read_event(line)
        except Exception as exc:  # whatever one line raises is that line's rejection
            self._reject(number, why_rejected(exc))
            return None

    def _reject(self, number: int, what: str) -> None:
        self.counts.rejected_lines += 1
        rejected = self.counts.rejected_lines
        if rejected <= _REPORTED_MAX:
            self._errors.write(f"event-exporter: source {self.name}: line {number}: {what}\n")
        elif rejected == _REPORTED_MAX + 1:
            self._errors.write(
                f"event-exporter: source {self.name}: "
                "further rejected lines are counted but not shown\n"
            )

"""Reading lines: chunks of bytes to whole lines, and what to report of a line that is
not an event."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import Final, TextIO

from exporter.errors import EventExporterError
from exporter.event import Event
from exporter.observe.text import printable

CHUNK_BYTES: Final = 1 << 18
REPORTED_ERRORS_MAX: Final = 100

Matcher = Callable[[Event], bool]


@dataclass
class ExportCounts:
    """What one export did; ``rejected`` lines were reported on the error stream."""

    read: int = 0
    exported: int = 0
    rejected: int = 0


class LineSplitter:
    """Turns chunks of bytes into whole lines; a trailing CR is dropped.

    The pieces of a line longer than a chunk are joined once, at its newline: joining
    them chunk by chunk would be quadratic in its length (50 MiB took 4 s).
    """

    def __init__(self) -> None:
        self._pending: list[bytes] = []

    def feed(self, chunk: bytes) -> list[bytes]:
        """The complete lines so far; an empty chunk means end of input."""
        if not chunk:
            if not self._pending:
                return []
            chunk = b"\n"
        elif b"\n" not in chunk:
            self._pending.append(chunk)
            return []
        if self._pending:
            self._pending.append(chunk)
            data = b"".join(self._pending)
            self._pending.clear()
        else:
            data = chunk
        lines = data.split(b"\n")
        rest = lines.pop()
        if rest:
            self._pending.append(rest)
        if b"\r" in data:
            lines = [line[:-1] if line[-1:] == b"\r" else line for line in lines]
        return lines


def reject(counts: ExportCounts, errors: TextIO, label: str, lineno: int, exc: Exception) -> None:
    """Count a line that could not be exported and report it (the first 100 only)."""
    counts.rejected += 1
    if counts.rejected <= REPORTED_ERRORS_MAX:
        errors.write(f"event-exporter: {label}:{lineno}: {why_rejected(exc)}\n")
    elif counts.rejected == REPORTED_ERRORS_MAX + 1:
        errors.write("event-exporter: further rejected lines are counted but not shown\n")


def why_rejected(exc: Exception) -> str:
    """What to report of the exception one input raised: our own errors say what is
    wrong, anything else is a bug and says so. Escaped and cut: it may quote the input."""
    what = str(exc) if isinstance(exc, EventExporterError) else f"internal error: {exc!r}"
    return printable(what, 300)

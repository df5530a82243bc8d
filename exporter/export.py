"""The ``export`` loop: read lines, keep those the filter matches, write them formatted.

Input is read in chunks of whatever is available (``read1``), so a file is processed in
large batches while a live pipe is answered line by line without waiting for a full
buffer. Output is written once per chunk. A line that cannot be read is reported with
its file and line number and skipped; the others go on.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable
from dataclasses import dataclass
from typing import BinaryIO, Final, TextIO

from exporter.errors import EventExporterError
from exporter.event import Event
from exporter.formats.reader import read_json, read_tabtext

CHUNK_BYTES: Final = 1 << 18
REPORTED_ERRORS_MAX: Final = 100

Matcher = Callable[[Event], bool]
Formatter = Callable[[Event], bytes]


@dataclass
class ExportCounts:
    """What one export did; ``rejected`` lines were reported on the error stream."""

    read: int = 0
    exported: int = 0
    rejected: int = 0


def export_streams(
    sources: Iterable[tuple[str, BinaryIO]],
    output: BinaryIO,
    format_line: Formatter,
    matches: Matcher | None,
    errors: TextIO,
) -> ExportCounts:
    """Export every line of every source to ``output``; ``format_line`` appends the ``\\n``."""
    counts = ExportCounts()
    for label, stream in sources:
        _export_stream(label, stream, output, format_line, matches, errors, counts)
    return counts


def _export_stream(
    label: str,
    stream: BinaryIO,
    output: BinaryIO,
    format_line: Formatter,
    matches: Matcher | None,
    errors: TextIO,
    counts: ExportCounts,
) -> None:
    lineno = 0
    read = exported = 0
    pending = b""
    out = bytearray()
    while True:
        chunk = stream.read1(CHUNK_BYTES)  # type: ignore[attr-defined]
        if not chunk:
            if not pending:
                break
            chunk, pending = pending + b"\n", b""  # a last line without its newline
        lines = (pending + chunk).split(b"\n") if pending else chunk.split(b"\n")
        pending = lines.pop()
        strip_cr = b"\r" in chunk
        for line in lines:
            lineno += 1
            if strip_cr and line[-1:] == b"\r":
                line = line[:-1]
            if not line:
                continue
            read += 1
            try:
                event = read_json(line) if line[0] == 0x7B else read_tabtext(line)
                if matches is not None and not matches(event):
                    continue
                out += format_line(event)
            except EventExporterError as exc:
                _reject(counts, errors, label, lineno, exc)
                continue
            exported += 1
        if out:
            output.write(out)
            output.flush()
            out.clear()
    counts.read += read
    counts.exported += exported


def _reject(counts: ExportCounts, errors: TextIO, label: str, lineno: int, exc: Exception) -> None:
    counts.rejected += 1
    if counts.rejected <= REPORTED_ERRORS_MAX:
        errors.write(f"event-exporter: {label}:{lineno}: {exc}\n")
    elif counts.rejected == REPORTED_ERRORS_MAX + 1:
        errors.write("event-exporter: further rejected lines are counted but not shown\n")

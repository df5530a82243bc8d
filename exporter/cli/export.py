"""``event-exporter export``: read events, keep those the filter matches, write them
formatted to stdout or ``--output`` (with ``--to DEST``, ship them instead: :mod:`.ship`).

Input is read in chunks of whatever is available, so a file is processed in large
batches while a live pipe is answered line by line without waiting for a full buffer.
Each line goes the daemon's way (:class:`~exporter.sources.lines.LineFeed`, a one-route
:class:`~exporter.routing.Pipeline`), to a buffer written once per chunk. A line that
cannot be read or written is reported with its file and line number and skipped; the
others go on.
"""

from __future__ import annotations

import argparse
import contextlib
import os
import stat
import sys
from collections.abc import Iterable
from dataclasses import dataclass
from typing import Any, BinaryIO, TextIO

import anyio

from exporter.cli.common import (
    EXIT_BROKEN_PIPE,
    EXIT_LOSS,
    EXIT_OK,
    EXIT_REJECTED,
    EXIT_USAGE,
    exit_statuses,
    format_and_filter,
    open_sources,
    same_file,
    say,
    stdout_closed,
    usage_error,
)
from exporter.cli.progress import Progress
from exporter.cli.ship import add_delivery_options, ship_command
from exporter.config.settings import METRIC, WRITING, add_options
from exporter.errors import UsageError
from exporter.files import means_stdout, open_output
from exporter.filter import Matcher
from exporter.formats import make_formatter
from exporter.formats.spec import Formatter
from exporter.routing import Pipeline
from exporter.sources.lines import LineFeed, feed_streams


@dataclass
class ExportCounts:
    """What one export did; ``rejected`` lines were reported on the error stream."""

    read: int = 0
    exported: int = 0
    rejected: int = 0


def add_command(commands: argparse._SubParsersAction[Any]) -> None:
    export = commands.add_parser(
        "export",
        help="read events, keep the matching ones, write them formatted",
        description=(
            "Reads events one per line (Dovecot json or tab-text) from FILEs or stdin and "
            'writes each matching event, formatted, followed by "\\n", to stdout or --output.'
        ),
        epilog=exit_statuses(
            (EXIT_OK, "all input read (with --to: and every event delivered)"),
            (EXIT_REJECTED, "some lines rejected (reported on stderr, the rest exported)"),
            (EXIT_USAGE, "usage error, bad filter, unreadable input or unwritable output"),
            (EXIT_LOSS, "with --to: some events dead-lettered or dropped"),
            (EXIT_BROKEN_PIPE, "stdout closed early (| head), as for a filter killed by SIGPIPE"),
        ),
    )
    export.add_argument("files", nargs="*", metavar="FILE", help="input files; - or none: stdin")
    add_options(export, (*WRITING, *METRIC))
    export.add_argument(
        "--output",
        metavar="FILE",
        default=None,
        help="a regular file (created 0600; a symlink, FIFO or device is refused); "
        "- or /dev/stdout: stdout, the default",
    )
    add_delivery_options(export, required=False)
    export.set_defaults(run=export_command)


def export_command(args: argparse.Namespace) -> int:
    """``export``, or with ``--to`` the shipping of :func:`.ship.ship_command`."""
    if args.to is not None:
        return ship_command(args)
    return _export(args)


def _total_size(sources: list[tuple[str, BinaryIO]]) -> int | None:
    """The bytes to read, if every source is a regular file."""
    total = 0
    for _, stream in sources:
        info = os.fstat(stream.fileno())
        if not stat.S_ISREG(info.st_mode):
            return None
        total += info.st_size
    return total


def _output_file(path: str) -> BinaryIO:
    """``--output FILE`` (not stdout): created 0600 or emptied, through exporter.files."""
    return open(open_output(path), "wb")


def _export(args: argparse.Namespace) -> int:
    with contextlib.ExitStack() as stack:
        try:
            spec, event_filter = format_and_filter(args)
            sources = open_sources(args.files, stack)
        except UsageError as exc:
            return usage_error(str(exc))
        to_stdout = means_stdout(args.output)
        if not to_stdout and any(same_file(args.output, path) for path in args.files):
            return usage_error(f"--output {args.output} is also an input file")
        try:  # a regular file of ours or refused: no symlink followed, no FIFO waited on
            output: BinaryIO = (
                sys.stdout.buffer if to_stdout else stack.enter_context(_output_file(args.output))
            )
        except OSError as exc:
            return usage_error(f"cannot write {args.output}: {exc.strerror or exc}")
        format_line = make_formatter(spec, newline=True)
        matches = None if event_filter.match_all else event_filter.matches
        progress = None
        if not to_stdout or not sys.stdout.isatty():  # not among events on the same screen
            progress = Progress.for_terminal(sys.stderr, _total_size(sources))
        try:
            counts = export_streams(sources, output, format_line, matches, sys.stderr, progress)
        except BrokenPipeError:
            return stdout_closed()
        except OSError as exc:
            target = "stdout" if to_stdout else args.output
            return usage_error(f"cannot write {target}: {exc.strerror}")
    if counts.rejected:
        say(f"{counts.rejected} of {counts.read} lines rejected, {counts.exported} exported")
        return EXIT_REJECTED
    return EXIT_OK


def export_streams(
    sources: Iterable[tuple[str, BinaryIO]],
    output: BinaryIO,
    format_line: Formatter,
    matches: Matcher | None,
    errors: TextIO,
    progress: Progress | None = None,
) -> ExportCounts:
    """Export every line of every source to ``output``; ``format_line`` appends the ``\\n``."""
    written = _Output(output)
    pipeline = Pipeline.one_route(written, format_line, matches)
    feed = LineFeed(pipeline, errors)

    def chunk_done(size: int) -> None:
        written.write()
        if progress is not None:
            progress.advance(size, feed.counts.read)

    try:
        anyio.run(feed_streams, feed, sources, chunk_done)
    finally:
        if progress is not None:
            progress.finish()
    counts = feed.counts
    exported = counts.events - pipeline.counts.unmatched  # one route: matched is written
    return ExportCounts(counts.read, exported, counts.rejected_lines)


class _Output:
    """Where ``export`` writes: the events of one chunk of input are encoded here, then
    written together (:meth:`write`). It is never full."""

    def __init__(self, stream: BinaryIO) -> None:
        self._stream = stream
        self._data = bytearray()

    def offer(self, line: bytes) -> bool:
        self._data += line
        return True

    async def put(self, line: bytes) -> None:
        self._data += line

    def force(self, line: bytes) -> None:
        self._data += line

    def write(self) -> None:
        if self._data:
            self._stream.write(self._data)
            self._stream.flush()
            self._data.clear()

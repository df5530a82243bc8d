"""The ``event-exporter`` command line.

Exit codes are part of the interface: 0 all input read, 1 some lines rejected (each
reported on stderr), 2 a usage error, a bad filter, an unreadable input or an unwritable
output, 3 (with --to) some events dead-lettered or dropped, 141 stdout closed early.
"""

from __future__ import annotations

import argparse
import contextlib
import os
import stat
import sys
from collections.abc import Sequence
from typing import BinaryIO

from exporter.cli_catalog import add_catalog_command, catalog_command
from exporter.cli_check import add_check_command, check_command
from exporter.cli_common import (
    EXIT_BROKEN_PIPE,
    EXIT_OK,
    EXIT_REJECTED,
    EXIT_USAGE,
    format_and_filter,
    open_sources,
    usage_error,
)
from exporter.cli_delivery import add_delivery_options, replay_command, ship_command
from exporter.cli_generate import add_generate_command, generate_command
from exporter.cli_spool import add_spool_command, spool_command
from exporter.daemon import add_run_command, run_command
from exporter.errors import UsageError
from exporter.export import export_streams
from exporter.files import means_stdout, open_output
from exporter.formats import make_formatter
from exporter.formats.spec import FORMATS, INCLUDE_WORDS, LOG_TRUNCATE_BYTES
from exporter.formats.timefmt import PRECISIONS, TIME_FORMATS
from exporter.progress import Progress


class _Parser(argparse.ArgumentParser):
    """argparse that exits with our usage code (2) and names the program consistently."""

    def error(self, message: str) -> None:  # type: ignore[override]
        self.print_usage(sys.stderr)
        self.exit(EXIT_USAGE, f"event-exporter: {message}\n")


def _positive_int(text: str) -> int:
    try:
        value = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"{text!r} is not a whole number") from None
    if value < 1:
        raise argparse.ArgumentTypeError(f"{text!r} must be at least 1")
    return value


def build_parser() -> argparse.ArgumentParser:
    parser = _Parser(
        prog="event-exporter",
        description="Select, format and ship Dovecot and Stalwart events.",
    )
    commands = parser.add_subparsers(dest="command", metavar="COMMAND", required=True)
    export = commands.add_parser(
        "export",
        help="read events, keep the matching ones, write them formatted",
        description=(
            "Reads events one per line (Dovecot json or tab-text) from FILEs or stdin and "
            'writes each matching event, formatted, followed by "\\n", to stdout or --output.'
        ),
        epilog=(
            "exit status: 0 all input read; 1 some lines rejected (reported on stderr, "
            "the rest exported); 2 usage error, bad filter or unreadable file"
        ),
    )
    export.add_argument("files", nargs="*", metavar="FILE", help="input files; - or none: stdin")
    export.add_argument("--format", choices=FORMATS, default="json", help="default: json")
    export.add_argument(
        "--time-format", choices=TIME_FORMATS, default="rfc3339", help="default: rfc3339"
    )
    export.add_argument(
        "--time-precision",
        choices=PRECISIONS,
        default="us",
        help="digits after the second: s none, ms 3, us 6 (Dovecot's), ns 9; default: us",
    )
    export.add_argument(
        "--include",
        metavar="LIST",
        default=None,
        help=f"comma or space separated subset of {','.join(INCLUDE_WORDS)}; "
        "default all five; '' means none",
    )
    export.add_argument(
        "--fields", metavar="LIST", default="", help="field keys in output order; default all"
    )
    export.add_argument("--filter", metavar="EXPR", default="", help="Dovecot event filter")
    export.add_argument(
        "--truncate",
        metavar="N",
        type=_positive_int,
        default=None,
        help=f"cut string values longer than N bytes, append '...' "
        f"(Dovecot's log driver uses {LOG_TRUNCATE_BYTES})",
    )
    export.add_argument(
        "--output",
        metavar="FILE",
        default=None,
        help="a regular file (created 0600; a symlink, FIFO or device is refused); "
        "- or /dev/stdout: stdout, the default",
    )
    add_delivery_options(export, required=False)

    replay = commands.add_parser(
        "replay",
        help="send the events of a dead-letter file again",
        description="Sends every event of a dead-letter file to DEST, through the same "
        "queue, batching and retries as export --to.",
        epilog="exit status: 0 all delivered; 2 usage error or unreadable file; "
        "3 some events dead-lettered again or dropped",
    )
    replay.add_argument("dead_letter_file", metavar="DEADLETTER")
    add_delivery_options(replay, required=True)
    add_check_command(commands)
    add_run_command(commands)
    add_catalog_command(commands)
    add_generate_command(commands)
    add_delivery_options(add_spool_command(commands), required=False)
    return parser


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


def _same_file(a: str, b: str) -> bool:
    try:
        return b != "-" and os.path.samefile(a, b)
    except OSError:
        return False


def main(argv: Sequence[str] | None = None) -> int:
    """Run the command line; returns the exit status (also for usage errors and --help)."""
    try:
        args = build_parser().parse_args(argv)
    except SystemExit as exc:  # argparse exits on --help and on usage errors
        return exc.code if isinstance(exc.code, int) else EXIT_USAGE
    if args.command == "replay":
        return replay_command(args)
    if args.command == "check":
        return check_command(args)
    if args.command == "run":
        return run_command(args)
    if args.command == "catalog":
        return catalog_command(args)
    if args.command == "generate":
        return generate_command(args)
    if args.command == "spool":
        return spool_command(args)
    if args.to is not None:
        return ship_command(args)
    return _export(args)


def _export(args: argparse.Namespace) -> int:
    with contextlib.ExitStack() as stack:
        try:
            spec, event_filter = format_and_filter(args)
            sources = open_sources(args.files, stack)
        except UsageError as exc:
            return usage_error(str(exc))
        to_stdout = means_stdout(args.output)
        if not to_stdout and any(_same_file(args.output, path) for path in args.files):
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
            # The reader went away (``| head``): stop quietly with the status of a
            # process killed by SIGPIPE, as other filters do.
            os.dup2(os.open(os.devnull, os.O_WRONLY), sys.stdout.fileno())
            return EXIT_BROKEN_PIPE
        except OSError as exc:
            target = "stdout" if to_stdout else args.output
            return usage_error(f"cannot write {target}: {exc.strerror}")
    if counts.rejected:
        sys.stderr.write(
            f"event-exporter: {counts.rejected} of {counts.read} lines rejected, "
            f"{counts.exported} exported\n"
        )
        return EXIT_REJECTED
    return EXIT_OK

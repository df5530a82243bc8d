"""The ``event-exporter`` command line: one module per command, each adding its parser and
setting ``run`` to its function (argparse ``set_defaults``).

Exit codes are part of the interface: 0 all input read, 1 some lines rejected (each
reported on stderr), 2 a usage error, a bad filter, an unreadable input or an unwritable
output, 3 (with --to) some events dead-lettered or dropped, 141 stdout closed early.
"""

from __future__ import annotations

import argparse
import sys
from collections.abc import Sequence

from exporter import __version__
from exporter.cli import catalog, check, export, generate, run, ship, spool
from exporter.cli.common import EXIT_OK, EXIT_USAGE


class _Parser(argparse.ArgumentParser):
    """argparse that exits with our usage code (2) and names the program consistently."""

    def error(self, message: str) -> None:  # type: ignore[override]
        self.print_usage(sys.stderr)
        self.exit(EXIT_USAGE, f"event-exporter: {message}\n")


def build_parser() -> argparse.ArgumentParser:
    parser = _Parser(
        prog="event-exporter",
        description="Select, format and ship Dovecot and Stalwart events.",
    )
    parser.add_argument(
        "--version", action="version", version=VERSION_LINE, help="print the version and exit"
    )
    commands = parser.add_subparsers(dest="command", metavar="COMMAND", required=True)
    for command in (export, ship, check, run, catalog, generate, spool):
        command.add_command(commands)
    version = commands.add_parser("version", help="print the version and exit")
    version.set_defaults(run=_print_version)
    return parser


VERSION_LINE = f"event-exporter {__version__}"


def _print_version(args: argparse.Namespace) -> int:
    sys.stdout.write(VERSION_LINE + "\n")
    return EXIT_OK


def main(argv: Sequence[str] | None = None) -> int:
    """Run the command line; returns the exit status (also for usage errors and --help)."""
    try:
        args = build_parser().parse_args(argv)
    except SystemExit as exc:  # argparse exits on --help and on usage errors
        return exc.code if isinstance(exc.code, int) else EXIT_USAGE
    status: int = args.run(args)
    return status

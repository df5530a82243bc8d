"""The ``event-exporter`` command line: one module per command, each adding its parser and
setting ``run`` to its function (argparse ``set_defaults``).

Exit codes are part of the interface: 0 all input read, 1 some lines rejected (each
reported on stderr), 2 a usage error, a bad filter, an unreadable input or an unwritable
output, 3 (with --to) some events dead-lettered or dropped, 141 stdout closed early; each
command's ``--help`` lists its own. A usage error is one line and a hint, not the usage.
"""

from __future__ import annotations

import argparse
import sys
from collections.abc import Sequence

from exporter import __version__
from exporter.cli import catalog, check, export, generate, import_dovecot, run, ship, spool
from exporter.cli.common import EXIT_OK, EXIT_USAGE, escaped, exit_statuses


class _Parser(argparse.ArgumentParser):
    """argparse that exits with our usage code (2), saying what is wrong in one line with a
    hint (``event-exporter export: ...; see event-exporter export --help``) rather than the
    whole usage. Subcommands' parsers are of this class too (argparse makes them so)."""

    def error(self, message: str) -> None:  # type: ignore[override]
        self.exit(EXIT_USAGE, f"{self.prog}: {escaped(message)}; see {self.prog} --help\n")


def build_parser() -> argparse.ArgumentParser:
    parser = _Parser(
        prog="event-exporter",
        description="Select, format and ship Dovecot and Stalwart events.",
        epilog=exit_statuses(
            (EXIT_OK, "done"),
            (EXIT_USAGE, "usage error (every command's --help lists its own statuses)"),
        ),
    )
    parser.add_argument(
        "--version", action="version", version=VERSION_LINE, help="print the version and exit"
    )
    commands = parser.add_subparsers(dest="command", metavar="COMMAND", required=True)
    for command in (export, ship, check, run, import_dovecot, catalog, generate, spool):
        command.add_command(commands)
    version = commands.add_parser(
        "version",
        help="print the version and exit",
        epilog=exit_statuses((EXIT_OK, "printed"), (EXIT_USAGE, "usage error")),
    )
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

"""``event-exporter import-dovecot FILE``: a configuration of ours from a ``dovecot.conf``.

It prints the configuration (``-o`` to write it to a file) and says on stderr, with its
line, everything it did not carry over; the lines Dovecot then needs go to
``--dovecot-snippet FILE``, or stand at the end of the configuration as a comment block.
What it prints is checked as ``check`` would before it is written.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path
from typing import Any

from exporter.cli.common import EXIT_OK, EXIT_REJECTED, EXIT_USAGE, exit_statuses, say, usage_error
from exporter.config import ConfigError
from exporter.config.dovecot_conf import DovecotConfError, read_dovecot_conf
from exporter.config.dovecot_import import (
    DEFAULT_LISTEN,
    import_dovecot,
    relay_snippet,
    render_config,
)
from exporter.config.sections import parse_config
from exporter.delivery.health import counted

EXIT_PROBLEMS = EXIT_REJECTED


def add_command(commands: argparse._SubParsersAction[Any]) -> None:
    command = commands.add_parser(
        "import-dovecot",
        help="turn a dovecot.conf's event_exporter and metric blocks into a configuration",
        description="Reads FILE (dovecot.conf in 2.3 or 2.4 syntax, !include followed, or "
        "doveconf -n output; - for standard input) and prints a configuration doing what "
        "its event_exporter and metric blocks did, with an http source Dovecot posts every "
        "event to. What cannot be carried over is listed on stderr with its line.",
        epilog=exit_statuses(
            (EXIT_OK, "imported (warnings may be printed)"),
            (EXIT_PROBLEMS, "imported, but check finds problems on this machine (listed)"),
            (EXIT_USAGE, "FILE cannot be read or is not Dovecot configuration syntax"),
        ),
    )
    command.add_argument("file", metavar="FILE")
    command.add_argument(
        "-o", "--output", metavar="OUT", default=None, help="write the configuration here"
    )
    command.add_argument(
        "--dovecot-snippet",
        metavar="FILE",
        default=None,
        help="write the lines for dovecot.conf here (else: a comment block at the end)",
    )
    command.add_argument(
        "--listen",
        metavar="HOST:PORT",
        default=DEFAULT_LISTEN,
        help=f"where the http source listens and Dovecot posts (default {DEFAULT_LISTEN})",
    )
    command.set_defaults(run=import_dovecot_command)


def import_dovecot_command(args: argparse.Namespace) -> int:
    try:
        root = read_dovecot_conf(args.file)
        head = "" if args.file == "-" else _head(args.file)
    except DovecotConfError as exc:
        return usage_error(str(exc))
    imported = import_dovecot(root, head)
    source = "standard input" if args.file == "-" else args.file
    text = render_config(imported, source, args.listen)
    snippet = relay_snippet(imported, args.listen)
    status = EXIT_OK
    try:
        parse_config(text, args.output or "the imported configuration")
    except ConfigError as exc:  # e.g. a file's directory that is not on this machine
        say(f"import-dovecot: written, but check finds problems here:\n{exc}")
        status = EXIT_PROBLEMS
    for warning in imported.warnings:
        say(f"import-dovecot: {warning}")
    if args.dovecot_snippet is None:
        text += "\n" + "".join(f"# {line}\n" if line else "#\n" for line in snippet.splitlines())
    elif not _write(args.dovecot_snippet, snippet):
        return EXIT_USAGE
    if args.output is None:
        sys.stdout.write(text)
    elif not _write(args.output, text):
        return EXIT_USAGE
    say(
        f"import-dovecot: {counted(len(imported.exporters), 'exporter')} and "
        f"{counted(len(imported.metrics), 'metric')} carried over (Dovecot {imported.syntax} "
        f"syntax), {counted(len(imported.warnings), 'warning')}"
    )
    return status


def _head(path: str) -> str:
    with open(path, encoding="utf-8", errors="replace") as file:
        return "".join(file.readline() for _ in range(3))


def _write(path: str, text: str) -> bool:
    try:
        Path(path).write_text(text, encoding="utf-8")
    except OSError as exc:
        usage_error(f"cannot write {path}: {exc.strerror}")
        return False
    return True

"""``event-exporter catalog [PATTERN]``: the documented Dovecot and Stalwart events, their
fields and categories (``check`` uses the same catalog: :mod:`exporter.catalog.lint`)."""

from __future__ import annotations

import argparse
from typing import Any

import orjson

from exporter.catalog.model import SOURCES, load_catalog
from exporter.catalog.show import as_json, describe_events
from exporter.cli.common import (
    EXIT_BROKEN_PIPE,
    EXIT_OK,
    EXIT_USAGE,
    exit_statuses,
    say,
    stdout_closed,
    write_stdout,
)

EXIT_NO_MATCH = 1


def add_command(commands: argparse._SubParsersAction[Any]) -> None:
    catalog = commands.add_parser(
        "catalog",
        help="search the documented Dovecot and Stalwart events",
        description="Lists the events whose name matches PATTERN (* and ? as in filters; "
        "without them, any name containing it), ignoring case.",
        epilog=exit_statuses(
            (EXIT_OK, "something matched"),
            (EXIT_NO_MATCH, "nothing did (said on stderr)"),
            (EXIT_USAGE, "usage error"),
            (EXIT_BROKEN_PIPE, "stdout closed early (| head)"),
        ),
    )
    catalog.add_argument("pattern", nargs="?", default=None, metavar="PATTERN")
    catalog.add_argument("--fields", action="store_true", help="show each event's fields")
    catalog.add_argument("--source", choices=SOURCES, default=None)
    catalog.add_argument("--json", action="store_true", help="JSON instead of text")
    catalog.set_defaults(run=catalog_command)


def catalog_command(args: argparse.Namespace) -> int:
    found = load_catalog().find(args.pattern, args.source)
    try:
        if args.json:
            write_stdout(orjson.dumps(as_json(found, fields=args.fields)).decode() + "\n")
        else:
            write_stdout(describe_events(found, fields=args.fields))
    except BrokenPipeError:
        return stdout_closed()
    if not found:
        among = f" among the {args.source} events" if args.source else ""
        say(f"no documented event matches '{args.pattern}'{among}")
        return EXIT_NO_MATCH
    return EXIT_OK

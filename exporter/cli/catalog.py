"""``event-exporter catalog [PATTERN]``: the documented Dovecot and Stalwart events, their
fields and categories (``check`` uses the same catalog: :mod:`exporter.catalog.lint`)."""

from __future__ import annotations

import argparse
import sys
from typing import Any

import orjson

from exporter.catalog.model import SOURCES, load_catalog
from exporter.catalog.show import as_json, describe_events
from exporter.cli.common import EXIT_OK


def add_command(commands: argparse._SubParsersAction[Any]) -> None:
    catalog = commands.add_parser(
        "catalog",
        help="search the documented Dovecot and Stalwart events",
        description="Lists the events whose name matches PATTERN (* and ? as in filters; "
        "without them, any name containing it), ignoring case.",
        epilog="exit status: 0 something matched; 1 nothing did",
    )
    catalog.add_argument("pattern", nargs="?", default=None, metavar="PATTERN")
    catalog.add_argument("--fields", action="store_true", help="show each event's fields")
    catalog.add_argument("--source", choices=SOURCES, default=None)
    catalog.add_argument("--json", action="store_true", help="JSON instead of text")
    catalog.set_defaults(run=catalog_command)


def catalog_command(args: argparse.Namespace) -> int:
    found = load_catalog().find(args.pattern, args.source)
    if args.json:
        sys.stdout.write(orjson.dumps(as_json(found, fields=args.fields)).decode() + "\n")
    else:
        sys.stdout.write(describe_events(found, fields=args.fields))
    return EXIT_OK if found else 1

"""``event-exporter catalog [PATTERN]``: the documented Dovecot and Stalwart events, their
fields and categories; and the filter checks ``check`` makes with it (names no event,
category or field has, with the closest known one)."""

from __future__ import annotations

import argparse
import sys
from typing import Any

import orjson

from exporter.catalog import SOURCES, as_json, describe, load_catalog
from exporter.cli_common import EXIT_OK
from exporter.filter import EventFilter


def add_catalog_command(commands: argparse._SubParsersAction[Any]) -> None:
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


def catalog_command(args: argparse.Namespace) -> int:
    found = load_catalog().find(args.pattern, args.source)
    if args.json:
        sys.stdout.write(orjson.dumps(as_json(found, fields=args.fields)).decode() + "\n")
    else:
        sys.stdout.write(describe(found, fields=args.fields))
    return EXIT_OK if found else 1


def filter_warnings(where: str, event_filter: EventFilter) -> list[str]:
    """What a filter names that no documented event has, each with the closest known."""
    catalog = load_catalog()
    info = event_filter.info
    warnings = []
    for name in info.event_names:
        if "*" not in name and "?" not in name and not catalog.known_event(name):
            warnings.append(_unknown(where, "event", name, catalog.closest_event(name)))
    for category in info.categories:
        if not catalog.known_category(category):
            warnings.append(
                _unknown(where, "category", category, catalog.closest_category(category))
            )
    for field in info.fields:
        if not catalog.known_field(field):
            warnings.append(_unknown(where, "field", field, catalog.closest_field(field)))
    return warnings


def _unknown(where: str, kind: str, name: str, closest: str | None) -> str:
    hint = f"; did you mean {closest!r}?" if closest else ""
    return f"{where}: no documented event has the {kind} {name!r}{hint}"

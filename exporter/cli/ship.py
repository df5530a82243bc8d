"""``export --to DEST`` and ``replay``: shipping through the delivery engine.

Both exit when every accepted event was delivered or dead-lettered: 0 when all were
delivered, 3 when any was dead-lettered or dropped (1 when only input lines were
rejected), always with a one-line summary on stderr.
"""

from __future__ import annotations

import argparse
import contextlib
import dataclasses
import os
import sys
from typing import Any

import anyio

from drivers.base import Driver
from drivers.bodies.registry import KINDS, body_tables
from drivers.http import HttpSettings
from exporter.cli.common import (
    EXIT_LOSS,
    EXIT_OK,
    EXIT_REJECTED,
    EXIT_USAGE,
    exit_statuses,
    format_and_filter,
    open_sources,
    same_file,
    say,
    usage_error,
)
from exporter.cli.malloc import tune_malloc
from exporter.config import DriverSettings
from exporter.config.settings import (
    BODY_TABLES,
    DELIVERY,
    DESTINATION,
    FILE,
    HTTP,
    NATS,
    SHIPPING,
    add_options,
    body_options,
    delivery_settings,
    file_settings,
    http_settings,
    named,
    nats_settings,
    option_values,
)
from exporter.delivery.deadletter import DeadLetterFile, read_dead_letters
from exporter.delivery.destinations import Destination
from exporter.delivery.exporter import DeliverySettings, Exporter
from exporter.delivery.lifecycle import Producer, ignore_late_signals, ship
from exporter.errors import EventParseError, UsageError
from exporter.formats import make_formatter
from exporter.formats.spec import LOG_TRUNCATE_BYTES
from exporter.routing import Pipeline
from exporter.sources.lines import LineFeed, feed_streams


def add_delivery_options(parser: argparse.ArgumentParser, *, required: bool) -> None:
    """``--to DEST`` and every delivery option, from the settings table."""
    group = parser.add_argument_group("delivery (export --to, replay, spool drain)")
    add_options(group, [DESTINATION], required=required)
    add_options(group, (*DELIVERY, *SHIPPING, *FILE))
    add_options(parser.add_argument_group("http(s):// destinations"), HTTP)
    for table, settings in BODY_TABLES.items():
        bodies = ", ".join(kind.name for kind in body_tables()[table])
        add_options(parser.add_argument_group(f"http body {bodies}"), settings)
    add_options(parser.add_argument_group("nats:// destinations"), NATS)


def _settings(args: argparse.Namespace) -> DeliverySettings:
    values = option_values(args, (*DELIVERY, named(HTTP, "body")))
    settings = delivery_settings(values, values["body"])
    assert settings is not None  # made directly: a UsageError says what does not fit
    return settings


def add_command(commands: argparse._SubParsersAction[Any]) -> None:
    """``replay`` (``export --to`` is :mod:`.export`'s, ``spool drain`` :mod:`.spool`'s)."""
    replay = commands.add_parser(
        "replay",
        help="send the events of a dead-letter file again",
        description="Sends every event of a dead-letter file to DEST, through the same "
        "queue, batching and retries as export --to.",
        epilog=exit_statuses(
            (EXIT_OK, "all delivered"),
            (EXIT_USAGE, "usage error, unreadable file, or a line that is not a dead letter"),
            (EXIT_LOSS, "some events dead-lettered again or dropped"),
        ),
    )
    replay.add_argument("dead_letter_file", metavar="DEADLETTER")
    add_delivery_options(replay, required=True)
    replay.set_defaults(run=replay_command)


def ship_command(args: argparse.Namespace) -> int:
    """``export --to DEST``."""
    if args.output is not None:
        return usage_error("--output and --to exclude each other: events go to DEST")
    destination: Destination = args.to  # parsed, its place checked (DestinationText)
    if destination.kind == "file":
        for path in args.files:
            if same_file(path, destination.target):
                return usage_error(
                    f"--to file:{destination.target} is also an input file ({path}): every "
                    "event would be read again as it is written, forever"
                )
    with contextlib.ExitStack() as stack:
        try:
            spec, event_filter = format_and_filter(args)
            settings = _settings(args)
            sources = open_sources(args.files, stack)
            driver = _open_driver(args, destination, spec.format)
            dead_letters = _dead_letters(args)
        except (UsageError, ValueError) as exc:  # drivers refuse bad settings with ValueError
            return usage_error(str(exc))
        if destination.is_log and args.truncate is None:
            spec = dataclasses.replace(spec, truncate=LOG_TRUNCATE_BYTES)  # as Dovecot's log
        format_line = make_formatter(spec, newline=True)
        matches = None if event_filter.match_all else event_filter.matches

        exporter = Exporter("export", driver, settings, dead_letters)
        feed = LineFeed(Pipeline.one_route(exporter, format_line, matches), sys.stderr)

        async def producer() -> None:
            await feed_streams(feed, sources)

        _run(args, exporter, producer)
    return _report(args, exporter, feed.counts.read, feed.counts.rejected_lines)


def replay_command(args: argparse.Namespace) -> int:
    """``replay DEADLETTER --to DEST``."""
    if same_file(args.dead_letter, args.dead_letter_file):
        return usage_error("--dead-letter must differ from the file being replayed")
    destination: Destination = args.to
    try:
        settings = _settings(args)
        events = [event for _, event in read_dead_letters(args.dead_letter_file)]
        # dead letters keep the encoded event: json starts with "{", tab-text never does
        kind = "json" if not events or events[0].startswith(b"{") else "tab-text"
        driver = _open_driver(args, destination, kind)
        dead_letters = _dead_letters(args)
    except (UsageError, EventParseError, ValueError) as exc:
        return usage_error(str(exc))
    except OSError as exc:
        return usage_error(f"cannot read {args.dead_letter_file}: {exc.strerror}")

    exporter = Exporter("replay", driver, settings, dead_letters)

    async def producer() -> None:
        """Already encoded events (without newline): each goes to the queue as it is."""
        for event in events:
            line = event + b"\n"
            if not exporter.offer(line):
                await exporter.put(line)

    _run(args, exporter, producer)
    return _report(args, exporter, len(events), rejected=0)


def drain_spool(args: argparse.Namespace) -> int:
    """``spool drain PATH --to DEST``: deliver what a spool holds, without sources."""
    if not os.path.exists(args.spool):
        return usage_error(f"no spool at {args.spool}")
    destination: Destination = args.to
    try:
        settings = dataclasses.replace(_settings(args), spool=args.spool)
        driver = _open_driver(args, destination, "json")
        exporter = Exporter("spool", driver, settings, _dead_letters(args))
    except (UsageError, ValueError) as exc:
        return usage_error(str(exc))
    held = len(exporter.queue)

    async def producer() -> None:
        return None  # the spool is the input

    _run(args, exporter, producer)
    return _report(args, exporter, held, rejected=0)


def _dead_letters(args: argparse.Namespace) -> DeadLetterFile:
    """``--dead-letter PATH`` with its bound; UsageError for a path that is not a file."""
    values = option_values(args, SHIPPING)
    return DeadLetterFile(values["dead_letter"], max_bytes=values["dead_letter_max_bytes"])


def _open_driver(args: argparse.Namespace, destination: Destination, event_format: str) -> Driver:
    settings: DriverSettings = None
    if destination.kind == "file":
        settings = file_settings(option_values(args, FILE))
    elif destination.is_http:
        settings = http_options(args, destination.target, event_format)
    elif destination.is_nats:
        settings = nats_settings(
            option_values(args, NATS),
            destination.target,
            "export",
            "json" if event_format == "json" else "tab-text",
        )
    return destination.open(settings)


def http_options(args: argparse.Namespace, url: str, event_format: str) -> HttpSettings:
    """The driver settings the ``--http-*`` options ask for (UsageError when they do not
    fit); what they allow that is probably not meant is a warning on stderr, as ``check``
    and ``run`` say it for a configuration."""
    values = option_values(args, HTTP)
    if values["signing"] != "none" and values["signing_key"] is None:
        signing, key = named(HTTP, "signing"), named(HTTP, "signing_key")
        raise UsageError(f"{signing.flag} {values['signing']} needs {key.flags[0]} or -file")
    event_format = "json" if event_format == "json" else "tab-text"
    kind = KINDS.get(values["body"])
    options = None
    if kind is not None and kind.table is not None:
        options = body_options(kind.name, option_values(args, BODY_TABLES[kind.table]))
    settings = http_settings(values, url, event_format, options=options)
    assert settings is not None  # made directly: a UsageError says what does not fit
    for setting, why in settings.warnings():
        say(f"warning: {named(HTTP, setting).flag}: {why}")
    return settings


def _run(args: argparse.Namespace, exporter: Exporter, producer: Producer) -> None:
    tune_malloc()

    async def main() -> None:
        try:
            await ship(producer, [exporter], shutdown_timeout=args.shutdown_timeout)
        finally:
            await exporter.close_driver()

    anyio.run(main)
    ignore_late_signals()


def _report(args: argparse.Namespace, exporter: Exporter, read: int, rejected: int) -> int:
    """The one summary line; the exit status (input lines ``rejected`` of ``read``)."""
    stats = exporter.stats
    line = f"{exporter.driver.name}: {stats.summary()}"
    if rejected:
        line += f"; {rejected} of {read} input lines rejected"
    if stats.dead_lettered:
        line += f"; dead letters in {args.dead_letter}"
    say(line)
    if stats.dead_lettered or sum(stats.dropped.values()):
        return EXIT_LOSS
    return EXIT_REJECTED if rejected else EXIT_OK

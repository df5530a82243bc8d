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
from collections.abc import Callable
from typing import Any, TypeVar

import anyio

from drivers.base import Driver
from exporter.cli.common import (
    EXIT_LOSS,
    EXIT_OK,
    EXIT_REJECTED,
    format_and_filter,
    open_sources,
    same_file,
    usage_error,
)
from exporter.cli.http_options import add_http_options, http_settings
from exporter.cli.malloc import tune_malloc
from exporter.config import DEFAULT_DEAD_LETTER
from exporter.delivery.deadletter import DEFAULT_MAX_BYTES, DeadLetterFile, read_dead_letters
from exporter.delivery.destinations import SCHEMES, Destination, parse_destination
from exporter.delivery.exporter import DeliverySettings, Exporter
from exporter.delivery.lifecycle import (
    Producer,
    ignore_late_signals,
    produce_encoded,
    produce_lines,
    ship,
)
from exporter.delivery.queue import OVERFLOW_CHOICES
from exporter.delivery.retry import RetryPolicy
from exporter.errors import EventParseError, UsageError
from exporter.formats import make_formatter
from exporter.formats.spec import LOG_TRUNCATE_BYTES
from exporter.sources.lines import ExportCounts

_defaults = DeliverySettings()
_retry_defaults = RetryPolicy()
T = TypeVar("T", int, float)


def _number(kind: Callable[[str], T], minimum: T, what: str) -> Callable[[str], T]:
    def parse(text: str) -> T:
        try:
            value = kind(text)
        except ValueError:
            raise argparse.ArgumentTypeError(f"{text!r} is not {what}") from None
        if value < minimum:
            raise argparse.ArgumentTypeError(f"{text!r} must be at least {minimum}")
        return value

    return parse


_count = _number(int, 1, "a whole number")
_seconds = _number(float, 0.0, "a number of seconds")


def _file_mode(text: str) -> int:
    try:
        mode = int(text, 8)
    except ValueError:
        raise argparse.ArgumentTypeError(f"{text!r} is not an octal mode like 0600") from None
    if not 0 <= mode <= 0o777:
        raise argparse.ArgumentTypeError(f"{text!r} is not a file mode (0000 to 0777)")
    return mode


def add_delivery_options(parser: argparse.ArgumentParser, *, required: bool) -> None:
    group = parser.add_argument_group("delivery (export --to, replay)")
    group.add_argument(
        "--to",
        metavar="DEST",
        required=required,
        help=f"ship through the delivery engine to DEST: {', '.join(SCHEMES)}",
    )
    group.add_argument("--batch-max-events", type=_count, default=_defaults.batch_max_events)
    group.add_argument(
        "--batch-max-bytes", type=_count, default=_defaults.batch_max_bytes, metavar="BYTES"
    )
    group.add_argument(
        "--batch-max-age", type=_seconds, default=_defaults.batch_max_age, metavar="SECONDS"
    )
    group.add_argument("--queue-max-events", type=_count, default=_defaults.queue_max_events)
    group.add_argument(
        "--queue-max-bytes", type=_count, default=_defaults.queue_max_bytes, metavar="BYTES"
    )
    group.add_argument(
        "--overflow",
        choices=OVERFLOW_CHOICES,
        default=_defaults.overflow.value,
        help="when the queue is full: wait (block), or drop and count; default: block",
    )
    group.add_argument(
        "--retry-max-attempts", type=_count, default=None, help="default: until delivered"
    )
    group.add_argument(
        "--retry-max-elapsed",
        type=_seconds,
        default=None,
        metavar="SECONDS",
        help="stop retrying a batch after this long; default: no limit",
    )
    group.add_argument(
        "--retry-after-max",
        type=_seconds,
        default=_retry_defaults.max_retry_after,
        metavar="SECONDS",
        help="the longest pause a destination's Retry-After may ask for",
    )
    group.add_argument(
        "--retry-initial-delay",
        type=_seconds,
        default=_retry_defaults.initial_delay,
        metavar="SECONDS",
    )
    group.add_argument(
        "--retry-max-delay",
        type=_seconds,
        default=_retry_defaults.max_delay,
        metavar="SECONDS",
    )
    group.add_argument(
        "--dead-letter",
        metavar="PATH",
        default=DEFAULT_DEAD_LETTER,
        help=f"where undeliverable events go; default: ./{DEFAULT_DEAD_LETTER}",
    )
    group.add_argument(
        "--dead-letter-max-bytes",
        type=_count,
        default=DEFAULT_MAX_BYTES,
        metavar="BYTES",
        help="past this size of the dead-letter file, undeliverable events are dropped "
        f"(counted, with a warning); default {DEFAULT_MAX_BYTES} (1 GiB)",
    )
    group.add_argument(
        "--shutdown-timeout",
        type=_seconds,
        default=10.0,
        metavar="SECONDS",
        help="after SIGTERM/SIGINT, keep delivering this long, then dead-letter the rest",
    )
    group.add_argument(
        "--file-mode",
        type=_file_mode,
        default=0o600,
        metavar="OCTAL",
        help="mode of a file the file: destination creates; default 0600",
    )
    group.add_argument(
        "--fsync",
        choices=("none", "batch", "interval"),
        default="none",
        help="file: destination: fsync never, after every batch, or every second",
    )
    add_http_options(parser)


def _settings(args: argparse.Namespace) -> DeliverySettings:
    retry = RetryPolicy(
        initial_delay=args.retry_initial_delay,
        max_delay=max(args.retry_max_delay, args.retry_initial_delay),
        max_attempts=args.retry_max_attempts,
        max_elapsed=args.retry_max_elapsed,
        max_retry_after=args.retry_after_max,
    )
    return DeliverySettings(
        queue_max_events=args.queue_max_events,
        queue_max_bytes=args.queue_max_bytes,
        overflow=args.overflow,
        # one event per request: one event per batch, so retries and dead letters are per event
        batch_max_events=1 if args.http_body == "single" else args.batch_max_events,
        batch_max_bytes=args.batch_max_bytes,
        batch_max_age=args.batch_max_age,
        retry=retry,
    )


def add_command(commands: argparse._SubParsersAction[Any]) -> None:
    """``replay`` (``export --to`` is :mod:`.export`'s, ``spool drain`` :mod:`.spool`'s)."""
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
    replay.set_defaults(run=replay_command)


def ship_command(args: argparse.Namespace) -> int:
    """``export --to DEST``."""
    if args.output is not None:
        return usage_error("--output and --to exclude each other: events go to DEST")
    counts = ExportCounts()
    with contextlib.ExitStack() as stack:
        try:
            spec, event_filter = format_and_filter(args)
            destination = parse_destination(args.to)
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

        async def producer() -> None:
            await produce_lines(sources, exporter, format_line, matches, sys.stderr, counts)

        _run(args, exporter, producer)
    return _report(args, exporter, counts)


def replay_command(args: argparse.Namespace) -> int:
    """``replay DEADLETTER --to DEST``."""
    if same_file(args.dead_letter, args.dead_letter_file):
        return usage_error("--dead-letter must differ from the file being replayed")
    try:
        destination = parse_destination(args.to)
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
        await produce_encoded(events, exporter)

    _run(args, exporter, producer)
    return _report(args, exporter, ExportCounts(read=len(events), exported=len(events)))


def drain_spool(args: argparse.Namespace) -> int:
    """``spool drain PATH --to DEST``: deliver what a spool holds, without sources."""
    if not os.path.exists(args.spool):
        return usage_error(f"no spool at {args.spool}")
    try:
        destination = parse_destination(args.to)
        settings = dataclasses.replace(_settings(args), spool=args.spool)
        driver = _open_driver(args, destination, "json")
        exporter = Exporter("spool", driver, settings, _dead_letters(args))
    except (UsageError, ValueError) as exc:
        return usage_error(str(exc))
    held = len(exporter.queue)

    async def producer() -> None:
        return None  # the spool is the input

    _run(args, exporter, producer)
    return _report(args, exporter, ExportCounts(read=held, exported=held))


def _dead_letters(args: argparse.Namespace) -> DeadLetterFile:
    """``--dead-letter PATH`` with its bound; UsageError for a path that is not a file."""
    return DeadLetterFile(args.dead_letter, max_bytes=args.dead_letter_max_bytes)


def _open_driver(args: argparse.Namespace, destination: Destination, event_format: str) -> Driver:
    http = None
    if destination.is_http:
        http = http_settings(
            args, destination.target, "json" if event_format == "json" else "tab-text"
        )
    return destination.open(file_mode=args.file_mode, fsync=args.fsync, http=http)


def _run(args: argparse.Namespace, exporter: Exporter, producer: Producer) -> None:
    tune_malloc()

    async def main() -> None:
        try:
            await ship(producer, [exporter], shutdown_timeout=args.shutdown_timeout)
        finally:
            await exporter.close_driver()

    anyio.run(main)
    ignore_late_signals()


def _report(args: argparse.Namespace, exporter: Exporter, counts: ExportCounts) -> int:
    stats = exporter.stats
    line = f"event-exporter: {exporter.driver.name}: {stats.summary()}"
    if counts.rejected:
        line += f"; {counts.rejected} of {counts.read} input lines rejected"
    if stats.dead_lettered:
        line += f"; dead letters in {args.dead_letter}"
    sys.stderr.write(line + "\n")
    if stats.dead_lettered or sum(stats.dropped.values()):
        return EXIT_LOSS
    return EXIT_REJECTED if counts.rejected else EXIT_OK

"""``event-exporter generate``: realistic synthetic events from the catalog, for demos,
load tests and benchmarks (reproducible with ``--seed``)."""

from __future__ import annotations

import argparse
import sys
import time
from typing import Any

from exporter.catalog.generate import generate
from exporter.catalog.model import SOURCES
from exporter.cli.common import EXIT_OK, EXIT_USAGE, exit_statuses, usage_error
from exporter.formats import FormatSpec, make_formatter
from exporter.formats.spec import FORMATS
from exporter.formats.timefmt import PRECISIONS, TIME_FORMATS


def add_command(commands: argparse._SubParsersAction[Any]) -> None:
    gen = commands.add_parser(
        "generate",
        help="write realistic synthetic events drawn from the catalog",
        description="Writes COUNT events, one per line, drawn from the documented events "
        "(matching --events), with plausible values; the same --seed gives the same events.",
        epilog=exit_statuses(
            (EXIT_OK, "written (or stdout closed early: a reader took what it wanted)"),
            (EXIT_USAGE, "usage error, or no documented event matches --events"),
        ),
    )
    gen.add_argument("--source", choices=SOURCES, default="dovecot")
    gen.add_argument("--events", metavar="PATTERN", default=None, help="catalog name pattern")
    gen.add_argument("--count", type=int, default=1000)
    gen.add_argument("--rate", type=float, default=0.0, help="events per second; 0: at once")
    gen.add_argument("--seed", type=int, default=0)
    gen.add_argument("--format", choices=FORMATS, default="json")
    gen.add_argument("--time-format", choices=TIME_FORMATS, default="rfc3339")
    gen.add_argument("--time-precision", choices=PRECISIONS, default="us")
    gen.set_defaults(run=generate_command)


def generate_command(args: argparse.Namespace) -> int:
    if args.count < 0 or args.rate < 0:
        return usage_error("--count and --rate must not be negative")
    fmt = make_formatter(
        FormatSpec(
            format=args.format, time_format=args.time_format, time_precision=args.time_precision
        ),
        newline=True,
    )
    try:
        events = generate(source=args.source, events=args.events, count=args.count, seed=args.seed)
    except ValueError as exc:  # no event matches, ...
        return usage_error(str(exc))
    try:
        out = sys.stdout.buffer
        started = time.monotonic()
        buffer = bytearray()
        for index, event in enumerate(events, 1):
            buffer += fmt(event)
            if args.rate > 0:  # pace: write each event when its time has come
                out.write(buffer)
                out.flush()
                buffer.clear()
                delay = started + index / args.rate - time.monotonic()
                if delay > 0:
                    time.sleep(delay)
            elif len(buffer) >= 1 << 16:
                out.write(buffer)
                buffer.clear()
        out.write(buffer)
        out.flush()
    except BrokenPipeError:
        return EXIT_OK
    return EXIT_OK

"""``event-exporter spool stats|export|drain PATH``: look into an exporter's disk spool,
dump it, or deliver it without sources.

``stats`` and ``export`` open the spool read-only (a running daemon may hold it), once its
files are known to be ours (:func:`~exporter.delivery.spool.claim_spool_files`: SQLite would
follow a symlinked -shm and write to it even so); ``export --output FILE`` writes a
regular file (created 0600; a symlink, FIFO or device there is refused), ``-`` or
``/dev/stdout`` (the default) is stdout;
``drain`` takes it over like an exporter would (stop the daemon first), sends everything
it holds to ``--to DEST`` with the delivery options of ``export --to``, and deletes each
batch once delivered or dead-lettered.
"""

from __future__ import annotations

import argparse
import sqlite3
import sys
import urllib.parse
from typing import Any

from exporter.cli.common import (
    EXIT_BROKEN_PIPE,
    EXIT_LOSS,
    EXIT_OK,
    EXIT_USAGE,
    escaped,
    exit_statuses,
    stdout_closed,
    usage_error,
    write_stdout,
)
from exporter.cli.ship import add_delivery_options, drain_spool
from exporter.delivery.spool import SpoolLock, claim_spool_files, spooled_events
from exporter.errors import UsageError
from exporter.files import means_stdout, open_output


def add_command(commands: argparse._SubParsersAction[Any]) -> None:
    spool: argparse.ArgumentParser = commands.add_parser(
        "spool",
        help="inspect, dump or deliver an exporter's disk spool",
        description="stats: what a spool holds; export: its events as NDJSON on stdout "
        "(or --output), oldest first; drain: deliver them to --to DEST, then exit.",
        epilog=exit_statuses(
            (EXIT_OK, "done"),
            (EXIT_USAGE, "usage error, unreadable spool, or a spool another process holds"),
            (EXIT_LOSS, "drain: some events dead-lettered or dropped"),
            (EXIT_BROKEN_PIPE, "stats, export: stdout closed early (| head)"),
        ),
    )
    spool.add_argument("action", choices=("stats", "export", "drain"))
    spool.add_argument("spool", metavar="PATH")
    spool.add_argument(
        "--output",
        metavar="FILE",
        default=None,
        help="export: a regular file (created 0600), or - / /dev/stdout (the default)",
    )
    add_delivery_options(spool, required=False)
    spool.set_defaults(run=spool_command)


def spool_command(args: argparse.Namespace) -> int:
    if args.action == "drain":
        if args.to is None:
            return usage_error("spool drain needs --to DEST")
        return drain_spool(args)
    try:
        claim_spool_files(args.spool, create=False)
    except UsageError as exc:
        return usage_error(f"cannot read {exc}")
    if args.action == "export":  # its rows would change under it: one owner at a time
        try:
            lock = SpoolLock(args.spool)
        except UsageError as exc:
            return usage_error(str(exc))
        try:
            return _read(args)
        finally:
            lock.release()
    return _read(args)


def _read(args: argparse.Namespace) -> int:
    """``stats`` (beside a running daemon too: it only reads) or ``export``."""
    try:
        uri = f"file:{urllib.parse.quote(args.spool)}?mode=ro"  # a ? or # is part of the name
        db = sqlite3.connect(uri, uri=True)
        try:
            if args.action == "stats":
                return _stats(db, args.spool)
            return _export(db, args.output)
        finally:
            db.close()
    except sqlite3.Error as exc:
        return usage_error(f"cannot read spool {args.spool}: {exc}")
    except BrokenPipeError:
        return stdout_closed()
    except OSError as exc:
        return usage_error(f"cannot write {args.output}: {exc.strerror or exc}")


def _stats(db: sqlite3.Connection, path: str) -> int:
    events, size, chunks = db.execute(
        "SELECT coalesce(sum(count), 0), coalesce(sum(length(data)), 0), count(*) FROM chunks"
    ).fetchone()
    write_stdout(f"{escaped(path)}: {events} events, {size} bytes, in {chunks} chunks\n")
    return EXIT_OK


def _export(db: sqlite3.Connection, output: str | None) -> int:
    to_stdout = means_stdout(output)
    out = sys.stdout.buffer if to_stdout else open(open_output(str(output)), "wb")  # noqa: SIM115
    try:
        for event in spooled_events(db):
            out.write(event)
        out.flush()
    finally:
        if not to_stdout:
            out.close()
    return EXIT_OK

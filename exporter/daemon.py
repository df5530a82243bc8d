"""``event-exporter run CONFIG``: the sources of a configuration feeding its metrics and
exporters until SIGTERM/SIGINT (or until every source has ended, e.g. stdin at its end).

Shutdown is the engine's: input stops, every exporter drains until the configured
deadline, what is left is dead-lettered, and a summary goes to stderr. SIGHUP makes every
destination let go of its file or connection. Exit 0 when nothing was lost, 3 when some
events were dead-lettered or dropped, 2 for a configuration that does not check.
"""

from __future__ import annotations

import argparse
import sys
from typing import Any

import anyio

from exporter.cli_common import EXIT_LOSS, EXIT_OK, EXIT_USAGE
from exporter.config import Config, ConfigError, SourceConfig, load_config
from exporter.errors import EventExporterError, UsageError
from exporter.formats.reader import read_event
from exporter.memory import tune_malloc
from exporter.pipeline import Pipeline
from exporter.shipping import ignore_late_signals, read_lines, ship
from exporter.sources.http import HttpSource


def add_run_command(commands: argparse._SubParsersAction[Any]) -> None:
    run = commands.add_parser(
        "run",
        help="run the sources, metrics and exporters of a configuration file",
        description="Receives events from the configured sources and ships them through "
        "the configured metrics and exporters until SIGTERM or SIGINT.",
        epilog="exit status: 0 nothing lost; 2 the configuration does not check; "
        "3 some events were dead-lettered or dropped",
    )
    run.add_argument("config", metavar="CONFIG")


def run_command(args: argparse.Namespace) -> int:
    try:
        config = load_config(args.config)
        if not config.sources:
            raise UsageError(f"{args.config}: no [source.NAME] block: no event would come in")
    except ConfigError as exc:
        sys.stderr.write(f"event-exporter: problems in {exc.source}:\n{exc}\n")
        return EXIT_USAGE
    except UsageError as exc:
        sys.stderr.write(f"event-exporter: {exc}\n")
        return EXIT_USAGE
    pipeline = Pipeline.from_config(config)
    tune_malloc()
    try:
        anyio.run(_main, config, pipeline)
    except OSError as exc:  # a listener that cannot bind
        sys.stderr.write(f"event-exporter: cannot start: {exc.strerror or exc}\n")
        return EXIT_USAGE
    ignore_late_signals()
    sys.stderr.write(f"event-exporter: {pipeline.summary()}\n")
    return EXIT_LOSS if pipeline.lost else EXIT_OK


async def _main(config: Config, pipeline: Pipeline) -> None:
    async def sources() -> None:
        async with anyio.create_task_group() as tasks:
            for source in config.sources.values():
                await tasks.start(_run_source, source, pipeline)

    try:
        await ship(
            sources,
            list(pipeline.exporters.values()),
            shutdown_timeout=config.settings.shutdown_timeout,
        )
    finally:
        await pipeline.close_drivers()


async def _run_source(
    source: SourceConfig, pipeline: Pipeline, *, task_status: anyio.abc.TaskStatus[None]
) -> None:
    if source.type == "http":
        assert source.http is not None
        server = HttpSource(source.http, pipeline.emit)
        async with anyio.create_task_group() as tasks:
            await tasks.start(server.serve)
            sys.stderr.write(
                f"event-exporter: source {source.name}: listening on "
                f"http://{source.http.host}:{server.port} (POST /dovecot, /events, /stalwart)\n"
            )
            task_status.started()
        return
    task_status.started()
    await read_stdin(pipeline, source.name)


async def read_stdin(pipeline: Pipeline, label: str) -> None:
    """Dovecot json or tab-text lines from stdin until its end; a bad line is reported
    with its number and skipped."""
    number = 0
    async for lines in read_lines(sys.stdin.fileno()):
        for line in lines:
            number += 1
            if not line:
                continue
            try:
                event = read_event(line)
            except EventExporterError as exc:
                sys.stderr.write(f"event-exporter: source {label}: line {number}: {exc}\n")
                continue
            await pipeline.emit(event)

"""``event-exporter run CONFIG``: the sources of a configuration feeding its metrics and
exporters until SIGTERM/SIGINT (or until every source has ended, e.g. stdin at its end).

Shutdown is the engine's: input stops, every exporter drains until the configured
deadline, what is left is dead-lettered, and a summary goes to stderr. SIGHUP makes every
destination let go of its file or connection. A source stopped by an error once it runs
(a bug, a file that can no longer be read) is a shutdown too: it is logged with the
source's name, the other sources stop, and what the queues hold is delivered or
dead-lettered the same way. Exit 0 when nothing was lost, 3 when some events were
dead-lettered or dropped, 1 when a source stopped by an error and nothing was lost, 2
for a configuration that does not check.
"""

from __future__ import annotations

import argparse
import os
import sys
import traceback
from typing import Any, Final

import anyio

from exporter.cli.common import EXIT_LOSS, EXIT_OK, EXIT_USAGE
from exporter.cli.malloc import tune_malloc
from exporter.config import Config, ConfigError, SourceConfig, load_config
from exporter.delivery.exporter import Exporter
from exporter.delivery.lifecycle import ignore_early_signals, ignore_late_signals, ship
from exporter.errors import UsageError
from exporter.observe.endpoint import serve_metrics
from exporter.observe.log import Log
from exporter.observe.text import printable
from exporter.routing import Pipeline
from exporter.sources import Source, make_source

EXIT_SOURCE_FAILED: Final = 1
"""A source stopped by an error; everything accepted was delivered."""


def add_command(commands: argparse._SubParsersAction[Any]) -> None:
    run = commands.add_parser(
        "run",
        help="run the sources, metrics and exporters of a configuration file",
        description="Receives events from the configured sources and ships them through "
        "the configured metrics and exporters until SIGTERM or SIGINT.",
        epilog="exit status: 0 nothing lost; 1 a source stopped by an error (input "
        "stopped, what was accepted delivered); 2 the configuration does not check or a "
        "source cannot start; 3 some events were dead-lettered or dropped",
    )
    run.add_argument("config", metavar="CONFIG")
    run.set_defaults(run=run_command)


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
    log = Log(level=config.settings.log_level)
    for warning in config.warnings():  # as `check` shows them: a filter that matches nothing
        log.warning(warning)
    try:
        _check_dead_letter_path(config.settings.dead_letter)
        pipeline = Pipeline.from_config(config)
    except UsageError as exc:
        sys.stderr.write(f"event-exporter: {exc}\n")
        return EXIT_USAGE
    ignore_early_signals()
    for exporter in pipeline.exporters.values():
        exporter.log = log  # bound with exporter=NAME destination=DRIVER
    pipeline.warn = log.warning
    tune_malloc()
    started: list[bool] = []
    failures = _SourceFailures(log)
    try:
        try:
            anyio.run(_main, config, pipeline, log, started, failures)
        finally:
            log.close()  # what the daemon said comes before its summary
    except (OSError, BaseExceptionGroup) as exc:  # a source that cannot listen or read
        failure = _os_error(exc)
        if failure is None:
            raise
        reason = failure.strerror or failure
        if not started:
            sys.stderr.write(f"event-exporter: cannot start: {reason}\n")
            return EXIT_USAGE
        ignore_late_signals()
        sys.stderr.write(f"event-exporter: stopped by an error: {reason}\n")
        sys.stderr.write(f"event-exporter: {pipeline.summary()}\n")
        return EXIT_LOSS
    ignore_late_signals()
    sys.stderr.write(f"event-exporter: {pipeline.summary()}\n")
    if pipeline.lost:
        return EXIT_LOSS
    return EXIT_SOURCE_FAILED if failures.sources else EXIT_OK


def _check_dead_letter_path(path: str) -> None:
    """Fail at start, not when the first batch is given up, if the file cannot be made."""
    folder = os.path.dirname(os.path.abspath(path))
    if not os.path.isdir(folder) or not os.access(folder, os.W_OK | os.X_OK):
        raise UsageError(f"dead-letter file {path}: {folder} is not a writable directory")
    if os.path.exists(path) and not os.access(path, os.W_OK):
        raise UsageError(f"dead-letter file {path} is not writable")


def _os_error(exc: BaseException) -> OSError | None:
    """The OSError that stopped start-up, found inside the task groups' exception groups."""
    if isinstance(exc, OSError):
        return exc
    if isinstance(exc, BaseExceptionGroup):
        for inner in exc.exceptions:
            found = _os_error(inner)
            if found is not None:
                return found
    return None


class _SourceFailures:
    """Sources stopped by an error once they ran. The first one sets ``stop``: a shutdown
    as at SIGTERM (the other sources stop, the exporters drain until the deadline)."""

    def __init__(self, log: Log) -> None:
        self.sources: list[str] = []
        self.stop = anyio.Event()
        self._log = log

    def report(self, name: str, group: BaseExceptionGroup[Exception]) -> None:
        self.sources.append(name)
        for exc in _leaves(group):
            if isinstance(exc, OSError):
                what = f"an error: {exc.strerror or exc}"
            else:
                frames = "".join(traceback.format_tb(exc.__traceback__))
                what = f"an internal error (a bug):\n{frames}{printable(repr(exc), 500)}"
            self._log.error(f"stopped by {what}", source=name)
        self._log.error(
            "this source stopped: stopping input and delivering what the queues hold "
            "(as at SIGTERM)",
            source=name,
        )
        self.stop.set()


def _leaves(group: BaseExceptionGroup[Exception]) -> list[Exception]:
    found: list[Exception] = []
    for exc in group.exceptions:
        found.extend(_leaves(exc) if isinstance(exc, BaseExceptionGroup) else [exc])
    return found


async def _main(
    config: Config,
    pipeline: Pipeline[Exporter],
    log: Log,
    started: list[bool],
    failures: _SourceFailures,
) -> None:
    """``started`` gets an entry once every source runs: a failure after that is not one
    of starting."""
    running: dict[str, Source] = {}  # the sources, for the metrics endpoint

    async def sources() -> None:
        async with anyio.create_task_group() as tasks:
            for source in config.sources.values():
                await tasks.start(_run_source, source, pipeline, log, running, failures)
            started.append(True)

    try:
        async with anyio.create_task_group() as reporting:
            if config.settings.metrics_listen is not None:
                await reporting.start(serve_metrics, config.settings, pipeline, running, log)
            if config.settings.summary_interval > 0:
                reporting.start_soon(_summaries, config.settings.summary_interval, pipeline, log)
            await ship(
                sources,
                list(pipeline.exporters.values()),
                shutdown_timeout=config.settings.shutdown_timeout,
                stop=failures.stop,
            )
            reporting.cancel_scope.cancel()
    finally:
        await pipeline.close_drivers()


async def _summaries(interval: float, pipeline: Pipeline[Exporter], log: Log) -> None:
    while True:
        await anyio.sleep(interval)
        log.info(pipeline.summary())


async def _run_source(
    block: SourceConfig,
    pipeline: Pipeline[Exporter],
    log: Log,
    running: dict[str, Source],
    failures: _SourceFailures,
    *,
    task_status: anyio.abc.TaskStatus[None],
) -> None:
    """Make and run one source. An error before it runs is one of starting (raised);
    after, it is reported and stops the daemon gracefully, so what the queues hold is not
    lost."""
    running_now = False
    try:
        source = make_source(block, pipeline, sys.stderr, log.warning)
        running[block.name] = source
        async with anyio.create_task_group() as tasks:
            await tasks.start(source.serve)
            announced = source.announce()
            if announced is not None:
                log.info(f"source {block.name}: {announced}")
            running_now = True
            task_status.started()
    except* Exception as group:
        if not running_now:
            raise
        failures.report(block.name, group)

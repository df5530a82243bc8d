"""``event-exporter run CONFIG``: the sources of a configuration feeding its metrics and
exporters until SIGTERM/SIGINT (or until every source has ended, e.g. stdin at its end).

Everything it says goes through its log (:mod:`exporter.observe.log`: a time, a level and
the context of each line, ``text`` or ``json``): at start, what listens where and which
exporter goes where (secrets masked), the configuration's warnings; SIGHUP's reload
(:mod:`.reload`) and reopening; at shutdown, how long the exporters may drain; periodic
summaries and the last one. systemd is told READY=1 once every source listens and
STOPPING=1 when input stops (:mod:`exporter.observe.systemd`).

Shutdown is the engine's: input stops, every exporter drains until the configured
deadline, what is left is dead-lettered. A source stopped by an error once it runs (a
bug, a file that can no longer be read) is a shutdown too: it is logged with the
source's name, the other sources stop, and what the queues hold is delivered or
dead-lettered the same way. Exit 0 when nothing was lost, 3 when some events were
dead-lettered or dropped, 1 when a source stopped by an error or a stdin source rejected
lines (and nothing was lost), 2 for a configuration that does not check or a source that
cannot start.
"""

from __future__ import annotations

import argparse
import os
import traceback
from typing import Any, Final, TypeVar

import anyio
import anyio.abc

from exporter import __version__
from exporter.cli.common import EXIT_LOSS, EXIT_OK, EXIT_USAGE, exit_statuses
from exporter.cli.malloc import tune_malloc
from exporter.cli.reload import Running, reload, retargetable
from exporter.config import Config, ConfigError, SourceConfig, load_config
from exporter.config.settings import (
    EXPORTER,
    GLOBAL,
    HTTP,
    add_options,
    body_table_of,
    exporter_owners,
    named,
)
from exporter.config.settings import shown_settings as shown
from exporter.delivery.lifecycle import Fleet, ignore_early_signals, ignore_late_signals, ship
from exporter.errors import UsageError
from exporter.observe import systemd
from exporter.observe.endpoint import serve_metrics
from exporter.observe.health import Readiness
from exporter.observe.log import Log
from exporter.observe.text import printable
from exporter.routing import Pipeline
from exporter.sources import Source, make_source
from exporter.sources.reports import LogReports

EXIT_SOURCE_FAILED: Final = 1
"""A source stopped by an error, or stdin had lines that are not events; everything
accepted was delivered."""
LOG_FORMAT = named(GLOBAL, "log_format")


def add_command(commands: argparse._SubParsersAction[Any]) -> None:
    run = commands.add_parser(
        "run",
        help="run the sources, metrics and exporters of a configuration file",
        description="Receives events from the configured sources and ships them through "
        "the configured metrics and exporters until SIGTERM or SIGINT; SIGHUP reloads the "
        "configuration and reopens the destinations.",
        epilog=exit_statuses(
            (EXIT_OK, "nothing lost"),
            (
                EXIT_SOURCE_FAILED,
                "a source stopped by an error (input stopped, what was accepted delivered), "
                "or, ended by the end of its input, a stdin source rejected lines",
            ),
            (EXIT_USAGE, "the configuration does not check, or a source cannot start"),
            (EXIT_LOSS, "some events were dead-lettered or dropped"),
        ),
    )
    run.add_argument("config", metavar="CONFIG")
    add_options(run, [LOG_FORMAT])
    run.set_defaults(run=run_command)


def run_command(args: argparse.Namespace) -> int:
    chosen_format: str | None = getattr(args, LOG_FORMAT.dest)
    early = Log(format=chosen_format or "text")  # until the configuration says how
    config = _load(args.config, early)
    early.close()
    if config is None:
        return EXIT_USAGE
    settings = config.settings
    log = Log(level=settings.log_level, format=chosen_format or settings.log_format)
    try:
        daemon = _Daemon(args.config, config, log)
    except (UsageError, ValueError) as exc:  # a spool another process holds, ...
        log.error(f"cannot start: {exc}")
        log.close()
        return EXIT_USAGE
    return daemon.run()


def _load(path: str, log: Log) -> Config | None:
    """The configuration, or None once every problem is logged."""
    try:
        config = load_config(path)
        if not config.sources:
            raise UsageError(f"{path}: no [source.NAME] block: no event would come in")
    except ConfigError as exc:
        count = len(exc.problems)
        log.error(f"{count} problem{'s' * (count != 1)} in {exc.source}:")
        for line in str(exc).splitlines():
            log.error(line)
        return None
    except UsageError as exc:
        log.error(str(exc))
        return None
    return config


class _Daemon:
    """One run: the pipeline, the exporters ``ship`` delivers for, what ``/ready`` reads,
    and what a reload changes."""

    def __init__(self, path: str, config: Config, log: Log) -> None:
        self.path = path
        self.config = config
        self.log = log
        self.pipeline = Pipeline.from_config(config, retargetable, log)
        self.fleet = Fleet(self.pipeline.exporters.values())
        self.readiness = Readiness(
            lambda: self.pipeline.every_exporter,
            config.settings.unready_after,
            dict.fromkeys(config.sources, False),
        )
        self.sources: dict[str, Source] = {}  # running, for /metrics and the exit status
        self.failures = _SourceFailures(log)
        self.started = False
        self.interrupted = False
        """Whether a signal (or a failed source) ended it, not the end of its input."""

    def run(self) -> int:
        log, pipeline = self.log, self.pipeline
        ignore_early_signals()
        tune_malloc()
        self._say_what_runs()
        try:
            try:
                anyio.run(self._main)
            finally:
                log.close()  # what the daemon said comes before its summary
        except (OSError, BaseExceptionGroup) as exc:  # a source that cannot listen or read
            cannot = _found(exc, CannotStart)
            if cannot is not None:
                log.error(str(cannot), **cannot.context)
                return EXIT_USAGE
            failure = _found(exc, OSError)
            if failure is None:
                raise
            reason = failure.strerror or failure
            if not self.started:
                log.error(f"cannot start: {reason}")
                return EXIT_USAGE
            ignore_late_signals()
            log.error(f"stopped by an error: {reason}")
            log.write("info", pipeline.summary(), always=True)
            return EXIT_LOSS
        ignore_late_signals()
        log.write("info", pipeline.summary(), always=True)
        if pipeline.lost:
            return EXIT_LOSS
        if self.failures.sources or (not self.interrupted and self._stdin_rejected()):
            return EXIT_SOURCE_FAILED
        return EXIT_OK

    def _say_what_runs(self) -> None:
        """The start lines: the version, the configuration's warnings, each exporter's
        destination and the settings chosen for it (all of them at debug), each metric."""
        log, config = self.log, self.config
        log.info(f"event-exporter {__version__} starting (pid {os.getpid()}, config {self.path})")
        for warning in config.warnings():  # as `check` shows them, with their context
            log.warning(warning, **warning.context)
        for name, settings in config.exporters.items():
            owners = exporter_owners(settings)
            table, body = body_table_of(settings.driver_settings)
            tables = (("", EXPORTER), ("http.", HTTP), (f"{table}.", body))
            chosen = [
                prefix + part
                for prefix, block in tables
                for part in shown(block, owners, chosen_only=True)
            ]
            note = f" ({', '.join(chosen)})" if chosen else ""
            log.info(f"to {settings.where}{note}", exporter=name)
            if log.enabled("debug"):
                every = [prefix + part for prefix, block in tables for part in shown(block, owners)]
                log.debug(f"settings: {', '.join(every)}", exporter=name)
        for metric in config.metrics.values():
            log.info(metric.route, metric=metric.name)

    async def _main(self) -> None:
        settings = self.config.settings
        try:
            async with anyio.create_task_group() as reporting:
                running = Running(
                    self.path,
                    self.config,
                    self.pipeline,
                    self.fleet,
                    self.log,
                    self.readiness,
                    reporting,
                )
                if settings.metrics_listen is not None:
                    try:
                        await reporting.start(
                            serve_metrics,
                            settings,
                            self.pipeline,
                            self.sources,
                            self.log,
                            self.readiness,
                        )
                    except* OSError as group:  # raised inside the listener's task group
                        failure = _found(group, OSError)
                        assert failure is not None
                        raise CannotStart(failure, listener="metrics") from None
                reporting.start_soon(_summaries, running)
                self.interrupted = await ship(
                    self._sources,
                    self.fleet,
                    shutdown_timeout=settings.shutdown_timeout,
                    stop=self.failures.stop,
                    on_hangup=lambda: reload(running),
                    log=self.log,
                    on_stopping=lambda: self._notify(systemd.STOPPING),
                )
                reporting.cancel_scope.cancel()
        finally:
            await self.pipeline.close_drivers()

    async def _sources(self) -> None:
        async with anyio.create_task_group() as tasks:
            for source in self.config.sources.values():
                await tasks.start(self._run_source, source)
            self.started = True
            sources, exporters = len(self.sources), len(self.pipeline.exporters)
            self.log.info(
                f"ready: {sources} source{'s' * (sources != 1)} running, {exporters} "
                f"exporter{'s' * (exporters != 1)}"
            )
            self._notify(systemd.READY)

    def _notify(self, state: str) -> None:
        if systemd.notify(state):
            self.log.debug(f"told systemd {state}")

    async def _run_source(
        self, block: SourceConfig, *, task_status: anyio.abc.TaskStatus[None]
    ) -> None:
        """Make and run one source. An error before it runs is one of starting (raised);
        after, it is reported and stops the daemon gracefully, so what the queues hold is
        not lost."""
        log, pipeline = self.log, self.pipeline
        running_now = False
        try:
            source = make_source(block, pipeline, LogReports(log.bind(source=block.name)))
            self.sources[block.name] = source
            async with anyio.create_task_group() as tasks:
                await tasks.start(source.serve)
                announced = source.announce()
                if announced is not None:
                    log.info(announced, source=block.name)
                running_now = True
                self.readiness.sources[block.name] = True
                task_status.started()
        except* Exception as group:
            if not running_now:
                failure = _found(group, OSError)
                if failure is not None:  # its address in use, its file unreadable: say so
                    raise CannotStart(failure, source=block.name) from None
                raise
            self.failures.report(block.name, group)

    def _stdin_rejected(self) -> bool:
        """Whether a stdin source read lines that are not events (each was reported as
        it came): a run that ended with its input then exits 1, as ``export`` does (one
        stopped by a signal is a daemon stopped, with nothing lost: 0)."""
        found = False
        for name, block in self.config.sources.items():
            counts = getattr(self.sources.get(name), "counts", None)
            rejected = getattr(counts, "rejected_lines", 0)
            if block.type == "stdin" and rejected:
                read = getattr(counts, "read", 0)
                self.log.write(
                    "warning",
                    f"{rejected} of {read} lines rejected (each reported above): exit status 1",
                    {"source": name},
                    always=True,
                )
                found = True
        return found


async def _summaries(running: Running) -> None:
    """A summary line every ``summary_interval`` seconds (a reload may change it: from
    the next one on; 0: none)."""
    while True:
        interval = running.config.settings.summary_interval
        await anyio.sleep(interval if interval > 0 else 1.0)
        if interval > 0 and running.config.settings.summary_interval > 0:
            running.log.info(running.pipeline.summary())


class CannotStart(Exception):
    """A source or listener that could not start, with its name as the log's context:
    ``error source=web: cannot listen on 127.0.0.1:8080: address already in use``."""

    def __init__(self, failure: OSError, **context: str) -> None:
        super().__init__(failure.strerror or str(failure))
        self.context = context


_E = TypeVar("_E", bound=BaseException)


def _found(exc: BaseException, kind: type[_E]) -> _E | None:
    """The first ``kind`` in ``exc``, looked for inside the task groups' exception groups."""
    if isinstance(exc, kind):
        return exc
    if isinstance(exc, BaseExceptionGroup):
        for inner in exc.exceptions:
            found = _found(inner, kind)
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

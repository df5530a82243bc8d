"""SIGHUP: the daemon reloads its configuration, as Vector and Fluent Bit do.

The file is read again and checked in full. If it does not check, every problem is
logged, the configuration in effect stays, and so does readiness. If it checks, what
changed is applied between two events, losing no queued or in-flight event:

* metrics (filters, fields, include sets, the exporter fed) and their formats: the new
  routes take the next event (a metric kept keeps its counters);
* an exporter added starts delivering; one removed is fed no more, delivers what it holds
  to its destination, then closes (an event waiting for room in its queue is queued there
  at once, so that no source stays blocked on it);
* an exporter whose destination or driver settings changed **carries its queue over**:
  the same queue (memory or spool) and counters, a new driver. The batch being sent
  finishes its attempt on the old driver, and its next attempt, if it needs one, goes to
  the new one (:class:`Retargetable`); the old driver is closed once no attempt uses it.
  Why not drain into the old driver instead: a destination is changed because the old one
  is wrong or gone, where a drain could wait forever; a spool has one owner, so a second
  queue could not open it; and the queue's bounds would be doubled meanwhile. Queued
  events keep the bytes they were encoded with (as a spool's do across a restart): a
  change of format applies to new events. New retry settings apply to the next batch.
* what a running queue cannot change (its bounds, overflow, batch limits, spool, an http
  driver's concurrency) and what is read at start only (sources, the metrics listener,
  the dead-letter file, ``shutdown_timeout``, ``log_format``) is a warning naming the key:
  it applies at the next start. Sources are not restarted: a listener bound again would
  refuse connections meanwhile, or lose its port to another process.

Destinations are reopened at every SIGHUP, reload or not (log rotation).
"""

from __future__ import annotations

import traceback
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, replace
from typing import Any, Final

import anyio
import anyio.abc

from drivers.base import Batch, Driver, Partial
from exporter.config import Config, ConfigError, ExporterConfig, GlobalConfig, load_config
from exporter.config.settings import DELIVERY, GLOBAL, Setting
from exporter.delivery.exporter import DeliverySettings, Exporter
from exporter.delivery.health import counted
from exporter.delivery.lifecycle import Fleet
from exporter.delivery.spool import SpoolQueue
from exporter.errors import UsageError
from exporter.observe import systemd
from exporter.observe.health import Readiness
from exporter.observe.log import Log
from exporter.routing import Pipeline, make_exporter, make_routes

APPLIED_GLOBALS: Final = ("hostname", "log_level", "unready_after", "summary_interval")
"""The [global] keys a reload applies; the others are read at start only."""
QUEUE_SHAPE: Final = tuple(setting for setting in DELIVERY if setting.owner is DeliverySettings)
"""An exporter's keys its running queue was made with (its retry keys apply at once)."""


class Retargetable:
    """A driver that a reload can point elsewhere: each call goes to the current driver,
    and an old one is flushed and closed once no send uses it. Its ``concurrency`` is the
    first driver's (the exporter reads it once); anything else the exporter asks of its
    driver is the current one's."""

    def __init__(self, driver: Driver) -> None:
        self.current = driver
        self.concurrency = driver.concurrency
        self._sending: dict[int, int] = {}  # id(driver) -> sends under way
        self._idle: dict[int, anyio.Event] = {}
        self._old: list[Driver] = []

    @property
    def name(self) -> str:
        return self.current.name

    def __getattr__(self, name: str) -> Any:
        return getattr(self.current, name)

    async def send(self, batch: Batch) -> Partial | None:
        """The driver's answer passed on: a receiver's Partial is the retry loop's."""
        driver = self.current
        key = id(driver)
        self._sending[key] = self._sending.get(key, 0) + 1
        try:
            return await driver.send(batch)
        finally:
            self._sending[key] -= 1
            if not self._sending[key]:
                del self._sending[key]
                if key in self._idle:
                    self._idle.pop(key).set()

    async def flush(self) -> None:
        await self.current.flush()

    async def reopen(self) -> None:
        await self.current.reopen()

    def retarget(self, driver: Driver) -> None:
        """Send to ``driver`` from now on (then :meth:`close_old`)."""
        self._old.append(self.current)
        self.current = driver

    async def close_old(self) -> None:
        """Flush and close each driver retargeted from, once no send uses it."""
        for old in list(self._old):
            if id(old) in self._sending:
                await self._idle.setdefault(id(old), anyio.Event()).wait()
            await self._close(old)

    async def aclose(self) -> None:
        for old in list(self._old):
            await self._close(old)
        await self.current.aclose()

    async def _close(self, old: Driver) -> None:
        if old in self._old:
            self._old.remove(old)
            try:
                await old.flush()
            finally:
                await old.aclose()


def retargetable(settings: ExporterConfig) -> Driver:
    """The driver ``run`` gives each exporter: a reload can retarget it."""
    return Retargetable(settings.destination.open(settings.driver_settings))


@dataclass
class Running:
    """What a reload reads and changes, as ``run`` runs it."""

    path: str
    config: Config
    """The configuration in effect (its sources and start-only settings as started)."""
    pipeline: Pipeline[Exporter]
    fleet: Fleet
    log: Log
    readiness: Readiness
    tasks: anyio.abc.TaskGroup
    """Where an old driver waits for its last send before it is closed."""


async def reload(running: Running) -> None:
    """Re-read the configuration and apply it if it checks (see the module); reopen every
    destination either way."""
    log = running.log
    log.info(f"SIGHUP: reloading {running.path}")
    systemd.notify(f"{systemd.RELOADING}\nMONOTONIC_USEC={int(anyio.current_time() * 1e6)}")
    try:
        try:
            config = await anyio.to_thread.run_sync(load_config, running.path)
        except ConfigError as exc:
            for line in str(exc).splitlines():
                log.error(f"reload: {line}")
            count = len(exc.problems)
            log.error(
                f"reload failed ({count} problem{'s' * (count != 1)}): still running the "
                "configuration in effect"
            )
        except UsageError as exc:
            log.error(f"reload failed: {exc}; still running the configuration in effect")
        else:
            if not running.fleet.stopping:  # shutdown began while the file was read
                try:
                    _apply(running, config)
                except Exception as exc:  # a bug: said, and the daemon goes on delivering
                    frames = "".join(traceback.format_tb(exc.__traceback__))
                    log.error(f"reload failed: an internal error (a bug):\n{frames}{exc!r}")
        await _reopen(running.pipeline.every_exporter)
        log.debug(f"destinations reopened ({len(running.pipeline.every_exporter)})")
    finally:
        systemd.notify(systemd.READY)


async def _reopen(exporters: Iterable[Exporter]) -> None:
    async with anyio.create_task_group() as reopening:
        for exporter in exporters:
            reopening.start_soon(exporter.reopen)


def _apply(running: Running, new: Config) -> None:
    """Make what is new (exporters added, drivers for changed destinations), then switch
    to it without awaiting in between (no event sees half of it). What cannot be made (a
    spool another process holds, a driver refusing its settings) fails the whole reload
    before anything changed."""
    log, pipeline, old = running.log, running.pipeline, running.config
    kept = {name: e for name, e in pipeline.exporters.items() if name in new.exporters}
    added: list[Exporter] = []
    drivers: dict[str, Driver] = {}
    try:
        for name, settings in new.exporters.items():
            if name not in pipeline.exporters:
                added.append(
                    make_exporter(settings, pipeline.dead_letters, retargetable, running.log)
                )
            elif _moved(old.exporters[name], settings):
                drivers[name] = settings.destination.open(settings.driver_settings)
    except (UsageError, ValueError, OSError) as exc:
        for exporter in added:
            if isinstance(exporter.queue, SpoolQueue):
                exporter.queue.shut()  # its lock: nothing was sent, nothing is lost
        log.error(f"reload failed: {exc}; still running the configuration in effect")
        return
    for warning in new.warnings():
        log.warning(warning, **warning.context)
    changed = [
        name
        for name, exporter in kept.items()
        if _change(running, old.exporters[name], new.exporters[name], exporter, drivers.get(name))
    ]
    for exporter in added:
        running.fleet.add(exporter)
        log.info(f"added: to {new.exporters[exporter.name].where}", exporter=exporter.name)
    made = {exporter.name: exporter for exporter in added}
    exporters = {name: kept[name] if name in kept else made[name] for name in new.exporters}
    routes = make_routes(new, exporters, {route.metric: route for route in pipeline.routes})
    removed = [e for name, e in pipeline.exporters.items() if name not in new.exporters]
    pipeline.reroute(routes, exporters)
    for exporter in removed:
        pipeline.retire(exporter)
        log.info(
            f"removed: no metric feeds it; it delivers what it holds "
            f"({counted(len(exporter.queue), 'event')}), then closes",
            exporter=exporter.name,
        )
    _log_metric_changes(log, old, new)
    in_effect = _apply_globals(running, old.settings, new.settings)
    _warn_sources(log, old, new)
    running.config = replace(new, settings=in_effect, sources=old.sources)
    log.info(
        f"reload done: {len(routes)} metrics, {len(exporters)} exporters ({len(added)} "
        f"added, {len(removed)} removed, {len(changed)} changed)"
    )


def _moved(old: ExporterConfig, new: ExporterConfig) -> bool:
    """Whether an exporter needs a new driver: its destination or driver settings changed."""
    return (old.destination, old.driver_settings) != (new.destination, new.driver_settings)


def _change(
    running: Running,
    old: ExporterConfig,
    settings: ExporterConfig,
    exporter: Exporter,
    replacement: Driver | None,
) -> bool:
    """Apply to a kept ``exporter`` what changed: its new driver (``replacement``), new
    retries; warn of what applies at the next start. Whether anything changed."""
    if old == settings:
        return False
    log = running.log.bind(exporter=exporter.name)
    if replacement is not None:
        driver = exporter.driver
        assert isinstance(driver, Retargetable)  # every exporter of run has one
        driver.retarget(replacement)
        exporter.log = running.log  # bound again: its lines name the new destination
        running.tasks.start_soon(driver.close_old)
        exporter.gate.until = 0.0  # a pause the old destination asked for is not the new one's
        log.info(
            f"destination changed: {old.where} -> {settings.where}; its queue "
            f"({counted(len(exporter.queue), 'event')}) carries over, and a batch being retried "
            "goes there"
        )
        if replacement.concurrency != driver.concurrency:
            log.warning(
                f"http.concurrency changed: applies at the next start (still "
                f"{driver.concurrency} batches in flight)"
            )
    if old.delivery.retry != settings.delivery.retry:
        exporter.settings = replace(exporter.settings, retry=settings.delivery.retry)
        log.info("retry settings changed: they apply from the next batch on")
    shape = _changed(
        QUEUE_SHAPE, {DeliverySettings: old.delivery}, {DeliverySettings: settings.delivery}
    )
    for key in shape:
        log.warning(f"{key} changed: applies at the next start (the running queue is kept)")
    if old.spec != settings.spec:
        log.info("format changed: new events are written so; queued ones keep their bytes")
    return True


def _changed(
    settings: Iterable[Setting], old: Mapping[type, object], new: Mapping[type, object]
) -> list[str]:
    """The keys of ``settings`` whose value differs between the objects they land in."""
    return [
        setting.key
        for setting in settings
        if setting.owner in old
        and setting.value_in(old[setting.owner]) != setting.value_in(new[setting.owner])
    ]


def _log_metric_changes(log: Log, old: Config, new: Config) -> None:
    for name in sorted(old.metrics.keys() - new.metrics.keys()):
        log.info("removed", metric=name)
    for name, metric in new.metrics.items():
        before = old.metrics.get(name)
        if before is None:
            log.info(f"added: {metric.route}", metric=name)
        elif before != metric:
            log.info(f"changed: {before.route}; now {metric.route}", metric=name)


def _apply_globals(running: Running, old: GlobalConfig, new: GlobalConfig) -> GlobalConfig:
    """Apply the [global] keys a reload can; warn of the others that changed. The
    settings in effect: the new ones where applied, the old ones elsewhere."""
    changed = _changed(GLOBAL, {GlobalConfig: old}, {GlobalConfig: new})
    for key in changed:
        if key not in APPLIED_GLOBALS:
            running.log.warning(f"global.{key} changed: applies at the next start")
    applied = {key: getattr(new, key) for key in APPLIED_GLOBALS if key in changed}
    if "log_level" in applied:
        running.log.set_level(new.log_level)
    running.pipeline.hostname = new.hostname
    running.readiness.unready_after = new.unready_after
    return replace(old, **applied)


def _warn_sources(log: Log, old: Config, new: Config) -> None:
    for name in sorted(old.sources.keys() | new.sources.keys()):
        before, after = old.sources.get(name), new.sources.get(name)
        if before != after:
            what = "added" if before is None else "removed" if after is None else "changed"
            log.warning(
                f"{what}: sources are not restarted by a reload; restart event-exporter to "
                "apply it",
                source=name,
            )

"""What a configuration is, once read and checked: frozen dataclasses, one per block.

Their defaults are the defaults of the settings table (:mod:`exporter.config.settings`
reads them from here and from the objects each setting lands in).
"""

from __future__ import annotations

from dataclasses import dataclass, field, replace

from drivers.file import FileSettings
from drivers.http import HttpSettings, is_loopback_host, printable_url
from drivers.nats import NatsSettings
from exporter.catalog.lint import field_list_warnings, filter_warnings
from exporter.catalog.versions import Version
from exporter.delivery.deadletter import DEFAULT_MAX_BYTES as DEFAULT_DEAD_LETTER_MAX_BYTES
from exporter.delivery.destinations import Destination
from exporter.delivery.exporter import DeliverySettings
from exporter.filter import EventFilter
from exporter.formats.spec import ALL_INCLUDES, FormatSpec
from exporter.secret import Secret
from exporter.sources.http import HttpSourceSettings
from exporter.sources.nats import NatsSourceSettings
from exporter.sources.stdin import StdinSourceSettings
from exporter.sources.tail import TailSourceSettings
from exporter.sources.unix import UnixSourceSettings

DEFAULT_DEAD_LETTER = "event-exporter.deadletter.ndjson"
SOURCE_TYPES = ("http", "unix", "file", "stdin", "nats")

DriverSettings = FileSettings | HttpSettings | NatsSettings | None
"""A driver's own settings: a file: destination's, an http(s):// one's, a nats:// one's;
None for the others."""


@dataclass(frozen=True)
class GlobalConfig:
    hostname: str | None = None
    """Written instead of the events' own hostname... when set (None: keep theirs)."""
    dead_letter: str = DEFAULT_DEAD_LETTER
    dead_letter_max_bytes: int = DEFAULT_DEAD_LETTER_MAX_BYTES
    """Past this size, undeliverable events are dropped and counted instead."""
    shutdown_timeout: float = 10.0
    log_level: str = "info"
    log_format: str = "text"
    """``run``'s own log: ``text`` lines or ``json`` objects (:mod:`exporter.observe.log`)."""
    unready_after: float = 60.0
    """GET /ready answers 503 once an exporter has been failing for longer than this."""
    metrics_listen: tuple[str, int] | None = None
    """HOST, PORT of the Prometheus endpoint (GET /metrics); None: none."""
    summary_interval: float = 60.0
    """Seconds between summary lines on stderr; 0: only the last one."""
    dovecot_version: Version | None = None
    """The Dovecot that sends the events, for filter warnings (an event it no longer
    sends); None: not stated."""
    metrics_bearer_token: Secret | None = None
    """GET /metrics then requires ``Authorization: Bearer`` with it; None: open."""


@dataclass(frozen=True)
class ExporterConfig:
    name: str
    spec: FormatSpec
    """Format, time format and precision, truncation; a metric adds include and fields."""
    destination: Destination
    delivery: DeliverySettings
    driver_settings: DriverSettings = None
    """What :meth:`Destination.open` makes the driver with."""

    @property
    def where(self) -> str:
        """Its destination as messages show it (an http URL's credentials and query
        hidden): ``file:events.ndjson``, ``drop``."""
        destination = self.destination
        if destination.is_http:
            return printable_url(destination.target)
        if destination.is_nats:
            return destination.target
        return f"{destination.kind}:{destination.target}" if destination.target else "drop"


@dataclass(frozen=True)
class MetricConfig:
    name: str
    filter: EventFilter
    exporter: str
    include: frozenset[str] = ALL_INCLUDES
    fields: tuple[str, ...] = ()

    @property
    def route(self) -> str:
        """What it sends where, as the log says it: ``event=x -> exporter a``."""
        parts = [f"{self.filter.source or 'every event'} -> exporter {self.exporter}"]
        if self.fields:
            parts.append(f"fields {' '.join(self.fields)}")
        if self.include != ALL_INCLUDES:
            parts.append(f"include {' '.join(sorted(self.include)) or 'nothing'}")
        return "; ".join(parts)


@dataclass(frozen=True)
class SourceConfig:
    name: str
    type: str
    """``http`` (a listener), ``unix`` (a listening stream socket), ``file`` (followed as
    ``tail -F`` does) or ``stdin`` (lines until end of input)."""
    http: HttpSourceSettings | None = None
    unix: UnixSourceSettings | None = None
    file: TailSourceSettings | None = None
    stdin: StdinSourceSettings | None = None
    nats: NatsSourceSettings | None = None


class ConfigWarning(str):
    """A warning as ``check`` prints it (``metric.a.filter: ...``), and which part of the
    configuration it is about, as the daemon's log says it (``metric=a``; none for
    ``[global]``)."""

    context: dict[str, str]

    def __new__(cls, text: str, **context: str) -> ConfigWarning:
        warning = super().__new__(cls, text)
        warning.context = context
        return warning


@dataclass(frozen=True)
class Config:
    source: str
    settings: GlobalConfig
    exporters: dict[str, ExporterConfig] = field(default_factory=dict)
    metrics: dict[str, MetricConfig] = field(default_factory=dict)
    sources: dict[str, SourceConfig] = field(default_factory=dict)

    def spec_for(self, metric: MetricConfig) -> FormatSpec:
        """What ``metric`` writes: its exporter's format with the metric's parts."""
        spec = self.exporters[metric.exporter].spec
        return replace(spec, include=metric.include, fields=metric.fields)

    def warnings(self) -> list[ConfigWarning]:
        """What is allowed but probably not meant: in each metric's filter (see
        :mod:`exporter.catalog.lint`), an exporter no metric feeds, and what leaves events or
        credentials open (TLS not verified, credentials over plain http, a listener that
        takes events from anyone)."""
        found = []
        for metric in self.metrics.values():
            about = {"metric": metric.name}
            found += [
                ConfigWarning(text, **about)
                for text in filter_warnings(
                    f"metric.{metric.name}.filter", metric.filter, self.settings.dovecot_version
                )
                + field_list_warnings(f"metric.{metric.name}.fields", metric.fields)
            ]
        fed = {metric.exporter for metric in self.metrics.values()}
        for name, exporter in self.exporters.items():
            if name not in fed:
                found.append(
                    ConfigWarning(
                        f"exporter.{name}: no metric feeds it, so it gets no events", exporter=name
                    )
                )
            if isinstance(exporter.driver_settings, HttpSettings):
                found += [
                    ConfigWarning(f"exporter.{name}.http.{key}: {why}", exporter=name)
                    for key, why in exporter.driver_settings.warnings()
                ]
        for source in self.sources.values():
            found += [
                ConfigWarning(text, source=source.name) for text in _open_listener_warnings(source)
            ]
        found += [ConfigWarning(text) for text in _open_metrics_warnings(self.settings)]
        return found


def _open_metrics_warnings(settings: GlobalConfig) -> list[str]:
    """A metrics listener beyond loopback that anyone who can reach it may read."""
    listen = settings.metrics_listen
    if listen is None or settings.metrics_bearer_token is not None:
        return []
    if is_loopback_host(listen[0]):
        return []
    return [
        f"global.metrics_listen: {listen[0]}:{listen[1]} is not a loopback address and no "
        "metrics bearer token is set: whoever can reach it can read the daemon's counters "
        "(set metrics_bearer_token_env or metrics_bearer_token_file)"
    ]


def _open_listener_warnings(source: SourceConfig) -> list[str]:
    """A source that takes events from whoever can reach it: an http one listening beyond
    loopback without a token, one whose only key is Stalwart's (it guards /stalwart
    alone), a unix socket every local user may write to."""
    unix = source.unix
    if unix is not None and unix.mode & 0o002:
        return [
            f"source.{source.name}.mode: {unix.mode:04o} lets every local user connect to "
            f"{unix.path} and send events (0600 or 0660 with a group keeps it to the mail "
            "server)"
        ]
    http = source.http
    if http is None or http.bearer_token is not None:
        return []
    found = []
    if not is_loopback_host(http.host):
        found.append(
            f"source.{source.name}.listen: {http.host}:{http.port} is not a loopback address "
            "and no bearer token is set: whoever can reach it can post events (set "
            "bearer_token_env or bearer_token_file)"
        )
    if http.stalwart_signing_key is not None:
        found.append(
            f"source.{source.name}: the Stalwart signing key guards POST /stalwart only: "
            "without a bearer token, /events and /dovecot take events from anyone who can "
            "connect (set bearer_token_env or bearer_token_file)"
        )
    return found

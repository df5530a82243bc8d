"""The TOML configuration, in Dovecot's vocabulary: ``global``, ``exporter`` and ``metric``.

An exporter says how events are written (format, time format and precision) and where
they go (a destination with its driver, queue, batch and retry settings); a metric
selects events with a filter and feeds one exporter, writing the parts its include set
and field list name. :func:`load_config` checks everything in one pass and reports every
problem at once, each with the file, the line where it can be found, the key's path and
what is allowed; an unknown key is a problem too, with the nearest known key suggested.
"""

from __future__ import annotations

import difflib
import math
import os
import re
import tomllib
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any, TypeVar

from drivers.http import (
    BODIES,
    COMPRESSIONS,
    DEFAULT_RETRY_STATUSES,
    SIGNINGS,
    HttpSettings,
    check_url,
    is_loopback_host,
    signing_key_bytes,
)
from exporter.catalog.lint import filter_warnings
from exporter.catalog.versions import Version, parse_version
from exporter.delivery.deadletter import DEFAULT_MAX_BYTES as DEFAULT_DEAD_LETTER_MAX_BYTES
from exporter.delivery.destinations import (
    SCHEMES,
    Destination,
    parse_destination,
    printable_destination,
)
from exporter.delivery.exporter import DeliverySettings
from exporter.delivery.queue import OVERFLOW_CHOICES, Overflow
from exporter.delivery.retry import RetryPolicy
from exporter.delivery.spool import SYNC_MODES
from exporter.errors import EventExporterError, FilterSyntaxError, UsageError
from exporter.filter import EventFilter, compile_filter
from exporter.formats.spec import ALL_INCLUDES, FORMATS, INCLUDE_WORDS, FormatSpec
from exporter.formats.timefmt import PRECISIONS, TIME_FORMATS
from exporter.secret import Secret
from exporter.sources.http import HttpSourceSettings
from exporter.sources.stdin import StdinSourceSettings
from exporter.sources.tail import TailSourceSettings
from exporter.sources.unix import UnixSourceSettings

DEFAULT_DEAD_LETTER = "event-exporter.deadletter.ndjson"
LOG_LEVELS = ("debug", "info", "warning", "error")
SOURCE_TYPES = ("http", "unix", "file", "stdin")
_SUN_PATH_MAX = 107

T = TypeVar("T")


@dataclass(frozen=True)
class Problem:
    path: str
    """Where, as a key path: ``exporter.archive.format``."""
    message: str
    line: int | None = None


class ConfigError(UsageError):
    """Everything wrong with a configuration, one problem per line."""

    def __init__(self, source: str, problems: Sequence[Problem]) -> None:
        self.source = source
        self.problems = tuple(problems)
        lines = [
            f"{source}:{p.line}: {p.path}: {p.message}"
            if p.line is not None
            else f"{source}: {p.path}: {p.message}"
            for p in self.problems
        ]
        super().__init__("\n".join(lines))


@dataclass(frozen=True)
class GlobalConfig:
    hostname: str | None = None
    """Written instead of the events' own hostname... when set (None: keep theirs)."""
    dead_letter: str = DEFAULT_DEAD_LETTER
    dead_letter_max_bytes: int = DEFAULT_DEAD_LETTER_MAX_BYTES
    """Past this size, undeliverable events are dropped and counted instead."""
    shutdown_timeout: float = 10.0
    log_level: str = "info"
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
    file_mode: int = 0o600
    fsync: str = "none"
    http: HttpSettings | None = None


@dataclass(frozen=True)
class MetricConfig:
    name: str
    filter: EventFilter
    exporter: str
    include: frozenset[str] = ALL_INCLUDES
    fields: tuple[str, ...] = ()


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

    def warnings(self) -> list[str]:
        """What is allowed but probably not meant: in each metric's filter (see
        :mod:`exporter.catalog.lint`), an exporter no metric feeds, and what leaves events or
        credentials open (TLS not verified, credentials over plain http, a listener that
        takes events from anyone)."""
        found = []
        for metric in self.metrics.values():
            found += filter_warnings(
                f"metric.{metric.name}.filter", metric.filter, self.settings.dovecot_version
            )
        fed = {metric.exporter for metric in self.metrics.values()}
        for name, exporter in self.exporters.items():
            if name not in fed:
                found.append(f"exporter.{name}: no metric feeds it, so it gets no events")
            if exporter.http is not None:
                found += [
                    f"exporter.{name}.http.{key}: {why}" for key, why in exporter.http.warnings()
                ]
        for source in self.sources.values():
            found += _open_listener_warnings(source)
        return found


def _open_listener_warnings(source: SourceConfig) -> list[str]:
    """An http source that takes events from whoever can reach it: one listening beyond
    loopback without a token, and one whose only key is Stalwart's (it guards /stalwart
    alone)."""
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


def load_config(path: str | Path) -> Config:
    """Read and check ``path``; ConfigError lists every problem, UsageError if unreadable."""
    try:
        text = Path(path).read_text(encoding="utf-8")
    except OSError as exc:
        raise UsageError(f"cannot read config {path}: {exc.strerror}") from None
    except UnicodeDecodeError:
        raise UsageError(f"config {path} is not UTF-8 text") from None
    return parse_config(text, str(path))


def parse_config(text: str, source: str = "config") -> Config:
    try:
        data = tomllib.loads(text)
    except tomllib.TOMLDecodeError as exc:
        raise ConfigError(source, [Problem("(syntax)", str(exc), _toml_error_line(exc))]) from None
    checker = _Checker(_KeyLines(text))
    config = checker.config(data, source)
    if checker.problems:
        raise ConfigError(source, checker.problems)
    return config


# -- checking -------------------------------------------------------------------------


class _Checker:
    def __init__(self, lines: _KeyLines) -> None:
        self.lines = lines
        self.problems: list[Problem] = []

    def problem(self, path: str, message: str) -> None:
        self.problems.append(Problem(path, message, self.lines.find(path)))

    def config(self, data: dict[str, Any], source: str) -> Config:
        root = _Table(self, "", data)
        settings = self.global_settings(root.table("global"))
        exporters = {
            name: built
            for name, table in root.tables("exporter")
            if (built := self.exporter(name, table)) is not None
        }
        named = list(exporters) + [
            name for name, value in _named_tables(data.get("exporter")) if name not in exporters
        ]
        metrics = {
            name: metric
            for name, table in root.tables("metric")
            if (metric := self.metric(name, table, exporters, named)) is not None
        }
        sources = {
            name: built_source
            for name, table in root.tables("source")
            if (built_source := self.source(name, table)) is not None
        }
        root.finish()
        if not exporters and "exporter" not in data:
            self.problem("exporter", "no [exporter.NAME] block: events would go nowhere")
        return Config(source, settings, exporters, metrics, sources)

    def source(self, name: str, t: _Table) -> SourceConfig | None:
        problems_before = len(self.problems)
        kind = t.choice("type", "", SOURCE_TYPES) or None
        if kind is None:
            if "type" not in t.data:
                self.problem(f"{t.path}.type", f"is required (allowed: {', '.join(SOURCE_TYPES)})")
            return None  # its other keys depend on the type: nothing more to say
        http = None
        if kind == "http":
            d = HttpSourceSettings()
            listen = t.parse("listen", _host_port, default="127.0.0.1:8080", allowed="HOST:PORT")
            host, port = listen or (d.host, d.port)
            http = HttpSourceSettings(
                host=host,
                port=port,
                max_body_bytes=t.integer("max_body_bytes", d.max_body_bytes, minimum=1),
                idle_timeout=t.number("idle_timeout", d.idle_timeout, minimum=0.001),
                bearer_token=t.secret("bearer_token"),
                stalwart_signing_key=t.secret("stalwart_signing_key"),
                header_timeout=t.number("header_timeout", d.header_timeout, minimum=0.001),
                request_timeout=t.number("request_timeout", d.request_timeout, minimum=0.001),
                max_connections=t.integer("max_connections", d.max_connections, minimum=1),
                max_connections_per_peer=t.integer(
                    "max_connections_per_peer", d.max_connections_per_peer, minimum=1
                ),
            )
        unix = tail = None
        if kind == "unix":
            path = t.text("path", None, nonempty=True)
            if path is not None and len(os.fsencode(path)) > _SUN_PATH_MAX:
                self.problem(f"{t.path}.path", f"longer than {_SUN_PATH_MAX} bytes")
            unix = UnixSourceSettings(
                path or "",
                mode=t.parse("mode", _file_mode, default="0600", allowed="0000 to 0777") or 0,
                max_line_bytes=t.integer("max_line_bytes", 1 << 20, minimum=1),
                max_connections=t.integer(
                    "max_connections", UnixSourceSettings.max_connections, minimum=1
                ),
            )
        if kind == "file":
            followed: str | None = t.text("path", None, nonempty=True)
            tail = TailSourceSettings(
                followed or "",
                state_file=t.text("state_file", "") or None,
                poll_interval=t.number("poll_interval", 0.25, minimum=0.001),
                start_at=t.choice("start_at", "beginning", ("beginning", "end")),
                max_line_bytes=t.integer("max_line_bytes", 1 << 20, minimum=1),
            )
        stdin = None
        if kind == "stdin":
            stdin = StdinSourceSettings(
                max_line_bytes=t.integer("max_line_bytes", 1 << 20, minimum=1)
            )
        t.finish()
        if len(self.problems) > problems_before or kind is None:
            return None
        return SourceConfig(name, kind, http, unix, tail, stdin)

    def global_settings(self, t: _Table) -> GlobalConfig:
        d = GlobalConfig()
        settings = GlobalConfig(
            hostname=t.text("hostname", "") or None,
            dead_letter=t.text("dead_letter", d.dead_letter, nonempty=True),
            dead_letter_max_bytes=t.integer(
                "dead_letter_max_bytes", d.dead_letter_max_bytes, minimum=1
            ),
            shutdown_timeout=t.number("shutdown_timeout", d.shutdown_timeout, minimum=0),
            log_level=t.choice("log_level", d.log_level, LOG_LEVELS),
            metrics_listen=t.parse(
                "metrics_listen",
                _host_port_or_off,
                default="",
                allowed=('HOST:PORT, or "" for none'),
            ),
            summary_interval=t.number("summary_interval", d.summary_interval, minimum=0),
            dovecot_version=t.parse(
                "dovecot_version",
                _version_or_none,
                default="",
                allowed='a Dovecot version such as "2.3.21" or "2.4.1", or "" for none',
            ),
            metrics_bearer_token=t.secret("metrics_bearer_token"),
        )
        t.finish()
        return settings

    def exporter(self, name: str, t: _Table) -> ExporterConfig | None:
        spec_d, delivery_d, retry_d = FormatSpec(), DeliverySettings(), RetryPolicy()
        spec = FormatSpec(
            format=t.choice("format", spec_d.format, FORMATS),
            time_format=t.choice("time_format", spec_d.time_format, TIME_FORMATS),
            time_precision=t.choice("time_precision", spec_d.time_precision, PRECISIONS),
            truncate=t.integer("truncate", 0, minimum=0) or None,
        )
        destination = t.parse(
            "destination",
            parse_destination,
            allowed=", ".join(SCHEMES),
            shown=printable_destination,
        )
        file_mode = t.parse("file_mode", _file_mode, default="0600", allowed="0000 to 0777")
        fsync = t.choice("fsync", "none", ("none", "batch", "interval"))
        problems_before = len(self.problems)
        retry = t.build(
            RetryPolicy,
            initial_delay=t.number("retry_initial_delay", retry_d.initial_delay, minimum=0),
            max_delay=t.number("retry_max_delay", retry_d.max_delay, minimum=0),
            max_attempts=t.integer("retry_max_attempts", 0, minimum=0) or None,
            max_elapsed=t.number("retry_max_elapsed", 0, minimum=0) or None,
            max_retry_after=t.number("retry_max_retry_after", retry_d.max_retry_after, minimum=0),
        )
        delivery = t.build(
            DeliverySettings,
            queue_max_events=t.integer("queue_max_events", delivery_d.queue_max_events, 1),
            queue_max_bytes=t.integer("queue_max_bytes", delivery_d.queue_max_bytes, 1),
            overflow=Overflow(t.choice("overflow", delivery_d.overflow.value, OVERFLOW_CHOICES)),
            batch_max_events=t.integer("batch_max_events", delivery_d.batch_max_events, 1),
            batch_max_bytes=t.integer("batch_max_bytes", delivery_d.batch_max_bytes, 1),
            batch_max_age=t.number("batch_max_age", delivery_d.batch_max_age, minimum=0),
            retry=retry or retry_d,
            spool=t.text("spool", "") or None,
            spool_sync=t.choice("spool_sync", "normal", SYNC_MODES),
        )
        http = None
        if "http" in t.data or (destination is not None and destination.is_http):
            http = self.http(t.table("http"), destination, spec)
        t.finish()
        if len(self.problems) > problems_before or destination is None or delivery is None:
            return None
        if http is not None and http.body == "single":  # one request per event
            delivery = replace(delivery, batch_max_events=1)
        mode = 0o600 if file_mode is None else file_mode
        return ExporterConfig(name, spec, destination, delivery, mode, fsync, http)

    def http(
        self, t: _Table, destination: Destination | None, spec: FormatSpec
    ) -> HttpSettings | None:
        if destination is None or not destination.is_http:
            if destination is not None:
                self.problem(t.path, f"only for http(s):// destinations, not {destination.kind}")
            return None
        d = HttpSettings(url="http://localhost/")
        try:
            check_url(destination.target)
        except UsageError as exc:  # the destination's problem, said where it is written
            self.problem(t.path.removesuffix(".http") + ".destination", str(exc))
            return None
        secrets = {key: t.secret(key) for key in ("bearer_token", "basic_password", "signing_key")}
        signing = t.choice("signing", d.signing, SIGNINGS)
        key = secrets["signing_key"]
        if key is not None and signing == "standard-webhooks":
            try:
                signing_key_bytes(key)
            except UsageError as exc:  # at its key, not at the table (as build would)
                written = "signing_key_env" if t.data.get("signing_key_env") else "signing_key_file"
                self.problem(f"{t.path}.{written}", str(exc))
                signing, key = "none", None
        headers = t.strings_table("headers")
        for name in headers:
            if name.lower() in ("authorization", "proxy-authorization"):
                self.problem(
                    f"{t.path}.headers",
                    f"{name!r} is refused here (a secret in the config file is read by "
                    "whoever reads the file): use bearer_token_env / bearer_token_file, or "
                    "basic_user with basic_password_env / basic_password_file",
                )
        settings = t.build(
            HttpSettings,
            url=destination.target,
            body=t.choice("body", d.body, BODIES),
            event_format=spec.format,
            compression=t.choice("compression", d.compression, COMPRESSIONS),
            gzip_level=t.integer("gzip_level", d.gzip_level, minimum=0),
            headers=headers,
            bearer_token=secrets["bearer_token"],
            basic_user=t.text("basic_user", "") or None,
            basic_password=secrets["basic_password"],
            signing=signing,
            signing_key=key,
            idempotency_header=t.text("idempotency_header", d.idempotency_header),
            connect_timeout=t.number("connect_timeout", d.connect_timeout, minimum=0),
            read_timeout=t.number("read_timeout", d.read_timeout, minimum=0),
            request_timeout=t.number("request_timeout", d.request_timeout, minimum=0),
            concurrency=t.integer("concurrency", d.concurrency, minimum=1),
            follow_redirects=t.boolean("follow_redirects", d.follow_redirects),
            allow_plain_http=t.boolean("allow_plain_http", d.allow_plain_http),
            verify_tls=t.boolean("verify_tls", d.verify_tls),
            ca_file=t.text("ca_file", "") or None,
            unix_socket=t.text("unix_socket", "") or None,
            retry_statuses=frozenset(t.integers("retry_statuses", sorted(DEFAULT_RETRY_STATUSES))),
        )
        t.finish()
        return settings

    def metric(
        self, name: str, t: _Table, exporters: dict[str, ExporterConfig], named: list[str]
    ) -> MetricConfig | None:
        problems_before = len(self.problems)
        source = t.text("filter", None, nonempty=True)
        event_filter = None
        if source is not None:
            try:
                event_filter = compile_filter(source)
            except FilterSyntaxError as exc:
                self.problem(f"{t.path}.filter", f"{exc}\n{exc.caret()}")
        exporter = t.text("exporter", None, nonempty=True)
        if exporter is not None and exporter not in named:
            self.problem(
                f"{t.path}.exporter", f"no exporter named {exporter!r}{_hint(exporter, named)}"
            )
        words = t.strings("include", list(INCLUDE_WORDS))
        include = ALL_INCLUDES
        unknown = [word for word in words if word not in INCLUDE_WORDS]
        if unknown:
            self.problem(
                f"{t.path}.include",
                f"{unknown[0]!r} is not allowed (allowed: {', '.join(INCLUDE_WORDS)})"
                + _hint(unknown[0], INCLUDE_WORDS),
            )
        else:
            include = frozenset(words)
        fields = tuple(t.strings("fields", []))
        t.finish()
        if (
            len(self.problems) > problems_before
            or event_filter is None
            or exporter not in exporters  # None, unknown, or an exporter with problems
        ):
            return None
        assert exporter is not None
        return MetricConfig(name, event_filter, exporter, include, fields)


def _host_port(text: str) -> tuple[str, int]:
    host, sep, port = text.rpartition(":")
    if not sep or not host or not port.isdigit() or not 0 <= int(port) <= 65535:
        raise ValueError(text)
    return host.strip("[]"), int(port)


def _host_port_or_off(text: str) -> tuple[str, int] | None:
    return _host_port(text) if text else None


def _version_or_none(text: str) -> Version | None:
    if not text:
        return None
    version = parse_version(text)
    if version is None:
        raise ValueError(text)
    return version


def _file_mode(text: str) -> int:
    mode = int(text, 8)
    if not 0 <= mode <= 0o777:
        raise ValueError(text)
    return mode


class _Table:
    """One TOML table being read: typed getters that record problems and return the
    default instead of raising; ``finish()`` reports the keys nobody asked for."""

    def __init__(self, checker: _Checker, path: str, data: dict[str, Any]) -> None:
        self.checker = checker
        self.path = path
        self.data = data
        self._known: set[str] = set()

    def _key(self, key: str) -> str:
        self._known.add(key)
        return f"{self.path}.{key}" if self.path else key

    def _value(self, key: str, kinds: tuple[type, ...], what: str) -> Any:
        path = self._key(key)
        if key not in self.data:
            return None
        value = self.data[key]
        if isinstance(value, bool) and bool not in kinds or not isinstance(value, kinds):
            self.checker.problem(path, f"must be {what}, not {_toml_type(value)}")
            return None
        return value

    def table(self, key: str) -> _Table:
        value = self._value(key, (dict,), "a table")
        return _Table(self.checker, self._key(key), value or {})

    def tables(self, key: str) -> Iterator[tuple[str, _Table]]:
        """The named sub-tables of ``key`` (``[exporter.NAME]``)."""
        for name, value in (self._value(key, (dict,), "a table of named blocks") or {}).items():
            path = f"{self._key(key)}.{name}"
            if isinstance(value, dict):
                yield name, _Table(self.checker, path, value)
            else:
                self.checker.problem(path, f"must be a [{path}] block, not {_toml_type(value)}")

    def text(self, key: str, default: T, *, nonempty: bool = False) -> str | T:
        value = self._value(key, (str,), "a string")
        if value is None:
            if default is None and key not in self.data:  # a wrong type is said already
                self.checker.problem(self._key(key), "is required")
            return default
        if nonempty and not value.strip():
            self.checker.problem(self._key(key), "must not be empty")
            return default
        return str(value)

    def choice(self, key: str, default: str, allowed: Sequence[str]) -> Any:
        value = self._value(key, (str,), "a string")
        if value is None:
            return default
        if value not in allowed:
            self.checker.problem(
                self._key(key),
                f"{value!r} is not allowed (allowed: {', '.join(allowed)}){_hint(value, allowed)}",
            )
            return default
        return value

    def integer(self, key: str, default: int, minimum: int) -> int:
        value = self._value(key, (int,), "a whole number")
        if value is None:
            return default
        if value < minimum:
            self.checker.problem(self._key(key), f"must be at least {minimum}, not {value}")
            return default
        return int(value)

    def number(self, key: str, default: float, *, minimum: float) -> float:
        value = self._value(key, (int, float), "a number")
        if value is None:
            return default
        if not math.isfinite(value):
            self.checker.problem(self._key(key), f"must be a finite number, not {value}")
            return default
        if value < minimum:
            self.checker.problem(self._key(key), f"must be at least {minimum:g}, not {value}")
            return default
        return float(value)

    def boolean(self, key: str, default: bool) -> bool:
        value = self._value(key, (bool,), "true or false")
        return default if value is None else bool(value)

    def strings(self, key: str, default: list[str]) -> list[str]:
        value = self._value(key, (list,), "a list of strings")
        if value is None:
            return default
        if not all(isinstance(item, str) for item in value):
            self.checker.problem(self._key(key), "must be a list of strings")
            return default
        return list(value)

    def integers(self, key: str, default: list[int]) -> list[int]:
        value = self._value(key, (list,), "a list of whole numbers")
        if value is None:
            return default
        if not all(isinstance(item, int) and not isinstance(item, bool) for item in value):
            self.checker.problem(self._key(key), "must be a list of whole numbers")
            return default
        return list(value)

    def strings_table(self, key: str) -> dict[str, str]:
        value = self._value(key, (dict,), "a table of strings")
        if value is None:
            return {}
        if not all(isinstance(item, str) for item in value.values()):
            self.checker.problem(self._key(key), "every value must be a string")
            return {}
        return dict(value)

    def secret(self, key: str) -> Secret | None:
        env = self.text(f"{key}_env", "") or None
        file = self.text(f"{key}_file", "") or None
        try:
            return Secret.load(env=env, file=file)
        except UsageError as exc:
            self.checker.problem(self._key(f"{key}_env" if env else f"{key}_file"), str(exc))
            return None

    def parse(
        self,
        key: str,
        parse: Callable[[str], T],
        *,
        allowed: str,
        default: str | None = None,
        shown: Callable[[str], str] = repr,
    ) -> T | None:
        """``parse`` of the text; a problem quotes it as ``shown`` gives it (a destination
        without its credentials)."""
        text = self.text(key, default)
        if text is None:
            return None
        try:
            return parse(text)
        except (EventExporterError, ValueError):
            message = f"{shown(text)} is not allowed (allowed: {allowed})"
            self.checker.problem(self._key(key), message)
            return None

    def build(self, make: Callable[..., T], **values: Any) -> T | None:
        """``make(**values)``; its UsageError (settings that do not fit together) is a
        problem of this table."""
        try:
            return make(**values)
        except UsageError as exc:
            self.checker.problem(self.path, str(exc))
            return None

    def finish(self) -> None:
        known = sorted(self._known)
        for key in self.data:
            if key not in self._known:
                path = f"{self.path}.{key}" if self.path else key
                self.checker.problem(path, f"unknown key{_hint(key, known)}")


def _named_tables(value: object) -> list[tuple[str, object]]:
    """The ``[exporter.NAME]`` blocks of a value that may be anything."""
    return (
        [(str(k), v) for k, v in value.items() if isinstance(v, dict)]
        if isinstance(value, dict)
        else []
    )


def _hint(word: str, known: Sequence[str]) -> str:
    close = difflib.get_close_matches(word, list(known), n=1, cutoff=0.6)
    return f"; did you mean {close[0]!r}?" if close else ""


def _toml_type(value: object) -> str:
    names = {bool: "a boolean", int: "a whole number", float: "a number", str: "a string"}
    if isinstance(value, dict):
        return "a table"
    if isinstance(value, list):
        return "a list"
    return names.get(type(value), type(value).__name__)


def _toml_error_line(exc: tomllib.TOMLDecodeError) -> int | None:
    found = re.search(r"\(at line (\d+)", str(exc))
    return int(found.group(1)) if found else None


class _KeyLines:
    """Where each key path is written: TOML's reader does not say, the text does.

    One pass, linear in the text: a line is read with ``str.find`` and single-character
    searches, never a regex that can backtrack (a long line once made ``check`` run for
    minutes). What a multi-line string holds is skipped: a line in one is not a key.
    """

    _KEY_CHARS = re.compile(r"[\w\-\"'. ]+")
    _SPECIAL = re.compile(r"[#\"']")  # outside strings: a comment or a string starts
    _BASIC_END = re.compile(r"[\\\"]")  # in a "..." or """...""" string: an escape or a quote

    def __init__(self, text: str) -> None:
        self._lines: dict[str, int] = {}
        table = ""
        inside = ""  # the delimiter of the multi-line string a line starts in ("" for none)
        for number, line in enumerate(text.splitlines(), 1):
            if not inside:
                header = _header_name(line)
                if header is not None:
                    table = _dotted(header)
                    parts = table.split(".")
                    for end in range(1, len(parts) + 1):  # [metric.x] also writes "metric"
                        self._lines.setdefault(".".join(parts[:end]), number)
                else:
                    key = self._key(line)
                    if key is not None:
                        path = f"{table}.{_dotted(key)}" if table else _dotted(key)
                        self._lines.setdefault(path, number)
            inside = self._open_at_end(line, inside)

    def find(self, path: str) -> int | None:
        """The line of ``path``, else of the nearest enclosing table that is written."""
        while path:
            if path in self._lines:
                return self._lines[path]
            path = path.rpartition(".")[0]
        return None

    @classmethod
    def _key(cls, line: str) -> str | None:
        """``name`` of a line ``name = ...`` (bare, quoted or dotted), else None."""
        text = line.lstrip()
        equals = text.find("=")
        if equals <= 0 or text.startswith("#"):
            return None
        key = text[:equals].rstrip()
        return key if cls._KEY_CHARS.fullmatch(key) else None

    @classmethod
    def _open_at_end(cls, line: str, inside: str) -> str:
        """The multi-line string (its delimiter) still open where ``line`` ends, given the
        one open where it starts."""
        at, size = 0, len(line)
        while at < size:
            if inside:  # find its end: a quote not escaped (a literal string has no escapes)
                if inside == '"""':
                    found = cls._BASIC_END.search(line, at)
                    at = found.start() if found else -1
                else:
                    at = line.find("'", at)
                if at < 0:
                    return inside
                if line[at] == "\\":
                    at += 2
                elif line.startswith(inside, at):
                    at += 3
                    while at < size and line[at] == inside[0]:  # """a""""": up to 2 more
                        at += 1
                    inside = ""
                else:
                    at += 1
                continue
            special = cls._SPECIAL.search(line, at)
            if special is None or special.group() == "#":
                return ""
            at = special.start()
            quote = line[at]
            if line.startswith(quote * 3, at):
                inside, at = quote * 3, at + 3
                continue
            at = cls._one_line_string_end(line, at + 1, quote)
        return inside

    @classmethod
    def _one_line_string_end(cls, line: str, at: int, quote: str) -> int:
        """Where a one-line string that starts before ``at`` ends (past its quote)."""
        while True:
            if quote == "'":
                end = line.find("'", at)
                return len(line) if end < 0 else end + 1
            found = cls._BASIC_END.search(line, at)
            if found is None:
                return len(line)
            if found.group() == '"':
                return found.end()
            at = found.end() + 1  # an escape: skip the character it escapes


def _header_name(line: str) -> str | None:
    """``a.b`` of a ``[a.b]`` or ``[[a.b]]`` line (a comment may follow), else None."""
    text = line.strip()
    if not text.startswith("["):
        return None
    body = text[2:] if text.startswith("[[") else text[1:]
    end = body.find("]")
    if end < 0:
        return None
    rest = body[end + 1 :].removeprefix("]").strip()
    name = body[:end].strip()
    return name if name and (not rest or rest.startswith("#")) else None


def _dotted(key: str) -> str:
    return ".".join(part.strip().strip("\"'") for part in key.split("."))

"""One reader per TOML block: ``[global]``, ``[exporter.NAME]`` with its ``.http`` table,
``[metric.NAME]``, ``[source.NAME]`` by type.

Each reads its keys through the settings table (:mod:`exporter.config.settings`), then
checks what only the block knows (a metric's exporter exists, an http table goes with an
http destination); a reader that found a problem returns None, so that nothing is built
from a block that is wrong, while every problem is still reported.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from pathlib import Path
from typing import Any

from drivers.bodies.registry import KINDS, body_tables
from drivers.http import HttpSettings, check_url, signing_key_bytes
from drivers.nats import NatsSettings, check_subject
from exporter.catalog.versions import Version
from exporter.config.model import (
    SOURCE_TYPES,
    Config,
    DriverSettings,
    ExporterConfig,
    GlobalConfig,
    MetricConfig,
    SourceConfig,
)
from exporter.config.settings import (
    BODY_TABLES,
    EXPORTER,
    FILE,
    GLOBAL,
    HTTP,
    METRIC,
    NATS,
    SOURCE_TYPE,
    SOURCES,
    Setting,
    body_options,
    delivery_settings,
    fields_for,
    file_settings,
    format_spec,
    http_settings,
    nats_settings,
    nats_source_settings,
)
from exporter.config.toml import ConfigError, Problems, Table, hint, load_toml, named_tables
from exporter.delivery.destinations import Destination
from exporter.errors import UsageError
from exporter.files import same_place
from exporter.formats.spec import FormatSpec


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
    """Check ``text`` (from ``source``, named in problems); ConfigError lists every problem."""
    data = load_toml(text, source)
    problems = Problems(text)
    config = read_config(data, problems, source)
    if problems.found:
        raise ConfigError(source, problems.found)
    return config


def read_values(
    t: Table,
    settings: tuple[Setting, ...],
    checks: Mapping[str, Callable[[Any], None]] | None = None,
) -> dict[str, Any]:
    """Each setting's value (by key) in ``t``: as written, else its default; ``checks``
    say, as their key is read, what only the block knows about its value."""
    values = {}
    for setting in settings:
        values[setting.key] = value = setting.kind.read(t, setting.key, setting.default)
        if checks and setting.key in checks:
            checks[setting.key](value)
    return values


def read_config(data: dict[str, Any], problems: Problems, source: str) -> Config:
    root = Table(problems, "", data)
    settings = read_global(root.table("global"))
    exporters = {
        name: built
        for name, table in root.tables("exporter")
        if (built := read_exporter(name, table, settings.dovecot_version)) is not None
    }
    named = list(exporters) + [
        name for name, value in named_tables(data.get("exporter")) if name not in exporters
    ]
    metrics = {
        name: metric
        for name, table in root.tables("metric")
        if (metric := read_metric(table, name, exporters, named)) is not None
    }
    sources = {
        name: built_source
        for name, table in root.tables("source")
        if (built_source := read_source(name, table)) is not None
    }
    root.finish()
    if not exporters and "exporter" not in data:
        root.problem("exporter", "no [exporter.NAME] block: events would go nowhere")
    for where, problem in feedback_loops(sources, exporters):
        root.problem(where, problem)
    return Config(source, settings, exporters, metrics, sources)


def feedback_loops(
    sources: Mapping[str, SourceConfig], exporters: Mapping[str, ExporterConfig]
) -> list[tuple[str, str]]:
    """(key path, problem) for each source that reads what an exporter writes: a file
    source following an exporter's file destination, a unix source listening where a unix
    exporter connects. Each event would come back, be written again, forever."""
    written = {
        (destination.kind, same_place(destination.target)): name
        for name, exporter in exporters.items()
        if (destination := exporter.destination).kind in ("file", "unix")
    }
    found = []
    for name, source in sources.items():
        path, kind = (
            (source.file.path, "file")
            if source.file is not None
            else (source.unix.path, "unix")
            if source.unix is not None
            else (None, "")
        )
        exporter = None if path is None else written.get((kind, same_place(path)))
        if exporter is not None:
            found.append(
                (
                    f"source.{name}.path",
                    f"{path} is where exporter.{exporter} writes: every event would come "
                    "back and be written again, forever",
                )
            )
    return found


def read_global(t: Table) -> GlobalConfig:
    settings = GlobalConfig(**fields_for(GlobalConfig, GLOBAL, read_values(t, GLOBAL)))
    t.finish()
    return settings


def read_exporter(
    name: str, t: Table, dovecot_version: Version | None = None
) -> ExporterConfig | None:
    """``dovecot_compat`` unset follows ``dovecot_version`` ([global]) when it names one."""
    problems_before = len(t.problems)
    values = read_values(t, EXPORTER)
    if "dovecot_compat" not in t.data and dovecot_version is not None:
        values["dovecot_compat"] = "2.3" if dovecot_version < (2, 4) else "2.4"
    destination: Destination | None = values["destination"]
    spec = format_spec(values)
    driver_settings: DriverSettings = None
    if destination is not None and destination.kind == "file":
        driver_settings = file_settings(values)
    elif destination is not None:
        for key in (setting.key for setting in FILE if setting.key in t.data):
            t.problem(key, f"only for file: destinations, not {destination.kind}")
    if "http" in t.data or (destination is not None and destination.is_http):
        driver_settings = read_http(t, destination, spec)
    else:
        for table in (table for table in BODY_TABLES if table in t.data):
            t.table(table).problem("", "only for http(s):// destinations")
    if "nats" in t.data or (destination is not None and destination.is_nats):
        driver_settings = read_nats(t.table("nats"), destination, spec, name)
    body = driver_settings.body if isinstance(driver_settings, HttpSettings) else None
    delivery = delivery_settings(values, body, t.build)
    t.finish()
    if len(t.problems) > problems_before or destination is None or delivery is None:
        return None
    return ExporterConfig(name, spec, destination, delivery, driver_settings)


def read_http(
    exporter: Table, destination: Destination | None, spec: FormatSpec
) -> HttpSettings | None:
    """[exporter.NAME.http], and the table of its body's own settings, if it has one
    ([exporter.NAME.otlp] for an otlp body; any other body's table is a problem)."""
    t = exporter.table("http")
    if destination is None or not destination.is_http:
        if destination is not None:
            t.problem("", f"only for http(s):// destinations, not {destination.kind}")
        return None
    try:
        check_url(destination.target)
    except UsageError as exc:  # the destination's problem, said where it is written
        t.problems.add(t.path.removesuffix(".http") + ".destination", str(exc))
        return None
    values = read_values(t, HTTP)
    key = values["signing_key"]
    if key is not None and values["signing"] == "standard-webhooks":
        try:
            signing_key_bytes(key)
        except UsageError as exc:  # at its key, not at the table (as build would)
            t.problem(
                "signing_key_env" if t.data.get("signing_key_env") else "signing_key_file", str(exc)
            )
            values.update(signing="none", signing_key=None)
    kind = KINDS.get(values["body"])
    options = None
    for table in BODY_TABLES:
        if kind is not None and table == kind.table:
            body_table = exporter.table(table)
            found = read_values(body_table, BODY_TABLES[table])
            options = body_options(kind.name, found, body_table.build)
            body_table.finish()
        elif table in exporter.data:
            bodies = ", ".join(body.name for body in body_tables()[table])
            exporter.table(table).problem("", f"only for http body {bodies}")
    settings = None
    if kind is None or kind.table is None or options is not None:
        settings = http_settings(values, destination.target, spec.format, t.build, options)
    t.finish()
    return settings


def read_nats(
    t: Table, destination: Destination | None, spec: FormatSpec, exporter: str
) -> NatsSettings | None:
    if destination is None or not destination.is_nats:
        if destination is not None:
            t.problem("", f"only for nats:// destinations, not {destination.kind}")
        return None
    values = read_values(t, NATS)
    if not _subject_at_key(t, values["subject"]):
        t.finish()
        return None
    settings = nats_settings(values, destination.target, exporter, spec.format, t.build)
    t.finish()
    return settings


def _subject_at_key(t: Table, template: str) -> bool:
    """Whether the subject template checks; if not, a problem at its own key."""
    try:
        check_subject(template)
    except UsageError as exc:
        t.problem("subject", str(exc))
        return False
    return True


def read_metric(
    t: Table, name: str, exporters: dict[str, ExporterConfig], named: list[str]
) -> MetricConfig | None:
    """A metric feeds an exporter among ``named`` (those written, with or without
    problems); it is built only if that exporter was."""
    problems_before = len(t.problems)

    def feeds_a_named_exporter(exporter: str | None) -> None:
        if exporter is not None and exporter not in named:
            t.problem("exporter", f"no exporter named {exporter!r}{hint(exporter, named)}")

    values = read_values(t, METRIC, {"exporter": feeds_a_named_exporter})
    exporter = values["exporter"]
    t.finish()
    if (
        len(t.problems) > problems_before
        or values["filter"] is None
        or exporter not in exporters  # None, unknown, or an exporter with problems
    ):
        return None
    return MetricConfig(name, **fields_for(MetricConfig, METRIC, values))


def read_source(name: str, t: Table) -> SourceConfig | None:
    """The keys of a source depend on its type: without one, nothing more is said."""
    problems_before = len(t.problems)
    kind = SOURCE_TYPE.kind.read(t, SOURCE_TYPE.key, "") or None
    if kind is None:
        if SOURCE_TYPE.key not in t.data:
            t.problem(SOURCE_TYPE.key, f"is required (allowed: {', '.join(SOURCE_TYPES)})")
        return None
    settings = SOURCES[kind]
    owner = settings[0].owner
    values = read_values(t, settings)
    made: Any
    if kind == "nats":
        made = nats_source_settings(values, name, t.build)
    else:
        made = owner(**fields_for(owner, settings, values))
    t.finish()
    if len(t.problems) > problems_before:
        return None
    return SourceConfig(name, kind, **{kind: made})

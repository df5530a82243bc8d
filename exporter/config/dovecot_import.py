"""A configuration of ours that does what a ``dovecot.conf``'s event export did.

Each ``event_exporter`` becomes an ``[exporter.NAME]`` (http-post: an http destination
posting one event per request, Dovecot's body, Content-Type and absolute timeout; file,
unix, log, drop: ours), each ``metric`` that feeds one an ``[metric.NAME]`` (filter,
include, fields), with ``dovecot_compat`` from the syntax read (2.3: ``format_args``,
``transport``...; 2.4: ``driver``, ``time_format``...). An http source takes what Dovecot
then sends it: :func:`relay_snippet` is the one exporter and metric to put in
``dovecot.conf`` in place of the ones carried over. Whatever cannot be carried over is an
:class:`ImportWarning` naming its line, never dropped silently.
"""

from __future__ import annotations

import re
import textwrap
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from typing import Literal

import orjson

from exporter.catalog.versions import parse_version
from exporter.config.dovecot_conf import Entry, Section, Where
from exporter.errors import FilterSyntaxError
from exporter.filter import compile_filter
from exporter.filter.values import parse_interval_us
from exporter.formats.spec import INCLUDE_WORDS

Syntax = Literal["2.3", "2.4"]
_Warn = Callable[[Where, str], None]
RELAY_NAME = "event_exporter_relay"
"""The exporter and metric :func:`relay_snippet` adds to dovecot.conf."""
RELAY_TIMEOUT = "5s"
"""The relay's absolute request timeout: Dovecot drops an event it could not post by then
(no retry), so it is longer than Dovecot's 250 ms default."""
DEFAULT_LISTEN = "127.0.0.1:8080"

_SYNTAX_23 = frozenset({"transport", "transport_args", "transport_timeout", "format_args"})
_SYNTAX_24 = frozenset({"driver", "time_format", "http_post_url", "file_path", "unix_path"})
_STATED_VERSION = re.compile(r"#.*?\b(2\.[34](?:\.\d+){0,2})\b")
_BARE_KEY = re.compile(r"[A-Za-z0-9_-]+")


@dataclass(frozen=True, slots=True)
class ImportWarning:
    where: Where | None
    message: str

    def __str__(self) -> str:
        return f"{self.where}: {self.message}" if self.where else self.message


@dataclass(slots=True)
class ExporterPlan:
    name: str
    where: Where
    format: str
    time_format: str
    destination: str
    request_timeout: float | None = None
    """Seconds (http-post: Dovecot's absolute request timeout); None: our default."""
    connect_timeout: float | None = None
    metrics: list[MetricPlan] = field(default_factory=list)


@dataclass(slots=True)
class MetricPlan:
    name: str
    where: Where
    filter: str
    exporter: str
    include: list[str] | None
    """None: not set in Dovecot (all five words)."""
    fields: list[str]


@dataclass(slots=True)
class Imported:
    syntax: Syntax
    version: str | None
    """The Dovecot version the file states (``dovecot_config_version``, or a
    ``doveconf -n`` header), if any."""
    exporters: list[ExporterPlan]
    warnings: list[ImportWarning]

    @property
    def metrics(self) -> list[MetricPlan]:
        return [metric for exporter in self.exporters for metric in exporter.metrics]


def import_dovecot(root: Section, first_lines: str = "") -> Imported:
    """What of ``root``'s event export we carry over, and warnings for the rest.
    ``first_lines``: the file's start, where ``doveconf -n`` states its version."""
    warnings: list[ImportWarning] = []
    exporter_blocks = list(root.sections("event_exporter"))
    metric_blocks = list(root.sections("metric"))
    defaults = {entry.key: entry for entry in root.entries()}
    syntax = _syntax(root, exporter_blocks)
    version = _version(defaults, first_lines)
    exporters: dict[str, ExporterPlan] = {}
    for block in exporter_blocks:
        plan = _exporter(block, syntax, defaults, warnings)
        if plan is not None:
            exporters[plan.name] = plan
    known = {block.name for block in exporter_blocks}
    for block in metric_blocks:
        metric = _metric(block, defaults, known, exporters, warnings)
        if metric is not None:
            exporters[metric.exporter].metrics.append(metric)
    for plan in exporters.values():
        if not plan.metrics:
            warnings.append(
                ImportWarning(plan.where, f"event_exporter {plan.name}: no metric feeds it")
            )
    if not exporter_blocks:
        warnings.append(ImportWarning(None, "no event_exporter block: nothing is exported"))
    warnings.sort(key=lambda w: (w.where.file, w.where.line) if w.where else ("", 0))
    return Imported(syntax, version, list(exporters.values()), warnings)


def _syntax(root: Section, blocks: Iterable[Section]) -> Syntax:
    if any(entry.key == "dovecot_config_version" for entry in root.entries()):
        return "2.4"
    keys = {_short(entry.key) for block in blocks for entry in block.entries()}
    if keys & _SYNTAX_23 and not keys & _SYNTAX_24:
        return "2.3"
    return "2.4"


def _version(defaults: dict[str, Entry], first_lines: str) -> str | None:
    stated = defaults.get("dovecot_config_version")
    if stated is not None and parse_version(stated.value) is not None:
        return stated.value
    for line in first_lines.splitlines()[:3]:
        found = _STATED_VERSION.match(line)
        if found:
            return found[1]
    return None


def _short(key: str) -> str:
    for prefix in ("event_exporter_", "metric_"):
        if key.startswith(prefix):
            return key[len(prefix) :]
    return key


def _settings(block: Section, defaults: dict[str, Entry], prefix: str) -> dict[str, Entry]:
    """The block's entries by short key, over 2.4's top-level ``PREFIX_KEY`` defaults."""
    values = {
        key[len(prefix) :]: entry for key, entry in defaults.items() if key.startswith(prefix)
    }
    values.pop("name", None)
    for entry in block.entries():
        values[entry.key[len(prefix) :] if entry.key.startswith(prefix) else entry.key] = entry
    return values


_EXPORTER_KEYS_23 = frozenset(
    {"format", "format_args", "transport", "transport_args", "transport_timeout"}
)
_EXPORTER_KEYS_24 = frozenset(
    {"driver", "format", "time_format", "http_post_url", "file_path", "unix_path", "name"}
)
_NOT_NEEDED = {
    "unix_connect_timeout": "ours reconnects with backoff and keeps the event meanwhile",
}


def _exporter(
    block: Section, syntax: Syntax, defaults: dict[str, Entry], warnings: list[ImportWarning]
) -> ExporterPlan | None:
    name = block.name
    what = f"event_exporter {name}"

    def warn(where: Where, message: str) -> None:
        warnings.append(ImportWarning(where, f"{what}: {message}"))

    if not name:
        warn(block.where, "has no name: not carried over")
        return None
    s = _settings(block, defaults if syntax == "2.4" else {}, "event_exporter_")
    for child in block.sections():
        warn(child.where, f"'{child.type} {child.name} {{ }}' has no equivalent: not carried over")
    fmt = s["format"].value if "format" in s else ""
    if fmt not in ("json", "tab-text"):
        at = s["format"].where if "format" in s else block.where
        warn(at, f"format {fmt or '(not set)'!r} is not json or tab-text: not carried over")
        return None
    if syntax == "2.3":
        allowed = _EXPORTER_KEYS_23
        time_format = _time_format_23(s.get("format_args"), warn, block.where)
        transport = s["transport"].value if "transport" in s else ""
        target_entry = s.get("transport_args")
        timeout_entry = s.get("transport_timeout")
    else:
        allowed = _EXPORTER_KEYS_24
        time_format = s["time_format"].value if "time_format" in s else "rfc3339"
        if time_format not in ("rfc3339", "unix"):
            warn(s["time_format"].where, f"time_format {time_format!r} is not rfc3339 or unix")
            return None
        transport = s["driver"].value if "driver" in s else "log"
        target_entry = {"http-post": s.get("http_post_url"), "file": s.get("file_path")}.get(
            transport, s.get("unix_path") if transport == "unix" else None
        )
        timeout_entry = s.get("http_client_request_absolute_timeout")
    if time_format is None:
        return None
    plan = ExporterPlan(name, block.where, fmt, time_format, "")
    target = target_entry.value if target_entry is not None else ""
    if transport == "http-post":
        if not target.startswith(("http://", "https://")):
            warn(target_entry.where if target_entry else block.where, "no http:// URL to post to")
            return None
        plan.destination = target
        plan.request_timeout = 0.25
        if timeout_entry is not None:
            plan.request_timeout = _seconds(timeout_entry, warn)
    elif transport in ("file", "unix"):
        if not target:
            warn(block.where, f"the {transport} driver has no path: not carried over")
            return None
        plan.destination = f"{transport}:{target}"
    elif transport == "log":
        plan.destination = "log:stderr"
    elif transport == "drop":
        plan.destination = "drop"
    else:
        at = block.where
        for key in ("transport", "driver"):
            if key in s:
                at = s[key].where
        warn(at, f"driver {transport or '(not set)'!r} is not log, file, unix, http-post or drop")
        return None
    for entry in block.entries():
        key = _short(entry.key)
        if key in allowed or key == "http_client_request_absolute_timeout":
            continue
        if key == "http_client_connect_timeout" and transport == "http-post":
            plan.connect_timeout = _seconds(entry, warn)
        elif key in _NOT_NEEDED:
            warn(entry.where, f"{key}: not carried over ({_NOT_NEEDED[key]})")
        else:
            warn(entry.where, f"{key} = {entry.value}: no equivalent, not carried over")
    return plan


def _time_format_23(entry: Entry | None, warn: _Warn, where: Where) -> str | None:
    words = entry.value.split() if entry is not None else []
    formats = {word[5:] for word in words if word in ("time-rfc3339", "time-unix")}
    for word in words:
        if word not in ("time-rfc3339", "time-unix"):
            warn(entry.where if entry else where, f"format_args {word!r} is unknown: ignored")
    if len(formats) != 1:
        warn(
            entry.where if entry else where,
            "format_args needs exactly one of time-rfc3339, time-unix: not carried over",
        )
        return None
    return formats.pop()


def _seconds(entry: Entry, warn: _Warn) -> float | None:
    text = entry.value.strip()
    if text.isdigit():
        if int(text) == 0:
            warn(entry.where, f"{entry.key} = 0 (no deadline): our default request timeout is used")
            return None
        warn(entry.where, f"{entry.key} = {text} has no unit: read as milliseconds")
        return int(text) / 1000
    micros = parse_interval_us(text)
    if micros is None:
        warn(entry.where, f"{entry.key} = {text!r} is not a time: our default is used")
        return None
    return micros / 1_000_000 if micros else None


_METRIC_KEYS = frozenset({"filter", "exporter", "exporter_include", "fields", "description"})


def _metric(
    block: Section,
    defaults: dict[str, Entry],
    known: set[str],
    exporters: dict[str, ExporterPlan],
    warnings: list[ImportWarning],
) -> MetricPlan | None:
    what = f"metric {block.name}"

    def warn(where: Where, message: str) -> None:
        warnings.append(ImportWarning(where, f"{what}: {message}"))

    s = _settings(block, {}, "metric_")
    exporter = s["exporter"].value if "exporter" in s else ""
    if not exporter:
        warn(
            block.where,
            "feeds no exporter: a Dovecot statistic (doveadm stats, OpenMetrics), not an "
            "export; not carried over",
        )
        return None
    if exporter not in known:
        warn(s["exporter"].where, f"refers to event_exporter {exporter!r}, which does not exist")
        return None
    if exporter not in exporters:
        warn(s["exporter"].where, f"its event_exporter {exporter} is not carried over: nor is it")
        return None
    for child in block.sections():
        kind = "group_by" if child.type.startswith("group_by") else child.type
        warn(
            child.where,
            f"{kind} shapes Dovecot's statistics only, not what is exported: not carried over",
        )
    for key, entry in s.items():
        if key == "group_by":
            warn(entry.where, "group_by shapes Dovecot's statistics only: not carried over")
        elif key not in _METRIC_KEYS:
            warn(entry.where, f"{key} = {entry.value}: no equivalent, not carried over")
    filter_text = s["filter"].value.strip() if "filter" in s else ""
    if not filter_text:
        warn(block.where, "its filter is empty: it matches nothing (as in Dovecot), not carried")
        return None
    try:
        compile_filter(filter_text)
    except FilterSyntaxError as exc:
        warn(s["filter"].where, f"{exc}: not carried over")
        return None
    include: list[str] | None = None
    if "exporter_include" in s:
        include = []
        for word in s["exporter_include"].value.split():
            if word in INCLUDE_WORDS:
                include.append(word)
            else:  # Dovecot warns "Ignoring unknown exporter include" and goes on
                warn(s["exporter_include"].where, f"exporter_include {word!r} is unknown: ignored")
    fields = s["fields"].value.split() if "fields" in s else []
    return MetricPlan(block.name, block.where, filter_text, exporter, include, fields)


# -- writing -----------------------------------------------------------------------------


def render_config(imported: Imported, source: str, listen: str = DEFAULT_LISTEN) -> str:
    """The TOML text of our configuration; the warnings stand at its top as comments."""
    out = [
        f"# event-exporter configuration imported from {source}",
        f"# (Dovecot {imported.syntax} syntax) by event-exporter import-dovecot.",
        "# Dovecot sends its events to [source.dovecot] once dovecot.conf has the",
        f"# {RELAY_NAME} exporter and metric of import-dovecot --dovecot-snippet.",
    ]
    if imported.warnings:
        out.append("#")
        out.append("# Not carried over (see each line of the Dovecot configuration):")
        out.extend(f"#   {warning}" for warning in imported.warnings)
    out += ["", "[global]"]
    if imported.version is not None:
        out.append(f"dovecot_version = {_string(imported.version)}")
    out.append('dead_letter = "event-exporter.deadletter.ndjson"')
    out += ["", "[source.dovecot]", 'type = "http"', f"listen = {_string(listen)}"]
    for plan in imported.exporters:
        out += _render_exporter(plan, imported.syntax)
        for metric in plan.metrics:
            out += _render_metric(metric)
    return "\n".join(out) + "\n"


def _render_exporter(plan: ExporterPlan, syntax: Syntax) -> list[str]:
    lines = [
        "",
        f"# {plan.where}: event_exporter {plan.name}",
        f"[exporter.{_key(plan.name)}]",
        f"format = {_string(plan.format)}",
        f"time_format = {_string(plan.time_format)}",
        f"dovecot_compat = {_string(syntax)}",
        f"destination = {_string(plan.destination)}",
    ]
    if plan.destination.startswith(("http://", "https://")):
        lines += [
            f"[exporter.{_key(plan.name)}.http]",
            'body = "single"  # one event per request, as Dovecot posts them',
        ]
        if plan.request_timeout is not None:
            lines.append(f"request_timeout = {plan.request_timeout!r}")
        if plan.connect_timeout is not None:
            lines.append(f"connect_timeout = {plan.connect_timeout!r}")
    return lines


def _render_metric(metric: MetricPlan) -> list[str]:
    lines = [
        "",
        f"# {metric.where}: metric {metric.name}",
        f"[metric.{_key(metric.name)}]",
        f"filter = {_string(metric.filter)}",
        f"exporter = {_string(metric.exporter)}",
    ]
    if metric.include is not None:
        lines.append(f"include = {_strings(metric.include)}")
    if metric.fields:
        lines.append(f"fields = {_strings(metric.fields)}")
    return lines


def relay_snippet(imported: Imported, listen: str = DEFAULT_LISTEN) -> str:
    """The lines for ``dovecot.conf``: one exporter posting every event the carried
    metrics select, whole (every include word, every field), to ``[source.dovecot]``."""
    filters = list(dict.fromkeys(metric.filter for metric in imported.metrics))
    if not filters:
        return ""
    one = filters[0] if len(filters) == 1 else " OR ".join(f"({text})" for text in filters)
    url = f"http://{listen}/dovecot"
    replaced = ", ".join(plan.name for plan in imported.exporters)
    lines = [
        "# In dovecot.conf, in place of the event_exporter blocks carried over and the",
        "# metrics feeding them, these: Dovecot posts each event to event-exporter, which",
        "# does the rest. The blocks to remove:",
        *textwrap.wrap(replaced, 86, initial_indent="#   ", subsequent_indent="#   "),
    ]
    if imported.syntax == "2.3":
        lines += [
            f"event_exporter {RELAY_NAME} {{",
            "  format = json",
            "  format_args = time-unix",
            "  transport = http-post",
            f"  transport_args = {url}",
            f"  transport_timeout = {RELAY_TIMEOUT}",
            "}",
        ]
    else:
        lines += [
            f"event_exporter {RELAY_NAME} {{",
            "  driver = http-post",
            "  format = json",
            "  time_format = unix",
            f"  http_post_url = {url}",
            f"  http_client_request_absolute_timeout = {RELAY_TIMEOUT}",
            "}",
        ]
    lines += [
        f"metric {RELAY_NAME} {{",
        f"  filter = {one}",
        f"  exporter = {RELAY_NAME}",
        "}",
    ]
    return "\n".join(lines) + "\n"


def _string(text: str) -> str:
    """A TOML basic string (JSON's escapes are TOML's; DEL must be escaped too)."""
    return orjson.dumps(text).decode().replace("\x7f", "\\u007f")


def _strings(items: Iterable[str]) -> str:
    return "[" + ", ".join(_string(item) for item in items) + "]"


def _key(name: str) -> str:
    return name if _BARE_KEY.fullmatch(name) else _string(name)

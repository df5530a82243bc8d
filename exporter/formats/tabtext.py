"""Dovecot's ``tab-text`` format, byte for byte.

Items ``event:`` ``hostname:`` ``start_time:`` ``end_time:`` ``category:``... ``field:k=v``...
joined by TAB. Names, categories, keys and str values are tab-escaped (\\x01 TAB CR LF and
NUL only; invalid UTF-8 stays raw); a strlist is escaped per element, joined with TAB and
escaped again. Dovecot's categories section always adds one TAB, so an event with no
categories leaves an empty item; an include set that yields nothing gives an empty body.

Escaping is rare, so the common path joins the raw values and checks the whole line once
(TAB and \\x01 counts, no CR, LF or NUL); only a line that fails the check is rendered
again value by value with escaping.
"""

from __future__ import annotations

from collections.abc import Callable

from exporter.event import Event, FieldValue, Timestamp
from exporter.formats.spec import FormatSpec
from exporter.formats.text import cut_bytes, raw_bytes, tab_escape
from exporter.formats.timefmt import make_time_formatter

Formatter = Callable[[Event], bytes]


def strlist_text(items: list[str]) -> str:
    """A strlist value: elements escaped, joined with TAB, the result escaped again."""
    return tab_escape("\t".join([tab_escape(item) for item in items]))


def make_tabtext_formatter(spec: FormatSpec, *, newline: bool = False) -> Formatter:
    """A function writing one event as Dovecot tab-text (plus ``\\n`` when ``newline``)."""
    fmt_time = make_time_formatter(spec.time_format, spec.time_precision)
    want_name = "name" in spec.include
    want_host = "hostname" in spec.include
    want_times = "timestamps" in spec.include
    want_cats = "categories" in spec.include
    want_fields = "fields" in spec.include
    keys = spec.fields
    limit = spec.truncate
    end = "\n" if newline else ""

    def value_text(value: FieldValue) -> str:
        kind = type(value)
        if kind is str:
            if limit is not None:
                cut = cut_bytes(value, limit)  # type: ignore[arg-type]
                if cut is not None:
                    return tab_escape(cut) + "..."
            return tab_escape(value)  # type: ignore[arg-type]
        if kind is list:
            return strlist_text(value)  # type: ignore[arg-type]
        if kind is Timestamp:
            return fmt_time(value.ns)  # type: ignore[union-attr]
        return str(value)

    def escaped_line(event: Event) -> str:
        """Every value escaped one by one: correct for any event, slower."""
        parts: list[str] = []
        if want_name and event.name is not None:
            parts.append("event:" + tab_escape(event.name))
        if want_host and event.hostname is not None:
            parts.append("hostname:" + tab_escape(event.hostname))
        if want_times:
            if event.start_ns is not None:
                parts.append("start_time:" + fmt_time(event.start_ns))
            if event.end_ns is not None:
                parts.append("end_time:" + fmt_time(event.end_ns))
        if want_cats:
            parts.append("\t".join(["category:" + tab_escape(c) for c in event.categories]))
        if want_fields:
            fields = event.fields
            for key in keys or fields:
                if key in fields:
                    parts.append("field:" + tab_escape(key) + "=" + value_text(fields[key]))
        return "\t".join(parts)

    def format_tabtext(event: Event) -> bytes:
        if limit is not None:
            return _encode(escaped_line(event) + end)
        parts: list[str] = []
        extra_tabs = 0
        x01 = 0
        if want_name and event.name is not None:
            parts.append("event:" + event.name)
        if want_host and event.hostname is not None:
            parts.append("hostname:" + event.hostname)
        if want_times:
            if event.start_ns is not None:
                parts.append("start_time:" + fmt_time(event.start_ns))
            if event.end_ns is not None:
                parts.append("end_time:" + fmt_time(event.end_ns))
        if want_cats:
            cats = event.categories
            if cats:
                parts.append("category:" + "\tcategory:".join(cats))
                extra_tabs = len(cats) - 1
            else:
                parts.append("")
        if want_fields:
            fields = event.fields
            for key in keys or fields:
                if key not in fields:
                    continue
                value = fields[key]
                kind = type(value)
                if kind is str or kind is int:
                    parts.append(f"field:{key}={value}")
                elif kind is list:
                    text = strlist_text(value)  # type: ignore[arg-type]
                    x01 += text.count("\x01")
                    parts.append(f"field:{key}={text}")
                else:
                    parts.append(f"field:{key}={fmt_time(value.ns)}")  # type: ignore[union-attr]
        line = "\t".join(parts)
        if (
            line.count("\t") != len(parts) - 1 + extra_tabs
            or line.count("\x01") != x01
            or "\n" in line
            or "\r" in line
            or "\x00" in line
        ):
            line = escaped_line(event)
        return _encode(line + end)

    return format_tabtext


def _encode(line: str) -> bytes:
    try:
        return line.encode("utf-8", "surrogateescape")
    except UnicodeEncodeError:
        return raw_bytes(line)

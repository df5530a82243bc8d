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

from collections.abc import Iterable

from exporter.errors import EventFormatError
from exporter.event import Event, FieldValue, Timestamp
from exporter.formats.spec import FormatSpec, Formatter
from exporter.formats.text import cut_bytes, raw_bytes, tab_escape
from exporter.formats.timefmt import make_time_formatter, remember_last


def strlist_text(items: list[str]) -> str:
    """A strlist value: elements escaped, joined with TAB, the result escaped again."""
    return tab_escape("\t".join([tab_escape(item) for item in items]))


def make_tabtext_formatter(spec: FormatSpec, *, newline: bool = False) -> Formatter:
    """A function writing one event as Dovecot tab-text (plus ``\\n`` when ``newline``)."""
    fmt_time = make_time_formatter(spec.time_format, spec.time_precision)
    fmt_end_time = remember_last(fmt_time)
    want_name, want_host, want_times, want_cats, want_fields = spec.sections()
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
        if kind is int:
            return str(value)
        raise _not_a_field_type(value)

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

    def special_text(value: FieldValue) -> str:
        """A strlist or timestamp value, as written (strlists fully escaped)."""
        if type(value) is list:
            return strlist_text(value)
        if type(value) is Timestamp:
            return fmt_time(value.ns)
        raise _not_a_field_type(value)

    def format_tabtext(event: Event) -> bytes:
        if limit is not None:
            return _encode(escaped_line(event) + end)
        parts: list[str] = []
        extra_tabs = 0
        if want_name and event.name is not None:
            parts.append("event:" + event.name)
        if want_host and event.hostname is not None:
            parts.append("hostname:" + event.hostname)
        if want_times:
            if event.start_ns is not None:
                parts.append("start_time:" + fmt_time(event.start_ns))
            if event.end_ns is not None:
                parts.append("end_time:" + fmt_end_time(event.end_ns))
        if want_cats:
            cats = event.categories
            if cats:
                parts.append("category:" + "\tcategory:".join(cats))
                extra_tabs = len(cats) - 1
            else:
                parts.append("")
        items: Iterable[tuple[str, FieldValue]] = ()
        if want_fields:
            fields = event.fields
            items = fields.items() if not keys else [(k, fields[k]) for k in keys if k in fields]
            parts += [
                f"field:{k}={v}" if type(v) in _PLAIN else f"field:{k}={special_text(v)}"
                for k, v in items
            ]
        line = "\t".join(parts)
        # Raw values were joined unescaped: right only if none held a byte to escape.
        if (
            "\n" in line
            or "\r" in line
            or "\x00" in line
            or line.count("\t") != len(parts) - 1 + extra_tabs
            or ("\x01" in line and line.count("\x01") != _strlist_x01(items))
        ):
            line = escaped_line(event)
        return _encode(line + end)

    return format_tabtext


_PLAIN = frozenset((str, int))


def _not_a_field_type(value: object) -> EventFormatError:
    return EventFormatError(
        f"cannot write a {type(value).__name__} field value "
        "(allowed: str, int, Timestamp, list of str)"
    )


def _strlist_x01(items: Iterable[tuple[str, FieldValue]]) -> int:
    """How many \\x01 the escaping of the written strlist values puts into a line."""
    return sum(strlist_text(v).count("\x01") for _, v in items if type(v) is list)


def _encode(line: str) -> bytes:
    try:
        return line.encode("utf-8", "surrogateescape")
    except UnicodeEncodeError:
        return raw_bytes(line)
